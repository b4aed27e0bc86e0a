/**
 * The one place that starts untrusted work: the Go toolchain (which downloads and compiles
 * strangers' modules) and every run of a built binary (whose plugins' init code runs at start).
 *
 * `bwrap` (bubblewrap, Debian's package; the sandbox Flatpak uses) gives each command fresh
 * mount, PID, network, IPC and UTS namespaces: it sees the OS's /usr read-only, a private /tmp,
 * its own /proc (no server process in it), and only the paths the caller names. Its network
 * namespace has nothing but loopback; a go command that needs modules gets the module relay
 * (./modproxy.ts) bridged to 127.0.0.1 inside by socat, and nothing else. The environment is the
 * caller's allowlisted one. Identity: when Fairway runs as root, bwrap sets up the namespaces and
 * the command drops to the dedicated build user (`buildUser`, default `fairway-build`) with
 * setpriv (no capabilities, no_new_privs, no supplementary groups); otherwise bwrap runs
 * unprivileged in a user namespace of its own.
 *
 * Kernel limits (./seccomp.ts, ./limits.ts; docs/SECURITY.md "Kernel limits"): a seccomp filter
 * of Fairway's own (`--seccomp`), no nested user namespaces, `/tmp` and `/dev/shm` of a fixed size
 * with the sandbox's root and /dev read-only, /etc/ssl/certs only, and per command a cgroup with
 * memory, task and CPU-weight limits (rlimits where no cgroup can be made) plus RLIMIT_FSIZE. A
 * limit that is hit fails the command, named (SandboxRunError.limits, limitHits()).
 *
 * `none` runs commands directly (still with the clean environment); it is an explicit, loudly
 * logged opt-out for machines where no sandbox can run.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chown, lstat, mkdir, readlink } from 'node:fs/promises';
import type { PrivateModules } from '../util/goprivate.js';
import { dirname, isAbsolute, posix } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import {
  classifyHits,
  DEFAULT_LIMITS,
  detectLimits,
  formatBytes,
  limitedArgv,
  limitsFor,
  type CommandCgroup,
  type LimitHit,
  type LimitProfile,
  type LimitsHost,
  type LimitTools,
  type SandboxLimits,
} from './limits.js';
import { parseGoproxy, startModuleRelay, type ModuleRelay, type Upstream } from './modproxy.js';
import { seccompArchOf, seccompBytes } from './seccomp.js';
import { resolve as resolvePath } from 'node:path';
import { isUnder, realPathOf } from '../util/realpath.js';
import { errorMessage } from '../util/errors.js';

export { parseGoproxy, type Upstream } from './modproxy.js';

const execFileP = promisify(execFile);

export type SandboxKind = 'bwrap' | 'none';
/** `none`: loopback only. `modules`: loopback plus the module relay (go commands that download). */
export type SandboxNetwork = 'none' | 'modules';

export interface SandboxCommand {
  /** argv[0] must be an absolute path. */
  argv: readonly string[];
  /** A host directory, bound read-write at the same path; absent: a private /tmp inside. */
  cwd?: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Host files or directories visible read-only at the same path. */
  readOnly?: readonly string[];
  /** Host directories visible read-write at the same path (owned by the build identity). */
  writable?: readonly string[];
  network: SandboxNetwork;
  /**
   * Shared build cache (docs/distributed.md): the host path of the Go cache server's unix socket.
   * Only toolchain (build) commands carry it: it is bound at GOCACHE_SOCKET inside and named by
   * FAIRWAY_GOCACHE_SOCKET. Commands that run a built binary never get it.
   */
  goCacheSocket?: string;
  /**
   * The resource limits it runs under (docs/SECURITY.md "Resource limits"): `toolchain` (default;
   * go commands: buildMemoryMax, buildTasksMax, buildTmpfsSize) or `binary` (a run of a built
   * binary: runMemoryMax, runTasksMax, runTmpfsSize).
   */
  limits?: LimitProfile;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** A sandboxed command that failed: its exit, output and whether the timeout killed it. */
export class SandboxRunError extends Error {
  constructor(
    message: string,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stdout: string,
    readonly stderr: string,
    readonly killed: boolean,
    /** The resource limits the command hit (it failed because of them). */
    readonly limits: readonly LimitHit[] = [],
  ) {
    super(message);
    this.name = 'SandboxRunError';
  }
}

export class SandboxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SandboxError';
  }
}

