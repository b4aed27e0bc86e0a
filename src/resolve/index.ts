/**
 * Pins every version of a request through the Go toolchain (`go list -m -json mod@query`), so
 * cache keys never hold `latest` or a branch name: the same key always means the same binary.
 * Answers are memoised: exact versions for a long time, moving queries (latest, branches,
 * prefixes) for a short TTL, failures (a version that does not exist) for `failureTtlMs`.
 *
 * Every go command of a resolution goes through one gate (`maxResolutions` at once, the rest wait
 * in line up to RESOLVE_QUEUE_WAIT_MS, then 503 `resolver_busy` with Retry-After), and one request
 * resolves its modules at most `maxResolutions` at a time: a 50-plugin request never starts 51 go
 * commands at once. `peek()` answers a request from what is known (exact versions as they are,
 * moving queries from their last answer) without any go command: how clients that may not build
 * find what is built (docs/SECURITY.md "Who can start a build").
 */
import { CADDY_MODULE, isExactVersion, isPseudoVersion, modulePathError } from '../request/index.js';
import type { BuildRequest, Replacement, ResolvedPlugin, ResolvedSpec } from '../request/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { AppError } from '../util/errors.js';

export class ResolveError extends AppError {
  declare readonly code: 'unknown_version' | 'upstream_error' | 'upstream_timeout';
  constructor(code: 'unknown_version' | 'upstream_error' | 'upstream_timeout', message: string) {
    super(code, message);
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
  /**
   * The spec `resolve` would answer, from what is known without running anything: the memo (exact
   * versions Go confirmed, moving queries within their TTL); with `stale` (to find what is built,
   * never to build), exact versions as they are and moving queries from their last answer, however
   * old. Null when some query has no known answer. Never starts a go command.
   */
  peek?(req: BuildRequest, opts?: { stale?: boolean }): ResolvedSpec | null;
  resolveModule(module: string, query: string): Promise<ResolvedModule>;
  caddyVersions(opts?: { refresh?: boolean }): Promise<VersionList>;
  /**
   * A module's published versions (`go list -m -versions`, through the module proxy settings),
   * newest first, pseudo-versions never among them: what a recipe's version range is admitted
   * from (src/request `admitted`). Memoised for the moving-query TTL; `refresh` reads it again
   * unless the last read completed less than refreshMemoMs ago.
   */
  moduleVersions(module: string, opts?: { refresh?: boolean; maxAgeMs?: number }): Promise<VersionList>;
  /** The memoised answer of moduleVersions while it is fresh (within the TTL), without any go command; else null. */
  knownModuleVersions?(module: string): VersionList | null;
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
  /** Go commands resolving at once (`maxResolutions`); the rest wait in line. Default 4. */
  maxResolutions?: number;
  /** How long a failed query (a version or module that does not exist) is answered from memory. Default 60 s. */
  failureTtlMs?: number;
  /** How long a go command may wait for a free slot before the request is answered 503. Default RESOLVE_QUEUE_WAIT_MS. */
  queueWaitMs?: number;
  /** Told of every go command the resolver runs (its target) and how it ended (the server log). */
  onGoCommand?: (what: string, result: 'ok' | 'failed', ms: number) => void;
}

/** Default `maxResolutions`. */
export const DEFAULT_MAX_RESOLUTIONS = 4;
/** How long a go command waits for a slot before its request gets 503 `resolver_busy`. */
export const RESOLVE_QUEUE_WAIT_MS = 30_000;
/** Waiting go commands beyond this many times `maxResolutions` are refused at once (503). */
const QUEUE_FACTOR = 64;
/** Failures that are not a client's mistake (timeouts, proxy errors) are remembered this long at most. */
const UPSTREAM_FAILURE_TTL_MS = 5_000;
/** Memo size at which expired entries are swept out. */
const MEMO_SWEEP_AT = 10_000;
/** Last answers of moving queries kept for peek() (the least recently answered go first). */
const LAST_KNOWN_ENTRIES = 4096;

/**
 * At most `max` holders at once; the rest wait first-come first-served, each at most `waitMs`
 * (then 503 with Retry-After), and at most `maxWaiting` of them (beyond: 503 at once).
 */
export class ResolutionGate {
  private running = 0;
  private readonly waiting: Array<{ go: () => void; timer: NodeJS.Timeout }> = [];

