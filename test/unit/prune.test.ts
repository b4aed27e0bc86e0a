// Unit tests of operations: the prune planner and Pruner on a real fs store, durable
// last-download times, pinned specs, the scheduler, the Go cache budget, prebuild expansion,
// version refresh timestamps, metrics and the ops config keys.
//   node --import tsx --test test/unit/prune.test.ts
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/index.js';
import { attributeBlobs, BLOB_REFERENCE_NAMESPACES, collectBlobs } from '../../src/ops/blobgc.js';
import { BuildGate, GoCacheBudget, dirBytes } from '../../src/ops/gocachebudget.js';
import { OpsMetrics } from '../../src/ops/metrics.js';
import { Prebuilder, VersionRefresher, expandPrebuilds } from '../../src/ops/prebuilds.js';
import { pinnedKeys } from '../../src/ops/prune-pinned.js';
import { planPrune, type PruneEntry } from '../../src/ops/prune-plan.js';
import { Pruner } from '../../src/ops/prune.js';
import { Scheduler } from '../../src/ops/scheduler.js';
import { GoResolver } from '../../src/resolve/index.js';
import { FsAccessTracker, MemoryAccessTracker } from '../../src/store/access.js';
import { FsStore, type ArtifactMeta } from '../../src/store/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';

const silent = pino({ level: 'silent' });
const dirs: string[] = [];
async function tmp(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fairway-prune-'));
  dirs.push(d);
  return d;
}
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const key = (n: number) => n.toString(16).padStart(64, '0');
const T0 = Date.parse('2026-01-01T00:00:00Z');
const HOUR = 3_600_000;
const entry = (n: number, bytes: number, lastAccessH: number, extra: Partial<PruneEntry> = {}): PruneEntry => ({
  key: key(n),
  bytes,
  status: 'succeeded',
  lastAccess: T0 + lastAccessH * HOUR,
  pinned: false,
  ...extra,
});

describe('planPrune (pure rules)', () => {
  test('under budget: nothing goes', () => {
    const p = planPrune([entry(1, 100, 0), entry(2, 100, 1)], { maxBytes: 200, now: T0 });
    assert.deepEqual(p.remove, []);
    assert.deepEqual(p.before, { bytes: 200, objects: 2 });
    assert.deepEqual(p.after, p.before);
    assert.equal(p.overBudget, false);
  });

  test('over budget: least recently used go first, only as many as needed', () => {
    const entries = [entry(1, 100, 5), entry(2, 100, 1), entry(3, 100, 3), entry(4, 100, 4)];
    const p = planPrune(entries, { maxBytes: 250, now: T0 + 10 * HOUR });
    assert.deepEqual(
      p.remove.map((r) => r.key),
      [key(2), key(3)],
    );
    assert.ok(p.remove.every((r) => r.reason === 'budget'));
    assert.deepEqual(p.after, { bytes: 200, objects: 2 });
  });

  test('pinned artifacts are never removed, even when the budget cannot be met', () => {
    const entries = [entry(1, 100, 0, { pinned: true }), entry(2, 100, 1), entry(3, 100, 2, { pinned: true })];
    const p = planPrune(entries, { maxBytes: 50, now: T0 });
    assert.deepEqual(
      p.remove.map((r) => r.key),
      [key(2)],
    );
    assert.equal(p.pinned, 2);
    assert.equal(p.overBudget, true);
    assert.equal(p.after.bytes, 200);
  });

  test('failure records go before successful builds, oldest first', () => {
    const entries = [entry(1, 100, 0), entry(2, 1, 5, { status: 'failed' }), entry(3, 1, 2, { status: 'canceled' }), entry(4, 100, 3)];
    const p = planPrune(entries, { maxBytes: 150, now: T0 });
    assert.deepEqual(
      p.remove.map((r) => r.key),
      [key(3), key(2), key(1)],
    );
  });

  test('max age removes everything not used within it; the budget then applies to the rest', () => {
    const entries = [entry(1, 100, 0), entry(2, 100, 9), entry(3, 100, 8), entry(4, 100, 1, { pinned: true })];
    const p = planPrune(entries, { maxAgeMs: 5 * HOUR, maxBytes: 250, now: T0 + 10 * HOUR });
    assert.deepEqual(
      p.remove.map((r) => [r.key, r.reason]),
      [
        [key(1), 'max-age'],
        [key(3), 'budget'],
      ],
    );
  });

  test('unaccounted bytes (unpublished leftovers) count against the budget but are not removable', () => {
    const p = planPrune([entry(1, 100, 0), entry(2, 100, 1)], { maxBytes: 250, now: T0, unaccountedBytes: 100 });
    assert.deepEqual(
      p.remove.map((r) => r.key),
      [key(1)],
    );
    assert.equal(p.before.bytes, 300);
    assert.equal(p.after.bytes, 200);
  });

  test('ties are broken by key, so plans are deterministic', () => {
    const p = planPrune([entry(9, 10, 0), entry(3, 10, 0)], { maxBytes: 10, now: T0 });
    assert.deepEqual(
      p.remove.map((r) => r.key),
      [key(3)],
    );
  });
});

