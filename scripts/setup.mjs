#!/usr/bin/env node
// Set-up step of a checkout, shared by `npm start` and `npm test` (`npm run setup`): compile
// TypeScript and bundle the UI, then run the same setup as `fairway setup` (src/setup, compiled
// to dist/setup): xcaddy at the pinned version (src/config XCADDY_VERSION) and fairway-cacheprog
// into <toolsDir>/bin (default .tools/bin in a checkout), and the build sandbox's OS parts
// (scripts/sandbox.sh: bubblewrap, socat, the build user). Settings: FAIRWAY_TOOLS_DIR,
// FAIRWAY_GO_BIN, FAIRWAY_SANDBOX, FAIRWAY_BUILD_USER, FAIRWAY_GOPROXY (as for `fairway setup`).
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const log = (msg) => process.stderr.write(`setup: ${msg}\n`);

function compile() {
  log('compiling TypeScript (tsc)');
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
  log('bundling the web UI (esbuild)');
  execFileSync(process.execPath, [join(root, 'scripts', 'build-ui.mjs')], { stdio: 'inherit' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  compile();
  const { loadConfig } = await import(pathToFileURL(join(root, 'dist', 'config', 'index.js')).href);
  const { runSetup, setupOptionsFrom } = await import(pathToFileURL(join(root, 'dist', 'setup', 'index.js')).href);
  const result = await runSetup(setupOptionsFrom(loadConfig({}), { log }));
  if (!result.ok) {
    log('set-up failed (see the FAILED lines above)');
    process.exit(1);
  }
}
