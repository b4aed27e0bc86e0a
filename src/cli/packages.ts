/**
 * `fairway upgrade`, `fairway add-package`, `fairway remove-package`: Caddy's own commands of the
 * same names (cmd/packagesfuncs.go, v2.11.9), pointed at a Fairway server instead of the
 * hard-coded https://caddyserver.com/api/download. Client side only: talks HTTP to the server and
 * runs the target caddy binary; no server code is used.
 *
 * Same as Caddy: the plugin list comes from the binary (its non-standard modules, grouped by Go
 * module, pinned to their current versions; replaced modules are refused), the same query
 * (`os`, `arch`, one `p` per package, Go's url.Values encoding), the same error envelope, the
 * same `<exe>.tmp` backup name, `--keep-backup`, and `list-modules` + `version` as verification.
 *
 * Safer than Caddy: the binary is downloaded next to the target first and verified (checksum,
 * `list-modules`, `version`) before anything is touched; the backup is a hard link, so the target
 * path always names a working binary; the swap is one rename(2); a failing check after the swap
 * renames the backup back. `remove-package module@version` removes the module (Caddy's deletes
 * nothing in that case).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { access, chmod, chown, copyFile, link, open, realpath, rename, stat, unlink } from 'node:fs/promises';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { hostPlatform, isCacheKey } from '../request/index.js';
import { parseListModulesText, pluginPackages, type PluginPackage } from '../catalog/index.js';
import { DownloadVerifyError, expectedSha256, receiveVerified } from './download.js';
import { PROVENANCE_NOT_CHECKED, ProvenanceCheckError, checkBinaryProvenance, clientPublicKey, type ClientKey } from './provenance-check.js';
import { errorMessage } from '../util/errors.js';

const execFileP = promisify(execFile);

export type PackageCommand = 'upgrade' | 'add-package' | 'remove-package';

export class PackagesError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'PackagesError';
  }
}

// ---- pure parts (unit-tested) -----------------------------------------------------------------

/** Go's url.QueryEscape: keeps A-Z a-z 0-9 - _ . ~, space becomes +, the rest %XX of UTF-8. */
export function goQueryEscape(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~]/.test(c)) out += c;
    else if (c === ' ') out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Go's url.Values.Encode: keys sorted, values in insertion order. */
export function goEncodeQuery(values: Record<string, string[]>): string {
  return Object.keys(values)
    .sort()
    .flatMap((k) => values[k]!.map((v) => `${goQueryEscape(k)}=${goQueryEscape(v)}`))
    .join('&');
}

/** Caddy v2.11's splitModule: at most one `@`, which separates path and version. */
export function splitModule(arg: string): { module: string; version: string } {
  const ats = (arg.match(/@/g) ?? []).length;
  if (ats > 1) throw new PackagesError("invalid module name: module path must not contain '@'", 2);
  let module = arg;
  let version = '';
  if (ats === 1) {
    const i = arg.indexOf('@');
    module = arg.slice(0, i);
    version = arg.slice(i + 1);
    if (version === '') throw new PackagesError("invalid module name: version is required after '@'", 2);
  }
  if (module === '') throw new PackagesError('invalid module name: module name is required', 2);
  return { module, version };
}

/** Applies a command's edits to the binary's packages, with Caddy's checks and messages. */
export function planPackages(cmd: PackageCommand, current: Map<string, PluginPackage>, args: string[]): PluginPackage[] {
  const pkgs = new Map(current);
  if (cmd === 'upgrade' && args.length) throw new PackagesError('upgrade takes no package arguments', 2);
  if (cmd !== 'upgrade' && args.length === 0) throw new PackagesError('at least one package name must be specified', 2);
  for (const arg of args) {
    const { module, version } = splitModule(arg);
    if (cmd === 'add-package') {
      const have = pkgs.get(module);
      // Only allow a version to be given if it differs from the present one.
      if (have && (version === '' || have.version === version)) throw new PackagesError(`package is already added: ${module}${have.version ? `@${have.version}` : ''}`);
      pkgs.set(module, { path: module, version });
    } else if (cmd === 'remove-package') {
      if (!pkgs.has(module)) throw new PackagesError(`package is not added: ${module}`);
      pkgs.delete(module);
    }
  }
  return [...pkgs.values()].sort((a, b) => a.path.localeCompare(b.path));
}

