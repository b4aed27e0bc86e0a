/**
 * The two sandboxes: BwrapSandbox (bubblewrap, the limits and seccomp filter in force, the module
 * relay bridged in) and NoSandbox (`none`: direct runs with the clean environment only).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { errorMessage } from '../util/errors.js';
import { type BwrapPlan, bwrapArgs, GOCACHE_SOCKET, GOCACHE_SOCKET_ENV, SANDBOX_GOPROXY } from './bwrap.js';
import { classifyHits, formatBytes, limitedArgv, limitsFor, type CommandCgroup, type LimitHit, type LimitProfile, type LimitsHost, type LimitTools, type SandboxLimits } from './limits.js';
import type { ModuleRelay } from './modproxy.js';
import { BaseSandbox, killGroup } from './run.js';
import { SandboxError, type SandboxCommand } from './types.js';

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

export class BwrapSandbox extends BaseSandbox {
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
    const cpuWeighted = !this.limitsHost.priority.startsWith('nice');
    const argv = limitedArgv(inner, { mechanism: this.limitsHost.mechanism, cpuWeighted, limits, tools: this.tools, cgroup });
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
    const mechanism = this.limitsHost.mechanism;
    return classifyHits({ profile: entry.profile, limits: limitsFor(entry.profile, this.limits, mechanism), mechanism, ...end, output });
  }

  override async close(): Promise<void> {
    await this.relay.close();
  }
}

export class NoSandbox extends BaseSandbox {
  readonly kind = 'none' as const;
  readonly identity = null;

  describe(): Record<string, unknown> {
    return { sandbox: 'none', warning: "plugin code runs with this server's user, files and network" };
  }

  spawn(cmd: SandboxCommand, stdio: 'pipe' | 'ignore-stdin' = 'ignore-stdin'): ChildProcess {
    const env = cleanEnv(cmd.env);
    if (cmd.goCacheSocket) env[GOCACHE_SOCKET_ENV] = cmd.goCacheSocket; // shared build cache
    const stdin = stdio === 'pipe' ? 'pipe' : 'ignore';
    return spawn(cmd.argv[0]!, cmd.argv.slice(1), { cwd: cmd.cwd ?? '/tmp', env, detached: true, stdio: [stdin, 'pipe', 'pipe'] });
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
