/**
 * Runs every benchmark in turn, each in its own process (one at a time: they share two cores),
 * each appending its rows to BENCHMARKS.md. A missed target is a figure, not a crash: the exit
 * code is non-zero only when a bench could not run.
 *   node --import tsx bench/all.ts [--no-record] [--only overhead,cachehit,...]
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../test/helpers/fairway.js';

const BENCHES = ['overhead', 'sandbox', 'cachehit', 'dedupe', 'warmcold', 'scale', 'registry'];
const i = process.argv.indexOf('--only');
const only = i === -1 ? BENCHES : (process.argv[i + 1] ?? '').split(',').filter(Boolean);
const pass = process.argv.includes('--no-record') ? ['--no-record'] : [];
const failed: string[] = [];
for (const name of only) {
  if (!BENCHES.includes(name)) {
    process.stderr.write(`unknown bench ${name}; one of ${BENCHES.join(', ')}\n`);
    process.exit(2);
  }
  process.stderr.write(`\n=== bench/${name}.ts ===\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', `${name}.ts`), ...pass], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) failed.push(name);
}
if (failed.length) {
  process.stderr.write(`\nbench(es) that could not run: ${failed.join(', ')}\n`);
  process.exit(1);
}
