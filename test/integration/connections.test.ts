/**
 * Bounded connections against the real `fairway serve` process: header and body timeouts, the
 * early close after a 401, the per-client connection cap, and /healthz staying fast while 500
 * slow clients and 500 log followers are connected (server run with a bounded `ulimit -n`).
 * No Caddy is compiled: the one build is a stand-in xcaddy that only sleeps.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { api, CADDY_VERSION, standInDir, startFairway, tempDir, killByArgv, type FairwayProcess } from '../helpers/fairway.js';

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TOKEN = randomBytes(16).toString('hex');
const TOKENS_ENV = { FAIRWAY_TOKENS: `conn-test:read+build:${createHash('sha256').update(TOKEN).digest('hex')}` };

interface Raw {
  socket: Socket;
  data(): string;
  closed: Promise<number>;
  isClosed(): boolean;
}

function raw(port: number, localAddress = '127.0.0.1'): Raw {
  const socket = connect({ port, host: '127.0.0.1', localAddress });
  let data = '';
  let done = false;
  const t0 = Date.now();
  socket.on('data', (c) => (data += c.toString()));
  socket.on('error', () => {});
  const closed = new Promise<number>((r) =>
    socket.on('close', () => {
      done = true;
      r(Date.now() - t0);
    }),
  );
  return { socket, data: () => data, closed, isClosed: () => done };
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, delay(ms).then(() => Promise.reject(new Error(`${what}: not within ${ms} ms`)))]);
}

/** Sends a partial request, then one more byte every `everyMs` (never completing it). */
function trickle(c: Raw, start: string, chunk: string, everyMs: number): () => void {
  c.socket.write(start);
  const t = setInterval(() => {
    if (!c.isClosed() && c.socket.writable) c.socket.write(chunk);
  }, everyMs);
  void c.closed.then(() => clearInterval(t));
  return () => clearInterval(t);
}

async function healthzP99(base: string, n = 200): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await fetch(`${base}/healthz`);
    assert.equal(r.status, 200);
    await r.text();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n * 0.99) - 1]!;
}

