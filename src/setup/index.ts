/**
 * `fairway setup` (and the second half of `npm run setup`, scripts/setup.mjs): installs what the
 * npm package cannot carry, into the tools directory (docs/install.md):
 *   - xcaddy at the pinned version (`go install`, GOBIN=<toolsDir>/bin), skipped when it is there;
 *   - fairway-cacheprog (tools/cacheprog, `go build`), again whenever its source changes;
 *   - the build sandbox's OS parts (scripts/sandbox.sh: bubblewrap, socat, the build user as root);
 *   - with `systemdDir`: the systemd units of deploy/systemd with this fairway's path.
 * Idempotent; one line per step says what it found or did.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MIN_GO_VERSION, NODE_ENGINES, NODE_RECOMMENDED, PROJECT_ROOT, XCADDY_MODULE, XCADDY_VERSION } from '../config/index.js';
import { errorMessage } from '../util/errors.js';

export interface SetupOptions {
  /** xcaddy and fairway-cacheprog go to `<toolsDir>/bin`. */
  toolsDir: string;
  /** The go command (default `go` from PATH). */
  goBin?: string;
  /** `none`: the sandbox step is skipped. */
  sandbox?: 'bwrap' | 'none';
  buildUser?: string;
  goproxy?: string;
  /** false: OS packages are only checked, never installed (FAIRWAY_DEPS_SKIP_APT=1). */
  installOsPackages?: boolean;
  /** Also write the systemd units here (and, for /etc/systemd/system, /etc/fairway/fairway.env when absent). */
  systemdDir?: string;
  /** The fairway command the units start (ExecStart): `<node> <dist/main/index.js>`. */
  fairwayBin?: string;
  /** The Node.js version the `node` step checks (default this process's). */
  nodeVersion?: string;
  /** The package (or checkout) folder: tools/cacheprog, scripts/sandbox.sh, deploy/systemd. */
  root?: string;
  env?: NodeJS.ProcessEnv;
  /** One line per step. */
  log: (line: string) => void;
  /** Output of the commands setup runs (go install, sandbox.sh); default: this process's stderr. */
  childOutput?: 'inherit' | 'ignore';
}

export interface SetupStep {
  name: 'node' | 'go' | 'xcaddy' | 'cacheprog' | 'sandbox' | 'systemd';
  ok: boolean;
  detail: string;
}

export interface SetupResult {
  ok: boolean;
  steps: SetupStep[];
}

export const XCADDY_PACKAGE = `${XCADDY_MODULE}@${XCADDY_VERSION}`;
export const SYSTEMD_UNITS = ['fairway-serve.service', 'fairway-hub.service', 'fairway-agent.service'] as const;
/** The ExecStart path written in deploy/systemd (npm's global prefix /usr/local). */
export const UNIT_FAIRWAY_PATH = '/usr/local/bin/fairway';

interface Run {
  code: number | null;
  stdout: string;
  error?: string;
}

function run(cmd: string, args: string[], o: { cwd?: string; env: NodeJS.ProcessEnv; output: 'inherit' | 'ignore' | 'capture' }): Promise<Run> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env, stdio: ['ignore', o.output === 'capture' ? 'pipe' : o.output === 'inherit' ? 2 : 'ignore', o.output === 'inherit' ? 2 : 'ignore'] });
    let stdout = '';
    child.stdout?.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.on('error', (err) => done({ code: null, stdout, error: err.message }));
    child.on('close', (code) => done({ code, stdout }));
  });
}

/** `go1.26.8` → [1, 26]; null when it is not a release version. */
export function goMinor(version: string): [number, number] | null {
  const m = /^go(\d+)\.(\d+)/.exec(version.trim());
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Whether a `go1.x.y` version is at least MIN_GO_VERSION (`1.22`). */
export function goVersionOk(version: string, min = MIN_GO_VERSION): boolean {
  const have = goMinor(version);
  const want = goMinor(`go${min}`);
  if (!have || !want) return false;
  return have[0] > want[0] || (have[0] === want[0] && have[1] >= want[1]);
}

/**
 * Whether a Node.js version (`v24.21.0`, as `process.version`) is on a maintained line:
 * 22.12 or newer in 22, or 24 and newer (NODE_ENGINES). Odd lines after 22 (23, 25) are
 * short-lived and past their end: refused too.
 */
export function nodeVersionOk(version: string): boolean {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!m) return false;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major === 22) return minor >= 12;
  return major >= 24 && major % 2 === 0;
}

/** The doctor's and the start-up's line on this process's Node.js, with the fix when it is not maintained. */
export function nodeRuntimeCheck(version = process.version): { ok: boolean; detail: string; fix?: string } {
  if (nodeVersionOk(version)) return { ok: true, detail: `Node.js ${version} at ${process.execPath} (maintained: ${NODE_ENGINES})` };
  return {
    ok: false,
    detail: `Node.js ${version} at ${process.execPath} is past its end of life (no security fixes); Fairway needs ${NODE_ENGINES}`,
    fix: `install Node.js ${NODE_RECOMMENDED} LTS (docs/install.md "Node.js": NodeSource's node_${NODE_RECOMMENDED}.x apt repository or the official tarball) and run fairway with it; in a checkout, npm start and npm test use the pinned node devDependency`,
  };
}