export interface TargetPlatform {
  os: string;
  arch: string;
  arm?: string;
}

/** The query Caddy's upgradeBuild sends (`os`, `arch`, `p`...), plus `arm`/`version` when known/asked. */
export function downloadQuery(platform: TargetPlatform, pkgs: PluginPackage[], caddyVersion?: string): string {
  const values: Record<string, string[]> = {
    os: [platform.os],
    arch: [platform.arch],
    p: pkgs.map((p) => (p.version ? `${p.path}@${p.version}` : p.path)),
  };
  if (platform.arch === 'arm' && platform.arm) values.arm = [platform.arm];
  if (caddyVersion) values.version = [caddyVersion];
  if (values.p!.length === 0) delete values.p;
  return goEncodeQuery(values);
}

/** GOOS/GOARCH/GOARM from `caddy build-info` (Go's BuildInfo text); null when absent. */
export function platformFromBuildInfo(text: string): TargetPlatform | null {
  const get = (k: string) => new RegExp(`^build\\s+${k}=(\\S+)\\s*$`, 'm').exec(text)?.[1];
  const os = get('GOOS');
  const arch = get('GOARCH');
  if (!os || !arch) return null;
  const arm = get('GOARM')?.match(/^\d+/)?.[0];
  return { os, arch, ...(arch === 'arm' && arm ? { arm } : {}) };
}

/** Caddy's downloadBuild error text for an HTTP >= 400 answer. */
export function downloadErrorMessage(status: number, body: string): string {
  try {
    const d = JSON.parse(body) as { error?: { message?: unknown; id?: unknown } };
    if (d && typeof d === 'object') {
      const message = typeof d.error?.message === 'string' ? d.error.message : '';
      const id = typeof d.error?.id === 'string' ? d.error.id : '';
      return `download failed: HTTP ${status}: ${message} (id=${id})`;
    }
  } catch {
    /* fall through */
  }
  return `download and error decoding failed: HTTP ${status}: ${body.slice(0, 200).replace(/\s+/g, ' ').trim() || '(empty body)'}`;
}

// ---- running the binary -----------------------------------------------------------------------

async function runCaddy(bin: string, args: string[], timeoutMs = 60_000): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileP(bin, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL', windowsHide: true });
  } catch (err) {
    const e = err as Error & { stderr?: string; code?: number | string; killed?: boolean };
    const detail = e.killed ? `timed out after ${timeoutMs} ms` : `${e.code ?? ''} ${(e.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || e.message}`.trim();
    throw new PackagesError(`${bin} ${args.join(' ')} failed: ${detail}`);
  }
}

export async function findCaddy(explicit?: string): Promise<string> {
  if (explicit) return resolve(explicit);
  const exe = process.platform === 'win32' ? 'caddy.exe' : 'caddy';
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir || '.', exe);
    try {
      await access(p, fsc.X_OK);
      return resolve(p);
    } catch {
      /* next */
    }
  }
  throw new PackagesError('no caddy binary on PATH; name it with --caddy PATH', 2);
}

// ---- HTTP -------------------------------------------------------------------------------------

/** A plain GET like Go's http.Get: no timeout (builds can be slow), up to 10 redirects. */
function httpGet(url: URL, redirects = 0, origin = url.origin): Promise<IncomingMessage> {
  const mod = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
  if (!mod) return Promise.reject(new PackagesError(`unsupported server URL ${url.href}`, 2));
  // The token (FAIRWAY_TOKEN) goes to the Fairway server only, never to a redirect target (a presigned store URL).
  const token = process.env.FAIRWAY_TOKEN;
  const auth = token && url.origin === origin ? { authorization: `Bearer ${token}` } : {};
  return new Promise((resolvePromise, reject) => {
    const req = mod.get(url, { headers: { 'user-agent': 'fairway-cli/0.1.0', accept: '*/*', ...auth } }, (res) => {
      const s = res.statusCode ?? 0;
      if (s >= 300 && s < 400 && s !== 304 && res.headers.location) {
        res.resume();
        if (redirects >= 10) return reject(new PackagesError(`stopped after 10 redirects at ${url.href}`));
        return resolvePromise(httpGet(new URL(res.headers.location, url), redirects + 1, origin));
      }
      resolvePromise(res);
    });
    req.on('error', (err) => reject(new PackagesError(`secure request failed: cannot reach ${url.origin}: ${err.message}`, 3)));
  });
}

