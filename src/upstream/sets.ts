/**
 * Pinned sets: a Caddy version and one exact version per recipe plugin, the unit the watcher
 * builds, promotes and compares. Pure functions: the candidate of a recipe (the newest admitted
 * versions that are not known broken), the changes from one set to another (each one a suspect
 * when a candidate fails), and a set with one change applied (the culprit search's trials).
 */
import semver from 'semver';

import { CADDY_MODULE } from './state-schema.js';

export { CADDY_MODULE };

export interface PluginPin {
  module: string;
  version: string;
}

export interface PinnedSet {
  caddyVersion: string;
  /** Sorted by module path (the build key sorts them too: one set, one key). */
  plugins: PluginPin[];
}

/** One version change between two sets: a plugin's, or Caddy's (module CADDY_MODULE). */
export interface Change {
  module: string;
  version: string;
  /** The version it replaces; absent for a plugin the older set did not have. */
  from?: string;
}

export function pinnedSet(caddyVersion: string, plugins: readonly PluginPin[]): PinnedSet {
  const sorted = [...plugins].map((p) => ({ module: p.module, version: p.version })).sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  return { caddyVersion, plugins: sorted };
}

/** A stable identity of a set (history lookups: the same failed candidate is not tried twice). */
export function setId(s: PinnedSet): string {
  return [`${CADDY_MODULE}@${s.caddyVersion}`, ...pinnedSet(s.caddyVersion, s.plugins).plugins.map((p) => `${p.module}@${p.version}`)].join(' ');
}

export function sameSet(a: PinnedSet | null | undefined, b: PinnedSet | null | undefined): boolean {
  return !!a && !!b && setId(a) === setId(b);
}

/** What `to` changes from `from`: Caddy's version first, then each plugin whose version differs (or is new). */
export function changes(from: PinnedSet, to: PinnedSet): Change[] {
  const out: Change[] = [];
  if (from.caddyVersion !== to.caddyVersion) out.push({ module: CADDY_MODULE, version: to.caddyVersion, from: from.caddyVersion });
  const before = new Map(from.plugins.map((p) => [p.module, p.version]));
  for (const p of to.plugins) {
    const old = before.get(p.module);
    if (old !== p.version) out.push({ module: p.module, version: p.version, ...(old !== undefined ? { from: old } : {}) });
  }
  return out;
}

/**
 * `base` with one change applied, and with `base`'s plugins reduced to the recipe's (`modules`):
 * a plugin the recipe dropped is not carried, one it added comes only with its own change.
 */
export function applyChange(base: PinnedSet, change: Change, modules: readonly string[]): PinnedSet {
  const wanted = new Set(modules);
  const plugins = base.plugins.filter((p) => wanted.has(p.module) && p.module !== change.module);
  if (change.module === CADDY_MODULE)
    return pinnedSet(
      change.version,
      base.plugins.filter((p) => wanted.has(p.module)),
    );
  return pinnedSet(base.caddyVersion, [...plugins, { module: change.module, version: change.version }]);
}

/** Go's version order for release versions (v-prefixed semver); invalid versions sort first. */
export function compareGoVersions(a: string, b: string): number {
  const ca = semver.valid(semver.clean(a.replace(/\+incompatible$/, '')) ?? '');
  const cb = semver.valid(semver.clean(b.replace(/\+incompatible$/, '')) ?? '');
  if (!ca || !cb) return ca ? 1 : cb ? -1 : a < b ? -1 : a > b ? 1 : 0;
  return semver.compare(ca, cb);
}

/** The newest of some Caddy versions (Go's order), or null for none. */
export function newestVersion(versions: Iterable<string>): string | null {
  let best: string | null = null;
  for (const v of versions) if (best === null || compareGoVersions(v, best) > 0) best = v;
  return best;
}

/**
 * Whether a promoted set is still one of the recipe as it is now: the same plugin modules, and its
 * pinned Caddy if it has one. A recipe changed (or removed and made again) since is served on
 * demand until the watcher promotes a set of it; the watcher drops such sets at its next run.
 */
export function fits(recipe: { plugins: ReadonlyArray<{ module: string }>; caddyVersion?: string }, set: PinnedSet): boolean {
  const mods = (ps: ReadonlyArray<{ module: string }>) =>
    ps
      .map((p) => p.module)
      .sort()
      .join(' ');
  if (recipe.caddyVersion && recipe.caddyVersion !== 'latest' && recipe.caddyVersion !== set.caddyVersion) return false;
  return mods(recipe.plugins) === mods(set.plugins);
}
