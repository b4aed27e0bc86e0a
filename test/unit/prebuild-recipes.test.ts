// Recipes are prebuilt: at start and whenever the version refresher sees a new Caddy release, the
// prebuilder (createHttpOps, src/ops) queues every recipe (configured or put through the API) on
// every image platform, as ordinary build requests. The registry is real (test/helpers/api.ts,
// fs store); the service the ops see is a fake that dedupes by body, as the service does by key.
//   node --import tsx --test test/unit/prebuild-recipes.test.ts
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { loadConfig } from '../../src/config/index.js';
import { createHttpOps } from '../../src/ops/index.js';
import type { HttpOps } from '../../src/ops/wiring.js';
import type { BuildQueue } from '../../src/queue/index.js';
import type { BuildPayload, BuildService } from '../../src/service/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';
import { testApi, type TestApi } from '../helpers/api.js';

const L4 = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };
const ADMIN = 'fw_admin_token_0123456789abcdef0';

describe('prebuilds: every recipe × image platform when a new Caddy appears', () => {
  let t: TestApi;
  let ops: HttpOps;
  let dir: string;
  let latest = 'v2.11.9';
  /** Bodies requested in the current run, and every body ever queued (a second request is a hit). */
  let requested: Array<Record<string, unknown>> = [];
  const built = new Set<string>();
  const logs: Array<{ msg: string; queued?: unknown[] }> = [];
  /** Keys handed to the composition root's hook (the registry makes their images once built). */
  let imaged: string[] = [];

  before(async () => {
    const auth = new TokenAuthenticator({ tokens: [{ name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] }], anonymousScopes: [] });
    t = await testApi({ security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 }, registry: { recipes: { l4: { plugins: [L4] } } } });
    // A recipe added through the API (kept in the store), pinned to a Caddy version.
    const put = await t.app.inject({ method: 'PUT', url: '/api/recipes/web', payload: { plugins: [], caddyVersion: 'v2.10.2' }, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(put.statusCode, 200, put.body);

    dir = await mkdtemp(join(tmpdir(), 'fairway-prebuild-recipes-'));
    const config = loadConfig({ flags: { dataDir: dir }, env: {} });
    const service = {
      parse: (body: unknown) => body,
      observe: () => undefined,
      versions: async () => ({ module: 'github.com/caddyserver/caddy/v2', versions: [{ version: latest, prerelease: false }], latest, refreshedAt: new Date().toISOString() }),
      request: async (body: Record<string, unknown>) => {
        requested.push(body);
        const key = JSON.stringify(body);
        const cached = built.has(key);
        built.add(key);
        return { id: key, key, status: cached ? 'succeeded' : 'queued', cached };
      },
    } as unknown as BuildService;
    const queue = { depth: async () => ({ queued: 0, running: 0 }), agents: async () => [] } as unknown as BuildQueue<BuildPayload>;
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line) as { msg: string });
        cb();
      },
    });
    ops = createHttpOps({
      config,
      logger: pino({ level: 'info' }, sink),
      service,
      store: t.store,
      queue,
      toolchain: {} as Toolchain,
      prebuildSpecs: () => t.registry.prebuildSpecs(),
      prebuildQueued: (key) => imaged.push(key),
    });
  });
  after(async () => {
    await ops?.close();
    await t?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sortedBodies = () => requested.map((b) => JSON.stringify(b)).sort();

  test('at start: each recipe on each platform once, at the latest Caddy (or its pinned version); logged', async () => {
    requested = [];
    await ops.scheduler.runNow('versions');
    assert.deepEqual(
      sortedBodies(),
      [
        { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [L4] },
        { caddyVersion: 'v2.11.9', os: 'linux', arch: 'arm64', plugins: [L4] },
        { caddyVersion: 'v2.10.2', os: 'linux', arch: 'amd64', plugins: [] },
        { caddyVersion: 'v2.10.2', os: 'linux', arch: 'arm64', plugins: [] },
      ]
        .map((b) => JSON.stringify(b))
        .sort(),
    );
    const line = logs.find((l) => l.msg.startsWith('prebuilds: 4 queued'));
    assert.ok(line, JSON.stringify(logs.map((l) => l.msg)));
    assert.equal(line.queued?.length, 4);
    assert.deepEqual(imaged.sort(), sortedBodies(), 'every queued recipe build is handed on to have its image made');
  });

  test('a refresh with the same release queues nothing new; a new release queues the unpinned recipe again on every platform', async () => {
    requested = [];
    imaged = [];
    logs.length = 0;
    await ops.scheduler.runNow('versions');
    assert.deepEqual(imaged, [], 'cache hits are not handed on');
    assert.equal(requested.length, 4, 'each spec is asked for once per run (cache hits)');
    assert.equal(
      logs.find((l) => l.msg.startsWith('prebuilds:')),
      undefined,
    );

    latest = 'v2.12.0';
    requested = [];
    await ops.scheduler.runNow('versions');
    assert.equal(requested.length, 4);
    const fresh = requested.filter((b) => b.caddyVersion === 'v2.12.0');
    assert.deepEqual(fresh.map((b) => b.arch).sort(), ['amd64', 'arm64']);
    assert.ok(fresh.every((b) => JSON.stringify(b.plugins) === JSON.stringify([L4])));
    assert.ok(
      logs.some((l) => l.msg.startsWith('prebuilds: 2 queued')),
      JSON.stringify(logs.map((l) => l.msg)),
    );
  });
});
