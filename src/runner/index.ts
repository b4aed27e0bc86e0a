/**
 * Runs xcaddy for one resolved spec inside the build sandbox (src/sandbox): argument array (never
 * a shell), clean allowlisted environment, its own work dir (the only host dir it may write
 * besides the Go caches), network for module downloads only, a timeout, and the whole sandbox
 * killed on cancel or timeout. Every output line becomes a timestamped log line. The binary is
 * then run (for this host's platform only) in a second sandbox with no network and a read-only
 * view of it: `caddy version` proves it starts, `caddy list-modules` records its module IDs.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, createReadStream, type Stats } from 'node:fs';
import { type FileHandle, lstat, mkdtemp, open, readFile, readdir, readlink, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { killGroup, SandboxRunError, type Sandbox, type SandboxCommand } from '../sandbox/index.js';
import { comparePlugins, hostPlatform, type ResolvedSpec } from '../request/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { copyFromHandle } from '../util/fs.js';
import type { LogStream } from '../util/logline.js';
import { errorMessage } from '../util/errors.js';
import { BINARY_ENV } from './binary.js';

export { validateConfig } from './binary.js';

export type BuildPhase = 'resolving' | 'building' | 'storing';

export interface BuildHooks {
  onLine(stream: LogStream, text: string): void;
  onPhase?(phase: BuildPhase): void;
  signal?: AbortSignal;
}

export interface BuildOutput {
  /** The binary inside `workDir`; the caller stores it, then calls `cleanup()`. */
  binaryPath: string;
  sha256: string;
  size: number;
  goVersion: string;
  /** `go version -m -json` of the binary. */
  buildInfo: unknown;
  durationMs: number;
  /**
   * `caddy list-modules --packages --versions --skip-standard`, as the binary printed it inside
   * the sandbox; absent when it could not run here (another platform) or has no plugins.
   */
  listModules?: string;
  cleanup(): Promise<void>;
}

export class BuildFailed extends Error {
  constructor(
    message: string,
    readonly reason: 'failed' | 'timeout' | 'canceled' | 'too_large',
  ) {
    super(message);
    this.name = 'BuildFailed';
  }
}

export interface BuildRunner {
  run(spec: ResolvedSpec, hooks: BuildHooks): Promise<BuildOutput>;
}

export interface XcaddyRunnerOptions {
  timeoutMs: number;
  /** Artifacts larger than this fail the build. */
  maxArtifactBytes?: number;
  /** Grace between SIGTERM and SIGKILL on cancel/timeout (default 1 s). The command is the sandbox's pid 1, which only a signal it handles reaches: xcaddy (Go) exits on SIGTERM, anything else gets SIGKILL, which ends the whole sandbox. */
  killGraceMs?: number;
  /** Free bytes the build volume needs before xcaddy starts (agents check too); 0 = no check. */
  minFreeBytes?: number;
}

const MAX_LINE = 8192;
const OWNER_FILE = 'owner.json';

/** Who started a build dir's sandbox, with start times so a reused PID is never mistaken for it. */
interface OwnerRecord {
  owner: number;
  ownerStart: string | null;
  pgid: number;
  pgidStart: string | null;
}

/** A process's start time (clock ticks since boot, /proc/<pid>/stat field 22); null if unknown or gone. */
export async function processStartTime(pid: number): Promise<string | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!text) return null;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when `pid` is still the process that was recorded (same start time). */
async function stillRunning(pid: number, start: string | null): Promise<boolean> {
  if (!alive(pid)) return false;
  if (start === null) return true;
  return (await processStartTime(pid)) === start;
}

/**
 * Cleans up after a server or agent that died mid-build (kill -9, power loss). Its sandboxes die
 * with it (bwrap --die-with-parent), but a sandbox whose parent survived may still run: build dirs
 * whose owner is gone get their process group killed, only if that group's leader is still the
 * recorded process (a PID reused by an unrelated process is left alone), and are removed. Dirs of
 * live owners (another agent sharing the cache) are kept.
 */
