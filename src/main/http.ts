/** The HTTP side `serve` and `hub` share: the guards, the parts behind the API, its routes, and its shutdown. */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { compatApi, createApi, goproxyApi, recipesApi, registryApi, upstreamApi, webhooksApi } from '../api/index.js';
import { WebhookNotifier, type Notifier } from '../webhooks/index.js';
import { Registry } from '../registry/index.js';
import type { Signer } from '../provenance/index.js';
import { authenticatorFromConfig, isLoopbackHost } from '../auth/index.js';
import { FileCatalog, ModuleLearner } from '../catalog/index.js';
import { FAIRWAY_VERSION, type Config } from '../config/index.js';
import type { BuildQueue } from '../queue/index.js';
import { BuildAdmission, BuildPolicy, RedisActiveBuilds, freeBytesAt } from '../policy/index.js';
import { GoResolver } from '../resolve/index.js';
import { BuildService, type BuildPayload } from '../service/index.js';
import { BUILD_FLAGS } from '../request/index.js';
import { HotCache } from '../hottier/index.js';
import type { ArtifactStore } from '../store/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { uiRoutes } from '../ui/index.js';
import { createHttpOps, opsRoutes, type BuildGate, type OpsMetrics } from '../ops/index.js';
import { fleetModuleProxy } from './fleetcaches.js';
import type { IndexSigning } from './keys.js';
import { loadPlatforms } from './parts.js';
import { promotedOf, startWatching, watchBook } from './watch.js';

export interface Running {
  app: FastifyInstance;
  url: string;
  /** The webhook notifier of this server (the `webhooks` setting; none set: it delivers nothing). */
  notifier: Notifier;
  close(): Promise<void>;
}

/**
 * The webhook notifier (docs/recipes.md "Webhooks"): the targets of the `webhooks` setting, the
 * delivery log in the store (every hub shows the same), the deliveries counted in the metrics.
 * Built for `serve` and `hub`; the recipe watcher calls its notify().
 */
function webhookNotifier(config: Config, store: ArtifactStore, metrics: OpsMetrics, logger: Logger): WebhookNotifier {
  const notifier = new WebhookNotifier({
    targets: config.webhooks,
    store,
    logger,
    userAgent: `Fairway-Webhooks/${FAIRWAY_VERSION}`,
    onResult: (event, result) => metrics.webhookDelivered(event, result),
  });
  if (config.webhooks.length) logger.info({ targets: notifier.describe() }, `webhooks: ${config.webhooks.length} target(s); deliveries at GET /api/webhooks/deliveries`);
  return notifier;
}

/** What `serve` and `hub` differ in; everything else of the HTTP side is the same. */
export interface HttpParts {
  toolchain: Toolchain;
  store: ArtifactStore;
  queue: BuildQueue<BuildPayload>;
  role: string;
  gate?: BuildGate;
  limitsRedis?: Redis;
  /** Re-queues the jobs of a durable local queue; run after the index is built, before listening. */
  restore?: () => Promise<void>;
  /** How long running builds may go on at shutdown (the queue's default when absent). */
  shutdownGraceMs?: number;
  /** Where queued and running builds are kept across a shutdown (logged at shutdown). */
  journalDir?: string;
  /** The builder's key (serve): the registry signs the images it makes itself. A hub has none. */
  signer?: Signer;
  /** Served at /api/signing-key. */
  publicKeyPem?: string;
  /** Signs the image indexes behind tags, after their images verified under `trusted` (src/registry/indexsign.ts); its public half at /api/index-signing-key. */
  indexSigning?: IndexSigning;
}

