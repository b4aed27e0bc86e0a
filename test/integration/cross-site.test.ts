/**
 * Cross-site requests and DNS rebinding against the real `fairway serve` process
 * (test/helpers/fairway.ts): real TCP requests with a forged Host header (node:http, since fetch
 * cannot set Host) and with foreign Origin / Sec-Fetch-Site headers are refused with JSON 421/403,
 * on the native, compatible and websocket routes, and nothing is queued or built. The server's
 * xcaddy is a stand-in whose builds fail at once; a last, ordinary request shows that a build
 * would have been seen in GET /api/builds had one started.
 *   node scripts/setup.mjs && node --import tsx --test test/integration/cross-site.test.ts
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { api, CADDY_VERSION, startFairway, tempDir, waitForBuild, XCADDY, type FairwayProcess } from '../helpers/fairway.js';

const SPEC = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' };
const EVIL = 'https://evil.example';

const STAND_IN = 'stand-in xcaddy: build invoked, failing at once';

/**
 * An xcaddy whose builds fail at once, saying so on stderr (which lands in the build's log);
 * `version` answers what the real xcaddy answers. Self-contained and world-readable, so it also
 * runs inside the build sandbox, as the build user, where nothing else of this test is mounted.
 */
async function failingXcaddy(dir: string): Promise<string> {
  const version = execFileSync(XCADDY, ['version'], { encoding: 'utf8' }).trim();
  const bin = join(dir, 'xcaddy-fails');
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "version" ]; then echo '${version}'; exit 0; fi\necho '${STAND_IN}' >&2\nexit 1\n`);
  await chmod(dir, 0o755);
  await chmod(bin, 0o755);
  return bin;
}

/** One request over real TCP with exactly these headers (Host included). */
function request(port: number, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; type: string; json: any }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: { ...headers, ...(data ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}) }, setHost: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          let json: any = text;
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), json });
        });
      },
    );
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`${method} ${path}: no answer in 15 s (was the request let through to a build?)`)));
    req.end(data);
  });
}

function wsStatus(url: string, headers: Record<string, string>, origin?: string): Promise<number | 'open'> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers, ...(origin ? { origin } : {}) });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on('open', () => {
      resolve('open');
      ws.terminate();
    });
    ws.on('error', () => undefined);
  });
}

describe('cross-site requests and DNS rebinding (real server)', { timeout: 5 * 60_000 }, () => {
  let dir: string;
  let server: FairwayProcess;
  let xcaddy: string;
  let self: Record<string, string>;

  before(async () => {
    dir = await tempDir('fairway-cross-site-');
    xcaddy = await failingXcaddy(dir);
    server = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--xcaddy-bin', xcaddy, '--rate-limit', '0', '--build-rate-limit', '0', '--allowed-hosts', 'fairway.test', '--allowed-origins', 'https://ci.example.com'],
    });
    self = { host: `127.0.0.1:${server.port}` };
  });
  after(async () => {
    await server?.stop('SIGKILL');
  });

  test('a forged Host is refused with 421 JSON on every route family; nothing is queued', async () => {
    const evilHost = { host: `rebind.evil.example:${server.port}` };
    const post = await request(server.port, 'POST', '/api/builds', { ...evilHost, origin: `http://rebind.evil.example:${server.port}` }, SPEC);
    assert.equal(post.status, 421, JSON.stringify(post.json));
    assert.match(post.type, /^application\/json/);
    assert.equal(post.json.error.code, 'unknown_host');
    assert.match(post.json.error.message, /does not answer to the host name "rebind\.evil\.example:\d+" \(Host header\)/);
    assert.match(post.json.error.message, /add it to allowedHosts \(--allowed-hosts, FAIRWAY_ALLOWED_HOSTS\)/);
    const dl = await request(server.port, 'GET', '/api/download?os=linux&arch=amd64', evilHost);
    assert.equal(dl.status, 421);
    assert.equal(dl.json.status_code, 421, 'the compat envelope');
    assert.equal(typeof dl.json.error.id, 'string');
    for (const path of ['/', '/api/builds', '/healthz']) assert.equal((await request(server.port, 'GET', path, evilHost)).status, 421, path);
    assert.equal(await wsStatus(`ws://127.0.0.1:${server.port}/api/builds/${'0'.repeat(64)}/log`, evilHost), 421);
  });

  test('a foreign Origin or Sec-Fetch-Site: cross-site is refused with 403 JSON; nothing is queued', async () => {
    const post = await request(server.port, 'POST', '/api/builds', { ...self, origin: EVIL, 'sec-fetch-site': 'cross-site' }, SPEC);
    assert.equal(post.status, 403, JSON.stringify(post.json));
    assert.match(post.type, /^application\/json/);
    assert.deepEqual(Object.keys(post.json), ['error']);
    assert.equal(post.json.error.code, 'cross_site');
    assert.match(post.json.error.message, /came from the web page at https:\/\/evil\.example \(Origin\).*Add the origin to allowedOrigins/);
    const dl = await request(server.port, 'GET', '/api/download?os=linux&arch=amd64', { ...self, origin: EVIL });
    assert.equal(dl.status, 403);
    assert.equal(dl.json.status_code, 403);
    assert.equal(dl.json.error.code, 'cross_site');
    const img = await request(server.port, 'GET', `/api/download?os=linux&arch=amd64&version=${CADDY_VERSION}`, { ...self, 'sec-fetch-site': 'cross-site', 'sec-fetch-dest': 'image' });
    assert.equal(img.status, 403, 'an <img> on another site');
    assert.match(img.json.error.message, /Sec-Fetch-Site: cross-site/);
    const del = await request(server.port, 'DELETE', `/api/builds/${'0'.repeat(64)}`, { ...self, origin: EVIL });
    assert.equal(del.status, 403);
    assert.equal(await wsStatus(`ws://127.0.0.1:${server.port}/api/builds/${'0'.repeat(64)}/log`, self, EVIL), 403);
    // The UI still opens from a link on another site.
    assert.equal((await request(server.port, 'GET', '/', { ...self, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' })).status, 200);
  });

  test('nothing was queued or built by the refused requests; allowed names and origins pass', async () => {
    const list = await api(server.url, '/api/builds');
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.builds, []);
    assert.deepEqual(list.body.queue, { queued: 0, running: 0 });
    // Past the checks (the spec parser answers 400): an allowed extra name, the server's own origin, an allowed origin.
    const cases: Array<Record<string, string>> = [
      { host: `fairway.test:${server.port}`, origin: `http://fairway.test:${server.port}` },
      { ...self, origin: `http://127.0.0.1:${server.port}`, 'sec-fetch-site': 'same-origin' },
      { ...self, origin: 'https://ci.example.com', 'sec-fetch-site': 'cross-site' },
      { ...self },
    ];
    for (const headers of cases) {
      const r = await request(server.port, 'POST', '/api/builds', headers, { os: 'linux' });
      assert.equal(r.status, 400, `${JSON.stringify(headers)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.code, 'invalid_spec');
    }
    assert.equal(await wsStatus(`ws://127.0.0.1:${server.port}/api/builds/${'0'.repeat(64)}/log`, self, `http://127.0.0.1:${server.port}`), 'open');
  });

  test('control: an ordinary request does start a build, and GET /api/builds shows it', async () => {
    const r = await api(server.url, '/api/builds', { json: SPEC });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await waitForBuild(server.url, r.body.id, 3 * 60_000);
    assert.equal(done.status, 'failed', JSON.stringify(done));
    const list = await api(server.url, '/api/builds');
    assert.equal(list.body.builds.length, 1, 'a started build is listed, so the empty list above means none started');
    const log = await api(server.url, `/api/builds/${r.body.id}/log`);
    assert.match(String(log.body), new RegExp(STAND_IN), 'the stand-in xcaddy was reached');
  });

  test('a malformed allowedOrigins entry is refused at start, naming the setting', async () => {
    await assert.rejects(
      startFairway({ dataDir: join(dir, 'bad'), args: ['--allowed-origins', 'ci.example.com'] }),
      /allowedOrigins\.0: "ci\.example\.com" is not an origin such as https:\/\/ci\.example\.com/,
    );
    await assert.rejects(startFairway({ dataDir: join(dir, 'bad2'), env: { FAIRWAY_ALLOWED_HOSTS: 'http://x' } }), /allowedHosts\.0: "http:\/\/x" is not a host name/);
  });
});