export async function sweepOrphanBuilds(tmpDir: string): Promise<string[]> {
  const swept: string[] = [];
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    if (!name.startsWith('build-')) continue;
    const dir = join(tmpDir, name);
    const owner = await readFile(join(dir, OWNER_FILE), 'utf8')
      .then((t) => JSON.parse(t) as Partial<OwnerRecord>)
      .catch(() => null);
    const valid = owner && Number.isInteger(owner.owner) && Number.isInteger(owner.pgid) && owner.owner! > 0 && owner.pgid! > 1;
    if (valid && (await stillRunning(owner.owner!, owner.ownerStart ?? null))) continue;
    if (!valid) {
      // No owner file: only sweep when old enough that its spawn cannot be in progress.
      const st = await stat(dir).catch(() => null);
      if (!st || Date.now() - st.mtimeMs < 10 * 60_000) continue;
    } else if (owner.pgidStart && (await processStartTime(owner.pgid!)) === owner.pgidStart) {
      killGroup(owner.pgid!);
    }
    await rm(dir, { recursive: true, force: true });
    swept.push(name);
  }
  return swept;
}

/**
 * The xcaddy command line for a spec, the plugins in the canonical order (`comparePlugins`, the
 * key's order; BUILD_FLAGS): xcaddy's output follows the order of its `--with` flags, so any other
 * order would give other bytes under the same key. Exported for tests and for the benchmarks.
 */
export function xcaddyArgs(spec: ResolvedSpec, output: string): string[] {
  const args = ['build', spec.caddyVersion, '--output', output];
  for (const p of [...spec.plugins].sort(comparePlugins)) {
    let w = p.version ? `${p.module}@${p.version}` : p.module;
    if (p.replace) w += `=${p.replace.kind === 'path' ? p.replace.path : `${p.replace.module}@${p.replace.version}`}`;
    args.push('--with', w);
  }
  return args;
}

export function binaryName(os: string, arch: string): string {
  return `caddy_${os}_${arch}${os === 'windows' ? '.exe' : ''}`;
}

interface Inspection {
  /** The server's copy of the binary (outside the work dir). */
  path: string;
  sha256: string;
  buildInfo: { GoVersion?: string };
  size: number;
  /** The build output it was copied from, as seen through the descriptor. */
  source: Pick<Stats, 'dev' | 'ino' | 'size' | 'mtimeMs' | 'ctimeMs'>;
}

const LIST_MODULES = ['list-modules', '--packages', '--versions', '--skip-standard'];

export class XcaddyRunner implements BuildRunner {
  private readonly sandbox: Sandbox;

  constructor(
    private readonly toolchain: Toolchain,
    private readonly opts: XcaddyRunnerOptions,
  ) {
    this.sandbox = toolchain.sandbox;
  }

  async run(spec: ResolvedSpec, hooks: BuildHooks): Promise<BuildOutput> {
    const started = Date.now();
    if (this.opts.minFreeBytes) {
      const s = await statfs(this.toolchain.tmpDir);
      if (s.bavail * s.bsize < this.opts.minFreeBytes) {
        throw new BuildFailed(`not enough free disk space to build: ${s.bavail * s.bsize} bytes free, ${this.opts.minFreeBytes} needed (minFreeDisk); nothing was written`, 'failed');
      }
    }
    // build-XXXX/ is the server's (with the owner record); build-XXXX/work/ the build identity's.
    const buildDir = await mkdtemp(join(this.toolchain.tmpDir, 'build-'));
    const workDir = join(buildDir, 'work');
    const cleanup = () => rm(buildDir, { recursive: true, force: true });
    try {
      await this.sandbox.ownedDir(workDir);
      const output = join(workDir, binaryName(spec.os, spec.arch));
      const args = xcaddyArgs(spec, output);
      hooks.onLine('system', `fairway: ${spec.os}/${spec.arch}${spec.arm ? ` GOARM=${spec.arm}` : ''} caddy ${spec.caddyVersion} with ${spec.toolchain.go}, xcaddy ${spec.toolchain.xcaddy}`);
      hooks.onLine(
        'system',
        this.sandbox.kind === 'none'
          ? `fairway: WARNING: no sandbox (sandbox=none): this build runs with the server's privileges`
          : `fairway: sandboxed (${this.sandbox.kind}${this.sandbox.identity ? `, as ${this.sandbox.identity.user}` : ''}; network: module downloads only)`,
      );
      hooks.onLine('system', `fairway: xcaddy ${args.map((a) => (a === output ? binaryName(spec.os, spec.arch) : a)).join(' ')}`);
      hooks.onPhase?.('resolving');
      // xcaddy logs "Build complete" once `go build` has written the binary, then cleans up:
      // claim it (copy, hash, build info) meanwhile; after exit it is used only if the output is
      // still the very file it copied, else the output is claimed again.
      let early: Promise<Inspection> | undefined;
      await this.spawnXcaddy(args, spec, buildDir, workDir, hooks, () => {
        early ??= this.claim(output, join(buildDir, `early-${binaryName(spec.os, spec.arch)}`));
        early.catch(() => undefined);
      });
      hooks.onPhase?.('storing');
      // The build identity made the file: it is opened, never followed, and copied (hashed on the
      // way) to a file of the server's, outside the work dir; that copy is what is run and stored.
      const info = await this.claim(output, join(buildDir, binaryName(spec.os, spec.arch)), early);
      const { sha256, buildInfo, size } = info;
      hooks.onLine('system', `fairway: built ${binaryName(spec.os, spec.arch)}: ${size} bytes, sha256 ${sha256}`);
      const binaryPath = info.path;
      const listModules = await this.runBuilt(spec, binaryPath, hooks);
      return {
        binaryPath,
        sha256,
        size,
        goVersion: buildInfo.GoVersion ?? spec.toolchain.go,
        buildInfo,
        durationMs: Date.now() - started,
        ...(listModules !== undefined ? { listModules } : {}),
        cleanup,
      };
    } catch (err) {
      await cleanup();
      throw err;
    }
  }

