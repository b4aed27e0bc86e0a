/**
 * Store pruning: keep the artifact store under a byte budget and (optionally) a maximum age.
 *
 * planPrune() is the pure rule set (unit-tested); Pruner gathers the inputs (per-artifact bytes
 * from one store listing, metas, last-download times, pinned keys), executes the plan with
 * store.delete() and reports what went. Rules:
 *  - pinned artifacts are never removed;
 *  - with a max age, anything not downloaded (or, never downloaded, not finished) within it goes;
 *  - while the store is over its byte budget: failure records go first (oldest first), then
 *    successful builds, least recently *downloaded* first (never downloaded: finish time);
 *  - unpublished leftovers (no meta.json: an upload in progress or a crashed agent's parts) are
 *    counted but never touched.
 */
import type { Logger } from 'pino';
import { canonicalJson, isCacheKey } from '../spec/index.js';
import type { AccessTracker, ArtifactMeta, ArtifactStore, StoreUsage } from '../store/index.js';

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

/**
 * The pure rule set. `unaccountedBytes`: bytes in the store that belong to no prunable entry
 * (unpublished leftovers); they count against the budget but cannot be removed.
 */
export function planPrune(entries: readonly PruneEntry[], limits: PruneLimits & { now: number; unaccountedBytes?: number }): PrunePlan {
  const extra = limits.unaccountedBytes ?? 0;
  let bytes = extra;
  for (const e of entries) bytes += e.bytes;
  const before: Usage = { bytes, objects: entries.length };
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

// ---- pinned specs -------------------------------------------------------------------------

/** A pinned entry: an exact cache key, or a build request body (same shape as POST /api/builds). */
export type PinnedEntry = string | Record<string, unknown>;

export interface PinResolver {
  /** Parses and resolves a spec to its current key (and the normalised request); throws when it cannot. */
  resolve?(spec: Record<string, unknown>): Promise<{ key: string; request: unknown }>;
  /** Parses only (no network), for the fallback match. */
  parse?(spec: Record<string, unknown>): unknown;
}

/** Loose normal form of a request for the fallback match (no toolchain needed). */
function requestShape(r: unknown): string | null {
  if (!r || typeof r !== 'object') return null;
  const o = r as Record<string, unknown>;
  const cv = typeof o.caddyVersion === 'string' && o.caddyVersion !== '' ? o.caddyVersion : 'latest';
  const caddyVersion = /^2(\.|$)/.test(cv) ? `v${cv}` : cv;
  const arch = String(o.arch ?? '');
  const arm = arch === 'arm' ? String(o.arm ?? '7') : undefined;
  const plugins = (Array.isArray(o.plugins) ? o.plugins : [])
    .map((p) => {
      const x = (p ?? {}) as Record<string, unknown>;
      return { module: String(x.module ?? ''), version: x.version === undefined ? undefined : String(x.version), replace: x.replace === undefined ? undefined : String(x.replace) };
    })
    .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  return canonicalJson({ caddyVersion, os: String(o.os ?? ''), arch, arm, plugins });
}

/**
 * The keys that must stay: exact keys as given; specs resolved to their current key. A spec that
 * cannot be resolved now (proxy down) pins, to be safe, every artifact built from the same request.
 */
export async function pinnedKeys(pinned: readonly PinnedEntry[], metas: readonly ArtifactMeta[], r: PinResolver, log?: Logger): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const p of pinned) {
    if (typeof p === 'string') {
      if (isCacheKey(p)) keys.add(p);
      continue;
    }
    let resolvedOk = false;
    if (r.resolve) {
      try {
        keys.add((await r.resolve(p)).key);
        resolvedOk = true;
      } catch (err) {
        log?.warn({ spec: p, error: (err as Error).message }, 'prune: cannot resolve a pinned spec now; keeping every artifact built from that request');
      }
    }
    if (!resolvedOk) {
      let want: string | null;
      try {
        want = requestShape(r.parse ? r.parse(p) : p);
      } catch {
        want = requestShape(p);
      }
      for (const m of metas) if (want !== null && requestShape(m.request) === want) keys.add(m.key);
    }
  }
  return keys;
}

