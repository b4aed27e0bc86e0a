#!/usr/bin/env node
// `npm test`: set up (compile, xcaddy, OS packages and service binaries), check format, lint and
// types (Biome, tsc), then run every test with Node's test runner: unit tests first, then
// integration tests against the real parts.
// A part that cannot be installed or started fails the run; nothing is skipped silently.
//   node scripts/test.mjs            all tests
//   node scripts/test.mjs unit       unit tests only
//   node scripts/test.mjs integration [file-filter]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '..', '..');
const which = process.argv[2] ?? 'all';
const filter = process.argv[3];

function run(cmd, args, extraEnv = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...extraEnv } });
  if (r.status !== 0) {
    process.stderr.write(`test: ${cmd} ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`})\n`);
    process.exit(r.status || 1);
  }
}

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.test.ts')) out.push(relative(root, p));
    }
  };
  walk(join(root, dir));
  return out.sort().filter((f) => !filter || f.includes(filter));
}

// The tests run on Node 24, the pinned `node` devDependency that npm scripts put first on PATH
// (docs/install.md "Node.js"); a machine's own older node would test a runtime Fairway does not use.
const major = Number(process.versions.node.split('.')[0]);
process.stderr.write(`test: Node.js ${process.version} at ${process.execPath}\n`);
if (major < 24) {
  process.stderr.write(
    `test: Node.js ${process.version} is not the Node 24 the tests run on: run them with \`npm test\` after \`npm ci\` (the node devDependency puts Node 24 in node_modules/.bin)\n`,
  );
  process.exit(1);
}

run(process.execPath, [join(root, 'scripts', 'setup.mjs')]);
// Format, lint (Biome) and type-check the tests and benches too, before any test runs.
run(join(root, 'node_modules', '.bin', 'biome'), ['ci', '--colors=off', '.']);
run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.test.json']);
if (which !== 'unit') run('bash', [join(root, 'scripts', 'deps.sh')]);

// Go module and build caches shared by every integration test and kept between runs.
const env = { FAIRWAY_TEST_CACHE: join(root, '.cache', 'go'), NODE_OPTIONS: '' };
const testArgs = (list, concurrency) => ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, ...list];

if (which === 'all' || which === 'unit') {
  const unit = files('test/unit');
  if (unit.length === 0) throw new Error('no unit tests found');
  run(process.execPath, testArgs(unit, 2), env);
}
if (which === 'all' || which === 'integration') {
  const integ = files('test/integration');
  if (integ.length === 0) throw new Error('no integration tests found');
  // One at a time: each compiles Caddy with both cores.
  run(process.execPath, testArgs(integ, 1), env);
}