function meta(n: number, finishedAt: number, extra: Partial<ArtifactMeta> = {}): ArtifactMeta {
  return {
    key: key(n),
    status: 'succeeded',
    request: { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [] },
    spec: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.0', xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' } },
    filename: 'caddy',
    size: 1000,
    sha256: 'x'.repeat(64),
    createdAt: new Date(finishedAt).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    ...extra,
  };
}

async function putArtifact(store: FsStore, dir: string, m: ArtifactMeta, bytes: number): Promise<void> {
  const bin = join(dir, `bin-${m.key.slice(-4)}`);
  await writeFile(bin, Buffer.alloc(bytes, 1));
  await store.put({ meta: { ...m, size: bytes }, ...(m.status === 'succeeded' ? { binaryPath: bin } : {}), log: 'log\n' });
}

describe('Pruner on a real fs store', () => {
  test('removes the least recently downloaded; last-download times survive a new tracker (restart)', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    await putArtifact(store, dir, meta(1, T0), 10_000);
    await putArtifact(store, dir, meta(2, T0 + HOUR), 10_000);
    await putArtifact(store, dir, meta(3, T0 + 2 * HOUR), 10_000);
    await putArtifact(store, dir, meta(4, T0 + 3 * HOUR, { status: 'failed', error: 'boom' }), 0);

    // Artifact 1 (oldest build) was downloaded last.
    const access1 = store.accessTracker({ intervalMs: 60_000 });
    assert.ok(access1 instanceof FsAccessTracker);
    access1.touch(key(1), T0 + 5 * HOUR);
    await access1.close();
    const recorded = await readFile(join(dir, 'artifacts', '.access', key(1)), 'utf8');
    assert.equal(recorded, new Date(T0 + 5 * HOUR).toISOString());

    // "Restart": a new tracker reads the durable record.
    const access = store.accessTracker();
    assert.equal(await access.get(key(1)), T0 + 5 * HOUR);
    const usage = await store.usage();
    assert.equal(usage.objects, 4);
    assert.equal(usage.bytes, (await store.stats()).bytes, 'usage agrees with store.stats()');
    const one = usage.entries.get(key(1))!.bytes;

    const reports: unknown[] = [];
    const pruner = new Pruner({ store, access, limits: { maxBytes: 2 * one + 10 }, logger: silent, onReport: (r) => reports.push(r), now: () => T0 + 6 * HOUR });
    const dry = await pruner.run({ dryRun: true });
    assert.equal(dry.dryRun, true);
    assert.deepEqual(
      dry.removed.map((r) => r.key),
      [key(4), key(2)],
      'the failure record first, then the LRU build (not the downloaded one)',
    );
    assert.equal((await store.stats()).objects, 4, 'a dry run removes nothing');

    const real = await pruner.run({ trigger: 'test' });
    assert.deepEqual(
      real.removed.map((r) => [r.key, r.reason]),
      [
        [key(4), 'budget'],
        [key(2), 'budget'],
      ],
    );
    assert.equal(real.removed[1]!.lastAccess, new Date(T0 + HOUR).toISOString(), 'never downloaded: its finish time');
    assert.deepEqual(real.before.objects, 4);
    assert.deepEqual(real.after, { bytes: real.before.bytes - real.removed.reduce((n, r) => n + r.bytes, 0), objects: 2 });
    assert.deepEqual(real.after, await store.stats());
    assert.equal(await store.getMeta(key(2)), null);
    assert.ok(await store.getMeta(key(1)));
    assert.equal(reports.length, 2);

    // One-off limits override the configured ones (admin "what if").
    const whatIf = await pruner.run({ dryRun: true, maxBytes: 0 });
    assert.deepEqual(
      whatIf.removed.map((r) => r.key),
      [key(3), key(1)],
    );
    await access.close();
  });

  test('pinned keys and pinned specs are kept; an unresolvable spec pins matching requests', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    await putArtifact(store, dir, meta(1, T0), 1000);
    await putArtifact(store, dir, meta(2, T0 + HOUR, { request: { caddyVersion: 'latest', os: 'linux', arch: 'arm64', plugins: [] } }), 1000);
    await putArtifact(store, dir, meta(3, T0 + 2 * HOUR, { request: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [] } }), 1000);
    const access = new MemoryAccessTracker();
    const pruner = new Pruner({
      store,
      access,
      limits: { maxBytes: 0 },
      pinned: [key(1), { os: 'linux', arch: 'arm64' }, { caddyVersion: '2.11.9', os: 'linux', arch: 'amd64' }],
      pinResolver: {
        resolve: async (spec) => {
          if (spec.arch === 'arm64') throw new Error('proxy down');
          return { key: key(3), request: spec };
        },
      },
      logger: silent,
    });
    const r = await pruner.run({ dryRun: true });
    assert.deepEqual(r.removed, []);
    assert.equal(r.pinned, 3);
    assert.equal(r.overBudget, true);
    await access.close();
  });

  test('pinnedKeys: exact keys, resolved specs, and the request-match fallback', async () => {
    const metas = [meta(1, T0, { request: { caddyVersion: 'latest', os: 'linux', arch: 'arm', arm: '7', plugins: [{ module: 'b' }, { module: 'a', version: 'v1.0.0' }] } })];
    const keys = await pinnedKeys([key(7), 'not-a-key', { os: 'linux', arch: 'arm', plugins: [{ module: 'a', version: 'v1.0.0' }, { module: 'b' }] }], metas, {});
    assert.deepEqual([...keys].sort(), [key(1), key(7)]);
  });

  test('a failure record replaced since the listing is not deleted', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    await putArtifact(store, dir, meta(1, T0, { status: 'failed', error: 'x' }), 0);
    const access = new MemoryAccessTracker();
    let replaced = false;
    const pruner = new Pruner({
      store,
      access,
      limits: { maxBytes: 0 },
      logger: silent,
      meta: async (k) => {
        const m = await store.getMeta(k);
        if (!replaced) {
          replaced = true;
          await putArtifact(store, dir, meta(1, T0 + HOUR), 100); // the retry succeeded meanwhile
        }
        return m;
      },
    });
    const r = await pruner.run({});
    assert.deepEqual(r.removed, []);
    assert.equal((await store.getMeta(key(1)))?.status, 'succeeded');
    await access.close();
  });
});

