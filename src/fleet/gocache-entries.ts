/**
 * The shared Go build cache's entries (./gocache.ts): their shapes, the counters a server keeps,
 * and the sha256 checks every entry passes before it is kept or answered.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, open } from 'node:fs/promises';

export const HEX64 = /^[0-9a-f]{64}$/;
export const ACTIONS = 'actions';

export interface GoCacheStats {
  /** Gets answered with an entry (local + shared). */
  hits: number;
  localHits: number;
  sharedHits: number;
  misses: number;
  puts: number;
  /** Puts whose body did not match their OutputID (refused). */
  refused: number;
  /** Corrupt entries found (and deleted), by tier. */
  corrupt: { local: number; shared: number };
  /** Bytes read from and written to the shared tier. */
  sharedBytesRead: number;
  sharedBytesWritten: number;
  /** Shared-tier uploads that failed and were dropped (logged). */
  uploadsDropped: number;
}

/** The small `cache` object an agent's heartbeat carries (GET /api/agents). */
export interface AgentCacheSummary {
  shared: boolean;
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 when nothing was asked yet. */
  hitRate: number;
  sharedHits: number;
  corrupt: number;
  /** Bytes read from and written to the shared tier. */
  sharedBytesRead: number;
  sharedBytesWritten: number;
}

export interface ActionEntry {
  o: string;
  size: number;
  time: string;
}

export interface Answer {
  Miss?: boolean;
  OutputID?: string;
  Size?: number;
  Time?: string;
  DiskPath?: string;
  Err?: string;
}

export function parseEntry(v: unknown): ActionEntry | null {
  if (!v || typeof v !== 'object') return null;
  const r = v as Record<string, unknown>;
  if (typeof r.o !== 'string' || !HEX64.test(r.o) || typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) return null;
  return { o: r.o, size: r.size, time: typeof r.time === 'string' && !Number.isNaN(Date.parse(r.time)) ? r.time : new Date().toISOString() };
}

/** sha256 and size of a file; null when it does not exist. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number } | null> {
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return { sha256: h.digest('hex'), size };
}

/** Writes a stream to `tmp` while hashing it; rejects when it is over `max` bytes. */
export async function writeHashed(src: AsyncIterable<unknown>, tmp: string, max: number): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const fh = await open(tmp, 'wx', 0o644);
  try {
    for await (const chunk of src) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > max) throw new Error(`object over the ${max}-byte limit`);
      h.update(buf);
      await fh.write(buf);
    }
  } finally {
    await fh.close();
  }
  // The process umask may have narrowed the mode: the build identity must read entries.
  await chmod(tmp, 0o644);
  return { sha256: h.digest('hex'), size };
}