// ---- execution ------------------------------------------------------------------------------

export interface PruneReport {
  dryRun: boolean;
  trigger: string;
  budget: { maxBytes: number | null; maxAgeMs: number | null };
  before: Usage;
  removed: Array<{ key: string; bytes: number; status: string; lastAccess: string; reason: PruneReason }>;
  after: Usage;
  pinned: number;
  overBudget: boolean;
  errors: Array<{ key: string; error: string }>;
  startedAt: string;
  durationMs: number;
}

export interface PrunerOptions {
  store: ArtifactStore;
  access: AccessTracker;
  limits: PruneLimits;
  pinned?: readonly PinnedEntry[];
  pinResolver?: PinResolver;
  /** Meta of a published key (default store.getMeta); the server passes its index. */
  meta?: (key: string) => Promise<ArtifactMeta | null>;
  /** Called after a key was deleted (the server drops it from its index). */
  onRemoved?: (key: string) => void;
  /** Published keys that the caller caches but the store no longer has (index reconciliation). */
  onMissing?: (present: ReadonlySet<string>) => void;
  onReport?: (report: PruneReport) => void;
  logger?: Logger;
  now?: () => number;
}

export interface PruneRunOptions extends PruneLimits {
  dryRun?: boolean;
  trigger?: string;
}

export class Pruner {
  private chain: Promise<unknown> = Promise.resolve();
  private queuedAuto = false;
  private closed = false;

  constructor(private readonly o: PrunerOptions) {}

  get limits(): PruneLimits {
    return this.o.limits;
  }

  /** Whether a budget or an age limit is configured (automatic runs do nothing otherwise). */
  get enabled(): boolean {
    return this.o.limits.maxBytes != null || this.o.limits.maxAgeMs != null;
  }