  constructor(
    readonly max: number,
    private readonly waitMs: number,
    private readonly maxWaiting: number,
  ) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private busy(why: string): AppError {
    return new AppError('resolver_busy', `the server is resolving too many module versions at once (${why}; maxResolutions=${this.max}): nothing was queued; retry in 10 s`, 10);
  }

  private acquire(): Promise<void> {
    if (this.running < this.max) {
      this.running++;
      return Promise.resolve();
    }
    if (this.waiting.length >= this.maxWaiting) return Promise.reject(this.busy(`${this.waiting.length} go commands already wait`));
    return new Promise<void>((resolve, reject) => {
      const entry = {
        go: () => {
          clearTimeout(entry.timer);
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.waiting.indexOf(entry);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(this.busy(`waited ${Math.round(this.waitMs / 1000)} s for a free slot`));
        }, this.waitMs),
      };
      entry.timer.unref?.();
      this.waiting.push(entry);
    });
  }

  private release(): void {
    const next = this.waiting.shift();
    // The slot passes straight to the next in line: `running` stays the same.
    if (next) next.go();
    else this.running--;
  }
}

/** Runs `fn` over `items` with at most `n` at a time; results in order. Rejects with the first failure. */
async function mapLimit<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
  return out;
}

/** Refreshes of the Caddy version list closer together than this share one `go list`. */
export const VERSIONS_REFRESH_MEMO_MS = 10_000;

/** A module replacement's target query; null for a local directory. */
function replacementQuery(replace: string): { module: string; query: string } | null {
  if (replace.startsWith('/') || replace.startsWith('.')) return null;
  const at = replace.indexOf('@');
  return at === -1 ? { module: replace, query: 'latest' } : { module: replace.slice(0, at), query: replace.slice(at + 1) };
}

/** Every module query a request makes: Caddy's, each plugin's (or its replacement target's). */
function moduleQueries(req: BuildRequest): Array<{ module: string; query: string }> {
  const out = [{ module: CADDY_MODULE, query: req.caddyVersion }];
  for (const p of req.plugins) {
    if (!p.replace) out.push({ module: p.module, query: p.version ?? 'latest' });
    else {
      const t = replacementQuery(p.replace);
      if (t) out.push(t);
    }
  }
  return out;
}

interface MemoEntry<T> {
  expires: number;
  value: Promise<T>;
  /** Set once the promise fulfilled (peek() reads only settled answers). */
  settled?: T;
  /** When it settled (fulfilled). */
  settledAt?: number;
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
  /** Last answer of each moving query (`module@query` → version), for peek({stale}). */
  private readonly lastKnown = new Map<string, string>();
  private readonly failureTtlMs: number;
  private sweptAt = -Infinity;
  /** Every go command of a resolution runs through it. */
  readonly gate: ResolutionGate;

  constructor(
    private readonly toolchain: Toolchain,
    private readonly opts: GoResolverOptions,
  ) {
    this.ttlMs = opts.ttlMs ?? 10 * 60_000;
    this.exactTtlMs = opts.exactTtlMs ?? 24 * 3600_000;
    this.now = opts.now ?? Date.now;
    this.refreshMemoMs = opts.refreshMemoMs ?? VERSIONS_REFRESH_MEMO_MS;
    this.failureTtlMs = opts.failureTtlMs ?? 60_000;
    const max = Math.max(1, opts.maxResolutions ?? DEFAULT_MAX_RESOLUTIONS);
    this.gate = new ResolutionGate(max, opts.queueWaitMs ?? RESOLVE_QUEUE_WAIT_MS, max * QUEUE_FACTOR);
  }

  async resolve(req: BuildRequest): Promise<ResolvedSpec> {
    // One request's modules go at most maxResolutions at a time (each through the gate as well).
    const queries = [...new Map(moduleQueries(req).map((q) => [`${q.module}@${q.query}`, q])).values()];
    const answers = new Map<string, string>();
    await mapLimit(queries, this.gate.max, async (q) => {
      answers.set(`${q.module}@${q.query}`, (await this.resolveModule(q.module, q.query)).version);
    });
    return this.assemble(req, (module, query) => answers.get(`${module}@${query}`)!);
  }

