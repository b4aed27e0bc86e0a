/**
 * The build sandbox's cost on a warm build: the same xcaddy build of the same spec, with the same
 * arguments, environment and warm Go caches, followed by the same two runs of the built binary
 * (`version`, `list-modules`), once inside the bubblewrap sandbox exactly as Fairway's runner does
 * it (src/sandbox: namespaces, setpriv to the build user, the module relay bridged in by socat)
 * and once without it (the same build user through setpriv only, host network, no namespaces).
 *
 * Runs interleaved (ABBA), medians compared. Target: ratio ≤ 1.03.
 *   node --import tsx bench/sandbox.ts [--reps 7] [--plugins l4|none] [--cache-dir .cache/go]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { binaryName, xcaddyArgs } from '../src/runner/index.js';
import {
  asBuildUser,
  describeSpec,
  finish,
  flags,
  fmtMs,
  fmtRatio,
  GO_CACHE,
  int,
  interleave,
  L4,
  log,
  median,
  now,
  rawXcaddy,
  report,
  requireSetup,
  resolvedSpec,
  spec,
  toolchainFor,
} from './lib.js';

const execFileP = promisify(execFile);
const f = flags('bench/sandbox.ts: a warm build and its binary runs, inside the build sandbox vs without it', {
  reps: { type: 'string', default: '7', help: 'pairs of runs' },
  plugins: { type: 'string', default: 'l4', help: 'l4 (github.com/mholt/caddy-l4) or none' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'warm Go caches shared by both sides' },
});
const LIST = ['list-modules', '--packages', '--versions', '--skip-standard'];
const BINARY_ENV = { PATH: '/usr/bin:/bin', HOME: '/tmp', TMPDIR: '/tmp' };

async function main(): Promise<void> {
  requireSetup();
  const reps = int(f.reps, 'reps');
  const cacheDir = f['cache-dir'];
  const s = spec('linux', 'amd64', f.plugins === 'none' ? [] : [L4]);
  const tc = await toolchainFor(cacheDir);
  if (tc.sandbox.kind !== 'bwrap') throw new Error('the sandbox is not available here; run scripts/sandbox.sh');
  log(`spec: ${describeSpec(s)}; Go caches: ${cacheDir}; ${reps} pairs; ${JSON.stringify(tc.sandbox.describe())}`);
  log('warm-up: one unsandboxed build (not timed)');
  const warm = await rawXcaddy(s, cacheDir);
  await rm(warm.dir, { recursive: true, force: true });
  log(`warm-up: ${fmtMs(warm.ms)}`);

  const shas = new Set<string>();
  const bare = async (i: number): Promise<number> => {
    const t0 = now();
    const r = await rawXcaddy(s, cacheDir);
    for (const args of [['version'], LIST]) await execFileP(asBuildUser(tc, [r.path])[0]!, [...asBuildUser(tc, [r.path]).slice(1), ...args], { env: BINARY_ENV, cwd: '/tmp' });
    const ms = now() - t0;
    shas.add(r.sha256);
    await rm(r.dir, { recursive: true, force: true });
    log(`  no sandbox #${i + 1}: ${fmtMs(ms)}`);
    return ms;
  };
  const boxed = async (i: number): Promise<number> => {
    const dir = await mkdtemp(join(tc.tmpDir, 'bench-sandbox-'));
    const work = join(dir, 'work');
    await tc.sandbox.ownedDir(work);
    const output = join(work, binaryName(s.os, s.arch));
    const env = tc.env({ GOOS: s.os, GOARCH: s.arch, TMPDIR: work }, work);
    const t0 = now();
    await tc.sandbox.run(tc.command([tc.xcaddyBin, ...xcaddyArgs(resolvedSpec(s, tc), output)], { cwd: work, network: 'modules', env }), { timeoutMs: 30 * 60_000 });
    for (const args of [['version'], LIST]) await tc.sandbox.run({ argv: [output, ...args], env: BINARY_ENV, readOnly: [output], network: 'none' }, { timeoutMs: 30_000 });
    const ms = now() - t0;
    const { sha256File } = await import('../src/runner/index.js');
    shas.add(await sha256File(output));
    await rm(dir, { recursive: true, force: true });
    log(`  sandboxed  #${i + 1}: ${fmtMs(ms)}`);
    return ms;
  };

  const { a, b } = await interleave(reps, bare, boxed);

  // The sandbox's fixed cost per command, measured directly (the builds above vary by far more):
  // `go version` as the build user without a sandbox vs in it, with and without the module bridge.
  const goDirect = async () => {
    const t0 = now();
    const argv = asBuildUser(tc, [tc.goBin, 'version']);
    await execFileP(argv[0]!, argv.slice(1), { env: tc.env(), cwd: '/tmp' });
    return now() - t0;
  };
  const goBoxed = (network: 'none' | 'modules') => async () => {
    const t0 = now();
    await tc.sandbox.run(tc.command([tc.goBin, 'version'], { network }), { timeoutMs: 30_000 });
    return now() - t0;
  };
  const N = 25;
  const direct = await interleave(N, goDirect, goBoxed('none'));
  const bridged = await interleave(N, goDirect, goBoxed('modules'));
  const costNone = Math.max(0, median(direct.b) - median(direct.a));
  const costModules = Math.max(0, median(bridged.b) - median(bridged.a));
  // Per build: xcaddy with the bridge; go version -m, caddy version and list-modules without.
  const perBuild = costModules + 3 * costNone;
  log(`fixed cost per sandboxed command: ${fmtMs(costNone)} (network none), ${fmtMs(costModules)} (with the module bridge); per build ${fmtMs(perBuild)}`);
  const base = median(a);
  const subj = median(b);
  const ratio = subj / base;
  log(`no sandbox: ${a.map(fmtMs).join(', ')}`);
  log(`sandboxed:  ${b.map(fmtMs).join(', ')}`);
  log(`ratio of medians ${fmtRatio(ratio)}; cost ${fmtMs(subj - base)}; one binary from both sides: ${shas.size === 1}`);
  await report([
    {
      bench: 'sandbox',
      figure: `warm build + its version and list-modules runs, ${describeSpec(s)}, in the bubblewrap sandbox (median of ${reps})`,
      value: fmtMs(subj),
      baseline: `no sandbox ${fmtMs(base)}`,
      ratio,
      target: '≤ 1.03',
      pass: ratio <= 1.03,
      notes: `cost ${fmtMs(subj - base)}; per-pair ratios ${b.map((x, i) => (x / a[i]!).toFixed(2)).join('/')}; same sha256 both sides: ${shas.size === 1 ? 'yes' : 'NO'}`,
    },
    {
      bench: 'sandbox',
      figure: `the sandbox's fixed cost per build (1 bridged + 3 plain sandboxed commands, each measured as go version in vs out of the sandbox, medians of ${N} pairs), on the no-sandbox build time`,
      value: fmtMs(perBuild),
      baseline: `no sandbox ${fmtMs(base)}`,
      ratio: 1 + perBuild / base,
      target: '≤ 1.03',
      pass: 1 + perBuild / base <= 1.03,
      notes: `per command ${fmtMs(costNone)} (no network), ${fmtMs(costModules)} (module bridge); go version ${fmtMs(median(direct.a))} without a sandbox`,
    },
  ]);
}

finish(main());
