// Cross-site requests and DNS rebinding (src/api/crosssite.ts, docs/SECURITY.md): inject()
// requests into the real API (createApi with the compat and UI routes, a real BuildService and
// LocalQueue; only resolution and the build job are stand-ins, see test/helpers/api.ts), plus a
// websocket upgrade over real TCP, and the two settings in the config schema.
//   node --import tsx --test test/unit/cross-site.test.ts
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { CrossSiteGuard, hostName, hostNameError, normalizeOrigin } from '../../src/api/crosssite.js';
import { loadConfig } from '../../src/config/index.js';
import { testApi, type TestApi } from '../helpers/api.js';

const SPEC = { os: 'linux', arch: 'amd64' };
const HOST = '127.0.0.1:8080';
const SELF = `http://${HOST}`;
const EVIL = 'https://evil.example';

/** The JSON error body's code, in either envelope. */
const code = (body: any): string | undefined => body?.error?.code;

/**
 * A check that lets a request through reaches the service: a download then waits for a build that
 * never ends (the job stand-in), so each test has a short timeout and fails instead of hanging.
 */
const it = (name: string, fn: () => Promise<void>) => test(name, { timeout: 10_000 }, fn);

describe('cross-site requests and DNS rebinding', () => {
  let t: TestApi;
  let buildId: string;
  const inject = (o: { method?: string; url: string; headers?: Record<string, string>; payload?: unknown }) =>
    t.app.inject({ method: (o.method ?? 'GET') as 'GET', url: o.url, headers: { host: HOST, ...o.headers }, ...(o.payload !== undefined ? { payload: o.payload as object } : {}) });
  const snapshot = () => ({ ...t.calls });

  before(async () => {
    t = await testApi({ crossSite: { listenHost: '127.0.0.1', allowedHosts: ['fairway.test'], allowedOrigins: ['https://ci.example.com'] } });
    // One build in flight, started the normal way (no Origin): the target of the cancel and read attempts.
    const r = await inject({ method: 'POST', url: '/api/builds', payload: { os: 'linux', arch: 'arm64' } });
    assert.equal(r.statusCode, 202, r.body);
    buildId = r.json().id;
  });
  after(() => t?.close());

  it('a foreign Origin cannot start a build: 403 cross_site, and nothing reached the service', async () => {
    const before = snapshot();
    const r = await inject({ method: 'POST', url: '/api/builds', headers: { origin: EVIL, 'sec-fetch-site': 'cross-site' }, payload: SPEC });
    assert.equal(r.statusCode, 403, r.body);
    assert.match(r.headers['content-type'] as string, /^application\/json/);
    const body = r.json();
    assert.deepEqual(Object.keys(body), ['error']);
    assert.equal(body.error.code, 'cross_site');
    assert.match(body.error.message, /came from the web page at https:\/\/evil\.example \(Origin\); Fairway only answers pages it serves itself/);
    assert.match(body.error.message, /Add the origin to allowedOrigins .* if that page is yours/);
    // A simple form POST (no JSON content type, no Sec-Fetch headers from an old browser) is refused the same way.
    const form = await inject({ method: 'POST', url: '/api/builds', headers: { origin: EVIL, 'content-type': 'text/plain' }, payload: JSON.stringify(SPEC) });
    assert.equal(form.statusCode, 403);
    assert.deepEqual(snapshot(), before, 'no request, resolution or job');
    const depth = await t.service.depth();
    assert.equal(depth.queued + depth.running, 1, 'only the build started in before()');
  });

  it('a foreign Origin cannot cancel or read a build', async () => {
    const before = snapshot();
    const del = await inject({ method: 'DELETE', url: `/api/builds/${buildId}`, headers: { origin: EVIL } });
    assert.equal(del.statusCode, 403, del.body);
    assert.equal(code(del.json()), 'cross_site');
    assert.ok(['queued', 'running'].includes((await t.service.get(buildId)).status), 'still active');
    for (const url of [`/api/builds/${buildId}`, '/api/builds', `/api/builds/${buildId}/log`, '/api/versions', '/api/catalog', '/api/nothing-here']) {
      const r = await inject({ url, headers: { origin: EVIL } });
      assert.equal(r.statusCode, 403, `${url}: ${r.body}`);
      assert.equal(code(r.json()), 'cross_site', url);
      assert.doesNotMatch(r.body, new RegExp(buildId), `${url}: nothing of the answer leaks`);
    }
    assert.deepEqual(snapshot(), before);
  });

  it('the compatible API refuses in its own envelope and starts nothing', async () => {
    const before = snapshot();
    for (const [method, url] of [
      ['GET', '/api/download?os=linux&arch=amd64'],
      ['GET', '/api/packages'],
      ['HEAD', '/api/download?os=linux&arch=amd64'],
    ] as const) {
      const r = await inject({ method, url, headers: { origin: EVIL } });
      assert.equal(r.statusCode, 403, `${method} ${url}`);
      if (method === 'HEAD') continue;
      const body = r.json();
      assert.equal(body.status_code, 403);
      assert.equal(typeof body.error.id, 'string');
      assert.equal(body.error.code, 'cross_site');
      assert.match(body.error.message, /came from the web page at https:\/\/evil\.example/);
    }
    assert.deepEqual(snapshot(), before);
  });

  it('Sec-Fetch-Site: cross-site or same-site without Origin (an <img>, a link) is refused', async () => {
    const before = snapshot();
    const img = await inject({ url: '/api/download?os=linux&arch=amd64', headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' } });
    assert.equal(img.statusCode, 403, img.body);
    assert.equal(img.json().status_code, 403);
    assert.match(img.json().error.message, /Sec-Fetch-Site: cross-site/);
    // Another port of localhost is the same site: a page on localhost:3000 must not build here either.
    const sibling = await inject({ url: '/api/download?os=linux&arch=amd64', headers: { 'sec-fetch-site': 'same-site' } });
    assert.equal(sibling.statusCode, 403);
    assert.match(sibling.json().error.message, /another port of the same host/);
    const link = await inject({ url: `/api/builds/${buildId}/artifact`, headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } });
    assert.equal(link.statusCode, 403);
    assert.equal(code(link.json()), 'cross_site');
    assert.deepEqual(snapshot(), before);
  });

  it('a foreign Host on a loopback server: 421 unknown_host on every route, nothing started', async () => {
    const before = snapshot();
    for (const [method, url] of [
      ['POST', '/api/builds'],
      ['GET', '/'],
      ['GET', '/healthz'],
      ['GET', '/ui/app.js'],
      ['GET', `/api/builds/${buildId}`],
      ['GET', '/api/nothing-here'],
    ] as const) {
      const r = await inject({ method, url, headers: { host: 'evil.example:8080' }, ...(method === 'POST' ? { payload: SPEC } : {}) });
      assert.equal(r.statusCode, 421, `${method} ${url}: ${r.body}`);
      assert.match(r.headers['content-type'] as string, /^application\/json/);
      assert.equal(code(r.json()), 'unknown_host');
      assert.match(r.json().error.message, /does not answer to the host name "evil\.example:8080" \(Host header\).*DNS rebinding.*allowedHosts/);
    }
    // The rebinding page is same-origin to the browser: its own Origin does not help it.
    const same = await inject({ method: 'POST', url: '/api/builds', headers: { host: 'evil.example:8080', origin: 'http://evil.example:8080' }, payload: SPEC });
    assert.equal(same.statusCode, 421);
    const dl = await inject({ url: '/api/download?os=linux&arch=amd64', headers: { host: 'rebind.evil.example' } });
    assert.equal(dl.statusCode, 421);
    assert.equal(dl.json().status_code, 421, 'compat envelope');
    assert.deepEqual(snapshot(), before);
  });

  it('the default names, the configured host and allowedHosts are answered; so are allowedOrigins', async () => {
    for (const host of ['localhost:8080', 'LOCALHOST', '127.0.0.1', '[::1]:8080', 'fairway.test', 'Fairway.Test:443']) {
      const r = await inject({ url: '/api/builds', headers: { host } });
      assert.equal(r.statusCode, 200, `${host}: ${r.body}`);
    }
    const fromCi = await inject({ url: `/api/builds/${buildId}`, headers: { origin: 'https://ci.example.com', 'sec-fetch-site': 'cross-site' } });
    assert.equal(fromCi.statusCode, 200, fromCi.body);
    const viaName = await inject({ url: '/api/builds', headers: { host: 'fairway.test', origin: 'https://fairway.test' } });
    assert.equal(viaName.statusCode, 200, 'the page served under an allowed name (TLS proxy in front)');
  });

  it('same-origin requests and plain clients pass, and start builds', async () => {
    const before = t.calls.request;
    const same = await inject({ method: 'POST', url: '/api/builds', headers: { origin: SELF, 'sec-fetch-site': 'same-origin' }, payload: { os: 'windows', arch: 'amd64' } });
    assert.equal(same.statusCode, 202, same.body);
    const plain = await inject({ method: 'POST', url: '/api/builds', payload: SPEC });
    assert.equal(plain.statusCode, 202, plain.body);
    assert.equal(t.calls.request, before + 2);
    assert.equal((await inject({ url: `/api/builds/${plain.json().id}`, headers: { 'sec-fetch-site': 'same-origin' } })).statusCode, 200);
    assert.equal((await inject({ url: '/api/builds', headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' } })).statusCode, 200, 'typed URL or bookmark');
    const cancel = await inject({ method: 'DELETE', url: `/api/builds/${same.json().id}`, headers: { origin: SELF } });
    assert.equal(cancel.statusCode, 200, cancel.body);
    await inject({ method: 'DELETE', url: `/api/builds/${plain.json().id}` });
  });

  it('the UI opens from a link on another site; health checks stay open', async () => {
    const nav = { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' };
    for (const url of ['/', '/index.html', '/ui/app.js', '/healthz', '/readyz']) {
      const r = await inject({ url, headers: nav });
      assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
    }
    assert.equal((await inject({ url: '/', headers: { origin: EVIL } })).statusCode, 200);
  });

  it('websocket logs: an upgrade with a foreign Origin is refused, one with its own Origin opens', async () => {
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (t.app.server.address() as AddressInfo).port;
    const url = `ws://127.0.0.1:${port}/api/builds/${buildId}/log`;
    const open = (origin?: string) =>
      new Promise<{ status: number | 'open'; first?: any; closedByServer?: boolean }>((resolve) => {
        const ws = new WebSocket(url, origin ? { origin } : {});
        ws.on('unexpected-response', (req, res) => {
          // The server must close a refused upgrade's connection itself (else it stays half-open and blocks shutdown).
          const timer = setTimeout(() => {
            resolve({ status: res.statusCode ?? 0, closedByServer: false });
            ws.terminate();
          }, 3000);
          req.socket!.once('close', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, closedByServer: true });
          });
          res.resume();
        });
        ws.on('message', (d) => {
          resolve({ status: 'open', first: JSON.parse(d.toString()) });
          ws.close();
        });
        ws.on('error', () => undefined);
      });
    assert.deepEqual(await open(EVIL), { status: 403, closedByServer: true });
    assert.deepEqual(await open('null'), { status: 403, closedByServer: true });
    const own = await open(`http://127.0.0.1:${port}`);
    assert.equal(own.status, 'open');
    assert.equal(own.first.type, 'status');
    assert.equal((await open()).status, 'open', 'a non-browser client sends no Origin');
  });
});

describe('cross-site: a server on a network address', () => {
  let t: TestApi;
  before(async () => {
    t = await testApi({ crossSite: { listenHost: '0.0.0.0' } });
  });
  after(() => t?.close());

  it('any Host is answered unless allowedHosts is set; the Origin check still applies', async () => {
    assert.equal((await t.app.inject({ url: '/api/builds', headers: { host: 'fairway.corp.example:8080' } })).statusCode, 200);
    const r = await t.app.inject({ method: 'POST', url: '/api/builds', headers: { host: 'fairway.corp.example', origin: EVIL }, payload: SPEC });
    assert.equal(r.statusCode, 403);
    assert.equal(t.calls.request, 0);
    const enforced = new CrossSiteGuard({ listenHost: '0.0.0.0', allowedHosts: ['fairway.corp.example'] });
    assert.ok(enforced.checksHost);
    assert.deepEqual(enforced.allowedHosts().sort(), ['127.0.0.1', '[::1]', 'fairway.corp.example', 'localhost']);
  });
});

describe('cross-site: behind a trusted reverse proxy (trustProxy)', () => {
  let t: TestApi;
  before(async () => {
    t = await testApi({ trustProxy: true, crossSite: { listenHost: '127.0.0.1', allowedHosts: ['fairway.example.com'] } });
  });
  after(() => t?.close());

  it('the forwarded name must be allowed too, and the page served under it is same-origin', async () => {
    const proxied = { host: HOST, 'x-forwarded-host': 'fairway.example.com', 'x-forwarded-proto': 'https' };
    const ok = await t.app.inject({ url: '/api/builds', headers: { ...proxied, origin: 'https://fairway.example.com', 'sec-fetch-site': 'same-origin' } });
    assert.equal(ok.statusCode, 200, ok.body);
    const forged = await t.app.inject({ url: '/api/builds', headers: { ...proxied, 'x-forwarded-host': 'rebind.evil.example' } });
    assert.equal(forged.statusCode, 421, 'a trusted X-Forwarded-Host is checked like Host');
    const foreign = await t.app.inject({ url: '/api/builds', headers: { ...proxied, origin: EVIL } });
    assert.equal(foreign.statusCode, 403);
  });
});

describe('cross-site settings', () => {
  test('host names and origins are parsed and normalised', () => {
    assert.equal(hostName('Example.COM:8080'), 'example.com');
    assert.equal(hostName('[::1]:8080'), '::1');
    assert.equal(hostName('::1'), '::1');
    assert.equal(hostName('127.0.0.1'), '127.0.0.1');
    assert.equal(hostName('fairway.example.com.:443'), 'fairway.example.com');
    assert.equal(normalizeOrigin('https://CI.example.com:443/'), 'https://ci.example.com');
    assert.equal(normalizeOrigin('http://[::1]:8080'), 'http://[::1]:8080');
    for (const bad of ['ci.example.com', 'https://ci.example.com/path', 'ftp://x', 'null', 'https://u:p@x', 'https://x?y', '*']) assert.equal(normalizeOrigin(bad), null, bad);
    for (const bad of ['http://x', 'x:80', 'a b', 'x/y', '']) assert.ok(hostNameError(bad), bad);
    for (const ok of ['fairway.example.com', 'FAIRWAY', '10.0.0.5', '[fd00::1]', 'fd00::1']) assert.equal(hostNameError(ok), null, ok);
  });

  test('allowedHosts and allowedOrigins come from flags, env and file, and are validated at start', () => {
    const c = loadConfig({ flags: { allowedOrigins: 'https://ci.example.com, http://localhost:3000/' }, env: { FAIRWAY_ALLOWED_HOSTS: 'fairway.example.com,10.0.0.5' } });
    assert.deepEqual(c.allowedHosts, ['fairway.example.com', '10.0.0.5']);
    assert.deepEqual(c.allowedOrigins, ['https://ci.example.com', 'http://localhost:3000']);
    const d = loadConfig({ env: {} });
    assert.deepEqual([d.allowedHosts, d.allowedOrigins], [[], []]);
    assert.throws(() => loadConfig({ flags: { allowedOrigins: 'ci.example.com' }, env: {} }), /allowedOrigins\.0: "ci\.example\.com" is not an origin such as https:\/\/ci\.example\.com/);
    assert.throws(() => loadConfig({ flags: {}, env: { FAIRWAY_ALLOWED_HOSTS: 'https://fairway.example.com' } }), /allowedHosts\.0: .*is not a host name/);
  });
});
