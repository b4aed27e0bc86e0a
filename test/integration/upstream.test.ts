/**
 * Recipes that follow upstream (docs/recipes.md), end to end with the real toolchain: the test's
 * own module proxy serves a synthetic plugin whose v1.0.0 builds, v1.1.0 does not compile and
 * v1.2.0 builds (and later a v1.3.0 that does not compile, with a good release of a second plugin
 * at the same time). `fairway serve` follows `latest` with a short watch interval and tells a
 * webhook receiver run by the test:
 *  - v1.0.0 is promoted; the tag caddy/follow:latest is pulled (crane) at digest D1;
 *  - v1.1.0 appears: recipe.failed names it, the tag still answers D1;
 *  - v1.2.0 appears: recipe.promoted, the tag moves, and the new build's build info has v1.2.0;
 *  - two changes at once, one bad: the culprit is named and the good change is promoted;
 *  - a recipe whose test config Caddy refuses is never promoted (caddy validate, run sandbox);
 *  - every webhook body's signature verifies; the receiver's first answer is a 503: retried.
 *
 *   npm run build && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/upstream.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, MAIN, ROOT, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy, type SyntheticModule } from '../helpers/goproxy.js';

const execFileP = promisify(execFile);
const CRANE = join(ROOT, '.tools', 'bin', 'crane');
const PREFIX = 'fairway.test/follow';
const PLUG = `${PREFIX}/plug`;
const OTHER = `${PREFIX}/other`;
const SECRET = 'webhook-secret-for-the-test';
const STEP = 12 * 60_000;

/** A synthetic plugin: an HTTP handler `fw_<name>` (so a JSON test config can use it); `broken` does not compile. */
function plugin(path: string, name: string, version: string, broken = false): SyntheticModule {
  return {
    path,
    version,
    files: {
      'go.mod': `module ${path}\n\ngo 1.22\n\nrequire github.com/caddyserver/caddy/v2 ${CADDY_VERSION}\n`,
      [`${name}.go`]: `// Package ${name} is a synthetic Caddy plugin for test/integration/upstream.test.ts (${version}).
package ${name}

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() { caddy.RegisterModule(Handler{}) }

// Handler passes every request on.
type Handler struct{}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.fw_${name}", New: func() caddy.Module { return new(Handler) }}
}

func (Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	${broken ? 'return thisDoesNotCompile(w)' : 'return next.ServeHTTP(w, r)'}
}
`,
    },
  };
}

/** A JSON config whose one route uses `handler`. */
const configUsing = (handler: string) => ({ apps: { http: { servers: { s: { listen: [':8080'], routes: [{ handle: [{ handler }] }] } } } } });

interface Delivery {
  id: string;
  event: string;
  body: any;
  verified: boolean;
}

