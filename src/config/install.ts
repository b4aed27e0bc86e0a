/**
 * What this installation is, before any setting: the project folder, the pinned tool versions,
 * the Node.js lines it runs on, how it was installed (checkout or package: docs/install.md), its
 * default tools dir and the command that installs what is missing, and Fairway's own version.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project folder (where package.json and .tools/ are). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The pinned xcaddy: the one version `fairway setup` installs and `fairway doctor` expects. */
export const XCADDY_VERSION = 'v0.4.7';
export const XCADDY_MODULE = 'github.com/caddyserver/xcaddy/cmd/xcaddy';
/** The oldest Go the builds, xcaddy and tools/cacheprog need (goCacheShared: 1.24). */
export const MIN_GO_VERSION = '1.22';
/**
 * The Node.js lines Fairway runs on: those that still get security fixes (package.json
 * `engines.node` says the same). 24 is the active LTS and what a checkout, the tests and CI run
 * (the `node` devDependency); 22 from 22.12 is maintenance LTS. 23 and anything older are past
 * their end of life.
 */
export const NODE_ENGINES = '^22.12.0 || >=24.0.0';
export const NODE_RECOMMENDED = '24';

/**
 * How this Fairway was installed: `checkout` (a clone of the repository, run with npm scripts:
 * it has its TypeScript sources) or `package` (`npm install -g fairway-<version>.tgz`: compiled
 * output only).
 */
export type InstallKind = 'checkout' | 'package';
export function installKindOf(root: string): InstallKind {
  return existsSync(join(root, 'src', 'main', 'index.ts')) ? 'checkout' : 'package';
}
export const INSTALL_KIND: InstallKind = installKindOf(PROJECT_ROOT);
/**
 * The exact command that installs what is missing (xcaddy, fairway-cacheprog, the sandbox's OS
 * parts): `npm run setup` in a checkout, `fairway setup` for the package; with the tools dir
 * named when it is not the default one.
 */
export function setupCommand(o: { toolsDir?: string; kind?: InstallKind } = {}): string {
  const kind = o.kind ?? INSTALL_KIND;
  const custom = o.toolsDir !== undefined && resolve(o.toolsDir) !== resolve(defaultToolsDir({ kind }));
  if (kind === 'checkout') return custom ? `FAIRWAY_TOOLS_DIR=${o.toolsDir} npm run setup` : 'npm run setup';
  return custom ? `fairway setup --tools-dir ${o.toolsDir}` : 'fairway setup';
}
/**
 * Where `fairway setup` installs the tools when toolsDir is not set: `<checkout>/.tools` for a
 * checkout; for a package `/usr/local/lib/fairway/tools` as root, else `$XDG_DATA_HOME/fairway/tools`
 * (default `~/.local/share/fairway/tools`).
 */
export function defaultToolsDir(o: { kind?: InstallKind; env?: NodeJS.ProcessEnv; uid?: number; root?: string } = {}): string {
  const kind = o.kind ?? INSTALL_KIND;
  if (kind === 'checkout') return join(o.root ?? PROJECT_ROOT, '.tools');
  // Root: under /usr/local, read-only to the systemd units (ProtectSystem=strict) and outside their StateDirectory.
  if ((o.uid ?? process.getuid?.() ?? -1) === 0) return '/usr/local/lib/fairway/tools';
  const env = o.env ?? process.env;
  const xdg = env.XDG_DATA_HOME ?? '';
  // The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
  const data = xdg.startsWith('/') ? xdg : join(env.HOME || '/nonexistent', '.local', 'share');
  return join(data, 'fairway', 'tools');
}
/** This Fairway's version (package.json), in provenance and `fairway --version`. */
export const FAIRWAY_VERSION: string = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
