/**
 * The wiring of operations: createHttpOps() puts the version refresh and prebuilds, store pruning
 * with durable last-download times, the Go cache budget and the metrics together for `serve` and
 * `hub`; createWorkerOps() the Go cache budget for `agent`.
 */
import type { Logger } from 'pino';
import type { HotCache } from '../hottier/index.js';
import type { Config } from '../config/index.js';
import type { BuildQueue } from '../queue/index.js';
import type { BuildPayload, BuildService } from '../service/index.js';
import type { AccessTracker } from '../store/index.js';
import type { ArtifactStore } from '../store/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { type BuildGate, GoCacheBudget } from './gocachebudget.js';
import { OpsMetrics } from './metrics.js';
import { Prebuilder, type PrebuildSpec, VersionRefresher, expandPrebuilds } from './prebuilds.js';
import { blobUsage } from './blobgc.js';
import { Pruner } from './prune.js';
import { Scheduler } from './scheduler.js';
import { errorMessage } from '../util/errors.js';

type OpsSetting = 'storeMaxBytes' | 'storeMaxAge' | 'pinned' | 'prebuild' | 'refreshInterval' | 'pruneInterval' | 'goCacheMaxBytes' | 'accessWriteInterval';
type OpsConfig = Pick<Config, OpsSetting | 'cacheDir'>;

export interface HttpOps {
  metrics: OpsMetrics;
  pruner: Pruner;
  access: AccessTracker;
  scheduler: Scheduler;
  /** Starts the schedules (version refresh + prebuilds and the first prune run at once). */
  start(): void;
  /** Stops the schedules, waits for a prune in progress, writes pending access times. */
  close(): Promise<void>;
}

function goCacheBudget(config: OpsConfig, toolchain: Toolchain, gate: BuildGate, logger: Logger, metrics?: OpsMetrics): GoCacheBudget | null {
  if (config.goCacheMaxBytes === undefined) return null;
  const budget = new GoCacheBudget({
    cacheDir: config.cacheDir,
    maxBytes: config.goCacheMaxBytes,
    gate,
    logger,
    clean: async (kind) => {
      await toolchain.go(['clean', kind === 'cache' ? '-cache' : '-modcache'], { timeoutMs: 30 * 60_000 });
    },
    onClean: (kind, freed) => {
      metrics?.goCacheCleans.inc({ kind });
      logger.info({ kind, freedBytes: freed }, `go clean -${kind} done`);
    },
  });
  gate.onIdle(() => budget.maybeEnforce());
  return budget;
}

interface HttpOpsParts {
  config: OpsConfig;
  logger: Logger;
  service: BuildService;
  store: ArtifactStore;
  queue: BuildQueue<BuildPayload>;
  toolchain: Toolchain;
  gate?: BuildGate;
  /** The hot tier, for its metrics. */
  hot?: HotCache;
  /** More prebuild specs, read at each run (src/main: the registry's recipes × image platforms). */
  prebuildSpecs?: () => Promise<readonly PrebuildSpec[]>;
  /** A build was queued for one of `prebuildSpecs` (src/main: the registry makes its image when it is built). */
  prebuildQueued?: (key: string) => void;
}

/** Fails at start on a pinned or prebuild spec the parser refuses. */
function checkConfiguredSpecs(config: OpsConfig, service: BuildService): void {
  for (const [name, list] of [
    ['pinned', config.pinned],
    ['prebuild', config.prebuild],
  ] as const) {
    for (const entry of list) {
      if (typeof entry === 'string') continue;
      const { platforms, ...rest } = entry as Record<string, unknown>;
      const bodies = Array.isArray(platforms) ? expandPrebuilds([entry]) : [rest];
      for (const b of bodies) {
        try {
          service.parse(b);
        } catch (err) {
          throw new Error(`invalid ${name} spec ${JSON.stringify(entry)}: ${errorMessage(err)}`);
        }
      }
    }
  }
}

/** Metrics, and the Go cache budget when this process builds (it reports to them). */
function metricsAndBudget(parts: HttpOpsParts, log: Logger): { metrics: OpsMetrics; budget: GoCacheBudget | null } {
  const { config, store, queue } = parts;
  let budget: GoCacheBudget | null = null;
  const metrics = new OpsMetrics({
    depth: () => queue.depth(),
    agents: () => queue.agents(),
    // The budget's bytes: the artifact area and the blob area (image layers, manifests, indexes).
    storeStats: async () => {
      const [s, b] = await Promise.all([store.stats(), blobUsage(store)]);
      return { objects: s.objects, bytes: s.bytes + b.bytes, blobs: b.blobs, blobBytes: b.bytes };
    },
    hotCache: parts.hot?.enabled ? () => parts.hot!.stats() : undefined,
    goCacheBytes: parts.gate && config.goCacheMaxBytes !== undefined ? async () => budget?.lastMeasuredBytes ?? 0 : undefined,
  });
  if (parts.gate) budget = goCacheBudget(config, parts.toolchain, parts.gate, log, metrics);
  return { metrics, budget };
}

/** Last-download times and the pruner that reads them. */
function pruning(parts: HttpOpsParts, metrics: OpsMetrics, log: Logger): { access: AccessTracker; pruner: Pruner } {
  const { config, store, service } = parts;
  const access = store.accessTracker({
    intervalMs: config.accessWriteInterval,
    onError: (err, key) => log.warn({ key, error: errorMessage(err) }, 'could not record the download time; retrying later'),
  });
  const pruner = new Pruner({
    store,
    access,
    limits: { maxBytes: config.storeMaxBytes ?? null, maxAgeMs: config.storeMaxAge ?? null },
    pinned: config.pinned,
    pinResolver: { resolve: (spec) => service.resolveKey(spec), parse: (spec) => service.parse(spec) },
    meta: (key) => service.meta(key),
    onRemoved: (key) => service.forget(key),
    onMissing: (present) => {
      for (const k of service.indexedKeys()) if (!present.has(k)) service.forget(k);
    },
    onReport: (r) => metrics.pruned(r),
    logger: log,
  });
  return { access, pruner };
}