/** The webhook receiver: checks each signature; its first answer is a 503 (the sender must retry). */
async function receiver(): Promise<{ url: string; deliveries: Delivery[]; attempts: string[]; close(): Promise<void> }> {
  const deliveries: Delivery[] = [];
  const attempts: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const id = String(req.headers['x-fairway-delivery'] ?? '');
      attempts.push(id);
      if (attempts.length === 1) {
        res.writeHead(503).end('not yet');
        return;
      }
      const sig = String(req.headers['x-fairway-signature-256'] ?? '');
      const want = `sha256=${createHmac('sha256', SECRET).update(raw).digest('hex')}`;
      const verified = sig.length === want.length && timingSafeEqual(Buffer.from(sig), Buffer.from(want));
      if (!deliveries.some((d) => d.id === id)) deliveries.push({ id, event: String(req.headers['x-fairway-event']), body: JSON.parse(raw.toString()), verified });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    deliveries,
    attempts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs: number, diag: () => string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${diag().slice(-6000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('recipes follow upstream: watch, trial, promote only what works, culprit, webhooks', { timeout: 6 * STEP }, () => {
  let proxy: GoProxy;
  let server: FairwayProcess;
  let hooks: Awaited<ReturnType<typeof receiver>>;
  let host: string;
  let d1: string;
  let firstBuild: string;

  const event = (name: string, recipe: string, pred: (b: any) => boolean = () => true) =>
    waitFor(
      `${name} of ${recipe}`,
      () => hooks.deliveries.find((d) => d.event === name && d.body.recipe === recipe && pred(d.body)),
      STEP,
      () => server.output(),
    );
  const digest = async (ref: string) => (await execFileP(CRANE, ['digest', '--insecure', `${host}/${ref}`])).stdout.trim();

  before(async () => {
    assert.ok(existsSync(CRANE), 'crane is missing: run bash scripts/image-tools.sh');
    proxy = await startGoProxy([plugin(PLUG, 'plug', 'v1.0.0'), plugin(OTHER, 'other', 'v1.0.0')]);
    hooks = await receiver();
    const recipes = {
      follow: { caddyVersion: CADDY_VERSION, plugins: [{ module: PLUG, version: 'latest' }], testConfig: configUsing('fw_plug') },
      pair: { caddyVersion: CADDY_VERSION, plugins: [{ module: PLUG }, { module: OTHER, version: '^1.0' }] },
      refused: { caddyVersion: CADDY_VERSION, plugins: [{ module: PLUG, version: 'v1.0.0' }], testConfig: configUsing('fw_nothing_registers_this') },
    };
    server = await startFairway({
      dataDir: await tempDir('fairway-upstream-'),
      args: ['--goproxy', `${proxy.url},https://proxy.golang.org`, '--gonosumdb', PREFIX, '--image-platforms', 'linux/amd64', '--watch-interval', '3s', '--recipes', JSON.stringify(recipes)],
      env: { FAIRWAY_WEBHOOKS: JSON.stringify([{ url: hooks.url, secret: SECRET }]) },
    });
    host = server.url.replace(/^http:\/\//, '');
  });

  after(async () => {
    await server?.stop();
    await proxy?.close();
    await hooks?.close();
  });

  test('v1.0.0 is promoted; the tag serves it; the webhook was retried and its signature verifies', { timeout: STEP }, async () => {
    const promoted = await event('recipe.promoted', 'follow');
    assert.deepEqual(promoted.body.plugins, [{ module: PLUG, version: 'v1.0.0' }]);
    assert.equal(promoted.body.caddyVersion, CADDY_VERSION);
    assert.equal(promoted.body.previous, null);
    assert.equal(promoted.body.builds.length, 1);
    assert.match(promoted.body.builds[0].log, /\/api\/builds\/[0-9a-f]{64}\/log$/);
    assert.ok(promoted.verified, 'the signature of the body verifies with the secret');
    assert.ok(hooks.attempts.filter((a) => a === hooks.attempts[0]).length >= 2, 'the first delivery, answered 503, was sent again');
    firstBuild = promoted.body.builds[0].id;
    d1 = await digest('caddy/follow:latest');
    assert.match(d1, /^sha256:[0-9a-f]{64}$/);
    const state = await api(server.url, '/api/recipes/follow');
    assert.equal(state.status, 200);
    assert.equal(state.body.upstream.promoted[0].plugins[0].version, 'v1.0.0');
    const link = await fetch(`${server.url}/api/recipes/follow/download?os=linux&arch=amd64`, { redirect: 'manual' });
    assert.equal(link.status, 302);
    assert.match(link.headers.get('location') ?? '', new RegExp(`p=${encodeURIComponent(`${PLUG}@v1.0.0`)}`));
  });

  test('a test config Caddy refuses is never promoted', { timeout: STEP }, async () => {
    const failed = await event('recipe.failed', 'refused');
    assert.match(failed.body.reason, /caddy validate refused/);
    assert.ok(failed.verified);
    const state = await api(server.url, '/api/recipes/refused');
    assert.equal(state.body.upstream.promoted.length, 0);
    const link = await api(server.url, '/api/recipes/refused/download?os=linux&arch=amd64');
    assert.equal(link.status, 409);
    assert.equal(link.body.error.code, 'not_promoted');
  });

  test('v1.1.0 does not compile: recipe.failed names it, the tag keeps its digest', { timeout: STEP }, async () => {
    proxy.add(plugin(PLUG, 'plug', 'v1.1.0', true));
    const failed = await event('recipe.failed', 'follow', (b) => b.culprit?.version === 'v1.1.0');
    assert.deepEqual(failed.body.culprit, { module: PLUG, version: 'v1.1.0' });
    assert.deepEqual(failed.body.previous.plugins, [{ module: PLUG, version: 'v1.0.0' }]);
    assert.ok(failed.verified);
    assert.equal(await digest('caddy/follow:latest'), d1, 'a failed candidate never moves the tag');
    const state = await api(server.url, '/api/recipes/follow');
    assert.ok(state.body.upstream.broken.some((b: any) => b.module === PLUG && b.version === 'v1.1.0'));
  });

  test('v1.2.0 builds: recipe.promoted, the tag moves, the build info has v1.2.0', { timeout: STEP }, async () => {
    proxy.add(plugin(PLUG, 'plug', 'v1.2.0'));
    const promoted = await event('recipe.promoted', 'follow', (b) => b.plugins[0]?.version === 'v1.2.0');
    assert.deepEqual(promoted.body.previous.plugins, [{ module: PLUG, version: 'v1.0.0' }]);
    const d2 = await digest('caddy/follow:latest');
    assert.notEqual(d2, d1, 'the tag moved');
    const info = await api(server.url, `/api/builds/${promoted.body.builds[0].id}/buildinfo`);
    assert.ok(
      info.body.Deps.some((d: any) => d.Path === PLUG && d.Version === 'v1.2.0'),
      'the new build has v1.2.0',
    );
    // fairway upgrade --recipe: a caddy with v1.0.0 (the first promoted build) becomes the promoted v1.2.0 build.
    const dir = await tempDir('fairway-upgrade-');
    const caddy = join(dir, 'caddy');
    const old = await fetch(`${server.url}/api/builds/${firstBuild}/artifact`);
    await writeFile(caddy, Buffer.from(await old.arrayBuffer()), { mode: 0o755 });
    const up = await execFileP(process.execPath, [MAIN, 'upgrade', '--recipe', 'follow', '--server', server.url, '--caddy', caddy]);
    assert.match(up.stderr, /recipe follow: Caddy v2\.11\.9 with fairway\.test\/follow\/plug@v1\.2\.0/);
    const now = (await api(server.url, `/api/builds/${promoted.body.builds[0].id}`)).body;
    assert.equal(
      createHash('sha256')
        .update(await readFile(caddy))
        .digest('hex'),
      now.sha256,
      'the binary is the promoted build',
    );
  });

  test('two changes at once, one bad: the culprit is named, the good change is promoted', { timeout: 2 * STEP }, async () => {
    await event('recipe.promoted', 'pair', (b) => b.plugins.some((p: any) => p.module === PLUG && p.version === 'v1.2.0'));
    proxy.add(plugin(PLUG, 'plug', 'v1.3.0', true));
    proxy.add(plugin(OTHER, 'other', 'v1.1.0'));
    const failed = await event('recipe.failed', 'pair', (b) => b.plugins.some((p: any) => p.version === 'v1.3.0'));
    assert.deepEqual(failed.body.culprit, { module: PLUG, version: 'v1.3.0' });
    const promoted = await event('recipe.promoted', 'pair', (b) => b.plugins.some((p: any) => p.module === OTHER && p.version === 'v1.1.0'));
    assert.deepEqual(promoted.body.plugins, [
      { module: OTHER, version: 'v1.1.0' },
      { module: PLUG, version: 'v1.2.0' },
    ]);
    const state = await api(server.url, '/api/recipes/pair');
    const history = state.body.upstream.history.map((h: any) => `${h.kind}:${h.result}:${h.plugins.map((p: any) => p.version).join(',')}`);
    assert.ok(
      history.some((h: string) => h.startsWith('culprit-search')),
      `no culprit search in the history: ${history.join(' | ')}\n${failed.body.reason}`,
    );
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /fairway_recipe_trials_total\{kind="candidate",result="promoted"\} [1-9]/);
    assert.match(metrics, /fairway_recipe_trials_total\{kind="candidate",result="failed"\} [1-9]/);
  });
});
