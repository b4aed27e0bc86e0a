// Unit tests of the plugin catalog (src/catalog): the shipped curated list, search, learned module
// IDs persisted across restarts, and the upstream mirror against a real local HTTP server that
// goes down (the last good copy on disk keeps serving).
//   node --import tsx --test test/unit/catalog.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileCatalog, packageId, parseListModulesText, parseUpstream, pluginPackages, shippedCatalog, type CuratedFile } from '../../src/catalog/index.js';
import { modulesByPackage, parseListModulesJson } from '../../src/catalog/listmodules.js';

const tmp = () => mkdtemp(join(tmpdir(), 'fairway-catalog-'));

const CURATED: CuratedFile = {
  updated: '2026-01-01T00:00:00Z',
  packages: [
    { path: 'github.com/mholt/caddy-l4', repo: 'https://github.com/mholt/caddy-l4', description: 'Layer 4 app', modules: ['layer4', 'layer4.handlers.proxy'] },
    { path: 'github.com/caddy-dns/cloudflare', repo: 'https://github.com/caddy-dns/cloudflare', description: 'Cloudflare DNS provider', modules: ['dns.providers.cloudflare'] },
    { path: 'github.com/caddyserver/nginx-adapter', repo: 'https://github.com/caddyserver/nginx-adapter', description: 'NGINX config adapter', modules: [] },
  ],
};

