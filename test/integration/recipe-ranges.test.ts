/**
 * Recipes that follow versions, on the real toolchain: a module proxy run by the test serves a
 * synthetic Caddy plugin at v1.0.0, v1.1.0, v1.2.0-rc.1 and v2.0.0+incompatible (its v1 versions
 * carry a go.mod with only its module line, as modules made before Go modules do, so Go's `latest`
 * takes the +incompatible v2). In this process, the resolver on the composition root's own toolchain
 * (src/main prepareToolchain: the sandbox, its module relay, GOPROXY and GONOSUMDB as `serve` has
 * them) lists the versions (`go list -m -versions`), and RecipeBook.resolve pins ranges against
 * them: `^1.0` → v1.1.0, `latest` → v2.0.0+incompatible, `>=1.2.0-rc.0 <1.3.0` → v1.2.0-rc.1,
 * `^3` → an error naming the module and the range. Then one real build: a `fairway serve` with a
 * recipe that follows `^1.0` is pulled by tag, and the build behind the image is of v1.1.0.
 *
 * Real parts: the sandbox, Go and xcaddy, an HTTP GOPROXY, `fairway serve`. One build (the shared Go
 * cache, FAIRWAY_TEST_CACHE, makes it about a minute once Caddy's modules are in it).
 *   npm run build && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/recipe-ranges.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/index.js';
import { prepareToolchain } from '../../src/main/parts.js';
import { BUILD_FLAGS } from '../../src/request/index.js';
import { GoResolver } from '../../src/resolve/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';
import { testApi, type TestApi } from '../helpers/api.js';
import { api, CADDY_VERSION, GO_CACHE, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy, type SyntheticModule } from '../helpers/goproxy.js';

const PREFIX = 'fairway.test/ranges';
const PLUG = `${PREFIX}/plug`;
const BUILD = 10 * 60_000;

/** The plugin at one version: a Caddy module whose ID names the version; go.mod with only the module line. */
function plug(version: string): SyntheticModule {
  return {
    path: PLUG,
    version,
    files: {
      'go.mod': `module ${PLUG}\n`,
      'plug.go': `// Package plug is a synthetic Caddy plugin for test/integration/recipe-ranges.test.ts (${version}).
package plug

import "github.com/caddyserver/caddy/v2"

func init() { caddy.RegisterModule(Handler{}) }

// Handler does nothing; it only has to be a module that is linked in.
type Handler struct{}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "fairway_ranges.${version.replace(/[^a-z0-9]/g, '_')}", New: func() caddy.Module { return new(Handler) }}
}
`,
    },
  };
}

