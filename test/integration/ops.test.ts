/**
 * Operations end to end against real `fairway serve` processes, real builds, a real
 * fs store and a real S3 server: prebuilds queued at start, pruning under a small budget (least
 * recently downloaded first, durable across restarts, after each new artifact, on a schedule,
 * pinned specs kept), `fairway prune --dry-run`, POST /api/admin/prune, /metrics, /readyz with
 * the store down, graceful shutdown, and `latest` moving on a module proxy the test controls.
 *   node --import tsx --test test/integration/ops.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { api, CADDY_VERSION, GO_CACHE, MAIN, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startS3, type S3Service } from '../helpers/services.js';
import { storeZip } from '../helpers/goproxy.js';

const run = promisify(execFile);
const BUILD_TIMEOUT = 20 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// An admin token for POST /api/admin/prune; anonymous clients may read and build (loopback tests).
const TOKEN = randomBytes(24).toString('hex');
const AUTH_ENV = { FAIRWAY_TOKENS: `ops-test:admin:${createHash('sha256').update(TOKEN).digest('hex')}` };
const AUTH_ARGS = ['--anonymous-scopes', 'read,build'];
const admin = { authorization: `Bearer ${TOKEN}` };

const spec = (arch: string) => ({ caddyVersion: CADDY_VERSION, os: 'linux', arch, plugins: [] });

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

async function metrics(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return res.text();
}

/**
 * The value of one exported sample. A sample that is not exported fails (so "== 0" cannot pass
 * for a metric that does not exist); only a poll waiting for a counter to appear passes
 * `ifMissing`.
 */
