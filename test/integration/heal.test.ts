/**
 * "The store heals": a succeeded record without its binary, an unreadable meta.json (not JSON, or
 * not the schema) and an unreadable buildinfo.json, against the real `fairway serve` process with
 * an fs store and with the S3 server (versitygw). The immediate answers are clear (never 500, never
 * 503 "cannot be reached", /readyz stays ready), the next request rebuilds (`cached: false`), and a
 * restart over a damaged store does not list the damaged artifacts. Builds use a stand-in xcaddy
 * that copies a Go binary to --output (no real Caddy build), as in integrity.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { api, CADDY_VERSION, instantXcaddy, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startS3, type S3Service } from '../helpers/services.js';

const spec = (os: string, arch: string) => ({ caddyVersion: CADDY_VERSION, os, arch });
// Damaged while the server runs:
const MISSING_GET = spec('linux', 'amd64'); // binary deleted; first the artifact is asked for
const MISSING_POST = spec('linux', 'arm64'); // binary deleted; first the build is requested again
const BAD_INFO = spec('linux', 's390x'); // buildinfo.json not JSON
// meta.json damaged while the server runs (its index keeps the good copy it read), found at the restart:
const BAD_JSON = spec('linux', 'riscv64'); // meta.json not JSON
const BAD_SCHEMA = spec('linux', 'ppc64le'); // meta.json JSON, but not a record
// Damaged while the server is stopped, then restarted over the store:
const R_MISSING = spec('linux', '386');
const R_BAD_META = spec('linux', 'loong64');
const R_BAD_INFO = spec('freebsd', 'amd64');
const ALL = { MISSING_GET, MISSING_POST, BAD_JSON, BAD_SCHEMA, BAD_INFO, R_MISSING, R_BAD_META, R_BAD_INFO };

interface Damage {
  deleteBinary(key: string): Promise<void>;
  writePart(key: string, name: 'meta.json' | 'buildinfo.json', body: string): Promise<void>;
}

interface Ctx {
  server: FairwayProcess;
  damage: Damage;
  /** Stops the server, runs `damage` on the store, starts it again over the same store. */
  restart(damage: (d: Damage) => Promise<void>): Promise<FairwayProcess>;
  stop(): Promise<void>;
}

async function build(base: string, s: object): Promise<any> {
  const r = await api(base, '/api/builds', { json: s });
  assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.body));
  const done = await waitForBuild(base, r.body.id, 120_000);
  assert.equal(done.status, 'succeeded', done.error);
  return done;
}

