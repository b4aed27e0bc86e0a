/**
 * An in-process API for fast inject() tests: the real createApi, BuildService, LocalQueue,
 * FsStore, compat routes (with the shipped catalog) and UI routes, with two stand-ins that keep it
 * off the network and the toolchain: a resolver that pins versions without Go, and a job that
 * waits until it is canceled. Counters show whether anything was resolved or started.
 */
import { createHash } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import pino, { type Logger } from 'pino';
import { BuildFailed } from '../../src/runner/index.js';
import { compatApi, createApi, recipesApi, registryApi, webhooksApi, type ApiOptions } from '../../src/api/index.js';
import { WebhookNotifier } from '../../src/webhooks/index.js';
import { Registry, type RegistryOptions } from '../../src/registry/index.js';
import type { RecipeInput } from '../../src/registry/recipes.js';
import type { HotCache } from '../../src/hottier/index.js';
import { FileCatalog } from '../../src/catalog/index.js';
import type { BuildAdmission } from '../../src/policy/index.js';
import { LocalQueue } from '../../src/queue/index.js';
import { ResolveError, type Resolver } from '../../src/resolve/index.js';
import { BuildService, type BuildPayload } from '../../src/service/index.js';
import { PlatformSet, cacheKey, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';
import { OpsMetrics, Pruner, opsRoutes } from '../../src/ops/index.js';
import { FsStore } from '../../src/store/index.js';
import { uiRoutes } from '../../src/ui/index.js';
import { fakeBinary } from './image.js';

export interface TestApi {
  app: FastifyInstance;
  service: BuildService;
  /** How many times each part was reached: resolution, service requests/cancels, jobs started. */
  calls: { resolve: number; request: number; cancel: number; jobs: number; versions: number };
  /** Every request the stand-in resolver resolved, in order (what was asked to be built). */
  resolved: BuildRequest[];
  /** The fs store behind the service, and the OCI registry on it (/v2, /api/recipes). */
  store: FsStore;
  queue: LocalQueue<BuildPayload>;
  registry: Registry;
  close(): Promise<void>;
}

export async function testApi(
  o: Partial<Pick<ApiOptions, 'crossSite' | 'security' | 'trustProxy'>> & {
    logger?: Logger;
    /** More route plugins, registered after the UI and compat plugins (like the composition root does). */
    plugins?: FastifyPluginAsync[];
    /** Called with the Fastify instance as soon as it exists, before any route (e.g. to add an onRoute hook). */
    onApp?: (app: FastifyInstance) => void;
    /** The registry's settings (recipes, imageWait); platforms linux/amd64 and linux/arm64. */
    registry?: { recipes?: Record<string, RecipeInput>; waitMs?: number; indexSigning?: RegistryOptions['indexSigning'] };
    /** A hot tier for the service and the registry (blobs). */
    hot?: HotCache;
    /** Another resolver (e.g. the real GoResolver over a stand-in toolchain); `calls.resolve` then stays 0. */
    resolver?: Resolver;
    /** The admission of new builds (per-client limits); default none. */
    admission?: BuildAdmission;
    /** The stand-in resolver's module version lists (as `go list -m -versions` gives them, oldest first); `latest` is the newest release. */
    moduleVersions?: Record<string, string[]>;
    /** Plugins per build; default 5. */
    maxPlugins?: number;
  } = {},
): Promise<TestApi> {
  const dir = await mkdtemp(join(tmpdir(), 'fairway-api-'));
  const calls = { resolve: 0, request: 0, cancel: 0, jobs: 0, versions: 0 };
  const resolved: BuildRequest[] = [];
  const standIn: Resolver = {
    resolve: async (req: BuildRequest): Promise<ResolvedSpec> => {
      calls.resolve++;
      resolved.push(req);
      return { caddyVersion: 'v2.11.9', os: req.os, arch: req.arch, plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' } };
    },
    resolveModule: async (module: string, query: string) => {
      const list = o.moduleVersions?.[module];
      if (!list || query !== 'latest') throw new Error('not used');
      calls.resolve++;
      return { module, version: [...list].reverse().find((v) => !v.split('+')[0]!.includes('-'))! };
    },
    caddyVersions: async () => ({ module: 'github.com/caddyserver/caddy/v2', versions: [{ version: 'v2.11.9', prerelease: false }], latest: 'v2.11.9', refreshedAt: '2026-12-01T00:00:00.000Z' }),
    moduleVersions: async (module: string) => {
      calls.versions++;
      const list = o.moduleVersions?.[module];
      if (!list) throw new ResolveError('unknown_version', `cannot resolve ${module} versions: not found (test stand-in)`);
      const versions = [...list].reverse().map((version) => ({ version, prerelease: version.split('+')[0]!.includes('-') }));
      return { module, versions, latest: versions.find((v) => !v.prerelease)?.version ?? null, refreshedAt: '2026-12-01T00:00:00.000Z' };
    },
  };
  const resolver = o.resolver ?? standIn;
  const queue = new LocalQueue<BuildPayload>(
    (ctx) => {
      calls.jobs++;
      return new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => reject(new BuildFailed('the build was canceled', 'canceled')), { once: true });
      });
    },
    { workers: 2 },
  );
  const logger = o.logger ?? pino({ level: 'silent' });
  const store = await FsStore.open(join(dir, 'artifacts'));
  const service = new BuildService({
    resolver,
    queue,
    store,
    platforms: new PlatformSet([
      { os: 'linux', arch: 'amd64' },
      { os: 'linux', arch: 'arm64' },
      { os: 'windows', arch: 'amd64' },
    ]),
    maxPlugins: o.maxPlugins ?? 5,
    logger,
    ...(o.hot ? { hot: o.hot } : {}),
    ...(o.admission ? { admission: o.admission } : {}),
  });
  await service.init();
  const request = service.request.bind(service);
  service.request = (...a) => {
    calls.request++;
    return request(...a);
  };
  const cancel = service.cancel.bind(service);
  service.cancel = (...a) => {
    calls.cancel++;
    return cancel(...a);
  };
  const catalog = await FileCatalog.open({ dir: join(dir, 'catalog'), refreshMs: 0 });
  const uiDir = join(dir, 'ui');
  await mkdir(uiDir);
  await writeFile(join(uiDir, 'index.html'), '<!doctype html><title>Fairway</title><script src="/ui/app.js"></script>');
  await writeFile(join(uiDir, 'app.js'), 'console.log("fairway");');
  const onInit = (message: unknown) => o.onApp?.((message as { fastify: FastifyInstance }).fastify);
  if (o.onApp) diagnostics.subscribe('fastify.initialization', onInit);
  const app = await createApi({
    service,
    logger,
    bodyLimit: 64 * 1024,
    ...(o.crossSite ? { crossSite: o.crossSite } : {}),
    ...(o.security ? { security: o.security } : {}),
    ...(o.trustProxy !== undefined ? { trustProxy: o.trustProxy } : {}),
  });
  if (o.onApp) diagnostics.unsubscribe('fastify.initialization', onInit);
  await app.register(uiRoutes, { dir: uiDir });
  await app.register(compatApi, { service, catalog });
  const registry = new Registry({
    service,
    store,
    recipes: o.registry?.recipes ?? {},
    platforms: ['linux/amd64', 'linux/arm64'],
    waitMs: o.registry?.waitMs ?? 10 * 60_000,
    logger,
    ...(o.hot ? { hot: o.hot } : {}),
    ...(o.registry?.indexSigning ? { indexSigning: o.registry.indexSigning } : {}),
    tmpDir: join(dir, 'tmp'),
  });
  await app.register(registryApi, { prefix: '/v2', registry });
  await app.register(recipesApi, { registry });
  for (const p of o.plugins ?? []) await app.register(p);
  await app.ready();
  return {
    app,
    service,
    calls,
    resolved,
    store,
    queue,
    registry,
    close: async () => {
      await app.close();
      await queue.close(0);
      await catalog.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The ops routes (/metrics, /api/admin/prune) and the webhook delivery log (no targets) on a throwaway empty store, for testApi({ plugins }). */
export async function opsTestPlugin(): Promise<{ plugin: FastifyPluginAsync; close(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fairway-ops-'));
  const store = await FsStore.open(dir);
  const access = store.accessTracker({ intervalMs: 60_000 });
  const pruner = new Pruner({ store, access, limits: { maxBytes: null, maxAgeMs: null } });
  const metrics = new OpsMetrics({}, { processMetrics: false });
  const notifier = new WebhookNotifier({ targets: [], store, logger: pino({ level: 'silent' }), userAgent: 'Fairway-Webhooks/test' });
  return {
    plugin: async (app) => {
      await app.register(opsRoutes, { metrics, pruner });
      await app.register(webhooksApi, { notifier });
    },
    close: async () => {
      await notifier.close();
      await pruner.close();
      await access.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Puts a succeeded build of `spec` into the test API's store, as the job processor would: a fake
 * binary of the spec's architecture (64 KiB, made from `seed`), its record at time `at`, then a
 * rescan so the service knows it. Returns its key.
 */
export async function putSucceededBuild(t: TestApi, spec: ResolvedSpec, o: { request: BuildRequest; seed: string; at: string }): Promise<string> {
  const key = cacheKey(spec);
  const dir = await mkdtemp(join(tmpdir(), 'fairway-put-build-'));
  try {
    const bin = join(dir, 'caddy');
    const data = await fakeBinary(bin, o.seed, 64 * 1024, spec.arch);
    await t.store.put({
      meta: {
        key,
        status: 'succeeded',
        request: o.request,
        spec,
        filename: 'caddy',
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
        createdAt: o.at,
        startedAt: o.at,
        finishedAt: o.at,
      },
      binaryPath: bin,
      log: '',
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  await t.service.rescan();
  return key;
}