  /**
   * The only runs of a built binary: on this host's platform, in a sandbox without network,
   * seeing the binary read-only and nothing else of the machine. `version` must succeed (as
   * xcaddy's own check did); `list-modules` is recorded for the catalog when it works.
   */
  private async runBuilt(spec: ResolvedSpec, output: string, hooks: BuildHooks): Promise<string | undefined> {
    const host = hostPlatform();
    if (spec.os !== host.os || spec.arch !== host.arch) {
      hooks.onLine('system', `fairway: not running the binary (built for ${spec.os}/${spec.arch}, this machine is ${host.os}/${host.arch})`);
      return undefined;
    }
    // The built binary's own limits (runMemoryMax, runTasksMax, runTmpfsSize), not the go commands'.
    const cmd = (args: string[]): SandboxCommand => ({ argv: [output, ...args], env: BINARY_ENV, readOnly: [output], network: 'none', limits: 'binary' });
    const emit = (r: { stdout: string; stderr: string }, stdout = true) => {
      if (stdout) for (const l of r.stdout.split('\n').filter(Boolean).slice(0, 200)) hooks.onLine('stdout', l.slice(0, MAX_LINE));
      for (const l of r.stderr.split('\n').filter(Boolean).slice(0, 200)) hooks.onLine('stderr', l.slice(0, MAX_LINE));
    };
    hooks.onLine('system', `fairway: ${binaryName(spec.os, spec.arch)} version (sandboxed: no network, read-only binary)`);
    try {
      emit(await this.sandbox.run(cmd(['version']), { timeoutMs: 30_000, maxBuffer: 1 << 20 }));
    } catch (err) {
      if (err instanceof SandboxRunError) emit(err);
      if (err instanceof SandboxRunError && err.limits.length) throw new BuildFailed(`${err.limits.map((h) => h.message).join('; ')} (caddy version)`, 'failed');
      throw new BuildFailed(`the built binary does not run: ${errorMessage(err)}`, 'failed');
    }
    if (spec.plugins.length === 0) return undefined;
    try {
      const r = await this.sandbox.run(cmd(LIST_MODULES), { timeoutMs: 30_000, maxBuffer: 4 << 20 });
      emit(r, false);
      hooks.onLine('system', `fairway: ${binaryName(spec.os, spec.arch)} ${LIST_MODULES.join(' ')}: ${r.stdout.split('\n').filter(Boolean).length} lines recorded for the catalog`);
      return r.stdout;
    } catch (err) {
      if (err instanceof SandboxRunError) emit(err, false);
      // A resource limit hit by the binary's own code (a plugin's init) fails the build, whichever run it was.
      if (err instanceof SandboxRunError && err.limits.length) throw new BuildFailed(`${err.limits.map((h) => h.message).join('; ')} (caddy ${LIST_MODULES[0]})`, 'failed');
      hooks.onLine('system', `fairway: could not list the binary's modules (${errorMessage(err)}); the catalog learns nothing from this build`);
      return undefined;
    }
  }

