/**
 * Kernel resource limits for sandboxed commands (docs/SECURITY.md "Resource limits").
 *
 * Each sandboxed command gets its own cgroup where Fairway may create one: cgroup v2 (a delegated
 * subtree: systemd `Delegate=yes`, or root), else cgroup v1's memory and pids hierarchies. Its
 * memory (swap included), its task count (processes and threads) and its CPU weight are set there;
 * a memory limit that is hit makes the kernel's OOM killer end the command (v2: the whole cgroup,
 * memory.oom.group), and the cgroup's event counters say which limit was hit. Where no cgroup can
 * be made, rlimits stand in: RLIMIT_AS for memory, RLIMIT_NPROC for tasks (counted per uid, not
 * per command), nice 10 and the idle I/O class for priority. RLIMIT_FSIZE (file size) and
 * RLIMIT_CORE=0 apply in every mode. tmpfs sizes are bwrap's `--size` (src/sandbox/bwrap.ts).
 *
 * Joining: the command line starts with a tiny /bin/sh that writes its own PID into the cgroup's
 * cgroup.procs files and then execs the rest, so nothing the command starts escapes the cgroup.
 *
 * Everything here takes the cgroup file system's root and the /proc texts as inputs, so both
 * code paths are tested against fake cgroup trees (test/unit/limits.test.ts).
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../util/errors.js';

export type LimitsMechanism = 'cgroup2' | 'cgroup1' | 'rlimits';
/** Which limits a command gets: a go command (toolchain) or a run of a built binary. */
export type LimitProfile = 'toolchain' | 'binary';

export interface ProfileLimits {
  memoryBytes: number;
  tasks: number;
  tmpfsBytes: number;
  fileBytes: number;
}
export type SandboxLimits = Record<LimitProfile, ProfileLimits>;

/** The setting behind each limit, named in the message of a limit that is hit. */
export const LIMIT_SETTINGS: Record<LimitProfile, Record<keyof ProfileLimits, string>> = {
  toolchain: { memoryBytes: 'buildMemoryMax', tasks: 'buildTasksMax', tmpfsBytes: 'buildTmpfsSize', fileBytes: 'buildFileSizeMax' },
  binary: { memoryBytes: 'runMemoryMax', tasks: 'runTasksMax', tmpfsBytes: 'runTmpfsSize', fileBytes: 'runTmpfsSize' },
};

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
export const DEFAULT_LIMITS: SandboxLimits = {
  toolchain: { memoryBytes: 4 * GiB, tasks: 1024, tmpfsBytes: 1 * GiB, fileBytes: 2 * GiB },
  binary: { memoryBytes: 512 * MiB, tasks: 128, tmpfsBytes: 64 * MiB, fileBytes: 64 * MiB },
};

/** cgroup v2 cpu.weight (default 100) and v1 cpu.shares (default 1024) of all sandboxed commands together. */
export const BUILD_CPU_WEIGHT = 10;
export const BUILD_CPU_SHARES = 102;
export const BUILD_NICE = 10;

/** "4 GiB", "512 MiB", "1.5 GiB", "100 KiB", "12 bytes". */
export function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', 1024],
  ] as const) {
    if (n >= size) {
      const v = n / size;
      return `${Number.isInteger(v) ? v : v.toFixed(1)} ${unit}`;
    }
  }
  return `${n} bytes`;
}

export interface LimitHit {
  limit: 'memory' | 'tasks' | 'fileSize';
  value: number;
  setting: string;
  message: string;
}

const WHO: Record<LimitProfile, string> = { toolchain: 'the build', binary: 'the run of the built binary' };

export function limitHit(profile: LimitProfile, limit: LimitHit['limit'], limits: ProfileLimits, how: LimitsMechanism): LimitHit {
  const who = WHO[profile];
  const by = how === 'rlimits' ? 'rlimit' : how === 'cgroup2' ? 'cgroup v2' : 'cgroup v1';
  if (limit === 'memory') {
    const setting = LIMIT_SETTINGS[profile].memoryBytes;
    return { limit, value: limits.memoryBytes, setting, message: `${who} ran out of memory: the sandbox's limit is ${formatBytes(limits.memoryBytes)} (${setting}; ${by})` };
  }
  if (limit === 'tasks') {
    if (how === 'rlimits') {
      // RLIMIT_NPROC counts the uid's processes: every command gets buildTasksMax (rlimitsFor).
      const setting = LIMIT_SETTINGS.toolchain.tasks;
      return {
        limit,
        value: limits.tasks,
        setting,
        message: `${who} reached the task limit of ${limits.tasks} processes and threads of the build uid, shared by all sandboxed commands (${setting}; rlimit)`,
      };
    }
    const setting = LIMIT_SETTINGS[profile].tasks;
    return { limit, value: limits.tasks, setting, message: `${who} reached the sandbox's task limit of ${limits.tasks} processes and threads (${setting}; ${by})` };
  }
  const setting = LIMIT_SETTINGS[profile].fileBytes;
  return { limit, value: limits.fileBytes, setting, message: `${who} wrote a file over the sandbox's file-size limit of ${formatBytes(limits.fileBytes)} (${setting}; rlimit)` };
}

