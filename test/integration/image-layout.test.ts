/**
 * OCI images of a real Caddy binary, read by real tools: skopeo (containers/image), umoci
 * (unpack to a runtime bundle) and crane (go-containerregistry: its registry, push, validate).
 * The unpacked rootfs runs: `caddy version`, `caddy validate` of the image's own Caddyfile, and
 * a file server answering with the welcome page, all inside bwrap with the rootfs as `/`.
 *
 * Tools: `bash scripts/image-tools.sh` (npm test runs it through scripts/deps.sh). A missing tool
 * fails the test; nothing is skipped. The Caddy binary is a plain `xcaddy build` of
 * CADDY_VERSION for this machine, kept in the test Go cache (FAIRWAY_TEST_CACHE) between runs.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { buildImage, imageIndex, writeOciLayout, type BuiltImage, type BuiltIndex } from '../../src/image/index.js';
import { ASSETS, DEFAULT_ASSETS_DIR } from '../../src/image/assets.js';
import { CADDY_VERSION, GO_CACHE, ROOT, XCADDY } from '../helpers/fairway.js';
import { CREATED, KEY, fakeBinary, inRootfs, sha256, specFor } from '../helpers/image.js';
import { getFreePort } from '../helpers/services.js';

const run = promisify(execFile);
const CRANE = join(ROOT, '.tools', 'bin', 'crane');
const TAG = CADDY_VERSION.replace(/^v/, '');
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;

async function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 64 * 1024 * 1024, ...opts });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

async function need(tool: string): Promise<void> {
  const ok = tool.includes('/')
    ? existsSync(tool)
    : await run('sh', ['-c', `command -v ${tool}`]).then(
        () => true,
        () => false,
      );
  assert.ok(ok, `${tool} is missing: run \`bash scripts/image-tools.sh\` (skopeo, umoci, crane) / \`bash scripts/sandbox.sh\` (bwrap)`);
}

/** A plain Caddy for this machine, built once with the repository's xcaddy and kept in the test cache. */
async function realCaddy(): Promise<string> {
  const dir = join(GO_CACHE, 'fairway-image-test');
  const bin = join(dir, `caddy-${CADDY_VERSION}-linux-${ARCH}`);
  if (existsSync(bin)) {
    const v = await sh(bin, ['version']).catch(() => '');
    if (v.startsWith(CADDY_VERSION)) return bin;
  }
  await need(XCADDY);
  await mkdir(dir, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), 'fairway-image-xcaddy-'));
  const tmp = `${bin}.tmp-${process.pid}`;
  try {
    await sh(XCADDY, ['build', CADDY_VERSION, '--output', tmp], {
      cwd: work,
      env: {
        PATH: process.env.PATH,
        HOME: work,
        TMPDIR: work,
        LANG: 'C',
        GOPATH: join(GO_CACHE, 'gopath'),
        GOMODCACHE: join(GO_CACHE, 'mod'),
        GOCACHE: join(GO_CACHE, 'build'),
        GOENV: 'off',
        GOTOOLCHAIN: 'local',
        GOTELEMETRY: 'off',
        GOFLAGS: '-mod=mod -buildvcs=false',
        GO111MODULE: 'on',
        CGO_ENABLED: '0',
        GOOS: 'linux',
        GOARCH: ARCH,
        XCADDY_PRINT_VERSION: '0',
        ...(process.env.GOPROXY ? { GOPROXY: process.env.GOPROXY } : {}),
      },
    });
    await rename(tmp, bin);
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(tmp, { force: true });
  }
  return bin;
}

