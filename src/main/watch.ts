/**
 * Wiring of the watcher (src/upstream, docs/recipes.md) for serve and hub: recipes from the
 * registry, versions from the resolver, trial builds through the service as an in-process caller,
 * checks in the run sandbox, the lease (this process, or Redis shared by the hubs), metrics, and
 * what a promotion changes (the registry's tags, the images made at once).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { WatchApi } from '../api/index.js';
import type { Config } from '../config/index.js';
import type { OpsMetrics, Scheduler } from '../ops/index.js';
import { RedisLease } from '../queue/index.js';
import { goPlatform, type Registry } from '../registry/index.js';
import { admitted, hostPlatform, recipeVersionKind } from '../request/index.js';
import type { Resolver } from '../resolve/index.js';
import { validateConfig } from '../runner/index.js';
import type { BuildService } from '../service/index.js';
import type { ArtifactStore } from '../store/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { LocalLease, trialChecks, WatchBook, Watcher, type WatchEvent, fits } from '../upstream/index.js';

export interface WatchParts {
  config: Pick<Config, 'watchInterval' | 'imagePlatforms' | 'publicUrl'>;
  logger: Logger;
  service: BuildService;
  registry: Registry;
  resolver: Resolver;
  store: ArtifactStore;
  toolchain: Toolchain;
  metrics: OpsMetrics;
  /** Hubs: the Redis all hubs share (one watcher among them). Absent: this process is the only one. */
  redis?: Redis;
  notify?: (event: WatchEvent) => void;
}

/** The Redis key of the hubs' watch lease (under the ACLs' `fairway:` prefix). */
export const WATCH_LEASE_KEY = 'fairway:watch:lease';

/** The store's record book of what the watcher knows (also read by the registry's tags). */
export function watchBook(store: ArtifactStore, logger: Logger): WatchBook {
  return new WatchBook(store, (recipe, why) => logger.warn({ recipe, why }, 'upstream: the stored watch record of this recipe is malformed; starting it afresh'));
}

/**
 * The exact versions a recipe plugin's version admits now, newest first: an exact version itself;
 * a range's admitted versions and `latest`'s releases from the module's version list read anew
 * (the watcher must see a release the moment the proxy lists it, not after resolveTtl); a branch
 * or commit as Go resolves it. GOPROXY, GOPRIVATE and GONOSUMDB apply as to every go command.
 */
export async function admittedNow(resolver: Resolver, module: string, version: string): Promise<string[]> {
  const kind = recipeVersionKind(version);
  if ('error' in kind) throw new Error(`${module}: ${kind.error}`);
  if (kind.kind === 'exact') return [version];
  if (kind.kind === 'query') return [(await resolver.resolveModule(module, version)).version];
  const list = await resolver.moduleVersions(module, { refresh: true, maxAgeMs: 0 });
  const all = list.versions.map((v) => v.version);
  if (kind.kind === 'range') return admitted(all, version);
  // latest: the releases, newest first; with none, what Go calls latest (a prerelease or a pseudo-version).
  const releases = list.versions.filter((v) => !v.prerelease).map((v) => v.version);
  return releases.length ? releases : [list.latest ?? (await resolver.resolveModule(module, 'latest')).version];
}

/** The promoted set a recipe tag serves (the registry's `promoted`): only a set of the recipe as it is now. */
export function promotedOf(book: WatchBook) {
  return async (recipe: { name: string; plugins: ReadonlyArray<{ module: string }>; caddyVersion?: string }, version: string) => {
    const set = await book.promoted(recipe.name, version);
    return set && fits(recipe, set) ? set : null;
  };
}

/**
 * The watcher and the API's view of it; schedules it every watchInterval (when on). Exact versions
 * and `latest` are resolved by the resolver (GOPROXY/GOPRIVATE/GONOSUMDB as every resolution).
 */
export function startWatching(p: WatchParts, book: WatchBook, scheduler: Scheduler): WatchApi {
  const { config, service, registry, resolver, toolchain, metrics } = p;
  const host = hostPlatform();
  const platforms = config.imagePlatforms.map((name) => ({ name, go: goPlatform(name) }));
  const watcher = new Watcher(
    {
      book,
      recipes: () => registry.recipes(),
      caddyVersions: (o) => resolver.caddyVersions(o),
      admitted: (module, version) => admittedNow(resolver, module, version),
      platforms,
      build: (body) => service.request(body),
      waitFor: (id, signal) => service.waitFor(id, signal),
      check: trialChecks({
        isHost: (name) => {
          const g = goPlatform(name);
          return g.os === host.os && g.arch === host.arch;
        },
        listModules: async (key) => (await service.meta(key))?.listModules ?? null,
        validate: async (id, cfg) => {
          const a = await service.artifact(id);
          return validateConfig(toolchain, () => a.open(), cfg);
        },
      }),
      lease: p.redis ? new RedisLease(p.redis, WATCH_LEASE_KEY) : new LocalLease(),
      // Longer than an interval and its jitter: the holder renews it at its next run, so one hub keeps the watch.
      leaseMs: Math.round(config.watchInterval * 1.25) + 30_000,
      ...(p.notify ? { notify: p.notify } : {}),
      onPromoted: (_recipe, set) => {
        for (const b of set.builds) void registry.imageWhenBuilt(b.id);
      },
      onTrial: (kind, result) => metrics.watchTrials.inc({ kind, result }),
      ...(config.publicUrl ? { baseUrl: config.publicUrl } : {}),
      logger: p.logger,
    },
    p.store,
  );
  const enabled = config.watchInterval > 0;
  if (enabled) {
    scheduler.add({ name: 'watch', intervalMs: config.watchInterval, firstDelayMs: Math.min(config.watchInterval, 60_000), run: () => watcher.run('schedule') });
  }
  return { enabled, state: (recipe) => book.get(recipe), run: (reason) => watcher.run(reason) };
}
