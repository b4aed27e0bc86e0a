/**
 * Store pruning: keep the artifact store under a byte budget and (optionally) a maximum age.
 *
 * planPrune() (prune-plan.ts) is the pure rule set (unit-tested); Pruner gathers the inputs (per-artifact bytes
 * from one store listing, metas, last-download times, pinned keys: prune-pinned.ts), executes the plan with
 * store.delete() and reports what went. Rules:
 *  - pinned artifacts are never removed;
 *  - with a max age, anything not downloaded (or, never downloaded, not finished) within it goes;
 *  - while the store is over its byte budget: failure records go first (oldest first), then
 *    successful builds, least recently *downloaded* first (never downloaded: finish time);
 *  - unpublished leftovers (no meta.json: an upload in progress or a crashed agent's parts) are
 *    counted but never touched;
 *  - image blobs count (src/ops/blobgc.ts): an artifact is charged the blobs only its records
 *    reference, blobs shared by several artifacts count once as unaccounted bytes, unreferenced
 *    blobs past the grace period are collected by every pass anyway (counted, removed first).
 * After the removals each pass drops the removed artifacts' records (images/<key>, …) and runs the
 * blob collector (collectBlobs), which also drops records whose artifact went another way
 * (deleted, quarantined) and deletes the blobs nothing references any more.
 */
import type { Logger } from 'pino';
import type { AccessTracker, ArtifactMeta, ArtifactStore, ListedBlob, StoreUsage } from '../store/index.js';
import { attributeBlobs, BLOB_REFERENCE_NAMESPACES, type BlobAttribution, collectBlobs, type CollectBlobsResult, DEFAULT_BLOB_GRACE_MS, dropArtifactRecords, readBlobReferences } from './blobgc.js';
import { type PinnedEntry, type PinResolver, pinnedKeys } from './prune-pinned.js';
import { planPrune, type PlannedRemoval, type PruneEntry, type PruneLimits, type PrunePlan, type PruneReason, type Usage } from './prune-plan.js';
import { errorMessage } from '../util/errors.js';

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
  /** The blob collection of this pass (dry run: what it would delete). */
  blobs: BlobsReport;
  startedAt: string;
  durationMs: number;
}

/** A prune report's blob part. */
export interface BlobsReport {
  /** Unreferenced blobs deleted (dry run: that would be). */
  removed: number;
  bytes: number;
  /** Unreferenced blobs kept because they are younger than the grace period. */
  young: number;
  /** Blob bytes in the store before the pass (counted in `before.bytes`). */
  storedBytes: number;
  /** Why blobs were not collected (an unreadable record), when so. */
  skipped?: string;
  errors: number;
}

export interface PrunerOptions {
  store: ArtifactStore;
  /**
   * The blob area (src/ops/blobgc.ts): referencing record namespaces (default `images`, `signatures`) and the
   * grace period of unreferenced blobs (default 1 h). `false`: blobs are neither counted nor collected.
   */
  blobs?: { namespaces?: readonly string[]; graceMs?: number } | false;
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