describe('access tracker', () => {
  test('debounce: first touch written at once, later ones at most once per interval; reads see pending times', async () => {
    let now = T0;
    const writes: Array<[string, number]> = [];
    class Recording extends MemoryAccessTracker {
      protected override async write(k: string, at: number): Promise<void> {
        writes.push([k, at]);
        await super.write(k, at);
      }
    }
    const t = new Recording({ intervalMs: 60_000, now: () => now });
    t.touch(key(1));
    now += 1000;
    t.touch(key(1));
    now += 1000;
    t.touch(key(1));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(writes, [[key(1), T0]]);
    assert.equal(await t.get(key(1)), T0 + 2000, 'the newest time is visible before it is written');
    now += 60_000;
    t.touch(key(1));
    await new Promise((r) => setImmediate(r));
    assert.equal(writes.length, 2);
    t.touch(key(1), now + 5);
    await t.close();
    assert.deepEqual(writes.at(-1), [key(1), now + 5], 'close() flushes pending times');
    t.touch('not-a-key');
    assert.equal(await t.get('not-a-key'), null);
  });

  test('fs: forget() removes the record', async () => {
    const dir = await tmp();
    const t = new FsAccessTracker(dir);
    t.touch(key(5), T0);
    await t.flush();
    assert.equal(await t.get(key(5)), T0);
    await t.forget(key(5));
    assert.equal(await t.get(key(5)), null);
    await t.close();
  });
});

