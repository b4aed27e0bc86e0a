/** What every sandbox shares: running a command to its end, the build identity's directories, and killing process groups. */
import { execFile, type ChildProcess } from 'node:child_process';
import { chown, mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { LimitHit } from './limits.js';
import { SandboxRunError, type RunResult, type Sandbox, type SandboxCommand, type SandboxKind } from './types.js';

const execFileP = promisify(execFile);

/** Kills a process group; quiet when it is already gone. */
export function killGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    /* gone */
  }
}

export abstract class BaseSandbox implements Sandbox {
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
