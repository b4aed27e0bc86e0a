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
 * storeUsage() gives the pruner per-artifact byte counts in one pass (one listing on S3).
 */
import { mkdir, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { FsStore } from './fs.js';
import { S3Store } from './s3.js';
import type { ArtifactStore } from './types.js';

const KEY_RE = /^[0-9a-f]{64}$/;

export interface AccessTracker {
  readonly kind: string;
  /** Records a download of `key` (now by default). Cheap: the durable write is debounced. */
  touch(key: string, at?: number): void;
  /** Last recorded download (ms since epoch) per key: durable records merged with pending ones. */
  all(): Promise<Map<string, number>>;
  get(key: string): Promise<number | null>;
  /** Drops the record of a key (after the artifact was pruned). */
  forget(key: string): Promise<void>;
  /** Writes every pending time now. */
  flush(): Promise<void>;
  /** Stops the flush timer and flushes. */
  close(): Promise<void>;
}

export interface AccessTrackerOptions {
  /** Per key, at most one durable write per this many ms. Default 60 s. */
  intervalMs?: number;
  /** Called when a durable write fails (it is retried at the next flush). */
  onError?: (err: unknown, key: string) => void;
  now?: () => number;
}

/** The debounce logic shared by the implementations; subclasses write, read and delete records. */
abstract class DebouncedTracker implements AccessTracker {
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
    if (!KEY_RE.test(key)) return;
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
      names.filter((n) => KEY_RE.test(n)).map(async (n) => {
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

export class S3AccessTracker extends DebouncedTracker {
  readonly kind = 's3';

  constructor(
    private readonly store: S3Store,
    opts?: AccessTrackerOptions,
  ) {
    super(opts);
  }

  private get base(): string {
    return `${this.store.prefix}access/`;
  }

  protected async write(key: string, at: number): Promise<void> {
    await this.store.client.send(
      new PutObjectCommand({ Bucket: this.store.bucket, Key: this.base + key, Body: new Date(at).toISOString(), ContentType: 'text/plain' }),
      { abortSignal: AbortSignal.timeout(15_000) },
    );
  }

  /** One listing: the objects' LastModified are the times (no GET per key). */
  protected async readAll(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const page of this.store.listPages(this.base)) {
      for (const o of page) {
        const k = o.Key?.slice(this.base.length) ?? '';
        if (KEY_RE.test(k) && o.LastModified) out.set(k, o.LastModified.getTime());
      }
    }
    return out;
  }

  protected async remove(key: string): Promise<void> {
    await this.store.client.send(new DeleteObjectCommand({ Bucket: this.store.bucket, Key: this.base + key }), { abortSignal: AbortSignal.timeout(15_000) });
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

/** The tracker that belongs with a store: records next to the artifacts. */
export function openAccessTracker(store: ArtifactStore, opts?: AccessTrackerOptions): AccessTracker {
  if (store instanceof FsStore) return new FsAccessTracker(store.root, opts);
  if (store instanceof S3Store) return new S3AccessTracker(store, opts);
  return new MemoryAccessTracker(opts);
}

export interface ArtifactUsage {
  bytes: number;
  /** meta.json exists (the artifact is visible); unpublished leftovers are never pruned. */
  published: boolean;
}

export interface StoreUsage {
  /** Per key under the artifacts area. */
  entries: Map<string, ArtifactUsage>;
  /** All bytes under the artifacts area (as store.stats() counts them). */
  bytes: number;
  /** Published artifacts. */
  objects: number;
}

/** Bytes per artifact in one pass: a directory walk on fs, one listing on S3. */
export async function storeUsage(store: ArtifactStore): Promise<StoreUsage> {
  const entries = new Map<string, ArtifactUsage>();
  if (store instanceof FsStore) {
    for (const name of await readdir(store.root)) {
      if (!KEY_RE.test(name)) continue;
      let bytes = 0;
      let published = false;
      for (const f of await readdir(join(store.root, name)).catch(() => [] as string[])) {
        const s = await stat(join(store.root, name, f)).catch(() => null);
        if (!s) continue;
        bytes += s.size;
        if (f === 'meta.json') published = true;
      }
      entries.set(name, { bytes, published });
    }
  } else if (store instanceof S3Store) {
    const base = `${store.prefix}artifacts/`;
    for await (const page of store.listPages(base)) {
      for (const o of page) {
        const rest = o.Key?.slice(base.length) ?? '';
        const slash = rest.indexOf('/');
        const key = slash === -1 ? '' : rest.slice(0, slash);
        if (!KEY_RE.test(key)) continue;
        const e = entries.get(key) ?? { bytes: 0, published: false };
        e.bytes += o.Size ?? 0;
        if (rest.slice(slash + 1) === 'meta.json') e.published = true;
        entries.set(key, e);
      }
    }
  } else {
    // Unknown store: the binary sizes from the metas (logs are small).
    for await (const meta of store.list()) entries.set(meta.key, { bytes: meta.size ?? 0, published: true });
  }
  let bytes = 0;
  let objects = 0;
  for (const e of entries.values()) {
    bytes += e.bytes;
    if (e.published) objects++;
  }
  return { entries, bytes, objects };
}