/** Polls `f` every 5 ms until it is true; fails after 10 s. */
async function until(f: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('scheduler', () => {
  test('runs at start when asked, repeats, never overlaps, stop() waits for a run', async () => {
    const s = new Scheduler(silent);
    let runs = 0;
    let active = 0;
    let maxActive = 0;
    s.add({
      name: 't',
      intervalMs: 20,
      firstDelayMs: 0,
      jitter: 0,
      run: async () => {
        runs++;
        active++;
        maxActive = Math.max(maxActive, active);
        await new Promise((r) => setTimeout(r, 30));
        active--;
      },
    });
    // runNow() resolves (it must not reject); a second call while it runs joins the same run.
    const first = s.runNow('t');
    assert.equal(s.runNow('t'), first, 'a run in progress is joined, not started again');
    await first;
    assert.equal(runs, 1);
    s.start();
    // Repeats: wait for the runs themselves (not a fixed wall time), failing after 10 s.
    await until(() => runs >= 3, 'three runs');
    const inFlight = s.runNow('t');
    await s.stop();
    await inFlight;
    const after = runs;
    assert.ok(after >= 3, `ran ${after} times`);
    assert.equal(maxActive, 1);
    assert.equal(active, 0, 'stop() waited for the run in progress');
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(runs, after, 'no runs after stop()');
    assert.equal(s.status()[0]!.name, 't');
  });

  test('a failing task is logged and rescheduled', async () => {
    // The scheduler's pino log, captured: one JSON line per entry.
    const lines: Array<Record<string, any>> = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const s = new Scheduler(logger);
    let runs = 0;
    s.add({
      name: 'f',
      intervalMs: 10,
      firstDelayMs: 0,
      jitter: 0,
      run: async () => {
        runs++;
        throw new Error('nope');
      },
    });
    s.start();
    await until(() => runs >= 2, 'a second run after the failure');
    await s.stop();
    assert.ok(runs >= 2);
    assert.equal(s.status()[0]!.lastError, 'nope');
    const failed = lines.filter((l) => l.msg === 'scheduled task f failed');
    assert.ok(failed.length >= 2, `each failure is logged: ${JSON.stringify(lines)}`);
    for (const l of failed) {
      assert.equal(l.level, 40, 'as a warning');
      assert.equal(l.task, 'f');
      assert.equal(l.err?.message, 'nope', 'with the error');
    }
  });
});

describe('Go cache budget', () => {
  test('over budget: cleans -cache, then -modcache if still over; only when no build runs', async () => {
    const dir = await tmp();
    await mkdir(join(dir, 'build', 'aa'), { recursive: true });
    await mkdir(join(dir, 'mod', 'x'), { recursive: true });
    await writeFile(join(dir, 'build', 'aa', 'o'), Buffer.alloc(3000));
    await writeFile(join(dir, 'mod', 'x', 'z'), Buffer.alloc(2000));
    assert.equal(await dirBytes(dir), 5000);
    const gate = new BuildGate();
    const cleaned: string[] = [];
    const budget = new GoCacheBudget({
      cacheDir: dir,
      maxBytes: 1000,
      gate,
      logger: silent,
      clean: async (kind) => {
        cleaned.push(kind);
        await rm(join(dir, kind === 'cache' ? 'build' : 'mod'), { recursive: true, force: true });
      },
    });
    // A build runs: no cleaning.
    let release!: () => void;
    const job = gate.wrap<null>(() => new Promise<void>((r) => (release = r)));
    const running = job({} as never);
    assert.equal(gate.active, 1);
    assert.equal(await budget.enforce(), 'busy');
    assert.deepEqual(cleaned, []);
    release();
    await running;
    const r = await budget.enforce();
    assert.notEqual(r, 'busy');
    assert.deepEqual(cleaned, ['cache', 'modcache']);
    assert.equal(r !== 'busy' && r.after.total, 0);
    assert.equal(budget.lastMeasuredBytes, 0);
  });

  test('builds arriving during a clean wait for it', async () => {
    const gate = new BuildGate();
    let cleaning!: () => void;
    const order: string[] = [];
    const clean = gate.whenIdle(
      () =>
        new Promise<void>(
          (r) =>
            (cleaning = () => {
              order.push('clean done');
              r();
            }),
        ),
    );
    const job = gate.wrap<null>(async () => void order.push('build'));
    const built = job({} as never);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(order, []);
    cleaning();
    await Promise.all([clean, built]);
    assert.deepEqual(order, ['clean done', 'build']);
  });

  test('under budget: nothing cleaned', async () => {
    const dir = await tmp();
    await writeFile(join(dir, 'f'), 'x');
    const budget = new GoCacheBudget({ cacheDir: dir, maxBytes: 10, gate: new BuildGate(), clean: async () => assert.fail('no clean') });
    const r = await budget.enforce();
    assert.equal(r !== 'busy' && r.skipped, 'under-budget');
  });
});

describe('prebuilds and version refresh', () => {
  test('expandPrebuilds: platforms expand to one spec each', () => {
    assert.deepEqual(
      expandPrebuilds([
        { caddyVersion: 'latest', platforms: ['linux/amd64', 'linux/arm/v6'], plugins: [] },
        { os: 'darwin', arch: 'arm64' },
      ]),
      [
        { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [] },
        { caddyVersion: 'latest', os: 'linux', arch: 'arm', arm: '6', plugins: [] },
        { os: 'darwin', arch: 'arm64' },
      ],
    );
  });

  test('Prebuilder substitutes the listed latest for `latest` and reports what was queued', async () => {
    const seen: unknown[] = [];
    const queued: string[] = [];
    const p = new Prebuilder({
      specs: [{ platforms: ['linux/amd64'] }, { caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm64' }],
      request: async (body) => {
        seen.push(body);
        const cached = (body as { arch: string }).arch === 'arm64';
        return { key: cached ? key(2) : key(1), status: cached ? 'succeeded' : 'queued', cached } as never;
      },
      onQueued: (k) => queued.push(k),
    });
    const r = await p.queueAll('v2.12.0', 'test');
    assert.deepEqual(seen, [
      { os: 'linux', arch: 'amd64', caddyVersion: 'v2.12.0' },
      { caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm64' },
    ]);
    assert.deepEqual(queued, [key(1)]);
    assert.deepEqual(
      r.map((x) => x.queued),
      [true, false],
    );
  });

  test('GoResolver.caddyVersions({refresh}) re-reads the list and moves refreshedAt; VersionRefresher tracks latest', async () => {
    let now = T0;
    let versions = ['v2.10.0', 'v2.11.0-beta.1', 'v2.11.9'];
    let calls = 0;
    const dir = await tmp();
    const fake = {
      tmpDir: dir,
      identity: { go: 'go1.x', xcaddy: 'v0.4.5' },
      go: async (args: string[]) => {
        calls++;
        assert.deepEqual(args.slice(0, 3), ['list', '-m', '-versions']);
        return { stdout: JSON.stringify({ Path: 'github.com/caddyserver/caddy/v2', Versions: versions }), stderr: '' };
      },
    } as unknown as Toolchain;
    const resolver = new GoResolver(fake, { ttlMs: 60_000, buildFlags: 'x', now: () => now });
    const a = await resolver.caddyVersions();
    assert.equal(a.latest, 'v2.11.9');
    assert.equal(a.refreshedAt, new Date(T0).toISOString());
    assert.equal(a.versions[0]!.version, 'v2.11.9');
    assert.equal(a.versions.find((v) => v.version === 'v2.11.0-beta.1')?.prerelease, true);
    now += 1000;
    assert.equal((await resolver.caddyVersions()).refreshedAt, a.refreshedAt, 'memoised within the TTL');
    assert.equal(calls, 1);
    versions = [...versions, 'v2.12.0'];
    const changes: Array<[string | null, string | null]> = [];
    const refresher = new VersionRefresher({ versions: (o) => resolver.caddyVersions(o), onRefreshed: (l, prev) => changes.push([prev, l.latest]) });
    now += 1000;
    const b = await refresher.refresh();
    assert.equal(b.latest, 'v2.12.0');
    assert.equal(b.refreshedAt, new Date(T0 + 2000).toISOString());
    assert.equal(refresher.refreshedAt, b.refreshedAt);
    assert.equal(calls, 2);
    assert.deepEqual(changes, [[null, 'v2.12.0']]);
  });
});

describe('metrics', () => {
  test('counters from service hooks and prune reports; state gauges collected on scrape', async () => {
    const m = new OpsMetrics(
      {
        depth: async () => ({ queued: 2, running: 1 }),
        agents: async () => [
          { id: 'a', host: 'h', go: 'g', xcaddy: 'x', concurrency: 3, jobs: ['k'], startedAt: '', lastSeen: '' },
          {
            id: 'b',
            host: 'h',
            go: 'g',
            xcaddy: 'x',
            concurrency: 0,
            jobs: [],
            startedAt: '',
            lastSeen: '',
            cache: { shared: true, hits: 90, misses: 10, hitRate: 0.9, sharedHits: 60, corrupt: 1, sharedBytesRead: 4096, sharedBytesWritten: 512 },
          },
        ],
        storeStats: async () => ({ bytes: 1234, objects: 5 }),
      },
      { processMetrics: false },
    );
    const h = m.serviceHooks();
    h.requested!(key(1), 'hit');
    h.requested!(key(2), 'queued');
    h.requested!(key(3), 'joined');
    h.downloaded!(key(1));
    h.finished!(key(2), 'succeeded', meta(2, T0, { durationMs: 12_000 }));
    h.finished!(key(3), 'failed', null);
    m.pruned({
      dryRun: false,
      trigger: 'artifact',
      budget: { maxBytes: 1, maxAgeMs: null },
      before: { bytes: 2000, objects: 6 },
      removed: [{ key: key(1), bytes: 700, status: 'succeeded', lastAccess: '', reason: 'budget' }],
      after: { bytes: 1300, objects: 5 },
      pinned: 0,
      overBudget: true,
      errors: [],
      blobs: { removed: 0, bytes: 0, young: 0, storedBytes: 0, errors: 0 },
      startedAt: '',
      durationMs: 1,
    });
    const text = await m.metrics();
    const has = (re: RegExp) => assert.match(text, re);
    has(/^fairway_builds_total\{outcome="succeeded"\} 1$/m);
    has(/^fairway_builds_total\{outcome="failed"\} 1$/m);
    has(/^fairway_build_duration_seconds_bucket\{le="20",outcome="succeeded"\} 1$/m);
    has(/^fairway_cache_lookups_total\{result="hit"\} 1$/m);
    has(/^fairway_cache_lookups_total\{result="miss"\} 2$/m);
    has(/^fairway_build_requests_total\{result="joined"\} 1$/m);
    has(/^fairway_artifact_downloads_total 1$/m);
    has(/^fairway_queue_depth\{state="queued"\} 2$/m);
    has(/^fairway_queue_depth\{state="running"\} 1$/m);
    has(/^fairway_agents 2$/m);
    has(/^fairway_agent_slots 3$/m);
    // The shared build cache figures of each agent's last heartbeat; none for an agent without them.
    has(/^fairway_agent_gocache_lookups\{agent="b",result="hit"\} 90$/m);
    has(/^fairway_agent_gocache_lookups\{agent="b",result="miss"\} 10$/m);
    has(/^fairway_agent_gocache_lookups\{agent="b",result="shared_hit"\} 60$/m);
    has(/^fairway_agent_gocache_lookups\{agent="b",result="corrupt"\} 1$/m);
    has(/^fairway_agent_gocache_shared_bytes\{agent="b",direction="read"\} 4096$/m);
    has(/^fairway_agent_gocache_shared_bytes\{agent="b",direction="written"\} 512$/m);
    assert.doesNotMatch(text, /agent="a"/);
    has(/^fairway_store_bytes 1300$/m); // the prune report refreshed the cached reading
    has(/^fairway_store_objects 5$/m);
    has(/^fairway_store_up 1$/m);
    has(/^fairway_prune_runs_total\{trigger="artifact",dry_run="false"\} 1$/m);
    has(/^fairway_pruned_artifacts_total\{reason="budget"\} 1$/m);
    has(/^fairway_pruned_bytes_total 700$/m);
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  });

  test('a store that does not answer: store_up 0, the scrape still answers', async () => {
    const m = new OpsMetrics({ storeStats: () => new Promise(() => undefined) }, { processMetrics: false, collectTimeoutMs: 50 });
    const text = await m.metrics();
    assert.match(text, /^fairway_store_up 0$/m);
  });
});

describe('ops config keys', () => {
  const load = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => loadConfig({ flags, env });
  test('defaults', () => {
    const c = load({});
    assert.equal(c.storeMaxBytes, undefined);
    assert.deepEqual(c.pinned, []);
    assert.deepEqual(c.prebuild, []);
    assert.equal(c.refreshInterval, 3_600_000);
    assert.equal(c.pruneInterval, 3_600_000);
  });
  test('sizes, durations, lists from flags and env', () => {
    const c = load({ storeMaxBytes: '20GB', storeMaxAge: '30d', prebuild: 'linux/amd64,linux/arm64', goCacheMaxBytes: '10GiB', refreshInterval: '15m' }, { FAIRWAY_PINNED: `${key(1)},${key(2)}` });
    assert.equal(c.storeMaxBytes, 20e9);
    assert.equal(c.storeMaxAge, 30 * 24 * HOUR);
    assert.equal(c.goCacheMaxBytes, 10 * 1024 ** 3);
    assert.equal(c.refreshInterval, 15 * 60_000);
    assert.deepEqual(c.pinned, [key(1), key(2)]);
    assert.deepEqual(c.prebuild, [{ caddyVersion: 'latest', platforms: ['linux/amd64', 'linux/arm64'], plugins: [] }]);
    const j = load({ pinned: JSON.stringify([{ os: 'linux', arch: 'amd64' }, key(3)]) });
    assert.deepEqual(j.pinned, [{ os: 'linux', arch: 'amd64' }, key(3)]);
  });
  test('bad values name the setting', () => {
    assert.throws(() => load({ storeMaxBytes: 'lots' }), /storeMaxBytes/);
    assert.throws(() => load({ pinned: 'abc' }), /pinned/);
    assert.throws(() => load({ prebuild: '[{' }), /prebuild.*invalid JSON/);
  });
});

// ---- image blobs: counted against the budget, collected when nothing references them --------

describe('image blobs: attribution, collection, pruning', () => {
  const d = (n: number) => `sha256:${n.toString(16).padStart(64, 'b')}`;
  const listed = (n: number, size: number, modifiedAt = T0) => ({ digest: d(n), size, modifiedAt });

  test('attributeBlobs: only-mine blobs are charged to the artifact, shared ones once, unreferenced by age', () => {
    const refs = {
      byKey: new Map([
        [key(1), new Set([d(1), d(9)])],
        [key(2), new Set([d(2), d(9)])],
      ]),
      unowned: new Set([d(3)]),
    };
    const v = attributeBlobs(refs, [listed(1, 100), listed(2, 200), listed(9, 5000), listed(3, 7), listed(4, 40, T0 + 30 * 60_000), listed(5, 50)], { now: T0 + HOUR + 1 });
    assert.deepEqual(
      [...v.perKey],
      [
        [key(1), 100],
        [key(2), 200],
      ],
    );
    assert.equal(v.sharedBytes, 5007, 'the base layer shared by both, and the blob a record of no artifact names');
    assert.equal(v.youngBytes, 40, 'unreferenced, 30 min old: within the grace period');
    assert.equal(v.garbageBytes, 50, 'unreferenced, older than the grace period');
    assert.equal(v.totalBytes, 100 + 200 + 5000 + 7 + 40 + 50);
    assert.deepEqual([v.young, v.garbage, v.blobs], [1, 1, 6]);
  });

  test('planPrune: collectable bytes count before, go first, and can spare an artifact', () => {
    const entries = [entry(1, 100, 1), entry(2, 100, 2)];
    const p = planPrune(entries, { maxBytes: 200, now: T0, collectableBytes: 50 });
    assert.deepEqual(p.before, { bytes: 250, objects: 2 });
    assert.deepEqual(p.remove, [], 'the garbage alone brings it under the budget');
    assert.deepEqual(p.after, { bytes: 200, objects: 2 });
    const q = planPrune(entries, { maxBytes: 150, now: T0, collectableBytes: 50, unaccountedBytes: 10 });
    assert.deepEqual(
      q.remove.map((r) => r.key),
      [key(1)],
    );
    assert.deepEqual(q.after, { bytes: 110, objects: 1 });
  });

  /** A real blob in the store (its mtime set to `at`), returned as {digest, size}. */
  async function putBlob(store: FsStore, dir: string, seed: string, size: number, at = T0): Promise<{ digest: string; size: number }> {
    const body = Buffer.alloc(size, seed);
    const path = join(dir, `blob-${seed}`);
    await writeFile(path, body);
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    await store.putBlob(digest, path);
    await utimes(join(dir, 'artifacts', 'blobs', 'sha256', digest.slice(7)), new Date(at), new Date(at));
    return { digest, size };
  }
  const blobNames = async (store: FsStore) => {
    const out: string[] = [];
    for await (const b of store.listBlobs()) out.push(b.digest);
    return out.sort();
  };

  test('collectBlobs on a real fs store: references of every namespace kept, garbage past the grace deleted, new blobs kept', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    const now = T0 + 2 * HOUR;
    const layer = await putBlob(store, dir, 'l', 3000);
    const base = await putBlob(store, dir, 'b', 2000);
    const sig = await putBlob(store, dir, 's', 300);
    const old = await putBlob(store, dir, 'o', 100);
    const fresh = await putBlob(store, dir, 'f', 100, now - 10 * 60_000);
    await store.putRecord('images', key(1), { key: key(1), manifestDigest: layer.digest, blobs: [layer, base] });
    await store.putRecord('cosign-extra', key(1), { blobs: [sig] });
    // A tag index's signature names blobs without keeping them: it goes with them.
    await store.putRecord('index-signatures', 'idx-old', { blobs: [old] });
    await store.putRecord('index-signatures', 'idx-fresh', { blobs: [fresh] });

    // `cosign-extra` is not one of the default referencing namespaces: its record's blob is garbage.
    const dry = await collectBlobs(store, { now, dryRun: true, log: silent });
    assert.deepEqual(dry.removed.map((b) => b.digest).sort(), [old.digest, sig.digest].sort());
    assert.equal((await blobNames(store)).length, 5, 'a dry run deletes nothing');
    assert.deepEqual(dry.droppedRecords, ['index-signatures/idx-old']);
    assert.ok(await store.getRecord('index-signatures', 'idx-old'), 'a dry run drops no record');

    const gc = await collectBlobs(store, { now, namespaces: [...BLOB_REFERENCE_NAMESPACES, 'cosign-extra'], log: silent });
    assert.deepEqual(gc.removed, [old]);
    assert.deepEqual(gc.droppedRecords, ['index-signatures/idx-old'], 'the index signature whose blob was collected');
    assert.deepEqual(await store.listRecords('index-signatures'), ['idx-fresh']);
    await store.deleteRecord('index-signatures', 'idx-fresh');
    assert.equal(gc.bytes, 100);
    assert.deepEqual([gc.young, gc.referenced], [1, 3]);
    assert.deepEqual(await blobNames(store), [layer.digest, base.digest, sig.digest, fresh.digest].sort());

    // A record of no artifact (yet) whose blob is new: an image made before its artifact is published. It stays.
    await store.putRecord('images', key(5), { blobs: [fresh] });
    const early = await collectBlobs(store, { now, artifactExists: async (k) => k === key(1), log: silent });
    assert.deepEqual(early.droppedRecords, [], 'a record with a new blob is not dropped');
    assert.ok(await store.getRecord('images', key(5)));
    await store.deleteRecord('images', key(5));

    // The artifact went another way (deleted, quarantined): its records go, then its blobs.
    const gone = await collectBlobs(store, { now, namespaces: [...BLOB_REFERENCE_NAMESPACES, 'cosign-extra'], artifactExists: async () => false, log: silent });
    assert.deepEqual(gone.droppedRecords, [`images/${key(1)}`, `cosign-extra/${key(1)}`], 'the records it had');
    assert.equal(await store.getRecord('images', key(1)), null);
    assert.equal(await store.getRecord('cosign-extra', key(1)), null);
    assert.deepEqual(await blobNames(store), [fresh.digest], 'only the blob within the grace period is left');
  });

  test('collectBlobs: an unreadable referencing record stops the sweep (nothing deleted)', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    const old = await putBlob(store, dir, 'o', 100);
    await mkdir(join(dir, 'artifacts', 'records', 'images'), { recursive: true });
    await writeFile(join(dir, 'artifacts', 'records', 'images', `${key(7)}.json`), '{not json');
    const gc = await collectBlobs(store, { now: T0 + 2 * HOUR, log: silent });
    assert.match(gc.skipped ?? '', /could not be read/);
    assert.deepEqual(gc.removed, []);
    assert.deepEqual(await blobNames(store), [old.digest]);
  });

  test('Pruner.collect() without limits: the records of an artifact deleted elsewhere go, then its blobs; a live artifact keeps its own', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    await putArtifact(store, dir, meta(1, T0), 100);
    await putArtifact(store, dir, meta(2, T0), 100);
    const b1 = await putBlob(store, dir, '1', 300);
    const b2 = await putBlob(store, dir, '2', 300);
    await store.putRecord('images', key(1), { blobs: [b1] });
    await store.putRecord('images', key(2), { blobs: [b2] });
    await store.delete(key(2)); // e.g. quarantined
    const access = store.accessTracker();
    const pruner = new Pruner({ store, access, limits: {}, logger: silent });
    assert.equal(pruner.enabled, false);
    const gc = await pruner.collect();
    assert.deepEqual(gc?.droppedRecords, [`images/${key(2)}`]);
    assert.deepEqual(await blobNames(store), [b1.digest]);
    assert.ok(await store.getRecord('images', key(1)));
    await access.close();
  });

  test('Pruner: image blobs count against the budget; a pruned artifact takes its record and its own blobs, the shared base layer stays', async () => {
    const dir = await tmp();
    const store = await FsStore.open(join(dir, 'artifacts'));
    const now = T0 + 10 * HOUR;
    await putArtifact(store, dir, meta(1, T0), 1000);
    await putArtifact(store, dir, meta(2, T0 + HOUR), 1000);
    const base = await putBlob(store, dir, 'b', 2000);
    const l1 = await putBlob(store, dir, '1', 5000);
    const l2 = await putBlob(store, dir, '2', 5000);
    const index = await putBlob(store, dir, 'i', 50, now - 60_000); // a tag index: no record, new
    await store.putRecord('images', key(1), { key: key(1), blobs: [l1, base] });
    await store.putRecord('images', key(2), { key: key(2), blobs: [l2, base] });
    const files = (await store.usage()).entries.get(key(1))!.bytes;
    const access = store.accessTracker();
    // The artifact areas alone (2 × ~1 KB) are far under 10 KB; with the blobs (12 KB) they are not.
    const pruner = new Pruner({ store, access, limits: { maxBytes: 10_000 }, logger: silent, now: () => now });
    const dry = await pruner.run({ dryRun: true });
    assert.deepEqual(
      dry.removed.map((r) => [r.key, r.bytes]),
      [[key(1), files + 5000]],
      'the oldest goes, charged its own layer, not the shared one',
    );
    assert.equal(dry.before.bytes, 2 * files + 12_050);
    assert.deepEqual(dry.blobs, { removed: 1, bytes: 5000, young: 1, storedBytes: 12_050, errors: 0 });

    const real = await pruner.run({ trigger: 'test' });
    assert.deepEqual(
      real.removed.map((r) => r.key),
      [key(1)],
    );
    assert.equal(await store.getRecord('images', key(1)), null, 'its image record went with it');
    assert.ok(await store.getRecord('images', key(2)));
    assert.deepEqual(await blobNames(store), [base.digest, l2.digest, index.digest].sort(), 'its own layer went; the shared base layer and the new index stay');
    assert.deepEqual(real.blobs, { removed: 1, bytes: 5000, young: 1, storedBytes: 12_050, errors: 0 });
    const left = (await store.stats()).bytes + 7050;
    assert.deepEqual(real.after, { bytes: left, objects: 1 }, 'after: what is really left, blobs included');
    assert.equal(real.overBudget, false);
    await access.close();
  });
});
