/**
 * A candidate's checks once every build of it succeeded, on the build for this host's platform
 * (the only one that can run here): `list-modules` (recorded by the build, in its artifact) lists
 * at least one module of each recipe plugin, and `caddy validate` accepts the recipe's test config
 * when it has one. Null when it passes, else why not, in words for the history and the webhook.
 */
import { parseListModulesText } from '../catalog/index.js';
import type { PinnedSet } from './sets.js';
import type { BuildHandle, WatchedRecipe } from './watcher.js';

export interface TrialCheckOptions {
  /** Whether a build of this image platform can run on this machine. */
  isHost(platform: string): boolean;
  /** The `list-modules --packages --versions --skip-standard` a build recorded, or null. */
  listModules(key: string): Promise<string | null>;
  /** `caddy validate` of a config with a build's binary: null when accepted, else Caddy's words. */
  validate(buildId: string, config: string | Record<string, unknown>): Promise<string | null>;
}

export function trialChecks(o: TrialCheckOptions) {
  return async (recipe: WatchedRecipe, set: PinnedSet, builds: ReadonlyArray<BuildHandle & { platform: string }>): Promise<string | null> => {
    const host = builds.find((b) => o.isHost(b.platform));
    if (!host) {
      return `no image platform runs on this machine, so list-modules and the test config cannot be checked (platforms: ${builds.map((b) => b.platform).join(', ')})`;
    }
    if (set.plugins.length > 0) {
      const text = await o.listModules(host.key);
      if (!text) return `the ${host.platform} build recorded no list-modules output (the binary could not list its modules: see ${`/api/builds/${host.id}/log`})`;
      const packages = parseListModulesText(text).flatMap((m) => (m.package ? [m.package] : []));
      for (const p of set.plugins) {
        const has = packages.some((pkg) => pkg === p.module || pkg.startsWith(`${p.module}/`));
        if (!has) return `${p.module}@${p.version} registers no Caddy module (list-modules of the ${host.platform} build lists none of its packages)`;
      }
    }
    if (recipe.testConfig !== undefined) return o.validate(host.id, recipe.testConfig);
    return null;
  };
}
