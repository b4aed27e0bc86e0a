/**
 * The OCI registry against a real `fairway serve` (real Go, xcaddy, the sandbox) and real registry
 * clients (scripts/image-tools.sh): skopeo inspects the multi-arch index of a recipe and copies the
 * image out, umoci unpacks it, the unpacked Caddy lists the recipe's plugin and validates the
 * image's Caddyfile (bwrap, the rootfs as `/`), crane agrees on manifests and digests; digests stay
 * the same across a restart; a token-only server challenges and lets `--creds x:<token>` pull.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/registry.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { sha256Hash } from '../../src/auth/index.js';
import { CADDY_VERSION, PLUGIN, ROOT, api, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { inRootfs } from '../helpers/image.js';

const run = promisify(execFile);
const CRANE = join(ROOT, '.tools', 'bin', 'crane');
const TAG = CADDY_VERSION.replace(/^v/, '');
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;
const PLATFORMS = ['linux/amd64', 'linux/arm64'];
const RECIPES = JSON.stringify({ l4: { plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
const TOKEN = 'fw_registry_test_token_0123456789abcdef';

async function sh(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { maxBuffer: 64 * 1024 * 1024, timeout: 20 * 60_000, ...opts });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

describe('the OCI registry of a real fairway serve, pulled by skopeo, umoci and crane', { timeout: 40 * 60_000 }, () => {
  let dir: string;
  let dataDir: string;
  let fw: FairwayProcess;
  let host: string;
  let indexDigest: string;
  let indexRaw: string;
  const start = (extra: string[] = [], env: NodeJS.ProcessEnv = {}) =>
    startFairway({ dataDir, args: ['--workers', '2', '--recipes', RECIPES, '--image-platforms', PLATFORMS.join(','), ...extra], env });

  before(async () => {
    for (const t of ['skopeo', 'umoci', 'bwrap']) await sh('sh', ['-c', `command -v ${t}`]).catch(() => assert.fail(`${t} is missing: run bash scripts/image-tools.sh`));
    assert.ok(existsSync(CRANE), 'crane is missing: run bash scripts/image-tools.sh');
    dir = await tempDir('fairway-registry-');
    dataDir = join(dir, 'data');
    fw = await start();
    host = `127.0.0.1:${fw.port}`;
  });
  after(async () => {
    await fw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('skopeo inspect: the recipe tag is a multi-arch index, built on demand as ordinary builds', async () => {
    indexRaw = await sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${host}/caddy/l4:${TAG}`]);
    const index = JSON.parse(indexRaw) as { mediaType: string; manifests: Array<{ digest: string; platform: { os: string; architecture: string } }> };
    assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(
      index.manifests.map((m) => `${m.platform.os}/${m.platform.architecture}`),
      PLATFORMS,
    );
    const info = JSON.parse(await sh('skopeo', ['inspect', '--tls-verify=false', `docker://${host}/caddy/l4:v${TAG}`])) as { Architecture: string; Os: string; Labels: Record<string, string> };
    assert.equal(info.Os, 'linux');
    assert.equal(info.Architecture, ARCH);
    assert.equal(info.Labels['org.opencontainers.image.version'], CADDY_VERSION);
    // The builds are ordinary builds: in the API, with the recipe's plugin.
    const builds = (await api<{ builds: Array<{ spec: { arch: string; plugins: Array<{ module: string }> }; status: string }> }>(fw.url, '/api/builds')).body.builds;
    for (const arch of ['amd64', 'arm64']) {
      assert.ok(
        builds.some((b) => b.status === 'succeeded' && b.spec.arch === arch && b.spec.plugins.some((p) => p.module === PLUGIN.module)),
        `a ${arch} build with the plugin is listed`,
      );
    }
  });

  test('crane agrees: manifest bytes and digest; caddy/build:<id> is the platform image', async () => {
    indexDigest = (await sh(CRANE, ['digest', '--insecure', `${host}/caddy/l4:${TAG}`])).trim();
    const sum = (await import('node:crypto')).createHash('sha256').update(indexRaw).digest('hex');
    assert.equal(indexDigest, `sha256:${sum}`);
    assert.equal(await sh(CRANE, ['manifest', '--insecure', `${host}/caddy/l4:${TAG}`]), indexRaw);
    assert.equal((await sh(CRANE, ['digest', '--insecure', `${host}/caddy/l4@${indexDigest}`])).trim(), indexDigest);
    const index = JSON.parse(indexRaw) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
    const amd = index.manifests[0]!;
    const manifest = JSON.parse(await sh(CRANE, ['manifest', '--insecure', `${host}/caddy/l4@${amd.digest}`])) as { annotations: Record<string, string> };
    const key = manifest.annotations['dev.fairway.key']!;
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal((await sh(CRANE, ['digest', '--insecure', `${host}/caddy/build:${key}`])).trim(), amd.digest);
    await sh(CRANE, ['validate', '--insecure', '--remote', `${host}/caddy/l4:${TAG}`]);
  });

  test('skopeo copy to an OCI layout, umoci unpack: the Caddy in it has the plugin and validates the Caddyfile', async () => {
    const layout = join(dir, 'layout');
    await sh('skopeo', ['copy', '--src-tls-verify=false', `docker://${host}/caddy/l4:${TAG}`, `oci:${layout}:${TAG}`]);
    const bundle = join(dir, 'bundle');
    await sh('umoci', ['unpack', '--rootless', '--image', `${layout}:${TAG}`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    const cfg = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { env: string[] } };
    const modules = await sh('bwrap', inRootfs(rootfs, cfg.process.env, ['/usr/bin/caddy', 'list-modules']));
    assert.match(modules, new RegExp(`^${PLUGIN.caddyModule}$`, 'm'), 'the recipe plugin is in the binary');
    const { stdout, stderr } = await run('bwrap', inRootfs(rootfs, cfg.process.env, ['/usr/bin/caddy', 'validate', '--config', '/etc/caddy/Caddyfile', '--adapter', 'caddyfile']));
    assert.match(stdout + stderr, /Valid configuration/);
  });

  test('after a restart, on a token-only server: the same digests; no token gets the Basic challenge, --creds x:<token> pulls', async () => {
    await fw.stop();
    fw = await start(['--anonymous-scopes', 'none'], { FAIRWAY_TOKENS: `puller:read:${sha256Hash(TOKEN)}` });
    host = `127.0.0.1:${fw.port}`;
    const ping = await fetch(`http://${host}/v2/`);
    assert.equal(ping.status, 401);
    assert.equal(ping.headers.get('www-authenticate'), 'Basic realm="fairway"');
    assert.equal(ping.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.equal(((await ping.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAUTHORIZED');
    await assert.rejects(sh('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${host}/caddy/l4:${TAG}`]), /unauthorized|authentication required|401/i);
    const raw = await sh('skopeo', ['inspect', '--raw', '--tls-verify=false', '--creds', `x:${TOKEN}`, `docker://${host}/caddy/l4:${TAG}`]);
    assert.equal(raw, indexRaw, 'the same index bytes after a restart');
    const layout = join(dir, 'layout2');
    await sh('skopeo', ['copy', '--src-tls-verify=false', '--src-creds', `x:${TOKEN}`, `docker://${host}/caddy/l4:${TAG}`, `oci:${layout}:${TAG}`]);
    const res = await fetch(`http://${host}/v2/caddy/l4/manifests/${TAG}`, { method: 'HEAD', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-content-digest'), indexDigest);
  });
});