function metric(text: string, name: string, ifMissing?: number): number {
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc} ([0-9.e+-]+)$`, 'm').exec(text);
  if (m) return Number(m[1]);
  if (ifMissing !== undefined) return ifMissing;
  const family = name.replace(/\{.*$/, '');
  const present = text
    .split('\n')
    .filter((l) => l.startsWith(family))
    .slice(0, 10);
  throw new assert.AssertionError({ message: `metric ${name} is not exported${present.length ? `; its family has: ${present.join(' | ')}` : ''}` });
}

async function download(base: string, id: string): Promise<Buffer> {
  const res = await fetch(`${base}/api/builds/${id}/artifact`);
  assert.equal(res.status, 200);
  return Buffer.from(await res.arrayBuffer());
}

/**
 * A budget that keeps X and not Y: the store's bytes (artifacts, their images' blobs, shared
 * blobs) less half of what removing Y frees, as the server's own dry run counts it.
 */
async function budgetKeeping(base: string, x: { id: string }, y: { id: string }): Promise<number> {
  const r = await api(base, '/api/admin/prune', { json: { dryRun: true, maxBytes: 1 }, headers: admin });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const bytes = (id: string) => r.body.removed.find((e: any) => e.key === id)?.bytes as number;
  assert.ok(bytes(x.id) > 0 && bytes(y.id) > 0, JSON.stringify(r.body.removed));
  return r.body.before.bytes - Math.floor(bytes(y.id) / 2);
}

async function pruneCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<any> {
  const { stdout } = await run(process.execPath, [MAIN, 'prune', '--json', '--cache-dir', GO_CACHE, ...args], { env: { ...process.env, ...env }, timeout: 120_000 });
  return JSON.parse(stdout);
}

describe('pruning on an fs store with real artifacts; prebuilds; metrics', { timeout: 60 * 60_000 }, () => {
  let dir: string;
  let dataDir: string;
  let server: FairwayProcess;
  /** X finished first and is downloaded later; Y finished last and is never downloaded. */
  let X: any;
  let Y: any;
  let budget: number;

  before(async () => {
    dir = await tempDir();
    dataDir = join(dir, 'data');
  });
  after(async () => {
    await server?.stop();
  });

  test('prebuilds (linux/amd64 and linux/arm64, no plugins) are queued at start and built', { timeout: BUILD_TIMEOUT }, async () => {
    const prebuild = JSON.stringify([{ caddyVersion: CADDY_VERSION, platforms: ['linux/amd64', 'linux/arm64'], plugins: [] }]);
    server = await startFairway({ dataDir, args: ['--workers', '2', '--prebuild', prebuild, ...AUTH_ARGS], env: AUTH_ENV });
    // Nobody asked for a build: the prebuilds did.
    const builds = await until(
      'both prebuilds to finish',
      async () => {
        const { body } = await api(server.url, '/api/builds');
        const done = body.builds.filter((b: any) => b.status === 'succeeded');
        return done.length === 2 ? done : null;
      },
      BUILD_TIMEOUT,
      1000,
    );
    assert.deepEqual(builds.map((b: any) => `${b.spec.os}/${b.spec.arch}@${b.spec.caddyVersion}`).sort(), [`linux/amd64@${CADDY_VERSION}`, `linux/arm64@${CADDY_VERSION}`]);
    assert.match(server.output(), /prebuilds: 2 queued/);
    [X, Y] = builds.sort((a: any, b: any) => (a.finishedAt < b.finishedAt ? -1 : 1));
    budget = await budgetKeeping(server.url, X, Y);
  });

  test('GET /metrics: builds by outcome, durations, prebuilds, queue, agents, store size', async () => {
    const hit = await api(server.url, '/api/builds', { json: spec(X.spec.arch) });
    assert.equal(hit.status, 200);
    assert.equal(hit.body.cached, true);
    const text = await metrics(server.url);
    assert.equal(metric(text, 'fairway_builds_total{outcome="succeeded"}'), 2);
    assert.equal(metric(text, 'fairway_build_duration_seconds_count{outcome="succeeded"}'), 2);
    assert.equal(metric(text, 'fairway_prebuilds_queued_total'), 2);
    assert.equal(metric(text, 'fairway_build_requests_total{result="queued"}'), 2);
    assert.equal(metric(text, 'fairway_cache_lookups_total{result="hit"}'), 1);
    assert.equal(metric(text, 'fairway_queue_depth{state="queued"}'), 0);
    assert.equal(metric(text, 'fairway_agents'), 1);
    assert.equal(metric(text, 'fairway_store_objects'), 2);
    assert.ok(metric(text, 'fairway_store_bytes') > X.size + Y.size);
    assert.equal(metric(text, 'fairway_store_up'), 1);
    assert.ok(metric(text, 'fairway_versions_refreshed_timestamp_seconds') > 0, 'the version list was refreshed at start');
    const health = await api(server.url, '/healthz');
    assert.equal(health.status, 200);
    const ready = await api(server.url, '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: 'ready' }, 'status only without admin');
    const details = await api(server.url, '/readyz', { headers: admin });
    assert.deepEqual(details.body.checks, { store: 'ok', queue: 'ok' }, 'the checks for admin');
  });

  test('downloading the older artifact records its last access durably; SIGTERM shuts down cleanly', async () => {
    const bin = await download(server.url, X.id);
    assert.equal(bin.length, X.size);
    const record = join(dataDir, 'artifacts', '.access', X.id);
    await until('the access record', async () => (await stat(record).catch(() => null)) !== null, 5000, 50);
    assert.equal(metric(await metrics(server.url), 'fairway_artifact_downloads_total'), 1);
    assert.equal(await server.stop('SIGTERM'), 0);
  });

  test('fairway prune --dry-run against the store: the never-downloaded artifact would go; nothing is removed', async () => {
    const report = await pruneCli(['--data-dir', dataDir, '--store-max-bytes', String(budget), '--dry-run']);
    assert.equal(report.dryRun, true);
    assert.equal(report.before.objects, 2);
    assert.deepEqual(
      report.removed.map((r: any) => [r.key, r.reason]),
      [[Y.id, 'budget']],
    );
    assert.ok(report.after.bytes <= budget);
    assert.equal(report.budget.maxBytes, budget);
    const left = (await readdir(join(dataDir, 'artifacts'))).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
    assert.deepEqual(left, [X.id, Y.id].sort());
  });

  test('restart with --store-max-bytes: the prune at start keeps the downloaded artifact (last access survived)', { timeout: 120_000 }, async () => {
    server = await startFairway({ dataDir, args: ['--workers', '2', '--store-max-bytes', String(budget), ...AUTH_ARGS], env: AUTH_ENV });
    await until('Y to be pruned', async () => (await api(server.url, `/api/builds/${Y.id}`)).status === 404, 30_000);
    const x = await api(server.url, `/api/builds/${X.id}`);
    assert.equal(x.status, 200);
    assert.equal(x.body.status, 'succeeded');
    const text = await metrics(server.url);
    assert.equal(metric(text, 'fairway_pruned_artifacts_total{reason="budget"}'), 1);
    assert.equal(metric(text, 'fairway_prune_runs_total{trigger="schedule",dry_run="false"}'), 1);
    assert.ok(metric(text, 'fairway_pruned_bytes_total') >= Y.size);
    assert.ok(metric(text, 'fairway_store_bytes') <= budget);
    assert.equal(await stat(join(dataDir, 'artifacts', Y.id)).catch(() => null), null, 'gone from disk');
  });

  test('a new artifact triggers a prune: rebuilding Y makes X the least recently used', { timeout: BUILD_TIMEOUT }, async () => {
    const res = await api(server.url, '/api/builds', { json: spec(Y.spec.arch) });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.equal(res.body.id, Y.id, 'same spec, same key');
    const done = await waitForBuild(server.url, Y.id, BUILD_TIMEOUT);
    assert.equal(done.status, 'succeeded', done.error);
    await until('X to be pruned', async () => (await api(server.url, `/api/builds/${X.id}`)).status === 404, 30_000);
    assert.equal((await api(server.url, `/api/builds/${Y.id}`)).body.status, 'succeeded');
    const text = await metrics(server.url);
    assert.equal(metric(text, 'fairway_prune_runs_total{trigger="artifact",dry_run="false"}'), 1);
    assert.equal(metric(text, 'fairway_pruned_artifacts_total{reason="budget"}'), 2);
    // The pruned key rebuilds on request (the index forgot it).
    const again = await api(server.url, '/api/builds', { json: spec(X.spec.arch) });
    assert.equal(again.status, 202);
    assert.equal((await api(server.url, `/api/builds/${X.id}`, { method: 'DELETE' })).status, 200);
  });

  test('POST /api/admin/prune needs the admin scope; dry run with a one-off budget', async () => {
    const anon = await api(server.url, '/api/admin/prune', { json: { dryRun: true } });
    assert.equal(anon.status, 401);
    const bad = await api(server.url, '/api/admin/prune', { json: { maxBytes: 'lots' }, headers: admin });
    assert.equal(bad.status, 400);
    const res = await api(server.url, '/api/admin/prune', { json: { dryRun: true, maxBytes: 0 }, headers: admin });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.dryRun, true);
    assert.equal(res.body.trigger, 'api');
    assert.deepEqual(
      res.body.removed.map((r: any) => r.key),
      [Y.id],
    );
    assert.equal((await api(server.url, `/api/builds/${Y.id}`)).status, 200, 'a dry run removes nothing');
  });
});

describe('pruning on an S3 store with real artifacts; /readyz when the store is down; pinned specs', { timeout: 60 * 60_000 }, () => {
  let s3: S3Service;
  let s3client: S3Client;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  let server: FairwayProcess;
  let dataDir: string;
  let X: any;
  let Y: any;
  let budget: number;

  const objectsFor = async (prefix: string) => {
    const res = await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
    return (res.Contents ?? []).map((o) => o.Key!);
  };
  const start = (extra: string[] = []) => startFairway({ dataDir, args: ['--store', storeUrl, '--workers', '2', '--store-max-age', '30d', '--prune-interval', '1s', ...AUTH_ARGS, ...extra], env });

  before(async () => {
    s3 = await startS3();
    s3client = new S3Client(s3.clientConfig());
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    env = { ...AUTH_ENV, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    dataDir = join(await tempDir(), 'data');
    server = await start();
  });
  after(async () => {
    await server?.stop('SIGKILL');
    s3client?.destroy();
    await s3?.destroy();
  });

  test('two real builds land in the bucket', { timeout: BUILD_TIMEOUT }, async () => {
    const [a, b] = await Promise.all([api(server.url, '/api/builds', { json: spec('amd64') }), api(server.url, '/api/builds', { json: spec('arm64') })]);
    assert.equal(a.status, 202, JSON.stringify(a.body));
    assert.equal(b.status, 202, JSON.stringify(b.body));
    const done = await Promise.all([waitForBuild(server.url, a.body.id, BUILD_TIMEOUT), waitForBuild(server.url, b.body.id, BUILD_TIMEOUT)]);
    for (const d of done) assert.equal(d.status, 'succeeded', d.error);
    [X, Y] = done.sort((p: any, q: any) => (p.finishedAt < q.finishedAt ? -1 : 1));
    budget = await budgetKeeping(server.url, X, Y);
    assert.ok((await objectsFor(`fw/artifacts/${Y.id}/`)).length >= 3);
  });

  test('a compat download records the access in the bucket (access/<key>)', async () => {
    const res = await fetch(`${server.url}/api/download?os=linux&arch=${X.spec.arch}&version=${CADDY_VERSION}`);
    assert.equal(res.status, 200);
    assert.equal(Buffer.from(await res.arrayBuffer()).length, X.size);
    await until('the access object', async () => (await objectsFor(`fw/access/${X.id}`)).length === 1, 10_000, 100);
    const head = await s3client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `fw/access/${X.id}` }));
    assert.ok(head.LastModified);
  });

  test('pruning runs on a schedule; POST /api/admin/prune dry run, then for real, under a small budget', async () => {
    await until('two scheduled runs', async () => metric(await metrics(server.url), 'fairway_prune_runs_total{trigger="schedule",dry_run="false"}', 0) >= 2, 20_000, 500);
    const dry = await api(server.url, '/api/admin/prune', { json: { dryRun: true, maxBytes: budget }, headers: admin });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(
      dry.body.removed.map((r: any) => [r.key, r.reason]),
      [[Y.id, 'budget']],
    );
    assert.ok((await objectsFor(`fw/artifacts/${Y.id}/`)).length >= 3, 'the dry run removed nothing');

    const real = await api(server.url, '/api/admin/prune', { json: { maxBytes: budget }, headers: admin });
    assert.equal(real.status, 200);
    assert.deepEqual(
      real.body.removed.map((r: any) => r.key),
      [Y.id],
    );
    assert.equal(real.body.before.objects, 2);
    assert.equal(real.body.after.objects, 1);
    assert.ok(real.body.after.bytes <= budget);
    assert.deepEqual(await objectsFor(`fw/artifacts/${Y.id}/`), [], 'every object of Y is gone');
    assert.equal((await api(server.url, `/api/builds/${Y.id}`)).status, 404);
    assert.equal((await api(server.url, `/api/builds/${X.id}`)).body.status, 'succeeded');
    const text = await metrics(server.url);
    assert.equal(metric(text, 'fairway_pruned_artifacts_total{reason="budget"}'), 1);
    assert.equal(metric(text, 'fairway_store_objects'), 1);
  });

  test('/readyz is 503 while the S3 server is down and 200 when it is back; /healthz stays 200', { timeout: 120_000 }, async () => {
    assert.equal((await api(server.url, '/readyz')).status, 200);
    await s3.stop();
    try {
      const down = await api(server.url, '/readyz');
      assert.equal(down.status, 503);
      assert.equal(down.body.error.code, 'not_ready');
      assert.equal((await api(server.url, '/healthz')).status, 200);
      assert.equal((await fetch(`${server.url}/metrics`)).status, 200, 'metrics still answer');
    } finally {
      await s3.start();
    }
    await until('ready again', async () => (await api(server.url, '/readyz')).status === 200, 30_000, 500);
  });

  test('fairway prune on the bucket (dry run) and a pinned spec is kept across restart even over budget', { timeout: 120_000 }, async () => {
    assert.equal(await server.stop('SIGTERM'), 0);
    const cli = await pruneCli(['--store', storeUrl, '--store-max-bytes', '1', '--dry-run'], env);
    assert.deepEqual(
      cli.removed.map((r: any) => r.key),
      [X.id],
    );
    const pinned = JSON.stringify([spec(X.spec.arch)]);
    const cliPinned = await pruneCli(['--store', storeUrl, '--store-max-bytes', '1', '--pinned', pinned, '--dry-run'], env);
    assert.deepEqual(cliPinned.removed, []);
    assert.equal(cliPinned.pinned, 1);

    server = await start(['--store-max-bytes', '1', '--pinned', pinned]);
    await until('a prune run at start', async () => metric(await metrics(server.url), 'fairway_prune_runs_total{trigger="schedule",dry_run="false"}', 0) >= 1, 20_000, 250);
    const res = await api(server.url, '/api/admin/prune', { json: { dryRun: true }, headers: admin });
    assert.deepEqual(res.body.removed, []);
    assert.equal(res.body.pinned, 1);
    assert.equal(res.body.overBudget, true);
    assert.equal((await api(server.url, `/api/builds/${X.id}`)).body.status, 'succeeded');
    assert.equal((await objectsFor(`fw/access/${X.id}`)).length, 1, 'the access record is still there');
  });
});

// ---- a module proxy the test controls ---------------------------------------------------------

/** Publishes `version` of `module` into a GOPROXY directory (layout: <module>/@v/{list,.info,.mod,.zip}). */
async function publish(proxyDir: string, module: string, version: string, time: string): Promise<void> {
  const dir = join(proxyDir, module, '@v');
  await mkdir(dir, { recursive: true });
  const gomod = `module ${module}\n\ngo 1.21\n`;
  await writeFile(join(dir, `${version}.mod`), gomod);
  await writeFile(join(dir, `${version}.info`), JSON.stringify({ Version: version, Time: time }));
  await writeFile(
    join(dir, `${version}.zip`),
    storeZip([
      [`${module}@${version}/go.mod`, Buffer.from(gomod)],
      [`${module}@${version}/hello.go`, Buffer.from('package hello\n')],
    ]),
  );
  const listPath = join(dir, 'list');
  const list = await import('node:fs/promises').then((f) => f.readFile(listPath, 'utf8')).catch(() => '');
  await writeFile(listPath, `${list}${version}\n`);
}

describe('version refresh: `latest` moves when the module proxy publishes a new version', { timeout: 10 * 60_000 }, () => {
  const MODULE = 'fairway.test/hello';
  let proxyDir: string;
  let server: FairwayProcess;

  before(async () => {
    const dir = await tempDir();
    proxyDir = join(dir, 'proxy');
    await publish(proxyDir, MODULE, 'v1.0.0', '2026-01-01T00:00:00Z');
    const upstream = process.env.GOPROXY || 'https://proxy.golang.org,direct';
    server = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--goproxy', `file://${proxyDir},${upstream}`, '--gonosumdb', 'fairway.test', '--resolve-ttl', '2s', '--refresh-interval', '1s', ...AUTH_ARGS],
      env: AUTH_ENV,
    });
  });
  after(async () => {
    await server?.stop();
  });

  const body = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [{ module: MODULE }] };

  test('an unpinned plugin re-resolves after the TTL: a new release gives a new key', async () => {
    const first = await api(server.url, '/api/builds', { json: body });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    assert.equal(first.body.spec.plugins[0].version, 'v1.0.0');
    await api(server.url, `/api/builds/${first.body.id}`, { method: 'DELETE' });

    await publish(proxyDir, MODULE, 'v1.1.0', '2026-02-01T00:00:00Z');
    await sleep(2500); // the resolve TTL
    const second = await api(server.url, '/api/builds', { json: body });
    assert.equal(second.status, 202, JSON.stringify(second.body));
    assert.equal(second.body.spec.plugins[0].version, 'v1.1.0');
    assert.notEqual(second.body.id, first.body.id);
    await api(server.url, `/api/builds/${second.body.id}`, { method: 'DELETE' });
  });

  test('GET /api/versions shows the list and when it was refreshed; the schedule refreshes it', async () => {
    const a = await api(server.url, '/api/versions');
    assert.equal(a.status, 200);
    assert.ok(a.body.versions.some((v: any) => v.version === CADDY_VERSION));
    assert.match(a.body.latest, /^v2\./);
    assert.ok(Date.parse(a.body.refreshedAt) > 0);
    await until('a newer refreshedAt', async () => Date.parse((await api(server.url, '/api/versions')).body.refreshedAt) > Date.parse(a.body.refreshedAt), 30_000, 500);
    assert.ok(metric(await metrics(server.url), 'fairway_version_refreshes_total{result="ok"}') >= 2);
  });
});
