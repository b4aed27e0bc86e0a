/**
 * Registry: pulling a recipe's image from Fairway's /v2 API.
 *
 *   (a) a cached recipe: one pull = the requests a registry client makes (GET the tag's index, the
 *       platform manifest, the config and every layer), by curl over one keep-alive connection,
 *       against nginx serving the same bytes at the same paths from plain files, interleaved (ABBA),
 *       medians. curl and not crane/skopeo: a native client that only moves bytes, so the figure is
 *       the server's; crane/skopeo add their own digest checks and file writes to both sides alike,
 *       which only dilutes the ratio. Ratio = nginx time / Fairway time (higher is better). Target ≥ 0.9.
 *   (b) the first pull of an unbuilt recipe (a fresh data dir and store; the Go caches warm): the
 *       pull's total minus the builds' own time (earliest startedAt → latest finishedAt of the build
 *       records). Target: the difference ≤ 2 s.
 *
 * One platform (`--image-platforms linux/amd64`), plain Caddy (a recipe without plugins).
 *   node --import tsx bench/registry.ts [--reps 6] [--no-record]
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  benchDir,
  CADDY_VERSION,
  findNginx,
  finish,
  flags,
  fmtMs,
  fmtRate,
  fmtRatio,
  getFreePort,
  GO_CACHE,
  int,
  interleave,
  log,
  median,
  now,
  report,
  requireSetup,
  startBench,
  startNginx,
  type Row,
} from './lib.js';

const execFileP = promisify(execFile);
const f = flags('bench/registry.ts: pulling a recipe image from Fairway vs nginx serving the same blobs; first-pull overhead over the builds', {
  reps: { type: 'string', default: '20', help: 'pairs of pulls (a)' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'Go caches of the builds' },
});

const ADMIN = 'fw_bench_registry_admin_0123456789abcdef';
const TAG = CADDY_VERSION.replace(/^v/, '');
const ACCEPT = 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json';

interface Pull {
  ms: number;
  bytes: number;
}

/** One curl process, the URLs in order over one connection; every answer must be 200. */
async function pull(urls: string[]): Promise<Pull> {
  const args = ['-s', '-H', `Accept: ${ACCEPT}`, '-w', '%{http_code} %{size_download}\\n'];
  for (const u of urls) args.push('-o', '/dev/null', u);
  const t0 = now();
  const { stdout } = await execFileP('curl', args, { maxBuffer: 1 << 20 });
  const ms = now() - t0;
  let bytes = 0;
  for (const [i, line] of stdout.trim().split('\n').entries()) {
    const [code, size] = line.split(' ').map(Number) as [number, number];
    if (code !== 200) throw new Error(`${urls[i]} answered ${code}`);
    bytes += size;
  }
  return { ms, bytes };
}

async function getBytes(url: string, auth?: string): Promise<Buffer> {
  const r = await fetch(url, { headers: { accept: ACCEPT, ...(auth ? { authorization: auth } : {}) } });
  if (r.status !== 200) throw new Error(`${url} answered ${r.status}`);
  return Buffer.from(await r.arrayBuffer());
}

/** The pull's paths (under /v2/caddy/<recipe>/), reading the index and manifest through `base`. */
async function pullPaths(base: string, repo: string, auth?: string): Promise<{ paths: string[]; files: Map<string, Buffer> }> {
  const files = new Map<string, Buffer>();
  const idxPath = `/v2/${repo}/manifests/${TAG}`;
  const idx = await getBytes(base + idxPath, auth);
  files.set(idxPath, idx);
  const paths = [idxPath];
  for (const m of (JSON.parse(idx.toString()) as { manifests: Array<{ digest: string }> }).manifests) {
    const mp = `/v2/${repo}/manifests/${m.digest}`;
    const man = await getBytes(base + mp, auth);
    files.set(mp, man);
    paths.push(mp);
    const parsed = JSON.parse(man.toString()) as { config: { digest: string }; layers: Array<{ digest: string }> };
    for (const d of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
      const bp = `/v2/${repo}/blobs/${d}`;
      files.set(bp, await getBytes(base + bp, auth));
      paths.push(bp);
    }
  }
  return { paths, files };
}