export interface Sandbox {
  readonly kind: SandboxKind;
  /** uid/gid the commands run as, when Fairway drops to a build user (running as root). */
  readonly identity: { uid: number; gid: number; user: string } | null;
  /** What start-up logs: kind, identity, relayed proxies. */
  describe(): Record<string, unknown>;
  /** Starts a command; stop it with kill(), which ends everything it started. */
  spawn(cmd: SandboxCommand, stdio?: 'pipe' | 'ignore-stdin'): ChildProcess;
  /**
   * Signals a spawned command and everything it started. bwrap: the namespace's pid 1 (the
   * command itself, a session of its own) and its bwrap; SIGKILL to pid 1 ends the whole PID
   * namespace. The build user's uid change clears the parent-death signal, so killing bwrap alone
   * would leave the sandbox running.
   */
  kill(child: ChildProcess, signal?: NodeJS.Signals): void;
  /** The host PID that stands for the whole sandbox (its pid 1, a process group leader), once known. */
  pidOf(child: ChildProcess): Promise<number | null>;
  /**
   * The resource limits a spawned command hit, known once it has ended (its cgroup's counters, or
   * its exit and last output under rlimits). `output`: its last lines, for the rlimit case.
   */
  limitHits(child: ChildProcess, output?: string): Promise<LimitHit[]>;
  /** Runs a command to its end; rejects with SandboxRunError on a non-zero exit or the timeout. */
  run(cmd: SandboxCommand, o?: { timeoutMs?: number; maxBuffer?: number }): Promise<RunResult>;
  /** Creates a directory owned by the build identity (for its work dirs and caches). */
  ownedDir(path: string): Promise<void>;
  /** Gives every file under these directories to the build identity (caches made by another user). */
  handOver(dirs: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export interface SandboxOptions {
  kind: SandboxKind;
  /** Build user when running as root: a name or `uid:gid`. */
  buildUser: string;
  /** The operator's GOPROXY (undefined: Go's default); relayed to `modules` commands. */
  goproxy?: string;
  /** fleet module proxy: relayed before the GOPROXY proxies, with its own headers (docs/distributed.md). */
  fleetUpstream?: Upstream;
  /** Private module patterns (GONOPROXY/GONOSUMDB, default GOPRIVATE; src/util/goprivate.ts): the relay never asks a proxy for them. */
  privateModules?: PrivateModules;
  logger?: Logger;
  bwrapBin?: string;
  socatBin?: string;
  setprivBin?: string;
  /** The command that installs the sandbox's OS parts, named in errors (default `npm run setup`; a package: `fairway setup`). */
  setupCommand?: string;
  /** Resource limits per profile (default DEFAULT_LIMITS). */
  limits?: SandboxLimits;
  /** `auto`: a cgroup per command where one can be made, else rlimits; `rlimits`: never cgroups (the sandboxLimits setting). */
  limitsMechanism?: 'auto' | 'rlimits';
  /** The cgroup file system's root (tests: a fake tree); default /sys/fs/cgroup. */
  cgroupRoot?: string;
}

/** Where the relay socket and its bridge appear inside the sandbox. */
const RELAY_SOCKET = '/run/fairway/goproxy.sock';
const RELAY_PORT = 3128;
/** Where the Go cache server's socket appears inside a build sandbox (shared build cache). */
export const GOCACHE_SOCKET = '/run/fairway/gocache.sock';
export const GOCACHE_SOCKET_ENV = 'FAIRWAY_GOCACHE_SOCKET';
export const SANDBOX_GOPROXY = `http://127.0.0.1:${RELAY_PORT}`;

/**
 * Inside a `modules` sandbox: start socat (as the build user), wait until it listens (read from
 * this namespace's /proc/net/tcp, so no probe connection), then become the command.
 */
const BRIDGE_SCRIPT = [
  `"$FAIRWAY_SOCAT" -lf /dev/null TCP-LISTEN:${RELAY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${RELAY_SOCKET} &`,
  'i=0',
  `while ! grep -q ':${RELAY_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do`,
  '  i=$((i+1)); if [ $i -gt 500 ]; then echo "fairway sandbox: the module relay bridge did not start" >&2; exit 97; fi; sleep 0.01',
  'done',
  'unset FAIRWAY_SOCAT PWD OLDPWD',
  'exec "$@"',
].join('\n');

/** /etc/ssl/certs only: /etc/ssl/private holds the host's TLS keys. */
const SYSTEM_RO = ['/usr', '/etc/ssl/certs', '/etc/ca-certificates', '/etc/alternatives'];
/** The host directories every sandboxed command sees (read-only): no secret may live under them. */
export const SANDBOX_VISIBLE_PATHS: readonly string[] = SYSTEM_RO;
/**
 * The directory of SANDBOX_VISIBLE_PATHS (or of `extra`: the Go cache dir builds write, GOROOT,
 * the xcaddy binary) that a path lies under, or null: a secret (the signing key, the config or
 * auth file) must never be readable by a build. Compared as written and by real path (every
 * symlink resolved, as bubblewrap resolves a bind's source), so a key that is a symlink into a
 * bound directory, or a bound directory that is a symlink to the key's, counts as visible. A path
 * that does not exist yet is compared by the real path of its deepest existing ancestor.
 */
export function sandboxVisibleParent(path: string, extra: readonly string[] = []): string | null {
  const written = resolvePath(path);
  const real = realPathOf(path);
  for (const dir of [...SANDBOX_VISIBLE_PATHS, ...extra]) {
    if (isUnder(written, resolvePath(dir)) || isUnder(real, realPathOf(dir))) return dir;
  }
  return null;
}
const SYSTEM_LINKS = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

type SystemMount = { kind: 'ro'; path: string } | { kind: 'link'; path: string; target: string };

async function systemMounts(): Promise<SystemMount[]> {
  const out: SystemMount[] = [];
  for (const p of [...SYSTEM_RO, ...SYSTEM_LINKS]) {
    const st = await lstat(p).catch(() => null);
    if (!st) continue;
    if (st.isSymbolicLink()) out.push({ kind: 'link', path: p, target: await readlink(p) });
    else if (st.isDirectory()) out.push({ kind: 'ro', path: p });
  }
  return out;
}

const under = (path: string, root: string) => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);

export interface BwrapPlan {
  system: SystemMount[];
  identity: { uid: number; gid: number } | null;
  setprivBin: string;
  socatBin: string;
  relaySocket?: string;
  /** tmpfs sizes (/tmp, /dev/shm) per profile; absent: bwrap's default (half the RAM). */
  tmpfs?: Record<LimitProfile, number>;
  /** The fd bwrap reads the seccomp filter from (absent: no filter). */
  seccompFd?: number;
}

/** The bwrap argument vector for one command (exported for tests). */
export function bwrapArgs(cmd: SandboxCommand, plan: BwrapPlan): string[] {
  for (const p of [cmd.argv[0] ?? '', ...(cmd.readOnly ?? []), ...(cmd.writable ?? []), ...(cmd.cwd ? [cmd.cwd] : [])]) {
    if (!isAbsolute(p) || posix.normalize(p) !== p || p.includes('\0')) throw new SandboxError(`sandbox: "${p}" is not a clean absolute path`);
  }
  const args = ['--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  // No nested user namespaces: bwrap caps them in the sandbox's own user namespace (unprivileged
  // mode) and checks it did; as root (no user namespace of its own, the build user has no
  // capabilities) the seccomp filter refuses CLONE_NEWUSER in both modes.
  if (!plan.identity) args.push('--unshare-user', '--disable-userns', '--assert-userns-disabled');
  if (plan.seccompFd !== undefined) args.push('--seccomp', String(plan.seccompFd));
  // --as-pid-1: the command itself is the namespace's init, so when it exits the kernel kills
  // everything it left behind (socat, a plugin's daemon). bwrap's own reaper would wait for them.
  args.push('--as-pid-1', '--die-with-parent', '--new-session', '--hostname', 'fairway-sandbox');
  const roots: string[] = [];
  const created = new Set<string>(['/']);
  for (const m of plan.system) {
    if (m.kind === 'link') args.push('--symlink', m.target, m.path);
    else {
      // Parents made 0755 (/etc for /etc/ssl/certs), so the build user can walk to it.
      for (const d of ancestors(m.path)) {
        if (created.has(d)) continue;
        args.push('--perms', '0755', '--dir', d);
        created.add(d);
      }
      args.push('--ro-bind', m.path, m.path);
      roots.push(m.path);
    }
  }
  // /tmp and /dev/shm: tmpfs of a fixed size (bwrap's default is half the RAM). Binds under /tmp
  // need their parent dirs made (0755, or bwrap makes them 0700).
  const tmpfs = plan.tmpfs?.[cmd.limits ?? 'toolchain'];
  const sized = tmpfs ? ['--size', String(tmpfs)] : [];
  args.push('--proc', '/proc', '--dev', '/dev', '--perms', '01777', ...sized, '--tmpfs', '/dev/shm', '--perms', '01777', ...sized, '--tmpfs', '/tmp');
  const ensureParents = (target: string) => {
    const chain: string[] = [];
    for (let d = dirname(target); !created.has(d); d = dirname(d)) {
      if (roots.some((r) => under(d, r))) break;
      chain.unshift(d);
    }
    for (const d of chain) {
      args.push('--perms', '0755', '--dir', d);
      created.add(d);
    }
  };
  const binds: Array<{ path: string; rw: boolean }> = [
    ...(cmd.readOnly ?? []).map((path) => ({ path, rw: false })),
    ...[...(cmd.writable ?? []), ...(cmd.cwd ? [cmd.cwd] : [])].map((path) => ({ path, rw: true })),
  ];
  // Parents before children; a path already covered by a system mount is not bound again.
  binds.sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  const bound = new Set<string>();
  for (const b of binds) {
    if (bound.has(b.path) || (!b.rw && roots.some((r) => under(b.path, r) && SYSTEM_RO.includes(r)))) continue;
    ensureParents(b.path);
    args.push(b.rw ? '--bind' : '--ro-bind', b.path, b.path);
    bound.add(b.path);
    roots.push(b.path);
  }
  if (cmd.network === 'modules') {
    if (!plan.relaySocket) throw new SandboxError('sandbox: no module relay for a command that downloads modules');
    ensureParents(RELAY_SOCKET);
    args.push('--ro-bind', plan.relaySocket, RELAY_SOCKET);
  }
  // shared build cache: the cache server's socket, for toolchain commands that name it.
  if (cmd.goCacheSocket) {
    if (!isAbsolute(cmd.goCacheSocket) || posix.normalize(cmd.goCacheSocket) !== cmd.goCacheSocket) throw new SandboxError(`sandbox: "${cmd.goCacheSocket}" is not a clean absolute path`);
    ensureParents(GOCACHE_SOCKET);
    args.push('--ro-bind', cmd.goCacheSocket, GOCACHE_SOCKET);
  }
  // The sandbox's own root and /dev (tmpfs of bwrap's default size) read-only: only /tmp,
  // /dev/shm and the named binds are writable.
  args.push('--remount-ro', '/dev', '--remount-ro', '/');
  args.push('--chdir', cmd.cwd ?? '/tmp');
  args.push('--');
  if (plan.identity) {
    args.push(plan.setprivBin, `--reuid=${plan.identity.uid}`, `--regid=${plan.identity.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--');
  }
  if (cmd.network === 'modules') args.push('/bin/sh', '-c', BRIDGE_SCRIPT, 'fairway-sandbox');
  args.push(...cmd.argv);
  return args;
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let d = dirname(path); d !== '/'; d = dirname(d)) out.unshift(d);
  return out;
}

/** The environment a `modules` command gets: GOPROXY is the relay, private modules skip the checksum database only. */
function relayEnv(env: Readonly<Record<string, string | undefined>>, socatBin: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  const nosum = [out.GONOSUMDB, out.GOPRIVATE].filter((x): x is string => !!x).join(',');
  delete out.GOPRIVATE;
  delete out.GONOPROXY;
  if (nosum) out.GONOSUMDB = nosum;
  out.GOPROXY = SANDBOX_GOPROXY;
  out.FAIRWAY_SOCAT = socatBin;
  return out;
}

function cleanEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) out[k] = v;
  return out;
}

async function which(name: string, given?: string): Promise<string> {
  if (given) {
    if (
      await lstat(given).then(
        () => true,
        () => false,
      )
    )
      return given;
    throw new SandboxError(`sandbox: ${name} not found at ${given}`);
  }
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/usr/local/bin']) {
    const p = `${dir}/${name}`;
    if (
      await lstat(p).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  throw new SandboxError(`sandbox: ${name} not found`);
}

async function lookupUser(spec: string, setup: string): Promise<{ uid: number; gid: number; user: string }> {
  const m = /^([0-9]+):([0-9]+)$/.exec(spec);
  if (m) return { uid: Number(m[1]), gid: Number(m[2]), user: spec };
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(spec)) throw new SandboxError(`buildUser "${spec}" is not a user name or uid:gid`);
  try {
    const [u, g] = await Promise.all([execFileP('id', ['-u', spec]), execFileP('id', ['-g', spec])]);
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()), user: spec };
  } catch {
    throw new SandboxError(
      `the build user "${spec}" does not exist. Create it with \`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${spec}\` (\`${setup}\` does this), or set buildUser`,
    );
  }
}

/** Kills a process group; quiet when it is already gone. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* gone */
  }
}

abstract class BaseSandbox implements Sandbox {
  abstract readonly kind: SandboxKind;
  abstract readonly identity: { uid: number; gid: number; user: string } | null;
  abstract describe(): Record<string, unknown>;
  abstract spawn(cmd: SandboxCommand, stdio?: 'pipe' | 'ignore-stdin'): ChildProcess;
  abstract kill(child: ChildProcess, signal?: NodeJS.Signals): void;
  abstract pidOf(child: ChildProcess): Promise<number | null>;
  abstract limitHits(child: ChildProcess, output?: string): Promise<LimitHit[]>;

