/**
 * The watcher: every `watchInterval` it looks for a new Caddy release and for new plugin versions
 * a recipe admits, builds each recipe's candidate (the newest admitted versions not known broken)
 * on every image platform as ordinary builds, checks it, and promotes it only when everything
 * passed: the recipe's tags and links then serve it. A failed candidate moves nothing; when it
 * changed several versions at once, each change is tried alone on the last promoted set and the
 * one that breaks it (the culprit) is remembered as broken for that recipe, then the candidate
 * without it is tried. In a fleet one hub watches at a time (the lease).
 */
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.js';
import { applyChange, CADDY_MODULE, type Change, changes, compareGoVersions, fits, type PinnedSet, pinnedSet, sameSet, setId } from './sets.js';
import type { WatchBook } from './state.js';
import type { CandidateRecord, PromotedSet, RecipeWatchState, TrialBuild } from './state-schema.js';

/** A recipe as the watcher sees it: plugin versions may be exact, `latest` (or absent) or a semver range. */
export interface WatchedRecipe {
  name: string;
  plugins: ReadonlyArray<{ module: string; version?: string }>;
  caddyVersion?: string;
  testConfig?: string | Record<string, unknown>;
}

export interface TrialPlatform {
  name: string;
  go: { os: string; arch: string; arm?: string };
}

/** A build as the service answers it (BuildRecord's fields the watcher reads). */
export interface BuildHandle {
  id: string;
  key: string;
  status: string;
  error?: string;
}

/** Holds the watch: true when this process may run a watch now (src/queue: Redis in a fleet). */
export interface Lease {
  acquire(ttlMs: number): Promise<boolean>;
}

/** What the watcher tells (the webhooks part delivers it; its payload fields). */
export interface WatchEvent {
  event: 'recipe.promoted' | 'recipe.failed' | 'caddy.released';
  recipe?: string;
  caddyVersion: string;
  plugins: Array<{ module: string; version: string }>;
  previous?: { caddyVersion: string; plugins: Array<{ module: string; version: string }> } | null;
  culprit?: { module: string; version: string };
  reason?: string;
  builds: Array<{ platform: string; id: string; url: string; log: string }>;
  links?: Record<string, string>;
  at: string;
}

export interface WatcherOptions {
  book: WatchBook;
  recipes(): Promise<readonly WatchedRecipe[]>;
  caddyVersions(opts: { refresh: boolean }): Promise<{ versions: ReadonlyArray<{ version: string; prerelease: boolean }>; latest: string | null }>;
  /** The exact versions a recipe plugin's version (exact, `latest`, a range) admits, newest first. */
  admitted(module: string, version: string): Promise<string[]>;
  /** The image platforms: a candidate is built on each. */
  platforms: readonly TrialPlatform[];
  /** Requests a build (POST /api/builds body), as an in-process caller. */
  build(body: Record<string, unknown>): Promise<BuildHandle>;
  waitFor(id: string, signal: AbortSignal): Promise<BuildHandle>;
  /** Checks a candidate whose builds all succeeded: null when it passes, else why not. */
  check(recipe: WatchedRecipe, set: PinnedSet, builds: ReadonlyArray<BuildHandle & { platform: string }>): Promise<string | null>;
  lease: Lease;
  /** How long one watch may hold the lease before renewing it (default: the interval). */
  leaseMs: number;
  notify?(event: WatchEvent): void;
  /** A set was promoted (src/main: make its images, so the first pull finds them). */
  onPromoted?(recipe: string, set: PromotedSet): void;
  /** Counts trials by result (metrics). */
  onTrial?(kind: 'candidate' | 'culprit-search', result: CandidateRecord['result']): void;
  /** Prefix of the links in events (the server's public URL); default: paths only. */
  baseUrl?: string;
  /** Longest wait for one trial's builds (default 2 h); past it the trial counts as not tried. */
  trialTimeoutMs?: number;
  /** A broken version is tried again after this long (default 7 days): a failure that was not the version's heals. */
  brokenRetryMs?: number;
  logger: Logger;
  now?: () => number;
}

export interface WatchReport {
  ran: boolean;
  why?: string;
  recipes: Array<{ recipe: string; outcome: string }>;
}

/** A trial that could not be judged (a build request refused, canceled, timed out): tried again next run. */
class NotTried extends Error {}

