#!/usr/bin/env node
// Set-up step shared by `npm start` and `npm test`: compile TypeScript, install xcaddy at the
// pinned version into .tools/bin with `go install` (skipped when the right version is there), and
// the build sandbox's OS parts (scripts/sandbox.sh: bubblewrap, socat, the build user).
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const XCADDY_MODULE = 'github.com/caddyserver/xcaddy/cmd/xcaddy';
export const XCADDY_VERSION = 'v0.4.7';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, '.tools', 'bin');
const log = (msg) => process.stderr.write(`setup: ${msg}\n`);

function xcaddyVersion() {
  const exe = join(bin, 'xcaddy');
  if (!existsSync(exe)) return null;
  const r = spawnSync(exe, ['version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split(/\s+/)[0] : null;
}

function installXcaddy() {
  const have = xcaddyVersion();
  if (have === XCADDY_VERSION) return log(`xcaddy ${have} present in .tools/bin`);
  log(`installing xcaddy ${XCADDY_VERSION} with go install (have: ${have ?? 'none'})`);
  mkdirSync(bin, { recursive: true });
  const r = spawnSync('go', ['install', `${XCADDY_MODULE}@${XCADDY_VERSION}`], {
    stdio: 'inherit',
    env: { ...process.env, GOBIN: bin, GOTOOLCHAIN: 'local', CGO_ENABLED: '0' },
  });
  if (r.error || r.status !== 0) {
    log(`go install failed (${r.error?.message ?? `exit ${r.status}`}); is Go 1.22+ on PATH and the module proxy reachable?`);
    process.exit(1);
  }
  log(`xcaddy ${xcaddyVersion()} installed`);
}

// The GOCACHEPROG program of the shared build cache (tools/cacheprog, std lib only; docs/distributed.md):
// built with `go build` into .tools/bin/fairway-cacheprog, again whenever its source changes.
export const CACHEPROG_BIN = join(bin, 'fairway-cacheprog');
export function buildCacheprog() {
  const src = join(root, 'tools', 'cacheprog');
  const hash = createHash('sha256');
  for (const f of readdirSync(src).sort()) if (f.endsWith('.go') || f === 'go.mod') hash.update(`${f}\0`).update(readFileSync(join(src, f)));
  const want = hash.digest('hex');
  const stamp = `${CACHEPROG_BIN}.source-sha256`;
  if (existsSync(CACHEPROG_BIN) && existsSync(stamp) && readFileSync(stamp, 'utf8').trim() === want) return log('fairway-cacheprog up to date in .tools/bin');
  log('building fairway-cacheprog (tools/cacheprog) with go build');
  mkdirSync(bin, { recursive: true });
  const r = spawnSync('go', ['build', '-trimpath', '-o', CACHEPROG_BIN, '.'], { cwd: src, stdio: 'inherit', env: { ...process.env, GOTOOLCHAIN: 'local', CGO_ENABLED: '0', GOFLAGS: '-mod=mod' } });
  if (r.error || r.status !== 0) {
    // Only agents with goCacheShared need it (they refuse to start without it, naming this step).
    log(`go build of tools/cacheprog failed (${r.error?.message ?? `exit ${r.status}`}); the shared build cache (goCacheShared) is unavailable until it builds`);
    return;
  }
  writeFileSync(stamp, `${want}\n`);
}

function compile() {
  log('compiling TypeScript (tsc)');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  log('bundling the web UI (esbuild)');
  execFileSync(process.execPath, [join(root, 'scripts', 'build-ui.mjs')], { stdio: 'inherit' });
}

function installSandbox() {
  if (process.env.FAIRWAY_SANDBOX === 'none') return log('sandbox: skipped (FAIRWAY_SANDBOX=none)');
  const r = spawnSync('bash', [join(root, 'scripts', 'sandbox.sh')], { stdio: 'inherit' });
  if (r.error || r.status !== 0) {
    log('the build sandbox could not be installed (see above); Fairway refuses to build without it unless started with --sandbox none (unsafe)');
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  compile();
  installXcaddy();
  buildCacheprog();
  installSandbox();
}