  /** Runs one prune (serialised with any other run). Limits in `opts` override the configured ones. */
  run(opts: PruneRunOptions = {}): Promise<PruneReport> {
    const next = this.chain.then(() => this.runOnce(opts));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /** For automatic triggers (new artifact, schedule): coalesces bursts, never throws. */
  schedule(trigger: string): void {
    if (!this.enabled || this.closed || this.queuedAuto) return;
    this.queuedAuto = true;
    const next = this.chain.then(async () => {
      this.queuedAuto = false;
      if (this.closed) return;
      try {
        await this.runOnce({ trigger });
      } catch (err) {
        this.o.logger?.warn({ err, trigger }, 'prune run failed');
      }
    });
    this.chain = next;
  }

  /** Waits for a running prune; later automatic triggers are ignored. */
  async close(): Promise<void> {
    this.closed = true;
    await this.chain.catch(() => undefined);
  }

  private async runOnce(opts: PruneRunOptions): Promise<PruneReport> {
    const now = (this.o.now ?? Date.now)();
    const started = Date.now();
    const dryRun = !!opts.dryRun;
    const maxBytes = opts.maxBytes !== undefined ? opts.maxBytes : (this.o.limits.maxBytes ?? null);
    const maxAgeMs = opts.maxAgeMs !== undefined ? opts.maxAgeMs : (this.o.limits.maxAgeMs ?? null);
    const input = await this.gather();
    const plan = planPrune(input.entries, { maxBytes, maxAgeMs, now, unaccountedBytes: input.unaccounted });
    const outcome: PruneOutcome = dryRun ? { removed: plan.remove.map(reported), errors: [], after: plan.after } : await this.execute(plan, input);
    const report: PruneReport = {
      dryRun,
      trigger: opts.trigger ?? 'manual',
      budget: { maxBytes, maxAgeMs },
      before: plan.before,
      removed: outcome.removed,
      after: outcome.after,
      pinned: plan.pinned,
      overBudget: maxBytes != null && outcome.after.bytes > maxBytes,
      errors: outcome.errors,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
    };
    this.log(report);
    this.o.onReport?.(report);
    return report;
  }

  /** The plan's inputs: per-artifact bytes (one store listing), last-download times, metas, pinned keys. */
  private async gather(): Promise<PruneInput> {
    const { store, access } = this.o;
    const usage = await store.usage();
    const times = await access.all();
    const metaOf = this.o.meta ?? ((k: string) => store.getMeta(k));
    const metas: ArtifactMeta[] = [];
    let unaccounted = 0;
    for (const [key, u] of usage.entries) {
      const meta = u.published ? await metaOf(key).catch(() => null) : null;
      if (meta) metas.push(meta);
      else unaccounted += u.bytes;
    }
    const pinned = await pinnedKeys(this.o.pinned ?? [], metas, this.o.pinResolver ?? {}, this.o.logger);
    const entries: PruneEntry[] = metas.map((m) => {
      const fin = Date.parse(m.finishedAt);
      return {
        key: m.key,
        bytes: usage.entries.get(m.key)!.bytes,
        status: m.status,
        lastAccess: Math.max(times.get(m.key) ?? 0, Number.isNaN(fin) ? 0 : fin),
        pinned: pinned.has(m.key),
      };
    });
    return { usage, times, metas, unaccounted, entries };
  }

  /** Deletes what the plan removes, then drops the records of artifacts that no longer exist. */
  private async execute(plan: PrunePlan, input: PruneInput): Promise<PruneOutcome> {
    const { access } = this.o;
    const errors: PruneReport['errors'] = [];
    const removed: PruneReport['removed'] = [];
    let freed = 0;
    const byKey = new Map(input.metas.map((m) => [m.key, m]));
    for (const r of plan.remove) {
      try {
        if (!(await this.deleteIfUnchanged(r.key, byKey.get(r.key)))) continue;
        freed += r.bytes;
        this.o.onRemoved?.(r.key);
        await access.forget(r.key).catch(() => undefined);
        removed.push(reported(r));
      } catch (err) {
        errors.push({ key: r.key, error: (err as Error).message });
      }
    }
    const after = { bytes: plan.before.bytes - freed, objects: plan.before.objects - removed.length };
    // Records of artifacts that no longer exist.
    for (const k of input.times.keys()) if (!input.usage.entries.has(k)) await access.forget(k).catch(() => undefined);
    this.o.onMissing?.(new Set(input.metas.map((m) => m.key)));
    return { removed, errors, after };
  }

  /**
   * Deletes `key` unless its record changed since the listing (a failed build retried and now
   * published stays). False when nothing was deleted: changed, or already gone.
   */
  private async deleteIfUnchanged(key: string, listed: ArtifactMeta | undefined): Promise<boolean> {
    const cur = await this.o.store.getMeta(key);
    if (!cur) {
      this.o.onRemoved?.(key); // someone else (another hub) removed it
      return false;
    }
    if (cur.finishedAt !== listed?.finishedAt) return false;
    await this.o.store.delete(key);
    return true;
  }

  private log(report: PruneReport): void {
    const { dryRun, trigger, removed, errors, before, after, pinned, overBudget } = report;
    const log = this.o.logger;
    if (removed.length || errors.length || overBudget) {
      log?.info(
        { dryRun, trigger, removed: removed.length, freedBytes: before.bytes - after.bytes, before, after, pinned, errors: errors.length, overBudget },
        dryRun ? 'prune (dry run): would remove artifacts' : 'prune: removed artifacts',
      );
    } else {
      log?.debug({ trigger, before }, 'prune: nothing to remove');
    }
  }
}

/** What one run works from (Pruner.gather). */
interface PruneInput {
  usage: StoreUsage;
  times: Map<string, number>;
  metas: ArtifactMeta[];
  /** Bytes of unpublished leftovers (and records unreadable now): counted, never removed. */
  unaccounted: number;
  entries: PruneEntry[];
}

interface PruneOutcome {
  removed: PruneReport['removed'];
  errors: PruneReport['errors'];
  after: Usage;
}

/** A planned removal as the report shows it. */
function reported(r: PlannedRemoval): PruneReport['removed'][number] {
  return { key: r.key, bytes: r.bytes, status: r.status, lastAccess: new Date(r.lastAccess).toISOString(), reason: r.reason };
}
