/**
 * Issue 7 end to end, against real `fairway serve` processes (test/helpers/fairway.ts):
 *  - auth: tokens from FAIRWAY_TOKENS and an auth file, scopes per route, 401 vs 403, websocket;
 *  - policy: module allow/deny lists, the catalog, Caddy version range (before and after
 *    resolution), replacements only for admin, refused settings (GOSUMDB=off, anonymous admin);
 *  - limits: rate limits per client, builds per client, body size, free disk, timeout, size;
 *  - the build environment: a real build with secrets in the server's environment, whose xcaddy
 *    process is shown to receive none of them and only allowlisted names;
 *  - fuzzing over HTTP: 10,000 generated hostile requests to /api/builds and /api/download, each a
 *    4xx JSON error, with neither the module proxy (resolution) nor xcaddy (builds) ever reached;
 *  - path traversal and header injection on every route that takes an id or a name.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { recordingProxy } from '../helpers/goproxy.js';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
// The query-string parser Fastify's router uses, so the oracle reads queries as the server does.
import querystring from 'fast-querystring';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { generateToken, sha256Hash } from '../../src/auth/index.js';
import { ENV_ALLOWLIST } from '../../src/toolchain/index.js';
import { api, CADDY_VERSION, countingXcaddy, killByArgv, MAIN, PLUGIN, recordPath, standInDir, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis } from '../helpers/services.js';
import { HOSTILE_PIECES, hostileQuery, hostileSpec, hostileString, oracleMustRefuseBody, oracleMustRefuseQuery } from '../helpers/hostile.js';

const SEED = Number(process.env.FAIRWAY_FUZZ_SEED ?? 7_000_7);
/** Inputs per fuzzed route; two routes, 10,000 in all at least. A lower FAIRWAY_FUZZ_RUNS is refused, not honoured quietly. */
const FUZZ_PER_ROUTE = Number(process.env.FAIRWAY_FUZZ_RUNS ?? 5000);
if (!Number.isInteger(FUZZ_PER_ROUTE) || FUZZ_PER_ROUTE < 5000) {
  throw new Error(`FAIRWAY_FUZZ_RUNS=${process.env.FAIRWAY_FUZZ_RUNS} is refused: the HTTP fuzz runs at least 5000 inputs per route (10,000 in all); unset it or give a larger whole number`);
}
const BUILD_TIMEOUT = 10 * 60_000;
const hex = (t: string) => sha256Hash(t).slice('sha256:'.length);
const ZERO_ID = '0'.repeat(64);
const SPEC = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' };

/** An xcaddy wrapper that writes its exact environment (/proc/self/environ) to a file per build. */
async function envDumpingXcaddy(dir: string): Promise<{ bin: string; dumps(): Promise<Array<Record<string, string>>> }> {
  const real = await standInDir(dir);
  const rec = recordPath(`env-dumps-${randomBytes(6).toString('hex')}`);
  const bin = join(dir, 'xcaddy-envdump');
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "build" ]; then mkdir -p ${rec.inside} && cat /proc/$$/environ > ${rec.inside}/env-$$; fi\nexec '${real}' "$@"\n`);
  await chmod(bin, 0o755);
  const out = rec.outside;
  return {
    bin,
    dumps: async () =>
      Promise.all(
        (await readdir(out)).map(async (f) => {
          const raw = await readFile(join(out, f), 'utf8');
          const env: Record<string, string> = {};
          for (const kv of raw.split('\0').filter(Boolean)) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
          return env;
        }),
      ),
  };
}

/** An xcaddy whose builds never finish by themselves (for queue limits and timeouts). */
async function stuckXcaddy(dir: string): Promise<{ bin: string; count(): Promise<number>; killAll(): Promise<void> }> {
  const sub = join(dir, 'stuck');
  await mkdir(sub, { recursive: true });
  const real = await standInDir(sub);
  const bin = join(sub, 'xcaddy-stuck');
  const log = recordPath(`stuck-${randomBytes(6).toString('hex')}.log`);
  // A sleep no other process has in its argv, so the builds' processes can be found from the host.
  const marker = `120.${process.pid}7`;
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "build" ]; then echo "$$" >> ${log.inside}; exec sleep ${marker}; fi\nexec '${real}' "$@"\n`);
  await chmod(bin, 0o755);
  return {
    bin,
    count: async () => (await readFile(log.outside, 'utf8').catch(() => '')).split('\n').filter(Boolean).length,
    // Sandboxed builds die with their server; stop any whose server is still up.
    killAll: async () => {
      await killByArgv(marker);
    },
  };
}