  /** Only the blob collection (serialised with prune runs), for a server without limits. Never throws. */
  collect(): Promise<CollectBlobsResult | null> {
    const next = this.chain.then(async () => {
      if (this.o.blobs === false || this.closed) return null;
      const present = new Set<string>();
      for (const [k, u] of (await this.o.store.usage()).entries) if (u.published) present.add(k);
      return collectBlobs(this.o.store, this.gcOptions(present, new Set(), false));
    });
    this.chain = next.catch(() => undefined);
    return next.catch((err: unknown) => {
      this.o.logger?.warn({ error: errorMessage(err) }, 'blob collection failed');
      return null;
    });
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
    const input = await this.gather(now);
    const plan = planPrune(input.entries, { maxBytes, maxAgeMs, now, unaccountedBytes: input.unaccounted, collectableBytes: input.blobs?.garbageBytes ?? 0 });
    const outcome: PruneOutcome = dryRun ? { removed: plan.remove.map(reported), errors: [], after: plan.after, blobs: dryBlobs(plan, input) } : await this.execute(plan, input, now);
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
      blobs: outcome.blobs,
      startedAt: new Date(started).toISOString(),
      durationMs: Date.now() - started,
    };
    this.log(report);
    this.o.onReport?.(report);
    return report;
  }

  private get namespaces(): readonly string[] {
    return (this.o.blobs !== false && this.o.blobs?.namespaces) || BLOB_REFERENCE_NAMESPACES;
  }

  private get graceMs(): number {
    return (this.o.blobs === false ? undefined : this.o.blobs?.graceMs) ?? DEFAULT_BLOB_GRACE_MS;
  }

  /**
   * The collector's options: an artifact exists when it was listed published and not removed now,
   * or (new since the listing) the store has its record; a store that cannot say keeps it.
   */
  private gcOptions(present: ReadonlySet<string>, removed: ReadonlySet<string>, dryRun: boolean, now?: number) {
    return {
      namespaces: this.namespaces,
      graceMs: this.graceMs,
      ...(now !== undefined ? { now } : {}),
      dryRun,
      ...(this.o.logger ? { log: this.o.logger } : {}),
      artifactExists: async (key: string) => {
        if (removed.has(key)) return false;
        if (present.has(key)) return true;
        return (await this.o.store.getMeta(key).catch(() => 'unknown')) !== null;
      },
    };
  }

  /** The blob area's attribution (null when blobs are off or cannot be read now: then they count as unaccounted). */
  private async blobView(now: number): Promise<{ view: BlobAttribution | null; total: number; error?: string }> {
    if (this.o.blobs === false) return { view: null, total: 0 };
    const listed: ListedBlob[] = [];
    let total = 0;
    try {
      for await (const b of this.o.store.listBlobs()) {
        listed.push(b);
        total += b.size;
      }
      const refs = await readBlobReferences(this.o.store, this.namespaces);
      return { view: attributeBlobs(refs, listed, { now, graceMs: this.graceMs }), total };
    } catch (err) {
      this.o.logger?.warn({ error: errorMessage(err) }, 'prune: the blob references cannot be read now; blobs count as unaccounted bytes');
      return { view: null, total, error: errorMessage(err) };
    }
  }

  /** The plan's inputs: per-artifact bytes (one store listing, plus its blobs), last-download times, metas, pinned keys. */
  private async gather(now: number): Promise<PruneInput> {
    const { store, access } = this.o;
    const usage = await store.usage();
    const blobs = await this.blobView(now);
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
    const view = blobs.view;
    const listedKeys = new Set(metas.map((m) => m.key));
    if (view) {
      unaccounted += view.sharedBytes + view.youngBytes;
      // Blobs of records whose artifact is not listed (new since the listing, or gone): not removable here.
      for (const [k, b] of view.perKey) if (!listedKeys.has(k)) unaccounted += b;
    } else {
      unaccounted += blobs.total;
    }
    const entries: PruneEntry[] = metas.map((m) => {
      const fin = Date.parse(m.finishedAt);
      return {
        key: m.key,
        bytes: usage.entries.get(m.key)!.bytes + (view?.perKey.get(m.key) ?? 0),
        status: m.status,
        lastAccess: Math.max(times.get(m.key) ?? 0, Number.isNaN(fin) ? 0 : fin),
        pinned: pinned.has(m.key),
      };
    });
    return { usage, times, metas, unaccounted, entries, blobs: view, blobsTotal: blobs.total, ...(blobs.error ? { blobsError: blobs.error } : {}) };
  }

  /** Deletes what the plan removes, then drops the records of artifacts that no longer exist. */
  private async execute(plan: PrunePlan, input: PruneInput, now: number): Promise<PruneOutcome> {
    const { access, store } = this.o;
    const errors: PruneReport['errors'] = [];
    const removed: PruneReport['removed'] = [];
    let freed = 0;
    const byKey = new Map(input.metas.map((m) => [m.key, m]));
    for (const r of plan.remove) {
      try {
        if (!(await this.deleteIfUnchanged(r.key, byKey.get(r.key)))) continue;
        // The artifact's files; its blobs are counted when the collector below deletes them.
        freed += input.usage.entries.get(r.key)?.bytes ?? 0;
        this.o.onRemoved?.(r.key);
        await access.forget(r.key).catch(() => undefined);
        removed.push(reported(r));
      } catch (err) {
        errors.push({ key: r.key, error: errorMessage(err) });
      }
    }
    // Their records (images/<key>, …) go, then every blob nothing references any more.
    const gone = new Set(removed.map((r) => r.key));
    let blobs: BlobsReport = { removed: 0, bytes: 0, young: 0, storedBytes: input.blobsTotal, errors: 0 };
    if (this.o.blobs !== false) {
      try {
        await dropArtifactRecords(store, gone, this.namespaces);
      } catch (err) {
        this.o.logger?.warn({ error: errorMessage(err) }, 'prune: could not drop the records of removed artifacts; the next pass does');
      }
      const present = new Set(input.metas.map((m) => m.key));
      const gc = await collectBlobs(store, this.gcOptions(present, gone, false, now));
      blobs = { removed: gc.removed.length, bytes: gc.bytes, young: gc.young, storedBytes: input.blobsTotal, ...(gc.skipped ? { skipped: gc.skipped } : {}), errors: gc.errors.length };
      freed += gc.bytes;
    }
    const after = { bytes: plan.before.bytes - freed, objects: plan.before.objects - removed.length };
    // Records of artifacts that no longer exist.
    for (const k of input.times.keys()) if (!input.usage.entries.has(k)) await access.forget(k).catch(() => undefined);
    this.o.onMissing?.(new Set(input.metas.map((m) => m.key)));
    return { removed, errors, after, blobs };
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
  /** The blob area as the budget sees it; null when blobs are off or unreadable now. */
  blobs: BlobAttribution | null;
  blobsTotal: number;
  blobsError?: string;
}

interface PruneOutcome {
  removed: PruneReport['removed'];
  errors: PruneReport['errors'];
  after: Usage;
  blobs: BlobsReport;
}

/** A dry run's blob part: the unreferenced blobs past the grace, and the blobs only the removed artifacts use. */
function dryBlobs(plan: PrunePlan, input: PruneInput): BlobsReport {
  const v = input.blobs;
  if (!v) return { removed: 0, bytes: 0, young: 0, storedBytes: input.blobsTotal, errors: 0, ...(input.blobsError ? { skipped: input.blobsError } : {}) };
  let removed = v.garbage;
  let bytes = v.garbageBytes;
  for (const r of plan.remove) {
    removed += v.perKeyBlobs.get(r.key) ?? 0;
    bytes += v.perKey.get(r.key) ?? 0;
  }
  return { removed, bytes, young: v.young, storedBytes: input.blobsTotal, errors: 0 };
}

/** A planned removal as the report shows it. */
function reported(r: PlannedRemoval): PruneReport['removed'][number] {
  return { key: r.key, bytes: r.bytes, status: r.status, lastAccess: new Date(r.lastAccess).toISOString(), reason: r.reason };
}