async function main(): Promise<void> {
  requireSetup();
  if (!findNginx()) throw new Error('nginx not found (apt-get install -y nginx-light)');
  const reps = int(f.reps, 'reps');
  const dir = await benchDir('fairway-bench-registry-');
  const args = ['--workers', '1', '--image-platforms', 'linux/amd64'];
  const rows: Row[] = [];

  // (b) first: a fresh data dir, so the recipe is unbuilt (the Go caches are warm). The recipe is
  // put through the API after the start: a configured recipe is prebuilt at start (docs/operations.md),
  // an API recipe only at the next version refresh, so the pull below is what starts its build.
  const server = await startBench({ dataDir: join(dir, 'data'), cacheDir: f['cache-dir'], args, env: { FAIRWAY_TOKENS: `bench:admin:${createHash('sha256').update(ADMIN).digest('hex')}` } });
  try {
    await new Promise((r) => setTimeout(r, 3000)); // start-up version refresh
    const put = await fetch(`${server.url}/api/recipes/plain`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ plugins: [] }),
    });
    if (put.status >= 300) throw new Error(`PUT /api/recipes/plain answered ${put.status}: ${await put.text()}`);
    const repo = 'caddy/plain';
    log(`first pull of ${repo}:${TAG} (unbuilt)`);
    const t0 = now();
    const wall0 = Date.now();
    // A pull of an unbuilt tag builds it only for a client with the build scope (docs/SECURITY.md):
    // the first pull is the admin token's; the cached pulls below are anonymous reads.
    const first = await pullPaths(server.url, repo, `Bearer ${ADMIN}`);
    const firstMs = now() - t0;
    const wall1 = Date.now();
    const builds = (
      (await (await fetch(`${server.url}/api/builds`)).json()) as { builds: Array<{ status: string; createdAt: string; startedAt?: string; finishedAt?: string; cached: boolean }> }
    ).builds.filter((b) => b.status === 'succeeded' && b.startedAt && b.finishedAt);
    if (!builds.length) throw new Error('no build record with startedAt/finishedAt after the first pull');
    const buildMs = Math.max(...builds.map((b) => Date.parse(b.finishedAt!))) - Math.min(...builds.map((b) => Date.parse(b.startedAt!)));
    const over = firstMs - buildMs;
    // Where the difference goes (server clock = this machine's clock): before the build is queued,
    // queued → started, build finished → the pull's last byte (storing, the image, serving).
    const created = Math.min(...builds.map((b) => Date.parse(b.createdAt)));
    const started = Math.min(...builds.map((b) => Date.parse(b.startedAt!)));
    const finished = Math.max(...builds.map((b) => Date.parse(b.finishedAt!)));
    const split = `request → queued ${fmtMs(created - wall0)}, queued → started ${fmtMs(started - created)}, finished → last byte ${fmtMs(wall1 - finished)}`;
    log(`  ${split}`);
    if (created < wall0) throw new Error(`the build was queued ${fmtMs(wall0 - created)} before the pull: not a first pull (a prebuild?)`);
    log(`  pull ${fmtMs(firstMs)}, builds ${fmtMs(buildMs)} (${builds.length}), difference ${fmtMs(over)}`);
    rows.push({
      bench: 'registry',
      figure: `first pull of an unbuilt recipe (caddy/plain:${TAG}, linux/amd64, index + manifest + config + layers, warm Go caches): pull total minus the builds' own time`,
      value: fmtMs(over),
      baseline: `builds ${fmtMs(buildMs)} (startedAt → finishedAt of ${builds.length} record(s)); pull ${fmtMs(firstMs)}`,
      ratio: firstMs / buildMs,
      target: 'difference ≤ 2 s',
      pass: over <= 2000,
      notes: `one run; ${split} (the last: storing the artifact, making the image: read the binary, tar, gzip, blobs into the store; serving it)`,
    });

    // (a) the same recipe, now cached; nginx serves the same bytes at the same paths.
    const root = join(dir, 'www');
    await chmod(dir, 0o755);
    for (const [p, b] of first.files) {
      const file = join(root, p.replace(/:/g, '_'));
      await mkdir(join(file, '..'), { recursive: true });
      await writeFile(file, b);
    }
    await execFileP('chmod', ['-R', 'a+rX', root]);
    const nginx = await startNginx(root, await getFreePort());
    try {
      const fwUrls = first.paths.map((p) => server.url + p);
      const ngUrls = first.paths.map((p) => nginx.url + p.replace(/:/g, '_'));
      const total = [...first.files.values()].reduce((t, b) => t + b.length, 0);
      for (let i = 0; i < 2; i++) {
        for (const u of [fwUrls, ngUrls]) {
          const r = await pull(u);
          if (r.bytes !== total) throw new Error(`a pull got ${r.bytes} bytes, expected ${total}`);
        }
      }
      log(`cached pull: ${first.paths.length} requests, ${(total / 1e6).toFixed(1)} MB; Fairway vs nginx, ${reps} pairs`);
      const { a, b } = await interleave(
        reps,
        () => pull(ngUrls),
        () => pull(fwUrls),
      );
      const base = median(a.map((x) => x.ms));
      const subj = median(b.map((x) => x.ms));
      log(`  nginx ${a.map((x) => fmtMs(x.ms)).join(' ')}`);
      log(`  fairway ${b.map((x) => fmtMs(x.ms)).join(' ')}`);
      rows.push({
        bench: 'registry',
        figure: `pull of a cached recipe image (caddy/plain:${TAG}, linux/amd64: ${first.paths.length} GETs, ${(total / 1e6).toFixed(1)} MB, curl over one connection, median of ${reps})`,
        value: `${fmtMs(subj)} (${fmtRate(total / (subj / 1000))})`,
        baseline: `nginx (1 worker, sendfile) ${fmtMs(base)} (${fmtRate(total / (base / 1000))})`,
        ratio: base / subj,
        target: '≥ 0.9',
        pass: base / subj >= 0.9,
        notes: `ratio = nginx time / Fairway time; Fairway resolves the tag (a cache hit) and streams blobs from the fs store checking their digest; ratio ${fmtRatio(base / subj)}`,
      });
    } finally {
      await nginx.stop();
    }
  } finally {
    await server.stop();
  }
  await report(rows);
}

finish(main());