async function readBody(res: IncomingMessage, max = 1024 * 1024): Promise<string> {
  let out = '';
  for await (const chunk of res) {
    if (out.length < max) out += (chunk as Buffer).toString('utf8');
  }
  return out;
}

// ---- the command ------------------------------------------------------------------------------

export interface PackageOptions {
  server: string;
  caddy?: string;
  keepBackup?: boolean;
  /** Pin Caddy's version (sent as `version=`); default: the server's latest, as caddyserver.com. */
  caddyVersion?: string;
  /** Print the download URL and stop. */
  dryRun?: boolean;
  /** upgrade only: install the recipe's promoted set (GET /api/recipes/NAME) instead of the binary's own plugins. */
  recipe?: string;
  /** PEM file of the key builds must be signed with (else FAIRWAY_PUBLIC_KEY); none: provenance is not checked. */
  publicKey?: string;
  env?: NodeJS.ProcessEnv;
  stdout?: (s: string) => void;
  stderr?: (s: string) => void;
}

export interface PackageResult {
  url: string;
  path: string;
  packages: PluginPackage[];
  backup?: string;
  replaced: boolean;
}

type Say = (msg: string) => void;

/** The real file behind the named caddy (a symlink's target is what gets replaced). */
async function targetExecutable(caddy: string | undefined, info: Say): Promise<{ exe: string; mode: number; uid: number; gid: number }> {
  const named = await findCaddy(caddy);
  let exe: string;
  try {
    exe = await realpath(named);
  } catch (err) {
    throw new PackagesError(`cannot use ${named}: ${errorMessage(err)}`, 2);
  }
  if (exe !== resolve(named)) info(`${named} is a symlink; replacing its target ${exe}`);
  const st = await stat(exe);
  info(`this executable will be replaced: ${exe}`);
  return { exe, mode: st.mode, uid: st.uid, gid: st.gid };
}

/** What the binary has, the way Caddy's getModules/getPluginPackages sees it, and its platform. */
async function inspectCaddy(exe: string, info: Say): Promise<{ current: Map<string, PluginPackage>; platform: TargetPlatform }> {
  let current: Map<string, PluginPackage>;
  try {
    const { stdout } = await runCaddy(exe, ['list-modules', '--packages', '--versions', '--skip-standard']);
    current = pluginPackages(parseListModulesText(stdout));
  } catch (err) {
    throw new PackagesError(`unable to enumerate installed plugins: ${errorMessage(err)}`);
  }
  const version = (await runCaddy(exe, ['version']).catch(() => ({ stdout: '' }))).stdout.trim().split(/\s+/)[0];
  if (version) info(`current version: ${version}`);
  const platform: TargetPlatform = platformFromBuildInfo((await runCaddy(exe, ['build-info']).catch(() => ({ stdout: '' }))).stdout) ?? hostPlatform();
  return { current, platform };
}