// ---------------------------------------------------------------- detection

export interface CgroupEnv {
  /** Text of /proc/self/cgroup. */
  procSelfCgroup: string;
  /** Text of /proc/self/mountinfo. */
  mountinfo: string;
  /** This process's PID (moved into a leaf on cgroup v2 when its cgroup must delegate controllers). */
  pid: number;
  /** Whether a PID is alive (stale cgroups of dead servers are swept). */
  alive?(pid: number): boolean;
}

export interface Mount {
  point: string;
  fstype: string;
  superOptions: string[];
}

/** The cgroup mounts in a mountinfo text (mount point unescaped). */
export function cgroupMounts(mountinfo: string): Mount[] {
  const out: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fstype = right[0] ?? '';
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const point = (left[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({ point, fstype, superOptions: (right[2] ?? '').split(',') });
  }
  return out;
}

/** /proc/self/cgroup lines: hierarchy id, controllers, path. */
export function ownCgroups(text: string): Array<{ id: string; controllers: string[]; path: string }> {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [id = '', ctl = '', ...rest] = l.split(':');
      return { id, controllers: ctl ? ctl.split(',') : [], path: rest.join(':') };
    });
}

export interface CommandCgroup {
  /** The cgroup.procs files the command's first process writes its PID to. */
  procs: string[];
  /** The kernel's counters: OOM kills and refused forks. */
  events(): Promise<{ oomKills: number; pidsMax: number }>;
  /** Kills whatever is left in it and removes it. */
  remove(): Promise<void>;
}

export interface LimitsHost {
  readonly mechanism: LimitsMechanism;
  /** Why no cgroup (rlimits), or where the cgroups are made. */
  readonly detail: string;
  /** CPU priority: a cgroup weight, or nice + idle I/O class. */
  readonly priority: string;
  /** Makes a cgroup for one command (cgroup mechanisms only). */
  create(limits: ProfileLimits): CommandCgroup;
}

const readText = (p: string) => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};
const writable = (p: string) => {
  try {
    accessSync(p, constants.W_OK);
    return true;
  } catch {
    return false;
  }
};
const counter = (text: string, name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const defaultAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The group all sandboxed commands of every Fairway process share (cpu weight), their own cgroups below it. */
export const BUILDS_GROUP = 'fairway-builds';
/** The leaf a Fairway process moves itself into on cgroup v2 (no processes in a cgroup that delegates controllers). */
export const SERVER_GROUP = 'fairway-server';

let seq = 0;
const commandName = (pid: number) => `${pid}-${++seq}`;

/** Removes a cgroup directory once its processes are gone (they were SIGKILLed): a few tries. */
async function removeDir(dir: string, procsFile: string, kill: () => void): Promise<void> {
  for (let i = 0; i < 50; i++) {
    kill();
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EBUSY: processes still in it (being killed, or zombies being reaped); anything else is final.
      if (code !== 'EBUSY') return;
    }
    if (i > 3) killProcs(procsFile);
    await sleep(20 + i * 10);
  }
}

