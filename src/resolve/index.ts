/**
 * Pins every version of a request through the Go toolchain (`go list -m -json mod@query`), so
 * cache keys never hold `latest` or a branch name: the same key always means the same binary.
 * Answers are memoised: exact versions for a long time, moving queries (latest, branches,
 * prefixes) for a short TTL.
 */
import { CADDY_MODULE, isExactVersion } from '../spec/index.js';
import type { BuildRequest, Replacement, ResolvedPlugin, ResolvedSpec } from '../spec/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { AppError } from '../util/errors.js';

export class ResolveError extends AppError {
  declare readonly code: 'unknown_version' | 'upstream_error';
  constructor(code: 'unknown_version' | 'upstream_error', statusCode: number, message: string) {
    super(statusCode, code, message);
    this.name = 'ResolveError';
  }
}

export interface ResolvedModule {
  module: string;
  version: string;
  time?: string;
}

export interface VersionList {
  module: string;
  /** Newest first; prereleases included and marked. */
  versions: Array<{ version: string; prerelease: boolean }>;
  latest: string | null;
  refreshedAt: string;
}

export interface Resolver {
  resolve(req: BuildRequest): Promise<ResolvedSpec>;
  resolveModule(module: string, query: string): Promise<ResolvedModule>;
  caddyVersions(opts?: { refresh?: boolean }): Promise<VersionList>;
}

export interface GoResolverOptions {
  /** How long a moving query (latest, branch, prefix) stays pinned. Default 10 minutes. */
  ttlMs?: number;
  /** How long an exact version's existence check is remembered. Default 24 hours. */
  exactTtlMs?: number;
  buildFlags: string;
  now?: () => number;
  /** A refresh of the version list within this long after the last one completed gets its result. Default 10 s. */
  refreshMemoMs?: number;
}

/** Refreshes of the Caddy version list closer together than this share one `go list`. */
export const VERSIONS_REFRESH_MEMO_MS = 10_000;

interface MemoEntry<T> {
  expires: number;
  value: Promise<T>;
}

export class GoResolver implements Resolver {
  private readonly memo = new Map<string, MemoEntry<unknown>>();
  private readonly ttlMs: number;
  private readonly exactTtlMs: number;
  private readonly now: () => number;
  private readonly refreshMemoMs: number;
  /** The `go list -m -versions` in flight, if any: every caller shares it (at most one at a time). */
  private versionsInFlight: Promise<VersionList> | null = null;
  private versionsFetchedAt = -Infinity;

  constructor(
    private readonly toolchain: Toolchain,
    private readonly opts: GoResolverOptions,
  ) {
    this.ttlMs = opts.ttlMs ?? 10 * 60_000;
    this.exactTtlMs = opts.exactTtlMs ?? 24 * 3600_000;
    this.now = opts.now ?? Date.now;
    this.refreshMemoMs = opts.refreshMemoMs ?? VERSIONS_REFRESH_MEMO_MS;
  }

  async resolve(req: BuildRequest): Promise<ResolvedSpec> {
    const [caddy, ...plugins] = await Promise.all([this.resolveModule(CADDY_MODULE, req.caddyVersion), ...req.plugins.map((p) => this.resolvePlugin(p))]);
    return {
      caddyVersion: caddy!.version,
      os: req.os,
      arch: req.arch,
      ...(req.arm ? { arm: req.arm } : {}),
      plugins: plugins as ResolvedPlugin[],
      toolchain: { go: this.toolchain.identity.go, xcaddy: this.toolchain.identity.xcaddy, flags: this.opts.buildFlags },
    };
  }

  private async resolvePlugin(p: BuildRequest['plugins'][number]): Promise<ResolvedPlugin> {
    if (!p.replace) {
      const m = await this.resolveModule(p.module, p.version ?? 'latest');
      return { module: p.module, version: m.version };
    }
    let replace: Replacement;
    if (p.replace.startsWith('/') || p.replace.startsWith('.')) {
      replace = { kind: 'path', path: p.replace };
    } else {
      const at = p.replace.indexOf('@');
      const module = at === -1 ? p.replace : p.replace.slice(0, at);
      const r = await this.resolveModule(module, at === -1 ? 'latest' : p.replace.slice(at + 1));
      replace = { kind: 'module', module, version: r.version };
    }
    // With a replacement, the original module's version is only a label: keep it when exact.
    return { module: p.module, ...(p.version && isExactVersion(p.version) ? { version: p.version } : {}), replace };
  }