/** The version list refresher and the prebuilds queued when a new Caddy appears. */
function prebuilding(parts: HttpOpsParts, metrics: OpsMetrics, log: Logger): { prebuilder: Prebuilder; refresher: VersionRefresher } {
  const { config, service } = parts;
  const prebuilder = new Prebuilder({
    request: (body) => service.request(body),
    specs: config.prebuild,
    extraSpecs: parts.prebuildSpecs,
    onExtraQueued: parts.prebuildQueued,
    logger: log,
    onQueued: () => metrics.prebuildsQueued.inc(),
  });
  const refresher = new VersionRefresher({
    versions: (o) => service.versions(o),
    logger: log,
    onRefreshed: (list) => metrics.versionsRefreshed(true, list.refreshedAt),
    onError: (err) => {
      metrics.versionsRefreshed(false);
      log.warn({ error: errorMessage(err) }, 'could not refresh the Caddy version list; keeping the last one');
    },
  });

  return { prebuilder, refresher };
}

/** The schedules: version refresh (+ prebuilds), pruning, the Go cache budget. */
/** What the schedules run. */
interface Scheduled {
  prebuilder: Prebuilder;
  refresher: VersionRefresher;
  pruner: Pruner;
  budget: GoCacheBudget | null;
}

function schedules(config: OpsConfig, log: Logger, o: Scheduled): Scheduler {
  const { prebuilder, refresher, pruner, budget } = o;
  const scheduler = new Scheduler(log);
  let firstRefresh = true;
  scheduler.add({
    name: 'versions',
    intervalMs: config.refreshInterval,
    firstDelayMs: 0,
    run: async () => {
      const reason = firstRefresh ? 'start' : 'refresh';
      firstRefresh = false;
      const list = await refresher.refresh().catch(() => null);
      if (prebuilder.active) await prebuilder.queueAll(list?.latest ?? refresher.latest, reason);
    },
  });
  if (pruner.enabled) {
    scheduler.add({ name: 'prune', intervalMs: config.pruneInterval, firstDelayMs: 0, run: () => pruner.run({ trigger: 'schedule' }) });
  } else {
    // No limits: no prune runs, but the blobs of artifacts that went (deleted, quarantined) still go.
    scheduler.add({ name: 'blob-gc', intervalMs: config.pruneInterval, firstDelayMs: 0, run: () => pruner.collect() });
  }
  if (budget) {
    const b = budget;
    scheduler.add({ name: 'go-cache', intervalMs: config.pruneInterval, firstDelayMs: 0, run: () => b.enforce() });
  }
  return scheduler;
}

/**
 * For `serve` and `hub`. `gate` is given when this process runs builds itself (serve): then the
 * Go cache budget applies here too. The routes are a plugin of their own:
 * `app.register(opsRoutes, { metrics, pruner })` (src/ops/http.ts).
 */
export function createHttpOps(parts: HttpOpsParts): HttpOps {
  const { config, logger, service } = parts;
  const log = logger.child({ part: 'ops' });
  checkConfiguredSpecs(config, service);
  const { metrics, budget } = metricsAndBudget(parts, log);
  const { access, pruner } = pruning(parts, metrics, log);
  const { prebuilder, refresher } = prebuilding(parts, metrics, log);

  service.observe(metrics.serviceHooks());
  service.observe({
    downloaded: (key) => access.touch(key),
    // A new record in the store (artifact or failure): check the budget.
    finished: (_key, _state, meta) => {
      if (meta) pruner.schedule('artifact');
    },
  });
  const scheduler = schedules(config, log, { prebuilder, refresher, pruner, budget });
  log.info(
    {
      storeMaxBytes: config.storeMaxBytes ?? null,
      storeMaxAge: config.storeMaxAge ?? null,
      pinned: config.pinned.length,
      prebuild: prebuilder.specs.length,
      refreshInterval: config.refreshInterval,
      pruneInterval: config.pruneInterval,
      goCacheMaxBytes: config.goCacheMaxBytes ?? null,
    },
    'operations settings',
  );

  return {
    metrics,
    pruner,
    access,
    scheduler,
    start: () => scheduler.start(),
    close: async () => {
      await scheduler.stop();
      await budget?.close();
      await pruner.close();
      await access.close().catch((err: unknown) => log.warn({ err }, 'could not write pending download times'));
    },
  };
}

interface WorkerOpsParts {
  config: OpsConfig;
  logger: Logger;
  toolchain: Toolchain;
  gate: BuildGate;
}

/** For `agent`: the Go cache budget on a schedule and between builds. */
export function createWorkerOps(parts: WorkerOpsParts): { start(): void; close(): Promise<void> } {
  const log = parts.logger.child({ part: 'ops' });
  const budget = goCacheBudget(parts.config, parts.toolchain, parts.gate, log);
  const scheduler = new Scheduler(log);
  if (budget) scheduler.add({ name: 'go-cache', intervalMs: parts.config.pruneInterval, firstDelayMs: 0, run: () => budget.enforce() });
  return {
    start: () => scheduler.start(),
    close: async () => {
      await scheduler.stop();
      await budget?.close();
    },
  };
}
