/**
 * Prometheus metrics (prom-client, on a private Registry, never the global one).
 * Event metrics are updated by observers (service hooks, prune reports, version refreshes);
 * state metrics (queue depth, agents, store size) are collected on scrape, the store's with a
 * short cache because on S3 it is a listing.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HotCacheStats } from '../hottier/index.js';
import type { AgentInfo, FinalState, QueueDepth } from '../queue/index.js';
import type { ServiceHooks } from '../service/index.js';
import type { ArtifactMeta, StoreStats } from '../store/index.js';
import type { PruneReport } from './prune.js';

export interface MetricsSources {
  depth?: () => Promise<QueueDepth>;
  agents?: () => Promise<AgentInfo[]>;
  /** The store's bytes (artifact area + blobs) and, when known, the blob area's share. */
  storeStats?: () => Promise<StoreStats & { blobs?: number; blobBytes?: number }>;
  /** Go caches of this process's workers (serve), when budgeted. */
  goCacheBytes?: () => Promise<number>;
  /** The hot tier's counters (src/hottier), read on scrape. */
  hotCache?: () => HotCacheStats;
}

export interface MetricsOptions {
  /** How long a store size reading is reused. Default 30 s. */
  storeStatsCacheMs?: number;
  /** Longest wait for a state reading on scrape before the last value is shown. Default 5 s. */
  collectTimeoutMs?: number;
  /** Node process metrics (CPU, memory, event loop). Default true. */
  processMetrics?: boolean;
}

/** One call shared by the collectors of one scrape (prom-client runs them concurrently). */
function shared<T>(fn: () => Promise<T>): () => Promise<T> {
  let inflight: Promise<T> | null = null;
  return () => {
    if (inflight) return inflight;
    const p = fn();
    inflight = p;
    const clear = () => {
      if (inflight === p) inflight = null;
    };
    p.then(clear, clear);
    return p;
  };
}

const DURATION_BUCKETS = [5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600];

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

interface EventMetrics {
  builds: Counter<'outcome'>;
  buildDuration: Histogram<'outcome'>;
  cacheLookups: Counter<'result'>;
  requests: Counter<'result'>;
  downloads: Counter;
  corruptArtifacts: Counter<'reason'>;
  pruneRuns: Counter<'trigger' | 'dry_run'>;
  prunedArtifacts: Counter<'reason'>;
  prunedBytes: Counter;
  pruneErrors: Counter;
  versionRefreshes: Counter<'result'>;
  versionsRefreshedAt: Gauge;
  prebuildsQueued: Counter;
  goCacheCleans: Counter<'kind'>;
  watchTrials: Counter<'kind' | 'result'>;
}

/** The event metrics, updated by observers (service hooks, prune reports, version refreshes). */
function eventMetrics(r: Registry[]): EventMetrics {
  return {
    builds: new Counter({ name: 'fairway_builds_total', help: 'Builds that ended, by outcome (succeeded, failed, canceled).', labelNames: ['outcome'], registers: r }),
    buildDuration: new Histogram({
      name: 'fairway_build_duration_seconds',
      help: 'Time xcaddy ran for a build, by outcome.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers: r,
    }),
    cacheLookups: new Counter({ name: 'fairway_cache_lookups_total', help: 'Build requests answered from the store (hit) or not (miss).', labelNames: ['result'], registers: r }),
    requests: new Counter({ name: 'fairway_build_requests_total', help: 'Build requests by result: hit, queued (new build), joined (build in flight).', labelNames: ['result'], registers: r }),
    downloads: new Counter({ name: 'fairway_artifact_downloads_total', help: 'Artifact downloads started (native and compat API).', registers: r }),
    corruptArtifacts: new Counter({
      name: 'fairway_artifact_corrupt_total',
      help: 'Damaged stored artifacts quarantined, by reason: the binary does not match its record (checksum, truncated, oversized), is missing (missing), or meta.json / buildinfo.json / provenance.json / sbom.json is unreadable (bad_meta, bad_buildinfo, bad_provenance, bad_sbom).',
      labelNames: ['reason'],
      registers: r,
    }),
    pruneRuns: new Counter({ name: 'fairway_prune_runs_total', help: 'Prune runs by trigger (artifact, schedule, start, api).', labelNames: ['trigger', 'dry_run'], registers: r }),
    prunedArtifacts: new Counter({ name: 'fairway_pruned_artifacts_total', help: 'Artifacts removed by pruning, by reason (budget, max-age).', labelNames: ['reason'], registers: r }),
    prunedBytes: new Counter({ name: 'fairway_pruned_bytes_total', help: 'Bytes removed from the store by pruning.', registers: r }),
    pruneErrors: new Counter({ name: 'fairway_prune_errors_total', help: 'Artifacts pruning failed to remove.', registers: r }),
    versionRefreshes: new Counter({ name: 'fairway_version_refreshes_total', help: 'Refreshes of the Caddy version list, by result.', labelNames: ['result'], registers: r }),
    versionsRefreshedAt: new Gauge({ name: 'fairway_versions_refreshed_timestamp_seconds', help: 'When the Caddy version list was last refreshed (Unix time).', registers: r }),
    prebuildsQueued: new Counter({ name: 'fairway_prebuilds_queued_total', help: 'Prebuild specs that started a new build.', registers: r }),
    goCacheCleans: new Counter({ name: 'fairway_go_cache_cleans_total', help: 'Go cache cleans run to keep the Go cache budget, by kind (cache, modcache).', labelNames: ['kind'], registers: r }),
    watchTrials: new Counter({
      name: 'fairway_recipe_trials_total',
      help: 'Recipe trials by the watcher (docs/recipes.md), by kind (candidate, culprit-search) and result (promoted, failed, passed).',
      labelNames: ['kind', 'result'],
      registers: r,
    }),
  };
}

