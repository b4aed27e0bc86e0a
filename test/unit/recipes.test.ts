// Recipes that follow versions, in-process (inject(); test/helpers/api.ts, whose stand-in resolver
// lists module versions from the test, as `go list -m -versions` would): a recipe plugin's version
// may be a semver range, checked at the edge (PUT /api/recipes/:name, the recipes setting); a
// recipe may carry a test config; the registry's tag path and the prebuilds pin ranges to the
// newest admitted version before anything is requested; RecipeBook.resolve pins every version.
// The real toolchain and module proxy: test/integration/recipe-ranges.test.ts.
//   node --import tsx --test test/unit/recipes.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { configSchema } from '../../src/config/schema.js';
import { GoResolver } from '../../src/resolve/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';
import { testApi, type TestApi } from '../helpers/api.js';

const PLUG = 'example.com/plug';
const NEWER = 'example.com/newer';
/** As `go list -m -versions` lists them (oldest first, no pseudo-versions). */
const VERSIONS = { [PLUG]: ['v1.0.0', 'v1.1.0', 'v1.2.0-rc.1', 'v2.0.0+incompatible'], [NEWER]: ['v0.1.0'] };
const READER = 'fw_reader_token_0123456789abcdef';
const BUILDER = 'fw_builder_token_0123456789abcdef';
const ADMIN = 'fw_admin_token_0123456789abcdef0';