  /**
   * Takes the build output (a path in the build identity's work dir) without following anything
   * the build user controls: `openBuildOutput` checks it through its descriptor, the content is
   * copied through that descriptor to `dest` (a new file of the server's, mode 0755) and hashed on
   * the way, and `go version -m -json` reads the copy. The original is never chowned, chmodded or
   * linked. `early`, a claim made while xcaddy was still cleaning up, is used when the output is
   * still the very file it copied (same inode, size, mtime and ctime), else the copy is made again.
   */
  private async claim(output: string, dest: string, early?: Promise<Inspection>): Promise<Inspection> {
    const { fh, st } = await openBuildOutput(output, this.sandbox.identity?.uid ?? process.getuid?.() ?? -1, this.opts.maxArtifactBytes);
    try {
      const before = early ? await early.catch(() => null) : null;
      if (before && sameFile(before.source, st)) return before;
      const { sha256, size } = await copyThrough(fh, st, dest);
      const { stdout } = await this.toolchain.go(['version', '-m', '-json', dest], { readOnly: [dest], timeoutMs: 60_000 });
      return { path: dest, sha256, size, buildInfo: JSON.parse(stdout) as { GoVersion?: string }, source: st };
    } finally {
      await fh.close();
    }
  }

  /**
   * Lets a restarted server stop this build's sandbox if this process dies abruptly: the sandbox
   * outlives its bwrap, so the record names the sandbox's own pid 1 (a group leader).
   */
  private async recordOwner(buildDir: string, child: ChildProcess): Promise<void> {
    try {
      const pid = await this.sandbox.pidOf(child);
      if (!pid) return;
      const [ownerStart, pgidStart] = await Promise.all([processStartTime(process.pid), processStartTime(pid)]);
      await writeFile(join(buildDir, OWNER_FILE), JSON.stringify({ owner: process.pid, ownerStart, pgid: pid, pgidStart } satisfies OwnerRecord));
    } catch {
      // Best effort: without the record, the next start's sweep cannot stop this sandbox if we crash.
    }
  }

  /** Runs xcaddy in the sandbox with the build's log, phases, timeout and cancel; resolves when it succeeded. */
  private spawnXcaddy(args: string[], spec: ResolvedSpec, buildDir: string, workDir: string, hooks: BuildHooks, onBinary: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      if (hooks.signal?.aborted) return reject(new BuildFailed('the build was canceled before it started', 'canceled'));
      const env = this.toolchain.env({ GOOS: spec.os, GOARCH: spec.arch, ...(spec.arm ? { GOARM: spec.arm } : {}), TMPDIR: workDir }, workDir);
      const child = this.sandbox.spawn(this.toolchain.command([this.toolchain.xcaddyBin, ...args], { cwd: workDir, network: 'modules', env }));
      void this.recordOwner(buildDir, child);
      let ending: BuildFailed | null = null;
      let killTimer: NodeJS.Timeout | undefined;
      const stop = (why: BuildFailed) => {
        if (ending) return;
        ending = why;
        hooks.onLine('system', `fairway: ${why.message}; stopping xcaddy and its children`);
        this.sandbox.kill(child, 'SIGTERM');
        killTimer = setTimeout(() => this.sandbox.kill(child, 'SIGKILL'), this.opts.killGraceMs ?? 1000);
      };
      const timer = setTimeout(() => stop(new BuildFailed(`the build took longer than the timeout of ${Math.round(this.opts.timeoutMs / 1000)}s`, 'timeout')), this.opts.timeoutMs);
      const onAbort = () => stop(new BuildFailed('the build was canceled', 'canceled'));
      hooks.signal?.addEventListener('abort', onAbort, { once: true });

      const tail: string[] = [];
      const onLine = (name: LogStream) => (text: string) => {
        if (/\bexec\b.*\bgo build\b/.test(text)) hooks.onPhase?.('building');
        else if (/\[INFO\] Build complete: /.test(text)) onBinary();
        tail.push(text);
        if (tail.length > 20) tail.shift();
        hooks.onLine(name, text);
      };
      readLines(child.stdout!, onLine('stdout'));
      readLines(child.stderr!, onLine('stderr'));

      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new BuildFailed(`could not start xcaddy: ${err.message}`, 'failed'));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        hooks.signal?.removeEventListener('abort', onAbort);
        // Sweep the sandbox: go may have left compiler children behind.
        this.sandbox.kill(child);
        if (killTimer) clearTimeout(killTimer);
        if (ending) return reject(ending);
        // A resource limit that was hit (the kernel's counters, or the exit and output under rlimits) fails the build, named.
        void this.sandbox.limitHits(child, tail.join('\n')).then((hits) => {
          if (hits.length) {
            const msg = hits.map((h) => h.message).join('; ');
            hooks.onLine('system', `fairway: ${msg}`);
            return reject(new BuildFailed(msg, 'failed'));
          }
          if (code === 0) return resolve();
          const why = tail
            .filter((l) => !/^\s*$/.test(l))
            .slice(-5)
            .join(' | ');
          reject(new BuildFailed(`xcaddy exited with ${code !== null ? `code ${code}` : `signal ${signal}`}: ${why}`, 'failed'));
        });
      });
    });
  }
}