const DEFAULT_TRIAL_TIMEOUT_MS = 2 * 3600_000;
const DEFAULT_BROKEN_RETRY_MS = 7 * 24 * 3600_000;
/** Rounds per recipe per run: a candidate, and after each culprit found, the candidate without it. */
const ROUNDS = 3;
const CADDY_NS = 'upstream-caddy';

export class Watcher {
  private running: Promise<WatchReport> | null = null;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(
    private readonly o: WatcherOptions,
    private readonly records: { getRecord(ns: string, name: string): Promise<unknown>; putRecord(ns: string, name: string, v: unknown): Promise<void> },
  ) {
    this.log = o.logger.child({ part: 'upstream' });
    this.now = o.now ?? Date.now;
  }

  /** One watch run (joins one in progress); `ran: false` when another hub holds the watch. */
  run(reason: string): Promise<WatchReport> {
    if (this.running) return this.running;
    const p = this.runOnce(reason).finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  private async runOnce(reason: string): Promise<WatchReport> {
    if (!(await this.o.lease.acquire(this.o.leaseMs))) {
      this.log.debug({ reason }, 'watch: another hub holds the watch');
      return { ran: false, why: 'another hub holds the watch', recipes: [] };
    }
    const renew = setInterval(() => void this.o.lease.acquire(this.o.leaseMs).catch(() => undefined), Math.max(1000, Math.floor(this.o.leaseMs / 3)));
    renew.unref();
    const report: WatchReport = { ran: true, recipes: [] };
    try {
      const list = await this.o.caddyVersions({ refresh: true });
      await this.caddyReleased(list.latest);
      const recipes = await this.o.recipes();
      const upstream = this.snapshot(recipes);
      for (const recipe of recipes) {
        try {
          report.recipes.push({ recipe: recipe.name, outcome: await this.watchRecipe(recipe, list.versions, upstream) });
        } catch (err) {
          this.log.warn({ recipe: recipe.name, err: errorMessage(err) }, 'watch: could not watch this recipe now; next run tries again');
          report.recipes.push({ recipe: recipe.name, outcome: `error: ${errorMessage(err)}` });
        }
      }
      this.log.info({ reason, recipes: report.recipes }, `watch: ${report.recipes.length} recipes looked at`);
      return report;
    } finally {
      clearInterval(renew);
    }
  }

  /**
   * What every recipe plugin's version admits, read once at the start of a run for all recipes at
   * the same moment: two releases published together are seen together (one candidate with both
   * changes, whose culprit is then searched), whatever a recipe's trials take before the next.
   */
  private snapshot(recipes: readonly WatchedRecipe[]): Map<string, Promise<string[]>> {
    const lists = new Map<string, Promise<string[]>>();
    for (const r of recipes) {
      for (const p of r.plugins) {
        const key = `${p.module}@${p.version ?? 'latest'}`;
        if (lists.has(key)) continue;
        const read = this.o.admitted(p.module, p.version ?? 'latest');
        read.catch(() => undefined); // read by candidate(), which reports it
        lists.set(key, read);
      }
    }
    return lists;
  }

  /** `caddy.released` once per new latest Caddy release (the first one seen is only remembered). */
  private async caddyReleased(latest: string | null): Promise<void> {
    if (!latest) return;
    const seen = (await this.records.getRecord(CADDY_NS, 'latest')) as { version?: string } | null;
    if (seen?.version === latest) return;
    await this.records.putRecord(CADDY_NS, 'latest', { version: latest, at: this.iso() });
    if (seen?.version && compareGoVersions(latest, seen.version) > 0) {
      this.log.info({ previous: seen.version, latest }, `watch: Caddy ${latest} released`);
      this.o.notify?.({ event: 'caddy.released', caddyVersion: latest, plugins: [], previous: { caddyVersion: seen.version, plugins: [] }, builds: [], at: this.iso() });
    }
  }

  private async watchRecipe(recipe: WatchedRecipe, versions: ReadonlyArray<{ version: string; prerelease: boolean }>, upstream: Map<string, Promise<string[]>>): Promise<string> {
    const state = await this.o.book.get(recipe.name);
    // Sets of the recipe as it was before a change (other plugins, another pinned Caddy) are not its sets any more.
    state.promoted = state.promoted.filter((p) => fits(recipe, p));
    let outcome = 'up to date';
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const cand = await this.candidate(recipe, state, versions, upstream);
        if (typeof cand === 'string') {
          outcome = cand;
          break;
        }
        if (state.promoted.some((p) => sameSet(p, cand))) break;
        if (state.history.some((h) => h.kind === 'candidate' && h.result === 'failed' && setId(h) === setId(cand))) {
          outcome = `candidate ${setId(cand)} failed before; waiting for new versions`;
          break;
        }
        const tried = await this.tryCandidate(recipe, state, cand);
        outcome = tried.outcome;
        if (!tried.again) break;
      }
    } catch (err) {
      if (!(err instanceof NotTried)) throw err;
      outcome = `not tried: ${err.message}`;
      this.log.warn({ recipe: recipe.name, why: err.message }, 'watch: a trial could not be judged; the next run tries again');
    } finally {
      state.checkedAt = this.iso();
      await this.o.book.put(recipe.name, state);
    }
    return outcome;
  }

  /** The newest admitted set that is not known broken, or why there is none. */
  private async candidate(
    recipe: WatchedRecipe,
    state: RecipeWatchState,
    versions: ReadonlyArray<{ version: string; prerelease: boolean }>,
    upstream: Map<string, Promise<string[]>>,
  ): Promise<PinnedSet | string> {
    const broken = this.brokenNow(state);
    let caddy: string | undefined;
    if (recipe.caddyVersion && recipe.caddyVersion !== 'latest') {
      caddy = recipe.caddyVersion;
      if (broken.has(`${CADDY_MODULE}@${caddy}`)) return `its pinned Caddy ${caddy} broke it`;
    } else {
      caddy = versions.find((v) => !v.prerelease && !broken.has(`${CADDY_MODULE}@${v.version}`))?.version;
      if (!caddy) return 'no Caddy release to build';
    }
    const plugins = [];
    for (const p of recipe.plugins) {
      const admitted = await (upstream.get(`${p.module}@${p.version ?? 'latest'}`) ?? this.o.admitted(p.module, p.version ?? 'latest'));
      const v = admitted.find((x) => !broken.has(`${p.module}@${x}`));
      if (!v) return admitted.length ? `every version of ${p.module} that ${p.version ?? 'latest'} admits broke it` : `${p.module}: no version admitted by ${p.version ?? 'latest'}`;
      plugins.push({ module: p.module, version: v });
    }
    return pinnedSet(caddy, plugins);
  }

  /** The broken versions still held broken (`module@version`). */
  private brokenNow(state: RecipeWatchState): Set<string> {
    const retry = this.o.brokenRetryMs ?? DEFAULT_BROKEN_RETRY_MS;
    state.broken = state.broken.filter((b) => this.now() - Date.parse(b.at) < retry);
    return new Set(state.broken.map((b) => `${b.module}@${b.version}`));
  }

  /** Trials a candidate; promotes it or finds its culprit. `again`: a culprit was found, so a candidate without it may be tried. */
  private async tryCandidate(recipe: WatchedRecipe, state: RecipeWatchState, cand: PinnedSet): Promise<{ outcome: string; again: boolean }> {
    const last = state.promoted[0] ?? null;
    const previous = state.promoted.find((p) => p.caddyVersion === cand.caddyVersion) ?? last;
    this.log.info({ recipe: recipe.name, candidate: setId(cand), previous: previous ? setId(previous) : null }, 'watch: trying a candidate');
    const trial = await this.trial(recipe, cand, 'candidate');
    if (trial.result === 'promoted') {
      const promoted: PromotedSet = { caddyVersion: cand.caddyVersion, plugins: cand.plugins, at: trial.finishedAt, builds: trial.builds };
      state.promoted = [promoted, ...state.promoted.filter((p) => p.caddyVersion !== cand.caddyVersion)];
      state.history.unshift(trial);
      await this.o.book.put(recipe.name, state);
      this.log.info({ recipe: recipe.name, promoted: setId(cand) }, `watch: ${recipe.name} promoted`);
      this.o.onPromoted?.(recipe.name, promoted);
      this.o.notify?.(this.event('recipe.promoted', recipe.name, cand, previous, trial));
      return { outcome: `promoted ${setId(cand)}`, again: false };
    }
    // Failed: which change breaks it? One change is its own culprit; several are tried alone on the last promoted set.
    const suspects = last ? changes(last, cand) : [];
    let culprit: Change | undefined;
    const searched: CandidateRecord[] = [];
    if (suspects.length === 1) culprit = suspects[0];
    else if (last && suspects.length > 1) {
      const modules = recipe.plugins.map((p) => p.module);
      for (const change of suspects) {
        const alone = applyChange(last, change, modules);
        if (sameSet(alone, last)) continue;
        const t = await this.trial(recipe, alone, 'culprit-search');
        searched.push(t);
        if (t.result === 'failed') {
          culprit = change;
          break;
        }
      }
    }
    const failed: CandidateRecord = culprit ? { ...trial, culprit } : trial;
    // Newest first: the culprit search's trials finished after the candidate's.
    state.history.unshift(...[...searched].reverse(), failed);
    if (culprit) state.broken.push({ module: culprit.module, version: culprit.version, at: this.iso(), reason: trial.reason ?? 'failed' });
    await this.o.book.put(recipe.name, state);
    const named = culprit ? `${culprit.module}@${culprit.version}` : 'not found';
    this.log.warn({ recipe: recipe.name, candidate: setId(cand), reason: trial.reason, culprit: named }, `watch: ${recipe.name}'s candidate failed; nothing moved`);
    this.o.notify?.(this.event('recipe.failed', recipe.name, cand, previous, failed));
    return { outcome: `failed ${setId(cand)}: ${trial.reason}; culprit ${named}`, again: !!culprit };
  }

  /** Builds a set on every image platform and checks it. Throws NotTried when it cannot be judged. */
  private async trial(recipe: WatchedRecipe, set: PinnedSet, kind: CandidateRecord['kind']): Promise<CandidateRecord> {
    const at = this.iso();
    const handles = await Promise.all(
      this.o.platforms.map(async (p) => {
        try {
          return { platform: p.name, ...(await this.o.build({ caddyVersion: set.caddyVersion, ...p.go, plugins: set.plugins })) };
        } catch (err) {
          throw new NotTried(`the ${p.name} build of ${setId(set)} was not started: ${errorMessage(err)}`);
        }
      }),
    );
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.o.trialTimeoutMs ?? DEFAULT_TRIAL_TIMEOUT_MS);
    let ended: Array<BuildHandle & { platform: string }>;
    try {
      ended = await Promise.all(handles.map(async (h) => ({ platform: h.platform, ...(await this.o.waitFor(h.id, ac.signal)) })));
    } catch (err) {
      throw new NotTried(ac.signal.aborted ? `the builds of ${setId(set)} did not finish in time` : `waiting for the builds of ${setId(set)}: ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
    }
    const builds: TrialBuild[] = ended.map((b) => ({ platform: b.platform, id: b.id, status: b.status, ...(b.error ? { error: b.error } : {}) }));
    const canceled = ended.find((b) => b.status !== 'succeeded' && b.status !== 'failed');
    if (canceled) throw new NotTried(`the ${canceled.platform} build ${canceled.id} ended ${canceled.status}`);
    const bad = ended.find((b) => b.status === 'failed');
    const reason = bad ? `the ${bad.platform} build failed: ${bad.error ?? 'see its log'}` : await this.o.check(recipe, set, ended);
    const result: CandidateRecord['result'] = reason ? 'failed' : kind === 'candidate' ? 'promoted' : 'passed';
    this.o.onTrial?.(kind, result);
    return { ...set, kind, result, at, finishedAt: this.iso(), ...(reason ? { reason } : {}), builds };
  }

  private event(event: 'recipe.promoted' | 'recipe.failed', recipe: string, set: PinnedSet, previous: PinnedSet | null, trial: CandidateRecord): WatchEvent {
    const base = this.o.baseUrl?.replace(/\/+$/, '') ?? '';
    return {
      event,
      recipe,
      caddyVersion: set.caddyVersion,
      plugins: set.plugins,
      previous: previous ? { caddyVersion: previous.caddyVersion, plugins: previous.plugins } : null,
      ...(trial.culprit ? { culprit: { module: trial.culprit.module, version: trial.culprit.version } } : {}),
      ...(trial.reason ? { reason: trial.reason } : {}),
      builds: trial.builds.map((b) => ({ platform: b.platform, id: b.id, url: `${base}/api/builds/${b.id}`, log: `${base}/api/builds/${b.id}/log` })),
      links: { recipe: `${base}/api/recipes/${recipe}` },
      at: this.iso(),
    };
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }
}