  run(cmd: SandboxCommand, o: { timeoutMs?: number; maxBuffer?: number } = {}): Promise<RunResult> {
    const max = o.maxBuffer ?? 64 * 1024 * 1024;
    return new Promise((resolve, reject) => {
      const child = this.spawn(cmd, 'ignore-stdin');
      let stdout = '';
      let stderr = '';
      let killed = false;
      const timer = setTimeout(() => {
        killed = true;
        this.kill(child);
        // Whatever still holds the pipes is killed with the namespace; do not wait on it.
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, o.timeoutMs ?? 120_000);
      child.stdout!.setEncoding('utf8').on('data', (c: string) => {
        if (stdout.length < max) stdout += c;
      });
      child.stderr!.setEncoding('utf8').on('data', (c: string) => {
        if (stderr.length < max) stderr += c;
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new SandboxRunError(`could not start ${cmd.argv[0]}: ${err.message}`, null, null, stdout, stderr, false));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.kill(child);
        void this.limitHits(child, `${stderr.slice(-4096)}\n${stdout.slice(-1024)}`).then((hits) => {
          if (code === 0 && !killed && hits.length === 0) return resolve({ stdout, stderr });
          // A limit that was hit fails the command, even one that went on and exited 0.
          const what = hits.length
            ? hits.map((h) => h.message).join('; ')
            : killed
              ? `timed out after ${o.timeoutMs ?? 120_000} ms`
              : code !== null
                ? `exited with code ${code}`
                : `was killed by ${signal}`;
          reject(
            new SandboxRunError(
              `${cmd.argv.slice(0, 3).join(' ')} ${hits.length ? 'failed: ' : ''}${what}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`,
              code,
              signal,
              stdout,
              stderr,
              killed,
              hits,
            ),
          );
        });
      });
    });
  }

