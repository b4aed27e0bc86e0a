/**
 * The Go cache budget of a worker process (serve or agent): `<cacheDir>/build` (GOCACHE) and
 * `<cacheDir>/mod` (GOMODCACHE) together stay under `goCacheMaxBytes`. When over, `go clean
 * -cache` runs, and `go clean -modcache` too if that was not enough. Cleaning only happens
 * between builds: BuildGate wraps the job processor, a clean waits until no build runs, and
 * builds arriving during a clean wait for it to finish (seconds).
 */
import type { Dirent } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Processor } from '../queue/index.js';

/** Counts running builds and lets maintenance run exclusively between them. */
export class BuildGate {
  private running = 0;
  private exclusive: Promise<unknown> | null = null;
  private readonly idleListeners = new Set<() => void>();

  get active(): number {
    return this.running;
  }

  wrap<P>(processor: Processor<P>): Processor<P> {
    return async (ctx) => {
      while (this.exclusive) await this.exclusive.catch(() => undefined);
      this.running++;
      try {
        return await processor(ctx);
      } finally {
        this.running--;
        if (this.running === 0) for (const l of this.idleListeners) l();
      }
    };
  }

  /** Called each time the last running build ends. */
  onIdle(listener: () => void): void {
    this.idleListeners.add(listener);
  }

  /** Runs `fn` with no build running, or returns 'busy' without running it. */
  async whenIdle<T>(fn: () => Promise<T>): Promise<T | 'busy'> {
    if (this.running > 0 || this.exclusive) return 'busy';
    const p = fn();
    this.exclusive = p;
    try {
      return await p;
    } finally {
      this.exclusive = null;
    }
  }
}

/** Total size of the regular files under `dir` (0 when it does not exist). Never follows links. */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    let entries: Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    const files: string[] = [];
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) files.push(p);
    }
    // Stat a directory's files in parallel batches (GOCACHE has ~256 folders of many files).
    for (let i = 0; i < files.length; i += 64) {
      const sizes = await Promise.all(
        files.slice(i, i + 64).map((p) =>
          lstat(p).then(
            (s) => s.size,
            () => 0,
          ),
        ),
      );
      for (const n of sizes) total += n;
    }
  }
  return total;
}

export type CleanKind = 'cache' | 'modcache';

export interface GoCacheBudgetOptions {
  cacheDir: string;
  maxBytes: number;
  gate: BuildGate;
  /** Runs `go clean -cache` / `go clean -modcache` in the toolchain's environment. */
  clean: (kind: CleanKind) => Promise<void>;
  logger?: Logger;
  onClean?: (kind: CleanKind, freedBytes: number) => void;
  /** Measure at most this often after builds (the scheduled check always runs). Default 60 s. */
  minIntervalMs?: number;
}

export interface GoCacheReport {
  before: { build: number; mod: number; total: number };
  after: { build: number; mod: number; total: number };
  cleaned: CleanKind[];
  skipped?: 'busy' | 'under-budget';
}

export class GoCacheBudget {
  private last = 0;
  private lastTotal = 0;
  private running: Promise<GoCacheReport | 'busy'> | null = null;
  private closed = false;

  constructor(private readonly o: GoCacheBudgetOptions) {}

  async measure(): Promise<{ build: number; mod: number; total: number }> {
    const [build, mod] = await Promise.all([dirBytes(join(this.o.cacheDir, 'build')), dirBytes(join(this.o.cacheDir, 'mod'))]);
    this.lastTotal = build + mod;
    return { build, mod, total: build + mod };
  }

  /** The size found by the last measurement (for metrics without walking the tree on scrape). */
  get lastMeasuredBytes(): number {
    return this.lastTotal;
  }

  /** After a build: checks the budget unless it was checked less than minIntervalMs ago. */
  maybeEnforce(): void {
    if (this.closed) return;
    if (Date.now() - this.last < (this.o.minIntervalMs ?? 60_000)) return;
    void this.enforce().catch((err: unknown) => this.o.logger?.warn({ err }, 'go cache budget check failed'));
  }

  /** Measures and, when over budget and no build runs, cleans. */
  enforce(): Promise<GoCacheReport | 'busy'> {
    this.running ??= this.doEnforce().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** No more checks; waits for one in progress. */
  async close(): Promise<void> {
    this.closed = true;
    await this.running?.catch(() => undefined);
  }

  private async doEnforce(): Promise<GoCacheReport | 'busy'> {
    this.last = Date.now();
    const before = await this.measure();
    if (before.total <= this.o.maxBytes) return { before, after: before, cleaned: [], skipped: 'under-budget' };
    const result = await this.o.gate.whenIdle(async () => {
      const cleaned: CleanKind[] = [];
      let now = before;
      for (const kind of ['cache', 'modcache'] as const) {
        if (now.total <= this.o.maxBytes) break;
        this.o.logger?.info({ kind, bytes: now.total, budget: this.o.maxBytes }, `go cache over budget: go clean -${kind}`);
        await this.o.clean(kind);
        const next = await this.measure();
        this.o.onClean?.(kind, Math.max(0, now.total - next.total));
        now = next;
        cleaned.push(kind);
      }
      return { before, after: now, cleaned } satisfies GoCacheReport;
    });
    if (result === 'busy') this.last = 0; // check again when the builds end
    if (result === 'busy') this.o.logger?.debug({ bytes: before.total, budget: this.o.maxBytes }, 'go cache over budget; a build runs, cleaning later');
    return result;
  }
}