/** Tokens, the build policy and the admission of new builds (docs/SECURITY.md). */
function guards(config: Config, logger: Logger, catalog: FileCatalog, parts: HttpParts) {
  const { store, queue } = parts;
  const auth = authenticatorFromConfig(config);
  const policy = new BuildPolicy({
    allowModules: config.allowModules,
    denyModules: config.denyModules,
    caddyVersions: config.caddyVersions,
    inCatalog: (m) => catalog.lists(m),
  });
  const admission = new BuildAdmission({
    maxActivePerClient: config.maxActiveBuilds,
    minFreeBytes: config.minFreeDisk,
    disks: [
      { what: 'the build cache volume', free: () => freeBytesAt(config.cacheDir) },
      // null from a store with no disk of its own (S3): not checked.
      { what: 'the artifact store volume', free: () => store.freeBytes() },
    ],
    isActive: async (key) => ['queued', 'running'].includes((await queue.get(key))?.state ?? ''),
    onLowDisk: (what, free) => logger.warn({ what, free, minFreeDisk: config.minFreeDisk }, 'low disk space: refusing new builds'),
    // Hubs count each client's active builds in Redis, across all hubs.
    ...(parts.limitsRedis ? { activeBuilds: new RedisActiveBuilds(parts.limitsRedis) } : {}),
    onCountError: (err) => logger.warn({ err: err.message }, 'per-client build count unavailable (Redis): not enforced for this request'),
  });
  queue.onFinished((key) => void admission.release(key));
  logger.info(
    {
      tokens: auth.size,
      anonymousScopes: [...auth.anonymous.scopes],
      policy: policy.describe(),
      maxActiveBuilds: config.maxActiveBuilds,
      maxResolutions: config.maxResolutions,
      minFreeDisk: config.minFreeDisk,
    },
    'security settings',
  );
  if (auth.size === 0 && !isLoopbackHost(config.host)) {
    logger.warn(
      { host: config.host },
      'no API tokens configured on a network address: anonymous clients may only read (and pull images already built: nothing is built for them); create tokens with `fairway token create`',
    );
  }
  return { auth, policy, admission };
}

/** The HTTP side shared by `serve` and `hub`. */
export async function startHttp(config: Config, logger: Logger, parts: HttpParts): Promise<Running> {
  const { toolchain, store, queue } = parts;
  const platforms = await loadPlatforms(toolchain);
  const resolver = new GoResolver(toolchain, {
    ttlMs: config.resolveTtl,
    buildFlags: BUILD_FLAGS,
    maxResolutions: config.maxResolutions,
    failureTtlMs: config.resolveFailureTtl,
    onGoCommand: (what, result, ms) => logger.info({ what, result, ms }, 'resolution: go list ran'),
  });
  // Plugin catalog: curated file + optional upstream mirror + module IDs learned from builds.
  const catalog = await FileCatalog.open({
    dir: join(config.dataDir, 'catalog'),
    upstreamUrl: config.catalogUpstream,
    refreshMs: config.catalogRefresh,
    logger,
  });
  const { auth, policy, admission } = guards(config, logger, catalog, parts);
  // Hot tier: recently downloaded binaries in memory (src/hottier, BENCHMARKS.md).
  const hot = new HotCache({ maxBytes: config.memoryCache, logger });
  const service = new BuildService({ resolver, queue, store, platforms, maxPlugins: config.maxPlugins, logger, policy, admission, hot });
  await service.init();
  await parts.restore?.();
  // What the watcher promoted (docs/recipes.md): a followed recipe's tags serve it.
  const book = watchBook(store, logger);
  // The OCI registry (docs/registry.md): images of recipes and builds, made from the cache; blobs through the hot tier.
  const registry = new Registry({
    service,
    store,
    recipes: config.recipes,
    platforms: config.imagePlatforms,
    waitMs: config.imageWait,
    logger,
    hot,
    tmpDir: join(config.dataDir, 'tmp'),
    signer: parts.signer,
    indexSigning: parts.indexSigning,
    ...(config.watchInterval > 0 ? { promoted: promotedOf(book) } : {}),
  });
  // Operations (docs/operations.md): metrics, pruning, last-download times, version refresh, prebuilds (also every recipe × image platform).
  const ops = createHttpOps({
    config,
    logger,
    service,
    store,
    queue,
    toolchain,
    hot,
    // Recipes are prebuilt at each new Caddy unless the watcher follows them (it trial-builds them instead).
    ...(config.watchInterval > 0 ? {} : { prebuildSpecs: () => registry.prebuildSpecs(), prebuildQueued: (key: string) => void registry.imageWhenBuilt(key) }),
    gate: parts.gate,
  });
  // Webhooks: the outbound side of the recipe watcher (it calls notifier.notify); never blocks a build.
  const notifier = webhookNotifier(config, store, ops.metrics, logger);
  const watch = startWatching(
    { config, logger, service, registry, resolver, store, toolchain, metrics: ops.metrics, notify: (e) => notifier.notify(e), ...(parts.limitsRedis ? { redis: parts.limitsRedis } : {}) },
    book,
    ops.scheduler,
  );
  catalog.start();
  const learner = new ModuleLearner({ store, catalog, mode: config.catalogLearn, logger });
  queue.onFinished((key, state) => {
    if (state === 'succeeded') void learner.learn(key);
  });
  const app = await createApi({
    service,
    logger,
    bodyLimit: config.bodyLimit,
    downloadRedirect: config.downloadRedirect,
    security: {
      auth,
      rateLimit: config.rateLimit,
      rateLimitWindowMs: config.rateLimitWindow,
      buildRateLimit: config.buildRateLimit,
      ...(parts.limitsRedis ? { shared: { redis: parts.limitsRedis, prefix: 'fairway' } } : {}),
    },
    trustProxy: config.trustProxy,
    crossSite: { listenHost: config.host, allowedHosts: config.allowedHosts, allowedOrigins: config.allowedOrigins },
    connections: {
      headersTimeoutMs: config.headersTimeout,
      requestTimeoutMs: config.requestTimeout,
      keepAliveTimeoutMs: config.keepAliveTimeout,
      maxPerClient: config.maxConnectionsPerClient,
    },
    publicKeyPem: parts.publicKeyPem,
    indexPublicKeyPem: parts.indexSigning?.signer.publicKeyPem,
    ready: async () => {
      await store.ping();
      await queue.ping();
      return { store: 'ok', queue: 'ok' };
    },
  });
  // The other route groups, each a Fastify plugin (createApi has the native API and /openapi.json).
  await app.register(uiRoutes, {});
  await app.register(compatApi, { service, catalog });
  await app.register(opsRoutes, { metrics: ops.metrics, pruner: ops.pruner });
  await app.register(registryApi, { prefix: '/v2', registry, downloadRedirect: config.downloadRedirect });
  await app.register(recipesApi, { registry });
  await app.register(upstreamApi, { registry, watch, platforms: platforms.list() });
  await app.register(webhooksApi, { notifier });
  // fleet module proxy: GET /goproxy/… for agents (agent scope), from this process's module cache.
  await app.register(goproxyApi, { proxy: fleetModuleProxy(toolchain, ops.metrics, logger, config, policy) });
  await app.listen({ host: config.host, port: config.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url, port, role: parts.role, store: store.kind, dataDir: config.dataDir, node: process.version }, `fairway listening on ${url}`);
  ops.start();
  // A hub shares the store with other hubs and agents: resync its index from the listing now and then.
  const rescanNow = () => void service.rescan().catch((err: unknown) => logger.warn({ err }, 'index rescan failed'));
  const rescan = parts.role === 'hub' ? setInterval(rescanNow, config.indexRescanInterval) : undefined;
  rescan?.unref();
  const close = async () => {
    if (rescan) clearInterval(rescan);
    await shutdown({ app, service, ops, parts, logger, notifier });
    await catalog.close();
  };
  return { app, url, notifier, close };
}