  async ownedDir(path: string): Promise<void> {
    await mkdir(path, { recursive: true });
    if (this.identity) await chown(path, this.identity.uid, this.identity.gid);
  }

  async handOver(dirs: readonly string[]): Promise<void> {
    // Made in every mode: bwrap cannot bind a directory that does not exist.
    await Promise.all(dirs.map((d) => mkdir(d, { recursive: true })));
    if (!this.identity || dirs.length === 0) return;
    await execFileP('chown', ['-R', `${this.identity.uid}:${this.identity.gid}`, '--', ...dirs], { timeout: 30 * 60_000 });
  }

  async close(): Promise<void> {}
}

class BwrapSandbox extends BaseSandbox {
  readonly kind = 'bwrap' as const;

  constructor(
    private readonly bwrapBin: string,
    private readonly plan: BwrapPlan,
    readonly identity: { uid: number; gid: number; user: string } | null,
    private readonly relay: ModuleRelay,
    private readonly dropped: string[],
    private readonly limitsHost: LimitsHost,
    private readonly limits: SandboxLimits,
    private readonly tools: LimitTools,
    private readonly seccomp: Buffer | null,
    private readonly extraGroups: number[],
  ) {
    super();
  }

  describe(): Record<string, unknown> {
    return {
      sandbox: 'bwrap',
      buildIdentity: this.identity ? `${this.identity.user} (uid ${this.identity.uid}, gid ${this.identity.gid})` : `uid ${process.getuid?.()} in a user namespace`,
      moduleProxies: this.relay.upstreams.map((u) => u.url),
      ...(this.dropped.length ? { notRelayed: this.dropped } : {}),
      ...describeLimits(this.limitsHost, this.limits, this.seccomp !== null, this.identity !== null),
      ...(this.extraGroups.length ? { supplementaryGroups: this.extraGroups } : {}),
    };
  }

