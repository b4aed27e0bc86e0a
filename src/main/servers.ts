/**
 * The composition root's servers. `fairway serve`: HTTP API + in-process queue with N workers + local disk
 * store, no other server. `fairway hub`: the same HTTP service on a BullMQ queue and any store.
 * `fairway agent`: a BullMQ worker that builds and uploads. The service code is the same in all.
 */
import type { KeyObject } from 'node:crypto';
import { access, stat } from 'node:fs/promises';
import { constants as fsConstants, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { compatApi, createApi, recipesApi, registryApi, upstreamApi } from '../api/index.js';
// fleet module proxy
import { goproxyApi } from '../api/index.js';
import { FleetModuleProxy } from '../fleet/index.js';
// shared build cache
import { flushingGoCache, startAgentGoCache, type GoCacheServer } from '../fleet/index.js';
import { parseGoproxy, type Upstream } from '../sandbox/index.js';
import type { OpsMetrics } from '../ops/index.js';
// end fleet module proxy
import { Registry, publishImage } from '../registry/index.js';
import { loadOrCreateSigner, loadPublicKey, loadSigner, publicKeyFromPem, type Signer } from '../provenance/index.js';
import { authenticatorFromConfig, isLoopbackHost } from '../auth/index.js';
import { FileCatalog, ModuleLearner } from '../catalog/index.js';
import { FAIRWAY_VERSION, secretFiles, setupCommand, type Config, type SecretFile } from '../config/index.js';
import { realPathOf } from '../util/realpath.js';
import type { Redis } from 'ioredis';
import { BullMqQueue, BullMqWorker, LocalQueue, QueueJournal, redisConnection, type BuildQueue } from '../queue/index.js';
import { BuildAdmission, BuildPolicy, RedisActiveBuilds, freeBytesAt } from '../policy/index.js';
import { GoResolver } from '../resolve/index.js';
import { BuildService, buildProcessor, remoteJobCheck, type BuildPayload, type ProcessorOptions } from '../service/index.js';
import { BUILD_FLAGS } from '../request/index.js';
import { HotCache } from '../hottier/index.js';
import { openStore, type ArtifactStore } from '../store/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { sandboxVisibleParent } from '../sandbox/index.js';
import { matchPrivate, privateModules } from '../util/goprivate.js';
import { formatBytes } from '../util/units.js';
import { loadPlatforms, prepareStore, prepareToolchain, runner } from './parts.js';
import { uiRoutes } from '../ui/index.js';
import { promotedOf, startWatching, watchBook } from './watch.js';
import { BuildGate, createHttpOps, createWorkerOps, opsRoutes } from '../ops/index.js';
import { errorMessage } from '../util/errors.js';

export interface Running {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

/** What `serve` and `hub` differ in; everything else of the HTTP side is the same. */
interface HttpParts {
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

type IndexSigning = { signer: Signer; trusted: KeyObject[] };

/** Where `serve` keeps the key it makes on first start when `signingKey` is not set (docs/provenance.md). */
export const DATA_DIR_KEY = 'signing.key';
/** Where a hub keeps the index key it makes on first start when `indexSigningKey` is not set. */
export const DATA_DIR_INDEX_KEY = 'index-signing.key';

/**
 * The host paths every build sandbox binds besides SANDBOX_VISIBLE_PATHS (src/toolchain
 * command()): the Go caches and build dirs, GOROOT, xcaddy, the GOCACHEPROG program.
 */
function sandboxBound(config: Config, toolchain: Toolchain): string[] {
  return [toolchain.cacheDir, toolchain.goRoot, toolchain.xcaddyBin, ...(config.goCacheShared ? [resolve(config.goCacheProgBin)] : [])];
}

/**
 * Refuses to start when a sandboxed build could read a file that holds a secret (the signing key,
 * the config file, the auth file, credential files: src/config secretFiles), compared by real
 * path, so a symlink into a bound directory counts (docs/SECURITY.md).
 */
function refuseVisibleSecrets(secrets: ReadonlyArray<SecretFile & { instead?: string }>, bound: readonly string[], logger: Logger): void {
  for (const s of secrets) {
    const dir = sandboxVisibleParent(s.path, bound);
    if (!dir) {
      // A hard link has no path of its own to compare: one in a directory builds see would expose the file.
      const links = statSync(s.path, { throwIfNoEntry: false })?.nlink ?? 1;
      if (links > 1)
        logger.warn(
          { file: s.path, links },
          `${s.setting} ${s.path} has ${links} hard links: a link inside a directory builds see (${bound.join(', ')}) would expose it and cannot be found by its path; keep one link (copy the file, remove the others)`,
        );
      continue;
    }
    const real = realPathOf(s.path);
    const realDir = realPathOf(dir);
    throw new Error(
      `${s.setting} ${s.path}${real !== s.path ? ` (real path ${real})` : ''} is under ${dir}${realDir !== dir ? ` (real path ${realDir})` : ''}, which every build sandbox can read, so a plugin's code could read it: ${s.instead ?? `move it out of ${dir} (e.g. into /etc/fairway/, mode 0600, owned by the user Fairway runs as) and ${s.fix ?? `point ${s.setting} at the new path`}`}`,
    );
  }
}

/** A warning when a key file is readable by others than its owner. */
async function warnIfShared(path: string, logger: Logger): Promise<void> {
  const st = await stat(path).catch(() => null); // missing: the loader says so
  if (st && (st.mode & 0o077) !== 0) logger.warn({ key: path, mode: (st.mode & 0o777).toString(8) }, `the signing key file is readable by other users: chmod 0600 ${path}`);
}

/**
 * The builder's signing key (serve, agent): `signingKey` when set. `serve` without one makes its
 * own on first start, `<dataDir>/signing.key` (mode 0600), and keeps it across restarts: a default
 * install signs its builds. An agent never makes one (a fleet shares one key, and hubs serve its
 * public half): without `signingKey` it says loudly that its builds are unsigned.
 */
async function builderSigner(config: Config, logger: Logger, role: 'serve' | 'agent', bound: readonly string[]): Promise<Signer | undefined> {
  if (config.signingKey) {
    const keyPath = resolve(config.signingKey); // checked against the sandboxes with the other secrets
    await warnIfShared(keyPath, logger);
    const signer = await loadSigner(keyPath);
    logger.info({ key: keyPath, fingerprint: signer.fingerprint }, `builds are signed with this key (fingerprint ${signer.fingerprint}); its public half is at /api/signing-key`);
    return signer;
  }
  if (role === 'agent') {
    logger.warn(
      'no signing key (signingKey): this agent writes UNSIGNED provenance and unsigned images. The agents of a fleet share one key: set signingKey (FAIRWAY_SIGNING_KEY) to it on every agent, and publicKey to its public half on the hubs (docs/provenance.md)',
    );
    return undefined;
  }
  const keyPath = join(config.dataDir, DATA_DIR_KEY);
  refuseVisibleSecrets(
    [
      {
        setting: "serve's own signing key (no signingKey is set)",
        path: keyPath,
        instead: `keep the data dir ${config.dataDir} out of every directory builds see: set --data-dir elsewhere, or --cache-dir to a directory that does not hold the data dir (its default, <data-dir>/go, is fine), or set signingKey to a key kept elsewhere (\`fairway key create\`)`,
      },
    ],
    bound,
    logger,
  );
  const { signer, created } = await loadOrCreateSigner(keyPath);
  await warnIfShared(keyPath, logger);
  logger.info(
    { key: keyPath, fingerprint: signer.fingerprint, created },
    created
      ? `created a signing key (no signingKey set): builds and images are signed with it (fingerprint ${signer.fingerprint}); its public half is at /api/signing-key. Back the file up: a new key would not verify earlier builds`
      : `builds are signed with this server's key (fingerprint ${signer.fingerprint}), made at its first start; its public half is at /api/signing-key`,
  );
  return signer;
}

/** A hub never signs: it serves the agents' public key (`publicKey`, else the public half of `signingKey`). */
async function hubPublicKey(config: Config, logger: Logger): Promise<string | undefined> {
  if (config.publicKey) {
    const pem = (await loadPublicKey(config.publicKey)).export({ type: 'spki', format: 'pem' }).toString();
    logger.info({ publicKey: config.publicKey }, "serving the agents' public key at /api/signing-key");
    return pem;
  }
  if (config.signingKey) {
    logger.info({ key: config.signingKey }, 'a hub does not sign (its agents do): serving only the public half of signingKey at /api/signing-key');
    return (await loadSigner(config.signingKey)).publicKeyPem;
  }
  logger.warn(
    "no publicKey (and no signingKey): /api/signing-key answers 404, so this fleet's builds cannot be verified against this hub; set publicKey to the public half of the key the agents sign with (a fleet shares one key; docs/provenance.md)",
  );
  return undefined;
}

/**
 * The key that signs the image indexes behind tags, and the build keys their platform images must
 * verify with first (docs/provenance.md, "Tags"). `serve`: `indexSigningKey` when set, else its
 * build signer; trusted: its build key. A hub: trusted is the agents' key (`publicKey`, else the
 * public half of `signingKey`): without it nothing can be verified, so no index is signed (said at
 * start). Its index key is `indexSigningKey`, else `<dataDir>/index-signing.key`, made at first start
 * like serve's build key, so a default hub signs its tags.
 */
async function indexSigning(
  config: Config,
  logger: Logger,
  o: { role: 'serve' | 'hub'; buildPublicKeyPem: string | undefined; builder?: Signer; bound: readonly string[] },
): Promise<IndexSigning | undefined> {
  if (!o.buildPublicKeyPem) {
    logger.warn(
      'no build key to verify platform images with (publicKey): the image indexes behind tags are NOT signed, so `cosign verify <host>/caddy/<recipe>:<version>` fails; set publicKey to the public half of the key the agents sign with (docs/provenance.md)',
    );
    return undefined;
  }
  const trusted = [publicKeyFromPem(o.buildPublicKeyPem, 'the build public key')];
  let signer: Signer;
  if (config.indexSigningKey) {
    const keyPath = resolve(config.indexSigningKey); // checked against the sandboxes with the other secrets
    await warnIfShared(keyPath, logger);
    signer = await loadSigner(keyPath);
    logger.info(
      { key: keyPath, fingerprint: signer.fingerprint },
      `image indexes (tags) are signed with indexSigningKey (fingerprint ${signer.fingerprint}), after each platform image verified under the build key; its public half is at /api/index-signing-key`,
    );
  } else if (o.role === 'serve' && o.builder) {
    signer = o.builder;
    logger.info({ fingerprint: signer.fingerprint }, `image indexes (tags) are signed with the build key (fingerprint ${signer.fingerprint}), after each platform image verified under it`);
  } else {
    const keyPath = join(config.dataDir, DATA_DIR_INDEX_KEY);
    refuseVisibleSecrets(
      [
        {
          setting: "the hub's own index signing key (no indexSigningKey is set)",
          path: keyPath,
          instead: `keep the data dir ${config.dataDir} out of every directory builds see (set --data-dir elsewhere), or set indexSigningKey to a key kept elsewhere (\`fairway key create\`)`,
        },
      ],
      o.bound,
      logger,
    );
    const made = await loadOrCreateSigner(keyPath);
    signer = made.signer;
    await warnIfShared(keyPath, logger);
    logger.info(
      { key: keyPath, fingerprint: signer.fingerprint, created: made.created },
      `${made.created ? 'created an index signing key (no indexSigningKey set)' : "image indexes (tags) are signed with this hub's index key, made at its first start"}: fingerprint ${signer.fingerprint}, public half at /api/index-signing-key; an index is signed only after each platform image verified under the build key. Several hubs on one store: give them all the same indexSigningKey`,
    );
  }
  return { signer, trusted };
}

/** What the builder does with each build: provenance (signed with its key) and, for Linux, the image with its signatures. */
function processorOptions(config: Config, store: ArtifactStore, signer: Signer | undefined, logger: Logger): ProcessorOptions {
  const tmpDir = join(config.dataDir, 'tmp');
  return {
    fairwayVersion: FAIRWAY_VERSION,
    ...(signer ? { signer } : {}),
    publish: async ({ binaryPath, meta, predicate, sbom, log }) => {
      if (meta.spec.os !== 'linux') return;
      const rec = await publishImage({ store, binaryPath, meta, tmpDir, predicate, sbom, logger, ...(signer ? { signer } : {}) });
      log(`image ${rec.manifestDigest}${signer ? ' (signed, with its provenance attested)' : ' (unsigned)'}`);
    },
  };
}

/** Tokens, the build policy and the admission of new builds (docs/SECURITY.md). */
function guards(config: Config, logger: Logger, catalog: FileCatalog, parts: HttpParts) {
  const { store, queue } = parts;
  const auth = authenticatorFromConfig(config);
  const policy = new BuildPolicy({
    ...(config.allowModules ? { allowModules: config.allowModules } : {}),
    denyModules: config.denyModules,
    ...(config.caddyVersions ? { caddyVersions: config.caddyVersions } : {}),
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

// fleet module proxy (docs/distributed.md "Fleet caches") ------------------------------------------

/** The hub's (and serve's) module cache, read-through: a miss is fetched by the sandboxed go command, once. */
function fleetModuleProxy(toolchain: Toolchain, metrics: OpsMetrics, logger: Logger, config: Config, policy: BuildPolicy): FleetModuleProxy {
  // Private modules (GONOPROXY, default GOPRIVATE) are never asked of a proxy: the hub refuses them as its relay would.
  const { noProxy } = privateModules(config);
  const minFree = config.minFreeDisk;
  let lastLow = 0;
  return new FleetModuleProxy({
    refuse: (module) => {
      const denied = policy.deniedError(module);
      if (denied) return `${denied}; the hub does not fetch it`;
      const pattern = matchPrivate(noProxy, module);
      return pattern ? `${module} is a private module (GONOPROXY/GOPRIVATE pattern "${pattern}"): it is never asked of a module proxy` : null;
    },
    maxConcurrentFills: 4,
    maxQueuedFills: 64,
    lowDisk: async () => {
      if (!minFree) return null;
      const free = await freeBytesAt(toolchain.cacheDir);
      if (free >= minFree) return null;
      if (Date.now() - lastLow > 60_000) {
        lastLow = Date.now();
        logger.warn({ free, minFreeDisk: minFree }, 'low disk space on the module cache volume: the fleet module proxy refuses fills (agents fetch from their own GOPROXY)');
      }
      return `not enough free disk space on the hub's module cache volume (${formatBytes(free)} free, minFreeDisk ${formatBytes(minFree)})`;
    },
    // GOMODCACHE is <cacheDir>/mod (src/toolchain); its download cache has the GOPROXY layout.
    downloadDir: join(toolchain.cacheDir, 'mod', 'cache', 'download'),
    fill: async ({ module, version, what }) => {
      // Checked by the fleet part: a module path and a canonical version, neither starting with "-".
      const target = `${module}@${version}`;
      // .info/.mod: `go list -m` fetches those two only (an agent's MVS reads many go.mod files whose zips it never needs).
      const args = what === 'zip' ? ['mod', 'download', '-json', target] : ['list', '-m', '-json', target];
      const started = Date.now();
      await toolchain.go(args, { network: 'modules', timeoutMs: 10 * 60_000 });
      logger.info({ module, version, what, ms: Date.now() - started }, 'fleet module proxy: fetched into the module cache');
    },
    onResult: (result) => metrics.goproxyRequests.inc({ result }),
  });
}

/**
 * An agent's fleet module proxy: `<fleetProxy>/goproxy` before the GOPROXY proxies, with the token
 * as a header the relay sends to it alone (outside the sandbox). Any failure there (refused token,
 * hub down, not fetchable) falls through to the next proxy, like `|`: the fleet cache saves
 * downloads, it is never what a build depends on.
 */
function fleetUpstream(config: Config, logger: Logger): Upstream | undefined {
  const own = parseGoproxy(config.goproxy).upstreams.map((u) => u.url);
  if (!config.fleetProxy) {
    if (config.fleetToken) logger.warn('fleetToken is set but fleetProxy is not: the token is not used');
    logger.info({ moduleProxies: own }, 'modules come from the GOPROXY proxies (no fleetProxy)');
    return undefined;
  }
  if (!config.fleetToken)
    throw new Error('fleetProxy needs fleetToken (env FAIRWAY_FLEET_TOKEN or the config file): a token with the agent scope (`fairway token create --name <agent> --scopes agent`)');
  const url = `${config.fleetProxy}/goproxy`;
  if (config.sandbox === 'none') {
    logger.warn({ fleetProxy: config.fleetProxy, moduleProxies: own }, 'fleetProxy is not used with --sandbox none (the token would reach the go command): modules come from the GOPROXY proxies');
    return undefined;
  }
  logger.info({ fleetProxy: url, fallBackTo: own }, `modules come from the fleet module proxy ${url} first, then from ${own.join(', ')}`);
  return { url, fallThrough: 'any-error', headers: { authorization: `Bearer ${config.fleetToken}` } };
}

/** Asks the hub once whether it takes the token (a list request: 404 when it does, 401/403 when not) and says so. */
async function probeFleetProxy(up: Upstream, logger: Logger): Promise<void> {
  try {
    const res = await fetch(`${up.url}/fleet.invalid/probe/@v/list`, { headers: { ...up.headers }, signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    if (res.status === 401 || res.status === 403) {
      logger.error({ fleetProxy: up.url, status: res.status }, "the hub refuses this agent's fleetToken (it needs the agent scope): modules come from the GOPROXY proxies directly");
    } else if (res.status !== 404) logger.warn({ fleetProxy: up.url, status: res.status }, 'the fleet module proxy answered unexpectedly; modules fall back to the GOPROXY proxies when it fails');
    else logger.info({ fleetProxy: up.url }, 'the fleet module proxy accepts this agent');
  } catch (err) {
    logger.warn({ fleetProxy: up.url, err: errorMessage(err) }, 'the fleet module proxy is not reachable now; modules fall back to the GOPROXY proxies while it is not');
  }
}

// end fleet module proxy ----------------------------------------------------------------------------

/** The HTTP side shared by `serve` and `hub`. */
async function startHttp(config: Config, logger: Logger, parts: HttpParts): Promise<Running> {
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
    ...(config.catalogUpstream ? { upstreamUrl: config.catalogUpstream } : {}),
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
    ...(parts.signer ? { signer: parts.signer } : {}),
    ...(parts.indexSigning ? { indexSigning: parts.indexSigning } : {}),
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
    ...(parts.gate ? { gate: parts.gate } : {}),
  });
  const watch = startWatching({ config, logger, service, registry, resolver, store, toolchain, metrics: ops.metrics, ...(parts.limitsRedis ? { redis: parts.limitsRedis } : {}) }, book, ops.scheduler);
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
    ...(config.trustProxy !== undefined ? { trustProxy: config.trustProxy } : {}),
    crossSite: { listenHost: config.host, allowedHosts: config.allowedHosts, allowedOrigins: config.allowedOrigins },
    connections: {
      headersTimeoutMs: config.headersTimeout,
      requestTimeoutMs: config.requestTimeout,
      keepAliveTimeoutMs: config.keepAliveTimeout,
      maxPerClient: config.maxConnectionsPerClient,
    },
    ...(parts.publicKeyPem ? { publicKeyPem: parts.publicKeyPem } : {}),
    ...(parts.indexSigning ? { indexPublicKeyPem: parts.indexSigning.signer.publicKeyPem } : {}),
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
  // fleet module proxy: GET /goproxy/… for agents (agent scope), from this process's module cache.
  await app.register(goproxyApi, { proxy: fleetModuleProxy(toolchain, ops.metrics, logger, config, policy) });
  await app.listen({ host: config.host, port: config.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url, port, role: parts.role, store: store.kind, dataDir: config.dataDir, node: process.version }, `fairway listening on ${url}`);
  ops.start();
  // A hub shares the store with other hubs and agents: resync its index from the listing now and then.
  const rescan = parts.role === 'hub' ? setInterval(() => void service.rescan().catch((err: unknown) => logger.warn({ err }, 'index rescan failed')), config.indexRescanInterval) : undefined;
  rescan?.unref();
  const close = async () => {
    if (rescan) clearInterval(rescan);
    await shutdown({ app, service, ops, parts, logger });
    await catalog.close();
  };
  return { app, url, close };
}

/**
 * Stops the HTTP side: blocked downloads get a 503 with Retry-After first, then the server closes
 * while the builds stop (a journaled queue keeps them for the next start) or finish (a shared queue).
 */
async function shutdown(o: { app: FastifyInstance; service: BuildService; ops: { close(): Promise<void> }; parts: HttpParts; logger: Logger }): Promise<void> {
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
  await parts.store.close?.();
  parts.limitsRedis?.disconnect();
}

export async function startServe(config: Config, logger: Logger): Promise<Running> {
  const toolchain = await prepareToolchain(config, logger);
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  const store = await prepareStore(config);
  const gate = new BuildGate(); // Go cache cleaning runs between builds only (src/ops/gocachebudget.ts)
  // serve is the builder: it signs its builds and the images it makes (docs/provenance.md), with a key of its own when none is set.
  const signer = await builderSigner(config, logger, 'serve', bound);
  const indexSigner = await indexSigning(config, logger, { role: 'serve', buildPublicKeyPem: signer?.publicKeyPem, ...(signer ? { builder: signer } : {}), bound });
  // Queued and running builds survive a crash or a restart: `<data-dir>/queue/<key>.json` (docs/operations.md).
  const journalDir = join(config.dataDir, 'queue');
  const journal = await QueueJournal.open<BuildPayload>(journalDir);
  const queue = new LocalQueue<BuildPayload>(gate.wrap(buildProcessor(runner(config, toolchain), store, processorOptions(config, store, signer, logger))), {
    workers: config.workers,
    identity: toolchain.identity,
    journal,
    logger,
  });
  const restore = async () => {
    const report = await queue.restore({
      // Ended already when the store holds a success, or a record written after the job was queued.
      isDone: async (entry) => {
        const meta = await store.getMeta(entry.key);
        return !!meta && (meta.status === 'succeeded' || Date.parse(meta.finishedAt) >= Date.parse(entry.createdAt));
      },
    });
    for (const c of report.corrupt) logger.warn({ file: c.file, error: c.error }, 'skipped a corrupt queue journal entry (moved aside to .corrupt)');
    if (report.dropped.length) logger.info({ dropped: report.dropped }, 'queue journal: dropped builds whose result is already in the store');
    if (report.requeued.length) logger.warn({ requeued: report.requeued }, `re-queued ${report.requeued.length} build(s) that were queued or running when the process stopped`);
  };
  // Running builds are stopped at shutdown (they stay in the journal and run again at the next start).
  return startHttp(config, logger, {
    toolchain,
    store,
    queue,
    role: 'serve',
    gate,
    restore,
    shutdownGraceMs: 0,
    journalDir,
    ...(signer ? { signer, publicKeyPem: signer.publicKeyPem } : {}),
    ...(indexSigner ? { indexSigning: indexSigner } : {}),
  });
}

function requireRedis(config: Config, role: string): string {
  if (!config.redis) throw new Error(`fairway ${role} needs --redis URL (env FAIRWAY_REDIS), e.g. redis://127.0.0.1:6379`);
  return config.redis;
}

export async function startHub(config: Config, logger: Logger): Promise<Running> {
  const toolchain = await prepareToolchain(config, logger);
  // A hub runs sandboxed go commands too (resolutions, the fleet module proxy's fills).
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  const store = await prepareStore(config);
  const queue = new BullMqQueue<BuildPayload>({ redisUrl: requireRedis(config, 'hub'), attempts: config.jobAttempts, logger });
  await queue.ready();
  // Rate limits and per-client build counts live in Redis, shared by all hubs. Fails fast: requests pass while Redis is down.
  const limitsRedis = redisConnection(requireRedis(config, 'hub'), 'fairway-hub-limits', { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000 });
  limitsRedis.on('error', (err: Error) => logger.debug({ err: err.message }, 'Redis connection for the shared limits'));
  const publicKeyPem = await hubPublicKey(config, logger);
  // The hub assembles the tags' indexes: it signs them with its index key once their images verified under the agents' key.
  const indexSigner = await indexSigning(config, logger, { role: 'hub', buildPublicKeyPem: publicKeyPem, bound });
  return startHttp(config, logger, { toolchain, store, queue, role: 'hub', limitsRedis, ...(publicKeyPem ? { publicKeyPem } : {}), ...(indexSigner ? { indexSigning: indexSigner } : {}) });
}

export interface RunningAgent {
  id: string;
  close(force?: boolean): Promise<void>;
}

// shared build cache
/** The agent's Go cache server, hooked into the toolchain's build commands; says where its caches come from. */
async function agentGoCache(config: Config, toolchain: Toolchain, gate: BuildGate, logger: Logger): Promise<GoCacheServer> {
  // Named here with the right set-up command for this install (a checkout or the npm package).
  const prog = resolve(config.goCacheProgBin);
  await access(prog, fsConstants.X_OK).catch(() => {
    throw new Error(
      `goCacheShared: the GOCACHEPROG program ${prog} is missing or not executable; run "${setupCommand({ toolsDir: config.toolsDir })}" (it builds tools/cacheprog) or set goCacheProgBin`,
    );
  });
  // The shared tier: the artifact store's `gocache` area (docs/distributed.md "Fleet caches").
  const shared = await openStore(config.store ?? join(config.dataDir, 'artifacts'), { dataDir: config.dataDir, area: 'gocache' });
  const cache = await startAgentGoCache({
    shared,
    localDir: join(config.cacheDir, 'gocacheprog'),
    protectRecentMs: config.buildTimeout,
    ...(config.goCacheMaxBytes !== undefined ? { localMaxBytes: config.goCacheMaxBytes } : {}),
    ...(config.goCacheSharedMaxBytes !== undefined ? { sharedMaxBytes: config.goCacheSharedMaxBytes } : {}),
    progBin: resolve(config.goCacheProgBin),
    goVersion: toolchain.identity.go,
    logger: logger.child({ part: 'gocache' }),
  });
  toolchain.useGoCache({ prog: resolve(config.goCacheProgBin), socket: cache.socketPath, localDir: cache.localDir });
  cache.schedulePruning({ intervalMs: config.pruneInterval, onIdle: (l) => gate.onIdle(l), whenIdle: (fn) => gate.whenIdle(fn) });
  logger.info({ ...cache.describe(), prog: config.goCacheProgBin }, 'shared build cache on: go builds read and write through the local tier and the store (GOCACHEPROG)');
  return cache;
}

export async function startAgent(config: Config, logger: Logger): Promise<RunningAgent> {
  // fleet module proxy: <hub>/goproxy first in the relay's list (docs/distributed.md "Fleet caches").
  const fleet = fleetUpstream(config, logger);
  const toolchain = await prepareToolchain(config, logger, fleet ? { fleetUpstream: fleet } : {});
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  if (fleet) await probeFleetProxy(fleet, logger);
  const store = await prepareStore(config);
  await store.ping();
  const gate = new BuildGate();
  const ops = createWorkerOps({ config, logger, toolchain, gate });
  // shared build cache: GOCACHEPROG for builds, a local tier and the store's gocache/ area (docs/distributed.md).
  const goCache = config.goCacheShared ? await agentGoCache(config, toolchain, gate, logger) : null;
  // Jobs come from Redis: the worker runs only what the job check accepts (src/service/jobcheck.ts).
  const platforms = await loadPlatforms(toolchain);
  // The agent is the builder: it signs what it builds (docs/provenance.md).
  const signer = await builderSigner(config, logger, 'agent', bound);
  const processor = buildProcessor(runner(config, toolchain), store, processorOptions(config, store, signer, logger));
  // shared build cache: a build ends once its cache puts are in the store (or dropped, logged).
  const worker = new BullMqWorker<BuildPayload>(gate.wrap(goCache ? flushingGoCache(goCache, processor) : processor), {
    redisUrl: requireRedis(config, 'agent'),
    ...(config.agentId ? { id: config.agentId } : {}),
    concurrency: config.workers,
    identity: toolchain.identity,
    check: remoteJobCheck({ identity: toolchain.identity, platforms }),
    // A verification rebuild goes to another agent than the original's, when one is alive.
    avoid: (payload) => payload.avoidAgent,
    logger,
    lockDurationMs: config.jobLockDuration,
    stalledIntervalMs: config.stalledInterval,
    ...(goCache ? { cacheInfo: () => goCache.summary() } : {}), // shared build cache
  });
  await worker.start();
  ops.start();
  logger.info({ agent: worker.id, concurrency: config.workers, store: store.kind }, `fairway agent ${worker.id} ready`);
  return {
    id: worker.id,
    close: async (force = false) => {
      await ops.close();
      await worker.close(force);
      await goCache?.close(); // shared build cache
      await toolchain.sandbox.close();
      await store.close?.();
    },
  };
}