describe('recipes that follow versions, on the real toolchain', { timeout: 2 * BUILD }, () => {
  let proxy: GoProxy;
  let toolchain: Toolchain;
  let resolver: GoResolver;
  let t: TestApi;
  let server: FairwayProcess | undefined;
  const args = () => ['--goproxy', `${proxy.url},https://proxy.golang.org`, '--gonosumdb', PREFIX];

  before(async () => {
    proxy = await startGoProxy(['v1.0.0', 'v1.1.0', 'v1.2.0-rc.1', 'v2.0.0+incompatible'].map(plug));
    const config = loadConfig({ flags: { dataDir: await tempDir('fairway-ranges-'), cacheDir: GO_CACHE, goproxy: `${proxy.url},https://proxy.golang.org`, gonosumdb: PREFIX }, env: {} });
    toolchain = await prepareToolchain(config, pino({ level: 'silent' }));
    resolver = new GoResolver(toolchain, { buildFlags: BUILD_FLAGS });
    t = await testApi({ resolver });
  });

  after(async () => {
    await server?.stop();
    await t?.close();
    // The sandbox's module relay (a listening socket) would keep this process alive.
    await toolchain?.sandbox.close();
    await proxy?.close();
  });

  test('moduleVersions: the proxy list through the go command, newest first; one go list for the TTL, refresh reads again', async () => {
    const list = await resolver.moduleVersions(PLUG);
    assert.deepEqual(list.versions, [
      { version: 'v2.0.0+incompatible', prerelease: false },
      { version: 'v1.2.0-rc.1', prerelease: true },
      { version: 'v1.1.0', prerelease: false },
      { version: 'v1.0.0', prerelease: false },
    ]);
    const asked = proxy.requests.filter((r) => r.endsWith('/@v/list')).length;
    assert.ok(asked >= 1, 'the list came from the test proxy');
    await resolver.moduleVersions(PLUG);
    assert.equal(proxy.requests.filter((r) => r.endsWith('/@v/list')).length, asked, 'memoised: no second go list');
    // A refresh (past refreshMemoMs, 0 here) runs go list again: the proxy is asked again.
    const fresh = new GoResolver(toolchain, { buildFlags: BUILD_FLAGS, refreshMemoMs: 0 });
    await fresh.moduleVersions(PLUG);
    const before = proxy.requests.filter((r) => r.endsWith('/@v/list')).length;
    await fresh.moduleVersions(PLUG, { refresh: true });
    assert.equal(proxy.requests.filter((r) => r.endsWith('/@v/list')).length, before + 1, 'a refresh reads the list again');
  });

  test('RecipeBook.resolve: ^1.0 → v1.1.0, latest → v2.0.0+incompatible, a named prerelease, and nothing admitted', async () => {
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: '^1.0' }] }), [{ module: PLUG, version: 'v1.1.0' }]);
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: 'latest' }] }), [{ module: PLUG, version: 'v2.0.0+incompatible' }]);
    assert.deepEqual(await t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: '>=1.2.0-rc.0 <1.3.0' }] }), [{ module: PLUG, version: 'v1.2.0-rc.1' }]);
    // ^1.2 admits no release, and v1.2.0-rc.1 is a prerelease the range does not name; ^3 nothing at all.
    for (const range of ['^1.2', '^3']) {
      await assert.rejects(t.registry.resolveRecipe({ plugins: [{ module: PLUG, version: range }] }), (err: Error & { code?: string }) => {
        assert.equal(err.code, 'unknown_version');
        assert.match(
          err.message,
          new RegExp(
            `^plugin ${PLUG}: no published version is admitted by the range "\\${range}" \\(newest published: v2\\.0\\.0\\+incompatible, v1\\.2\\.0-rc\\.1, v1\\.1\\.0, v1\\.0\\.0; prereleases only when the range names one`,
          ),
        );
        return true;
      });
    }
  });

  test('a recipe following ^1.0, pulled by tag on `fairway serve`: one real build, of v1.1.0', { timeout: BUILD }, async () => {
    const recipes = JSON.stringify({ follows: { plugins: [{ module: PLUG, version: '^1.0' }], caddyVersion: CADDY_VERSION } });
    server = await startFairway({ dataDir: await tempDir('fairway-ranges-serve-'), args: [...args(), '--recipes', recipes, '--image-platforms', 'linux/amd64'] });
    const pulled = await api(server.url, '/v2/caddy/follows/manifests/latest', { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(pulled.status, 200, JSON.stringify(pulled.body));
    const builds = (await api(server.url, '/api/builds')).body.builds as Array<{ id: string; status: string; spec: { plugins: Array<{ module: string; version: string }> } }>;
    assert.equal(builds.length, 1, JSON.stringify(builds));
    assert.equal(builds[0]!.status, 'succeeded');
    assert.deepEqual(builds[0]!.spec.plugins, [{ module: PLUG, version: 'v1.1.0' }]);
    // The binary's own build info names v1.1.0 (what was linked, not only what was asked).
    const info = await api(server.url, `/api/builds/${builds[0]!.id}/buildinfo`);
    assert.equal(info.status, 200);
    assert.match(JSON.stringify(info.body), new RegExp(`${PLUG.replace(/[./]/g, '\\$&')}[^v]*v1\\.1\\.0`));
  });
});
