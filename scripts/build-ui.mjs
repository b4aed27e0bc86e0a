#!/usr/bin/env node
// Bundles the UI (src/ui/page) with esbuild into dist/ui/static: index.html plus content-hashed,
// minified app-<hash>.js and style-<hash>.css (no inline script or style, so the page can run
// under a strict Content-Security-Policy). Type-checks the page first (it uses the DOM lib,
// so it has its own tsconfig and is excluded from the server's).
//   node scripts/build-ui.mjs [--no-typecheck]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src', 'ui', 'page');
const out = join(root, 'dist', 'ui', 'static');
/** The budget a test enforces for everything the page loads. */
export const UI_BUDGET_BYTES = 60_000;
const TARGETS = ['chrome100', 'firefox100', 'safari15'];
const log = (msg) => process.stderr.write(`build-ui: ${msg}\n`);

export async function buildUi({ typecheck = true } = {}) {
  if (typecheck) {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(src, 'tsconfig.json')], { stdio: 'inherit' });
  }
  const common = { bundle: true, minify: true, write: false, target: TARGETS, legalComments: 'none', charset: 'utf8', logLevel: 'warning' };
  const js = await build({ ...common, entryPoints: [join(src, 'app.ts')], format: 'esm' });
  const css = await build({ ...common, entryPoints: [join(src, 'style.css')] });
  const jsText = js.outputFiles[0].text;
  const cssText = css.outputFiles[0].text;
  const hash = (t) => createHash('sha256').update(t).digest('hex').slice(0, 10);
  const files = {
    [`app-${hash(jsText)}.js`]: jsText,
    [`style-${hash(cssText)}.css`]: cssText,
  };
  const [jsName, cssName] = Object.keys(files);
  const html = readFileSync(join(src, 'index.html'), 'utf8')
    .replace('%JS%', jsName)
    .replace('%CSS%', cssName)
    .replace(/>\s+</g, '><') // whitespace between tags carries no meaning on this page
    .replace(/\n\s*/g, ' ')
    .trim();
  files['index.html'] = `${html}\n`;
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  let total = 0;
  for (const [name, text] of Object.entries(files)) {
    writeFileSync(join(out, name), text);
    total += Buffer.byteLength(text);
  }
  writeFileSync(join(out, 'manifest.json'), `${JSON.stringify({ index: 'index.html', js: jsName, css: cssName, bytes: total, budget: UI_BUDGET_BYTES }, null, 2)}\n`);
  log(
    `wrote dist/ui/static: ${Object.entries(files)
      .map(([n, t]) => `${n} ${Buffer.byteLength(t)} B`)
      .join(', ')}; total ${total} of ${UI_BUDGET_BYTES} B budget`,
  );
  if (total > UI_BUDGET_BYTES) log(`WARNING: the UI is over its ${UI_BUDGET_BYTES} B budget`);
  return { out, files: Object.keys(files), total };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildUi({ typecheck: !process.argv.includes('--no-typecheck') });
}
