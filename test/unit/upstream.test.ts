// The watcher's decisions (src/upstream): which candidate a recipe gets, what is promoted, what a
// failure moves (nothing), which change is the culprit, what is never tried twice, what is not
// judged at all (a build that could not start, was canceled, or a lease held elsewhere), and the
// events it tells. Real FsStore records; builds are an in-process table of which versions compile
// (the real builds are in test/integration/upstream.test.ts).
//   node --import tsx --test test/unit/upstream.test.ts
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { FsStore } from '../../src/store/index.js';
import { applyChange, CADDY_MODULE, changes, compareGoVersions, fits, pinnedSet, setId } from '../../src/upstream/sets.js';
import { WatchBook } from '../../src/upstream/state.js';
import { type BuildHandle, type WatchEvent, Watcher, type WatcherOptions, type WatchedRecipe } from '../../src/upstream/watcher.js';

const A = 'example.com/a';
const B = 'example.com/b';

/** A little upstream: module versions (newest first), Caddy releases, and which module@versions do not compile. */
class World {
  versions = new Map<string, string[]>([
    [A, ['v1.0.0']],
    [B, ['v1.0.0']],
  ]);
  caddy = ['v2.11.9', 'v2.11.8'];
  bad = new Set<string>();
  builds: Array<Record<string, unknown>> = [];
  status: 'succeeded' | 'canceled' = 'succeeded';
  refuse = false;
  readonly byId = new Map<string, BuildHandle>();
  private n = 0;

  async build(body: Record<string, unknown>): Promise<BuildHandle> {
    if (this.refuse) throw new Error('resolver_busy');
    this.builds.push(body);
    const plugins = body.plugins as Array<{ module: string; version: string }>;
    const broken = [`${CADDY_MODULE}@${body.caddyVersion}`, ...plugins.map((p) => `${p.module}@${p.version}`)].find((x) => this.bad.has(x));
    const id = `b${++this.n}`;
    const h: BuildHandle = broken ? { id, key: id, status: 'failed', error: `${broken} does not compile` } : { id, key: id, status: this.status };
    this.byId.set(id, h);
    return h;
  }
}

