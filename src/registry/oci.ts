/**
 * The OCI side of the registry that needs no state: its error (the distribution spec's codes),
 * the grammar of tags and digests, and what a manifest says about itself (the Fairway image it
 * names, the repositories it belongs to).
 */
import { createHash } from 'node:crypto';
import { ANNOTATION, MEDIA_TYPE } from '../image/index.js';
import { isCacheKey } from '../request/index.js';
import { AppError } from '../util/errors.js';

export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNAVAILABLE'
  | 'UNKNOWN';

/** An error of the registry: its OCI code goes into the `errors[]` body (src/api/registry.ts). */
export class RegistryError extends AppError {
  constructor(
    statusCode: number,
    readonly ociCode: OciErrorCode,
    message: string,
    retryAfterS?: number,
  ) {
    super({ status: statusCode, code: ociCode.toLowerCase() }, message, retryAfterS);
    this.name = 'RegistryError';
  }
}

export const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
export const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** What a repository serves: `caddy/build` → 'build'; `caddy` → no plugins; `caddy/<recipe>` → the recipe's plugins (and pinned version). */
export type RepoKind = 'build' | { plugins: ReadonlyArray<{ module: string }>; caddyVersion?: string };

/** An index is checked child by child: at most this many, each at most this large (Fairway's are a few KB). */
export const MAX_INDEX_CHILDREN = 64;
export const MAX_CHILD_MANIFEST = 256 * 1024;

/** The Fairway image a manifest's annotations name (its key and resolved spec), or null when it names none. */
export function fairwayImageOf(manifest: unknown): { key: string; caddyVersion: string; modules: string[] } | null {
  if (!manifest || typeof manifest !== 'object') return null;
  const ann = (manifest as { annotations?: unknown }).annotations;
  if (!ann || typeof ann !== 'object') return null;
  const key = (ann as Record<string, unknown>)[ANNOTATION.fairwayKey];
  const specText = (ann as Record<string, unknown>)[ANNOTATION.fairwaySpec];
  if (typeof key !== 'string' || !isCacheKey(key) || typeof specText !== 'string') return null;
  let spec: unknown;
  try {
    spec = JSON.parse(specText);
  } catch {
    return null;
  }
  if (!spec || typeof spec !== 'object') return null;
  const { caddyVersion, plugins } = spec as { caddyVersion?: unknown; plugins?: unknown };
  if (typeof caddyVersion !== 'string' || !Array.isArray(plugins)) return null;
  const modules: string[] = [];
  for (const p of plugins) {
    const m = p && typeof p === 'object' ? (p as { module?: unknown }).module : undefined;
    if (typeof m !== 'string') return null;
    modules.push(m);
  }
  return { key, caddyVersion, modules: [...new Set(modules)].sort() };
}

/**
 * Whether a manifest (parsed JSON) is served under a repository (docs/registry.md, "By digest").
 * An image manifest, or any manifest carrying the same annotations (a cosign signature or
 * attestation names the image it signs with `dev.fairway.key` and `dev.fairway.spec`; its config
 * is not an image config), belongs by its spec: `caddy/build` takes every Fairway manifest, `caddy`
 * those without plugins, `caddy/<recipe>` those whose plugin module set is the recipe's (and, when
 * the recipe pins an exact Caddy version, at that version). An index belongs when it lists at least
 * one and at most MAX_INDEX_CHILDREN manifests and every one of them belongs (read with
 * `readChild`; an index inside an index is not followed). A cosign signature or attestation of an
 * index (annotation `dev.fairway.index`, src/registry/indexsign.ts) belongs where that index does
 * (read with `readChild`). Anything else: false.
 */
export async function manifestBelongs(manifest: unknown, repo: RepoKind, readChild?: (digest: string) => Promise<unknown | null>): Promise<boolean> {
  if (!manifest || typeof manifest !== 'object') return false;
  if ((manifest as { mediaType?: unknown }).mediaType === MEDIA_TYPE.index) {
    const list = (manifest as { manifests?: unknown }).manifests;
    if (!readChild || !Array.isArray(list) || list.length === 0 || list.length > MAX_INDEX_CHILDREN) return false;
    for (const d of list) {
      const digest = d && typeof d === 'object' ? (d as { digest?: unknown }).digest : undefined;
      if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) return false;
      const child = await readChild(digest);
      // Without a reader, an index listed in the index does not belong: nesting is not followed.
      if (!(await manifestBelongs(child, repo))) return false;
    }
    return true;
  }
  const ofIndex = (manifest as { annotations?: Record<string, unknown> }).annotations?.[ANNOTATION.fairwayIndex];
  if (ofIndex !== undefined) {
    if (!readChild || typeof ofIndex !== 'string' || !DIGEST_RE.test(ofIndex)) return false;
    const index = await readChild(ofIndex);
    if (!index || typeof index !== 'object' || (index as { mediaType?: unknown }).mediaType !== MEDIA_TYPE.index) return false;
    return manifestBelongs(index, repo, readChild);
  }
  const img = fairwayImageOf(manifest);
  if (!img) return false;
  if (repo === 'build') return true;
  const want = [...new Set(repo.plugins.map((p) => p.module))].sort();
  if (want.length !== img.modules.length || want.some((m, i) => m !== img.modules[i])) return false;
  if (repo.caddyVersion) {
    // A pin that is an exact version must match; a branch or commit pin resolves to a version no tag names.
    const pinned = caddyVersionOfTag(repo.caddyVersion);
    if (pinned && pinned !== 'latest' && pinned !== img.caddyVersion) return false;
  }
  return true;
}

/** `linux/arm/v7` → GOOS/GOARCH/GOARM. */
export function goPlatform(p: string): { os: string; arch: string; arm?: string } {
  const [os, arch, variant] = p.split('/');
  if (!os || !arch) throw new Error(`bad platform ${p}`);
  if (arch === 'arm') return { os, arch, ...(variant ? { arm: variant.replace(/^v/, '') } : {}) };
  return { os, arch };
}

/** `2.11.9`/`v2.11.9` → `v2.11.9`; `latest` stays. Null for a tag that names no Caddy version. */
export function caddyVersionOfTag(tag: string): string | null {
  if (tag === 'latest') return 'latest';
  const m = /^v?(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)$/.exec(tag);
  return m ? `v${m[1]}` : null;
}

export function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

export function sha256Hex(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