function killProcs(procsFile: string): void {
  for (const pid of readText(procsFile).split('\n').filter(Boolean).map(Number)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Removes command cgroups left by Fairway processes that are gone (killing what is still inside). */
function sweepStale(base: string, alive: (pid: number) => boolean, procsOf: (dir: string) => string, killAll: (dir: string) => void): void {
  let names: string[] = [];
  try {
    names = readdirSync(base, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^([0-9]+)-[0-9]+$/.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    const dir = join(base, name);
    killAll(dir);
    void removeDir(dir, procsOf(dir), () => killAll(dir));
  }
}

/** cgroup v2: a delegated subtree where this process may enable memory and pids for its children. */
function tryCgroup2(root: string, env: CgroupEnv): LimitsHost | string {
  const mount = cgroupMounts(env.mountinfo).find((m) => m.fstype === 'cgroup2' && m.point.startsWith(root));
  if (!mount) return 'no cgroup v2 mount';
  const own = ownCgroups(env.procSelfCgroup).find((c) => c.id === '0');
  if (!own) return 'this process is in no cgroup v2 group';
  const dir = join(mount.point, own.path);
  const controllers = readText(join(dir, 'cgroup.controllers')).trim().split(/\s+/);
  const missing = ['memory', 'pids'].filter((c) => !controllers.includes(c));
  if (missing.length) return `cgroup v2 ${dir} has no ${missing.join(' or ')} controller (delegate them: systemd Delegate=yes)`;
  if (!writable(dir) || !writable(join(dir, 'cgroup.subtree_control'))) return `cgroup v2 ${dir} is not writable by this user (systemd: Delegate=yes in the unit)`;
  const cpu = controllers.includes('cpu');
  const want = ['memory', 'pids', ...(cpu ? ['cpu'] : [])];
  const enable = (d: string) => {
    const have = readText(join(d, 'cgroup.subtree_control')).trim().split(/\s+/);
    const add = want.filter((c) => !have.includes(c));
    if (add.length) writeFileSync(join(d, 'cgroup.subtree_control'), add.map((c) => `+${c}`).join(' '));
  };
  try {
    const procs = readText(join(dir, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
    const isRoot = own.path === '/' || own.path === '';
    const have = readText(join(dir, 'cgroup.subtree_control')).trim().split(/\s+/);
    // "No internal processes": a cgroup that delegates controllers holds no process itself, so
    // this process moves into a leaf first, when it is alone there. The root of a cgroup
    // namespace (a container's "/") may be the real root, which is exempt: tried as it is first.
    const moveIntoLeaf = (): string | null => {
      const others = procs.filter((p) => p !== env.pid);
      if (others.length) return `cgroup v2 ${dir} holds other processes (${others.slice(0, 5).join(', ')}): start Fairway in a cgroup of its own (systemd Delegate=yes)`;
      mkdirSync(join(dir, SERVER_GROUP), { recursive: true });
      writeFileSync(join(dir, SERVER_GROUP, 'cgroup.procs'), String(env.pid));
      return null;
    };
    if (procs.length > 0 && want.some((c) => !have.includes(c))) {
      if (!isRoot) {
        const why = moveIntoLeaf();
        if (why) return why;
        enable(dir);
      } else {
        try {
          enable(dir);
        } catch {
          const why = moveIntoLeaf();
          if (why) return why;
          enable(dir);
        }
      }
    } else enable(dir);
    const base = join(dir, BUILDS_GROUP);
    mkdirSync(base, { recursive: true });
    enable(base);
    if (cpu) writeFileSync(join(base, 'cpu.weight'), String(BUILD_CPU_WEIGHT));
    const killAll = (d: string) => {
      if (existsSync(join(d, 'cgroup.kill'))) {
        try {
          writeFileSync(join(d, 'cgroup.kill'), '1');
          return;
        } catch {
          /* fall through */
        }
      }
      killProcs(join(d, 'cgroup.procs'));
    };
    sweepStale(base, env.alive ?? defaultAlive, (d) => join(d, 'cgroup.procs'), killAll);
    return {
      mechanism: 'cgroup2',
      detail: `cgroup v2 at ${base}`,
      priority: cpu ? `cpu.weight ${BUILD_CPU_WEIGHT} (the server's is 100)` : `nice ${BUILD_NICE}, idle I/O class (no cpu controller)`,
      create(limits) {
        const d = join(base, commandName(env.pid));
        mkdirSync(d);
        writeFileSync(join(d, 'memory.max'), String(limits.memoryBytes));
        if (existsSync(join(d, 'memory.swap.max'))) writeFileSync(join(d, 'memory.swap.max'), '0');
        if (existsSync(join(d, 'memory.oom.group'))) writeFileSync(join(d, 'memory.oom.group'), '1');
        writeFileSync(join(d, 'pids.max'), String(limits.tasks));
        return {
          procs: [join(d, 'cgroup.procs')],
          async events() {
            const [mem, pids] = await Promise.all([readFile(join(d, 'memory.events'), 'utf8').catch(() => ''), readFile(join(d, 'pids.events'), 'utf8').catch(() => '')]);
            return { oomKills: counter(mem, 'oom_kill'), pidsMax: counter(pids, 'max') };
          },
          remove: () => removeDir(d, join(d, 'cgroup.procs'), () => killAll(d)),
        };
      },
    } satisfies LimitsHost;
  } catch (err) {
    return `cgroup v2 ${dir}: ${errorMessage(err)}`;
  }
}

/** cgroup v1: this process's groups in the memory and pids hierarchies (and cpu, when there), writable. */
function tryCgroup1(root: string, env: CgroupEnv): LimitsHost | string {
  const mounts = cgroupMounts(env.mountinfo).filter((m) => m.fstype === 'cgroup' && m.point.startsWith(root));
  const own = ownCgroups(env.procSelfCgroup);
  const dirOf = (ctl: string): string | null => {
    const m = mounts.find((x) => x.superOptions.includes(ctl));
    const c = own.find((x) => x.controllers.includes(ctl));
    return m && c ? join(m.point, c.path) : null;
  };
  const memory = dirOf('memory');
  const pids = dirOf('pids');
  if (!memory || !pids) return `no cgroup v1 ${!memory ? 'memory' : 'pids'} hierarchy`;
  for (const d of [memory, pids]) if (!writable(d)) return `cgroup v1 ${d} is not writable by this user (run as root, or delegate a cgroup v2 subtree)`;
  let cpu = dirOf('cpu');
  if (cpu && (!writable(cpu) || !existsSync(join(cpu, 'cpu.shares')))) cpu = null;
  try {
    const bases = { memory: join(memory, BUILDS_GROUP), pids: join(pids, BUILDS_GROUP), ...(cpu ? { cpu: join(cpu, BUILDS_GROUP) } : {}) };
    for (const b of Object.values(bases)) mkdirSync(b, { recursive: true });
    if (bases.cpu) writeFileSync(join(bases.cpu, 'cpu.shares'), String(BUILD_CPU_SHARES));
    const all = Object.values(bases);
    const killAll = (name: string) => () => {
      for (const b of all) killProcs(join(b, name, 'cgroup.procs'));
    };
    for (const b of all)
      sweepStale(
        b,
        env.alive ?? defaultAlive,
        (d) => join(d, 'cgroup.procs'),
        (d) => killProcs(join(d, 'cgroup.procs')),
      );
    return {
      mechanism: 'cgroup1',
      detail: `cgroup v1 at ${all.join(', ')}`,
      priority: bases.cpu ? `cpu.shares ${BUILD_CPU_SHARES} (the server's is 1024)` : `nice ${BUILD_NICE}, idle I/O class (no cpu hierarchy)`,
      create(limits) {
        const name = commandName(env.pid);
        const dirs = all.map((b) => join(b, name));
        for (const d of dirs) mkdirSync(d);
        const m = join(bases.memory, name);
        writeFileSync(join(m, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // Swap counts too (memsw must not be below the limit: written after it).
        if (existsSync(join(m, 'memory.memsw.limit_in_bytes'))) {
          try {
            writeFileSync(join(m, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes));
          } catch {
            /* swap accounting off */
          }
        }
        writeFileSync(join(bases.pids, name, 'pids.max'), String(limits.tasks));
        return {
          procs: dirs.map((d) => join(d, 'cgroup.procs')),
          async events() {
            const [oom, pidEvents] = await Promise.all([readFile(join(m, 'memory.oom_control'), 'utf8').catch(() => ''), readFile(join(bases.pids, name, 'pids.events'), 'utf8').catch(() => '')]);
            return { oomKills: counter(oom, 'oom_kill'), pidsMax: counter(pidEvents, 'max') };
          },
          async remove() {
            await Promise.all(dirs.map((d) => removeDir(d, join(d, 'cgroup.procs'), killAll(name))));
          },
        };
      },
    } satisfies LimitsHost;
  } catch (err) {
    return `cgroup v1 ${memory}: ${errorMessage(err)}`;
  }
}

class RlimitsHost implements LimitsHost {
  readonly mechanism = 'rlimits' as const;
  readonly priority = `nice ${BUILD_NICE}, idle I/O class`;
  constructor(readonly detail: string) {}
  create(): CommandCgroup {
    throw new Error('no cgroups: rlimits only');
  }
}

/**
 * The mechanism in force here: cgroup v2 if this process can delegate memory and pids to children,
 * else cgroup v1 (memory + pids hierarchies writable), else rlimits. `prefer: 'rlimits'` skips
 * cgroups (the sandboxLimits setting).
 */
export function detectLimits(o: { root?: string; env?: CgroupEnv; prefer?: 'auto' | 'rlimits' } = {}): LimitsHost {
  if (o.prefer === 'rlimits') return new RlimitsHost('rlimits chosen (sandboxLimits=rlimits)');
  if (process.platform !== 'linux' && !o.env) return new RlimitsHost(`no cgroups on ${process.platform}`);
  const root = o.root ?? '/sys/fs/cgroup';
  const env: CgroupEnv = o.env ?? { procSelfCgroup: readText('/proc/self/cgroup'), mountinfo: readText('/proc/self/mountinfo'), pid: process.pid };
  const v2 = tryCgroup2(root, env);
  if (typeof v2 !== 'string') return v2;
  const v1 = tryCgroup1(root, env);
  if (typeof v1 !== 'string') return v1;
  return new RlimitsHost(`no cgroup Fairway may create: ${v2}; ${v1}`);
}

// ---------------------------------------------------------------- the command line

/** The shell that puts itself into the cgroups, then becomes the rest of its arguments. */
export const JOIN_SCRIPT = 'for f do if [ "$f" = -- ]; then shift; exec "$@"; fi; echo $$ > "$f" || { echo "fairway sandbox: cannot join the cgroup $f" >&2; exit 125; }; shift; done; exit 125';

export interface LimitTools {
  sh: string;
  prlimit: string;
  nice?: string;
  ionice?: string;
}

/**
 * The argument vector that runs `inner` (bwrap and its arguments) under the limits: cgroup join,
 * lower priority where no cgroup weight applies, rlimits.
 */
export function limitedArgv(inner: readonly string[], o: { mechanism: LimitsMechanism; cpuWeighted: boolean; limits: ProfileLimits; tools: LimitTools; cgroup?: CommandCgroup }): string[] {
  const out: string[] = [];
  if (o.cgroup) out.push(o.tools.sh, '-c', JOIN_SCRIPT, 'fairway-limits', ...o.cgroup.procs, '--');
  if (!o.cpuWeighted) {
    if (o.tools.nice) out.push(o.tools.nice, '-n', String(BUILD_NICE));
    if (o.tools.ionice) out.push(o.tools.ionice, '-c', '3');
  }
  out.push(o.tools.prlimit, `--fsize=${o.limits.fileBytes}`, '--core=0');
  if (o.mechanism === 'rlimits') out.push(`--as=${o.limits.memoryBytes}`, `--nproc=${o.limits.tasks}`);
  out.push('--', ...inner);
  return out;
}

/**
 * The limits a command gets under a mechanism: under rlimits, RLIMIT_NPROC counts every process
 * of the uid (all builds and runs of the build user; unprivileged, the server's own threads too),
 * so every command gets the go commands' task limit, or a run of a built binary would fail
 * whenever a build runs beside it.
 */
export function limitsFor(profile: LimitProfile, all: SandboxLimits, mechanism: LimitsMechanism): ProfileLimits {
  const l = all[profile];
  return mechanism === 'rlimits' ? { ...l, tasks: Math.max(l.tasks, all.toolchain.tasks) } : l;
}

/** Signal numbers bwrap reports as 128+n when the sandbox's command died of them. */
const SIGXFSZ = 25;

/**
 * Which limits a finished command hit: the cgroup's counters where there is one; otherwise (and
 * for the file size, always an rlimit) the exit status and the command's last words.
 */
export function classifyHits(o: {
  profile: LimitProfile;
  limits: ProfileLimits;
  mechanism: LimitsMechanism;
  events?: { oomKills: number; pidsMax: number };
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}): LimitHit[] {
  const hits: LimitHit[] = [];
  const out = o.output;
  if (o.events) {
    if (o.events.oomKills > 0) hits.push(limitHit(o.profile, 'memory', o.limits, o.mechanism));
    if (o.events.pidsMax > 0) hits.push(limitHit(o.profile, 'tasks', o.limits, o.mechanism));
  } else if (o.mechanism === 'rlimits' && o.code !== 0) {
    if (/\bout of memory\b|cannot allocate memory|std::bad_alloc/i.test(out)) hits.push(limitHit(o.profile, 'memory', o.limits, o.mechanism));
    if (/resource temporarily unavailable|pthread_create failed|fork: retry|cannot fork|newosproc/i.test(out)) hits.push(limitHit(o.profile, 'tasks', o.limits, o.mechanism));
  }
  if (o.code === 128 + SIGXFSZ || o.signal === 'SIGXFSZ' || /file size limit exceeded/i.test(out)) hits.push(limitHit(o.profile, 'fileSize', o.limits, o.mechanism));
  return hits;
}
