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
import type { Logger } from 'pino';
import type { PrivateModules } from '../util/goprivate.js';
import { errorMessage } from '../util/errors.js';
import { type BwrapPlan, systemMounts } from './bwrap.js';
import { lookupUser, which } from './identity.js';
import { DEFAULT_LIMITS, detectLimits, type LimitTools, type SandboxLimits } from './limits.js';
import { parseGoproxy, startModuleRelay, type Upstream } from './modproxy.js';
import { BwrapSandbox, NoSandbox } from './sandboxes.js';
import { seccompArchOf, seccompBytes } from './seccomp.js';
import { SandboxError, SandboxRunError, type Sandbox, type SandboxKind } from './types.js';

export { parseGoproxy, type Upstream } from './modproxy.js';
export { sandboxVisibleParent } from './bwrap.js';
export { killGroup } from './run.js';
export { SandboxRunError, type Sandbox, type SandboxCommand, type SandboxNetwork } from './types.js';

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
    private: o.privateModules,
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
    tools = { sh, prlimit, nice, ionice };
  } catch (err) {
    await relay.close();
    throw new SandboxError(`builds cannot start: ${errorMessage(err)} (prlimit is in util-linux: \`apt-get install util-linux\`); it sets the sandbox's file-size and fallback limits`);
  }
  const limitsHost = detectLimits({ prefer: o.limitsMechanism ?? 'auto', root: o.cgroupRoot });
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
