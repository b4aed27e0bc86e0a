/**
 * The hot tier of the artifact cache: the binaries downloaded most recently, held in memory up
 * to a byte budget and served from there without touching the store.
 *
 * Why: a store streams every download through a read (the thread pool for `fs`, a GET for `s3`)
 * and a copy into JavaScript; from memory a download is one socket write of bytes already there,
 * and 50 clients downloading the same binary share one copy of it. BENCHMARKS.md has the figures
 * (against nginx with sendfile, and against the plain store path with the tier off).
 *
 * Rules:
 * - An entry is the whole binary of one artifact, keyed by cache key and its sha256: a key rebuilt
 *   with other bytes never hits an old entry.
 * - Bytes enter only after their sha256 matched the artifact's record (a corrupt store object is
 *   reported and not cached). Filling happens in the background on a miss: the download that
 *   missed is streamed from the store as before, the next ones come from memory.
 * - Least recently served entries are evicted to fit the budget; a binary larger than
 *   `maxEntryBytes` (default: half the budget) is never held. Loads in flight count against the
 *   budget. Responses still being written keep their buffer alive after an eviction.
 * - `delete(key)` when the artifact goes (pruned, deleted, dropped from the index).
 *
 * Knows only the store's types; the service decides when to consult it.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ArtifactMeta, ByteRange } from '../store/index.js';
import { errorMessage } from '../util/errors.js';

/** What the hot tier needs to know of what it holds: a key, and the bytes it must be (an artifact's binary, or a blob). */
export type HotItem = Pick<ArtifactMeta, 'key' | 'status' | 'sha256' | 'size'>;

export interface HotCacheOptions {
  /** Byte budget of all entries (and loads in flight); 0 disables the tier. */
  maxBytes: number;
  /** Largest binary held; default maxBytes / 2. */
  maxEntryBytes?: number;
  logger?: Pick<Logger, 'warn' | 'error' | 'debug'>;
}

export interface HotCacheStats {
  entries: number;
  bytes: number;
  maxBytes: number;
  hits: number;
  misses: number;
  /** Binaries read from the store into memory. */
  fills: number;
  evictions: number;
  /** Fills refused: the bytes read did not match the recorded sha256 or size, or the read failed. */
  failedFills: number;
}

interface Entry {
  sha256: string;
  bytes: Buffer;
}

/** A readable stream of a slice of a buffer: one chunk, no copy. */
function streamOf(buf: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(buf);
      }
      this.push(null);
    },
  });
}

export class HotCache {
  private readonly entries = new Map<string, Entry>(); // insertion order = least recently served first
  private readonly loading = new Map<string, Promise<void>>();
  private bytes = 0;
  private reserved = 0;
  private readonly counts = { hits: 0, misses: 0, fills: 0, evictions: 0, failedFills: 0 };
  readonly maxBytes: number;
  readonly maxEntryBytes: number;

  constructor(private readonly o: HotCacheOptions) {
    if (!Number.isSafeInteger(o.maxBytes) || o.maxBytes < 0) throw new Error(`hot cache budget must be a whole number of bytes >= 0, got ${o.maxBytes}`);
    this.maxBytes = o.maxBytes;
    this.maxEntryBytes = Math.min(o.maxEntryBytes ?? Math.floor(o.maxBytes / 2), o.maxBytes);
  }

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  /**
   * The artifact's bytes (or the range of them) as a stream, when held; else null, and a fill from
   * `read` is started in the background if the binary fits. `read` streams the whole binary.
   */
  open(meta: HotItem, read: () => Promise<NodeJS.ReadableStream>, range?: ByteRange): Readable | null {
    if (!this.enabled || meta.status !== 'succeeded' || !meta.sha256 || meta.size === undefined) return null;
    const e = this.entries.get(meta.key);
    if (e && e.sha256 === meta.sha256 && e.bytes.length === meta.size) {
      this.counts.hits++;
      // Most recently served goes last.
      this.entries.delete(meta.key);
      this.entries.set(meta.key, e);
      return streamOf(range ? e.bytes.subarray(range.start, range.end + 1) : e.bytes);
    }
    if (e) this.drop(meta.key); // the key was rebuilt: its old bytes are not this artifact's
    this.counts.misses++;
    this.fill(meta, read);
    return null;
  }