/** A caddyserver.com-shaped /api/packages server that can be stopped, broken, and counted. */
async function upstreamServer(initial: unknown) {
  let body: unknown = initial;
  let mode: 'ok' | 'garbage' | 'error' = 'ok';
  let hits = 0;
  let etag = '"v1"';
  const server = http.createServer((req, res) => {
    hits++;
    if (mode === 'error') return void res.writeHead(503).end('maintenance');
    if (mode === 'garbage') return void res.writeHead(200, { 'content-type': 'text/html' }).end('<html>oops</html>');
    if (req.headers['if-none-match'] === etag) return void res.writeHead(304).end();
    res.writeHead(200, { 'content-type': 'application/json', etag }).end(JSON.stringify(body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/api/packages`,
    hits: () => hits,
    set(b: unknown, tag: string) {
      body = b;
      etag = tag;
    },
    mode(m: typeof mode) {
      mode = m;
    },
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const UPSTREAM = {
  status_code: 200,
  result: [
    {
      id: 'aaaaaaaa-0000-4000-8000-000000000001',
      path: 'github.com/caddy-dns/cloudflare',
      repo: 'https://github.com/caddy-dns/cloudflare',
      downloads: 812345,
      published: '2020-05-20T17:03:11.123456Z',
      updated: '2025-03-01T09:12:44.654321Z',
      listed: true,
      available: true,
      modules: [
        {
          name: 'dns.providers.cloudflare',
          docs: 'Provider wraps the provider implementation as a Caddy module.',
          package: 'github.com/caddy-dns/cloudflare',
          repo: 'https://github.com/caddy-dns/cloudflare',
        },
      ],
    },
    {
      id: 'aaaaaaaa-0000-4000-8000-000000000002',
      path: 'github.com/example/upstream-only',
      repo: 'https://github.com/example/upstream-only',
      downloads: 12,
      published: '2021-01-01T00:00:00Z',
      updated: '2021-01-02T00:00:00Z',
      listed: true,
      available: false,
      modules: null,
      someFieldFairwayDoesNotKnow: { x: 1 },
    },
    { path: 42, note: 'an invalid entry is dropped, not fatal' },
  ],
};

describe('shipped catalog (src/catalog/packages.json)', () => {
  test('is valid, has a useful curated list, no duplicates', () => {
    const c = shippedCatalog();
    assert.ok(c.packages.length >= 25, `only ${c.packages.length} packages`);
    const paths = c.packages.map((p) => p.path);
    assert.equal(new Set(paths).size, paths.length, 'duplicate paths');
    for (const p of c.packages) {
      assert.match(p.repo, /^https:\/\//, p.path);
      assert.ok(p.description.length > 10, `${p.path} has no description`);
      for (const m of p.modules) assert.match(m, /^[a-z0-9_.]+$/, `${p.path}: ${m}`);
    }
    const l4 = c.packages.find((p) => p.path === 'github.com/mholt/caddy-l4');
    assert.ok(l4?.modules.includes('layer4'));
    for (const want of [
      'github.com/caddy-dns/cloudflare',
      'github.com/mholt/caddy-ratelimit',
      'github.com/caddyserver/replace-response',
      'github.com/caddyserver/transform-encoder',
      'github.com/greenpau/caddy-security',
      'github.com/caddyserver/cache-handler',
      'github.com/caddyserver/forwardproxy',
      'github.com/mholt/caddy-webdav',
      'github.com/caddyserver/nginx-adapter',
      'github.com/ueffel/caddy-brotli',
      'github.com/mholt/caddy-dynamicdns',
      'github.com/porech/caddy-maxmind-geolocation',
    ]) {
      assert.ok(paths.includes(want), `missing ${want}`);
    }
  });

  test('a FileCatalog with no options serves it', async () => {
    const cat = await FileCatalog.open({ dir: await tmp() });
    const all = await cat.list();
    assert.equal(all.length, shippedCatalog().packages.length);
    assert.ok(all.every((p) => p.sources.join() === 'curated' && p.listed && p.available));
    assert.equal((await cat.get('github.com/mholt/caddy-l4'))?.id, packageId('github.com/mholt/caddy-l4'));
    assert.equal(await cat.get('github.com/nope/nope'), null);
    await cat.close();
  });
});

describe('list, get and search', () => {
  test('search matches path, module IDs and description; every word must match', async () => {
    const cat = await FileCatalog.open({ dir: await tmp(), curated: CURATED });
    assert.deepEqual(
      (await cat.search('layer4')).map((p) => p.path),
      ['github.com/mholt/caddy-l4'],
    );
    assert.deepEqual(
      (await cat.search('DNS.PROVIDERS')).map((p) => p.path),
      ['github.com/caddy-dns/cloudflare'],
    );
    assert.deepEqual(
      (await cat.search('nginx adapter')).map((p) => p.path),
      ['github.com/caddyserver/nginx-adapter'],
    );
    assert.deepEqual(await cat.search('cloudflare layer4'), []);
    assert.equal((await cat.search('  ')).length, 3);
    // A path hit ranks above a description hit.
    const cat2 = await FileCatalog.open({
      dir: await tmp(),
      curated: {
        packages: [
          { path: 'github.com/a/mentions', repo: 'https://github.com/a/mentions', description: 'works well with webdav', modules: [] },
          { path: 'github.com/mholt/caddy-webdav', repo: 'https://github.com/mholt/caddy-webdav', description: 'WebDAV handler', modules: ['http.handlers.webdav'] },
        ],
      },
    });
    assert.deepEqual(
      (await cat2.search('webdav')).map((p) => p.path),
      ['github.com/mholt/caddy-webdav', 'github.com/a/mentions'],
    );
  });
});

describe('learned module IDs', () => {
  test('setModules is persisted, survives a restart, and takes precedence', async () => {
    const dir = await tmp();
    const cat = await FileCatalog.open({ dir, curated: CURATED });
    await cat.setModules('github.com/caddyserver/nginx-adapter', []);
    await cat.setModules('github.com/mholt/caddy-l4', ['layer4', 'layer4.matchers.tls', 'layer4', 'not valid!'], { version: 'v0.1.2', build: 'k1' });
    await cat.setModules('github.com/example/private-plugin', ['http.handlers.private'], { version: 'v1.0.0' });
    await cat.close();
    const saved = JSON.parse(await readFile(join(dir, 'learned.json'), 'utf8'));
    assert.deepEqual(saved.packages['github.com/mholt/caddy-l4'].modules, ['layer4', 'layer4.matchers.tls']);

    const again = await FileCatalog.open({ dir, curated: CURATED });
    const l4 = await again.get('github.com/mholt/caddy-l4');
    assert.deepEqual(
      l4?.modules.map((m) => m.name),
      ['layer4', 'layer4.matchers.tls'],
    );
    assert.deepEqual(l4?.sources, ['curated', 'learned']);
    assert.equal(l4?.learned?.version, 'v0.1.2');
    assert.equal(l4?.learned?.build, 'k1');
    // Learned "no modules" does not wipe a curated list, but is recorded.
    const nginx = await again.get('github.com/caddyserver/nginx-adapter');
    assert.deepEqual(nginx?.learned?.modules, []);
    // A package only learned (not curated) appears too, with a derived repo.
    const priv = await again.get('github.com/example/private-plugin');
    assert.deepEqual(priv?.sources, ['learned']);
    assert.equal(priv?.repo, 'https://github.com/example/private-plugin');
    assert.equal(again.lists('github.com/example/private-plugin'), false, 'learned-only packages do not count as listed');
    assert.equal(again.lists('github.com/mholt/caddy-l4'), true);
    assert.deepEqual(
      (await again.search('private')).map((p) => p.path),
      ['github.com/example/private-plugin'],
    );
    await again.close();
  });

  test('concurrent setModules calls all land in the file', async () => {
    const dir = await tmp();
    const cat = await FileCatalog.open({ dir, curated: CURATED });
    await Promise.all(Array.from({ length: 20 }, (_, i) => cat.setModules(`github.com/x/p${i}`, [`m.p${i}`])));
    await cat.close();
    const saved = JSON.parse(await readFile(join(dir, 'learned.json'), 'utf8'));
    assert.equal(Object.keys(saved.packages).length, 20);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('.tmp-')),
      [],
      'no temp files left',
    );
  });

  test('an unreadable learned.json is ignored, not fatal', async () => {
    const dir = await tmp();
    await writeFile(join(dir, 'learned.json'), '{broken');
    const cat = await FileCatalog.open({ dir, curated: CURATED });
    assert.equal((await cat.list()).length, 3);
  });
});

describe('upstream mirror', () => {
  test('mirrors, merges with the curated list, and keeps the last good copy when upstream is down', async () => {
    const up = await upstreamServer(UPSTREAM);
    const dir = await tmp();
    const cat = await FileCatalog.open({ dir, curated: CURATED, upstreamUrl: up.url });
    const st = await cat.refreshUpstream();
    assert.equal(st.ok, true, st.error);
    assert.equal(st.packages, 2, 'the invalid entry was dropped');
    assert.ok(st.fetchedAt);

    const cf = await cat.get('github.com/caddy-dns/cloudflare');
    assert.deepEqual(cf?.sources, ['upstream', 'curated']);
    assert.equal(cf?.id, 'aaaaaaaa-0000-4000-8000-000000000001', 'upstream id kept');
    assert.equal(cf?.downloads, 812345);
    assert.equal(cf?.description, 'Cloudflare DNS provider', 'curated description wins');
    assert.equal(cf?.modules[0]?.docs, 'Provider wraps the provider implementation as a Caddy module.', 'upstream docs fill in');
    const only = await cat.get('github.com/example/upstream-only');
    assert.equal(only?.available, false);
    assert.deepEqual(only?.modules, []);
    assert.equal((await cat.list())[0]?.path, 'github.com/caddy-dns/cloudflare', 'most downloads first');
    assert.equal(cat.lists('github.com/example/upstream-only'), true);

    const onDisk = JSON.parse(await readFile(join(dir, 'upstream.json'), 'utf8'));
    assert.equal(onDisk.url, up.url);
    assert.equal(onDisk.packages.length, 2);

    // Unchanged upstream: a conditional request (304) keeps the copy.
    const hits = up.hits();
    assert.equal((await cat.refreshUpstream()).ok, true);
    assert.equal(up.hits(), hits + 1);

    // Upstream answers garbage, then an error: the last good copy stays in use.
    up.mode('garbage');
    up.set(UPSTREAM, '"v2"');
    let bad = await cat.refreshUpstream();
    assert.equal(bad.ok, false);
    assert.match(bad.error ?? '', /not JSON/);
    up.mode('error');
    bad = await cat.refreshUpstream();
    assert.match(bad.error ?? '', /HTTP 503/);
    assert.equal(bad.packages, 2);
    assert.ok(await cat.get('github.com/example/upstream-only'));

    // Upstream gone entirely; a restarted server loads the copy from disk.
    await up.stop();
    await cat.close();
    const restarted = await FileCatalog.open({ dir, curated: CURATED, upstreamUrl: up.url });
    assert.equal(restarted.upstreamStatus().packages, 2);
    const down = await restarted.refreshUpstream();
    assert.equal(down.ok, false);
    assert.match(down.error ?? '', /fetch failed|ECONNREFUSED/);
    assert.equal(down.fetchedAt, onDisk.fetchedAt, 'still serving the copy fetched before');
    assert.equal((await restarted.get('github.com/caddy-dns/cloudflare'))?.downloads, 812345);
    await restarted.close();

    // A different upstream URL does not reuse the other URL's copy.
    const other = await FileCatalog.open({ dir, curated: CURATED, upstreamUrl: 'http://127.0.0.1:1/other' });
    assert.equal(await other.get('github.com/example/upstream-only'), null);
    await other.close();
  });

  test('a new upstream version replaces the copy; invalid bodies are refused', async () => {
    const up = await upstreamServer(UPSTREAM);
    const cat = await FileCatalog.open({ dir: await tmp(), curated: CURATED, upstreamUrl: up.url });
    await cat.refreshUpstream();
    up.set({ status_code: 200, result: [{ path: 'github.com/example/new', downloads: 5, modules: [{ name: 'http.handlers.new', docs: 'New.' }] }] }, '"v2"');
    assert.equal((await cat.refreshUpstream()).packages, 1);
    assert.equal(await cat.get('github.com/example/upstream-only'), null);
    assert.equal((await cat.get('github.com/example/new'))?.description, 'New.');
    up.set({ result: [{ nope: true }] }, '"v3"');
    const st = await cat.refreshUpstream();
    assert.equal(st.ok, false);
    assert.match(st.error ?? '', /valid package/);
    assert.ok(await cat.get('github.com/example/new'), 'kept the good copy');
    await cat.close();
    await up.stop();
  });

  test('start() refreshes on a schedule; close() stops it', async () => {
    const up = await upstreamServer(UPSTREAM);
    const cat = await FileCatalog.open({ dir: await tmp(), curated: CURATED, upstreamUrl: up.url, refreshMs: 50 });
    cat.start();
    const end = Date.now() + 5000;
    while (up.hits() < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.ok(up.hits() >= 3, `only ${up.hits()} refreshes`);
    await cat.close();
    const n = up.hits();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(up.hits(), n, 'no refresh after close');
    await up.stop();
  });

  test('a hanging upstream times out', async () => {
    const server = http.createServer(() => undefined);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const cat = await FileCatalog.open({ dir: await tmp(), curated: CURATED, upstreamUrl: url, timeoutMs: 200 });
    const st = await cat.refreshUpstream();
    assert.equal(st.ok, false);
    assert.equal(st.error, 'timed out');
    await cat.close();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('parseUpstream refuses what is not a package list', () => {
    assert.throws(() => parseUpstream([1, 2]), /not a package list/);
    assert.throws(() => parseUpstream({ status_code: 200 }), /not a package list/);
    assert.deepEqual(parseUpstream({ result: [] }), { packages: [], dropped: 0 });
    const r = parseUpstream({ result: [{ path: 'github.com/a/b', modules: [{ name: 'bad id!' }] }, { path: '' }] });
    assert.equal(r.packages.length, 1);
    assert.equal(r.packages[0]!.modules, null, 'an invalid module list is dropped, the package kept');
    assert.equal(r.dropped, 1);
  });
});

describe('list-modules parsing (what Caddy prints)', () => {
  const TEXT = [
    'admin.api.load v2.11.9 github.com/caddyserver/caddy/v2',
    'http.handlers.file_server v2.11.9 github.com/caddyserver/caddy/v2',
    '',
    '  Standard modules: 2',
    '',
    'layer4 v0.1.2 github.com/mholt/caddy-l4',
    'layer4.matchers.tls v0.1.2 github.com/mholt/caddy-l4',
    'caddy.logging.encoders.transform v0.0.0-20240312163748-f627fc4f7633 github.com/caddyserver/transform-encoder',
    '',
    '  Non-standard modules: 3',
    '',
    'weird.module [module not registered: weird.module]',
    '',
    '  Unknown modules: 1',
    '',
  ].join('\n');

  test('text form: kinds from the summary lines, versions, packages', () => {
    const mods = parseListModulesText(TEXT);
    assert.equal(mods.length, 6);
    assert.deepEqual(
      mods.filter((m) => m.kind === 'standard').map((m) => m.id),
      ['admin.api.load', 'http.handlers.file_server'],
    );
    assert.deepEqual(
      mods.find((m) => m.id === 'weird.module'),
      { id: 'weird.module', kind: 'unknown', error: 'module not registered: weird.module' },
    );
    const pkgs = pluginPackages(mods);
    assert.deepEqual(
      [...pkgs.values()],
      [
        { path: 'github.com/mholt/caddy-l4', version: 'v0.1.2' },
        { path: 'github.com/caddyserver/transform-encoder', version: 'v0.0.0-20240312163748-f627fc4f7633' },
      ],
    );
    assert.deepEqual(modulesByPackage(mods).get('github.com/mholt/caddy-l4'), { version: 'v0.1.2', ids: ['layer4', 'layer4.matchers.tls'] });
  });

  test('a stock binary with --skip-standard prints nothing: no plugins', () => {
    assert.deepEqual(parseListModulesText(''), []);
    assert.equal(pluginPackages(parseListModulesText('\n')).size, 0);
  });

  test("replaced modules are refused with Caddy's message", () => {
    const mods = parseListModulesText('x.y v1.0.0 github.com/a/b => ../b\n\n  Non-standard modules: 1\n');
    assert.equal(mods[0]?.replace, '../b');
    assert.throws(() => pluginPackages(mods), /cannot auto-upgrade when Go module has been replaced: github.com\/a\/b => \.\.\/b/);
  });

  test('json form (Caddy v2.11+)', () => {
    const mods = parseListModulesJson(
      JSON.stringify([
        { module_name: 'admin.api.load', module_type: 'standard', version: 'v2.11.9', package_url: 'github.com/caddyserver/caddy/v2' },
        { module_name: 'layer4', module_type: 'non-standard', version: 'v0.1.2', package_url: 'github.com/mholt/caddy-l4' },
      ]),
    );
    assert.deepEqual([...pluginPackages(mods).keys()], ['github.com/mholt/caddy-l4']);
  });
});