  private readonly inner = new WeakMap<
    ChildProcess,
    {
      pid: number | null;
      wanted: NodeJS.Signals | null;
      known: Promise<number | null>;
      ended: Promise<{ code: number | null; signal: NodeJS.Signals | null; events?: { oomKills: number; pidsMax: number } }>;
      profile: LimitProfile;
    }
  >();

  spawn(cmd: SandboxCommand, stdio: 'pipe' | 'ignore-stdin' = 'ignore-stdin'): ChildProcess {
    const profile = cmd.limits ?? 'toolchain';
    const limits = limitsFor(profile, this.limits, this.limitsHost.mechanism);
    // --info-fd 3: bwrap tells the host PID of the sandbox's pid 1, the handle kill() needs.
    // --seccomp 4: the filter, written into a pipe bwrap reads to its end.
    const inner = [this.bwrapBin, '--info-fd', '3', ...bwrapArgs(cmd, this.plan)];
    const env = cmd.network === 'modules' ? relayEnv(cmd.env, this.plan.socatBin) : cleanEnv(cmd.env);
    if (cmd.goCacheSocket) env[GOCACHE_SOCKET_ENV] = GOCACHE_SOCKET; // shared build cache
    let cgroup: CommandCgroup | undefined;
    if (this.limitsHost.mechanism !== 'rlimits') {
      try {
        cgroup = this.limitsHost.create(limits);
      } catch (err) {
        throw new SandboxError(`sandbox: cannot make the command's cgroup (${errorMessage(err)}); the cgroup tree changed since start: restart Fairway, or set sandboxLimits=rlimits`);
      }
    }
    const argv = limitedArgv(inner, { mechanism: this.limitsHost.mechanism, cpuWeighted: !this.limitsHost.priority.startsWith('nice'), limits, tools: this.tools, ...(cgroup ? { cgroup } : {}) });
    const fds: Array<'pipe' | 'ignore'> = [stdio === 'pipe' ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe', ...(this.seccomp ? (['pipe'] as const) : [])];
    const child = spawn(argv[0]!, argv.slice(1), { env, detached: true, stdio: fds });
    if (this.seccomp) {
      const w = child.stdio[4] as NodeJS.WritableStream | null;
      w?.on('error', () => undefined);
      w?.end(this.seccomp);
    }
    let settle: (pid: number | null) => void = () => undefined;
    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; events?: { oomKills: number; pidsMax: number } }>((resolve) => {
      const finish = async (code: number | null, signal: NodeJS.Signals | null) => {
        if (!cgroup) return resolve({ code, signal });
        const events = await cgroup.events().catch(() => ({ oomKills: 0, pidsMax: 0 }));
        resolve({ code, signal, events });
        await cgroup.remove().catch(() => undefined);
      };
      child.once('close', (code, signal) => void finish(code, signal));
      child.once('error', () => void finish(null, null));
    });
    const entry = { pid: null as number | null, wanted: null as NodeJS.Signals | null, known: new Promise<number | null>((r) => (settle = r)), ended, profile };
    this.inner.set(child, entry);
    const info = child.stdio[3] as NodeJS.ReadableStream | null;
    let text = '';
    info?.setEncoding('utf8');
    info?.on('data', (chunk: string) => {
      text += chunk;
      const m = /"child-pid"\s*:\s*([0-9]+)/.exec(text);
      if (!m || entry.pid !== null) return;
      entry.pid = Number(m[1]);
      settle(entry.pid);
      if (entry.wanted) this.kill(child, entry.wanted);
    });
    info?.on('error', () => undefined);
    child.once('close', () => settle(entry.pid));
    return child;
  }

  kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
    const entry = this.inner.get(child);
    if (entry) {
      entry.wanted ??= signal;
      if (signal === 'SIGKILL') entry.wanted = 'SIGKILL';
      // The sandbox's pid 1 leads its own session and process group.
      if (entry.pid !== null) killGroup(entry.pid, signal);
    }
    killGroup(child.pid, signal);
  }

  pidOf(child: ChildProcess): Promise<number | null> {
    return this.inner.get(child)?.known ?? Promise.resolve(null);
  }

  async limitHits(child: ChildProcess, output = ''): Promise<LimitHit[]> {
    const entry = this.inner.get(child);
    if (!entry) return [];
    const end = await entry.ended;
    return classifyHits({ profile: entry.profile, limits: limitsFor(entry.profile, this.limits, this.limitsHost.mechanism), mechanism: this.limitsHost.mechanism, ...end, output });
  }

  override async close(): Promise<void> {
    await this.relay.close();
  }
}

class NoSandbox extends BaseSandbox {
  readonly kind = 'none' as const;
  readonly identity = null;

  describe(): Record<string, unknown> {
    return { sandbox: 'none', warning: "plugin code runs with this server's user, files and network" };
  }

  spawn(cmd: SandboxCommand, stdio: 'pipe' | 'ignore-stdin' = 'ignore-stdin'): ChildProcess {
    const env = cleanEnv(cmd.env);
    if (cmd.goCacheSocket) env[GOCACHE_SOCKET_ENV] = cmd.goCacheSocket; // shared build cache
    return spawn(cmd.argv[0]!, cmd.argv.slice(1), { cwd: cmd.cwd ?? '/tmp', env, detached: true, stdio: [stdio === 'pipe' ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  }

  kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
    killGroup(child.pid, signal);
  }

  pidOf(child: ChildProcess): Promise<number | null> {
    return Promise.resolve(child.pid ?? null);
  }

  limitHits(): Promise<LimitHit[]> {
    return Promise.resolve([]);
  }
}

/** What start-up and `fairway doctor` say about the limits in force. */
function describeLimits(host: LimitsHost, limits: SandboxLimits, seccomp: boolean, root: boolean): Record<string, unknown> {
  const one = (p: LimitProfile) => {
    const l = limits[p];
    return `memory ${formatBytes(l.memoryBytes)}, ${l.tasks} tasks, tmpfs ${formatBytes(l.tmpfsBytes)}, files up to ${formatBytes(l.fileBytes)}`;
  };
  return {
    limits: host.mechanism,
    limitsDetail: host.detail,
    priority: host.priority,
    goCommandLimits: one('toolchain'),
    binaryRunLimits: one('binary'),
    seccomp: seccomp ? 'on (Fairway filter)' : 'off (no filter for this architecture)',
    nestedUserNamespaces: root ? 'denied (seccomp)' : 'denied (bwrap --disable-userns, seccomp)',
  };
}

export const NO_SANDBOX_WARNING =
  "SANDBOX OFF (sandbox=none): plugin code from every build runs with this server's user, environment, files and network. Use only on a machine where that is acceptable; install bubblewrap and socat (scripts/sandbox.sh) to turn it on";

const fix = (setup: string) =>
  `run \`${setup}\` (it installs bubblewrap and socat: \`apt-get install bubblewrap socat\`), or start with \`--sandbox none\` to build without a sandbox (unsafe: plugin code then runs with the server's privileges)`;

/** Opens the configured sandbox and proves it works by running a command in it. */
export async function openSandbox(o: SandboxOptions): Promise<Sandbox> {
  if (o.kind === 'none') {
    o.logger?.warn({ sandbox: 'none' }, NO_SANDBOX_WARNING);
    return new NoSandbox();
  }
  if (process.platform !== 'linux') throw new SandboxError(`the build sandbox (bubblewrap) needs Linux; on ${process.platform} start with --sandbox none (unsafe)`);
  let bwrapBin: string;
  let socatBin: string;
  try {
    [bwrapBin, socatBin] = await Promise.all([which('bwrap', o.bwrapBin), which('socat', o.socatBin)]);
  } catch (err) {
    throw new SandboxError(`builds cannot start: ${errorMessage(err)}. To fix: ${fix(o.setupCommand ?? 'npm run setup')}`);
  }
  const root = process.getuid?.() === 0;
  const identity = root ? await lookupUser(o.buildUser, o.setupCommand ?? 'npm run setup') : null;
  if (identity && identity.uid === 0) throw new SandboxError(`buildUser "${o.buildUser}" is root; builds must run as an unprivileged user`);
  const setprivBin = root
    ? await which('setpriv', o.setprivBin).catch(() => {
        throw new SandboxError('builds cannot start: setpriv (util-linux) not found; it drops the build to the build user');
      })
    : '';
  const { upstreams, dropped } = parseGoproxy(o.goproxy);
  // Go's default list ends in "direct": saying so once is enough; anything else dropped is a warning.
  if (dropped.length) {
    const level = dropped.every((d) => d === 'direct') ? 'info' : 'warn';
    o.logger?.[level]({ notRelayed: dropped }, 'sandboxed builds fetch modules from the GOPROXY proxies only; "direct" (VCS) and entries after "off" are not available to them');
  }
  // fleet module proxy: first in the list, falling through to the operator's proxies.
  let lastRefusal = 0;
  const relayed = o.fleetUpstream ? [o.fleetUpstream, ...upstreams] : upstreams;
  const relay = await startModuleRelay({
    upstreams: relayed,
    ...(o.privateModules ? { private: o.privateModules } : {}),
    onPrivate: (module, pattern, via) => o.logger?.warn({ module, pattern, via }, 'module relay: refused a private module (GONOPROXY/GONOSUMDB/GOPRIVATE); no proxy was asked'),
    onError: (err, path) => o.logger?.warn({ err: err.message, path }, 'module relay: upstream request failed'),
    onRefused: (upstream, status, path) => {
      // At most once a minute: a refused token would otherwise log every module request.
      if (Date.now() - lastRefusal < 60_000) return;
      lastRefusal = Date.now();
      o.logger?.warn({ upstream, status, path }, 'module relay: the fleet module proxy refused a request (a token without the agent scope, or the hub is failing); fetching from the next proxy');
    },
  });
  const limits = o.limits ?? DEFAULT_LIMITS;
  const plan: BwrapPlan = {
    system: await systemMounts(),
    identity,
    setprivBin,
    socatBin,
    relaySocket: relay.socketPath,
    tmpfs: { toolchain: limits.toolchain.tmpfsBytes, binary: limits.binary.tmpfsBytes },
  };
  const arch = seccompArchOf();
  const seccomp = arch ? seccompBytes() : null;
  if (seccomp) plan.seccompFd = 4;
  else o.logger?.warn({ arch: process.arch }, 'no seccomp filter for this architecture (x86_64 and aarch64 have one): sandboxed commands run without it');
  let tools: LimitTools;
  try {
    const [sh, prlimit, nice, ionice] = await Promise.all([which('sh'), which('prlimit'), which('nice').catch(() => undefined), which('ionice').catch(() => undefined)]);
    tools = { sh, prlimit, ...(nice ? { nice } : {}), ...(ionice ? { ionice } : {}) };
  } catch (err) {
    await relay.close();
    throw new SandboxError(`builds cannot start: ${errorMessage(err)} (prlimit is in util-linux: \`apt-get install util-linux\`); it sets the sandbox's file-size and fallback limits`);
  }
  const limitsHost = detectLimits({ prefer: o.limitsMechanism ?? 'auto', ...(o.cgroupRoot ? { root: o.cgroupRoot } : {}) });
  if (limitsHost.mechanism === 'rlimits') {
    o.logger?.warn(
      { limits: 'rlimits', why: limitsHost.detail },
      'sandboxed commands get rlimits only (RLIMIT_AS, and RLIMIT_NPROC shared by every process of the build uid), not a cgroup of their own: run as root, or from the systemd units (Delegate=) on a cgroup v2 host (docs/SECURITY.md "Kernel limits")',
    );
  }
  // Unprivileged mode: the kernel keeps the server's supplementary groups in the sandbox's user
  // namespace (setgroups is denied there); as root, setpriv --clear-groups drops them.
  const extraGroups = root ? [] : (process.getgroups?.() ?? []).filter((g) => g !== process.getgid?.());
  if (extraGroups.length) {
    o.logger?.warn(
      { supplementaryGroups: extraGroups },
      "this server's user has supplementary groups, which sandboxed commands keep (an unprivileged user namespace cannot drop them): run Fairway as a user in no other group (the systemd units' `fairway` user), or as root with a build user",
    );
  }
  const sandbox = new BwrapSandbox(bwrapBin, plan, identity, relay, dropped, limitsHost, limits, tools, seccomp, extraGroups);
  try {
    // The bridge starts, and the command runs as the build identity with nothing in its
    // namespace above it: it is pid 1 itself (no root process it could reach); the seccomp
    // filter is in force (Seccomp: 2) and no_new_privs set.
    const probe = await sandbox.run(
      {
        argv: [
          '/bin/sh',
          '-c',
          "id -u; sed -n 's/^Uid:[[:space:]]*\\([0-9]*\\).*/\\1/p' /proc/1/status; sed -n 's/^Seccomp:[[:space:]]*//p' /proc/self/status; sed -n 's/^NoNewPrivs:[[:space:]]*//p' /proc/self/status",
        ],
        env: { PATH: '/usr/bin:/bin' },
        network: 'modules',
      },
      { timeoutMs: 20_000 },
    );
    const [uid, init, seccompMode, nnp] = probe.stdout.trim().split('\n');
    if (identity && Number(uid) !== identity.uid) throw new Error(`the command ran as uid ${uid}, not ${identity.uid}`);
    if (identity && Number(init) !== identity.uid) throw new Error(`the sandbox's pid 1 runs as uid ${init}, not as the build user`);
    if (seccomp && seccompMode !== '2') throw new Error(`the seccomp filter is not in force in the sandbox (Seccomp: ${seccompMode})`);
    if (nnp !== '1') throw new Error(`no_new_privs is not set in the sandbox (NoNewPrivs: ${nnp})`);
  } catch (err) {
    await relay.close();
    const detail = err instanceof SandboxRunError ? err.stderr.trim().split('\n').slice(-2).join(' | ') || err.message : errorMessage(err);
    throw new SandboxError(
      `builds cannot start: the bubblewrap sandbox does not work here (${detail}). ` +
        (root ? '' : 'Unprivileged bubblewrap needs user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0), or run Fairway as root with a build user. ') +
        `To fix: ${fix(o.setupCommand ?? 'npm run setup')}`,
    );
  }
  o.logger?.info(sandbox.describe(), 'build sandbox ready');
  return sandbox;
}