/** Calls `onLine` with each line of a child's output: `\r\n` trimmed, very long lines cut into pieces and shortened. */
function readLines(stream: NodeJS.ReadableStream, onLine: (text: string) => void): void {
  let buf = '';
  const emit = (line: string) => onLine(line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line);
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      emit(buf.slice(0, i).replace(/\r$/, ''));
      buf = buf.slice(i + 1);
    }
    if (buf.length > MAX_LINE * 4) {
      emit(buf);
      buf = '';
    }
  });
  stream.on('end', () => {
    if (buf) emit(buf);
  });
}

const sameFile = (a: Inspection['source'], b: Stats) => a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;

function fileKind(st: Stats): string {
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Opens a file the build identity wrote, never following it: lstat, then a regular file owned by
 * `uid` with exactly one link, opened with O_NOFOLLOW (and O_NONBLOCK: a FIFO swapped in cannot
 * hang the server), and checked again through the descriptor (the same inode, still one link,
 * still the build identity's). Anything else fails the build; nothing is done to the path.
 * Exported for the unit tests.
 */
export async function openBuildOutput(path: string, uid: number, maxBytes?: number): Promise<{ fh: FileHandle; st: Stats }> {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const refuse = (why: string) =>
    new BuildFailed(`the build output ${name} ${why}: a build must leave a regular file of its own there (one link, no symbolic link); it was not used and nothing was changed`, 'failed');
  const check = (st: Stats) => {
    if (!st.isFile()) throw refuse(`is ${fileKind(st)}`);
    if (st.uid !== uid) throw refuse(`is owned by uid ${st.uid}, not by the build identity (uid ${uid})`);
    if (st.nlink !== 1) throw refuse(`has ${st.nlink} hard links (another name for the same file)`);
    if (maxBytes && st.size > maxBytes) throw new BuildFailed(`the binary is ${st.size} bytes, over the limit of ${maxBytes}`, 'too_large');
  };
  let lst: Stats;
  try {
    lst = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BuildFailed('xcaddy exited successfully but produced no binary', 'failed');
    throw err;
  }
  if (lst.isSymbolicLink()) {
    const to = await readlink(path).catch(() => '?');
    throw refuse(`is a symbolic link (to ${JSON.stringify(to.slice(0, 200))})`);
  }
  check(lst);
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw refuse(code === 'ELOOP' ? 'was replaced by a symbolic link while it was checked' : `cannot be opened (${code ?? errorMessage(err)})`);
  }
  try {
    const st = await fh.stat();
    if (st.dev !== lst.dev || st.ino !== lst.ino) throw refuse('was replaced while it was checked');
    check(st);
    return { fh, st };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

/** Copies an open file to a new file `dest` (the server's, mode 0755), hashing it on the way; the bytes copied must be the size it had. */
async function copyThrough(fh: FileHandle, st: Stats, dest: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const size = await copyFromHandle(fh, dest, { createMode: 0o700, mode: 0o755, onChunk: (chunk) => hash.update(chunk) });
  if (size !== st.size) throw new BuildFailed(`the build output changed while it was copied (${size} bytes read, ${st.size} expected)`, 'failed');
  return { sha256: hash.digest('hex'), size };
}

/** sha256 of a file by path (the benchmarks'; builds hash through the descriptor, copyThrough). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