async function metricValue(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function assertReady(base: string, what: string): Promise<void> {
  const r = await api(base, '/readyz');
  assert.equal(r.status, 200, `${what}: /readyz ${JSON.stringify(r.body)}`);
}

/** A clear JSON error that is not 5xx, without the artifact's headers. */
function assertClearError(r: { status: number; body: any; headers: Headers }, statuses: number[], what: string, message?: RegExp): void {
  assert.ok(statuses.includes(r.status), `${what}: expected ${statuses.join('/')}, got ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(typeof r.body?.error?.message, 'string', `${what}: a JSON error body`);
  assert.doesNotMatch(r.body.error.message, /cannot be reached|internal server error/, what);
  if (message) assert.match(r.body.error.message, message, what);
  assert.equal(r.headers.get('x-checksum-sha256'), null, `${what}: an error answer carries the checksum header`);
}

/** The next request is a new build, which succeeds; the artifact and its build info are served right. */
async function assertRebuilds(base: string, s: object, what: string, first?: { status: number; body: any }): Promise<void> {
  const r = first ?? (await api(base, '/api/builds', { json: s }));
  assert.equal(r.status, 202, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.cached, false, `${what}: the next request is a new build`);
  const done = await waitForBuild(base, r.body.id, 120_000);
  assert.equal(done.status, 'succeeded', `${what}: ${done.error}`);
  const res = await fetch(`${base}/api/builds/${done.id}/artifact`);
  assert.equal(res.status, 200, `${what}: artifact after the rebuild`);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(createHash('sha256').update(body).digest('hex'), res.headers.get('x-checksum-sha256'), `${what}: rebuilt bytes match their checksum`);
  assert.equal(body.length, done.size, `${what}: rebuilt size`);
  const info = await api(base, `/api/builds/${done.id}/buildinfo`);
  assert.equal(info.status, 200, `${what}: build info after the rebuild ${JSON.stringify(info.body)}`);
  const again = await api(base, '/api/builds', { json: s });
  assert.equal(again.body.cached, true, `${what}: the rebuilt artifact is a cache hit`);
}

function healSuite(name: string, setup: () => Promise<Ctx>): void {
  describe(`the store heals (${name} store)`, () => {
    let ctx: Ctx;
    let base: string;
    const built: Record<string, any> = {};
    before(async () => {
      ctx = await setup();
      base = ctx.server.url;
      for (const [k, s] of Object.entries(ALL)) built[k] = await build(base, s);
    });
    after(async () => ctx?.stop());

    test('a record without its binary: 410 meanwhile, never cached, rebuilt', { timeout: 300_000 }, async () => {
      const a = built.MISSING_GET;
      const b = built.MISSING_POST;
      await ctx.damage.deleteBinary(a.id);
      await ctx.damage.deleteBinary(b.id);

      const art = await api(base, `/api/builds/${a.id}/artifact`);
      assertClearError(art, [404, 410], 'artifact of a missing binary', /request the build again/);
      const again = await api(base, `/api/builds/${a.id}/artifact`);
      assertClearError(again, [404, 410], 'artifact of a missing binary, asked again', /request the build again/);
      await assertReady(base, 'missing binary');

      // Before the fix: 200 cached:true, forever.
      const r = await api(base, '/api/builds', { json: MISSING_POST });
      assert.equal(r.body.cached, false, `a missing binary is not a cache hit: ${JSON.stringify(r.body)}`);
      assert.equal(await metricValue(base, 'fairway_artifact_corrupt_total{reason="missing"}'), 2, 'each counted once with reason="missing"');
      await assertRebuilds(base, MISSING_POST, 'missing binary (POST first)', r);
      await assertRebuilds(base, MISSING_GET, 'missing binary (GET first)');
    });

    test('an unreadable buildinfo.json: a clear 410, not 500; rebuilt', { timeout: 300_000 }, async () => {
      const c = built.BAD_INFO;
      await ctx.damage.writePart(c.id, 'buildinfo.json', '{"Path": "github.com/caddyserver/xcad');
      const info = await api(base, `/api/builds/${c.id}/buildinfo`);
      assertClearError(info, [404, 410], 'unreadable build info', /unreadable.*request the build again/);
      await assertReady(base, 'bad build info');
      assert.ok((await metricValue(base, 'fairway_artifact_corrupt_total{reason="bad_buildinfo"}')) >= 1, 'counted with reason="bad_buildinfo"');
      await assertRebuilds(base, BAD_INFO, 'unreadable build info');
    });

    test('a restart over a damaged store: nothing damaged is listed or cached; bad meta.json is 404, not 503', { timeout: 300_000 }, async () => {
      const keys = { missing: built.R_MISSING.id, meta: built.R_BAD_META.id, info: built.R_BAD_INFO.id };
      // While the server runs, its index holds the good records it read; they are damaged now.
      await ctx.damage.writePart(built.BAD_JSON.id, 'meta.json', '{"key": "half a reco');
      await ctx.damage.writePart(built.BAD_SCHEMA.id, 'meta.json', JSON.stringify({ hello: 'world' }));
      const next = await ctx.restart(async (d) => {
        await d.deleteBinary(keys.missing);
        await d.writePart(keys.meta, 'meta.json', 'garbage');
        await d.writePart(keys.info, 'buildinfo.json', '{{{');
      });
      base = next.url;
      await assertReady(base, 'after the restart');
      const listed = new Set(((await api(base, '/api/builds?limit=500')).body.builds as any[]).map((b) => b.id));
      for (const [k, id] of Object.entries({ ...keys, badJson: built.BAD_JSON.id, badSchema: built.BAD_SCHEMA.id })) {
        assert.ok(!listed.has(id), `${k}: a damaged artifact is not listed after the restart`);
      }
      assert.ok(listed.has(built.MISSING_GET.id), 'a healthy artifact (rebuilt above) is still listed');
      // The index rebuild at start found and quarantined them, before any request.
      assert.equal(await metricValue(base, 'fairway_artifact_corrupt_total{reason="missing"}'), 1, 'the index rebuild counted the missing binary');
      assert.equal(await metricValue(base, 'fairway_artifact_corrupt_total{reason="bad_meta"}'), 3, 'the index rebuild counted each bad meta.json once');
      assert.equal(await metricValue(base, 'fairway_artifact_corrupt_total{reason="bad_buildinfo"}'), 1, 'the index rebuild counted the bad build info');
      const out = next.output();
      assert.match(out, /meta\.json is unreadable: quarantining/, 'logged');
      for (const [k, m] of [
        ['not JSON', built.BAD_JSON],
        ['not the schema', built.BAD_SCHEMA],
        ['bad meta', built.R_BAD_META],
      ] as const) {
        // Before the fix: 503 "the artifact store cannot be reached", for a store that answers.
        const st = await api(base, `/api/builds/${m.id}`);
        assertClearError(st, [404], `${k}: GET /api/builds/:id`);
        const art = await api(base, `/api/builds/${m.id}/artifact`);
        assertClearError(art, [404], `${k}: GET /api/builds/:id/artifact`);
      }
      const art = await api(base, `/api/builds/${keys.missing}/artifact`);
      assertClearError(art, [404, 410], 'missing binary: artifact');
      const info = await api(base, `/api/builds/${keys.info}/buildinfo`);
      assertClearError(info, [404, 410], 'bad build info: buildinfo');
      await assertReady(base, 'after the restart, damaged records asked for');
      for (const [k, s] of Object.entries({ BAD_JSON, BAD_SCHEMA, R_MISSING, R_BAD_META, R_BAD_INFO })) await assertRebuilds(base, s, `after the restart: ${k}`);
    });

    test('an unreadable meta.json the index never saw (written by another process): 404, not 503; quarantined once', { timeout: 120_000 }, async () => {
      const key = createHash('sha256').update(`planted-${name}`).digest('hex');
      await ctx.damage.writePart(key, 'meta.json', '<html>502 Bad Gateway</html>');
      const before = await metricValue(base, 'fairway_artifact_corrupt_total{reason="bad_meta"}');
      // Before the fix: 503 "the artifact store (fs) cannot be reached", for a store that answers.
      const st = await api(base, `/api/builds/${key}`);
      assertClearError(st, [404], 'planted bad meta: GET /api/builds/:id');
      assertClearError(await api(base, `/api/builds/${key}/artifact`), [404], 'planted bad meta: artifact');
      assertClearError(await api(base, `/api/builds/${key}/log`), [404], 'planted bad meta: log');
      await assertReady(base, 'planted bad meta');
      assert.equal(await metricValue(base, 'fairway_artifact_corrupt_total{reason="bad_meta"}'), before + 1, 'quarantined (and counted) once');
      assertClearError(await api(base, `/api/builds/${key}`), [404], 'planted bad meta, asked again');
    });
  });
}

healSuite('fs', async () => {
  const dir = await tempDir();
  const bin = await instantXcaddy(dir);
  const dataDir = join(dir, 'data');
  const root = join(dataDir, 'artifacts');
  const start = () => startFairway({ dataDir, args: ['--xcaddy-bin', bin] });
  const ctx: Ctx = {
    server: await start(),
    damage: {
      deleteBinary: (key) => rm(join(root, key, 'binary')),
      writePart: async (key, name, body) => {
        await mkdir(join(root, key), { recursive: true });
        await writeFile(join(root, key, name), body);
      },
    },
    restart: async (damage) => {
      await ctx.server.stop('SIGKILL');
      await damage(ctx.damage);
      ctx.server = await start();
      return ctx.server;
    },
    stop: async () => void (await ctx.server.stop('SIGKILL')),
  };
  return ctx;
});

healSuite('s3', async () => {
  const s3: S3Service = await startS3();
  const dir = await tempDir();
  const bin = await instantXcaddy(dir);
  const storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
  const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
  const start = () => startFairway({ dataDir: join(dir, 'data'), args: ['--xcaddy-bin', bin, '--store', storeUrl], env });
  const client = new S3Client(s3.clientConfig());
  const objectKey = (key: string, name: string) => `fw/artifacts/${key}/${name}`;
  const ctx: Ctx = {
    server: await start(),
    damage: {
      deleteBinary: async (key) => void (await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: objectKey(key, 'binary') }))),
      writePart: async (key, name, body) => void (await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: objectKey(key, name), Body: body, ContentType: 'application/json' }))),
    },
    restart: async (damage) => {
      await ctx.server.stop('SIGKILL');
      await damage(ctx.damage);
      ctx.server = await start();
      return ctx.server;
    },
    stop: async () => {
      await ctx.server.stop('SIGKILL');
      client.destroy();
      await s3.destroy();
    },
  };
  return ctx;
});
