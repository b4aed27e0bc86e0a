/**
 * Issue 26, point 1 (inject, the real service, queue, store, registry and GoResolver; only the go
 * command is a stand-in that counts its calls): builds need the `build` scope whatever route asks.
 *  - a table over every route that can start a build or a resolution: anonymous and `read`
 *    clients start no go command and queue no job; `build` does both;
 *  - a tag pull without `build` is served from what is built, else MANIFEST_UNKNOWN saying how to
 *    have it built;
 *  - the stampede of `2.99.<n>` costs no go command without `build`; with it, a failing query runs
 *    go once per memory window (resolveFailureTtl);
 *  - one admission: the build rate limit and maxActiveBuilds before any resolution, on the registry
 *    too; at most maxResolutions go commands at once (a 50-plugin request included), 503
 *    resolver_busy with Retry-After past the wait.
 *   node --import tsx --test test/unit/admission.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { BuildAdmission } from '../../src/policy/index.js';
import { GoResolver } from '../../src/resolve/index.js';
import { BUILD_FLAGS, CADDY_MODULE, type ResolvedSpec } from '../../src/request/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';
import { putSucceededBuild, testApi, type TestApi } from '../helpers/api.js';

const READ = 'fw_admission_read_0123456789abcdef';
const BUILD = 'fw_admission_build_0123456789abcde';
const ADMIN = 'fw_admission_admin_0123456789abcde';
const L4 = 'github.com/mholt/caddy-l4';
const TOOLCHAIN = { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Client = 'anonymous' | 'read' | 'build';
const HEADERS: Record<Client, Record<string, string>> = {
  anonymous: {},
  read: { authorization: `Bearer ${READ}` },
  build: { authorization: `Bearer ${BUILD}` },
};

/**
 * The go command as GoResolver runs it, without Go: `go list -m -json mod@query` answers exact
 * versions as they are and `latest` as v2.11.9 (Caddy) or v0.1.2; versions v2.99.* and modules
 * named `nonexistent` fail as the module proxy's 404 would. Counts calls and the most at once.
 */
function standInGo(delayMs = 0) {
  const s = { calls: [] as string[], running: 0, most: 0 };
  const toolchain = {
    identity: { go: TOOLCHAIN.go, xcaddy: TOOLCHAIN.xcaddy },
    go: async (args: string[]) => {
      s.calls.push(args.join(' '));
      s.running++;
      s.most = Math.max(s.most, s.running);
      try {
        await sleep(delayMs);
        if (args.includes('-versions')) return { stdout: JSON.stringify({ Path: CADDY_MODULE, Versions: ['v2.11.8', 'v2.11.9'] }), stderr: '' };
        const target = args[args.length - 1]!;
        const at = target.lastIndexOf('@');
        const [module, query] = [target.slice(0, at), target.slice(at + 1)];
        if (/^v2\.99\./.test(query) || module.includes('nonexistent')) {
          throw Object.assign(new Error('exit status 1'), { stderr: `go: ${target}: reading http://127.0.0.1:3128/${module}/@v/${query}.info: 404 Not Found` });
        }
        const version = query === 'latest' ? (module === CADDY_MODULE ? 'v2.11.9' : 'v0.1.2') : query;
        return { stdout: JSON.stringify({ Path: module, Version: version }), stderr: '' };
      } finally {
        s.running--;
      }
    },
  } as unknown as Toolchain;
  return { s, toolchain };
}

function auth(anonymousScopes: Array<'read' | 'build'> = ['read']): TokenAuthenticator {
  return new TokenAuthenticator({
    tokens: [
      { name: 'reader', hash: sha256Hash(READ), scopes: ['read'] },
      { name: 'builder', hash: sha256Hash(BUILD), scopes: ['build'] },
      { name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] },
    ],
    anonymousScopes,
  });
}

/** Puts a succeeded build of linux/<arch> at `caddyVersion` into the store, as the job processor would. */
function putBuild(t: TestApi, arch: string, caddyVersion: string, plugins: ResolvedSpec['plugins'] = [], flags = TOOLCHAIN.flags): Promise<string> {
  const spec: ResolvedSpec = { caddyVersion, os: 'linux', arch, plugins, toolchain: { ...TOOLCHAIN, flags } };
  return putSucceededBuild(t, spec, {
    request: { caddyVersion, os: 'linux', arch, plugins: plugins.map((p) => ({ module: p.module, ...(p.version ? { version: p.version } : {}) })) },
    seed: `caddy-${arch}-${caddyVersion}-${plugins.length}`,
    at: '2026-12-01T08:00:00.000Z',
  });
}

