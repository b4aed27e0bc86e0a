/**
 * Bounded connections and coalesced version refreshes (issue "never lose a build, bounded
 * connections"): header/body timeouts, the per-client connection cap, closing after an early
 * 401, and one `go list` for many concurrent refreshes. No Go, no builds.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { createApi } from '../../src/api/index.js';
import { limitConnectionsPerClient } from '../../src/api/connections.js';
import { TokenAuthenticator } from '../../src/auth/index.js';
import { GoResolver } from '../../src/resolve/index.js';
import type { BuildService } from '../../src/service/index.js';
import { PlatformSet } from '../../src/request/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw client: what it received, and when the server closed it. */
function rawClient(port: number): { socket: Socket; data: () => string; closed: Promise<number> } {
  const socket = connect(port, '127.0.0.1');
  let data = '';
  const t0 = Date.now();
  socket.on('data', (c) => (data += c.toString()));
  socket.on('error', () => {});
  const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now() - t0)));
  return { socket, data: () => data, closed };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, delay(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`)))]);
}

describe('GoResolver: version list refreshes are coalesced', () => {
  function standIn(delayMs = 50) {
    let calls = 0;
    const toolchain = {
      identity: { go: 'go1.test', xcaddy: 'v0.test' },
      go: async (args: string[]) => {
        calls++;
        assert.deepEqual(args.slice(0, 3), ['list', '-m', '-versions']);
        await delay(delayMs);
        return { stdout: JSON.stringify({ Path: 'github.com/caddyserver/caddy/v2', Versions: ['v2.8.0', 'v2.9.0-beta.1', `v2.9.${calls}`] }), stderr: '' };
      },
    } as unknown as Toolchain;
    return { toolchain, calls: () => calls };
  }

  it('40 concurrent refreshes run one go list; a refresh within the memo window reuses it; a later one runs again', async () => {
    const { toolchain, calls } = standIn();
    let now = 1_000_000;
    const r = new GoResolver(toolchain, { buildFlags: 'x', now: () => now, refreshMemoMs: 10_000 });
    const lists = await Promise.all(Array.from({ length: 40 }, () => r.caddyVersions({ refresh: true })));
    assert.equal(calls(), 1, 'one go invocation for 40 concurrent refreshes');
    assert.ok(lists.every((l) => l.latest === 'v2.9.1'));
    now += 5_000;
    assert.equal((await r.caddyVersions({ refresh: true })).latest, 'v2.9.1');
    assert.equal(calls(), 1, 'a refresh within the memo window gets the last result');
    now += 6_000;
    const [a, b, c] = await Promise.all([r.caddyVersions({ refresh: true }), r.caddyVersions({ refresh: true }), r.caddyVersions()]);
    assert.equal(calls(), 2, 'after the memo window one new go list, shared by refreshes and plain reads');
    assert.equal(a.latest, 'v2.9.2');
    assert.equal(b.latest, 'v2.9.2');
    assert.equal(c.latest, 'v2.9.2');
  });

  it('a refresh while a plain read is in flight joins it (at most one go list at a time)', async () => {
    const { toolchain, calls } = standIn();
    const r = new GoResolver(toolchain, { buildFlags: 'x' });
    await Promise.all([r.caddyVersions(), r.caddyVersions({ refresh: true }), r.caddyVersions({ refresh: true })]);
    assert.equal(calls(), 1);
  });
});

describe('per-client connection cap', () => {
  it('refuses connections over the cap with a 503 JSON answer and Retry-After, logged once a minute', async () => {
    const server: Server = createServer((_req, res) => res.end('ok'));
    const warnings: unknown[] = [];
    limitConnectionsPerClient(server, 3, { warn: (o: unknown) => void warnings.push(o) } as never);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const held = Array.from({ length: 3 }, () => rawClient(port));
    await delay(100);
    const over = [rawClient(port), rawClient(port)];
    for (const c of over) await within(c.closed, 3000, 'refused socket closed');
    for (const c of over) {
      assert.match(c.data(), /^HTTP\/1\.1 503 /);
      assert.match(c.data(), /\r\nRetry-After: \d+\r\n/);
      assert.match(c.data(), /"code":"too_many_connections"/);
    }
    assert.equal(warnings.length, 1, 'logged at most once a minute per address');
    // The held ones still work, and a slot freed by a close is usable again.
    held[0]!.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await delay(100);
    assert.match(held[0]!.data(), /^HTTP\/1\.1 200 /);
    held[1]!.socket.destroy();
    await delay(100);
    const again = rawClient(port);
    again.socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await within(again.closed, 3000, 'freed slot answers');
    assert.match(again.data(), /^HTTP\/1\.1 200 /);
    for (const c of held) c.socket.destroy();
  });
});

describe('API timeouts and early errors', () => {
  async function api(tokenOnly: boolean) {
    const app = await createApi({
      service: { platforms: new PlatformSet([]), maxPlugins: 0 } as unknown as BuildService,
      logger: pino({ level: 'silent' }),
      bodyLimit: 64 * 1024,
      security: { auth: new TokenAuthenticator({ tokens: [], anonymousScopes: tokenOnly ? [] : ['read', 'build'] }), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 },
      connections: { headersTimeoutMs: 400, requestTimeoutMs: 800, keepAliveTimeoutMs: 500, maxPerClient: 0 },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    after(() => app.close());
    return (app.server.address() as { port: number }).port;
  }

  it('a client trickling headers is cut by the header timeout (408)', async () => {
    const port = await api(false);
    const c = rawClient(port);
    c.socket.write('GET /healthz HTTP/1.1\r\n');
    const timer = setInterval(() => c.socket.writable && c.socket.write('X-A: b\r\n'), 100);
    const ms = await within(c.closed, 3000, 'slow-header client disconnected');
    clearInterval(timer);
    assert.ok(ms >= 300, `not before the timeout (${ms} ms)`);
    assert.match(c.data(), /^HTTP\/1\.1 408 /);
  });

  it('a client trickling a body is cut by the request timeout', async () => {
    const port = await api(false);
    const c = rawClient(port);
    c.socket.write('POST /api/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{');
    const timer = setInterval(() => c.socket.writable && c.socket.write(' '), 100);
    const ms = await within(c.closed, 3000, 'slow-body client disconnected');
    clearInterval(timer);
    assert.ok(ms >= 600, `not before the timeout (${ms} ms)`);
  });

  it('a 401 answered before the body arrived closes the connection', async () => {
    const port = await api(true);
    const c = rawClient(port);
    c.socket.write('POST /api/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{');
    const timer = setInterval(() => c.socket.writable && c.socket.write(' '), 50);
    const ms = await within(c.closed, 3000, '401 connection closed');
    clearInterval(timer);
    assert.match(c.data(), /^HTTP\/1\.1 401 /);
    assert.match(c.data(), /\r\nconnection: close\r\n/i);
    assert.ok(ms < 600, `closed after the answer, not by the request timeout (${ms} ms)`);
  });

  it('an idle kept-alive connection is closed after the keep-alive timeout; a finished request is not cut', async () => {
    const port = await api(false);
    const c = rawClient(port);
    c.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const ms = await within(c.closed, 3000, 'idle connection closed');
    assert.match(c.data(), /^HTTP\/1\.1 200 /);
    assert.ok(ms >= 400, `closed by keep-alive timeout (${ms} ms)`);
  });
});
