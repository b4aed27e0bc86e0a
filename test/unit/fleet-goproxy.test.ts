// The fleet module proxy (docs/distributed.md "Fleet caches"): the path checks at the edge, the
// read-through cache with one fill per module@version for concurrent misses, the route's
// scope (agent: never anonymous, 403 for a token without it) and its 400/404 answers, and the
// relay sending the fleet token to the fleet upstream only. No Go here: the fill is a function
// that writes the files the go command would (the test is about the cache around it, not about
// go; test/integration/fleet-proxy.test.ts runs the real go command on a real hub).
//   node --import tsx --test test/unit/fleet-goproxy.test.ts
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyPluginAsync } from 'fastify';
import type { OpenAPIV3 } from 'openapi-types';
import { goproxyApi } from '../../src/api/index.js';
import { TokenAuthenticator, expandScopes } from '../../src/auth/index.js';
import { loadConfig } from '../../src/config/index.js';
import { FleetModuleProxy } from '../../src/fleet/index.js';
import { GoproxyPathError, parseGoproxyPath, type FillRequest, type GoproxyResult } from '../../src/fleet/goproxy.js';
import { startModuleRelay, type ModuleRelay } from '../../src/sandbox/modproxy.js';
import { testApi, type TestApi } from '../helpers/api.js';

const refused = (raw: string, status: 400 | 404) => {
  assert.throws(
    () => parseGoproxyPath(raw),
    (e: unknown) => e instanceof GoproxyPathError && e.status === status,
    `${raw} → ${status}`,
  );
};

describe('fleet proxy: request paths', () => {
  test('accepts what the go command sends, case-escaped and percent-encoded', () => {
    assert.deepEqual(parseGoproxyPath('github.com/%21burnt%21sushi/toml/@v/v1.2.0.zip'), {
      kind: 'file',
      file: 'zip',
      module: 'github.com/BurntSushi/toml',
      version: 'v1.2.0',
      escapedModule: 'github.com/!burnt!sushi/toml',
      escapedVersion: 'v1.2.0',
    });
    const p = parseGoproxyPath('golang.org/x/text/@v/v0.0.0-20191109021931-daa7c04131f5.mod');
    assert.equal(p.kind === 'file' && p.version, 'v0.0.0-20191109021931-daa7c04131f5');
    const q = parseGoproxyPath('example.com/a_b~c/v2/@v/v2.0.0-!r!c.1+incompatible.info?x=1');
    assert.equal(q.kind === 'file' && q.version, 'v2.0.0-RC.1+incompatible');
    assert.deepEqual(parseGoproxyPath('example.com/m/@v/list'), { kind: 'not-served', what: 'list', module: 'example.com/m' });
    assert.deepEqual(parseGoproxyPath('example.com/m/@latest'), { kind: 'not-served', what: 'latest', module: 'example.com/m' });
  });

  test('refuses traversal, flags, bad escaping, non-canonical versions and oversize paths (400)', () => {
    for (const raw of [
      '../etc/passwd/@v/v1.0.0.zip',
      'example.com/../../x/@v/v1.0.0.zip',
      'example.com/%2e%2e/x/@v/v1.0.0.zip',
      'example.com/./x/@v/v1.0.0.zip',
      'example.com//x/@v/v1.0.0.zip',
      'example.com/x/@v/..%2f..%2fv1.0.0.zip',
      '-json/@v/v1.0.0.zip',
      '-modfile=x.example/@v/v1.0.0.zip',
      'example.com/x/@v/-v1.0.0.zip',
      'example.com/x/@v/--json.zip',
      'Example.com/x/@v/v1.0.0.zip',
      'example.com/X/@v/v1.0.0.zip',
      'example.com/!/@v/v1.0.0.zip',
      'example.com/!!x/@v/v1.0.0.zip',
      'example.com/x!/@v/v1.0.0.zip',
      'localhost/x/@v/v1.0.0.zip',
      'example.com/.x/@v/v1.0.0.zip',
      'example.com/x./@v/v1.0.0.zip',
      'example.com/x y/@v/v1.0.0.zip',
      'example.com/x%00/@v/v1.0.0.zip',
      'example.com/x\\y/@v/v1.0.0.zip',
      'example.com/x%25/@v/v1.0.0.zip',
      'example.com/x/@v/latest.info',
      'example.com/x/@v/master.zip',
      'example.com/x/@v/v1.2.zip',
      'example.com/x/@v/v01.0.0.zip',
      'example.com/x/@v/v1.0.0-01.zip',
      'example.com/x/@v/v1.0.0+meta.zip',
      'example.com/x/@v/V1.0.0.zip',
      'example.com/x/@v/v1.0.0-RC1.zip',
      'example.com/x/@v/v1.0.0.tar',
      'example.com/x/@v/v1.0.0.zip/extra',
      'example.com/x',
      'example.com/x/@v/',
      `example.com/${'a'.repeat(600)}/@v/v1.0.0.zip`,
      `example.com/x/@v/v1.0.0-${'a'.repeat(200)}.zip`,
      `example.com/${'a/'.repeat(600)}x/@v/v1.0.0.zip`,
      'example.com/x/@v/v1.0.0.zip%ZZ',
    ])
      refused(raw, 400);
    for (const raw of ['sumdb/sum.golang.org/supported', 'sumdb/sum.golang.org/lookup/example.com/x@v1.0.0']) refused(raw, 404);
  });
});