function queueDepthGauge(r: Registry[], depth: () => Promise<QueueDepth>, timeout: number): void {
  const read = shared(() => withTimeout(depth(), timeout));
  new Gauge({
    name: 'fairway_queue_depth',
    help: 'Builds waiting (queued) and running.',
    labelNames: ['state'],
    registers: r,
    async collect() {
      try {
        const d = await read();
        this.set({ state: 'queued' }, d.queued);
        this.set({ state: 'running' }, d.running);
      } catch {
        /* keep the last values */
      }
    },
  });
}

function agentGauges(r: Registry[], agents: () => Promise<AgentInfo[]>, timeout: number): void {
  // prom-client collects every metric at once: the three gauges share one reading per scrape.
  const read = shared(() => withTimeout(agents(), timeout));
  const gauge = (name: string, help: string, value: (l: AgentInfo[]) => number) =>
    new Gauge({
      name,
      help,
      registers: r,
      async collect() {
        try {
          this.set(value(await read()));
        } catch {
          /* keep the last value */
        }
      },
    });
  gauge('fairway_agents', 'Workers/agents taking builds (with a live heartbeat).', (l) => l.length);
  gauge('fairway_agent_slots', 'Concurrent builds the agents can run in total.', (l) => l.reduce((n, a) => n + a.concurrency, 0));
  gauge('fairway_agent_busy_slots', 'Builds the agents run now.', (l) => l.reduce((n, a) => n + a.jobs.length, 0));
  // The shared build cache's figures of each agent, as its last heartbeat carried them (agents
  // serve no HTTP, so the hub exports them), since the agent started.
  const perAgent = (name: string, help: string, label: string, values: (c: NonNullable<AgentInfo['cache']>) => Record<string, number>) =>
    new Gauge({
      name,
      help,
      labelNames: ['agent', label],
      registers: r,
      async collect() {
        let list: AgentInfo[];
        try {
          list = await read();
        } catch {
          return; // keep the last values
        }
        this.reset();
        for (const a of list) {
          if (!a.cache) continue;
          for (const [v, n] of Object.entries(values(a.cache))) this.set({ agent: a.id, [label]: v }, n);
        }
      },
    });
  perAgent(
    'fairway_agent_gocache_lookups',
    'Go build cache gets of each agent since it started (its last heartbeat), by result: hit (local or shared tier), miss; shared_hit counts the hits from the shared tier; corrupt the entries found not matching their hash.',
    'result',
    (c) => ({ hit: c.hits, miss: c.misses, shared_hit: c.sharedHits, corrupt: c.corrupt }),
  );
  perAgent('fairway_agent_gocache_shared_bytes', 'Bytes each agent read from (read) and wrote to (written) the shared Go build cache since it started (its last heartbeat).', 'direction', (c) => ({
    read: c.sharedBytesRead ?? 0,
    written: c.sharedBytesWritten ?? 0,
  }));
}

type StoreReading = StoreStats & { blobs?: number; blobBytes?: number };

