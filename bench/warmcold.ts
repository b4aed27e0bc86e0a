/**
 * Warm vs cold: the first build on a fresh agent (empty Go caches) against a second build with a
 * different plugin set on the same, now warm, agent.
 *
 *   first   caddy v2.11.9 linux/amd64, no plugins, `fairway serve --cache-dir <fresh>`:
 *           `--cold full` (default) starts from empty GOMODCACHE and GOCACHE (modules come from
 *           the module proxy); `--cold compile` shares the module download cache and starts
 *           only GOCACHE empty.
 *   second  caddy v2.11.9 linux/amd64 + caddy-l4 on the same process and caches.
 *
 * Ratio second/first (lower is better; no target). Also checks that the first build's sha256
 * equals the same spec built by another Fairway on the shared warm caches (reproducibility).
 *   node --import tsx bench/warmcold.ts [--cold full|compile] [--reps 1]
 */
import { mkdir, rm, symlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { benchDir, describeSpec, finish, flags, fmtMs, GO_CACHE, int, L4, log, median, removeTree, report, requireSetup, spec, startBench, timedBuild, type Row } from './lib.js';

const f = flags('bench/warmcold.ts: second build (other plugins) on a warm agent vs the first on a cold one', {
  cold: { type: 'string', default: 'full', help: 'full (empty module and build caches) or compile (shared module downloads, empty build cache)' },
  reps: { type: 'string', default: '1', help: 'fresh agents to measure (each pays a cold build)' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'the shared warm caches (reproducibility check; module source for --cold compile)' },
});

const TIMEOUT = 40 * 60_000;

async function main(): Promise<void> {
  requireSetup();
  if (f.cold !== 'full' && f.cold !== 'compile') throw new Error('--cold is full or compile');
  const reps = int(f.reps, 'reps');
  const shared = resolve(f['cache-dir']);
  const first = spec('linux', 'amd64');
  const second = spec('linux', 'amd64', [L4]);
  const dir = await benchDir();
  const colds: number[] = [];
  const warms: number[] = [];
  const shas = new Set<string>();
  for (let i = 0; i < reps; i++) {
    const cache = join(dir, `go-${i}`);
    await mkdir(cache, { recursive: true });
    if (f.cold === 'compile') await symlink(join(shared, 'mod'), join(cache, 'mod'));
    const server = await startBench({ dataDir: join(dir, `data-${i}`), cacheDir: cache, args: ['--workers', '1', '--build-timeout', '40m'] });
    try {
      log(`#${i + 1} first build on a cold agent (${f.cold}): ${describeSpec(first)}`);
      const a = await timedBuild(server.url, first, TIMEOUT);
      log(`   ${fmtMs(a.ms)} (xcaddy ${fmtMs(a.build.durationMs)})`);
      log(`#${i + 1} second build, other plugins, same agent: ${describeSpec(second)}`);
      const b = await timedBuild(server.url, second, TIMEOUT);
      log(`   ${fmtMs(b.ms)} (xcaddy ${fmtMs(b.build.durationMs)})`);
      colds.push(a.ms);
      warms.push(b.ms);
      shas.add(a.build.sha256);
    } finally {
      await server.stop();
      await removeTree(cache);
      await rm(join(dir, `data-${i}`), { recursive: true, force: true });
    }
  }

  // The same spec from a Fairway on the shared warm caches: the binary must be the same.
  log(`reference build of ${describeSpec(first)} on the shared caches (${shared})`);
  const ref = await startBench({ dataDir: join(dir, 'data-ref'), cacheDir: shared, args: ['--workers', '1'] });
  let refSha = '';
  try {
    refSha = (await timedBuild(ref.url, first, TIMEOUT)).build.sha256;
  } finally {
    await ref.stop();
  }
  const same = shas.size === 1 && shas.has(refSha);
  const cold = median(colds);
  const warm = median(warms);
  const rows: Row[] = [
    {
      bench: 'warm-cold',
      figure: `second build with other plugins (${describeSpec(second)}) on a warm agent vs the first (${describeSpec(first)}) on a fresh one (${f.cold === 'full' ? 'empty module + build caches' : 'empty build cache'})${reps > 1 ? `, median of ${reps}` : ''}`,
      value: fmtMs(warm),
      baseline: `first ${fmtMs(cold)}`,
      ratio: warm / cold,
      target: '—',
      notes: `lower is better; cold includes ${f.cold === 'full' ? 'module downloads and ' : ''}compiling Caddy and its dependencies`,
    },
    {
      bench: 'warm-cold',
      figure: `sha256 of ${describeSpec(first)} from a fresh Go cache = from the shared warm cache`,
      value: [...shas].map((s) => s.slice(0, 12)).join(','),
      baseline: refSha.slice(0, 12),
      ratio: same ? 1 : 0,
      target: '= 1',
      pass: same,
      notes: 'reproducible across separate caches (also test/integration/repro.test.ts)',
    },
  ];
  await report(rows);
}

finish(main());