describe('recipes that follow versions', () => {
  let t: TestApi;
  const put = (name: string, body: unknown, token = ADMIN) => t.app.inject({ method: 'PUT', url: `/api/recipes/${name}`, payload: body as object, headers: { authorization: `Bearer ${token}` } });
  const recipes = async () => (await t.app.inject({ method: 'GET', url: '/api/recipes', headers: { authorization: `Bearer ${READER}` } })).json().recipes as Array<Record<string, unknown>>;

  before(async () => {
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'reader', hash: sha256Hash(READER), scopes: ['read'] },
        { name: 'builder', hash: sha256Hash(BUILDER), scopes: ['build'] },
        { name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] },
      ],
      anonymousScopes: [],
    });
    t = await testApi({
      security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 },
      registry: { recipes: { follows: { plugins: [{ module: PLUG, version: '^1.0' }], testConfig: ':80 {\n\trespond "ok"\n}\n' } }, waitMs: 50 },
      moduleVersions: VERSIONS,
    });
  });
  after(async () => t?.close());

  test('PUT takes ranges (stored as written), exact versions, latest; GET shows them with the test config', async () => {
    const body = {
      plugins: [
        { module: PLUG, version: '>=1.0.0 <2.0.0' },
        { module: NEWER, version: 'v0.1.0' },
        { module: 'example.com/third', version: 'latest' },
      ],
      testConfig: { apps: { http: { servers: { s: { listen: [':80'] } } } } },
    };
    const res = await put('ranged', body);
    assert.equal(res.statusCode, 200, res.body);
    const want = { name: 'ranged', plugins: [body.plugins[0], body.plugins[1], { module: 'example.com/third' }], testConfig: body.testConfig, source: 'api' };
    assert.deepEqual(res.json(), want);
    assert.deepEqual(
      (await recipes()).find((r) => r.name === 'ranged'),
      want,
    );
    assert.deepEqual(
      (await recipes()).find((r) => r.name === 'follows'),
      { name: 'follows', plugins: [{ module: PLUG, version: '^1.0' }], testConfig: ':80 {\n\trespond "ok"\n}\n', source: 'config' },
    );
    for (const v of ['^1.2', '~0.3.1', '1.x', '*', '^1 || ^2', '1.0.0 - 1.4', 'v1', 'master']) {
      const r = await put('forms', { plugins: [{ module: PLUG, version: v }] });
      assert.equal(r.statusCode, 200, `${v}: ${r.body}`);
      assert.equal(r.json().plugins[0].version, v);
    }
  });

  test('PUT refuses a malformed range and a test config of the wrong shape or size, 400 saying what to do', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ plugins: [{ module: PLUG, version: '>= 1.0' }] }, /plugins\[0\]\.version: ">= 1\.0" is not a version a recipe takes: use latest, an exact version \(v1\.2\.3\), or a semver range/],
      [{ plugins: [{ module: PLUG }, { module: NEWER, version: '^1.2  <2' }] }, /plugins\[1\]\.version: .*no space after an operator, one space between comparators/],
      [{ plugins: [{ module: PLUG, version: '~>1.2' }] }, /plugins\[0\]\.version/],
      [{ plugins: [], testConfig: '' }, /testConfig is empty/],
      [{ plugins: [], testConfig: ['x'] }, /a Caddyfile \(a string\) or a Caddy JSON config \(an object\)/],
      [{ plugins: [], testConfig: 12 }, /a Caddyfile \(a string\) or a Caddy JSON config \(an object\)/],
      [{ plugins: [], testConfig: 'é'.repeat(32 * 1024 + 1) }, /testConfig is 65538 bytes of UTF-8: at most 65536 \(64 KiB\)/],
      [{ plugins: [], testConfig: { a: 'x'.repeat(65536) } }, /testConfig is 65544 bytes as JSON: at most 65536/],
    ];
    for (const [body, message] of cases) {
      const res = await put('bad', body);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body).slice(0, 80)}: ${res.body.slice(0, 300)}`);
      // A version is the build grammar's field (invalid_spec, as for a build); the test config the recipe's own.
      assert.equal(res.json().error.code, 'testConfig' in (body as object) ? 'invalid_recipe' : 'invalid_spec');
      assert.match(res.json().error.message, message);
    }
    // A range's module is still held to the build grammar.
    const badModule = await put('bad', { plugins: [{ module: '../../etc', version: '^1' }] });
    assert.equal(badModule.statusCode, 400);
    assert.equal(badModule.json().error.code, 'invalid_spec');
    assert.equal(await t.store.getRecord('recipes', 'bad'), null, 'nothing refused was stored');
    // 64 KiB exactly is taken, though the server's bodyLimit is 64 KiB: the route has its own.
    const max = await put('big', { plugins: [], testConfig: 'x'.repeat(65536) });
    assert.equal(max.statusCode, 200, max.body.slice(0, 300));
    assert.equal((max.json().testConfig as string).length, 65536);
  });

  test('the recipes setting checks ranges and test configs too', () => {
    assert.deepEqual(configSchema.parse({ recipes: { a: { plugins: [{ module: PLUG, version: '^1.2' }], testConfig: { apps: {} } } } }).recipes, {
      a: { plugins: [{ module: PLUG, version: '^1.2' }], testConfig: { apps: {} } },
    });
    assert.throws(() => configSchema.parse({ recipes: { a: { plugins: [{ module: PLUG, version: '>= 1.2' }] } } }), /not a version a recipe takes/);
    assert.throws(() => configSchema.parse({ recipes: { a: { plugins: [], testConfig: 'x'.repeat(65537) } } }), /at most 65536/);
  });

  test('RecipeBook.resolve: the newest admitted version per range, latest as Go answers it, a clear error when nothing is admitted', async () => {
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: '^1.0' }] }), [{ module: PLUG, version: 'v1.1.0' }]);
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: '>=1.2.0-rc.0 <1.3.0' }, { module: NEWER }] }), [
      { module: PLUG, version: 'v1.2.0-rc.1' },
      { module: NEWER, version: 'v0.1.0' },
    ]);
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG }, { module: NEWER, version: 'v0.0.9' }] }), [
      { module: PLUG, version: 'v2.0.0+incompatible' },
      { module: NEWER, version: 'v0.0.9' },
    ]);
    await assert.rejects(t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: '^3' }] }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'unknown_version');
      assert.match(err.message, /plugin example\.com\/plug: no published version is admitted by the range "\^3" \(newest published: v2\.0\.0\+incompatible, v1\.2\.0-rc\.1, v1\.1\.0, v1\.0\.0;/);
      return true;
    });
  });

  test('prebuilds: ranges pinned; a recipe whose range admits nothing is left out', async () => {
    await put('nothing', { plugins: [{ module: PLUG, version: '^5' }] });
    const specs = await t.registry.prebuildSpecs();
    const follows = specs.filter((s) => JSON.stringify(s.plugins) === JSON.stringify([{ module: PLUG, version: 'v1.1.0' }]));
    assert.deepEqual(
      follows.map((s) => s.arch),
      ['amd64', 'arm64'],
      'the config recipe follows ^1.0: v1.1.0 on both image platforms',
    );
    assert.ok(!specs.some((s) => JSON.stringify(s.plugins).includes('^')), 'no range reaches a build request');
    assert.ok(!specs.some((s) => JSON.stringify(s.plugins).includes('^5')));
    await t.app.inject({ method: 'DELETE', url: '/api/recipes/nothing', headers: { authorization: `Bearer ${ADMIN}` } });
  });

  test('a version listing is admitted as a resolution: the build scope, then the build rate limit', async () => {
    await assert.rejects(t.service.moduleVersions(PLUG, {}, { scopes: ['read'] }), (err: Error & { code?: string }) => err.code === 'build_scope_required');
    let charged = 0;
    const list = await t.service.moduleVersions(PLUG, {}, { scopes: ['build'], chargeBuild: async () => void charged++ });
    assert.equal(list.versions[0]!.version, 'v2.0.0+incompatible');
    assert.equal(charged, 1);
    await assert.rejects(
      t.service.moduleVersions(PLUG, {}, { scopes: ['build'], chargeBuild: async () => Promise.reject(Object.assign(new Error('rate limited'), { code: 'rate_limited' })) }),
      /rate limited/,
    );
  });

  test('the tag path: a caller that may build asks for the pinned version; one that may not gets what is known', async () => {
    await put('tagged', { plugins: [{ module: NEWER, version: '~0.1' }] });
    // A reader before anything resolved the range: nothing is run, MANIFEST_UNKNOWN says how to have it built.
    const versionsBefore = t.calls.versions;
    const reader = await t.app.inject({ method: 'GET', url: '/v2/caddy/tagged/manifests/latest', headers: { authorization: `Bearer ${READER}` } });
    assert.equal(reader.statusCode, 404, reader.body);
    assert.match(reader.json().errors[0].message, /follows a version range that this server has not resolved yet.*build scope/);
    assert.equal(t.calls.versions, versionsBefore, 'a reader runs no version listing');
    // A builder: the builds are requested with the exact version (then waited for: 503 here, the stand-in jobs never end).
    const seen = t.resolved.length;
    const builder = await t.app.inject({ method: 'GET', url: '/v2/caddy/tagged/manifests/latest', headers: { authorization: `Bearer ${BUILDER}` } });
    assert.equal(builder.statusCode, 503, builder.body);
    const asked = t.resolved.slice(seen);
    assert.deepEqual(
      asked.map((r) => [r.arch, r.plugins.map((p) => `${p.module}@${p.version}`)]),
      [
        ['amd64', [`${NEWER}@v0.1.0`]],
        ['arm64', [`${NEWER}@v0.1.0`]],
      ],
    );
    // The reader's range is now pinned from the list this process read: it is looked up as any
    // exact request (the stand-in resolver has no peek, so it is "not built" here), still without a listing.
    const again = await t.app.inject({ method: 'GET', url: '/v2/caddy/tagged/manifests/latest', headers: { authorization: `Bearer ${READER}` } });
    assert.equal(again.statusCode, 404, again.body);
    assert.match(again.json().errors[0].message, /caddy\/tagged:latest is not built yet/);
    assert.equal(t.calls.versions, versionsBefore + 1, 'one listing, by the builder');
  });
});

describe('GoResolver.moduleVersions', () => {
  /** A toolchain whose go answers `go list -m -versions -json <module>` like Go does (oldest first), counting calls. */
  function standIn(versions: string[]) {
    const calls: string[][] = [];
    const toolchain = {
      identity: { go: 'go1.test', xcaddy: 'v0.test' },
      go: async (args: string[]) => {
        calls.push(args);
        return { stdout: JSON.stringify({ Path: args.at(-1), Versions: versions }), stderr: '' };
      },
    } as unknown as Toolchain;
    return { toolchain, calls };
  }

  test('newest first, prereleases marked, pseudo-versions dropped; memoised for the moving-query TTL; refresh reads again after refreshMemoMs', async () => {
    const { toolchain, calls } = standIn(['v1.0.0', 'v1.1.0', 'v1.2.0-rc.1', 'v1.2.1-0.20240101000000-abcdef123456', 'v2.0.0+incompatible']);
    let now = 1_000_000;
    const r = new GoResolver(toolchain, { buildFlags: 'x', now: () => now, ttlMs: 60_000, refreshMemoMs: 10_000 });
    assert.equal(r.knownModuleVersions(PLUG), null, 'nothing known before a listing');
    const [a, b] = await Promise.all([r.moduleVersions(PLUG), r.moduleVersions(PLUG)]);
    assert.deepEqual(r.knownModuleVersions(PLUG), a, 'known (no go command) within the TTL');
    assert.deepEqual(calls, [['list', '-m', '-versions', '-json', PLUG]], 'one go list for two concurrent reads');
    assert.deepEqual(a.versions, [
      { version: 'v2.0.0+incompatible', prerelease: false },
      { version: 'v1.2.0-rc.1', prerelease: true },
      { version: 'v1.1.0', prerelease: false },
      { version: 'v1.0.0', prerelease: false },
    ]);
    assert.equal(a.latest, 'v2.0.0+incompatible');
    assert.equal(a.module, PLUG);
    assert.deepEqual(b, a);
    now += 5_000;
    await r.moduleVersions(PLUG, { refresh: true });
    assert.equal(calls.length, 1, 'a refresh within refreshMemoMs gets the last answer');
    now += 6_000;
    await r.moduleVersions(PLUG, { refresh: true });
    assert.equal(calls.length, 2, 'a refresh after it reads again');
    now += 59_000;
    await r.moduleVersions(PLUG);
    assert.equal(calls.length, 2, 'within the TTL of that read');
    now += 2_000;
    assert.equal(r.knownModuleVersions(PLUG), null, 'not known past the TTL');
    await r.moduleVersions(PLUG);
    assert.equal(calls.length, 3, 'past the TTL');
  });

  test('a module path that breaks the grammar never reaches go', async () => {
    const { toolchain, calls } = standIn([]);
    const r = new GoResolver(toolchain, { buildFlags: 'x' });
    for (const m of ['-x.y/z', 'nodot/x', 'example.com/a b', '']) {
      await assert.rejects(r.moduleVersions(m), (err: Error & { code?: string }) => err.code === 'invalid_spec');
    }
    assert.equal(calls.length, 0);
  });
});