  /**
   * A registry blob (`sha256:<hex>`, docs/registry.md) by the same rules and in the same budget:
   * keyed `blob:<digest>`, its bytes hashed against the digest on the way in, an entry of another
   * size (the store's blob changed) dropped. `size` is the store's current size of the blob.
   */
  openBlob(digest: string, size: number, read: () => Promise<NodeJS.ReadableStream>, range?: ByteRange): Readable | null {
    return this.open({ key: `blob:${digest}`, status: 'succeeded', sha256: digest.slice(7), size }, read, range);
  }

  /** Forgets a blob's bytes (deleted from the store, or found not matching its digest). */
  deleteBlob(digest: string): void {
    this.drop(`blob:${digest}`);
  }

  /** Forgets a key's bytes (the artifact was deleted or pruned). */
  delete(key: string): void {
    this.drop(key);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Waits for the fills in flight (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.loading.size) await Promise.allSettled([...this.loading.values()]);
  }

  stats(): HotCacheStats {
    return { entries: this.entries.size, bytes: this.bytes, maxBytes: this.maxBytes, ...this.counts };
  }

  private fill(meta: HotItem, read: () => Promise<NodeJS.ReadableStream>): void {
    const size = meta.size!;
    if (size > this.maxEntryBytes || this.loading.has(meta.key)) return;
    if (!this.makeRoom(size)) return;
    this.reserved += size;
    const p = this.load(meta, read)
      .then(
        (buf) => {
          this.counts.fills++;
          this.reserved -= size;
          // Deleted while loading, or rebuilt: keep nothing.
          if (this.loading.get(meta.key) !== p) return;
          this.entries.set(meta.key, { sha256: meta.sha256!, bytes: buf });
          this.bytes += size;
        },
        (err: unknown) => {
          this.reserved -= size;
          this.counts.failedFills++;
          this.o.logger?.warn({ key: meta.key, err: errorMessage(err) }, 'hot cache: not holding this artifact in memory; downloads stream it from the store');
        },
      )
      .finally(() => {
        if (this.loading.get(meta.key) === p) this.loading.delete(meta.key);
      });
    this.loading.set(meta.key, p);
  }

  /** Reads the whole binary into one buffer, checking size and sha256 on the way. */
  private async load(meta: HotItem, read: () => Promise<NodeJS.ReadableStream>): Promise<Buffer> {
    const size = meta.size!;
    const buf = Buffer.allocUnsafe(size);
    const hash = createHash('sha256');
    let at = 0;
    for await (const chunk of await read()) {
      const c = chunk as Buffer;
      if (at + c.length > size) throw new Error(`the stored binary is larger than its recorded ${size} bytes`);
      c.copy(buf, at);
      hash.update(c);
      at += c.length;
    }
    if (at !== size) throw new Error(`the stored binary has ${at} bytes, its record says ${size}`);
    const sum = hash.digest('hex');
    if (sum !== meta.sha256) {
      this.o.logger?.error(
        { key: meta.key, expected: meta.sha256, actual: sum },
        'the stored binary does not match its recorded sha256: the store object is corrupt; delete the artifact (DELETE it from the store or prune it) so that the next request rebuilds it',
      );
      throw new Error(`sha256 mismatch: stored bytes hash to ${sum}, the record says ${meta.sha256}`);
    }
    return buf;
  }

  /** Evicts least recently served entries until `size` more bytes fit; false if they never can. */
  private makeRoom(size: number): boolean {
    for (const key of this.entries.keys()) {
      if (this.bytes + this.reserved + size <= this.maxBytes) break;
      this.drop(key);
      this.counts.evictions++;
    }
    return this.bytes + this.reserved + size <= this.maxBytes;
  }

  private drop(key: string): void {
    const e = this.entries.get(key);
    if (e) {
      this.entries.delete(key);
      this.bytes -= e.bytes.length;
    }
    // A fill in flight for it is disowned: its result is dropped when it lands.
    this.loading.delete(key);
  }
}