function storeGauges(r: Registry[], storeStats: () => Promise<StoreReading>, timeout: number): void {
  const read = shared(() => withTimeout(storeStats(), timeout));
  const gauge = (name: string, help: string, value: (s: StoreReading | null) => number | null) =>
    new Gauge({
      name,
      help,
      registers: r,
      async collect() {
        const s = await read().catch(() => null);
        const v = value(s);
        if (v !== null) this.set(v);
      },
    });
  gauge('fairway_store_bytes', 'Bytes in the store counted against storeMaxBytes: the artifact area and the blob area (image layers, manifests, indexes).', (s) => s?.bytes ?? null);
  gauge('fairway_store_blob_bytes', "Bytes in the store's blob area (part of fairway_store_bytes).", (s) => s?.blobBytes ?? null);
  gauge('fairway_store_blobs', "Blobs in the store's blob area.", (s) => s?.blobs ?? null);
  gauge('fairway_store_objects', 'Published artifacts (and failure records) in the store.', (s) => s?.objects ?? null);
  gauge('fairway_store_up', '1 when the last store reading succeeded.', (s) => (s ? 1 : 0));
}

function hotCacheMetrics(r: Registry[], hot: () => HotCacheStats): void {
  const gauge = (name: string, help: string, value: (s: HotCacheStats) => number) =>
    new Gauge({
      name,
      help,
      registers: r,
      collect() {
        this.set(value(hot()));
      },
    });
  // Running totals kept by the cache: shown as counters (reset, then set to the total).
  const counter = (name: string, help: string, value: (s: HotCacheStats) => number) =>
    new Counter({
      name,
      help,
      registers: r,
      collect() {
        this.reset();
        this.inc(value(hot()));
      },
    });
  gauge('fairway_hot_cache_bytes', 'Bytes of binaries held in memory by the hot tier.', (s) => s.bytes);
  gauge('fairway_hot_cache_max_bytes', 'Byte budget of the hot tier (--memory-cache).', (s) => s.maxBytes);
  gauge('fairway_hot_cache_entries', 'Binaries held in memory by the hot tier.', (s) => s.entries);
  counter('fairway_hot_cache_hits_total', 'Downloads served from memory.', (s) => s.hits);
  counter('fairway_hot_cache_misses_total', 'Downloads streamed from the store (not in memory).', (s) => s.misses);
  counter('fairway_hot_cache_fills_total', 'Binaries read from the store into memory.', (s) => s.fills);
  counter('fairway_hot_cache_evictions_total', 'Binaries dropped from memory to fit the budget.', (s) => s.evictions);
  counter('fairway_hot_cache_failed_fills_total', 'Fills refused (sha256 or size mismatch, read error).', (s) => s.failedFills);
}

function goCacheGauge(r: Registry[], goCache: () => Promise<number>, timeout: number): void {
  new Gauge({
    name: 'fairway_go_cache_bytes',
    help: "Size of the Go build and module caches of this process's workers.",
    registers: r,
    async collect() {
      try {
        this.set(await withTimeout(goCache(), timeout));
      } catch {
        /* keep the last value */
      }
    },
  });
}

export class OpsMetrics {
  readonly registry = new Registry();
  readonly builds: Counter<'outcome'>;
  readonly buildDuration: Histogram<'outcome'>;
  readonly cacheLookups: Counter<'result'>;
  readonly requests: Counter<'result'>;
  readonly downloads: Counter;
  readonly corruptArtifacts: Counter<'reason'>;
  readonly pruneRuns: Counter<'trigger' | 'dry_run'>;
  readonly prunedArtifacts: Counter<'reason'>;
  readonly prunedBytes: Counter;
  readonly pruneErrors: Counter;
  readonly versionRefreshes: Counter<'result'>;
  readonly versionsRefreshedAt: Gauge;
  readonly prebuildsQueued: Counter;
  readonly goCacheCleans: Counter<'kind'>;
  readonly watchTrials: Counter<'kind' | 'result'>;
  /** fleet module proxy (docs/distributed.md): requests by result (hit, fill, miss, invalid). */
  readonly goproxyRequests: Counter<'result'>;
  /** Webhook deliveries that ended (src/webhooks), by event and result (delivered, failed, dropped, abandoned). */
  readonly webhookDeliveries: Counter<'event' | 'result'>;
  private storeCache: { at: number; value: StoreReading } | null = null;
  private storeInflight: Promise<StoreReading> | null = null;

