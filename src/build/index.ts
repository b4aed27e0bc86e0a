/**
 * Runs xcaddy for one resolved spec as a child process: argument array (never a shell), clean
 * allowlisted environment, its own temp dir, a timeout, and the whole process group killed on
 * cancel or timeout. Every output line becomes a timestamped log line.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResolvedSpec } from '../spec/index.js';
import type { Toolchain } from '../toolchain/index.js';

export type LogStream = 'stdout' | 'stderr' | 'system';

export interface LogLine {
  seq: number;
  ts: string;
  stream: LogStream;
  text: string;
}

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
  /** Grace period between SIGTERM and SIGKILL on cancel/timeout. */
  killGraceMs?: number;
  /** Free bytes the build volume needs before xcaddy starts (agents check too); 0 = no check. */
  minFreeBytes?: number;
}

const MAX_LINE = 8192;
const OWNER_FILE = 'fairway-owner.json';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Cleans up after a server or agent that died mid-build (kill -9, power loss): its xcaddy
 * process group may still run, detached. Build dirs whose owning process is gone get their
 * group killed and are removed. Dirs of live owners (another agent sharing the cache) are kept.
 */
export async function sweepOrphanBuilds(tmpDir: string): Promise<string[]> {
  const swept: string[] = [];
  for (const name of await readdir(tmpDir).catch(() => [] as string[])) {
    if (!name.startsWith('build-')) continue;
    const dir = join(tmpDir, name);
    const owner = await readFile(join(dir, OWNER_FILE), 'utf8')
      .then((t) => JSON.parse(t) as { owner: number; pgid: number })
      .catch(() => null);
    if (owner && alive(owner.owner)) continue;
    if (!owner) {
      // No owner file: only sweep when old enough that its spawn cannot be in progress.
      const st = await stat(dir).catch(() => null);
      if (!st || Date.now() - st.mtimeMs < 10 * 60_000) continue;
    } else {
      try {
        process.kill(-owner.pgid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await rm(dir, { recursive: true, force: true });
    swept.push(name);
  }
  return swept;
}

/** The xcaddy command line for a spec. Exported for tests and for the reproducibility benchmark. */
export function xcaddyArgs(spec: ResolvedSpec, output: string): string[] {
  const args = ['build', spec.caddyVersion, '--output', output];
  for (const p of spec.plugins) {
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
  sha256: string;
  buildInfo: { GoVersion?: string };
  size: number;
  mtimeMs: number;
  ino: number;
}

export class XcaddyRunner implements BuildRunner {
  constructor(
    private readonly toolchain: Toolchain,
    private readonly opts: XcaddyRunnerOptions,
  ) {}

  async run(spec: ResolvedSpec, hooks: BuildHooks): Promise<BuildOutput> {
    const started = Date.now();
    if (this.opts.minFreeBytes) {
      const s = await statfs(this.toolchain.tmpDir);
      if (s.bavail * s.bsize < this.opts.minFreeBytes) {
        throw new BuildFailed(`not enough free disk space to build: ${s.bavail * s.bsize} bytes free, ${this.opts.minFreeBytes} needed (minFreeDisk); nothing was written`, 'failed');
      }
    }
    const workDir = await mkdtemp(join(this.toolchain.tmpDir, 'build-'));
    const cleanup = () => rm(workDir, { recursive: true, force: true });
    try {
      const output = join(workDir, binaryName(spec.os, spec.arch));
      const args = xcaddyArgs(spec, output);
      hooks.onLine('system', `fairway: ${spec.os}/${spec.arch}${spec.arm ? ` GOARM=${spec.arm}` : ''} caddy ${spec.caddyVersion} with ${spec.toolchain.go}, xcaddy ${spec.toolchain.xcaddy}`);
      hooks.onLine('system', `fairway: xcaddy ${args.map((a) => (a === output ? binaryName(spec.os, spec.arch) : a)).join(' ')}`);
      hooks.onPhase?.('resolving');
      // xcaddy logs "Build complete" once `go build` has written the binary, then cleans up and
      // runs `caddy version`: hash it and read its build info meanwhile (checked against the
      // file after exit, so a binary changed later is inspected again).
      let early: Promise<Inspection> | undefined;
      await this.spawnXcaddy(args, spec, workDir, hooks, () => {
        early ??= this.inspect(output, workDir);
        early.catch(() => undefined);
      });
      hooks.onPhase?.('storing');
      const st = await stat(output).catch(() => null);
      if (!st) throw new BuildFailed('xcaddy exited successfully but produced no binary', 'failed');
      if (this.opts.maxArtifactBytes && st.size > this.opts.maxArtifactBytes) {
        throw new BuildFailed(`the binary is ${st.size} bytes, over the limit of ${this.opts.maxArtifactBytes}`, 'too_large');
      }
      let info = early ? await early.catch(() => null) : null;
      if (!info || info.size !== st.size || info.mtimeMs !== st.mtimeMs || info.ino !== st.ino) info = await this.inspect(output, workDir);
      const { sha256, buildInfo } = info;
      hooks.onLine('system', `fairway: built ${binaryName(spec.os, spec.arch)}: ${st.size} bytes, sha256 ${sha256}`);
      return {
        binaryPath: output,
        sha256,
        size: st.size,
        goVersion: buildInfo.GoVersion ?? spec.toolchain.go,
        buildInfo,
        durationMs: Date.now() - started,
        cleanup,
      };
    } catch (err) {
      await cleanup();
      throw err;
    }
  }

  /** sha256 and `go version -m -json` of a binary, with the file identity they were taken from. */
  private async inspect(path: string, workDir: string): Promise<Inspection> {
    const st = await stat(path);
    const [sha256, { stdout }] = await Promise.all([sha256File(path), this.toolchain.go(['version', '-m', '-json', path], { cwd: workDir, timeoutMs: 60_000 })]);
    return { sha256, buildInfo: JSON.parse(stdout) as { GoVersion?: string }, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  }

  private spawnXcaddy(args: string[], spec: ResolvedSpec, workDir: string, hooks: BuildHooks, onBinary: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      if (hooks.signal?.aborted) return reject(new BuildFailed('the build was canceled before it started', 'canceled'));
      const env = this.toolchain.env(
        { GOOS: spec.os, GOARCH: spec.arch, ...(spec.arm ? { GOARM: spec.arm } : {}), TMPDIR: workDir },
        workDir,
      );
      const child = spawn(this.toolchain.xcaddyBin, args, { cwd: workDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      // Lets a restarted server stop this build's process group if this process dies abruptly.
      if (child.pid) void writeFile(join(workDir, OWNER_FILE), JSON.stringify({ owner: process.pid, pgid: child.pid })).catch(() => undefined);
      let ending: BuildFailed | null = null;
      let killTimer: NodeJS.Timeout | undefined;
      const killGroup = (sig: NodeJS.Signals) => {
        try {
          if (child.pid) process.kill(-child.pid, sig);
        } catch {
          /* already gone */
        }
      };
      const stop = (why: BuildFailed) => {
        if (ending) return;
        ending = why;
        hooks.onLine('system', `fairway: ${why.message}; stopping xcaddy and its children`);
        killGroup('SIGTERM');
        killTimer = setTimeout(() => killGroup('SIGKILL'), this.opts.killGraceMs ?? 5000);
      };
      const timer = setTimeout(
        () => stop(new BuildFailed(`the build took longer than the timeout of ${Math.round(this.opts.timeoutMs / 1000)}s`, 'timeout')),
        this.opts.timeoutMs,
      );
      const onAbort = () => stop(new BuildFailed('the build was canceled', 'canceled'));
      hooks.signal?.addEventListener('abort', onAbort, { once: true });

      const tail: string[] = [];
      const pipe = (stream: NodeJS.ReadableStream, name: LogStream) => {
        let buf = '';
        const emit = (line: string) => {
          const text = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line;
          if (/\bexec\b.*\bgo build\b/.test(text)) hooks.onPhase?.('building');
          else if (/\[INFO\] Build complete: /.test(text)) onBinary();
          tail.push(text);
          if (tail.length > 20) tail.shift();
          hooks.onLine(name, text);
        };
        stream.setEncoding('utf8');
        stream.on('data', (chunk: string) => {
          buf += chunk;
          let i: number;
          while ((i = buf.indexOf('\n')) !== -1) {
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
      };
      pipe(child.stdout!, 'stdout');
      pipe(child.stderr!, 'stderr');

      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new BuildFailed(`could not start xcaddy: ${err.message}`, 'failed'));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        hooks.signal?.removeEventListener('abort', onAbort);
        // Sweep the group: go may have left compiler children behind.
        killGroup('SIGKILL');
        if (killTimer) clearTimeout(killTimer);
        if (ending) return reject(ending);
        if (code === 0) return resolve();
        const why = tail.filter((l) => !/^\s*$/.test(l)).slice(-5).join(' | ');
        reject(new BuildFailed(`xcaddy exited with ${code !== null ? `code ${code}` : `signal ${signal}`}: ${why}`, 'failed'));
      });
    });
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  // 1 MiB reads: half the time of the default 64 KiB on a 50 MB binary.
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
