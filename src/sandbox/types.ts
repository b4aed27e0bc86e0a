/** The sandbox's interface (./index.ts opens one): commands, results, errors and the Sandbox itself. */
import type { ChildProcess } from 'node:child_process';
import type { LimitHit, LimitProfile } from './limits.js';

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