  constructor(
    private readonly src: MetricsSources,
    private readonly opts: MetricsOptions = {},
  ) {
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'fairway_' });
    const e = eventMetrics([this.registry]);
    this.builds = e.builds;
    this.buildDuration = e.buildDuration;
    this.cacheLookups = e.cacheLookups;
    this.requests = e.requests;
    this.downloads = e.downloads;
    this.corruptArtifacts = e.corruptArtifacts;
    this.pruneRuns = e.pruneRuns;
    this.prunedArtifacts = e.prunedArtifacts;
    this.prunedBytes = e.prunedBytes;
    this.pruneErrors = e.pruneErrors;
    this.versionRefreshes = e.versionRefreshes;
    this.versionsRefreshedAt = e.versionsRefreshedAt;
    this.prebuildsQueued = e.prebuildsQueued;
    this.goCacheCleans = e.goCacheCleans;
    this.watchTrials = e.watchTrials;
    // fleet module proxy
    this.goproxyRequests = new Counter({
      name: 'fairway_goproxy_requests_total',
      help: "Fleet module proxy requests (GET /goproxy/…) by result: hit (from the hub's module cache), fill (fetched upstream by the hub first), miss (404: not served or not fetchable), invalid (400).",
      labelNames: ['result'],
      registers: [this.registry],
    });
    for (const r of ['hit', 'fill', 'miss', 'invalid']) this.goproxyRequests.inc({ result: r }, 0);
    this.webhookDeliveries = new Counter({
      name: 'fairway_webhook_deliveries_total',
      help: 'Webhook deliveries that ended, by event and result: delivered (a 2xx), failed (a final answer or every attempt used), dropped (too many pending), abandoned (the server stopped first).',
      labelNames: ['event', 'result'],
      registers: [this.registry],
    });
    this.addStateMetrics(opts.collectTimeoutMs ?? 5000);
  }

  /** The state metrics of the sources given, read on scrape. */
  private addStateMetrics(timeout: number): void {
    const r = [this.registry];
    const { depth, agents, hotCache, goCacheBytes } = this.src;
    if (depth) queueDepthGauge(r, depth, timeout);
    if (agents) agentGauges(r, agents, timeout);
    if (this.src.storeStats) storeGauges(r, () => this.storeStats(), timeout);
    if (hotCache) hotCacheMetrics(r, hotCache);
    if (goCacheBytes) goCacheGauge(r, goCacheBytes, timeout);
  }

  /** Store stats, cached for a short time; a prune report refreshes the cache. */
  private storeStats(): Promise<StoreReading> {
    const ttl = this.opts.storeStatsCacheMs ?? 30_000;
    if (this.storeCache && Date.now() - this.storeCache.at < ttl) return Promise.resolve(this.storeCache.value);
    this.storeInflight ??= this.src.storeStats!()
      .then((value) => {
        this.storeCache = { at: Date.now(), value };
        return value;
      })
      .finally(() => {
        this.storeInflight = null;
      });
    return this.storeInflight;
  }

  /** Observers to register with BuildService.observe(). */
  serviceHooks(): ServiceHooks {
    return {
      requested: (_key, result) => {
        this.requests.inc({ result });
        this.cacheLookups.inc({ result: result === 'hit' ? 'hit' : 'miss' });
      },
      downloaded: () => this.downloads.inc(),
      corrupt: (_key, reason) => {
        this.corruptArtifacts.inc({ reason });
        this.storeCache = null;
      },
      finished: (_key: string, state: FinalState, meta: ArtifactMeta | null) => {
        this.builds.inc({ outcome: state });
        if (meta && meta.status === state && meta.durationMs !== undefined) this.buildDuration.observe({ outcome: state }, meta.durationMs / 1000);
        this.storeCache = null;
      },
    };
  }

  pruned(report: PruneReport): void {
    this.pruneRuns.inc({ trigger: report.trigger, dry_run: String(report.dryRun) });
    if (report.dryRun) return;
    for (const r of report.removed) this.prunedArtifacts.inc({ reason: r.reason });
    const bytes = report.removed.reduce((n, r) => n + r.bytes, 0);
    if (bytes > 0) this.prunedBytes.inc(bytes);
    if (report.errors.length) this.pruneErrors.inc(report.errors.length);
    this.storeCache = { at: Date.now(), value: { ...report.after, blobBytes: report.blobs.storedBytes - report.blobs.bytes } };
  }

  /** A webhook delivery ended (the Notifier's onResult, wired by src/main). */
  webhookDelivered(event: string, result: string): void {
    this.webhookDeliveries.inc({ event, result });
  }

  versionsRefreshed(ok: boolean, at?: string): void {
    this.versionRefreshes.inc({ result: ok ? 'ok' : 'error' });
    if (ok && at) this.versionsRefreshedAt.set(Date.parse(at) / 1000);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  metrics(): Promise<string> {
    return this.registry.metrics();
  }
}