  peek(req: BuildRequest, opts: { stale?: boolean } = {}): ResolvedSpec | null {
    const answers = new Map<string, string>();
    for (const q of moduleQueries(req)) {
      const version = this.known(q.module, q.query, !!opts.stale);
      if (version === null) return null;
      answers.set(`${q.module}@${q.query}`, version);
    }
    return this.assemble(req, (module, query) => answers.get(`${module}@${query}`)!);
  }

  /**
   * The version a query is known to name without asking Go: the memo's answer (an exact version
   * Go confirmed, a moving query within its TTL); with `stale`, also an exact version as it is
   * (unconfirmed: only good for finding what is built) and a moving query's last answer.
   */
  private known(module: string, query: string, stale: boolean): string | null {
    const hit = this.memo.get(`m:${module}@${query}`) as MemoEntry<ResolvedModule> | undefined;
    if (hit?.settled && hit.expires > this.now()) return hit.settled.version;
    if (!stale) return null;
    if (isExactVersion(query)) return query;
    return this.lastKnown.get(`${module}@${query}`) ?? null;
  }

  /** The resolved spec of a request, given the exact version of each of its module queries. */
  private assemble(req: BuildRequest, version: (module: string, query: string) => string): ResolvedSpec {
    const plugins = req.plugins.map((p): ResolvedPlugin => {
      if (!p.replace) return { module: p.module, version: version(p.module, p.version ?? 'latest') };
      // With a replacement, the original module's version is only a label: keep it when exact.
      const label = p.version && isExactVersion(p.version) ? { version: p.version } : {};
      const target = replacementQuery(p.replace);
      const replace: Replacement = target ? { kind: 'module', module: target.module, version: version(target.module, target.query) } : { kind: 'path', path: p.replace };
      return { module: p.module, ...label, replace };
    });
    return {
      caddyVersion: version(CADDY_MODULE, req.caddyVersion),
      os: req.os,
      arch: req.arch,
      ...(req.arm ? { arm: req.arm } : {}),
      plugins,
      toolchain: { go: this.toolchain.identity.go, xcaddy: this.toolchain.identity.xcaddy, flags: this.opts.buildFlags },
    };
  }

  resolveModule(module: string, query: string): Promise<ResolvedModule> {
    const exact = isExactVersion(query);
    return this.memoise(`m:${module}@${query}`, exact ? this.exactTtlMs : this.ttlMs, async () => {
      const out = await this.goList(['list', '-m', '-json', `${module}@${query}`], `${module}@${query}`);
      const info = JSON.parse(out) as { Path: string; Version: string; Time?: string };
      if (!info.Version || !isExactVersion(info.Version)) {
        throw new ResolveError('unknown_version', `${module}@${query} did not resolve to an exact version`);
      }
      if (!exact) this.remember(`${module}@${query}`, info.Version);
      return { module: info.Path, version: info.Version, ...(info.Time ? { time: info.Time } : {}) };
    });
  }

  private remember(query: string, version: string): void {
    this.lastKnown.delete(query);
    if (this.lastKnown.size >= LAST_KNOWN_ENTRIES) this.lastKnown.delete(this.lastKnown.keys().next().value!);
    this.lastKnown.set(query, version);
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
    // `latest` is the newest release, as `go list -m caddy@latest` answers: peek() may use it.
    if (latest) this.remember(`${CADDY_MODULE}@latest`, latest);
    return { module: CADDY_MODULE, versions, latest, refreshedAt: new Date(this.now()).toISOString() };
  }

