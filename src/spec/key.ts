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

/** The spec in canonical form: plugins sorted by module path, absent fields dropped. */
export function canonicalSpec(spec: ResolvedSpec): ResolvedSpec {
  const plugins = [...spec.plugins].sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  return { ...spec, plugins };
}

export const KEY_VERSION = 'fairway-key-v1';

/**
 * The build flags every artifact is built with, recorded in every spec's toolchain and so part of
 * every cache key: xcaddy's defaults (-trimpath, -ldflags "-w -s"). A change of flags must change
 * this name, so that binaries built differently never share a key.
 */
export const BUILD_FLAGS = 'xcaddy-default';

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
