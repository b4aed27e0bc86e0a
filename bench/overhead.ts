/**
 * Orchestration overhead: a Fairway cold build of a spec (its artifact not in Fairway's store)
 * against a raw `xcaddy build` of the same spec, both on the same warm Go caches.
 *
 *   subject   fresh `fairway serve` data dir per rep, started and left to settle (its start-up
 *             version refresh done); wall time from POST /api/builds to the `end` message of the
 *             build's log (resolved, built, hashed, build info read, stored)
 *   baseline  the same xcaddy, argument list and environment as Fairway's runner, run directly
 *
 * Runs interleaved (ABBA), medians compared. Target: ratio ≤ 1.03.
 *   node --import tsx bench/overhead.ts [--reps 5] [--plugins l4|none] [--cache-dir .cache/go]
 */
import { join } from 'node:path';
import { parseLog } from '../src/service/logformat.js';
import { rm } from 'node:fs/promises';
import {
  benchDir,
  describeSpec,
  finish,
  flags,
  fmtMs,
  fmtRatio,
  GO_CACHE,
  int,
  L4,
  log,
  median,
  interleave,
  now,
  quiesce,
  rawXcaddy,
  report,
  requireSetup,
  spec,
  startBench,
  timedBuild,
} from './lib.js';

const f = flags('bench/overhead.ts: Fairway cold build vs raw xcaddy build on the same warm Go caches', {
  reps: { type: 'string', default: '7', help: 'pairs of runs (each pair: one raw xcaddy, one Fairway build)' },
  plugins: { type: 'string', default: 'l4', help: 'l4 (github.com/mholt/caddy-l4) or none' },
  os: { type: 'string', default: 'linux', help: 'GOOS of the spec' },
  arch: { type: 'string', default: 'amd64', help: 'GOARCH of the spec' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'Go caches (GOMODCACHE=<dir>/mod, GOCACHE=<dir>/build) shared by both sides' },
});

async function main(): Promise<void> {
  requireSetup();
  const reps = int(f.reps, 'reps');
  const cacheDir = f['cache-dir'];
  const s = spec(f.os, f.arch, f.plugins === 'none' ? [] : [L4]);
  const dir = await benchDir();
  log(`spec: ${describeSpec(s)}; Go caches: ${cacheDir}; ${reps} pairs`);

  // Warm-up (not timed): puts this spec's modules and compiled packages into the shared caches,
  // and makes sure both sides produce the same binary.
  log('warm-up: raw xcaddy build');
  const warm = await rawXcaddy(s, cacheDir);
  await rm(warm.dir, { recursive: true, force: true });
  log(`warm-up: ${fmtMs(warm.ms)}, sha256 ${warm.sha256.slice(0, 16)}…`);

  let shaFairway = '';
  /** Per Fairway rep: wall time minus the runner's own xcaddy time, measured in the same moment. */
  const outside: number[] = [];
  const before: number[] = [];
  const afterX: number[] = [];
  const fairway = async (i: number): Promise<number> => {
    // A fresh data dir: the key is not in the store; the Go caches are the shared warm ones.
    const server = await startBench({ dataDir: join(dir, `data-${i}`), cacheDir, args: ['--workers', '1'] });
    try {
      // A running server's per-build path: let its start-up work (a version refresh) finish first.
      await quiesce(server.proc.pid);
      const t0 = now();
      const r = await timedBuild(server.url, s);
      if (r.cached) throw new Error('the build was answered from the cache; the data dir was not fresh');
      shaFairway = r.build.sha256;
      // The xcaddy process's own span, from the build log's timestamps: the line Fairway writes just
      // before spawning it to xcaddy's last output line. Everything else is Fairway's.
      const lines = parseLog(await (await fetch(`${server.url}/api/builds/${r.build.id}/log`)).text());
      const spawnAt = lines.find((l) => l.stream === 'system' && l.text.startsWith('fairway: xcaddy '));
      const lastOut = [...lines].reverse().find((l) => l.stream !== 'system');
      const xcaddyMs = spawnAt && lastOut ? Date.parse(lastOut.ts) - Date.parse(spawnAt.ts) : r.build.durationMs;
      outside.push(r.ms - xcaddyMs);
      if (spawnAt && lastOut) {
        // Before: POST → spawn (validate, resolve, queue). After: xcaddy's exit → end (hash, build info, store, events).
        const endWall = Date.now() - (now() - (t0 + r.ms));
        before.push(Date.parse(spawnAt.ts) - (endWall - r.ms));
        afterX.push(endWall - Date.parse(lastOut.ts));
      }
      log(`  fairway #${i + 1}: ${fmtMs(r.ms)} (xcaddy inside: ${fmtMs(r.build.durationMs)})`);
      return r.ms;
    } finally {
      await server.stop();
      await rm(join(dir, `data-${i}`), { recursive: true, force: true });
    }
  };
  let shaRaw = '';
  const raw = async (i: number): Promise<number> => {
    const r = await rawXcaddy(s, cacheDir);
    shaRaw = r.sha256;
    await rm(r.dir, { recursive: true, force: true });
    log(`  xcaddy  #${i + 1}: ${fmtMs(r.ms)}`);
    return r.ms;
  };

  const { a, b } = await interleave(reps, raw, fairway);
  const base = median(a);
  const subj = median(b);
  const ratio = subj / base;
  log(`raw xcaddy: ${a.map(fmtMs).join(', ')}`);
  log(`fairway:    ${b.map(fmtMs).join(', ')}`);
  log(`ratio of medians ${fmtRatio(ratio)}; overhead ${fmtMs(subj - base)}; same binary: ${shaRaw === shaFairway}`);
  await report([
    {
      bench: 'overhead',
      figure: `cold build wall time, ${describeSpec(s)}, warm Go caches (median of ${reps})`,
      value: fmtMs(subj),
      baseline: `raw xcaddy ${fmtMs(base)}`,
      ratio,
      target: '≤ 1.03',
      pass: ratio <= 1.03,
      notes: `overhead ${fmtMs(subj - base)}; per-pair ratios ${b.map((x, i) => (x / a[i]!).toFixed(2)).join('/')}; same sha256 as raw: ${shaRaw === shaFairway ? 'yes' : 'NO'}`,
    },
    {
      bench: 'overhead',
      figure: `Fairway's own time in a cold build: POST→end minus the xcaddy process's span (from the build log), same spec (median of ${reps})`,
      value: fmtMs(median(outside)),
      baseline: `raw xcaddy ${fmtMs(base)}`,
      ratio: 1 + median(outside) / base,
      target: '≤ 1.03',
      pass: 1 + median(outside) / base <= 1.03,
      notes: `ratio = 1 + own / raw xcaddy, measured inside each Fairway run (drift cancels); before xcaddy (validate, resolve, queue) ${fmtMs(median(before))}, after it (sha256, go version -m, store, events) ${fmtMs(median(afterX))}`,
    },
  ]);
}

finish(main());