/** An xcaddy whose builds sleep (never compile); the marker finds their processes afterwards. */
async function stuckXcaddy(dir: string): Promise<{ bin: string; killAll(): Promise<void> }> {
  const real = await standInDir(dir);
  const bin = join(dir, 'xcaddy-stuck');
  const marker = `120.${process.pid}3`;
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "build" ]; then exec sleep ${marker}; fi\nexec '${real}' "$@"\n`);
  await chmod(bin, 0o755);
  return {
    bin,
    killAll: async () => {
      await killByArgv(marker);
    },
  };
}

describe('connections and timeouts (real server)', { timeout: 60_000 }, () => {
  let dir: string;
  let short: FairwayProcess; // token-only, short timeouts, low cap
  let load: FairwayProcess; // bounded fds, a running build to follow
  let stuck: Awaited<ReturnType<typeof stuckXcaddy>>;
  const opened: Raw[] = [];

  before(async () => {
    dir = await tempDir('fairway-conn-');
    await mkdir(join(dir, 'bin'), { recursive: true });
    stuck = await stuckXcaddy(join(dir, 'bin'));
    [short, load] = await Promise.all([
      startFairway({
        dataDir: join(dir, 'short'),
        env: TOKENS_ENV,
        args: ['--anonymous-scopes', 'none', '--headers-timeout', '1s', '--request-timeout', '2s', '--keep-alive-timeout', '1s', '--max-connections-per-client', '10', '--refresh-interval', '24h'],
      }),
      startFairway({
        dataDir: join(dir, 'load'),
        maxOpenFiles: 2048,
        args: ['--xcaddy-bin', stuck.bin, '--max-connections-per-client', '20', '--headers-timeout', '40s', '--request-timeout', '50s', '--rate-limit', '0', '--refresh-interval', '24h'],
      }),
    ]);
  });

  after(async () => {
    for (const c of opened) c.socket.destroy();
    await Promise.all([short?.stop(), load?.stop('SIGKILL')]);
    await stuck?.killAll();
  });

  it('slow-header and slow-body clients are disconnected by the timeouts', async () => {
    const headers = Array.from({ length: 5 }, () => raw(short.port, '127.0.1.1'));
    for (const c of headers) trickle(c, 'GET /healthz HTTP/1.1\r\n', 'X', 200);
    const bodies = Array.from({ length: 5 }, () => raw(short.port, '127.0.1.2'));
    for (const c of bodies) trickle(c, `POST /api/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{`, ' ', 200);
    const th = await within(Promise.all(headers.map((c) => c.closed)), 8000, 'slow-header clients disconnected');
    for (const c of headers) assert.match(c.data(), /^HTTP\/1\.1 408 /);
    assert.ok(Math.min(...th) >= 900, `not before the header timeout: ${th}`);
    const tb = await within(Promise.all(bodies.map((c) => c.closed)), 8000, 'slow-body clients disconnected');
    assert.ok(Math.min(...tb) >= 1900, `not before the request timeout: ${tb} ${bodies[0]!.data().slice(0, 300)}`);
  });

  it('a 401 on a token-only server closes the connection while the client trickles the body', async () => {
    const c = raw(short.port, '127.0.1.3');
    trickle(c, 'POST /api/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{', ' ', 50);
    const ms = await within(c.closed, 8000, '401 connection closed');
    assert.match(c.data(), /^HTTP\/1\.1 401 /);
    assert.ok(ms < 900, `closed right after the 401, not by a timeout (${ms} ms)`);
  });

  it('the per-client cap refuses excess connections with a 503 and Retry-After', async () => {
    const held = Array.from({ length: 10 }, () => raw(short.port, '127.0.1.4'));
    await delay(200);
    const over = Array.from({ length: 5 }, () => raw(short.port, '127.0.1.4'));
    await within(Promise.all(over.map((c) => c.closed)), 5000, 'excess connections closed');
    for (const c of over) {
      assert.match(c.data(), /^HTTP\/1\.1 503 /);
      assert.match(c.data(), /\r\nRetry-After: \d+\r\n/);
    }
    assert.ok(
      held.every((c) => !c.isClosed()),
      'the connections under the cap stay',
    );
    // Another address is not affected.
    const other = raw(short.port, '127.0.1.5');
    other.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await within(other.closed, 5000, 'other client answered');
    assert.match(other.data(), /^HTTP\/1\.1 200 /);
    for (const c of held) c.socket.destroy();
  });

  it('/healthz stays under 50 ms p99 with 500 slow clients and 500 log followers, and a flood from one address', async () => {
    const b = await api(load.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' } });
    assert.ok(b.status === 202, `build queued: ${b.status} ${JSON.stringify(b.body)}`);
    const id = b.body.id as string;
    // 1000 connections over 127.0.2.1..127.0.2.60 (cap 20 per address).
    const addr = (i: number) => `127.0.2.${1 + (i % 60)}`;
    for (let i = 0; i < 500; i++) {
      const c = raw(load.port, addr(i));
      opened.push(c);
      if (i % 2) trickle(c, 'GET /healthz HTTP/1.1\r\n', 'X', 1000);
      else trickle(c, 'POST /api/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{', ' ', 1000);
    }
    const followers: http.ClientRequest[] = [];
    let events = 0;
    await Promise.all(
      Array.from(
        { length: 500 },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const req = http.get({ host: '127.0.0.1', port: load.port, path: `/api/builds/${id}/log`, localAddress: addr(i + 500), headers: { accept: 'text/event-stream' }, agent: false }, (res) => {
              if (res.statusCode !== 200) reject(new Error(`follower ${i}: ${res.statusCode}`));
              res.once('data', () => {
                events++;
                resolve();
              });
            });
            req.on('error', reject);
            followers.push(req);
          }),
      ),
    );
    assert.equal(events, 500);
    // A flood from one address: all but the cap refused and closed, so no fd exhaustion. 400 stays
    // under the listen backlog (511), so every attempt is accepted at once rather than retried by TCP.
    const FLOOD = 400;
    const flood = Array.from({ length: FLOOD }, () => raw(load.port, '127.0.3.1'));
    opened.push(...flood);
    let refused = 0;
    for (let t = 0; t < 75 && refused < FLOOD - 20; t++) {
      await delay(200);
      refused = flood.filter((c) => /^HTTP\/1\.1 503 /.test(c.data())).length;
    }
    const p99 = await within(healthzP99(load.url), 10_000, '/healthz answers');
    assert.ok(p99 < 50, `/healthz p99 ${p99.toFixed(1)} ms`);
    assert.equal(refused, FLOOD - 20, `flood refused: ${refused} of ${FLOOD}, cap 20`);
    const cut = opened
      .slice(0, 500)
      .map((c, i) => [i, c] as const)
      .filter(([, c]) => c.isClosed());
    assert.deepEqual(
      cut.map(([i, c]) => `${i}: ${c.data().slice(0, 200)}`),
      [],
      'slow clients still connected (timeouts are long here)',
    );
    assert.doesNotMatch(load.output(), /EMFILE/);
    for (const f of followers) f.destroy();
  });
});