/** Writes what `go mod download` (zip) or `go list -m` (meta) leaves in the download cache. */
async function writeCache(dir: string, r: FillRequest): Promise<void> {
  const base = join(dir, ...r.module.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`).split('/'), '@v');
  await mkdir(base, { recursive: true });
  await writeFile(join(base, `${r.version}.info`), JSON.stringify({ Version: r.version }));
  await writeFile(join(base, `${r.version}.mod`), `module ${r.module}\n`);
  if (r.what === 'zip') {
    await writeFile(join(base, `${r.version}.zip`), 'PK-zip');
    await writeFile(join(base, `${r.version}.ziphash`), 'h1:x');
  }
}

describe('fleet proxy: read-through cache', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fairway-fleet-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('concurrent misses for one module@version fill once; then hits; a zip without its .ziphash is not a hit', async () => {
    const fills: FillRequest[] = [];
    const results: GoproxyResult[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const proxy = new FleetModuleProxy({
      downloadDir: join(dir, 'a'),
      fill: async (r) => {
        fills.push(r);
        await gate;
        await writeCache(join(dir, 'a'), r);
      },
      onResult: (r) => results.push(r),
    });
    const path = 'example.com/!fleet/m/@v/v1.0.0.zip';
    const pending = Array.from({ length: 5 }, () => proxy.answer(path));
    await new Promise((r) => setTimeout(r, 20));
    release();
    const answers = await Promise.all(pending);
    assert.deepEqual(fills, [{ module: 'example.com/Fleet/m', version: 'v1.0.0', what: 'zip' }], 'one fill for five concurrent misses');
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(a.result, 'fill');
      assert.equal(a.status === 200 && a.file, join(dir, 'a', 'example.com', '!fleet', 'm', '@v', 'v1.0.0.zip'));
    }
    const hit = await proxy.answer(path);
    assert.equal(hit.result, 'hit');
    assert.equal((await proxy.answer('example.com/!fleet/m/@v/v1.0.0.mod')).result, 'hit', 'the zip fill brought the .mod');
    assert.equal(fills.length, 1);
    // .info/.mod misses fill "meta" (go list -m), not the zip.
    assert.equal((await proxy.answer('example.com/!fleet/m/@v/v1.1.0.mod')).result, 'fill');
    assert.deepEqual(fills[1], { module: 'example.com/Fleet/m', version: 'v1.1.0', what: 'meta' });
    // A zip whose .ziphash is missing (a download in progress or interrupted) is filled again.
    await rm(join(dir, 'a', 'example.com', '!fleet', 'm', '@v', 'v1.0.0.ziphash'));
    assert.equal((await proxy.answer(path)).result, 'fill');
    assert.equal(fills.length, 3);
    assert.deepEqual(results, ['fill', 'fill', 'fill', 'fill', 'fill', 'hit', 'hit', 'fill', 'fill']);
  });

  test('a failed fill answers 404 with the reason (the agent asks the next proxy), remembered for a while', async () => {
    let calls = 0;
    const proxy = new FleetModuleProxy({
      downloadDir: join(dir, 'b'),
      fill: async () => {
        calls++;
        throw Object.assign(new Error('go exited with code 1'), { stderr: 'go: example.com/gone@v1.0.0: reading https://proxy/…: 404 Not Found\n' });
      },
    });
    const a = await proxy.answer('example.com/gone/@v/v1.0.0.info');
    assert.equal(a.status, 404);
    assert.match(a.status === 404 ? a.message : '', /example\.com\/gone@v1\.0\.0 could not be fetched: go: .*404 Not Found/);
    assert.equal((await proxy.answer('example.com/gone/@v/v1.0.0.info')).status, 404);
    assert.equal(calls, 1, 'the failure is remembered (failureTtlMs)');
    const b = await proxy.answer('example.com/gone/@v/list');
    assert.equal(b.status, 404);
    assert.equal(calls, 1, 'list is never filled');
    const c = await proxy.answer('example.com/gone/@v/v1.0.0.zip/../../../../x.info');
    assert.equal(c.status, 400);
    assert.equal(calls, 1);
  });

  test('a module the policy denies or a private one: 403 before the cache or a fill; cached copies are not served either', async () => {
    const d = join(dir, 'c');
    let calls = 0;
    const proxy = new FleetModuleProxy({
      downloadDir: d,
      fill: async (r) => {
        calls++;
        await writeCache(d, r);
      },
      refuse: (m) => (m.toLowerCase().startsWith('evil.example/') ? `module ${m} is denied` : null),
    });
    // Already in the cache (fetched before the deny): still refused.
    await writeCache(d, { module: 'evil.example/x', version: 'v1.0.0', what: 'zip' });
    for (const path of ['evil.example/x/@v/v1.0.0.zip', 'evil.example/x/@v/v1.0.1.mod', 'evil.example/!x/@v/v1.0.0.info', 'evil.example/x/@v/list', 'evil.example/x/@latest']) {
      const a = await proxy.answer(path);
      assert.equal(a.status, 403, path);
      assert.match(a.status === 403 ? a.message : '', /evil\.example\/x is denied/i);
    }
    assert.equal(calls, 0, 'no fill for a refused module');
    assert.equal((await proxy.answer('good.example/y/@v/v1.0.0.mod')).status, 200);
    assert.equal(calls, 1);
  });

  test('at most maxConcurrentFills fills at once, a bounded queue behind them (503 beyond); refusals are not remembered', async () => {
    const d = join(dir, 'd');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const proxy = new FleetModuleProxy({
      downloadDir: d,
      maxConcurrentFills: 2,
      maxQueuedFills: 3,
      fill: async (r) => {
        await gate;
        await writeCache(d, r);
      },
    });
    const paths = Array.from({ length: 7 }, (_, i) => `example.com/cap${i}/@v/v1.0.0.mod`);
    const pending = paths.map((p) => proxy.answer(p));
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(proxy.running, 2, 'two fills run');
    release();
    const answers = await Promise.all(pending);
    assert.deepEqual(
      answers.map((a) => a.status),
      [200, 200, 200, 200, 200, 503, 503],
    );
    assert.match(answers[6]!.status === 503 ? answers[6]!.message : '', /busy: 2 module fills running and 3 waiting; ask the next proxy/);
    assert.equal(proxy.peakRunning, 2);
    assert.equal(proxy.running, 0);
    // A busy answer is not a remembered failure: asked again, it is filled.
    assert.equal((await proxy.answer(paths[6]!)).status, 200);
  });

  test('a fill needs the free disk space (507 otherwise, nothing fetched, not remembered)', async () => {
    const d = join(dir, 'e');
    let low = true;
    let calls = 0;
    const proxy = new FleetModuleProxy({
      downloadDir: d,
      fill: async (r) => {
        calls++;
        await writeCache(d, r);
      },
      lowDisk: async () => (low ? 'not enough free disk space (1 MiB free, minFreeDisk 2 GiB)' : null),
    });
    const a = await proxy.answer('example.com/disk/@v/v1.0.0.zip');
    assert.equal(a.status, 507);
    assert.match(a.status === 507 ? a.message : '', /not enough free disk space .*; ask the next proxy/);
    assert.equal(calls, 0);
    low = false;
    assert.equal((await proxy.answer('example.com/disk/@v/v1.0.0.zip')).status, 200);
    assert.equal(calls, 1);
  });
});

describe('fleet proxy: the route', () => {
  let t: TestApi;
  let dir: string;
  let fills = 0;
  const secret = (s: string) => `fw_${s.padEnd(40, 'x')}`;
  const hash = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
  const bearer = (s: string) => ({ authorization: `Bearer ${secret(s)}` });
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fairway-fleet-route-'));
    const proxy = new FleetModuleProxy({
      downloadDir: dir,
      fill: async (r) => {
        fills++;
        await writeCache(dir, r);
      },
    });
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'agent1', hash: hash(secret('agent1')), scopes: ['agent'] },
        { name: 'builder', hash: hash(secret('builder')), scopes: ['build'] },
        { name: 'ops', hash: hash(secret('ops')), scopes: ['admin'] },
      ],
      anonymousScopes: ['read', 'build'],
    });
    const plugin: FastifyPluginAsync = async (app) => {
      await app.register(goproxyApi, { proxy });
    };
    t = await testApi({ security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 }, plugins: [plugin] });
  });
  after(async () => {
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the agent scope: never anonymous, not implied by build; admin implies it', async () => {
    assert.ok(!expandScopes(['build']).has('agent'));
    assert.ok(expandScopes(['admin']).has('agent'));
    assert.throws(() => new TokenAuthenticator({ tokens: [], anonymousScopes: ['agent'] }), /anonymous clients can never have the agent scope/);
    const url = '/goproxy/example.com/m/@v/v1.0.0.mod';
    const anon = await t.app.inject({ method: 'GET', url });
    assert.equal(anon.statusCode, 401, anon.body);
    assert.match(anon.json().error.message, /agent scope/);
    const wrong = await t.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${secret('nobody')}` } });
    assert.equal(wrong.statusCode, 401);
    const build = await t.app.inject({ method: 'GET', url, headers: bearer('builder') });
    assert.equal(build.statusCode, 403, build.body);
    assert.equal(fills, 0, 'nothing was fetched for a refused request');
    const ok = await t.app.inject({ method: 'GET', url, headers: bearer('agent1') });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.body, 'module example.com/m\n');
    assert.match(String(ok.headers['content-type']), /^text\/plain/);
    assert.equal(fills, 1);
    const zip = await t.app.inject({ method: 'GET', url: '/goproxy/example.com/m/@v/v1.0.0.zip', headers: bearer('ops') });
    assert.equal(zip.statusCode, 200, zip.body);
    assert.equal(zip.headers['content-type'], 'application/zip');
    assert.equal(zip.body, 'PK-zip');
  });

  test('400 for what is not a module request, 404 for list/@latest/sumdb, as plain text', async () => {
    for (const url of [
      '/goproxy/example.com/m/@v/..%2f..%2f..%2fetc%2fpasswd.mod',
      '/goproxy/-json/@v/v1.0.0.zip',
      '/goproxy/example.com/M/@v/v1.0.0.zip',
      '/goproxy/example.com/m/@v/master.zip',
      '/goproxy/x',
    ]) {
      const res = await t.app.inject({ method: 'GET', url, headers: bearer('agent1') });
      assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
      assert.match(String(res.headers['content-type']), /^text\/plain/);
    }
    for (const url of ['/goproxy/example.com/m/@v/list', '/goproxy/example.com/m/@latest', '/goproxy/sumdb/sum.golang.org/supported']) {
      const res = await t.app.inject({ method: 'GET', url, headers: bearer('agent1') });
      assert.equal(res.statusCode, 404, `${url}: ${res.body}`);
      assert.match(res.body, /next proxy/);
    }
    assert.equal(fills, 2, 'only the valid exact-version requests were filled');
  });

  test('is in the OpenAPI document', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json() as OpenAPIV3.Document;
    const paths = Object.keys(doc.paths).filter((p) => p.startsWith('/goproxy/'));
    assert.equal(paths.length, 1, JSON.stringify(Object.keys(doc.paths)));
    assert.ok(doc.paths[paths[0]!]?.get?.tags?.includes('ops'));
  });
});

