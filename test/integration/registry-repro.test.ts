/**
 * Reproducible images: the digests of a recipe's tag are identical across a restart and across two
 * `fairway serve` processes that share nothing but the spec.
 *
 * Real parts: two `fairway serve` processes (real Go, xcaddy, the sandbox), crane as the client.
 * Server A has its own data dir and store and the shared test cache (warm); server B its own data
 * dir, store and an empty Go cache outside the checkout (module and build caches: its build
 * downloads every module from the proxy and compiles everything, as in repro.test.ts). The same
 * recipe (Caddy with caddy-ratelimit and caddy-l4, one platform: a cold build takes minutes on two
 * cores) is configured on both, its plugins listed in another order on each (one key, one binary). The index digest, the manifest digest, the config digest and every layer
 * digest must be the same from A, from A after a restart, and from B; and so must the SBOM (docs/sbom.md).
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/registry-repro.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CADDY_VERSION, ROOT, api, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';

const run = promisify(execFile);
const CRANE = join(ROOT, '.tools', 'bin', 'crane');
const TAG = CADDY_VERSION.replace(/^v/, '');
// One small plugin pair, configured in one order on A and in the other on B: one key, one image.
const L4 = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };
const RATELIMIT = { module: 'github.com/mholt/caddy-ratelimit', version: 'v0.1.0' };
const RECIPES_A = JSON.stringify({ plain: { plugins: [RATELIMIT, L4] } });
const RECIPES_B = JSON.stringify({ plain: { plugins: [L4, RATELIMIT] } });

async function crane(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(CRANE, args, { maxBuffer: 64 * 1024 * 1024, timeout: 25 * 60_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`crane ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
  }
}

interface Digests {
  index: string;
  manifests: Array<{ platform: string; digest: string; config: string; layers: string[] }>;
}

/** Every digest of `caddy/plain:<TAG>` as crane sees it. */
async function digests(fw: FairwayProcess): Promise<Digests> {
  const ref = `127.0.0.1:${fw.port}/caddy/plain`;
  const index = (await crane(['digest', '--insecure', `${ref}:${TAG}`])).trim();
  const raw = JSON.parse(await crane(['manifest', '--insecure', `${ref}@${index}`])) as { manifests: Array<{ digest: string; platform: { os: string; architecture: string } }> };
  const manifests: Digests['manifests'] = [];
  for (const m of raw.manifests) {
    const man = JSON.parse(await crane(['manifest', '--insecure', `${ref}@${m.digest}`])) as { config: { digest: string }; layers: Array<{ digest: string }> };
    manifests.push({ platform: `${m.platform.os}/${m.platform.architecture}`, digest: m.digest, config: man.config.digest, layers: man.layers.map((l) => l.digest) });
  }
  return { index, manifests };
}

/** The SPDX SBOM of the server's one succeeded build, as it stored it (signed with the server's own key). */
async function sbomOf(fw: FairwayProcess): Promise<{ id: string; bytes: Buffer }> {
  const builds = (await api<{ builds: Array<{ id: string; status: string }> }>(fw.url, '/api/builds')).body.builds.filter((x) => x.status === 'succeeded');
  assert.equal(builds.length, 1);
  const r = await fetch(`${fw.url}/api/builds/${builds[0]!.id}/sbom`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-fairway-sbom'), 'signed');
  return { id: builds[0]!.id, bytes: Buffer.from(await r.arrayBuffer()) };
}

describe('reproducible images: the same digests across a restart and across two servers sharing nothing but the spec', { timeout: 40 * 60_000 }, () => {
  let dir: string;
  let freshCache: string;
  const procs: FairwayProcess[] = [];
  const start = async (dataDir: string, extra: string[] = [], recipes = RECIPES_A) => {
    const p = await startFairway({ dataDir, args: ['--workers', '1', '--recipes', recipes, '--image-platforms', 'linux/amd64', '--build-timeout', '25m', ...extra] });
    procs.push(p);
    return p;
  };

  before(async () => {
    assert.ok(existsSync(CRANE), 'crane is missing: run bash scripts/image-tools.sh');
    dir = await tempDir('fairway-registry-repro-');
    freshCache = join(dir, 'go-fresh');
  });
  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    if (dir) {
      // Go makes its module cache read-only; make it writable to delete it.
      await run('chmod', ['-R', 'u+w', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('index, manifest, config and layer digests: A, A after a restart, B (own store, own empty Go cache)', { timeout: 35 * 60_000 }, async () => {
    const t0 = Date.now();
    const dataA = join(dir, 'a');
    let a = await start(dataA);
    const first = await digests(a);
    assert.equal(first.manifests.length, 1);
    assert.equal(first.manifests[0]!.platform, 'linux/amd64');
    assert.ok(first.manifests[0]!.layers.length >= 1);
    const tA = Date.now();

    await a.stop();
    a = await start(dataA);
    assert.deepEqual(await digests(a), first, 'the same digests after a restart');
    const sbomA = await sbomOf(a);
    await a.stop();

    const b = await start(join(dir, 'b'), ['--cache-dir', freshCache], RECIPES_B);
    const second = await digests(b);
    const tB = Date.now();
    // B really built: a build of its own, with its own caches filled.
    const builds = (await api<{ builds: Array<{ status: string }> }>(b.url, '/api/builds')).body.builds;
    assert.ok(
      builds.some((x) => x.status === 'succeeded'),
      'B built the recipe itself',
    );
    assert.ok(existsSync(join(freshCache, 'mod', 'cache', 'download', 'github.com', 'caddyserver', 'caddy', 'v2', '@v', `${CADDY_VERSION}.zip`)), 'caddy module downloaded into the fresh cache');
    assert.ok((await readdir(join(freshCache, 'build'))).length > 10, 'the fresh build cache was filled');
    process.stderr.write(`# server A (warm cache) ${((tA - t0) / 1000).toFixed(1)} s, server B (empty cache) ${((tB - tA) / 1000).toFixed(1)} s\n`);

    assert.deepEqual(second, first, 'the same digests from a server sharing nothing but the spec');
    // The SBOM too (docs/sbom.md): each server signed its own, with its own key; the documents are the same bytes.
    const sbomB = await sbomOf(b);
    assert.equal(sbomB.id, sbomA.id);
    assert.ok(sbomB.bytes.equals(sbomA.bytes), 'the same SBOM bytes from a server sharing nothing but the spec');
  });
});
