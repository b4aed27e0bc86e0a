/**
 * The same benches on two Node.js runtimes side by side, in one run on one machine: each bench runs
 * once per runtime, the order alternating from bench to bench (A B, then B A, …) so a drift of the
 * machine's load falls on both. Each run is the bench's own process on that runtime (the Fairway
 * servers it starts run on it too: the tests' startFairway uses process.execPath) and appends its
 * rows, labelled with the runtime's version, to BENCHMARKS.md.
 *   node --import tsx bench/runtimes.ts [--other /usr/bin/node] [--only cachehit,overhead,registry] [--no-record]
 * Default: this process's Node (the pinned Node 24 under `npm run`) against the machine's own
 * `/usr/bin/node` (Node 20 on Debian 12 machines here).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../test/helpers/fairway.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
};
if (process.argv.includes('--help')) {
  process.stdout.write('usage: node --import tsx bench/runtimes.ts [--other NODE] [--only cachehit,overhead,registry] [--no-record]\n');
  process.exit(0);
}
const other = arg('--other') ?? '/usr/bin/node';
if (!existsSync(other)) {
  process.stderr.write(`runtimes: ${other} does not exist; name the second Node.js with --other PATH\n`);
  process.exit(2);
}
const benches = (arg('--only') ?? 'cachehit,overhead,registry').split(',').filter(Boolean);
const pass = process.argv.includes('--no-record') ? ['--no-record'] : [];
const version = (node: string) => spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim();
const runtimes = [process.execPath, other];
process.stderr.write(`runtimes: ${runtimes.map((n) => `${n} (${version(n)})`).join(' vs ')}\n`);

const failed: string[] = [];
for (const [i, bench] of benches.entries()) {
  const order = i % 2 === 0 ? runtimes : [...runtimes].reverse();
  for (const node of order) {
    process.stderr.write(`\n=== bench/${bench}.ts on Node ${version(node)} ===\n`);
    const r = spawnSync(node, ['--import', 'tsx', join(ROOT, 'bench', `${bench}.ts`), ...pass], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) failed.push(`${bench} on ${version(node)}`);
  }
}
if (failed.length) {
  process.stderr.write(`\nruns that could not finish: ${failed.join(', ')}\n`);
  process.exit(1);
}