describe('the module relay sends an upstream its headers only', () => {
  const seen: Array<{ server: string; path: string; auth: string | undefined }> = [];
  const servers: http.Server[] = [];
  let relay: ModuleRelay;
  const listen = async (name: string, handler: (path: string) => [number, string]) => {
    const s = http.createServer((req, res) => {
      seen.push({ server: name, path: req.url ?? '', auth: req.headers.authorization });
      const [status, body] = handler(req.url ?? '');
      res.writeHead(status, { 'content-type': 'text/plain' }).end(body);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ socketPath: relay.socketPath, path }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
  before(async () => {
    // The fleet upstream refuses v1 (403: a token without the scope) and serves v2; the next one serves everything.
    const fleet = await listen('fleet', (p) => (p.includes('v1.0.0') ? [403, 'forbidden'] : [200, 'from fleet']));
    const next = await listen('next', () => [200, 'from next']);
    relay = await startModuleRelay({
      upstreams: [
        { url: `${fleet}/goproxy`, fallThrough: 'any-error', headers: { authorization: 'Bearer fw_secret_fleet_token_0123456789' } },
        { url: next, fallThrough: 'not-found' },
      ],
    });
  });
  after(async () => {
    await relay?.close();
    for (const s of servers) await new Promise<void>((r) => s.close(() => r()));
  });

  test('the fleet upstream gets the token, the next proxy never; a refusal falls through', async () => {
    assert.deepEqual(await get('/example.com/m/@v/v2.0.0.mod'), { status: 200, body: 'from fleet' });
    assert.deepEqual(await get('/example.com/m/@v/v1.0.0.mod'), { status: 200, body: 'from next' });
    assert.deepEqual(seen, [
      { server: 'fleet', path: '/goproxy/example.com/m/@v/v2.0.0.mod', auth: 'Bearer fw_secret_fleet_token_0123456789' },
      { server: 'fleet', path: '/goproxy/example.com/m/@v/v1.0.0.mod', auth: 'Bearer fw_secret_fleet_token_0123456789' },
      { server: 'next', path: '/example.com/m/@v/v1.0.0.mod', auth: undefined },
    ]);
  });
});

describe('fleet settings', () => {
  test('fleetProxy is a hub URL without credentials; fleetToken comes from the environment and is a bearer token', () => {
    const c = loadConfig({ env: { FAIRWAY_FLEET_PROXY: 'https://hub.example:8443/fairway/', FAIRWAY_FLEET_TOKEN: 'fw_0123456789abcdef0123' } });
    assert.equal(c.fleetProxy, 'https://hub.example:8443/fairway');
    assert.equal(c.fleetToken, 'fw_0123456789abcdef0123');
    assert.throws(() => loadConfig({ env: {}, flags: { fleetProxy: 'https://agent:secret@hub.example' } }), /fleetProxy: the hub URL without credentials/);
    assert.throws(() => loadConfig({ env: {}, flags: { fleetProxy: 'ftp://hub.example' } }), /fleetProxy/);
    assert.throws(() => loadConfig({ env: { FAIRWAY_FLEET_TOKEN: 'short' } }), /fleetToken: a token must be 16 to 512 characters/);
  });
});