describe('OCI image layout of a real Caddy, read by skopeo, umoci and crane', { timeout: 20 * 60_000 }, () => {
  let dir: string;
  let caddy: string;
  let layout: string;
  let im: BuiltImage;
  let idx: BuiltIndex;
  const children: ChildProcess[] = [];

  before(async () => {
    for (const t of ['skopeo', 'umoci', 'bwrap', CRANE]) await need(t);
    dir = await mkdtemp(join(tmpdir(), 'fairway-image-int-'));
    caddy = await realCaddy();
    layout = join(dir, 'layout');
    im = await buildImage({
      binaryPath: caddy,
      platform: { os: 'linux', arch: ARCH },
      caddyVersion: CADDY_VERSION,
      key: KEY,
      spec: specFor(ARCH),
      created: CREATED,
      blobDir: join(layout, 'blobs'),
    });
    // A second platform for the index: a stand-in arm64 "binary" (never run).
    const other = ARCH === 'arm64' ? 'amd64' : 'arm64';
    const fake = join(dir, `caddy-${other}`);
    await fakeBinary(fake, 'other', 64 * 1024, other);
    const im2 = await buildImage({
      binaryPath: fake,
      platform: { os: 'linux', arch: other },
      caddyVersion: CADDY_VERSION,
      key: KEY,
      spec: specFor(other),
      created: CREATED,
      blobDir: join(dir, 'other-blobs'),
    });
    idx = imageIndex([im, im2]);
    await writeOciLayout(layout, [
      { tag: TAG, image: im },
      { tag: 'multi', index: idx },
    ]);
  });

  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the same real binary gives the same image again (second layout, byte-identical manifest)', async () => {
    const again = await buildImage({
      binaryPath: caddy,
      platform: { os: 'linux', arch: ARCH },
      caddyVersion: CADDY_VERSION,
      key: KEY,
      spec: specFor(ARCH),
      created: CREATED,
      blobDir: join(dir, 'again'),
    });
    assert.equal(again.manifestDigest, im.manifestDigest);
    assert.deepEqual(
      again.layers.map((l) => l.digest),
      im.layers.map((l) => l.digest),
    );
    assert.equal(im.binarySha256, sha256(await readFile(caddy)));
  });

  test('skopeo inspect shows the manifest and config that were written', async () => {
    const raw = await sh('skopeo', ['inspect', '--raw', `oci:${layout}:${TAG}`]);
    assert.equal(raw, im.manifestBytes.toString('utf8'), 'skopeo reads the exact manifest bytes');
    const cfg = JSON.parse(await sh('skopeo', ['inspect', '--config', `oci:${layout}:${TAG}`])) as unknown;
    assert.deepEqual(cfg, im.config);
    const info = JSON.parse(await sh('skopeo', ['inspect', `oci:${layout}:${TAG}`])) as Record<string, unknown>;
    assert.equal(info.Digest, im.manifestDigest);
    assert.equal(info.Architecture, ARCH);
    assert.equal(info.Os, 'linux');
    assert.equal(info.Created, CREATED);
    assert.deepEqual(
      info.Layers,
      im.layers.map((l) => l.digest),
    );
    assert.deepEqual(info.Env, im.config.config.Env);
    const labels = info.Labels as Record<string, string>;
    assert.equal(labels['org.opencontainers.image.version'], CADDY_VERSION);
    assert.equal(labels['dev.fairway.key'], KEY);
    // The index: skopeo picks the requested platform's manifest.
    const other = ARCH === 'arm64' ? 'amd64' : 'arm64';
    // (Digest is the index's; Layers are those of the platform's image.)
    const viaIndex = JSON.parse(await sh('skopeo', ['--override-arch', ARCH, 'inspect', `oci:${layout}:multi`])) as Record<string, unknown>;
    assert.equal(viaIndex.Digest, idx.digest);
    assert.deepEqual(
      viaIndex.Layers,
      im.layers.map((l) => l.digest),
    );
    const otherCfg = JSON.parse(await sh('skopeo', ['--override-arch', other, 'inspect', '--config', `oci:${layout}:multi`])) as { architecture: string };
    assert.equal(otherCfg.architecture, other);
    assert.equal(await sh('skopeo', ['inspect', '--raw', `oci:${layout}:multi`]), idx.bytes.toString('utf8'));
  });

  test('umoci unpacks it (rootless): the files are there with the right modes and contents', async () => {
    const bundle = join(dir, 'bundle');
    await sh('umoci', ['unpack', '--rootless', '--image', `${layout}:${TAG}`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    const bin = await stat(join(rootfs, 'usr/bin/caddy'));
    assert.ok(bin.isFile());
    assert.equal(bin.mode & 0o7777, 0o755);
    assert.equal(sha256(await readFile(join(rootfs, 'usr/bin/caddy'))), im.binarySha256);
    for (const a of ASSETS) {
      const p = join(rootfs, a.path);
      assert.equal((await stat(p)).mode & 0o7777, 0o644, a.path);
      assert.equal(sha256(await readFile(p)), a.sha256, a.path);
      assert.ok((await readFile(p)).equals(await readFile(join(DEFAULT_ASSETS_DIR, a.file))));
    }
    for (const [p, m] of [
      ['config', 0o755],
      ['data', 0o755],
      ['srv', 0o755],
      ['config/caddy', 0o1777],
      ['data/caddy', 0o1777],
      ['tmp', 0o1777],
    ] as const) {
      const s = await stat(join(rootfs, p));
      assert.ok(s.isDirectory(), p);
      assert.equal(s.mode & 0o7777, m, p);
    }
    assert.deepEqual(await readdir(join(rootfs, 'srv')), []);
    assert.deepEqual(await readdir(join(rootfs, 'config/caddy')), []);
    assert.deepEqual((await readdir(rootfs)).sort(), ['config', 'data', 'etc', 'srv', 'tmp', 'usr']);
    const cfg = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { args: string[]; cwd: string; env: string[] } };
    assert.deepEqual(cfg.process.args, ['caddy', 'run', '--config', '/etc/caddy/Caddyfile', '--adapter', 'caddyfile']);
    assert.equal(cfg.process.cwd, '/srv');
    for (const e of im.config.config.Env) assert.ok(cfg.process.env.includes(e), e);
  });

  test('from the unpacked rootfs (as /): caddy version, caddy validate of the image Caddyfile, the welcome page served', async () => {
    // (umoci 0.4.7 does not choose a platform from an index: the tag of the image itself.)
    const bundle = join(dir, 'bundle-run');
    await sh('umoci', ['unpack', '--rootless', '--image', `${layout}:${TAG}`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    const env = im.config.config.Env;
    const version = await sh('bwrap', inRootfs(rootfs, env, ['/usr/bin/caddy', 'version']));
    assert.ok(version.startsWith(CADDY_VERSION), version);
    const { stdout, stderr } = await run('bwrap', inRootfs(rootfs, env, ['/usr/bin/caddy', 'validate', '--config', '/etc/caddy/Caddyfile', '--adapter', 'caddyfile']));
    assert.match(stdout + stderr, /Valid configuration/);

    // The Caddyfile's site serves /usr/share/caddy; same root, a free loopback port instead of :80.
    const port = await getFreePort();
    const server = spawn('bwrap', inRootfs(rootfs, env, ['/usr/bin/caddy', 'file-server', '--root', '/usr/share/caddy', '--listen', `127.0.0.1:${port}`], { net: true }), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(server);
    let log = '';
    server.stdout?.on('data', (c: Buffer) => (log += c.toString()));
    server.stderr?.on('data', (c: Buffer) => (log += c.toString()));
    let res: Response | null = null;
    for (let i = 0; i < 100 && !res; i++) {
      res = await fetch(`http://127.0.0.1:${port}/`).catch(() => null);
      if (!res) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(res, `caddy file-server did not answer:\n${log}`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), ASSETS.find((a) => a.file === 'index.html')!.sha256);
    server.kill('SIGTERM');
  });

  test("crane: push the layout to crane's registry, validate it there, the exact bytes come back", async () => {
    const reg = spawn(CRANE, ['registry', 'serve', '--address', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(reg);
    let log = '';
    const port = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`crane registry did not start:\n${log}`)), 20_000);
      const on = (c: Buffer) => {
        log += c.toString();
        const m = /serving on port (\d+)/.exec(log);
        if (m) {
          clearTimeout(t);
          resolve(m[1] as string);
        }
      };
      reg.stdout?.on('data', on);
      reg.stderr?.on('data', on);
    });
    const repo = `127.0.0.1:${port}/caddy`;
    // crane push takes a layout with one entry: one layout per ref.
    const single = join(dir, 'single');
    const multi = join(dir, 'multi');
    await writeOciLayout(single, [{ tag: TAG, image: im }]);
    await writeOciLayout(multi, [{ tag: 'multi', index: idx }]);
    await sh(CRANE, ['push', single, `${repo}:${TAG}`]);
    await sh(CRANE, ['push', multi, `${repo}:multi`]);
    assert.match(await sh(CRANE, ['validate', '--remote', `${repo}:${TAG}`]), /PASS/);
    assert.match(await sh(CRANE, ['validate', '--remote', `${repo}:multi`]), /PASS/);
    assert.equal((await sh(CRANE, ['digest', `${repo}:${TAG}`])).trim(), im.manifestDigest);
    assert.equal((await sh(CRANE, ['digest', `${repo}:multi`])).trim(), idx.digest);
    assert.equal(await sh(CRANE, ['manifest', `${repo}:${TAG}`]), im.manifestBytes.toString('utf8'));
    assert.equal(await sh(CRANE, ['config', `${repo}:${TAG}`]), im.configBytes.toString('utf8'));
    const listed = JSON.parse(await sh(CRANE, ['manifest', `${repo}:multi`])) as { manifests: Array<{ digest: string }> };
    assert.deepEqual(
      listed.manifests.map((m) => m.digest),
      idx.index.manifests.map((m) => m.digest),
    );
    reg.kill('SIGTERM');
  });

  test('skopeo copy to a docker archive and to an OCI archive: crane validate --tarball passes, digests survive', async () => {
    const archive = join(dir, 'caddy-docker.tar');
    await sh('skopeo', ['copy', `oci:${layout}:${TAG}`, `docker-archive:${archive}:fairway/caddy:${TAG}`]);
    assert.match(await sh(CRANE, ['validate', '--tarball', archive]), /PASS/);
    const ociArchive = join(dir, 'caddy-oci.tar');
    await sh('skopeo', ['copy', `oci:${layout}:${TAG}`, `oci-archive:${ociArchive}:${TAG}`]);
    const back = JSON.parse(await sh('skopeo', ['inspect', `oci-archive:${ociArchive}:${TAG}`])) as { Digest: string };
    assert.equal(back.Digest, im.manifestDigest, 'copying between OCI transports keeps the manifest bytes');
    const digestOfLayout = createHash('sha256')
      .update(await readFile(join(layout, 'blobs', 'sha256', im.manifestDigest.slice(7))))
      .digest('hex');
    assert.equal(`sha256:${digestOfLayout}`, im.manifestDigest);
  });
});