  resolveModule(module: string, query: string): Promise<ResolvedModule> {
    const ttl = isExactVersion(query) ? this.exactTtlMs : this.ttlMs;
    return this.memoise(`m:${module}@${query}`, ttl, async () => {
      const out = await this.goList(['list', '-m', '-json', `${module}@${query}`], `${module}@${query}`);
      const info = JSON.parse(out) as { Path: string; Version: string; Time?: string };
      if (!info.Version || !isExactVersion(info.Version)) {
        throw new ResolveError('unknown_version', 422, `${module}@${query} did not resolve to an exact version`);
      }
      return { module: info.Path, version: info.Version, ...(info.Time ? { time: info.Time } : {}) };
    });
  }

  /**
   * The Caddy version list. A refresh (GET /api/versions?refresh=1, the ops scheduler) joins the
   * `go list` in flight, or gets the last refresh's result when that completed less than
   * refreshMemoMs ago (a plain read's result does not count: a refresh after it re-reads).
   */
  caddyVersions(opts: { refresh?: boolean } = {}): Promise<VersionList> {
    if (this.versionsInFlight) return this.versionsInFlight;
    const refresh = !!opts.refresh && this.now() - this.versionsFetchedAt >= this.refreshMemoMs;
    if (refresh) this.memo.delete('versions:caddy');
    return this.memoise('versions:caddy', this.ttlMs, () => {
      const p = this.listCaddyVersions();
      this.versionsInFlight = p;
      const settle = (ok: boolean) => {
        if (ok && refresh) this.versionsFetchedAt = this.now();
        if (this.versionsInFlight === p) this.versionsInFlight = null;
      };
      p.then(
        () => settle(true),
        () => settle(false),
      );
      return p;
    });
  }

  private async listCaddyVersions(): Promise<VersionList> {
    const out = await this.goList(['list', '-m', '-versions', '-json', CADDY_MODULE], CADDY_MODULE);
    const info = JSON.parse(out) as { Versions?: string[] };
    const versions = (info.Versions ?? [])
      .filter((v) => v.startsWith('v2.'))
      .reverse()
      .map((version) => ({ version, prerelease: version.includes('-') }));
    const latest = versions.find((v) => !v.prerelease)?.version ?? versions[0]?.version ?? null;
    return { module: CADDY_MODULE, versions, latest, refreshedAt: new Date(this.now()).toISOString() };
  }

  /** Drops memoised moving queries so the next request re-resolves them. */
  invalidate(): void {
    this.memo.clear();
  }

  private memoise<T>(key: string, ttl: number, fn: () => Promise<T>): Promise<T> {
    const hit = this.memo.get(key) as MemoEntry<T> | undefined;
    if (hit && hit.expires > this.now()) return hit.value;
    const value = fn();
    this.memo.set(key, { expires: this.now() + ttl, value });
    // Failures are not remembered: the next request asks Go again.
    value.catch(() => {
      if (this.memo.get(key)?.value === value) this.memo.delete(key);
    });
    return value;
  }

  private async goList(args: string[], what: string): Promise<string> {
    try {
      // Outside any module, in the toolchain's empty dir: `go list -m` only downloads .info/.mod files.
      const { stdout } = await this.toolchain.go(args, { network: 'modules', timeoutMs: 90_000 });
      return stdout;
    } catch (err) {
      throw classifyGoError(what, err as Error & { stderr?: string; killed?: boolean });
    }
  }
}

const NOT_FOUND =
  /not found|unknown revision|no matching versions|invalid version|not available|410 Gone|404 Not Found|403 Forbidden|malformed module path|does not contain package|disallowed|unrecognized import path|no such host|verifying module/i;

export function classifyGoError(what: string, err: Error & { stderr?: string; killed?: boolean }): ResolveError {
  const detail = (err.stderr || err.message).trim().split('\n').filter(Boolean).slice(-3).join(' | ').slice(0, 600);
  if (err.killed) return new ResolveError('upstream_error', 504, `resolving ${what} timed out; the module proxy may be slow or unreachable`);
  if (NOT_FOUND.test(detail)) {
    return new ResolveError('unknown_version', 422, `cannot resolve ${what}: ${detail}. Check the module path and version (is it published and reachable through GOPROXY?)`);
  }
  return new ResolveError('upstream_error', 502, `resolving ${what} failed: ${detail}`);
}
