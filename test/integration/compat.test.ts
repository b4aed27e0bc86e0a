/**
 * caddyserver.com compatibility, end to end against a real `fairway serve`, real builds and real
 * Caddy binaries (docs/compat.md):
 *  - GET/HEAD /api/download answering the exact query Caddy's CLI builds, repeated `p`, versions
 *    in `p`, Caddy-shaped errors, long-poll that survives a client going away;
 *  - /api/packages and /api/catalog, with module IDs learned from a build;
 *  - `fairway add-package`/`upgrade`/`remove-package` replacing a real caddy binary in place,
 *    including rollback when the new binary fails verification;
 *  - an unmodified Caddy binary's own `add-package`/`upgrade`/`remove-package` fetching from
 *    Fairway, through a TLS-intercepting proxy (Caddy's download URL is a hard-coded constant).
 *   node scripts/setup.mjs && node --import tsx --test test/integration/compat.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, lstat, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, countingXcaddy, MAIN, PLUGIN, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startMitmProxy, type MitmProxy } from '../helpers/mitm.js';

const BUILD_TIMEOUT = 20 * 60_000;
const L4 = `${PLUGIN.module}@${PLUGIN.version}`;
/** Served by the module proxy here, but its checksum is refused by the sum DB: the server runs with GONOSUMDB for it. */
const TE = { module: 'github.com/caddyserver/transform-encoder', version: 'v0.0.0-20240312163748-f627fc4f7633', caddyModule: 'caddy.logging.encoders.transform' };
const UNKNOWN = 'github.com/fairway-test-nonexistent/nothing';
/** What Caddy's upgradeBuild sends for one plugin: Go's url.Values.Encode() (keys sorted). */
const CADDY_QUERY = 'arch=amd64&os=linux&p=github.com%2Fmholt%2Fcaddy-l4%40v0.1.2';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const fileSha = async (p: string) => sha256(await readFile(p));

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}
function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeout = BUILD_TIMEOUT): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env: env ?? process.env, timeout, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
const fairway = (args: string[]) => run(process.execPath, [MAIN, ...args], { ...process.env, FAIRWAY_SERVER: '' });
const modulesOf = async (bin: string) => (await run(bin, ['list-modules', '--versions', '--skip-standard'])).stdout;

/**
 * GET /api/download like Caddy does (Go's http.Get: no header timeout). Node's fetch gives up
 * after 300 s without response headers, shorter than a cold cross-compile on a busy 2-core box.
 */
