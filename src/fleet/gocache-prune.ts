/** The budgets of the shared Go build cache's two tiers (./gocache.ts): least recently used out first. */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { AccessTracker } from '../store/index.js';
import { errorMessage } from '../util/errors.js';
import type { GoCacheServerOptions } from './gocache.js';

/** What a pruning run leaves and removes, in bytes and entries. */
export interface PruneResult {
  bytes: number;
  removed: number;
  removedBytes: number;
}

/**
 * Keeps the local tier under its budget, least recently used out first. Run it between builds
 * only (entries handed to a running go command must stay until it ends).
 */
export async function pruneLocalTier(o: GoCacheServerOptions): Promise<PruneResult> {
  const files: Array<{ path: string; size: number; at: number }> = [];
  let bytes = 0;
  for (const sub of await readdir(join(o.localDir, 'o')).catch(() => [] as string[])) {
    for (const name of await readdir(join(o.localDir, 'o', sub)).catch(() => [] as string[])) {
      const path = join(o.localDir, 'o', sub, name);
      const st = await stat(path).catch(() => null);
      if (!st?.isFile()) continue;
      files.push({ path, size: st.size, at: st.mtimeMs });
      bytes += st.size;
    }
  }
  const max = o.localMaxBytes;
  let removed = 0;
  let removedBytes = 0;
  if (max === undefined || bytes <= max) return { bytes, removed, removedBytes };
  files.sort((a, b) => a.at - b.at);
  let cutoff = 0;
  const recent = Date.now() - (o.protectRecentMs ?? 30 * 60_000);
  for (const f of files) {
    if (bytes - removedBytes <= max || f.at > recent) break;
    await unlink(f.path).catch(() => undefined);
    removed++;
    removedBytes += f.size;
    cutoff = f.at;
  }
  // Action files older than the newest removed output point at nothing kept, mostly: drop them too.
  for (const sub of await readdir(join(o.localDir, 'a')).catch(() => [] as string[])) {
    for (const name of await readdir(join(o.localDir, 'a', sub)).catch(() => [] as string[])) {
      const path = join(o.localDir, 'a', sub, name);
      const st = await stat(path).catch(() => null);
      if (st && st.mtimeMs <= cutoff) await unlink(path).catch(() => undefined);
    }
  }
  o.logger?.info({ removed, removedBytes, budget: max }, 'go cache: local tier over budget, least recently used entries removed');
  return { bytes: bytes - removedBytes, removed, removedBytes };
}

/**
 * Keeps the shared tier under its budget: blobs least recently used (last use from the access
 * records, else their write time) out first; records whose blob is gone are dropped when read.
 */
export async function pruneSharedTier(o: GoCacheServerOptions, tracker: AccessTracker | null): Promise<PruneResult> {
  const shared = o.shared;
  if (!shared) return { bytes: 0, removed: 0, removedBytes: 0 };
  await tracker?.flush().catch(() => undefined);
  const used = tracker ? await tracker.all() : new Map<string, number>();
  const blobs: Array<{ digest: string; size: number; at: number }> = [];
  let bytes = 0;
  for await (const b of shared.listBlobs()) {
    const hex = b.digest.slice('sha256:'.length);
    blobs.push({ digest: b.digest, size: b.size, at: Math.max(b.modifiedAt, used.get(hex) ?? 0) });
    bytes += b.size;
  }
  const max = o.sharedMaxBytes;
  let removed = 0;
  let removedBytes = 0;
  if (max === undefined || bytes <= max) return { bytes, removed, removedBytes };
  blobs.sort((a, b) => a.at - b.at);
  for (const b of blobs) {
    if (bytes - removedBytes <= max) break;
    try {
      await shared.deleteBlob(b.digest);
      await tracker?.forget(b.digest.slice('sha256:'.length));
      removed++;
      removedBytes += b.size;
    } catch (err) {
      o.logger?.warn({ err: errorMessage(err), digest: b.digest }, 'go cache: could not prune a shared blob');
    }
  }
  o.logger?.info({ removed, removedBytes, budget: max }, 'go cache: shared tier over budget, least recently used entries removed');
  return { bytes: bytes - removedBytes, removed, removedBytes };
}