  moduleVersions(module: string, opts: { refresh?: boolean; maxAgeMs?: number } = {}): Promise<VersionList> {
    // Nothing from a request reaches the toolchain unchecked.
    const bad = modulePathError(module);
    if (bad) return Promise.reject(new AppError('invalid_spec', `module ${JSON.stringify(module.slice(0, 255))} ${bad}`));
    const key = `versions:${module}`;
    const hit = this.memo.get(key);
    // A refresh joins a read in flight, and gets the last answer when it is younger than refreshMemoMs.
    // maxAgeMs: a caller that must see the proxy's list as it is now (the watcher, once per run) takes no older answer.
    if (opts.refresh && hit?.settledAt !== undefined && this.now() - hit.settledAt >= (opts.maxAgeMs ?? this.refreshMemoMs)) this.memo.delete(key);
    return this.memoise(key, this.ttlMs, async () => {
      const out = await this.goList(['list', '-m', '-versions', '-json', module], `${module} versions`);
      const info = JSON.parse(out) as { Path?: string; Versions?: string[] };
      const versions = (info.Versions ?? [])
        .filter((v) => isExactVersion(v) && !isPseudoVersion(v))
        .reverse()
        .map((version) => ({ version, prerelease: version.split('+')[0]!.includes('-') }));
      const latest = versions.find((v) => !v.prerelease)?.version ?? versions[0]?.version ?? null;
      return { module: info.Path ?? module, versions, latest, refreshedAt: new Date(this.now()).toISOString() };
    });
  }

  knownModuleVersions(module: string): VersionList | null {
    const hit = this.memo.get(`versions:${module}`) as MemoEntry<VersionList> | undefined;
    return hit?.settled && hit.expires > this.now() ? hit.settled : null;
  }

  /** Drops memoised moving queries so the next request re-resolves them. */
  invalidate(): void {
    this.memo.clear();
  }

  private memoise<T>(key: string, ttl: number, fn: () => Promise<T>): Promise<T> {
    const hit = this.memo.get(key) as MemoEntry<T> | undefined;
    if (hit && hit.expires > this.now()) return hit.value;
    // Expired answers are dropped now and then, so many distinct queries (failures included) do not pile up.
    if (this.memo.size >= MEMO_SWEEP_AT && this.now() - this.sweptAt >= 60_000) {
      this.sweptAt = this.now();
      for (const [k, e] of this.memo) if (e.expires <= this.sweptAt) this.memo.delete(k);
    }
    const value = fn();
    const entry: MemoEntry<T> = { expires: this.now() + ttl, value };
    this.memo.set(key, entry);
    value.then(
      (v) => {
        entry.settled = v;
        entry.settledAt = this.now();
      },
      (err: unknown) => {
        if (this.memo.get(key) !== entry) return;
        // A query that does not resolve (4xx: no such version or module) is answered from memory
        // for failureTtlMs, so repeating it costs no go command; other failures (a timeout, the
        // proxy down, the resolver busy) only briefly, or not at all.
        const status = err instanceof AppError ? err.statusCode : 500;
        const keep = status >= 400 && status < 500 ? this.failureTtlMs : err instanceof AppError && err.code === 'resolver_busy' ? 0 : Math.min(this.failureTtlMs, UPSTREAM_FAILURE_TTL_MS);
        if (keep > 0) entry.expires = this.now() + keep;
        else this.memo.delete(key);
      },
    );
    return value;
  }

  private async goList(args: string[], what: string): Promise<string> {
    return this.gate.run(async () => {
      const started = Date.now();
      try {
        // Outside any module, in the toolchain's empty dir: `go list -m` only downloads .info/.mod files.
        const { stdout } = await this.toolchain.go(args, { network: 'modules', timeoutMs: 90_000 });
        this.opts.onGoCommand?.(what, 'ok', Date.now() - started);
        return stdout;
      } catch (err) {
        this.opts.onGoCommand?.(what, 'failed', Date.now() - started);
        throw classifyGoError(what, err as Error & { stderr?: string; killed?: boolean });
      }
    });
  }
}

const NOT_FOUND =
  /not found|unknown revision|no matching versions|invalid version|not available|410 Gone|404 Not Found|403 Forbidden|malformed module path|does not contain package|disallowed|unrecognized import path|no such host|verifying module/i;

export function classifyGoError(what: string, err: Error & { stderr?: string; killed?: boolean }): ResolveError {
  const detail = (err.stderr || err.message).trim().split('\n').filter(Boolean).slice(-3).join(' | ').slice(0, 600);
  if (err.killed) return new ResolveError('upstream_timeout', `resolving ${what} timed out; the module proxy may be slow or unreachable`);
  if (NOT_FOUND.test(detail)) {
    return new ResolveError('unknown_version', `cannot resolve ${what}: ${detail}. Check the module path and version (is it published and reachable through GOPROXY?)`);
  }
  return new ResolveError('upstream_error', `resolving ${what} failed: ${detail}`);
}