/** Caddy's /api/download request on the given server. */
function downloadUrl(server: string, platform: TargetPlatform, pkgs: PluginPackage[], caddyVersion: string | undefined): URL {
  let base: URL;
  try {
    base = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `http://${server}`);
  } catch {
    throw new PackagesError(`--server: "${server}" is not a URL (like http://build.example.com:8080)`, 2);
  }
  return new URL(`api/download?${downloadQuery(platform, pkgs, caddyVersion)}`, base.href.replace(/\/*$/, '/'));
}

/**
 * Downloads to `tmp` (next to the target: same filesystem) with the target's mode and owner;
 * refused without a matching sha256. Returns the sha256 and the build id the server named (`X-Fairway-Build`).
 */
async function downloadVerified(url: URL, tmp: string, target: { mode: number; uid: number; gid: number }): Promise<{ sha256: string; build: string | null }> {
  const res = await httpGet(url);
  const status = res.statusCode ?? 0;
  if (status >= 400) throw new PackagesError(`download failed: ${downloadErrorMessage(status, await readBody(res))}`);
  let expectedSum: string;
  try {
    // Refused like `fairway build`: no X-Checksum-Sha256, no binary.
    expectedSum = expectedSha256(res.headers['x-checksum-sha256']);
  } catch (err) {
    res.destroy();
    throw new PackagesError(`unable to download file: ${errorMessage(err)}`);
  }
  const fh = await open(tmp, 'wx', target.mode & 0o777);
  try {
    const lengthHeader = res.headers['content-length'];
    await receiveVerified(res, fh, { sha256: expectedSum, length: lengthHeader === undefined ? null : Number(lengthHeader), complete: () => res.complete });
  } catch (err) {
    if (err instanceof DownloadVerifyError) throw new PackagesError(`unable to download file: ${err.message}`);
    throw err;
  } finally {
    await fh.close();
  }
  await chmod(tmp, target.mode & 0o7777);
  if (process.getuid?.() === 0 && (target.uid !== 0 || target.gid !== 0)) await chown(tmp, target.uid, target.gid).catch(() => undefined);
  const build = res.headers['x-fairway-build'];
  return { sha256: expectedSum, build: typeof build === 'string' && isCacheKey(build.trim()) ? build.trim() : null };
}

/** The downloaded binary's provenance (from the server that sent it), signed by `pinned`, names its sha256; before it is run or swapped in. */
async function checkDownloadProvenance(download: URL, got: { sha256: string; build: string | null }, pinned: ClientKey, info: Say): Promise<void> {
  if (!got.build) throw new PackagesError('provenance check failed: the server named no build for the download (no X-Fairway-Build header), so its provenance cannot be fetched; not installing it');
  // Next to the download on the same server: <base>/api/download -> <base>/api/builds/<id>/provenance.
  const url = new URL(`builds/${got.build}/provenance`, download);
  const res = await httpGet(url);
  const status = res.statusCode ?? 0;
  const text = await readBody(res, 64 * 1024 * 1024);
  if (status >= 400) throw new PackagesError(`provenance check failed: ${downloadErrorMessage(status, text).replace(/^download failed: /, `GET ${url.pathname}: `)}; not installing it`);
  let envelope: unknown;
  try {
    envelope = JSON.parse(text);
  } catch {
    throw new PackagesError(`provenance check failed: GET ${url.pathname} did not answer JSON; not installing it`);
  }
  try {
    const v = checkBinaryProvenance(envelope, pinned, got.sha256);
    info(`provenance verified: ${v.subject.name} sha256 ${got.sha256.slice(0, 16)}…, build ${got.build.slice(0, 12)}, signed by key ${pinned.fingerprint.slice(0, 16)} (${pinned.source})`);
  } catch (err) {
    if (err instanceof ProvenanceCheckError) throw new PackagesError(`${err.message}; not installing it`);
    throw err;
  }
}

/** Runs the new binary before the old one is touched (Caddy runs these after the swap). */
async function checkNewBinary(tmp: string, pkgs: PluginPackage[], out: Say, info: Say): Promise<void> {
  out('\nModule versions:\n\n');
  const listed = await runCaddy(tmp, ['list-modules', '--packages', '--versions', '--skip-standard']).catch((err: Error) => {
    throw new PackagesError(`download succeeded, but unable to execute 'caddy list-modules': ${err.message}`);
  });
  out(listed.stdout);
  out('\nVersion:\n');
  const ver = await runCaddy(tmp, ['version']).catch((err: Error) => {
    throw new PackagesError(`download succeeded, but unable to execute 'caddy version': ${err.message}`);
  });
  out(`${ver.stdout.trim()}\n\n`);
  const got = pluginPackages(parseListModulesText(listed.stdout));
  for (const p of pkgs) {
    if (!got.has(p.path)) info(`warning: ${p.path} registers no Caddy modules in the new binary (an adapter or command only?); a later upgrade cannot see it`);
  }
}

/** Backup as `backup` (a hard link: the target never disappears), then one atomic rename; the original comes back when the new one fails to run. */
async function swapIn(exe: string, tmp: string, backup: string, info: Say, state: { swapped: boolean }): Promise<void> {
  await unlink(backup).catch(() => undefined);
  try {
    await link(exe, backup);
  } catch {
    await copyFile(exe, backup);
  }
  info(`backed up the current executable to ${backup}`);
  await rename(tmp, exe);
  state.swapped = true;
  try {
    await runCaddy(exe, ['version']);
  } catch (err) {
    try {
      await rename(backup, exe);
    } catch (err2) {
      throw new PackagesError(`the new binary failed after the swap (${errorMessage(err)}) and restoring the original failed (${errorMessage(err2)}); restore ${backup} to ${exe} by hand`);
    }
    throw new PackagesError(`the new binary failed after the swap (${errorMessage(err)}); restored the original from ${backup}`);
  }
}

/**
 * `upgrade --recipe NAME`: the recipe's promoted set (the newest Caddy promoted, or
 * `caddyVersion`'s), which replaces the binary's own plugins; says what it adds and drops.
 */
async function recipeSet(server: string, name: string, caddyVersion: string | undefined, current: Map<string, PluginPackage>, info: Say): Promise<{ pkgs: PluginPackage[]; caddyVersion: string }> {
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(name)) throw new PackagesError(`recipe name ${JSON.stringify(name.slice(0, 80))}: use [a-z0-9][a-z0-9-]{0,63}`, 2);
  const res = await httpGet(new URL(`/api/recipes/${name}`, server));
  const body = await readBody(res);
  if ((res.statusCode ?? 0) >= 400) throw new PackagesError(`recipe ${name}: ${downloadErrorMessage(res.statusCode ?? 0, body)}`);
  let promoted: Array<{ caddyVersion: string; plugins: Array<{ module: string; version: string }> }>;
  try {
    promoted = (JSON.parse(body) as { upstream: { promoted: typeof promoted } }).upstream.promoted;
  } catch {
    throw new PackagesError(`recipe ${name}: the server's answer is not a recipe with its promoted sets (is ${server} a Fairway server?)`);
  }
  const want = caddyVersion && caddyVersion !== 'latest' ? (caddyVersion.startsWith('v') ? caddyVersion : `v${caddyVersion}`) : null;
  const set = want ? promoted.find((p) => p.caddyVersion === want) : promoted[0];
  if (!set) {
    const have = promoted.map((p) => p.caddyVersion).join(', ') || 'none yet';
    throw new PackagesError(
      `recipe ${name} has no promoted set${want ? ` for Caddy ${want}` : ''} (promoted: ${have}); the server promotes a set once it built and passed its checks (GET /api/recipes/${name})`,
    );
  }
  const pkgs = set.plugins.map((p) => ({ path: p.module, version: p.version })).sort((a, b) => a.path.localeCompare(b.path));
  const dropped = [...current.keys()].filter((m) => !pkgs.some((p) => p.path === m));
  info(
    `recipe ${name}: Caddy ${set.caddyVersion} with ${pkgs.map((p) => `${p.path}@${p.version}`).join(' ') || 'no plugins'}${dropped.length ? `; drops ${dropped.join(' ')} (not in the recipe)` : ''}`,
  );
  return { pkgs, caddyVersion: set.caddyVersion };
}

export async function runPackageCommand(cmd: PackageCommand, args: string[], o: PackageOptions): Promise<PackageResult> {
  const out = o.stdout ?? ((s: string) => process.stdout.write(s));
  const log = o.stderr ?? ((s: string) => process.stderr.write(s));
  const info = (msg: string) => log(`fairway: ${msg}\n`);

  let pinned: ClientKey | null;
  try {
    pinned = await clientPublicKey(o.publicKey, o.env ?? process.env);
  } catch (err) {
    if (err instanceof ProvenanceCheckError) throw new PackagesError(err.message, err.exitCode);
    throw err;
  }
  const target = await targetExecutable(o.caddy, info);
  const { exe } = target;
  const { current, platform } = await inspectCaddy(exe, info);
  const fromRecipe = o.recipe ? await recipeSet(o.server, o.recipe, o.caddyVersion, current, info) : null;
  const pkgs = fromRecipe ? fromRecipe.pkgs : planPackages(cmd, current, args);
  const url = downloadUrl(o.server, platform, pkgs, fromRecipe ? fromRecipe.caddyVersion : o.caddyVersion);
  info(
    `requesting build os=${platform.os} arch=${platform.arch}${platform.arm ? ` arm=${platform.arm}` : ''} packages=[${pkgs.map((p) => (p.version ? `${p.path}@${p.version}` : p.path)).join(' ')}]`,
  );
  if (o.dryRun) {
    out(`${url.href}\n`);
    return { url: url.href, path: exe, packages: pkgs, replaced: false };
  }

  const tmp = `${exe}.download-${randomBytes(4).toString('hex')}`;
  const backup = `${exe}.tmp`;
  const state = { swapped: false };
  try {
    info(`build acquired; writing ${tmp}`);
    const got = await downloadVerified(url, tmp, target);
    if (pinned) await checkDownloadProvenance(url, got, pinned, info);
    else info(PROVENANCE_NOT_CHECKED);
    await checkNewBinary(tmp, pkgs, out, info);
    await swapIn(exe, tmp, backup, info, state);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    if (!state.swapped) await unlink(backup).catch(() => undefined);
    throw err;
  }
  if (!o.keepBackup) {
    await unlink(backup).catch((err: Error) => info(`warning: upgrade succeeded, but unable to clean up backup binary ${backup}: ${err.message}`));
  } else {
    info(`skipped cleaning up the backup file ${backup}`);
  }
  info('upgrade successful; please restart any running Caddy instances');
  return { url: url.href, path: exe, packages: pkgs, ...(o.keepBackup ? { backup } : {}), replaced: true };
}

/** Registers the three commands on the `fairway` program. */
export function registerPackageCommands(program: Command): void {
  const common = (c: Command) =>
    c
      .option('--server <url>', 'Fairway server (env FAIRWAY_SERVER, default http://127.0.0.1:8080)')
      .option('--caddy <path>', 'the caddy binary to replace (default: caddy on PATH)')
      .option('-k, --keep-backup', 'keep the backed up binary (<caddy>.tmp) instead of deleting it')
      .option('--caddy-version <version>', "Caddy version to build (default: the server's latest, like caddyserver.com)")
      .option('--dry-run', 'print the download URL Caddy would request and stop')
      .option('--public-key <file>', 'install only a binary whose provenance is signed by this key (PEM) and names its sha256 (env FAIRWAY_PUBLIC_KEY)');
  const action =
    (cmd: PackageCommand) =>
    async (...a: unknown[]) => {
      const args = cmd === 'upgrade' ? [] : (a[0] as string[]);
      const opts = (cmd === 'upgrade' ? a[0] : a[1]) as { server?: string; caddy?: string; keepBackup?: boolean; caddyVersion?: string; dryRun?: boolean; publicKey?: string; recipe?: string };
      try {
        await runPackageCommand(cmd, args, {
          server: opts.server ?? process.env.FAIRWAY_SERVER ?? 'http://127.0.0.1:8080',
          ...(opts.caddy ? { caddy: opts.caddy } : {}),
          keepBackup: !!opts.keepBackup,
          ...(opts.caddyVersion ? { caddyVersion: opts.caddyVersion } : {}),
          dryRun: !!opts.dryRun,
          ...(opts.recipe ? { recipe: opts.recipe } : {}),
          ...(opts.publicKey ? { publicKey: opts.publicKey } : {}),
        });
      } catch (err) {
        const code = err instanceof PackagesError ? err.exitCode : 1;
        process.stderr.write(`Error: ${errorMessage(err)}\n`);
        process.exit(code);
      }
    };
  common(program.command('upgrade'))
    .option('--recipe <name>', "install the recipe's promoted set (what its image tags serve) instead of the binary's own plugins (docs/recipes.md)")
    .description("replace a local caddy binary with a Fairway build of the same plugins (like `caddy upgrade`), or of a recipe's promoted set")
    .action(action('upgrade'));
  common(program.command('add-package').argument('<module...>', 'Go module path, optionally @version'))
    .description('replace a local caddy binary with a Fairway build that adds packages (like `caddy add-package`)')
    .action(action('add-package'));
  common(program.command('remove-package').argument('<module...>', 'Go module path'))
    .description('replace a local caddy binary with a Fairway build without packages (like `caddy remove-package`)')
    .action(action('remove-package'));
}
