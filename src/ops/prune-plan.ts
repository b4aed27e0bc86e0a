/**
 * The pure rule set of store pruning (unit-tested): which artifacts go, given their bytes, status,
 * last access and pinning, and the store's byte budget and maximum age (the rules: prune.ts).
 */
export type PruneReason = 'max-age' | 'budget';

export interface PruneEntry {
  key: string;
  bytes: number;
  status: string;
  /** Last download, else finish time (ms since epoch). */
  lastAccess: number;
  pinned: boolean;
}

export interface PlannedRemoval {
  key: string;
  bytes: number;
  status: string;
  lastAccess: number;
  reason: PruneReason;
}

export interface PruneLimits {
  /** Byte budget of the store; null/undefined = none. */
  maxBytes?: number | null;
  /** Artifacts not downloaded for this long go; null/undefined = none. */
  maxAgeMs?: number | null;
}

export interface Usage {
  bytes: number;
  objects: number;
}

export interface PrunePlan {
  remove: PlannedRemoval[];
  before: Usage;
  after: Usage;
  pinned: number;
  /** Still over the budget after the plan (pinned artifacts and leftovers exceed it). */
  overBudget: boolean;
}

/** The limits of one plan, with the time and the bytes no entry accounts for (below). */
export interface PlanLimits extends PruneLimits {
  now: number;
  unaccountedBytes?: number;
  collectableBytes?: number;
}

/**
 * The pure rule set. `unaccountedBytes`: bytes in the store that belong to no prunable entry
 * (unpublished leftovers, blobs shared by several artifacts, new unreferenced blobs); they count
 * against the budget but cannot be removed. `collectableBytes`: bytes that go in any case (blobs
 * nothing references, past the grace period): counted before, gone after, removed first.
 */
export function planPrune(entries: readonly PruneEntry[], limits: PlanLimits): PrunePlan {
  const extra = limits.unaccountedBytes ?? 0;
  const collectable = limits.collectableBytes ?? 0;
  let bytes = extra + collectable;
  for (const e of entries) bytes += e.bytes;
  const before: Usage = { bytes, objects: entries.length };
  bytes -= collectable;
  const remove: PlannedRemoval[] = [];
  const gone = new Set<string>();
  const drop = (e: PruneEntry, reason: PruneReason) => {
    gone.add(e.key);
    bytes -= e.bytes;
    remove.push({ key: e.key, bytes: e.bytes, status: e.status, lastAccess: e.lastAccess, reason });
  };
  const candidates = entries.filter((e) => !e.pinned);
  // Failures first (they are only logs), then least recently downloaded; key breaks ties.
  const order = (a: PruneEntry, b: PruneEntry) => {
    const fa = a.status === 'succeeded' ? 1 : 0;
    const fb = b.status === 'succeeded' ? 1 : 0;
    return fa - fb || a.lastAccess - b.lastAccess || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
  };
  candidates.sort(order);
  if (limits.maxAgeMs != null && limits.maxAgeMs > 0) {
    const cutoff = limits.now - limits.maxAgeMs;
    for (const e of candidates) if (e.lastAccess < cutoff) drop(e, 'max-age');
  }
  if (limits.maxBytes != null && limits.maxBytes >= 0) {
    for (const e of candidates) {
      if (bytes <= limits.maxBytes) break;
      if (!gone.has(e.key)) drop(e, 'budget');
    }
  }
  return {
    remove,
    before,
    after: { bytes, objects: entries.length - remove.length },
    pinned: entries.length - candidates.length,
    overBudget: limits.maxBytes != null && bytes > limits.maxBytes,
  };
}
