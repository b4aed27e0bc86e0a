/**
 * One cache key, one binary: the order in which a client lists its plugins changes neither the
 * key nor the bytes. Three synthetic Caddy plugins (each registers a Caddy module in init) are
 * served by the test's own module proxy; two `fairway serve` processes that share nothing but the
 * Go caches each build the same set, requested in two different orders, neither of them the
 * sorted one. xcaddy's generated main.go imports the plugins in the order of its `--with` flags,
 * so before Fairway passed the plugins in the key's order these two builds had one key and two
 * sha256s. A third order on the first server is a cache hit of the same key.
 *
 * Real parts: two `fairway serve`, the bubblewrap sandbox, real Go and xcaddy, an HTTP GOPROXY.
 *   node scripts/setup.mjs && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/order.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy, type SyntheticModule } from '../helpers/goproxy.js';

const BUILD = 20 * 60_000;
const PREFIX = 'fairway.test/order';

function plugin(name: string): SyntheticModule {
  const path = `${PREFIX}/${name}`;
  return {
    path,
    version: 'v1.0.0',
    files: {
      'go.mod': `module ${path}\n\ngo 1.22\n\nrequire github.com/caddyserver/caddy/v2 ${CADDY_VERSION}\n`,
      [`${name}.go`]: `// Package ${name} is a synthetic Caddy plugin for test/integration/order.test.ts.
package ${name}

import "github.com/caddyserver/caddy/v2"

func init() { caddy.RegisterModule(Handler{}) }

// Handler does nothing; it only has to be a module that is linked in.
type Handler struct{ Tag string }

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "fairway_order.${name}", New: func() caddy.Module { return new(Handler) }}
}
`,
    },
  };
}

const NAMES = ['alpha', 'bravo', 'charlie'];
const request = (order: string[]) => ({
  caddyVersion: CADDY_VERSION,
  os: 'linux',
  arch: 'amd64',
  plugins: order.map((n) => ({ module: `${PREFIX}/${n}`, version: 'v1.0.0' })),
});

describe('one key, one binary: plugin order changes neither the key nor the bytes', { timeout: 3 * BUILD }, () => {
  let proxy: GoProxy;
  const servers: FairwayProcess[] = [];

  before(async () => {
    proxy = await startGoProxy(NAMES.map(plugin));
    for (const name of ['one', 'two']) {
      servers.push(
        await startFairway({
          dataDir: await tempDir(`fairway-order-${name}-`),
          args: ['--goproxy', `${proxy.url},https://proxy.golang.org`, '--gonosumdb', PREFIX],
        }),
      );
    }
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await proxy?.close();
  });

  test('two servers, two orders (neither sorted): one key, one sha256; a third order is a hit of that key', { timeout: 2 * BUILD }, async () => {
    const [one, two] = servers as [FairwayProcess, FairwayProcess];
    const orderA = ['charlie', 'alpha', 'bravo'];
    const orderB = ['bravo', 'charlie', 'alpha'];
    const a = await api(one.url, '/api/builds', { json: request(orderA) });
    assert.equal(a.status, 202, JSON.stringify(a.body));
    const b = await api(two.url, '/api/builds', { json: request(orderB) });
    assert.equal(b.status, 202, JSON.stringify(b.body));
    assert.equal(b.body.id, a.body.id, 'the same set of plugins has one key, whatever the order');
    const [builtA, builtB] = await Promise.all([waitForBuild(one.url, a.body.id, BUILD), waitForBuild(two.url, b.body.id, BUILD)]);
    assert.equal(builtA.status, 'succeeded', `${builtA.error}\n${one.output().slice(-3000)}`);
    assert.equal(builtB.status, 'succeeded', `${builtB.error}\n${two.output().slice(-3000)}`);
    assert.equal(builtB.sha256, builtA.sha256, `requested as ${orderA.join(',')} and as ${orderB.join(',')}: the same key must be the same bytes`);
    assert.equal(builtB.size, builtA.size);
    // The build log shows the --with flags in the key's (sorted) order.
    const log = await (await fetch(`${one.url}/api/builds/${a.body.id}/log`)).text();
    const withs = [...log.matchAll(/--with (fairway\.test\/order\/\w+)/g)].map((m) => m[1]);
    if (withs.length)
      assert.deepEqual(
        withs.slice(0, 3),
        NAMES.map((n) => `${PREFIX}/${n}`),
      );
    // A third order is the same key, answered from the cache.
    const c = await api(one.url, '/api/builds', { json: request(['bravo', 'alpha', 'charlie']) });
    assert.equal(c.status, 200, JSON.stringify(c.body));
    assert.equal(c.body.id, a.body.id);
    assert.equal(c.body.sha256, builtA.sha256);
  });
});