/** The version `xcaddy version` prints first, or null when it is missing or does not run. */
export async function xcaddyVersionAt(bin: string, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const r = await run(bin, ['version'], { env, output: 'capture' });
  return r.code === 0 ? (r.stdout.trim().split(/\s+/)[0] ?? null) : null;
}

/** sha256 of tools/cacheprog's go.mod and .go files: the stamp next to the built program. */
export async function cacheprogSourceHash(root = PROJECT_ROOT): Promise<string> {
  const src = join(root, 'tools', 'cacheprog');
  const hash = createHash('sha256');
  for (const f of (await readdir(src)).sort()) if (f.endsWith('.go') || f === 'go.mod') hash.update(`${f}\0`).update(await readFile(join(src, f)));
  return hash.digest('hex');
}

const exists = (p: string) =>
  access(p, constants.F_OK).then(
    () => true,
    () => false,
  );

/** The units of deploy/systemd with `fairwayBin` as their ExecStart command. */
export function unitText(template: string, fairwayBin: string): string {
  return template.split(UNIT_FAIRWAY_PATH).join(fairwayBin);
}

export async function runSetup(o: SetupOptions): Promise<SetupResult> {
  const root = o.root ?? PROJECT_ROOT;
  const env = o.env ?? process.env;
  const bin = join(resolve(o.toolsDir), 'bin');
  const output = o.childOutput ?? 'inherit';
  const goBin = o.goBin ?? 'go';
  const steps: SetupStep[] = [];
  const step = (name: SetupStep['name'], ok: boolean, detail: string) => {
    steps.push({ name, ok, detail });
    o.log(`${name}: ${ok ? '' : 'FAILED: '}${detail}`);
  };
  // Go builds the tools with the operator's caches, never the server's.
  const goEnv: NodeJS.ProcessEnv = { ...env, GOTOOLCHAIN: 'local', CGO_ENABLED: '0', ...(o.goproxy !== undefined ? { GOPROXY: o.goproxy } : {}) };
  o.log(`tools dir: ${resolve(o.toolsDir)}`);

  // ---- node: the runtime the servers (and the units written below) run on ----
  const node = nodeRuntimeCheck(o.nodeVersion);
  step('node', node.ok, node.ok ? node.detail : `${node.detail}; ${node.fix}`);

  // ---- go ----
  const gv = await run(goBin, ['env', 'GOVERSION'], { env: goEnv, output: 'capture' });
  const goVersion = gv.code === 0 ? gv.stdout.trim() : null;
  if (!goVersion) {
    step('go', false, `${goBin} not found or not runnable (${gv.error ?? `exit ${gv.code}`}); install Go ${MIN_GO_VERSION} or newer (https://go.dev/dl/) and put it on PATH`);
  } else if (!goVersionOk(goVersion)) {
    step('go', false, `${goVersion} is older than go${MIN_GO_VERSION}; install Go ${MIN_GO_VERSION} or newer`);
  } else {
    step('go', true, `${goVersion} (need go${MIN_GO_VERSION} or newer)`);
  }
  const goOk = goVersion !== null && goVersionOk(goVersion);

  // ---- xcaddy ----
  const xcaddy = join(bin, 'xcaddy');
  const have = await xcaddyVersionAt(xcaddy, env);
  if (have === XCADDY_VERSION) step('xcaddy', true, `${XCADDY_VERSION} present at ${xcaddy}`);
  else if (!goOk) step('xcaddy', false, `${XCADDY_VERSION} not installed at ${xcaddy}: needs Go (see above)`);
  else {
    o.log(`xcaddy: installing ${XCADDY_PACKAGE} with go install (have: ${have ?? 'none'})`);
    await mkdir(bin, { recursive: true });
    const r = await run(goBin, ['install', XCADDY_PACKAGE], { env: { ...goEnv, GOBIN: bin }, output });
    const now = r.code === 0 ? await xcaddyVersionAt(xcaddy, env) : null;
    if (now === XCADDY_VERSION) step('xcaddy', true, `${XCADDY_VERSION} installed at ${xcaddy}`);
    else step('xcaddy', false, `go install ${XCADDY_PACKAGE} failed (${r.error ?? `exit ${r.code}`}${r.code === 0 ? `, it reports ${now}` : ''}); is the module proxy (GOPROXY) reachable?`);
  }

  // ---- fairway-cacheprog (only agents with goCacheShared need it) ----
  const prog = join(bin, 'fairway-cacheprog');
  const stamp = `${prog}.source-sha256`;
  const want = await cacheprogSourceHash(root);
  const stamped = await readFile(stamp, 'utf8').then(
    (t) => t.trim(),
    () => null,
  );
  if (stamped === want && (await exists(prog))) step('cacheprog', true, `fairway-cacheprog up to date at ${prog}`);
  else if (!goOk) step('cacheprog', false, `fairway-cacheprog not built at ${prog}: needs Go (see above)`);
  else {
    await mkdir(bin, { recursive: true });
    const r = await run(goBin, ['build', '-trimpath', '-o', prog, '.'], { cwd: join(root, 'tools', 'cacheprog'), env: { ...goEnv, GOFLAGS: '-mod=mod' }, output });
    if (r.code === 0) {
      await writeFile(stamp, `${want}\n`);
      step('cacheprog', true, `fairway-cacheprog built at ${prog} (tools/cacheprog)`);
    } else {
      step('cacheprog', false, `go build of tools/cacheprog failed (${r.error ?? `exit ${r.code}`}); the shared build cache (goCacheShared) is unavailable until it builds`);
    }
  }

  // ---- the sandbox's OS parts ----
  if (o.sandbox === 'none') step('sandbox', true, 'skipped (sandbox none)');
  else {
    const r = await run('bash', [join(root, 'scripts', 'sandbox.sh')], {
      env: { ...env, ...(o.buildUser ? { FAIRWAY_BUILD_USER: o.buildUser } : {}), ...(o.installOsPackages === false ? { FAIRWAY_DEPS_SKIP_APT: '1' } : {}) },
      output,
    });
    if (r.code === 0) step('sandbox', true, 'bubblewrap and socat present; build identity ready (scripts/sandbox.sh, lines above)');
    else step('sandbox', false, `scripts/sandbox.sh failed (${r.error ?? `exit ${r.code}`}, see above); Fairway refuses to build without the sandbox unless started with --sandbox none (unsafe)`);
  }

  // ---- systemd units ----
  if (o.systemdDir !== undefined) {
    try {
      step('systemd', true, await writeUnits(root, resolve(o.systemdDir), o.fairwayBin ?? UNIT_FAIRWAY_PATH));
    } catch (err) {
      step('systemd', false, `could not write the units to ${o.systemdDir}: ${errorMessage(err)}`);
    }
  }
  // The cacheprog is optional (agents with goCacheShared refuse to start without it, naming this step).
  return { ok: steps.every((s) => s.ok || s.name === 'cacheprog'), steps };
}

