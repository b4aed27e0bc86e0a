import { createHash } from 'node:crypto';
import type { ResolvedSpec } from './types.js';

/** JSON with object keys sorted at every level, so equal specs always print the same bytes. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    // Null prototype: an own "__proto__" key (JSON.parse makes those) must stay a plain key.
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(v).sort()) {
      const x = (v as Record<string, unknown>)[k];
      if (x !== undefined) out[k] = sortKeys(x);
    }
    return out;
  }
  return v;
}

/**
 * The canonical order of plugins: by module path, compared as bytes (the order of the key's JSON
 * and of xcaddy's `--with` flags). Module paths are unique within a spec (the grammar refuses a
 * duplicate), so the order is total.
 */
export function comparePlugins(a: { module: string }, b: { module: string }): number {
  return a.module < b.module ? -1 : a.module > b.module ? 1 : 0;
}

/** The spec in canonical form: plugins sorted by module path, absent fields dropped. */
export function canonicalSpec(spec: ResolvedSpec): ResolvedSpec {
  return { ...spec, plugins: [...spec.plugins].sort(comparePlugins) };
}

/** A build request with its plugins in the canonical order: what provenance signs (the order does not change the bytes). */
export function canonicalRequest<R extends { plugins: ReadonlyArray<{ module: string }> }>(request: R): R {
  return { ...request, plugins: [...request.plugins].sort(comparePlugins) };
}

export const KEY_VERSION = 'fairway-key-v1';

/**
 * The build flags every artifact is built with, recorded in every spec's toolchain and so part of
 * every cache key: xcaddy's defaults (-trimpath, -ldflags "-w -s") with the plugins passed to
 * xcaddy in the canonical order (`comparePlugins`; xcaddy's generated main.go imports them in the
 * order of its `--with` flags, and the bytes follow). A change of anything that changes the bytes
 * must change this name, so that binaries built differently never share a key.
 *
 * History: `xcaddy-default` (until 2026-12) passed the plugins in the order of the request, so one
 * key could stand for as many binaries as orders; artifacts stored under those keys keep them and
 * their bytes (they are still served by id and digest), but no new request resolves to them.
 */
export const BUILD_FLAGS = 'xcaddy-default+sorted-plugins';
/** The flags of artifacts built before the canonical plugin order: their bytes followed the request's order. */
export const LEGACY_BUILD_FLAGS = 'xcaddy-default';

/**
 * The cache key: sha256 of the canonical JSON of a fully resolved spec. Only resolved inputs go in
 * (exact versions, target, toolchain), so the same key always means the same binary.
 */
export function cacheKey(spec: ResolvedSpec): string {
  return createHash('sha256')
    .update(KEY_VERSION)
    .update('\n')
    .update(canonicalJson(canonicalSpec(spec)))
    .digest('hex');
}

export function isCacheKey(s: string): boolean {
  return /^[0-9a-f]{64}$/.test(s);
}

/**
 * The key of the verification rebuild of the build `key` (POST /api/builds/:id/rebuild): another
 * key, so the rebuild's artifact never replaces the original or answers a request for its spec.
 */
export function rebuildKey(key: string): string {
  return createHash('sha256').update(`fairway-rebuild-v1\n${key}`).digest('hex');
}