function download(base: string, query: string): Promise<{ res: { status: number; headers: Headers }; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${base}/api/download?${query}`, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
        resolve({ res: { status: res.statusCode ?? 0, headers }, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
  });
}

/** No download or backup files left next to the binary. */
async function leftovers(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /\.download-|\.tmp$/.test(f));
}

describe('caddyserver.com-compatible API and package commands', { timeout: 90 * 60_000 }, () => {
  let dir: string;
  let server: FairwayProcess;
  let xcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  let plainCaddy: string;
  let l4Sha: string;

  before(async () => {
    dir = await tempDir('fairway-compat-');
    xcaddy = await countingXcaddy(dir);
    server = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--xcaddy-bin', xcaddy.bin, '--workers', '2', '--gonosumdb', TE.module],
    });
  });
  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('GET /api/download with the exact query Caddy builds: the binary, with caddyserver.com headers', { timeout: BUILD_TIMEOUT }, async () => {
    const { res, body } = await download(server.url, CADDY_QUERY);
    assert.equal(res.status, 200, body.toString().slice(0, 500));
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.equal(res.headers.get('content-disposition'), 'attachment; filename="caddy_linux_amd64_custom"');
    assert.equal(Number(res.headers.get('content-length')), body.length);
    l4Sha = sha256(body);
    assert.equal(res.headers.get('x-checksum-sha256'), l4Sha);
    assert.match(res.headers.get('x-fairway-caddy-version') ?? '', /^v2\./, 'no version asked: the latest Caddy');
    const bin = join(dir, 'l4-caddy');
    await writeFile(bin, body, { mode: 0o755 });
    assert.match(await modulesOf(bin), new RegExp(`^${PLUGIN.caddyModule} ${PLUGIN.version}$`, 'm'));
    assert.equal(await xcaddy.count(), 1);

    // The same query in the website's parameter order (+ idempotency): the same binary, no new build.
    const again = await download(server.url, `os=linux&arch=amd64&p=${encodeURIComponent(L4)}&idempotency=49780288454034`);
    assert.equal(again.res.status, 200);
    assert.equal(sha256(again.body), l4Sha);
    assert.equal(await xcaddy.count(), 1);
  });

  test("module IDs are learned from the build into the catalog; /api/packages has caddyserver.com's shape", async () => {
    let pkg: any;
    for (let i = 0; i < 100; i++) {
      pkg = (await api(server.url, `/api/catalog?path=${encodeURIComponent(PLUGIN.module)}`)).body;
      if (pkg.learned) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(pkg.learned, `nothing learned: ${JSON.stringify(pkg)}`);
    assert.equal(pkg.learned.version, PLUGIN.version);
    assert.ok(pkg.learned.modules.includes(PLUGIN.caddyModule));
    assert.ok(pkg.learned.modules.length >= 40);
    assert.deepEqual(pkg.sources, ['curated', 'learned']);

    const all = await api(server.url, '/api/packages');
    assert.equal(all.status, 200);
    assert.equal(all.body.status_code, 200);
    assert.ok(all.body.result.length >= 25);
    for (const p of all.body.result) {
      assert.equal(typeof p.id, 'string');
      assert.equal(typeof p.path, 'string');
      assert.match(p.repo, /^https:\/\//);
      assert.equal(typeof p.downloads, 'number');
      assert.equal(typeof p.listed, 'boolean');
      assert.equal(typeof p.available, 'boolean');
      assert.ok(p.modules === null || Array.isArray(p.modules));
    }
    const l4 = all.body.result.find((p: any) => p.path === PLUGIN.module);
    assert.deepEqual(Object.keys(l4.modules[0]).sort(), ['docs', 'name', 'package', 'repo']);
    assert.equal(l4.modules[0].package, PLUGIN.module);
    const nginx = all.body.result.find((p: any) => p.path === 'github.com/caddyserver/nginx-adapter');
    assert.equal(nginx.modules, null, 'no modules → null, as the download page expects');

    const q = await api(server.url, '/api/packages?q=layer4');
    assert.deepEqual(
      q.body.result.map((p: any) => p.path),
      [PLUGIN.module],
    );
    const native = await api(server.url, '/api/catalog?q=dns%20cloudflare');
    assert.deepEqual(
      native.body.packages.map((p: any) => p.path),
      ['github.com/caddy-dns/cloudflare'],
    );
    assert.deepEqual(native.body.upstream, { url: null, ok: true, packages: 0, refreshMs: 6 * 3600_000 });
  });

  test('repeated p with versions: both plugins built in; p is an unordered set', { timeout: BUILD_TIMEOUT }, async () => {
    const p1 = encodeURIComponent(L4);
    const p2 = encodeURIComponent(`${TE.module}@${TE.version}`);
    const before = await xcaddy.count();
    const { res, body } = await download(server.url, `arch=amd64&os=linux&p=${p1}&p=${p2}`);
    assert.equal(res.status, 200, body.toString().slice(0, 800));
    const bin = join(dir, 'two-caddy');
    await writeFile(bin, body, { mode: 0o755 });
    const mods = await modulesOf(bin);
    assert.match(mods, new RegExp(`^${PLUGIN.caddyModule} ${PLUGIN.version}$`, 'm'));
    assert.match(mods, new RegExp(`^${TE.caddyModule.replace(/\./g, '\\.')} ${TE.version}$`, 'm'));
    assert.equal(await xcaddy.count(), before + 1);

    // Reversed order (Caddy sends Go map order, which is random): the same build.
    const rev = await download(server.url, `arch=amd64&os=linux&p=${p2}&p=${p1}`);
    assert.equal(sha256(rev.body), sha256(body));
    // An identical repeat collapses into one.
    const dup = await download(server.url, `arch=amd64&os=linux&p=${p1}&p=${p1}`);
    assert.equal(sha256(dup.body), l4Sha);
    assert.equal(await xcaddy.count(), before + 1);
  });

  test('Caddy pinned with version= or p=github.com/caddyserver/caddy/v2@…; HEAD gives a pinned Location', { timeout: BUILD_TIMEOUT }, async () => {
    const viaVersion = await fetch(`${server.url}/api/download?os=linux&arch=amd64&version=${CADDY_VERSION}&p=${encodeURIComponent(L4)}`, { method: 'HEAD' });
    assert.equal(viaVersion.status, 200);
    const location = viaVersion.headers.get('location')!;
    assert.equal(location, `/api/download?os=linux&arch=amd64&version=${CADDY_VERSION}&p=${encodeURIComponent(L4)}`);
    assert.equal(viaVersion.headers.get('content-disposition'), 'attachment; filename="caddy_linux_amd64_custom"');
    assert.ok(Number(viaVersion.headers.get('content-length')) > 1_000_000);
    assert.equal(Buffer.from(await viaVersion.arrayBuffer()).length, 0, 'HEAD has no body');
    const viaP = await download(server.url, `os=linux&arch=amd64&p=${encodeURIComponent('github.com/caddyserver/caddy/v2@v2.11.9')}&p=${encodeURIComponent(L4)}`);
    assert.equal(viaP.res.status, 200);
    assert.equal(viaP.res.headers.get('x-checksum-sha256'), viaVersion.headers.get('x-checksum-sha256'));
    const followed = await fetch(server.url + location);
    assert.equal(followed.headers.get('x-checksum-sha256'), viaVersion.headers.get('x-checksum-sha256'));
    await followed.arrayBuffer();
  });

  test('errors use the envelope Caddy decodes: unknown package, bad platform, conflicting p', async () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    const cases: Array<[string, number, RegExp]> = [
      [`arch=amd64&os=linux&p=${encodeURIComponent(UNKNOWN)}`, 422, /fairway-test-nonexistent\/nothing/],
      [`arch=amd64&os=linux&p=${encodeURIComponent(`${PLUGIN.module}@v99.99.99`)}`, 422, /v99\.99\.99/],
      ['arch=amd64&p=x', 400, /os: is required/],
      ['arch=sparc&os=linux', 400, /Go cannot build linux\/sparc/],
      [`arch=amd64&os=linux&p=${encodeURIComponent(L4)}&p=${encodeURIComponent(`${PLUGIN.module}@v0.1.1`)}`, 400, /given twice/],
      [`arch=amd64&os=linux&p=${encodeURIComponent('-x/evil')}`, 400, /module path/],
    ];
    for (const [query, status, message] of cases) {
      const res = await api(server.url, `/api/download?${query}`);
      assert.equal(res.status, status, `${query}: ${JSON.stringify(res.body)}`);
      assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
      assert.equal(res.body.status_code, status);
      assert.match(res.body.error.message, message);
      assert.match(res.body.error.id, uuid);
      const head = await fetch(`${server.url}/api/download?${query}`, { method: 'HEAD' });
      assert.equal(head.status, status, `HEAD ${query}`);
    }
  });

  test('a client that disconnects does not cancel the build others wait on', { timeout: BUILD_TIMEOUT }, async () => {
    const query = 'os=linux&arch=arm64&version=v2.11.9';
    const spec = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'arm64' };
    const before = await xcaddy.count();
    const leaving = new AbortController();
    // Resolves with 'completed' if the download finished, or with the error that ended it.
    const first = new Promise<unknown>((resolve) => {
      const req = http.get(`${server.url}/api/download?${query}`, { signal: leaving.signal }, (res) => {
        res.resume();
        res.on('end', () => resolve('completed'));
        res.on('error', resolve);
      });
      req.on('error', resolve);
    });
    // Wait until the build is queued or running, then hang up the first client.
    for (let i = 0; ; i++) {
      const st = await api(server.url, '/api/builds', { json: spec });
      if (st.body.status === 'running') break;
      assert.ok(i < 600, 'the build did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const staying = download(server.url, query);
    leaving.abort();
    const gaveUp = await first;
    assert.ok(gaveUp instanceof Error, `the first client gave up (got ${String(gaveUp)})`);
    assert.equal(gaveUp.name, 'AbortError', `the first client's download ended by its abort, not by ${String(gaveUp)}`);
    const { res, body } = await staying;
    assert.equal(res.status, 200, body.toString().slice(0, 500));
    assert.equal(body.subarray(1, 4).toString(), 'ELF');
    assert.equal(await xcaddy.count(), before + 1, 'one build, not restarted');
    const st = await api(server.url, '/api/builds', { json: spec });
    assert.equal(st.body.status, 'succeeded');
    assert.match(server.output(), /client went away; the build continues/);
  });

  describe('fairway add-package / upgrade / remove-package on a real binary', () => {
    let binDir: string;
    let bin: string;

    before(async () => {
      binDir = await tempDir('fairway-bin-');
      bin = join(binDir, 'caddy');
      const { res, body } = await download(server.url, 'os=linux&arch=amd64');
      assert.equal(res.status, 200);
      plainCaddy = join(dir, 'plain-caddy');
      await writeFile(plainCaddy, body, { mode: 0o755 });
      await copyFile(plainCaddy, bin);
      await chmod(bin, 0o750);
    });
    after(async () => {
      if (binDir) await rm(binDir, { recursive: true, force: true });
    });

    test('add-package adds the plugin in place, keeping the mode, leaving nothing behind', { timeout: BUILD_TIMEOUT }, async () => {
      assert.equal(await modulesOf(bin), '');
      const r = await fairway(['add-package', L4, '--caddy', bin, '--server', server.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /requesting build os=linux arch=amd64 packages=\[github.com\/mholt\/caddy-l4@v0.1.2\]/);
      assert.match(r.stderr, /upgrade successful/);
      assert.match(r.stdout, /Module versions:[\s\S]*layer4 v0\.1\.2[\s\S]*Version:\nv2\./);
      assert.match(await modulesOf(bin), /^layer4 v0\.1\.2$/m);
      assert.equal(await fileSha(bin), l4Sha);
      assert.equal((await stat(bin)).mode & 0o777, 0o750);
      assert.deepEqual(await leftovers(binDir), []);
    });

    test('--dry-run prints the URL Caddy would request; a second add of the same package is refused', async () => {
      const r = await fairway(['upgrade', '--dry-run', '--caddy', bin, '--server', server.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `${server.url}/api/download?${CADDY_QUERY}`);
      const again = await fairway(['add-package', PLUGIN.module, '--caddy', bin, '--server', server.url]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /package is already added: github.com\/mholt\/caddy-l4@v0.1.2/);
    });

    test('upgrade --keep-backup keeps the plugins pinned and leaves <caddy>.tmp', { timeout: BUILD_TIMEOUT }, async () => {
      const beforeSha = await fileSha(bin);
      const r = await fairway(['upgrade', '--keep-backup', '--caddy', bin, '--server', server.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(await modulesOf(bin), /^layer4 v0\.1\.2$/m);
      assert.equal(await fileSha(`${bin}.tmp`), beforeSha, 'the backup is the previous binary');
      assert.deepEqual(await leftovers(binDir), ['caddy.tmp']);
    });

    test('remove-package through a symlink replaces the target and keeps the link', { timeout: BUILD_TIMEOUT }, async () => {
      const link = join(binDir, 'caddy-link');
      await symlink(bin, link);
      const r = await fairway(['remove-package', PLUGIN.module, '--caddy', link, '--server', server.url]);
      assert.equal(r.code, 0, r.stderr);
      assert.ok((await lstat(link)).isSymbolicLink());
      assert.equal(await modulesOf(bin), '');
      assert.equal(await fileSha(bin), await fileSha(plainCaddy));
    });

    test('a server error is printed like Caddy prints it; nothing is touched', async () => {
      const beforeSha = await fileSha(bin);
      const r = await fairway(['add-package', UNKNOWN, '--caddy', bin, '--server', server.url]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /Error: download failed: download failed: HTTP 422: cannot resolve github.com\/fairway-test-nonexistent\/nothing@latest.*\(id=[0-9a-f-]{36}\)/);
      assert.equal(await fileSha(bin), beforeSha);
    });

    test('a binary that fails verification is never swapped in (rollback); a bad checksum neither', async () => {
      const beforeSha = await fileSha(bin);
      const broken = Buffer.from('#!/bin/sh\necho "not caddy" >&2\nexit 3\n');
      let sum = sha256(broken);
      const fake = http.createServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': broken.length, 'x-checksum-sha256': sum });
        res.end(broken);
      });
      await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
      const fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
      try {
        const r = await fairway(['upgrade', '--caddy', bin, '--server', fakeUrl]);
        assert.equal(r.code, 1);
        assert.match(r.stderr, /download succeeded, but unable to execute 'caddy list-modules'/);
        assert.equal(await fileSha(bin), beforeSha, 'the original is untouched');
        assert.deepEqual(await leftovers(binDir), []);

        sum = '0'.repeat(64);
        const bad = await fairway(['upgrade', '--keep-backup', '--caddy', bin, '--server', fakeUrl]);
        assert.equal(bad.code, 1);
        assert.match(bad.stderr, /checksum mismatch/);
        assert.equal(await fileSha(bin), beforeSha);
        assert.deepEqual(await leftovers(binDir), []);
      } finally {
        await new Promise<void>((r) => fake.close(() => r()));
      }
    });
  });

  describe("an unmodified Caddy binary's own commands, fetching from Fairway through a TLS-intercepting proxy", () => {
    let proxy: MitmProxy;
    let binDir: string;
    let bin: string;
    let env: NodeJS.ProcessEnv;

    before(async () => {
      proxy = await startMitmProxy(server.url);
      binDir = await tempDir('fairway-realcaddy-');
      bin = join(binDir, 'caddy');
      await copyFile(plainCaddy, bin);
      env = { PATH: process.env.PATH, HOME: binDir, HTTPS_PROXY: proxy.url, https_proxy: proxy.url, NO_PROXY: '', no_proxy: '', SSL_CERT_FILE: proxy.caFile };
    });
    after(async () => {
      await proxy?.close();
      if (binDir) await rm(binDir, { recursive: true, force: true });
    });

    test("caddy add-package: Caddy's exact request, the plugin is in the new binary", { timeout: BUILD_TIMEOUT }, async () => {
      const r = await run(bin, ['add-package', L4], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /"msg":"upgrade successful; please restart any running Caddy instances"/);
      const req = proxy.requests.at(-1)!;
      assert.equal(req.method, 'GET');
      assert.equal(req.host, 'caddyserver.com');
      assert.equal(req.url, `/api/download?${CADDY_QUERY}`);
      assert.match(String(req.headers['user-agent']), /^Go-http-client\//);
      assert.equal(req.status, 200);
      assert.match(await modulesOf(bin), /^layer4 v0\.1\.2$/m);
      assert.equal(await fileSha(bin), l4Sha);
      assert.deepEqual(await leftovers(binDir), []);
    });

    test("caddy upgrade: plugins pinned, served from Fairway's cache", { timeout: BUILD_TIMEOUT }, async () => {
      const builds = await xcaddy.count();
      const r = await run(bin, ['upgrade'], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(proxy.requests.at(-1)!.url, `/api/download?${CADDY_QUERY}`);
      assert.match(await modulesOf(bin), /^layer4 v0\.1\.2$/m);
      assert.equal(await xcaddy.count(), builds);
    });

    test("caddy add-package of an unknown package prints Fairway's message and id", async () => {
      const beforeSha = await fileSha(bin);
      const r = await run(bin, ['add-package', UNKNOWN], env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /download failed: download failed: HTTP 422: cannot resolve github.com\/fairway-test-nonexistent\/nothing@latest.*\(id=[0-9a-f-]{36}\)/);
      assert.equal(proxy.requests.at(-1)!.status, 422);
      assert.equal(await fileSha(bin), beforeSha);
    });

    test('caddy remove-package', { timeout: BUILD_TIMEOUT }, async () => {
      const r = await run(bin, ['remove-package', PLUGIN.module], env);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(proxy.requests.at(-1)!.url, '/api/download?arch=amd64&os=linux');
      assert.equal(await modulesOf(bin), '');
      assert.deepEqual(
        proxy.connects.filter((c) => c !== 'caddyserver.com:443'),
        [],
        'Caddy only ever asked for caddyserver.com',
      );
    });
  });
});
