/**
 * Pinned artifacts (the `pinned` setting): exact cache keys, and build specs resolved to their
 * current key; a spec that cannot be resolved now pins every artifact built from the same request.
 */
import type { Logger } from 'pino';
import { canonicalJson, isCacheKey } from '../request/index.js';
import type { ArtifactMeta } from '../store/index.js';
import { errorMessage } from '../util/errors.js';

/** A pinned entry: an exact cache key, or a build request body (same shape as POST /api/builds). */
export type PinnedEntry = string | Record<string, unknown>;

export interface PinResolver {
  /** Parses and resolves a spec to its current key (and the normalised request); throws when it cannot. */
  resolve?(spec: Record<string, unknown>): Promise<{ key: string; request: unknown }>;
  /** Parses only (no network), for the fallback match. */
  parse?(spec: Record<string, unknown>): unknown;
}

/** Loose normal form of a request for the fallback match (no toolchain needed). */
function requestShape(r: unknown): string | null {
  if (!r || typeof r !== 'object') return null;
  const o = r as Record<string, unknown>;
  const cv = typeof o.caddyVersion === 'string' && o.caddyVersion !== '' ? o.caddyVersion : 'latest';
  const caddyVersion = /^2(\.|$)/.test(cv) ? `v${cv}` : cv;
  const arch = String(o.arch ?? '');
  const arm = arch === 'arm' ? String(o.arm ?? '7') : undefined;
  const plugins = (Array.isArray(o.plugins) ? o.plugins : [])
    .map((p) => {
      const x = (p ?? {}) as Record<string, unknown>;
      const str = (v: unknown) => (v === undefined ? undefined : String(v));
      return { module: String(x.module ?? ''), version: str(x.version), replace: str(x.replace) };
    })
    .sort((a, b) => (a.module < b.module ? -1 : a.module > b.module ? 1 : 0));
  return canonicalJson({ caddyVersion, os: String(o.os ?? ''), arch, arm, plugins });
}

/**
 * The keys that must stay: exact keys as given; specs resolved to their current key. A spec that
 * cannot be resolved now (proxy down) pins, to be safe, every artifact built from the same request.
 */
export async function pinnedKeys(pinned: readonly PinnedEntry[], metas: readonly ArtifactMeta[], r: PinResolver, log?: Logger): Promise<Set<string>> {
  const keys = new Set<string>();
  for (const p of pinned) {
    if (typeof p === 'string') {
      if (isCacheKey(p)) keys.add(p);
      continue;
    }
    let resolvedOk = false;
    if (r.resolve) {
      try {
        keys.add((await r.resolve(p)).key);
        resolvedOk = true;
      } catch (err) {
        log?.warn({ spec: p, error: errorMessage(err) }, 'prune: cannot resolve a pinned spec now; keeping every artifact built from that request');
      }
    }
    if (!resolvedOk) {
      let want: string | null;
      try {
        want = requestShape(r.parse ? r.parse(p) : p);
      } catch {
        want = requestShape(p);
      }
      for (const m of metas) if (want !== null && requestShape(m.request) === want) keys.add(m.key);
    }
  }
  return keys;
}
