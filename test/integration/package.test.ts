/**
 * Fairway installed like a real service (issue 18, docs/install.md): `npm pack` of a copy of this
 * checkout (so its prepack build leaves this checkout's dist/ alone), `npm install -g` of the
 * tarball into a temp prefix, then the installed `fairway` only: `fairway setup` into a temp
 * tools dir (twice: idempotent), `fairway doctor` (all pass; Go missing from PATH and an
 * unwritable data dir fail and name the fix), `fairway serve` without tools naming `fairway
 * setup`, and with them building a real plain Caddy over the HTTP API, and the systemd units it
 * writes passing `systemd-analyze verify`.
 * The Go module/build caches are the shared test cache (FAIRWAY_TEST_CACHE), so a second run is fast.
 *   node scripts/setup.mjs && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/package.test.ts
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { chmod, cp, mkdir, readdir, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { NODE_ENGINES } from '../../src/config/index.js';
import { nodeVersionOk } from '../../src/setup/index.js';
import { api, CADDY_VERSION, GO_CACHE, ROOT, tempDir, waitForBuild } from '../helpers/fairway.js';
import { startRedis, startS3 } from '../helpers/services.js';

const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}
async function exec(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<Result> {
  try {
    const r = await run(cmd, args, { env: o.env ?? process.env, cwd: o.cwd ?? ROOT, timeout: o.timeoutMs ?? 180_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message };
  }
}

interface DoctorCheck {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

describe('the npm package: pack, install -g, setup, doctor, serve, systemd units', { timeout: 15 * 60_000 }, () => {
  let dir: string;
  let prefix: string;
  let fairway: string;
  let toolsDir: string;
  let env: NodeJS.ProcessEnv;
  let tarball: string;
  const root = process.getuid?.() === 0;

  before(async () => {
    dir = await tempDir('fairway-package-');
    // The build user (when root) must reach the installed xcaddy through this dir.
    await chmod(dir, 0o755);
    prefix = join(dir, 'prefix');
    fairway = join(prefix, 'bin', 'fairway');
    // The operator's Go caches (before HOME moves): `go install` of xcaddy stays offline once warm.
    const goenv = (await run('go', ['env', 'GOMODCACHE', 'GOCACHE'])).stdout.trim().split('\n');
    env = {
      ...process.env,
      HOME: join(dir, 'home'),
      XDG_DATA_HOME: join(dir, 'xdg'),
      GOMODCACHE: goenv[0]!,
      GOCACHE: goenv[1]!,
      FAIRWAY_LOG_LEVEL: 'info',
    };
    // As root the package's default is /usr/local/lib/fairway/tools: a test uses its own dir. Otherwise the XDG default.
    toolsDir = root ? join(dir, 'tools') : join(dir, 'xdg', 'fairway', 'tools');
    if (root) env.FAIRWAY_TOOLS_DIR = toolsDir;
    else delete env.FAIRWAY_TOOLS_DIR;
    await mkdir(env.HOME!, { recursive: true });

    // `npm pack` of a copy of this checkout (its node_modules linked), so `prepack` (tsc + the UI
    // bundle) really runs without rewriting the dist/ other tests are using.
    const checkout = join(dir, 'checkout');
    await mkdir(checkout);
    for (const e of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'src', 'scripts', 'assets', 'tools', 'deploy', 'docs']) {
      await cp(join(ROOT, e), join(checkout, e), { recursive: true });
    }
    await symlink(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
    const packDir = join(dir, 'pack');
    await mkdir(packDir);
    const pack = await exec('npm', ['pack', '--pack-destination', packDir], { cwd: checkout, timeoutMs: 240_000 });
    assert.equal(pack.code, 0, `npm pack failed:\n${pack.stdout}\n${pack.stderr}`);
    const tgz = (await readdir(packDir)).filter((f) => f.endsWith('.tgz'));
    assert.equal(tgz.length, 1, `one tarball expected, got ${tgz.join(', ')}`);
    tarball = join(packDir, tgz[0]!);
    const inst = await exec('npm', ['install', '-g', tarball, '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund'], { cwd: dir, timeoutMs: 240_000 });
    assert.equal(inst.code, 0, `npm install -g failed:\n${inst.stdout}\n${inst.stderr}`);
  });

  after(async () => {
    // The prefix (an npm install of ~150 MB) and the tools; the Go caches are the shared test cache.
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the tarball has the compiled program, the UI, the catalog and the shipped assets; no sources, no tests, no install scripts', async () => {
    const list = (await exec('tar', ['-tzf', tarball])).stdout.split('\n').filter(Boolean);
    for (const f of [
      'package/package.json',
      'package/dist/main/index.js',
      'package/dist/doctor/index.js',
      'package/dist/setup/index.js',
      'package/dist/ui/static/index.html',
      'package/dist/catalog/packages.json',
      'package/assets/image/SHA256SUMS',
      'package/tools/cacheprog/main.go',
      'package/tools/cacheprog/go.mod',
      'package/scripts/sandbox.sh',
      'package/deploy/systemd/fairway-serve.service',
      'package/deploy/systemd/fairway-hub.service',
      'package/deploy/systemd/fairway-agent.service',
      'package/deploy/systemd/fairway.env.example',
    ]) {
      assert.ok(list.includes(f), `${f} missing from the package`);
    }
    const bad = list.filter(
      (f) => f.startsWith('package/src/') || f.startsWith('package/test/') || f.startsWith('package/bench/') || (f.endsWith('.ts') && !f.endsWith('.d.ts')) || f.endsWith('.map'),
    );
    assert.deepEqual(bad, [], 'sources, tests or source maps in the package');
    const pkg = JSON.parse((await exec('tar', ['-xzOf', tarball, 'package/package.json'])).stdout) as { private?: boolean; scripts?: Record<string, string>; engines?: Record<string, string> };
    assert.equal(pkg.engines?.node, NODE_ENGINES, 'the package admits only maintained Node.js lines');
    assert.notEqual(pkg.private, true);
    assert.equal(pkg.scripts?.prepack, 'npm run build', 'npm pack builds first');
    for (const hook of ['preinstall', 'install', 'postinstall']) assert.equal(pkg.scripts?.[hook], undefined, `${hook} would run at install time`);
    assert.ok(existsSync(fairway), `${fairway} not installed`);
    const version = await exec(fairway, ['--version'], { env });
    assert.equal(version.code, 0, version.stderr);
  });

  test('fairway setup installs xcaddy and fairway-cacheprog into the tools dir, line by line, and is idempotent', { timeout: 300_000 }, async () => {
    const first = await exec(fairway, ['setup'], { env, timeoutMs: 300_000 });
    assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
    assert.match(first.stdout, new RegExp(`setup: tools dir: ${toolsDir}`));
    assert.match(first.stdout, /setup: node: Node\.js v24\.\d+\.\d+ at /);
    assert.match(first.stdout, /setup: go: go1\.\d+/);
    assert.match(first.stdout, /setup: xcaddy: v0\.4\.7 (installed|present) at /);
    assert.match(first.stdout, /setup: sandbox: /);
    accessSync(join(toolsDir, 'bin', 'xcaddy'), constants.X_OK);
    accessSync(join(toolsDir, 'bin', 'fairway-cacheprog'), constants.X_OK);
    const again = await exec(fairway, ['setup'], { env });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /setup: xcaddy: v0\.4\.7 present at /);
    assert.match(again.stdout, /setup: cacheprog: fairway-cacheprog up to date/);
    assert.doesNotMatch(again.stdout, /installing|built at/);
  });

  const doctorArgs = () => ['doctor', '--data-dir', join(dir, 'data'), '--cache-dir', GO_CACHE];

  test('fairway doctor: every check passes on this machine, exit 0, --json parses', { timeout: 120_000 }, async () => {
    const text = await exec(fairway, doctorArgs(), { env });
    assert.equal(text.code, 0, `${text.stdout}\n${text.stderr}`);
    assert.match(text.stdout, /all \d+ checks passed/);
    const json = await exec(fairway, [...doctorArgs(), '--json'], { env });
    assert.equal(json.code, 0, json.stdout);
    const checks = JSON.parse(json.stdout) as DoctorCheck[];
    assert.deepEqual(
      checks.filter((c) => !c.ok),
      [],
    );
    for (const name of ['go', 'xcaddy', 'sandbox', 'module proxy', 'data dir', 'cache dir'])
      assert.ok(
        checks.some((c) => c.name === name),
        `no ${name} check`,
      );
    assert.match(checks.find((c) => c.name === 'xcaddy')!.detail, /v0\.4\.7/);
    assert.match(checks.find((c) => c.name === 'node')!.detail, /^Node\.js v24\./);
    assert.match(checks.find((c) => c.name === 'module proxy')!.detail, /caddy\/v2@latest resolves to v2\./);
  });

  test("fairway doctor run by an end-of-life Node.js (the machine's own node, when it is one) fails its node check and names the fix", { timeout: 120_000 }, async (t) => {
    const system = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => existsSync(p));
    const version = system ? (await exec(system, ['--version'])).stdout.trim() : '';
    if (!system || nodeVersionOk(version)) {
      t.skip(`no end-of-life Node.js on this machine (${system ?? 'no system node'} ${version}); the unit test covers the check`);
      return;
    }
    const r = await exec(system, [await realpath(fairway), ...doctorArgs(), '--json'], { env });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const node = (JSON.parse(r.stdout) as DoctorCheck[]).find((c) => c.name === 'node')!;
    assert.equal(node.ok, false);
    assert.match(node.detail, new RegExp(`Node\\.js ${version.replace(/\./g, '\\.')} .* is past its end of life`));
    assert.match(node.fix ?? '', /install Node\.js 24 LTS/);
  });

  test('fairway doctor fails (non-zero) and names the fix: Go missing from PATH', { timeout: 120_000 }, async () => {
    // PATH without any dir holding `go`, plus one with only node (the bin's `#!/usr/bin/env node`).
    const nodeDir = join(dir, 'node-only');
    await mkdir(nodeDir, { recursive: true });
    if (!existsSync(join(nodeDir, 'node'))) await symlink(process.execPath, join(nodeDir, 'node'));
    const noGo = (process.env.PATH ?? '').split(delimiter).filter((d) => d && !existsSync(join(d, 'go')));
    const r = await exec(fairway, [...doctorArgs(), '--json'], { env: { ...env, PATH: [nodeDir, ...noGo].join(delimiter) } });
    assert.notEqual(r.code, 0, r.stdout);
    const checks = JSON.parse(r.stdout) as DoctorCheck[];
    const go = checks.find((c) => c.name === 'go')!;
    assert.equal(go.ok, false);
    assert.match(go.fix ?? '', /install Go 1\.22 or newer/);
    assert.equal(checks.find((c) => c.name === 'data dir')!.ok, true, 'only the Go checks fail');
  });

  test('fairway doctor fails (non-zero) and names the fix: a data dir that cannot be created (its parent is a file)', { timeout: 120_000 }, async () => {
    const file = join(dir, 'not-a-dir');
    await writeFile(file, 'x');
    const dataDir = join(file, 'data');
    const r = await exec(fairway, ['doctor', '--data-dir', dataDir, '--cache-dir', GO_CACHE], { env });
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stdout, new RegExp(`FAIL data dir +${dataDir} is not writable: ENOTDIR`));
    assert.match(r.stdout, new RegExp(`fix: make ${dataDir} a directory this user`));
    assert.match(r.stdout, /1 of \d+ checks failed/);
  });

  test('fairway doctor --redis --store s3://… --signing-key: a real Redis and S3 server pass; stopped, each fails naming its fix', { timeout: 120_000 }, async () => {
    const [redis, s3] = await Promise.all([startRedis(), startS3()]);
    try {
      const store = `s3://${s3.bucket}/doctor?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
      const s3env = { ...env, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
      const keyDir = join(dir, 'keys');
      await mkdir(keyDir, { recursive: true });
      const key = await exec(fairway, ['key', 'create', '--out', join(keyDir, 'fairway')], { env });
      assert.equal(key.code, 0, key.stderr);
      const args = [...doctorArgs(), '--redis', redis.url, '--store', store, '--signing-key', join(keyDir, 'fairway.key'), '--json'];
      const good = await exec(fairway, args, { env: s3env });
      assert.equal(good.code, 0, good.stdout);
      const checks = JSON.parse(good.stdout) as DoctorCheck[];
      const by = (name: string) => checks.find((c) => c.name === name)!;
      assert.match(by('redis').detail, /reachable and writable \(Redis \d/);
      assert.match(by('store').detail, /record and blob put\/get\/delete; request checksums WHEN_SUPPORTED/);
      assert.match(by('signing key').detail, /ECDSA P-256/);
      await Promise.all([redis.stop(), s3.stop()]);
      const bad = await exec(fairway, args, { env: s3env, timeoutMs: 120_000 });
      assert.notEqual(bad.code, 0, bad.stdout);
      const failed = JSON.parse(bad.stdout) as DoctorCheck[];
      const f = (name: string) => failed.find((c) => c.name === name)!;
      assert.equal(f('redis').ok, false);
      assert.match(f('redis').fix ?? '', /start Redis at redis:\/\/127\.0\.0\.1:\d+/);
      assert.equal(f('store').ok, false);
      assert.match(f('store').fix ?? '', /--store/);
      assert.equal(f('signing key').ok, true);
    } finally {
      await Promise.all([redis.destroy(), s3.destroy()]);
    }
  });

  test('fairway serve without the tools exits naming the exact fairway setup command', { timeout: 120_000 }, async () => {
    const empty = join(dir, 'no-tools');
    const r = await exec(fairway, ['serve', '--port', '0', '--data-dir', join(dir, 'data-empty'), '--cache-dir', GO_CACHE], { env: { ...env, FAIRWAY_TOOLS_DIR: empty } });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`xcaddy not found or not runnable at ${empty}/bin/xcaddy .*; run "fairway setup --tools-dir ${empty}" to install it`));
    assert.doesNotMatch(r.stderr, /npm run setup/, 'a package install does not name the checkout command');
  });

  test('fairway serve from the package builds a real plain Caddy over the HTTP API', { timeout: 600_000 }, async () => {
    const proc: ChildProcess = spawn(fairway, ['serve', '--port', '0', '--data-dir', join(dir, 'data'), '--cache-dir', GO_CACHE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    try {
      const port = await new Promise<number>((resolvePort, reject) => {
        const timer = setTimeout(() => reject(new Error(`fairway serve did not start:\n${out}`)), 60_000);
        const onData = (c: Buffer) => {
          out += c.toString();
          const m = /"port":(\d+)[^\n]*fairway listening/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolvePort(Number(m[1]));
          }
        };
        proc.stdout!.on('data', onData);
        proc.stderr!.on('data', onData);
        proc.on('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`fairway serve exited with ${code}:\n${out}`));
        });
      });
      const url = `http://127.0.0.1:${port}`;
      const res = await api(url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [] } });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      assert.equal(res.body.spec.toolchain.xcaddy, 'v0.4.7', 'the xcaddy fairway setup installed');
      const done = await waitForBuild(url, res.body.id, 540_000);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      const dl = await fetch(`${url}/api/builds/${res.body.id}/artifact`);
      assert.equal(dl.status, 200);
      const bin = Buffer.from(await dl.arrayBuffer());
      assert.ok(bin.length > 10_000_000, `a Caddy binary is larger than ${bin.length} bytes`);
      assert.deepEqual([...bin.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'an ELF binary');
      assert.equal(createHash('sha256').update(bin).digest('hex'), done.sha256);
      const ui = await fetch(`${url}/`);
      assert.equal(ui.status, 200, 'the UI bundle ships in the package');
    } finally {
      proc.kill('SIGTERM');
    }
    assert.equal(await exited, 0, `serve did not stop cleanly on SIGTERM:\n${out.slice(-2000)}`);
  });

  test('fairway setup --systemd writes units with this fairway that systemd-analyze verify accepts (and a broken one it refuses)', { timeout: 120_000 }, async () => {
    const units = join(dir, 'units');
    const r = await exec(fairway, ['setup', '--systemd', units, '--no-os'], { env });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /setup: systemd: fairway-serve\.service, fairway-hub\.service, fairway-agent\.service in /);
    const names = ['fairway-serve.service', 'fairway-hub.service', 'fairway-agent.service'];
    for (const [i, n] of names.entries()) {
      const text = await readFile(join(units, n), 'utf8');
      // The Node.js that ran setup (a maintained one: its `node` step checked) and the real path of the program.
      assert.match(text, new RegExp(`^ExecStart=${process.execPath} ${await realpath(fairway)} ${['serve', 'hub', 'agent'][i]}$`, 'm'));
      assert.match(text, /^KillMode=mixed$/m);
      assert.match(text, /^Restart=on-failure$/m);
      assert.match(text, /^StateDirectory=fairway$/m);
    }
    assert.ok(existsSync(join(units, 'fairway.env.example')));
    const ok = await exec('systemd-analyze', ['verify', ...names.map((n) => join(units, n))], { cwd: units });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr.trim(), '', `systemd-analyze verify warned:\n${ok.stderr}`);
    // The verifier does catch mistakes: a bad setting is a warning on stderr, a missing ExecStart binary an error.
    const serve = await readFile(join(units, names[0]!), 'utf8');
    await writeFile(join(units, 'broken-setting.service'), serve.replace('KillMode=mixed', 'KillMode=sometimes'));
    const warned = await exec('systemd-analyze', ['verify', join(units, 'broken-setting.service')], { cwd: units });
    assert.match(warned.stderr, /kill mode/i);
    await writeFile(join(units, 'broken-exec.service'), serve.replace(`ExecStart=${process.execPath}`, `ExecStart=${join(dir, 'no-such-node')}`));
    const refused = await exec('systemd-analyze', ['verify', join(units, 'broken-exec.service')], { cwd: units });
    assert.notEqual(refused.code, 0);
  });
});