async function activeJobs(t: TestApi, keys: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const k of keys) {
    const j = await t.queue.get(k);
    if (j && (j.state === 'queued' || j.state === 'running')) out.push(k);
  }
  return out;
}

function ociError(body: string): { code: string; message: string } {
  return (JSON.parse(body) as { errors: Array<{ code: string; message: string }> }).errors[0]!;
}

describe('builds need the build scope, whatever route asks (tokens configured, anonymous read)', () => {
  let t: TestApi;
  let go: ReturnType<typeof standInGo>;
  let built: string;
  let n = 0;
  before(async () => {
    go = standInGo();
    const resolver = new GoResolver(go.toolchain, { buildFlags: TOOLCHAIN.flags });
    t = await testApi({
      resolver,
      security: { auth: auth(), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 },
      registry: { recipes: { l4: { plugins: [{ module: L4 }] } }, waitMs: 200 },
    });
    // Built with the server's flags, so it may be rebuilt.
    built = await putBuild(t, 'amd64', 'v2.11.7', [], BUILD_FLAGS);
  });
  after(async () => t?.close());

  /** Every route that can start a build or a resolution, each with a version nothing asked for yet. */
  const routes: Array<{ name: string; run(h: Record<string, string>): Promise<{ status: number; body: string }>; refused: number[] }> = [
    {
      name: 'POST /api/builds',
      run: async (h) =>
        t.app
          .inject({ method: 'POST', url: '/api/builds', headers: h, payload: { caddyVersion: `v2.11.${100 + n++}`, os: 'linux', arch: 'amd64' } })
          .then((r) => ({ status: r.statusCode, body: r.body })),
      refused: [401, 403],
    },
    {
      name: 'GET /api/download',
      run: async (h) => blocking(() => t.app.inject({ method: 'GET', url: `/api/download?os=linux&arch=amd64&version=v2.11.${100 + n++}`, headers: h })),
      refused: [401, 403],
    },
    {
      name: 'HEAD /api/download',
      run: async (h) => blocking(() => t.app.inject({ method: 'HEAD', url: `/api/download?os=linux&arch=arm64&version=v2.11.${100 + n++}`, headers: h })),
      refused: [401, 403],
    },
    {
      name: 'GET /v2/caddy/manifests/<version>',
      run: async (h) => blocking(() => t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/2.11.${100 + n++}`, headers: h })),
      refused: [404],
    },
    {
      name: 'HEAD /v2/caddy/manifests/<version>',
      run: async (h) => blocking(() => t.app.inject({ method: 'HEAD', url: `/v2/caddy/manifests/v2.11.${100 + n++}`, headers: h })),
      refused: [404],
    },
    {
      name: 'GET /v2/caddy/l4/manifests/<version> (a recipe, its plugin at latest)',
      run: async (h) => blocking(() => t.app.inject({ method: 'GET', url: `/v2/caddy/l4/manifests/2.11.${100 + n++}`, headers: h })),
      refused: [404],
    },
    {
      name: 'POST /api/builds/:id/rebuild',
      run: async (h) => t.app.inject({ method: 'POST', url: `/api/builds/${built}/rebuild`, headers: h }).then((r) => ({ status: r.statusCode, body: r.body })),
      refused: [401, 403],
    },
    {
      name: 'GET /api/versions?refresh=1',
      run: async (h) => t.app.inject({ method: 'GET', url: '/api/versions?refresh=1', headers: h }).then((r) => ({ status: r.statusCode, body: r.body })),
      refused: [401, 403],
    },
  ];

  /** Runs a request that waits for builds; once jobs are queued, cancels them so it answers. */
  async function blocking(run: () => Promise<{ statusCode: number; body: string }>): Promise<{ status: number; body: string }> {
    const before = t.calls.jobs;
    const p = run();
    let done = false;
    void p.finally(() => {
      done = true;
    });
    while (!done) {
      await sleep(20);
      if (t.calls.jobs > before) {
        // Cancel whatever is queued or running (the stand-in jobs never end by themselves).
        const depth = await t.queue.depth();
        if (depth.running + depth.queued > 0) {
          for (const j of await allActive()) await t.service.cancel(j).catch(() => undefined);
        }
      }
    }
    const r = await p;
    return { status: r.statusCode, body: r.body };
  }

  /** Jobs the stand-in queue holds now (keys of every build request made so far). */
  const asked = new Set<string>();
  async function allActive(): Promise<string[]> {
    return activeJobs(t, [...asked]);
  }
  // Remember every key a job was queued under, so blocking() can cancel it.
  before(() => {
    const enqueue = t.queue.enqueue.bind(t.queue);
    t.queue.enqueue = (key, payload) => {
      asked.add(key);
      return enqueue(key, payload);
    };
  });

  for (const route of routes) {
    for (const client of ['anonymous', 'read', 'build'] as const) {
      test(`${route.name}, ${client}: ${client === 'build' ? 'resolves and builds' : 'no go command, no job'}`, async () => {
        const goBefore = go.s.calls.length;
        const jobsBefore = t.calls.jobs;
        const r = await route.run(HEADERS[client]);
        const ran = go.s.calls.length - goBefore;
        const jobs = t.calls.jobs - jobsBefore;
        if (client !== 'build') {
          assert.ok(route.refused.includes(r.status), `${route.name} by ${client}: ${r.status} ${r.body}`);
          assert.equal(ran, 0, `no go command (ran: ${go.s.calls.slice(goBefore).join('; ')})`);
          assert.equal(jobs, 0, 'no job queued');
          if (r.status === 404 && r.body) {
            const e = ociError(r.body);
            assert.equal(e.code, 'MANIFEST_UNKNOWN');
            assert.match(e.message, /not built yet/);
            assert.match(e.message, /build scope/);
            assert.match(e.message, /POST \/api\/builds/);
          }
          return;
        }
        // A rebuild resolves nothing (its spec is the finished build's); every other route does.
        if (!route.name.includes('rebuild')) assert.ok(ran >= 1, `${route.name} by a build client runs go (${r.status} ${r.body})`);
        if (route.name.startsWith('GET /api/versions')) {
          assert.equal(r.status, 200);
          return;
        }
        assert.ok(jobs >= 1, `${route.name} by a build client queues a build (${r.status} ${r.body})`);
        for (const j of await allActive()) await t.service.cancel(j).catch(() => undefined);
      });
    }
  }

  test('a tag without build: what is built is served (no go command); what is not is MANIFEST_UNKNOWN until a build client pulls it', async () => {
    await putBuild(t, 'amd64', 'v2.11.9');
    await putBuild(t, 'arm64', 'v2.11.9');
    const goBefore = go.s.calls.length;
    for (const h of [HEADERS.anonymous, HEADERS.read]) {
      const res = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/2.11.9', headers: h });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(JSON.parse(res.body).manifests.length, 2);
      const head = await t.app.inject({ method: 'HEAD', url: '/v2/caddy/manifests/v2.11.9', headers: h });
      assert.equal(head.statusCode, 200);
      assert.equal(head.headers['docker-content-digest'], res.headers['docker-content-digest']);
    }
    assert.equal(go.s.calls.length, goBefore, 'served without any go command');
    // A recipe whose plugin is at `latest`: known only once something resolved it.
    await putBuild(t, 'amd64', 'v2.11.9', [{ module: L4, version: 'v0.1.2' }]);
    await putBuild(t, 'arm64', 'v2.11.9', [{ module: L4, version: 'v0.1.2' }]);
    const fresh = new GoResolver(standInGo().toolchain, { buildFlags: TOOLCHAIN.flags });
    assert.equal(fresh.peek({ caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [{ module: L4 }] }, { stale: true }), null, 'a moving query nobody resolved has no known answer');
    const res = await t.app.inject({ method: 'GET', url: '/v2/caddy/l4/manifests/2.11.9', headers: HEADERS.read });
    // This server's resolver answered l4@latest for the build client in the table above.
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(go.s.calls.length, goBefore);
  });
});

describe('the stampede of unknown versions; the memory of failed resolutions', () => {
  let t: TestApi;
  let go: ReturnType<typeof standInGo>;
  let now = Date.parse('2026-12-01T08:00:00Z');
  before(async () => {
    go = standInGo();
    const resolver = new GoResolver(go.toolchain, { buildFlags: TOOLCHAIN.flags, failureTtlMs: 60_000, now: () => now });
    t = await testApi({ resolver, security: { auth: auth(), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 } });
  });
  after(async () => t?.close());

  test('60 tag pulls and 60 downloads of 2.99.<n> by anonymous and read clients: no go command, no job', async () => {
    const all: Array<Promise<{ statusCode: number }>> = [];
    for (let i = 0; i < 60; i++) {
      const h = i % 2 ? HEADERS.read : HEADERS.anonymous;
      all.push(t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/2.99.${i}`, headers: h }));
      all.push(t.app.inject({ method: 'GET', url: `/api/download?os=linux&arch=amd64&version=2.99.${i}`, headers: h }));
    }
    const answers = await Promise.all(all);
    assert.deepEqual([...new Set(answers.map((a) => a.statusCode))].sort(), [401, 403, 404]);
    assert.equal(go.s.calls.length, 0);
    assert.equal(t.calls.jobs, 0);
  });

  test('a build client repeating a failing query: go runs once per memory window, the same 4xx each time', async () => {
    const pull = () => t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/2.99.7', headers: HEADERS.build });
    const download = () => t.app.inject({ method: 'GET', url: '/api/download?os=linux&arch=amd64&version=v2.99.7', headers: HEADERS.build });
    const build = () => t.app.inject({ method: 'POST', url: '/api/builds', headers: HEADERS.build, payload: { caddyVersion: 'v2.99.7', os: 'linux', arch: 'amd64' } });
    const answers = await Promise.all([pull(), pull(), download(), build(), pull(), download(), build()]);
    for (const a of answers) assert.ok(a.statusCode === 404 || a.statusCode === 422, `${a.statusCode} ${a.body}`);
    const first = go.s.calls.length;
    assert.equal(first, 1, `one go command for the one query: ${go.s.calls.join('; ')}`);
    now += 30_000;
    for (const a of [await pull(), await download(), await build()]) assert.ok(a.statusCode === 404 || a.statusCode === 422);
    assert.equal((await build()).json().error.code, 'unknown_version');
    assert.equal(go.s.calls.length, 1, 'still remembered 30 s later');
    now += 31_000;
    assert.equal((await pull()).statusCode, 404);
    assert.equal(go.s.calls.length, 2, 'asked again once the memory window passed');
    assert.equal(t.calls.jobs, 0);
  });
});