async function writeUnits(root: string, dir: string, fairwayBin: string): Promise<string> {
  const src = join(root, 'deploy', 'systemd');
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const unit of SYSTEMD_UNITS) {
    const text = unitText(await readFile(join(src, unit), 'utf8'), fairwayBin);
    const dest = join(dir, unit);
    const old = await readFile(dest, 'utf8').catch(() => null);
    if (old !== text) {
      await writeFile(dest, text);
      await chmod(dest, 0o644);
    }
    written.push(`${unit}${old === text ? ' (unchanged)' : ''}`);
  }
  // The environment file: never overwritten (the operator's settings live there).
  const envExample = await readFile(join(src, 'fairway.env.example'), 'utf8');
  const envFile = dir === '/etc/systemd/system' ? '/etc/fairway/fairway.env' : join(dir, 'fairway.env.example');
  let envNote: string;
  if (await exists(envFile)) envNote = `${envFile} kept`;
  else {
    await mkdir(resolve(envFile, '..'), { recursive: true });
    await writeFile(envFile, envExample, { mode: 0o640 });
    envNote = `${envFile} written`;
  }
  // A real install as root: the units' user (not the build user: the service runs bwrap unprivileged).
  let userNote = '';
  if (dir === '/etc/systemd/system' && process.getuid?.() === 0) {
    const id = await run('id', ['-u', 'fairway'], { env: process.env, output: 'capture' });
    if (id.code === 0) userNote = '; user fairway present';
    else {
      const r = await run('useradd', ['--system', '--user-group', '--home-dir', '/var/lib/fairway', '--no-create-home', '--shell', '/usr/sbin/nologin', 'fairway'], {
        env: process.env,
        output: 'inherit',
      });
      if (r.code !== 0) throw new Error(`useradd fairway failed (${r.error ?? `exit ${r.code}`})`);
      userNote = '; user fairway created';
    }
  }
  const st = await stat(fairwayBin).catch(() => null);
  return `${written.join(', ')} in ${dir} (ExecStart ${fairwayBin}${st ? '' : ', which does not exist yet'}); ${envNote}${userNote}; then: systemctl daemon-reload && systemctl enable --now fairway-serve`;
}

/** The setup of a loaded configuration: its tools dir, go command, sandbox kind, build user and GOPROXY. */
export function setupOptionsFrom(
  config: { toolsDir: string; goBin: string; sandbox: 'bwrap' | 'none'; buildUser: string; goproxy?: string | undefined },
  rest: Omit<SetupOptions, 'toolsDir' | 'goBin' | 'sandbox' | 'buildUser' | 'goproxy'>,
): SetupOptions {
  return { toolsDir: config.toolsDir, goBin: config.goBin, sandbox: config.sandbox, buildUser: config.buildUser, ...(config.goproxy !== undefined ? { goproxy: config.goproxy } : {}), ...rest };
}