/**
 * Stops the HTTP side: blocked downloads get a 503 with Retry-After first, then the server closes
 * while the builds stop (a journaled queue keeps them for the next start) or finish (a shared queue).
 */
async function shutdown(o: { app: FastifyInstance; service: BuildService; ops: { close(): Promise<void> }; parts: HttpParts; logger: Logger; notifier: Notifier }): Promise<void> {
  const { app, service, ops, parts, logger } = o;
  const { queue } = parts;
  service.shutdown();
  // Connections that become idle while closing (answered downloads, ended log streams) are
  // closed too, instead of waiting for the client to drop its keep-alive.
  const idle = setInterval(() => app.server.closeIdleConnections(), 100);
  const httpClosed = app.close().finally(() => clearInterval(idle));
  if (parts.journalDir) {
    // Builds stop now (they are kept in the journal), so log followers get their end and
    // the HTTP server's close does not wait for builds.
    await ops.close();
    const depth = await queue.depth();
    if (depth.queued + depth.running > 0) {
      logger.info({ ...depth, journal: parts.journalDir }, 'stopping the builds that are queued or running: they stay in the queue journal and are re-queued when the server starts again');
    }
    await queue.close(parts.shutdownGraceMs);
    await httpClosed;
  } else {
    await httpClosed;
    await ops.close();
    await queue.close(parts.shutdownGraceMs);
  }
  await parts.toolchain.sandbox.close();
  // Webhook retries waiting end as abandoned, running attempts get a few seconds; the log is written before the store closes.
  await o.notifier.close();
  await parts.store.close?.();
  parts.limitsRedis?.disconnect();
}