describe('one admission: rate limit and per-client limit before resolution; the concurrency cap', () => {
  test('a registry pull by a build client counts against buildRateLimit, before any go command', async () => {
    const go = standInGo();
    const resolver = new GoResolver(go.toolchain, { buildFlags: TOOLCHAIN.flags });
    const t = await testApi({ resolver, security: { auth: auth(), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 2 }, registry: { waitMs: 50 } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/2.99.${i}`, headers: HEADERS.build });
        statuses.push(r.statusCode);
        if (r.statusCode === 429) {
          assert.equal(ociError(r.body).code, 'TOOMANYREQUESTS');
          assert.ok(Number(r.headers['retry-after']) > 0);
        }
      }
      assert.deepEqual(statuses, [404, 404, 429, 429]);
      assert.equal(go.s.calls.length, 2, 'the refused pulls ran no go command');
    } finally {
      await t.close();
    }
  });

  test('a client at maxActiveBuilds is refused before resolution (429, no go command); joining its own build is free', async () => {
    const go = standInGo();
    let now = Date.parse('2026-12-01T08:00:00Z');
    const resolver = new GoResolver(go.toolchain, { buildFlags: TOOLCHAIN.flags, now: () => now });
    let t: TestApi | undefined;
    const admission = new BuildAdmission({
      maxActivePerClient: 1,
      minFreeBytes: 0,
      disks: [],
      isActive: async (key) => ['queued', 'running'].includes((await t!.queue.get(key))?.state ?? ''),
    });
    t = await testApi({ resolver, admission, security: { auth: auth(), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 } });
    try {
      const body = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64' };
      const first = await t.app.inject({ method: 'POST', url: '/api/builds', headers: HEADERS.build, payload: body });
      assert.equal(first.statusCode, 202, first.body);
      const ran = go.s.calls.length;
      const other = await t.app.inject({ method: 'POST', url: '/api/builds', headers: HEADERS.build, payload: { ...body, caddyVersion: 'v2.11.8' } });
      assert.equal(other.statusCode, 429, other.body);
      assert.equal(other.json().error.code, 'too_many_builds');
      assert.equal(go.s.calls.length, ran, 'refused before any go command');
      const pull = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/2.99.1', headers: HEADERS.build });
      assert.equal(pull.statusCode, 429, pull.body);
      assert.equal(go.s.calls.length, ran, 'the registry goes through the same admission');
      const again = await t.app.inject({ method: 'POST', url: '/api/builds', headers: HEADERS.build, payload: body });
      assert.equal(again.statusCode, 202, 'its own build in flight is joined (answered from memory)');
      assert.equal(again.json().id, first.json().id);
      // A day later the resolver's memory of v2.11.9 has expired (another hub never had it): still joined, still no go command.
      now += 25 * 3600_000;
      const later = await t.app.inject({ method: 'POST', url: '/api/builds', headers: HEADERS.build, payload: body });
      assert.equal(later.statusCode, 202, later.body);
      assert.equal(later.json().id, first.json().id);
      assert.equal(go.s.calls.length, ran, 'joined without a go command');
      await t.service.cancel(first.json().id);
    } finally {
      await t.close();
    }
  });

  test('a 50-plugin request runs at most maxResolutions go commands at once; past the wait, 503 resolver_busy with Retry-After', async () => {
    const go = standInGo(30);
    const resolver = new GoResolver(go.toolchain, { buildFlags: TOOLCHAIN.flags, maxResolutions: 4 });
    const t = await testApi({ resolver, maxPlugins: 50, security: { auth: auth(['read', 'build']), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 } });
    try {
      const plugins = Array.from({ length: 50 }, (_, i) => ({ module: `example.com/plugin${i}`, version: 'v1.0.0' }));
      const [big, small] = await Promise.all([
        t.app.inject({ method: 'POST', url: '/api/builds', payload: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins } }),
        t.app.inject({ method: 'POST', url: '/api/builds', payload: { caddyVersion: 'v2.11.8', os: 'linux', arch: 'arm64' } }),
      ]);
      assert.equal(big.statusCode, 202, big.body);
      assert.equal(small.statusCode, 202, small.body);
      assert.equal(go.s.calls.length, 52, 'every module once');
      assert.ok(go.s.most <= 4, `at most 4 go commands at once (saw ${go.s.most})`);
      for (const r of [big, small]) await t.service.cancel(r.json().id);
    } finally {
      await t.close();
    }
    const slow = standInGo(400);
    const busy = new GoResolver(slow.toolchain, { buildFlags: TOOLCHAIN.flags, maxResolutions: 1, queueWaitMs: 100 });
    const t2 = await testApi({ resolver: busy, security: { auth: auth(['read', 'build']), rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 } });
    try {
      const [a, b] = await Promise.all([
        t2.app.inject({ method: 'POST', url: '/api/builds', payload: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64' } }),
        t2.app.inject({ method: 'POST', url: '/api/builds', payload: { caddyVersion: 'v2.11.8', os: 'linux', arch: 'amd64' } }),
      ]);
      assert.equal(a.statusCode, 202, a.body);
      assert.equal(b.statusCode, 503, b.body);
      assert.equal(b.json().error.code, 'resolver_busy');
      assert.ok(Number(b.headers['retry-after']) > 0);
      assert.equal(slow.s.most, 1);
      await t2.service.cancel(a.json().id);
      // A busy answer is not remembered as a failure: asked again, it resolves.
      const c = await t2.app.inject({ method: 'POST', url: '/api/builds', payload: { caddyVersion: 'v2.11.8', os: 'linux', arch: 'amd64' } });
      assert.equal(c.statusCode, 202, c.body);
      await t2.service.cancel(c.json().id);
    } finally {
      await t2.close();
    }
  });
});
