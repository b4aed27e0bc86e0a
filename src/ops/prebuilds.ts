/**
 * Version refresh and prebuilds.
 *
 * VersionRefresher re-reads the Caddy version list on a schedule (resolver.caddyVersions with
 * refresh), so GET /api/versions shows a fresh list and its `refreshedAt`.
 *
 * Prebuilder keeps a configured list of specs built: it requests each one at start and after
 * every version refresh. A spec whose key is in the store is a cache hit (nothing happens); a new
 * Caddy release (`latest` moved) or a new plugin release gives a new key, and that build is queued.
 * `latest` Caddy is substituted with the freshly listed latest release, so a new release is picked
 * up at once rather than after the resolve TTL.
 */
import type { Logger } from 'pino';
import type { VersionList } from '../resolve/index.js';
import type { BuildRecord } from '../service/index.js';
import { errorMessage } from '../util/errors.js';

export type PrebuildSpec = Record<string, unknown>;

/**
 * Expands entries with `platforms: ["linux/amd64", "linux/arm64", "linux/arm/7"]` into one
 * request body per platform; other entries are used as they are (POST /api/builds bodies).
 */
export function expandPrebuilds(list: readonly PrebuildSpec[]): PrebuildSpec[] {
  const out: PrebuildSpec[] = [];
  for (const entry of list) {
    const { platforms, ...rest } = entry;
    if (!Array.isArray(platforms)) {
      out.push(entry);
      continue;
    }
    for (const p of platforms) {
      const [os, arch, arm] = String(p).split('/');
      out.push({ ...rest, os, arch, ...(arm ? { arm: arm.replace(/^v/, '') } : {}) });
    }
  }
  return out;
}

export interface PrebuildResult {
  spec: PrebuildSpec;
  key?: string;
  status?: string;
  /** A new build was queued for it. */
  queued?: boolean;
  error?: string;
}

export interface PrebuilderOptions {
  request: (body: unknown) => Promise<BuildRecord>;
  specs: readonly PrebuildSpec[];
  /** More specs, read at every run (the registry's recipes × image platforms, wired by src/main). */
  extraSpecs?: () => Promise<readonly PrebuildSpec[]>;
  /** A build was queued for one of the extra specs (src/main: make its image once it is built). */
  onExtraQueued?: (key: string) => void;
  logger?: Logger;
  onQueued?: (key: string) => void;
}

export class Prebuilder {
  readonly specs: PrebuildSpec[];

  constructor(private readonly o: PrebuilderOptions) {
    this.specs = expandPrebuilds(o.specs);
  }

  /** Whether a run can request anything (configured specs, or a source of more). */
  get active(): boolean {
    return this.specs.length > 0 || this.o.extraSpecs !== undefined;
  }

  /** Requests every prebuild spec; `latest` Caddy becomes `latest` from the version list when given. */
  async queueAll(latest: string | null, reason: string): Promise<PrebuildResult[]> {
    const results: PrebuildResult[] = [];
    let extra: PrebuildSpec[] = [];
    try {
      extra = this.o.extraSpecs ? expandPrebuilds(await this.o.extraSpecs()) : [];
    } catch (err) {
      this.o.logger?.warn({ reason, error: errorMessage(err) }, 'prebuilds: could not list the recipes; configured prebuilds only');
    }
    // Each distinct body once per run (a recipe equal to a configured spec is requested once).
    const seen = new Set<string>();
    const fromExtra = new Set(extra);
    for (const spec of [...this.specs, ...extra]) {
      const id = JSON.stringify(spec);
      if (seen.has(id)) continue;
      seen.add(id);
      const cv = spec.caddyVersion;
      const body = latest && (cv === undefined || cv === '' || cv === 'latest') ? { ...spec, caddyVersion: latest } : spec;
      try {
        const rec = await this.o.request(body);
        // A fresh job is "queued" (or already "running" when a worker took it at once); a cache
        // hit says cached; a build in flight was joined.
        const queued = !rec.cached && (rec.status === 'queued' || rec.status === 'running');
        results.push({ spec, key: rec.key, status: rec.status, queued });
        if (queued) this.o.onQueued?.(rec.key);
        if (queued && fromExtra.has(spec)) this.o.onExtraQueued?.(rec.key);
      } catch (err) {
        results.push({ spec, error: errorMessage(err) });
      }
    }
    const queued = results.filter((r) => r.queued);
    const failed = results.filter((r) => r.error);
    if (queued.length || failed.length) {
      this.o.logger?.info(
        { reason, queued: queued.map((r) => ({ key: r.key, spec: r.spec })), failed: failed.map((r) => ({ spec: r.spec, error: r.error })) },
        `prebuilds: ${queued.length} queued or in flight, ${failed.length} failed to queue`,
      );
    }
    return results;
  }
}

export interface VersionRefresherOptions {
  versions: (opts: { refresh: boolean }) => Promise<VersionList>;
  logger?: Logger;
  onRefreshed?: (list: VersionList, previousLatest: string | null) => void;
  onError?: (err: unknown) => void;
}

export class VersionRefresher {
  latest: string | null = null;
  refreshedAt: string | null = null;

  constructor(private readonly o: VersionRefresherOptions) {}

  async refresh(): Promise<VersionList> {
    try {
      const list = await this.o.versions({ refresh: true });
      const previous = this.latest;
      this.latest = list.latest;
      this.refreshedAt = list.refreshedAt;
      if (previous !== null && previous !== list.latest) {
        this.o.logger?.info({ previous, latest: list.latest }, `a new Caddy release: ${list.latest}`);
      }
      this.o.onRefreshed?.(list, previous);
      return list;
    } catch (err) {
      this.o.onError?.(err);
      throw err;
    }
  }
}
