/**
 * Issue 26, point 6: private modules stay private, with real parts.
 *  - The sandbox's module relay (src/sandbox/modproxy.ts) in front of two real module proxies
 *    (test/helpers/goproxy.ts; one "private", one "public"), driven by the real go command: a
 *    module path matching GOPRIVATE (GONOPROXY) is asked of neither proxy, whatever the go command
 *    asks, in any capitals; its checksum lookup is refused too; public modules come through; with
 *    GONOPROXY=none the private proxy serves it (the go command's own rule).
 *  - A real `fairway serve`'s fleet module proxy (`/goproxy`, agent scope): a module the build
 *    policy denies and a private module are refused before any proxy sees them; a public module is
 *    filled by the real sandboxed go command through the real relay.
 *   node --import tsx --test --test-reporter=spec test/integration/private-modules.test.ts
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startModuleRelay, type ModuleRelay } from '../../src/sandbox/modproxy.js';
import { matchPrivate, privateModules } from '../../src/util/goprivate.js';
import { startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { escapeModulePath, startGoProxy, type GoProxy, type SyntheticModule } from '../helpers/goproxy.js';
import { getFreePort } from '../helpers/services.js';

const execFileP = promisify(execFile);
const GO = process.env.FAIRWAY_GO ?? '/usr/local/go/bin/go';
const tag = randomBytes(4).toString('hex');
const PRIVATE = `corp.fairway.test/private${tag}/secret`;
const PUBLIC = `fairway.test/public${tag}/lib`;
const DENIED = `fairway.test/denied${tag}/evil`;
const mod = (path: string, version = 'v1.0.0'): SyntheticModule => ({ path, version, files: { 'go.mod': `module ${path}\n\ngo 1.21\n`, 'x.go': 'package x\n' } });
const sawAny = (p: GoProxy, needle: string) => p.requests.filter((r) => r.toLowerCase().includes(needle.toLowerCase()));

describe('GOPRIVATE patterns (matchPrivate)', () => {
  test("Go's prefix-glob rules, ignoring case", () => {
    const cases: Array<[string, string, string | null]> = [
      ['corp.example.com', 'corp.example.com/x/y', 'corp.example.com'],
      ['*.corp.example.com', 'git.corp.example.com/a', '*.corp.example.com'],
      ['*.corp.example.com', 'corp.example.com/a', null],
      ['github.com/myorg/*', 'github.com/myorg/repo/v2', 'github.com/myorg/*'],
      ['github.com/myorg/*', 'github.com/myorg', null],
      ['github.com/myorg', 'github.com/MyOrg/Repo', 'github.com/myorg'],
      ['github.com/my?rg', 'github.com/myorg/x', 'github.com/my?rg'],
      ['github.com/[a-c]org', 'github.com/borg/x', 'github.com/[a-c]org'],
      ['github.com/[a-c]org', 'github.com/dorg/x', null],
      ['a.com,,b.com/x/', 'b.com/x/y', 'b.com/x'],
      ['none', 'github.com/x', null],
      ['example.com', 'example.community/x', null],
      ['example.c.m', 'exampleXcom/x', null],
    ];
    for (const [pattern, module, want] of cases) assert.equal(matchPrivate(pattern, module), want, `${pattern} ~ ${module}`);
    assert.deepEqual(privateModules({ goprivate: 'corp.example.com' }), { noProxy: 'corp.example.com', noSumdb: 'corp.example.com' });
    assert.deepEqual(privateModules({ goprivate: 'corp.example.com', gonoproxy: 'none' }), { noProxy: 'none', noSumdb: 'corp.example.com' });
    assert.deepEqual(privateModules({ gonoproxy: '', gonosumdb: 'x.com' }), { noSumdb: 'x.com' });
  });
});

describe('the module relay keeps private module paths from every proxy (real go command, two real proxies)', () => {
  let priv: GoProxy;
  let pub: GoProxy;
  let dir: string;
  const relays: Array<{ relay: ModuleRelay; bridge: ChildProcess }> = [];

  /** A relay over [private proxy, public proxy] (`,`: the next on 404), bridged to TCP with socat as the sandbox does. */
  const relay = async (privateEnv: { goprivate?: string; gonoproxy?: string }) => {
    const refused: string[] = [];
    const r = await startModuleRelay({
      upstreams: [
        { url: priv.url, fallThrough: 'not-found' },
        { url: pub.url, fallThrough: 'not-found' },
      ],
      private: privateModules(privateEnv),
      onPrivate: (m) => refused.push(m),
    });
    const port = await getFreePort();
    const bridge = spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${r.socketPath}`], { stdio: 'ignore' });
    relays.push({ relay: r, bridge });
    for (let i = 0; i < 50; i++) {
      const ok = await fetch(`http://127.0.0.1:${port}/x`).then(
        () => true,
        () => false,
      );
      if (ok) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    return { url: `http://127.0.0.1:${port}`, socketPath: r.socketPath, refused, counts: r.counts };
  };

  /** `go mod download -json module@version` through `proxy`, as a sandboxed build runs it (relayEnv: no GOPRIVATE/GONOPROXY, GONOSUMDB kept). */
  const download = async (proxy: string, target: string, gonosumdb: string) => {
    const home = join(dir, `go-${randomBytes(4).toString('hex')}`);
    await mkdir(home, { recursive: true });
    const env = {
      PATH: '/usr/bin:/bin',
      HOME: home,
      GOPATH: join(home, 'gopath'),
      GOMODCACHE: join(home, 'mod'),
      GOCACHE: join(home, 'cache'),
      GOFLAGS: '-modcacherw',
      GOPROXY: proxy,
      GONOSUMDB: gonosumdb,
      GOTOOLCHAIN: 'local',
      GOTELEMETRY: 'off',
    };
    return execFileP(GO, ['mod', 'download', '-json', target], { env, cwd: home }).then(
      (r) => ({ ok: true, out: r.stdout }),
      (e: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
  };

  /** A GET through the relay's socket (what a go command inside the sandbox sends). */
  const get = (socketPath: string, path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ socketPath, path, method: 'GET' }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    dir = await tempDir('fairway-private-');
    // The private proxy has v1.0.0 of the private module; v1.0.1 exists nowhere (the 404 after which the old relay asked the public proxy).
    priv = await startGoProxy([mod(PRIVATE)]);
    pub = await startGoProxy([mod(PUBLIC)]);
  });

  after(async () => {
    for (const r of relays) {
      r.bridge.kill('SIGKILL');
      await r.relay.close();
    }
    await Promise.all([priv?.close(), pub?.close()]);
  });

  test('GOPRIVATE: the private path reaches neither proxy (any version, any capitals, checksum lookups); public modules come through', { timeout: 120_000 }, async () => {
    const r = await relay({ goprivate: 'corp.fairway.test' });
    const missing = await download(r.url, `${PRIVATE}@v1.0.1`, 'corp.fairway.test,fairway.test');
    assert.equal(missing.ok, false);
    assert.match(missing.out, /403 Forbidden.*is a private module \(GONOPROXY\/GOPRIVATE pattern \\?"corp\.fairway\.test\\?"\).*no proxy was asked/s, 'the go command shows why');
    const present = await download(r.url, `${PRIVATE}@v1.0.0`, 'corp.fairway.test,fairway.test');
    assert.equal(present.ok, false, 'go itself would not ask a proxy: the relay does not either');
    const upper = await get(r.socketPath, `/${escapeModulePath(PRIVATE.replace('secret', 'Secret'))}/@v/list`);
    assert.equal(upper.status, 403, 'another spelling of the path is as private');
    const sum = await get(r.socketPath, `/sumdb/sum.golang.org/lookup/${PRIVATE}@v1.0.0`);
    assert.equal(sum.status, 403);
    assert.match(sum.body, /not looked up in a checksum database/);
    assert.deepEqual(sawAny(priv, `private${tag}`), [], 'the private proxy was not asked either (GONOPROXY defaults to GOPRIVATE: no proxy at all)');
    assert.deepEqual(sawAny(pub, `private${tag}`), [], 'the public proxy never saw the private path');
    assert.ok(r.refused.length >= 3);

    const ok = await download(r.url, `${PUBLIC}@v1.0.0`, 'corp.fairway.test,fairway.test');
    assert.equal(ok.ok, true, ok.out);
    assert.equal(JSON.parse(ok.out).Version, 'v1.0.0');
    assert.ok(sawAny(pub, `public${tag}`).length > 0, 'the public module came from the public proxy');
  });

  test('GONOPROXY=none: private modules may come from the proxies (the go command’s rule); still no checksum lookup', { timeout: 120_000 }, async () => {
    const r = await relay({ goprivate: 'corp.fairway.test', gonoproxy: 'none' });
    const present = await download(r.url, `${PRIVATE}@v1.0.0`, 'corp.fairway.test,fairway.test');
    assert.equal(present.ok, true, present.out);
    assert.ok(sawAny(priv, `private${tag}`).length > 0);
    assert.equal((await get(r.socketPath, `/sumdb/sum.golang.org/lookup/${PRIVATE}@v1.0.0`)).status, 403);
  });
});