describe('upstream watcher', () => {
  let dir: string;
  let store: FsStore;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fairway-upstream-'));
    store = await FsStore.open(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  function watcher(world: World, recipes: WatchedRecipe[], extra: Partial<WatcherOptions> = {}) {
    const events: WatchEvent[] = [];
    const book = new WatchBook(store);
    const w = new Watcher(
      {
        book,
        recipes: async () => recipes,
        caddyVersions: async () => ({ versions: world.caddy.map((version) => ({ version, prerelease: version.includes('-') })), latest: world.caddy[0] ?? null }),
        admitted: async (module, version) => (version === 'latest' ? (world.versions.get(module) ?? []) : [version]),
        platforms: [
          { name: 'linux/amd64', go: { os: 'linux', arch: 'amd64' } },
          { name: 'linux/arm64', go: { os: 'linux', arch: 'arm64' } },
        ],
        build: (body) => world.build(body),
        waitFor: async (id) => world.byId.get(id)!,
        check: async () => null,
        lease: { acquire: async () => true },
        leaseMs: 60_000,
        notify: (e) => events.push(e),
        logger: pino({ level: 'silent' }),
        ...extra,
      },
      store,
    );
    return { w, book, events };
  }

  test('sets: changes, one change applied, Go version order', () => {
    const base = pinnedSet('v2.11.8', [
      { module: B, version: 'v1.0.0' },
      { module: A, version: 'v1.0.0' },
    ]);
    assert.deepEqual(
      base.plugins.map((p) => p.module),
      [A, B],
      'sorted by module',
    );
    const next = pinnedSet('v2.11.9', [
      { module: A, version: 'v1.1.0' },
      { module: B, version: 'v1.0.0' },
    ]);
    assert.deepEqual(changes(base, next), [
      { module: CADDY_MODULE, version: 'v2.11.9', from: 'v2.11.8' },
      { module: A, version: 'v1.1.0', from: 'v1.0.0' },
    ]);
    assert.equal(setId(applyChange(base, { module: A, version: 'v1.1.0' }, [A, B])), `${CADDY_MODULE}@v2.11.8 ${A}@v1.1.0 ${B}@v1.0.0`);
    assert.equal(setId(applyChange(base, { module: CADDY_MODULE, version: 'v2.11.9' }, [A])), `${CADDY_MODULE}@v2.11.9 ${A}@v1.0.0`, 'a plugin the recipe dropped is not carried');
    assert.ok(compareGoVersions('v2.10.0', 'v2.9.1') > 0);
    assert.ok(compareGoVersions('v2.11.0-beta.1', 'v2.11.0') < 0);
  });

  test('promotes a candidate that builds everywhere; a second run with nothing new builds nothing', async () => {
    const world = new World();
    const { w, book, events } = watcher(world, [{ name: 'one', plugins: [{ module: A }] }]);
    const r = await w.run('test');
    assert.equal(r.ran, true);
    const s = await book.get('one');
    assert.equal(s.promoted.length, 1);
    assert.equal(setId(s.promoted[0]!), `${CADDY_MODULE}@v2.11.9 ${A}@v1.0.0`);
    assert.equal(world.builds.length, 2, 'one build per image platform');
    assert.deepEqual(
      events.map((e) => e.event),
      ['recipe.promoted'],
    );
    assert.equal(events[0]!.previous, null);
    assert.deepEqual(
      events[0]!.builds.map((b) => b.platform),
      ['linux/amd64', 'linux/arm64'],
    );
    assert.equal((await book.promoted('one', 'latest'))?.plugins[0]?.version, 'v1.0.0');
    await w.run('again');
    assert.equal(world.builds.length, 2, 'nothing new: nothing built');
  });

  test('a failed candidate moves nothing, names its one change, and is not tried again; a fixed release is promoted', async () => {
    const world = new World();
    const { w, book, events } = watcher(world, [{ name: 'two', plugins: [{ module: A }] }]);
    await w.run('first');
    world.versions.set(A, ['v1.1.0', 'v1.0.0']);
    world.bad.add(`${A}@v1.1.0`);
    await w.run('bad release');
    let s = await book.get('two');
    assert.equal(s.promoted[0]!.plugins[0]!.version, 'v1.0.0', 'the promoted set stays');
    const failed = events.find((e) => e.event === 'recipe.failed')!;
    assert.deepEqual(failed.culprit, { module: A, version: 'v1.1.0' });
    assert.match(failed.reason ?? '', /does not compile/);
    assert.deepEqual(failed.previous?.plugins, [{ module: A, version: 'v1.0.0' }]);
    assert.deepEqual(
      s.broken.map((b) => `${b.module}@${b.version}`),
      [`${A}@v1.1.0`],
    );
    const built = world.builds.length;
    await w.run('same again');
    assert.equal(world.builds.length, built, 'a broken version is not tried again');
    world.versions.set(A, ['v1.2.0', 'v1.1.0', 'v1.0.0']);
    await w.run('fixed');
    s = await book.get('two');
    assert.equal(s.promoted[0]!.plugins[0]!.version, 'v1.2.0');
    assert.deepEqual(
      events.map((e) => e.event),
      ['recipe.promoted', 'recipe.failed', 'recipe.promoted'],
    );
    assert.deepEqual(events[2]!.previous?.plugins, [{ module: A, version: 'v1.0.0' }]);
    assert.deepEqual(
      s.history.map((h) => `${h.kind}:${h.result}`),
      ['candidate:promoted', 'candidate:failed', 'candidate:promoted'],
    );
  });

  test('two changes at once, one bad: each is tried alone, the culprit is named, and the good change is promoted', async () => {
    const world = new World();
    const { w, book, events } = watcher(world, [
      {
        name: 'three',
        plugins: [{ module: A }, { module: B }],
      },
    ]);
    await w.run('first');
    world.versions.set(A, ['v1.1.0', 'v1.0.0']);
    world.versions.set(B, ['v1.1.0', 'v1.0.0']);
    world.bad.add(`${B}@v1.1.0`);
    await w.run('two releases');
    const s = await book.get('three');
    const failed = events.find((e) => e.event === 'recipe.failed')!;
    assert.deepEqual(failed.culprit, { module: B, version: 'v1.1.0' });
    assert.equal(setId(s.promoted[0]!), `${CADDY_MODULE}@v2.11.9 ${A}@v1.1.0 ${B}@v1.0.0`, 'the candidate without the culprit is promoted in the same run');
    const searched = s.history.filter((h) => h.kind === 'culprit-search');
    assert.deepEqual(
      searched.map((h) => `${setId(h)}:${h.result}`),
      [`${CADDY_MODULE}@v2.11.9 ${A}@v1.0.0 ${B}@v1.1.0:failed`, `${CADDY_MODULE}@v2.11.9 ${A}@v1.1.0 ${B}@v1.0.0:passed`],
      'newest first: B alone failed after A alone passed',
    );
  });

  test('a new Caddy release that breaks the recipe is the culprit; the older Caddy stays promoted', async () => {
    const world = new World();
    const { w, book, events } = watcher(world, [{ name: 'four', plugins: [{ module: A }] }]);
    await w.run('first');
    world.caddy.unshift('v2.12.0');
    world.bad.add(`${CADDY_MODULE}@v2.12.0`);
    await w.run('caddy release');
    assert.deepEqual(
      events.map((e) => e.event),
      ['recipe.promoted', 'caddy.released', 'recipe.failed'],
    );
    assert.deepEqual(events[2]!.culprit, { module: CADDY_MODULE, version: 'v2.12.0' });
    assert.equal((await book.promoted('four', 'latest'))?.caddyVersion, 'v2.11.9');
  });

  test('not judged: a build that cannot start, a canceled build, a lease held elsewhere', async () => {
    const world = new World();
    world.refuse = true;
    const { w, book } = watcher(world, [{ name: 'five', plugins: [{ module: A }] }]);
    const r = await w.run('refused');
    assert.match(r.recipes[0]!.outcome, /not tried: .*resolver_busy/);
    assert.equal((await book.get('five')).history.length, 0, 'nothing recorded, nothing broken');
    world.refuse = false;
    world.status = 'canceled';
    const r2 = await w.run('canceled');
    assert.match(r2.recipes[0]!.outcome, /not tried: .*canceled/);
    assert.equal((await book.get('five')).broken.length, 0);
    const held = watcher(new World(), [{ name: 'six', plugins: [{ module: A }] }], { lease: { acquire: async () => false } });
    const r3 = await held.w.run('held');
    assert.equal(r3.ran, false);
    assert.equal((await held.book.get('six')).promoted.length, 0);
  });

  test('a recipe that changed drops the promoted sets of what it was; its new set is promoted', async () => {
    const world = new World();
    const recipes: WatchedRecipe[] = [{ name: 'eight', plugins: [{ module: A }] }];
    const { w, book } = watcher(world, recipes);
    await w.run('first');
    const before = await book.get('eight');
    assert.ok(fits(recipes[0]!, before.promoted[0]!));
    assert.equal(fits({ plugins: [{ module: A }, { module: B }] }, before.promoted[0]!), false, 'another module set');
    assert.equal(fits({ plugins: [{ module: A }], caddyVersion: 'v2.11.8' }, before.promoted[0]!), false, 'another pinned Caddy');
    recipes[0] = { name: 'eight', plugins: [{ module: A }, { module: B }] };
    world.bad.add(`${B}@v1.0.0`);
    await w.run('changed, and its new set fails');
    assert.equal((await book.get('eight')).promoted.length, 0, 'the old set is not a set of this recipe: not kept');
    world.bad.delete(`${B}@v1.0.0`);
    world.versions.set(B, ['v1.0.1', 'v1.0.0']);
    await w.run('fixed');
    const after = await book.get('eight');
    assert.equal(after.promoted.length, 1);
    assert.equal(setId(after.promoted[0]!), `${CADDY_MODULE}@v2.11.9 ${A}@v1.0.0 ${B}@v1.0.1`);
  });

  test('a run reads what every recipe admits once, before its first trial: releases published together are seen together', async () => {
    const world = new World();
    const order: string[] = [];
    const recipes: WatchedRecipe[] = [
      { name: 'nine', plugins: [{ module: A }] },
      { name: 'ten', plugins: [{ module: A }, { module: B }] },
    ];
    const { w } = watcher(world, recipes, {
      admitted: async (module, version) => {
        order.push(`list ${module}`);
        return version === 'latest' ? (world.versions.get(module) ?? []) : [version];
      },
      build: (body) => {
        order.push('build');
        return world.build(body);
      },
    });
    await w.run('snapshot');
    assert.deepEqual(order.slice(0, 2), [`list ${A}`, `list ${B}`], 'every list first, each module once');
    assert.equal(order.filter((o) => o.startsWith('list')).length, 2);
  });

  test('a failed check fails the candidate like a failed build', async () => {
    const world = new World();
    const { w, book, events } = watcher(world, [{ name: 'seven', plugins: [{ module: A }] }], { check: async () => 'caddy validate refused the test config' });
    await w.run('check');
    assert.equal((await book.get('seven')).promoted.length, 0);
    assert.match(events[0]!.reason ?? '', /caddy validate/);
    assert.equal(events[0]!.culprit, undefined, 'no promoted set to compare with: no culprit');
  });
});
