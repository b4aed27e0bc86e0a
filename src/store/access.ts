/**
 * Last-download times of artifacts, kept durably next to the store so that pruning (least
 * recently *downloaded* first) survives restarts and works across hubs:
 *
 *   fs:  <root>/.access/<key>          a tiny file holding the ISO time (mtime set to it too)
 *   s3:  <prefix>access/<key>          a tiny object; its LastModified is the time
 *
 * Writes are debounced: the first download of a key is written at once, later ones at most once
 * per `intervalMs` per key (a periodic flush writes the newest pending time). Reads merge the
 * durable records with this process's pending, newer times. close() flushes.
 *
 * These records live outside the artifact folders/prefix (`artifacts/`), so they never count
 * against the store's byte budget and never make a half artifact look published.
 *
 * Each store makes its own tracker (ArtifactStore.accessTracker(): FsStore an FsAccessTracker,
 * S3Store an S3AccessTracker from src/store/s3/access.ts); this file has the shared debounce logic.
 */
import { mkdir, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isCacheKey } from '../request/index.js';
import type { AccessTracker, AccessTrackerOptions, ArtifactUsage, StoreUsage } from './types.js';

export type { AccessTracker, AccessTrackerOptions, ArtifactUsage, StoreUsage } from './types.js';

/**
 * The debounce logic shared by the implementations; subclasses write, read and delete the
 * durable records.
 */
export abstract class DebouncedTracker implements AccessTracker {
  abstract readonly kind: string;
  /** Newest time seen in this process per key. */
  private readonly recent = new Map<string, number>();
  /** Times not yet written. */
  private readonly pending = new Map<string, number>();
  /** When each key was last written (process clock). */
  private readonly written = new Map<string, number>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly timer: NodeJS.Timeout;
  protected readonly intervalMs: number;
  protected readonly now: () => number;

  constructor(protected readonly opts: AccessTrackerOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.timer = setInterval(() => void this.flush(), Math.max(1000, this.intervalMs));
    this.timer.unref();
  }

  protected abstract write(key: string, at: number): Promise<void>;
  protected abstract readAll(): Promise<Map<string, number>>;
  protected abstract remove(key: string): Promise<void>;

  touch(key: string, at: number = this.now()): void {
    if (!isCacheKey(key)) return;
    if ((this.recent.get(key) ?? 0) < at) this.recent.set(key, at);
    const last = this.written.get(key);
    if (last === undefined || this.now() - last >= this.intervalMs) this.start(key, at);
    else if ((this.pending.get(key) ?? 0) < at) this.pending.set(key, at);
  }

  private start(key: string, at: number): void {
    this.pending.delete(key);
    this.written.set(key, this.now());
    const p = this.write(key, at)
      .catch((err: unknown) => {
        // Keep it for the next flush (unless a newer time is already waiting).
        this.written.delete(key);
        if ((this.pending.get(key) ?? 0) < at) this.pending.set(key, at);
        this.opts.onError?.(err, key);
      })
      .finally(() => this.inflight.delete(p));
    this.inflight.add(p);
  }

  async all(): Promise<Map<string, number>> {
    const out = await this.readAll();
    for (const [k, t] of this.recent) if ((out.get(k) ?? 0) < t) out.set(k, t);
    return out;
  }

  async get(key: string): Promise<number | null> {
    return (await this.all()).get(key) ?? null;
  }

  async forget(key: string): Promise<void> {
    this.recent.delete(key);
    this.pending.delete(key);
    this.written.delete(key);
    await this.remove(key);
  }

  async flush(): Promise<void> {
    for (const [k, t] of [...this.pending]) this.start(k, t);
    await Promise.all([...this.inflight]);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}

/** Records as files `<root>/.access/<key>` holding the ISO time (mtime set to it too). */
export class FsAccessTracker extends DebouncedTracker {
  readonly kind = 'fs';
  readonly dir: string;

  constructor(root: string, opts?: AccessTrackerOptions) {
    super(opts);
    this.dir = join(root, '.access');
  }

  protected async write(key: string, at: number): Promise<void> {
    const path = join(this.dir, key);
    const d = new Date(at);
    try {
      await writeFile(path, d.toISOString());
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      await mkdir(this.dir, { recursive: true });
      await writeFile(path, d.toISOString());
    }
    await utimes(path, d, d);
  }

  protected async readAll(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    await Promise.all(
      names.filter(isCacheKey).map(async (n) => {
        const path = join(this.dir, n);
        const text = await readFile(path, 'utf8').catch(() => null);
        let t = text === null ? NaN : Date.parse(text.trim());
        if (Number.isNaN(t)) t = (await stat(path).catch(() => null))?.mtimeMs ?? NaN;
        if (!Number.isNaN(t)) out.set(n, t);
      }),
    );
    return out;
  }

  protected async remove(key: string): Promise<void> {
    await rm(join(this.dir, key), { force: true });
  }
}

/** Keeps times in memory only (stores without a place for records; tests). */
export class MemoryAccessTracker extends DebouncedTracker {
  readonly kind = 'memory';
  private readonly data = new Map<string, number>();
  protected async write(key: string, at: number): Promise<void> {
    this.data.set(key, at);
  }
  protected async readAll(): Promise<Map<string, number>> {
    return new Map(this.data);
  }
  protected async remove(key: string): Promise<void> {
    this.data.delete(key);
  }
}

/** The totals of per-artifact usage: all bytes, and the published artifacts. */
export function usageOf(entries: Map<string, ArtifactUsage>): StoreUsage {
  let bytes = 0;
  let objects = 0;
  for (const e of entries.values()) {
    bytes += e.bytes;
    if (e.published) objects++;
  }
  return { entries, bytes, objects };
}