/** Polls a build with credentials until it ends. */
async function waitAuthed(base: string, id: string, headers: Record<string, string>, timeoutMs: number): Promise<any> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api(base, `/api/builds/${id}`, { headers });
    if (['succeeded', 'failed', 'canceled'].includes(body.status)) return body;
    if (Date.now() > end) throw new Error(`build ${id} did not end: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** An xcaddy whose `build` only copies a real Go binary (xcaddy's own) to --output: a build in a second. */

async function pool<T>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/** One raw HTTP/1.1 exchange, for requests fetch refuses to send. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // No half-close: a client FIN before the answer reads as "client gone" to the server.
    const sock = net.connect(port, '127.0.0.1', () => sock.write(text));
    let out = '';
    sock.setEncoding('latin1');
    sock.on('data', (d) => (out += d));
    sock.on('end', () => resolve(out));
    sock.on('error', (e) => (out ? resolve(out) : reject(e)));
    sock.setTimeout(5000, () => {
      sock.destroy();
      resolve(out);
    });
  });
}

/** A request sent byte for byte (fetch would normalise `%2e%2e` and the like away). */
async function rawHttp(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)].join('\r\n');
  const out = await rawRequest(port, `${head}\r\n\r\n`);
  const cut = out.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = out.slice(0, cut).split('\r\n');
  const h: Record<string, string> = {};
  for (const l of lines) h[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
  let body = Buffer.from(out.slice(cut + 4), 'latin1').toString('utf8');
  if (h['transfer-encoding'] === 'chunked') {
    let rest = body;
    body = '';
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const n = parseInt(rest.slice(0, nl), 16);
      if (!n) break;
      body += rest.slice(nl + 2, nl + 2 + n);
      rest = rest.slice(nl + 4 + n);
    }
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers: h, body };
}

/** Asserts a 4xx answer with a JSON error body; returns the body. */
function assert4xxJson(status: number, contentType: string | null, text: string, what: string): any {
  assert.ok(status >= 400 && status < 500, `${what}: status ${status}: ${text.slice(0, 300)}`);
  assert.match(contentType ?? '', /^application\/json/, `${what}: content-type ${contentType}`);
  const body = JSON.parse(text);
  assert.equal(typeof body.error?.message, 'string', `${what}: ${text.slice(0, 300)}`);
  return body;
}

function wsStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number | 'open'; messages: any[]; code?: number }> {
  return new Promise((resolve) => {
    const messages: any[] = [];
    const ws = new WebSocket(url, { headers });
    ws.on('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode ?? 0, messages });
      ws.terminate();
    });
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    ws.on('close', (code) => resolve({ status: 'open', messages, code }));
    ws.on('error', () => undefined);
  });
}

describe('security', { timeout: 30 * 60_000 }, () => {
  let dir: string;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  const servers: FairwayProcess[] = [];
  const tokens = {
    reader: generateToken(),
    builder: generateToken(),
    ops: generateToken(),
    alice: generateToken(),
    bob: generateToken(),
    carol: generateToken(),
    dave: generateToken(),
    erin: generateToken(),
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  // A: the fuzz target (anonymous read+build, the embedded default), its proxy and xcaddy recorded.
  let fuzz: FairwayProcess;
  let fuzzXcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  // B: tokens + policy. C: limits. D: full disk. G: build timeout.
  let authSrv: FairwayProcess;
  let authXcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  let limits: FairwayProcess;
  let stuck: Awaited<ReturnType<typeof stuckXcaddy>>;
  let disk: FairwayProcess;
  let diskXcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  let diskData: string;
  let timeout: FairwayProcess;

  before(async () => {
    dir = await tempDir('fairway-security-');
    proxy = await recordingProxy();
    [fuzzXcaddy, authXcaddy, diskXcaddy, stuck] = await Promise.all([
      countingXcaddy(await mkdir(join(dir, 'a'), { recursive: true }).then(() => join(dir, 'a'))),
      countingXcaddy(await mkdir(join(dir, 'b'), { recursive: true }).then(() => join(dir, 'b'))),
      countingXcaddy(await mkdir(join(dir, 'd'), { recursive: true }).then(() => join(dir, 'd'))),
      stuckXcaddy(dir),
    ]);
    const authFile = join(dir, 'tokens.json');
    await writeFile(authFile, JSON.stringify([{ name: 'ops', hash: sha256Hash(tokens.ops), scopes: ['admin'] }]));
    diskData = join(dir, 'disk-data');
    const noLimits = ['--rate-limit', '0', '--build-rate-limit', '0'];
    const started = await Promise.all([
      startFairway({ dataDir: join(dir, 'fuzz-data'), args: ['--xcaddy-bin', fuzzXcaddy.bin, '--goproxy', proxy.url, ...noLimits] }),
      startFairway({
        dataDir: join(dir, 'auth-data'),
        args: [
          '--xcaddy-bin',
          authXcaddy.bin,
          '--goproxy',
          proxy.url,
          '--auth-file',
          authFile,
          '--anonymous-scopes',
          'read',
          ...noLimits,
          '--allow-modules',
          'catalog,github.com/myorg/*',
          '--deny-modules',
          'github.com/myorg/evil',
          '--caddy-versions',
          '>=v2.10.0 <v3',
        ],
        env: { FAIRWAY_TOKENS: `reader:read:${hex(tokens.reader)},builder:build:${hex(tokens.builder)}` },
      }),
      startFairway({
        dataDir: join(dir, 'limits-data'),
        args: ['--xcaddy-bin', stuck.bin, '--workers', '1', '--max-active-builds', '2', '--anonymous-scopes', 'none', '--rate-limit', '30', '--build-rate-limit', '12'],
        env: { FAIRWAY_TOKENS: ['alice:build', 'bob:build', 'carol:read', 'dave:build', 'erin:read', 'ops:admin'].map((n) => `${n}:${hex(tokens[n.split(':')[0] as keyof typeof tokens])}`).join(',') },
      }),
      startFairway({ dataDir: diskData, args: ['--xcaddy-bin', diskXcaddy.bin, '--min-free-disk', '1000TB'] }),
      startFairway({ dataDir: join(dir, 'timeout-data'), args: ['--xcaddy-bin', stuck.bin, '--build-timeout', '2s'] }),
    ]);
    servers.push(...started);
    [fuzz, authSrv, limits, disk, timeout] = started as [FairwayProcess, FairwayProcess, FairwayProcess, FairwayProcess, FairwayProcess];
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    await stuck?.killAll();
    await proxy?.close();
  });

  describe('auth and policy', () => {
    test('anonymous: public and read routes work; build routes answer 401 with WWW-Authenticate', async () => {
      assert.equal((await api(authSrv.url, '/healthz')).status, 200);
      assert.equal((await api(authSrv.url, '/readyz')).status, 200);
      assert.equal((await fetch(`${authSrv.url}/`)).status, 200, 'the UI page is public');
      assert.equal((await api(authSrv.url, '/api/platforms')).status, 200, 'anonymous read is configured');
      const res = await fetch(`${authSrv.url}/api/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(SPEC) });
      const body = assert4xxJson(res.status, res.headers.get('content-type'), await res.text(), 'anonymous POST');
      assert.equal(res.status, 401);
      assert.equal(body.error.code, 'unauthorized');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="fairway"/);
      const dl = await api(authSrv.url, '/api/download?os=linux&arch=amd64');
      assert.equal(dl.status, 401, 'the compat download starts builds: build scope');
      assert.equal(dl.body.status_code, 401, 'in the envelope the Caddy CLI decodes');
      assert.match(dl.body.error.message, /build scope/);
      assert.equal((await fetch(`${authSrv.url}/api/download?os=linux&arch=amd64`, { method: 'HEAD' })).status, 401);
      assert.equal((await api(authSrv.url, `/api/builds/${ZERO_ID}`, { method: 'DELETE' })).status, 401);
      assert.equal(await authXcaddy.count(), 0);
    });

    test('bad and malformed credentials: 401 even where anonymous access would do', async () => {
      for (const h of [`Bearer ${generateToken()}`, `Bearer ${tokens.reader}x`, 'Basic dXNlcjpwYXNz', 'Bearer', `Bearer ${tokens.reader} ${tokens.reader}`, `Token ${tokens.reader}`]) {
        const res = await api(authSrv.url, '/api/platforms', { headers: { authorization: h } });
        assert.equal(res.status, 401, h);
        assert.equal(res.body.error.code, 'unauthorized');
        assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      }
    });

    test("a read token cannot build or cancel (403); a build token can; the auth file's admin token works", async () => {
      const post = (t: string, json: unknown) => api(authSrv.url, '/api/builds', { json, headers: bearer(t) });
      const r = await post(tokens.reader, SPEC);
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'forbidden');
      assert.match(r.body.error.message, /token "reader" does not have the build scope/);
      assert.equal((await api(authSrv.url, `/api/builds/${ZERO_ID}`, { method: 'DELETE', headers: bearer(tokens.reader) })).status, 403);
      assert.equal((await api(authSrv.url, '/api/platforms', { headers: bearer(tokens.reader) })).status, 200);
      // Past auth: the parser speaks (400), and DELETE reaches the service (409: nothing to cancel).
      assert.equal((await post(tokens.builder, { os: 'linux' })).status, 400);
      assert.equal((await post(tokens.ops, { os: 'linux' })).status, 400, 'admin token from the auth file');
      assert.equal((await api(authSrv.url, `/api/builds/${ZERO_ID}`, { method: 'DELETE', headers: bearer(tokens.builder) })).status, 409);
    });

    test('the CLI client sends FAIRWAY_TOKEN: a wrong token is refused (401), a valid one gets past auth', async () => {
      const cli = (env: Record<string, string>) =>
        new Promise<{ code: number; out: string }>((resolve) => {
          execFile(process.execPath, [MAIN, 'status', ZERO_ID, '--server', authSrv.url], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
            resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
          });
        });
      // Anonymous read is allowed here, so a status call without a token would pass; a presented token must be valid.
      const bad = await cli({ FAIRWAY_TOKEN: generateToken() });
      assert.equal(bad.code, 2, bad.out);
      assert.match(bad.out, /token|unauthori[sz]ed|401/i);
      const good = await cli({ FAIRWAY_TOKEN: tokens.reader });
      assert.equal(good.code, 2, good.out);
      assert.match(good.out, /not found/i, 'past auth: the server looked the build up');
    });

    test('module allowlist/denylist/catalog: refused before anything is fetched', async () => {
      const before = proxy.hits.length;
      const post = (module: string, extra: Record<string, string> = {}) =>
        api(authSrv.url, '/api/builds', { json: { ...SPEC, plugins: [{ module, version: 'v1.0.0', ...extra }] }, headers: bearer(tokens.builder) });
      for (const m of ['github.com/someone/else', 'github.com/myorg/evil', 'github.com/myorg/evil/v2', 'github.com/myorgx/plugin']) {
        const r = await post(m);
        assert.equal(r.status, 403, m);
        assert.equal(r.body.error.code, 'policy_denied');
        assert.match(r.body.error.message, /is not allowed on this server/);
      }
      assert.equal(proxy.hits.length, before, 'no module was looked up');
      // Allowed ones get as far as resolution (the recording proxy knows nothing: 422).
      for (const m of ['github.com/myorg/good', 'github.com/mholt/caddy-l4']) {
        const r = await post(m);
        assert.equal(r.status, 422, `${m}: ${JSON.stringify(r.body)}`);
      }
      assert.ok(proxy.hits.length > before);
    });

    test('replacements only with the admin scope; their target must pass the policy too', async () => {
      const json = { ...SPEC, plugins: [{ module: 'github.com/myorg/good', version: 'v1.0.0', replace: 'github.com/myorg/fork@v1.0.0' }] };
      const r = await api(authSrv.url, '/api/builds', { json, headers: bearer(tokens.builder) });
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'admin_required');
      const a = await api(authSrv.url, '/api/builds', { json, headers: bearer(tokens.ops) });
      assert.equal(a.status, 422, 'admin: past the policy, to resolution');
      const evil = await api(authSrv.url, '/api/builds', { json: { ...json, plugins: [{ ...json.plugins[0], replace: 'github.com/myorg/evil@v1.0.0' }] }, headers: bearer(tokens.ops) });
      assert.equal(evil.status, 403);
      assert.equal(evil.body.error.code, 'policy_denied');
      const dl = await api(authSrv.url, `/api/download?os=linux&arch=amd64&p=${encodeURIComponent('github.com/myorg/good@v1.0.0=github.com/myorg/fork@v1.0.0')}`, { headers: bearer(tokens.builder) });
      assert.equal(dl.status, 403, 'the compat API applies the same rule');
      assert.equal(dl.body.error.code, 'admin_required');
    });

    test('a Caddy version outside the allowed range is refused before resolution', async () => {
      const before = proxy.hits.length;
      const r = await api(authSrv.url, '/api/builds', { json: { ...SPEC, caddyVersion: 'v2.9.1' }, headers: bearer(tokens.builder) });
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'policy_denied');
      assert.match(r.body.error.message, /Caddy v2\.9\.1 is outside the versions this server builds \(>=v2\.10\.0 <v3\)/);
      assert.equal(proxy.hits.length, before);
    });

    test('websocket logs need the read scope too', async () => {
      const url = `${limits.url.replace('http', 'ws')}/api/builds/${ZERO_ID}/log`;
      assert.equal((await wsStatus(url)).status, 401, 'anonymous access is off on this server');
      assert.equal((await wsStatus(url, bearer(generateToken()))).status, 401);
      const ok = await wsStatus(url, bearer(tokens.carol));
      assert.equal(ok.status, 'open');
      assert.equal(ok.messages[0]?.type, 'error');
      assert.equal(ok.messages[0]?.error.code, 'not_found');
    });

    test('refused settings: anonymous admin, GOSUMDB=off, catch-all GONOSUMDB, bad auth file', async () => {
      await assert.rejects(startFairway({ dataDir: join(dir, 'x1'), args: ['--anonymous-scopes', 'read,admin'] }), /admin is never granted to anonymous clients/);
      await assert.rejects(startFairway({ dataDir: join(dir, 'x2'), env: { GOSUMDB: 'off' } }), /GOSUMDB=off is refused: the Go checksum database stays on/);
      await assert.rejects(startFairway({ dataDir: join(dir, 'x3'), args: ['--gonosumdb', '*'] }), /GONOSUMDB pattern "\*" would turn the checksum database off/);
      await writeFile(join(dir, 'bad.json'), JSON.stringify([{ name: 'x', hash: 'md5:abc', scopes: ['read'] }]));
      await assert.rejects(startFairway({ dataDir: join(dir, 'x4'), args: ['--auth-file', join(dir, 'bad.json')] }), /auth file .*bad\.json: 0\.hash/);
      // scrypt hashes are no longer verified per request: refused at start, saying how to replace them.
      await writeFile(join(dir, 'scrypt.json'), JSON.stringify([{ name: 'human', hash: `scrypt:16384:8:1:${'A'.repeat(22)}:${'B'.repeat(43)}`, scopes: ['read'] }]));
      await assert.rejects(
        startFairway({ dataDir: join(dir, 'x5'), args: ['--auth-file', join(dir, 'scrypt.json')] }),
        /token "human": scrypt hashes are no longer accepted.*fairway token create --name human.*fairway token hash/,
      );
    });
  });

  describe('limits', () => {
    test('builds per client: the third active build is refused (429), joining and other clients are not', async () => {
      const post = (t: string, os: string, arch: string) => api(limits.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os, arch }, headers: bearer(t) });
      const a1 = await post(tokens.alice, 'linux', 'amd64');
      assert.equal(a1.status, 202, JSON.stringify(a1.body));
      const a2 = await post(tokens.alice, 'linux', 'arm64');
      assert.equal(a2.status, 202);
      const a3 = await post(tokens.alice, 'linux', '386');
      assert.equal(a3.status, 429);
      assert.equal(a3.body.error.code, 'too_many_builds');
      assert.match(a3.body.error.message, /2 builds queued or running/);
      assert.equal((await post(tokens.alice, 'linux', 'amd64')).status, 202, 'joining a build in flight is free');
      const b1 = await post(tokens.bob, 'linux', '386');
      assert.equal(b1.status, 202, 'another client has its own allowance');
      // Cancel one: alice may start another.
      assert.equal((await api(limits.url, `/api/builds/${a1.body.id}`, { method: 'DELETE', headers: bearer(tokens.alice) })).status, 200);
      await waitAuthed(limits.url, a1.body.id, bearer(tokens.alice), 30_000);
      const a4 = await post(tokens.alice, 'windows', 'amd64');
      assert.equal(a4.status, 202, JSON.stringify(a4.body));
      // Builds are shared by key: another client's token may not cancel one, its starter or an admin may.
      const theft = await api(limits.url, `/api/builds/${a2.body.id}`, { method: 'DELETE', headers: bearer(tokens.bob) });
      assert.equal(theft.status, 403, JSON.stringify(theft.body));
      assert.equal(theft.body.error.code, 'not_your_build');
      assert.match(theft.body.error.message, /started by another client.*only that client or an admin token may cancel it/);
      assert.ok(['queued', 'running'].includes((await api(limits.url, `/api/builds/${a2.body.id}`, { headers: bearer(tokens.alice) })).body.status), 'still active');
      assert.equal((await api(limits.url, `/api/builds/${a2.body.id}`, { method: 'DELETE', headers: bearer(tokens.ops) })).status, 200, 'an admin may');
      assert.equal((await api(limits.url, `/api/builds/${b1.body.id}`, { method: 'DELETE', headers: bearer(tokens.bob) })).status, 200);
      assert.equal((await api(limits.url, `/api/builds/${a4.body.id}`, { method: 'DELETE', headers: bearer(tokens.alice) })).status, 200);
    });

    test('rate limits per client: 429 with Retry-After; health checks and other clients unaffected', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 34; i++) {
        const r = await api(limits.url, '/api/platforms', { headers: bearer(tokens.erin) });
        statuses.push(r.status);
        if (r.status === 429) {
          assert.equal(r.body.error.code, 'rate_limited');
          assert.match(r.body.error.message, /at most 30 per 1 min per client/);
          assert.match(r.headers.get('retry-after') ?? '', /^[0-9]+$/);
        }
      }
      assert.deepEqual([...new Set(statuses.slice(0, 30))], [200]);
      assert.deepEqual([...new Set(statuses.slice(30))], [429]);
      for (let i = 0; i < 40; i++) assert.equal((await fetch(`${limits.url}/healthz`)).status, 200);
      assert.equal((await api(limits.url, '/api/platforms', { headers: bearer(tokens.bob) })).status, 200, 'bob has his own bucket');
      // Guessing tokens counts against the address, so it is rate limited too.
      const guesses: number[] = [];
      for (let i = 0; i < 34; i++) guesses.push((await api(limits.url, '/api/platforms', { headers: bearer(generateToken()) })).status);
      // (earlier anonymous tests of this file used a few requests of the same address's allowance)
      const first = guesses.indexOf(429);
      assert.ok(first > 20 && first <= 30, `first 429 after ${first} guesses`);
      assert.deepEqual([...new Set(guesses.slice(0, first))], [401]);
      assert.deepEqual([...new Set(guesses.slice(first))], [429]);
    });

    test('build rate limit: a lower limit for requests that need the build scope', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 13; i++) statuses.push((await api(limits.url, '/api/builds', { json: { os: 'nope' }, headers: bearer(tokens.dave) })).status);
      assert.deepEqual([...new Set(statuses.slice(0, 12))], [400]);
      assert.equal(statuses[12], 429);
    });

    test('body size limit: 413 JSON', async () => {
      const big = JSON.stringify({ ...SPEC, plugins: [{ module: 'github.com/x/y', version: 'a'.repeat(100_000) }] });
      const res = await fetch(`${fuzz.url}/api/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: big });
      const body = assert4xxJson(res.status, res.headers.get('content-type'), await res.text(), 'big body');
      assert.equal(res.status, 413);
      assert.equal(body.error.code, 'body_too_large');
    });

    test('free disk: 507 with a clear message before anything is queued; nothing written', async () => {
      const r = await api(disk.url, '/api/builds', { json: SPEC });
      assert.equal(r.status, 507, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'insufficient_storage');
      assert.match(
        r.body.error.message,
        /not enough free disk space to start a build: .* free on the (build cache|artifact store) volume, at least 1000\.0 TB needed \(minFreeDisk\)\. Nothing was queued/,
      );
      const dl = await api(disk.url, '/api/download?os=linux&arch=amd64&version=v2.11.9');
      assert.equal(dl.status, 507);
      assert.equal(dl.body.status_code, 507);
      assert.equal(await diskXcaddy.count(), 0);
      assert.deepEqual(
        (await readdir(join(diskData, 'artifacts'))).filter((n) => !n.startsWith('.')),
        [],
        'no artifact, not even a failure record',
      );
      assert.equal((await api(disk.url, '/api/builds')).body.queue.queued, 0);
      assert.match(disk.output(), /low disk space: refusing new builds/);
    });

    test('build timeout: the build is stopped and fails with a clear error', { timeout: 60_000 }, async () => {
      const r = await api(timeout.url, '/api/builds', { json: SPEC });
      assert.equal(r.status, 202);
      const done = await waitForBuild(timeout.url, r.body.id, 45_000);
      assert.equal(done.status, 'failed');
      assert.match(done.error, /took longer than the timeout of 2s/);
    });
  });

  describe('fuzzing over HTTP', () => {
    // The inputs sent are those an oracle independent of the project's parser (test/helpers/hostile.ts,
    // written from Go's rules) says must be refused; the ones it cannot rule out are not sent, since
    // a valid one would (rightly) start a resolution.
    let hitsBefore = 0;
    before(async () => {
      hitsBefore = proxy.hits.length;
    });

    test(`${FUZZ_PER_ROUTE} hostile POST /api/builds: each a 4xx JSON error, nothing resolved or built`, { timeout: 120_000 }, async () => {
      const bodies = fc
        .sample(
          fc.oneof(
            { weight: 6, arbitrary: hostileSpec.map((s) => ({ ct: 'application/json', text: JSON.stringify(s) ?? 'null' })) },
            { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ ct: 'application/json', text: JSON.stringify(v) ?? 'null' })) },
            {
              weight: 1,
              arbitrary: fc.tuple(hostileSpec, fc.nat(60), fc.constantFrom(...HOSTILE_PIECES)).map(([s, at, p]) => {
                const j = JSON.stringify(s) ?? '{}';
                return { ct: 'application/json', text: j.slice(0, at) + p + j.slice(at) };
              }),
            },
            {
              weight: 1,
              arbitrary: fc
                .tuple(
                  fc.constantFrom(
                    'text/plain',
                    'application/x-www-form-urlencoded',
                    'application/json; charset=utf-16',
                    'multipart/form-data; boundary=x',
                    'application/json\r\nX-Injected: 1'.replace(/\r\n.*/, ''),
                  ),
                  hostileString,
                )
                .map(([ct, text]) => ({ ct, text })),
            },
            {
              weight: 1,
              arbitrary: fc
                .constantFrom(
                  '{"__proto__":{"os":"linux"}}',
                  '{"constructor":{"prototype":{"polluted":true}}}',
                  '',
                  '[]',
                  'null',
                  '"linux"',
                  '{"os":"linux","arch":"amd64","plugins":[{"module":"github.com/x/y","replace":"/etc"}]}',
                )
                .map((text) => ({ ct: 'application/json', text })),
            },
          ),
          { numRuns: FUZZ_PER_ROUTE * 3, seed: SEED },
        )
        .filter(({ ct, text }) => oracleMustRefuseBody(ct, text))
        .slice(0, FUZZ_PER_ROUTE);
      assert.equal(bodies.length, FUZZ_PER_ROUTE);
      const failures: string[] = [];
      await pool(bodies, 24, async ({ ct, text }) => {
        try {
          const res = await fetch(`${fuzz.url}/api/builds`, { method: 'POST', headers: { 'content-type': ct }, body: text });
          const body = assert4xxJson(res.status, res.headers.get('content-type'), await res.text(), 'POST /api/builds');
          assert.equal(typeof body.error.code, 'string');
          assert.equal(res.headers.get('x-injected'), null);
        } catch (err) {
          if (failures.length < 10) failures.push(`${(err as Error).message}\n  input (${ct}): ${JSON.stringify(text).slice(0, 400)}`);
        }
      });
      assert.deepEqual(failures, [], `seed ${SEED}`);
    });

    test(`${FUZZ_PER_ROUTE} hostile GET /api/download: each a 4xx JSON error, nothing resolved or built`, { timeout: 120_000 }, async () => {
      const rawPiece = fc.constantFrom('%0d%0aX-Injected:%20yes', '%00', '%zz', '%', '%E2%80%AE', '..%2f..%2f', '%2e%2e%2f', '+', '&&', '==', '@@', '%40', 'p=', '%25', ';', '%u002e');
      const queries = fc
        .sample(
          fc.oneof(
            {
              weight: 5,
              arbitrary: hostileQuery.map((q) => {
                const u = new URLSearchParams();
                for (const [k, v] of Object.entries(q)) for (const x of Array.isArray(v) ? v : [v]) u.append(k, x);
                return u.toString();
              }),
            },
            {
              weight: 3,
              arbitrary: fc
                .tuple(
                  fc.constantFrom('', 'os=linux&arch=amd64&', 'os=windows&arch=arm64&version=v2.11.9&'),
                  fc.array(
                    fc.tuple(
                      fc.constantFrom('p', 'os', 'arch', 'arm', 'version'),
                      fc.oneof(
                        rawPiece,
                        hostileString.map(encodeURIComponent),
                        fc.tuple(fc.constantFrom('github.com/mholt/caddy-l4', 'github.com/x/y'), rawPiece).map(([a, b]) => a + b),
                      ),
                    ),
                    { minLength: 1, maxLength: 4 },
                  ),
                )
                .map(([base, kvs]) => base + kvs.map(([k, v]) => `${k}=${v}`).join('&')),
            },
            { weight: 1, arbitrary: hostileString.map((s) => s.replace(/[#]/g, '')) },
          ),
          { numRuns: FUZZ_PER_ROUTE * 3, seed: SEED + 1 },
        )
        .map((q) => new URL(`${fuzz.url}/api/download?${q}`))
        // The oracle reads what the server receives, with the query-string parser Fastify's router uses.
        .filter((u) => oracleMustRefuseQuery(querystring.parse(u.search.slice(1)) as Record<string, string | string[]>))
        .slice(0, FUZZ_PER_ROUTE);
      assert.equal(queries.length, FUZZ_PER_ROUTE);
      const failures: string[] = [];
      await pool(queries, 24, async (u) => {
        try {
          const res = await fetch(u);
          const body = assert4xxJson(res.status, res.headers.get('content-type'), await res.text(), 'GET /api/download');
          assert.equal(body.status_code, res.status, 'compat envelope');
          assert.equal(res.headers.get('content-disposition'), null);
          assert.equal(res.headers.get('x-injected'), null);
        } catch (err) {
          if (failures.length < 10) failures.push(`${(err as Error).message}\n  url: ${u.pathname}${u.search.slice(0, 400)}`);
        }
      });
      assert.deepEqual(failures, [], `seed ${SEED + 1}`);
    });

    test('after the fuzzing: no go list, no xcaddy, the server is up; the detectors do work', async () => {
      assert.equal(proxy.hits.length, hitsBefore, `the fuzz inputs caused no module lookup: ${proxy.hits.slice(hitsBefore, hitsBefore + 5).join(', ')}`);
      assert.equal(await fuzzXcaddy.count(), 0, 'the build runner was never called');
      assert.equal(fuzz.proc.exitCode, null);
      assert.equal((await api(fuzz.url, '/healthz')).status, 200);
      assert.doesNotMatch(fuzz.output(), /"level":50/, 'no 5xx was logged');
      // Control: a valid request does reach the recording proxy, so a zero above means something.
      const r = await api(fuzz.url, '/api/builds', { json: { ...SPEC, plugins: [{ module: 'github.com/fairway-fuzz/detector', version: 'v1.0.0' }] } });
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.ok(
        proxy.hits.slice(hitsBefore).some((h) => h.includes('fairway-fuzz/detector')),
        'resolution goes through the recording proxy',
      );
    });
  });

  describe('path traversal and header injection on routes that take an id or a name', () => {
    const PAYLOADS = [
      '..',
      '.',
      '../../../../etc/passwd',
      '..%2F..%2Fetc%2Fpasswd',
      '..%2f..%2f..%2fetc%2fpasswd',
      '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      '..%252f..%252fetc%252fpasswd',
      '%2e%2e',
      '..%5c..%5cwindows%5cwin.ini',
      '%00',
      'abc%00.json',
      `${ZERO_ID}%00`,
      `${ZERO_ID}%2f..%2f..`,
      '%0d%0aX-Injected:%20yes',
      '%0aX-Injected:%20yes',
      `${ZERO_ID}%0d%0aContent-Disposition:%20attachment`,
      'a'.repeat(5000),
      '%E2%80%AE%E2%80%8B',
      '%C0%AE%C0%AE%2F',
      '%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E',
      'CON',
      'NUL',
      '~root',
      '%zz',
      ZERO_ID.toUpperCase(),
      `${'0'.repeat(63)}g`,
    ];
    const ROUTES: Array<[string, (p: string) => string, string?]> = [
      ['GET', (p) => `/api/builds/${p}`],
      ['DELETE', (p) => `/api/builds/${p}`],
      ['GET', (p) => `/api/builds/${p}/log`],
      ['GET', (p) => `/api/builds/${p}/log`, 'text/event-stream'],
      ['GET', (p) => `/api/builds/${p}/artifact`],
      ['HEAD', (p) => `/api/builds/${p}/artifact`],
      ['GET', (p) => `/api/builds/${p}/buildinfo`],
      ['GET', (p) => `/ui/${p}`],
      ['GET', (p) => `/api/catalog?path=${p}`],
      ['GET', (p) => `/api/packages?q=${p}`],
      ['GET', (p) => `/api/download?os=linux&arch=amd64&p=${p}`],
      ['GET', (p) => `/api/download?os=${p}&arch=amd64`],
    ];

    test('every route and payload: 4xx JSON (or an empty catalog result), no file content, no injected header', async () => {
      const failures: string[] = [];
      const cases = ROUTES.flatMap(([method, path, accept]) => PAYLOADS.map((p) => ({ method, url: path(p), accept })));
      await pool(cases, 16, async ({ method, url, accept }) => {
        try {
          const res = await rawHttp(fuzz.port, method, url, accept ? { accept } : {});
          const text = res.body;
          assert.doesNotMatch(text, /root:.*:0:0:|\[fonts\]|for 16-bit app support/, 'no file content');
          assert.equal(res.headers['x-injected'], undefined);
          assert.equal(res.headers['content-disposition'], undefined);
          if (res.status === 200 && url.startsWith('/api/packages?')) {
            // A search is harmless: JSON results, the hostile string is only a search term.
            const body = JSON.parse(text);
            assert.equal(body.status_code, 200);
            assert.ok(Array.isArray(body.result));
            return;
          }
          if (method === 'HEAD') return assert.ok(res.status >= 400 && res.status < 500, `HEAD ${res.status}`);
          assert4xxJson(res.status, res.headers['content-type'] ?? null, text, `${method} ${url.slice(0, 120)}`);
        } catch (err) {
          if (failures.length < 15) failures.push(`${method} ${url.slice(0, 150)}: ${(err as Error).message.slice(0, 300)}`);
        }
      });
      assert.deepEqual(failures, []);
      assert.equal(cases.length, ROUTES.length * PAYLOADS.length);
    });

    test('websocket log route: hostile ids are refused', async () => {
      for (const p of ['..%2F..%2Fetc%2Fpasswd', '%0d%0aX-Injected:%20yes', 'a'.repeat(5000), '%00']) {
        const r = await wsStatus(`${fuzz.url.replace('http', 'ws')}/api/builds/${p}/log`);
        if (r.status === 'open') {
          assert.equal(r.messages[0]?.type, 'error', p);
          assert.equal(r.messages[0]?.error.code, 'not_found');
          assert.equal(r.code, 1008);
        } else assert.ok(r.status >= 400 && r.status < 500, `${p.slice(0, 40)}: ${r.status}`);
      }
    });

    test('raw CR/LF, NUL and spaces in the request line: 400, nothing reflected, the server stays up', async () => {
      for (const line of [
        `GET /api/builds/x\r\nX-Injected: yes HTTP/1.1`,
        `GET /api/builds/a\0b HTTP/1.1`,
        `GET /api/builds/a b HTTP/1.1`,
        `GET /api/builds/${ZERO_ID}\rX-Injected:%20yes/artifact HTTP/1.1`,
        `GET /ui/\u0085x HTTP/1.1`,
      ]) {
        const out = await rawRequest(fuzz.port, `${line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        assert.match(out, /^HTTP\/1\.1 4\d\d /, JSON.stringify(line));
        assert.doesNotMatch(out.split('\r\n\r\n')[0]!, /x-injected/i);
      }
      const big = await fetch(`${fuzz.url}/api/builds/${'a'.repeat(20_000)}`);
      const bigBody = assert4xxJson(big.status, big.headers.get('content-type'), await big.text(), 'very long URL');
      assert.equal(big.status, 431);
      assert.equal(bigBody.error.code, 'header_too_large');
      assert.equal((await api(fuzz.url, '/healthz')).status, 200);
    });
  });

  describe('distributed mode with least-privilege Redis users', () => {
    test('a hub and an agent as the ACL users of docs/SECURITY.md run a build end to end', { timeout: BUILD_TIMEOUT }, async () => {
      const redis = await startRedis();
      const admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await admin.connect();
        // The rules from docs/SECURITY.md, verbatim.
        const rule = ['resetkeys', '~fairway:*', 'resetchannels', '+@all', '-@dangerous', '+info', '+client|setname', '+client|getname', '+client|id'];
        await admin.call('ACL', 'SETUSER', 'fairway-agent', 'on', '>agent-pw', ...rule);
        await admin.call('ACL', 'SETUSER', 'fairway-hub', 'on', '>hub-pw', ...rule, '+client|unblock');
        await admin.call('ACL', 'LOG', 'RESET');
        const url = (user: string, pw: string) => redis.url.replace('redis://', `redis://${user}:${pw}@`);
        // A real xcaddy build (the pinned xcaddy behind a counter) of Caddy with a real plugin, on the shared Go caches.
        const aclDir = join(dir, 'acl-xcaddy');
        await mkdir(aclDir, { recursive: true });
        const xcaddy = await countingXcaddy(aclDir);
        const bin = xcaddy.bin;
        const store = join(dir, 'acl-store');
        const hub = await startFairway({ command: 'hub', dataDir: join(dir, 'acl-hub'), args: ['--redis', url('fairway-hub', 'hub-pw'), '--store', store, '--xcaddy-bin', bin] });
        servers.push(hub);
        const agent = await startFairway({
          command: 'agent',
          dataDir: join(dir, 'acl-agent'),
          args: ['--redis', url('fairway-agent', 'agent-pw'), '--store', store, '--xcaddy-bin', bin, '--agent-id', 'acl-agent'],
        });
        servers.push(agent);
        const r = await api(hub.url, '/api/builds', { json: { ...SPEC, arch: 'arm64', plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        const done = await waitForBuild(hub.url, r.body.id, BUILD_TIMEOUT);
        assert.equal(done.status, 'succeeded', done.error);
        assert.equal(await xcaddy.count(), 1, 'the agent ran one real xcaddy build');
        const info = await api(hub.url, `/api/builds/${done.id}/buildinfo`);
        assert.equal(info.status, 200, JSON.stringify(info.body));
        assert.ok(
          info.body.Deps.some((d: any) => d.Path === PLUGIN.module && d.Version === PLUGIN.version),
          'the built binary holds the plugin',
        );
        assert.ok(
          info.body.Deps.some((d: any) => d.Path === 'github.com/caddyserver/caddy/v2' && d.Version === CADDY_VERSION),
          'and that Caddy',
        );
        const art = await fetch(`${hub.url}/api/builds/${done.id}/artifact`);
        assert.equal(art.status, 200);
        const binary = Buffer.from(await art.arrayBuffer());
        assert.equal(binary.subarray(1, 4).toString(), 'ELF', 'a real binary from the store');
        assert.ok(binary.length > 10_000_000, `a real Caddy binary (${binary.length} bytes)`);
        assert.deepEqual(
          (await api(hub.url, '/api/agents')).body.agents.map((a: any) => a.id),
          ['acl-agent'],
        );
        assert.deepEqual(await admin.call('ACL', 'LOG'), [], 'no command or key was denied');
        // And the agent user really is confined.
        const confined = new Redis(url('fairway-agent', 'agent-pw'), { lazyConnect: true, maxRetriesPerRequest: 1 });
        await confined.connect();
        await assert.rejects(confined.set('other:key', '1'), /NOPERM/);
        await assert.rejects(confined.call('FLUSHALL'), /NOPERM/);
        await assert.rejects(confined.call('CONFIG', 'GET', 'dir'), /NOPERM/);
        confined.disconnect();
        await Promise.all([hub.stop('SIGKILL'), agent.stop('SIGKILL')]);
      } finally {
        admin.disconnect();
        await redis.destroy();
      }
    });
  });

  describe('the build environment', () => {
    test("a real build: xcaddy gets only allowlisted variables, none of the server's secrets; limits apply", { timeout: BUILD_TIMEOUT }, async () => {
      const secrets = {
        FAIRWAY_TEST_SECRET: `hunter2-${randomBytes(12).toString('hex')}`,
        AWS_SECRET_ACCESS_KEY: randomBytes(30).toString('base64'),
        AWS_ACCESS_KEY_ID: `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
        GITHUB_TOKEN: `ghp_${randomBytes(18).toString('hex')}`,
        FAIRWAY_TOKENS: `ci:build:${hex(tokens.builder)}`,
        DATABASE_URL: `postgres://app:${randomBytes(8).toString('hex')}@db/app`,
        // Canaries that would change the build if they leaked.
        GOFLAGS: '-toolexec=/bin/false',
        GOINSECURE: '*',
        HTTPS_PROXY: 'http://127.0.0.1:9',
      };
      const envDir = join(dir, 'envdump');
      await mkdir(envDir, { recursive: true });
      const dumper = await envDumpingXcaddy(envDir);
      const sizeDir = join(dir, 'size');
      await mkdir(sizeDir, { recursive: true });
      const sizeXcaddy = await countingXcaddy(sizeDir);
      const [server, small] = await Promise.all([
        startFairway({ dataDir: join(dir, 'env-data'), args: ['--xcaddy-bin', dumper.bin, '--caddy-versions', '>=v2.11.0 <v3'], env: secrets }),
        startFairway({ dataDir: join(dir, 'size-data'), args: ['--xcaddy-bin', sizeXcaddy.bin, '--max-artifact-size', '1MB'] }),
      ]);
      servers.push(server, small);
      const auth = bearer(tokens.builder);
      const [res, res2] = await Promise.all([api(server.url, '/api/builds', { json: SPEC, headers: auth }), api(small.url, '/api/builds', { json: SPEC })]);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res2.status, 202, JSON.stringify(res2.body));
      const [done, tooBig] = await Promise.all([waitForBuild(server.url, res.body.id, BUILD_TIMEOUT), waitForBuild(small.url, res2.body.id, BUILD_TIMEOUT)]);
      assert.equal(done.status, 'succeeded', done.error);

      const dumps = await dumper.dumps();
      assert.equal(dumps.length, 1, 'one xcaddy build');
      const env = dumps[0]!;
      const allowed = new Set<string>(ENV_ALLOWLIST);
      for (const name of Object.keys(env)) assert.ok(allowed.has(name), `${name} reached xcaddy but is not allowlisted`);
      for (const [name, value] of Object.entries(secrets)) {
        assert.equal(env[name] === value, false, `${name} leaked`);
        for (const [k, v] of Object.entries(env)) assert.ok(!v.includes(value), `the value of ${name} leaked into ${k}`);
      }
      assert.equal(env.CGO_ENABLED, '0');
      assert.match(env.GOFLAGS ?? '', /^-mod=mod( -buildvcs=false)?$/, "the server's fixed GOFLAGS, not the inherited one");
      assert.equal(env.GOINSECURE, undefined);
      assert.notEqual(env.GOSUMDB, 'off');
      assert.equal(env.GOOS, 'linux');
      assert.ok(!server.output().includes(secrets.FAIRWAY_TEST_SECRET), 'the server does not log secrets');

      // The artifact: a fixed, safe Content-Disposition.
      const dl = await fetch(`${server.url}/api/builds/${done.id}/artifact`, { method: 'HEAD', headers: auth });
      assert.equal(dl.headers.get('content-disposition'), 'attachment; filename="caddy_linux_amd64"');
      // Range policy after resolution: "v2.10" resolves to a v2.10.x release, outside >=v2.11.0.
      const old = await api(server.url, '/api/builds', { json: { ...SPEC, caddyVersion: 'v2.10' }, headers: auth });
      assert.equal(old.status, 403, JSON.stringify(old.body));
      assert.match(old.body.error.message, /Caddy v2\.10\.\d+ is outside the versions this server builds/);
      assert.equal((await dumper.dumps()).length, 1, 'no build for it');

      // Max artifact size: the same build on a server with a 1 MB limit fails; no binary is stored.
      assert.equal(tooBig.status, 'failed');
      assert.match(tooBig.error, /over the limit of 1000000/);
      const stored = await readdir(join(dir, 'size-data', 'artifacts', tooBig.id));
      assert.ok(!stored.includes('binary'), `stored: ${stored.join(', ')}`);
      assert.equal((await api(small.url, `/api/builds/${tooBig.id}/artifact`)).status, 409);
    });
  });
});