describe("a real serve's fleet module proxy (/goproxy): build policy and private modules", { skip: process.getuid?.() !== 0 ? 'needs root (the sandbox drops to a build user)' : false }, () => {
  let server: FairwayProcess;
  let priv: GoProxy;
  let pub: GoProxy;
  const token = `fw_${randomBytes(24).toString('hex')}`;
  const auth = { authorization: `Bearer ${token}` };
  const hash = (s: string) => createHash('sha256').update(s).digest('hex');

  before(async () => {
    priv = await startGoProxy([mod(PRIVATE)]);
    pub = await startGoProxy([mod(PUBLIC), mod(DENIED)]);
    const dir = await tempDir('fairway-private-serve-');
    server = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--goproxy', `${priv.url},${pub.url}`, '--goprivate', 'corp.fairway.test', '--deny-modules', `fairway.test/denied${tag}`, '--anonymous-scopes', 'read,build'],
      env: { FAIRWAY_GONOSUMDB: 'fairway.test', FAIRWAY_TOKENS: `agents:agent:${hash(token)}` },
    });
  });

  after(async () => {
    await server?.stop();
    await Promise.all([priv?.close(), pub?.close()]);
  });

  test('denied and private modules: 403, no proxy asked; a public module is filled through the sandbox and served', { timeout: 180_000 }, async () => {
    const denied = await fetch(`${server.url}/goproxy/${escapeModulePath(DENIED)}/@v/v1.0.0.zip`, { headers: auth });
    assert.equal(denied.status, 403);
    assert.match(await denied.text(), /not allowed on this server \(denied by "fairway\.test\/denied.*"\); the hub does not fetch it/);
    const privateMod = await fetch(`${server.url}/goproxy/${escapeModulePath(PRIVATE)}/@v/v1.0.0.mod`, { headers: auth });
    assert.equal(privateMod.status, 403);
    assert.match(await privateMod.text(), /is a private module \(GONOPROXY\/GOPRIVATE pattern "corp\.fairway\.test"\)/);
    const publicMod = await fetch(`${server.url}/goproxy/${escapeModulePath(PUBLIC)}/@v/v1.0.0.mod`, { headers: auth });
    assert.equal(publicMod.status, 200, await publicMod.clone().text());
    assert.equal(await publicMod.text(), `module ${PUBLIC}\n\ngo 1.21\n`);
    assert.deepEqual([...sawAny(priv, `denied${tag}`), ...sawAny(pub, `denied${tag}`)], [], 'no proxy was asked for the denied module');
    assert.deepEqual([...sawAny(priv, `private${tag}`), ...sawAny(pub, `private${tag}`)], [], 'no proxy was asked for the private module');
    assert.ok(sawAny(pub, `public${tag}`).length > 0, 'the public module was fetched (the hub fill ran)');
  });

  test("a build asking for a private plugin: the sandbox's relay asks no proxy for it (resolution refused)", { timeout: 180_000 }, async () => {
    const before = pub.requests.length;
    const r = await fetch(`${server.url}/api/builds`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [{ module: PRIVATE, version: 'v1.0.1' }] }),
    });
    const body = await r.text();
    assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${body}`);
    assert.deepEqual(sawAny(pub, `private${tag}`), [], `the public proxy never saw the private path (it saw ${pub.requests.slice(before).join(', ')})`);
    assert.deepEqual(sawAny(priv, `private${tag}`), [], 'nor the private one (GONOPROXY defaults to GOPRIVATE)');
  });
});
