/**
 * What the watcher knows of each recipe, one store record per recipe (`upstream/<recipe>`), so
 * every hub of a fleet serves the same promoted sets: the promoted set per Caddy version (what the
 * recipe's tags and download links serve), the candidates tried (newest first, bounded), and the
 * versions found broken (never tried again for that recipe). Defined once, as zod: the record
 * read from the store is checked with it, and the API's response schema is it.
 */
import { z } from 'zod';
import type { ArtifactStore } from '../store/index.js';
import { CADDY_MODULE, compareGoVersions, type PinnedSet } from './sets.js';

const Pin = z.object({ module: z.string(), version: z.string() });
const Change = z.object({ module: z.string(), version: z.string(), from: z.string().optional() });

export const TrialBuildSchema = z.object({
  platform: z.string(),
  id: z.string(),
  status: z.string(),
  error: z.string().optional(),
});

export const PromotedSetSchema = z.object({
  caddyVersion: z.string(),
  plugins: z.array(Pin),
  at: z.string().describe('when it was promoted'),
  builds: z.array(TrialBuildSchema),
});

export const CandidateSchema = z.object({
  caddyVersion: z.string(),
  plugins: z.array(Pin),
  kind: z.enum(['candidate', 'culprit-search']).describe('a candidate, or one change tried alone on the last promoted set'),
  result: z.enum(['promoted', 'passed', 'failed']).describe('passed: a culprit-search trial that built and checked'),
  at: z.string(),
  finishedAt: z.string(),
  reason: z.string().optional().describe('why it failed'),
  culprit: Change.optional().describe('the change that breaks it, when found'),
  builds: z.array(TrialBuildSchema),
});

export const BrokenSchema = z.object({
  module: z.string().describe(`a plugin module path, or ${CADDY_MODULE} for a Caddy version`),
  version: z.string(),
  at: z.string(),
  reason: z.string(),
});

export const RecipeWatchStateSchema = z.object({
  promoted: z.array(PromotedSetSchema).describe('one per Caddy version, newest Caddy first; the first is what :latest serves'),
  history: z.array(CandidateSchema).describe('the candidates tried, newest first'),
  broken: z.array(BrokenSchema).describe('versions that broke this recipe: not tried again'),
  checkedAt: z.string().optional().describe('the last watch run that looked at this recipe'),
});

export type TrialBuild = z.infer<typeof TrialBuildSchema>;
export type PromotedSet = z.infer<typeof PromotedSetSchema>;
export type CandidateRecord = z.infer<typeof CandidateSchema>;
export type BrokenVersion = z.infer<typeof BrokenSchema>;
export type RecipeWatchState = z.infer<typeof RecipeWatchStateSchema>;

export const HISTORY_MAX = 100;
const NS = 'upstream';

export function emptyState(): RecipeWatchState {
  return { promoted: [], history: [], broken: [] };
}

/** The store's records (the watcher's one dependency on the store). */
export type RecordStore = Pick<ArtifactStore, 'getRecord' | 'putRecord' | 'deleteRecord'>;

export class WatchBook {
  constructor(
    private readonly store: RecordStore,
    private readonly onMalformed?: (recipe: string, why: string) => void,
  ) {}

  async get(recipe: string): Promise<RecipeWatchState> {
    const raw = await this.store.getRecord(NS, recipe);
    if (raw === null) return emptyState();
    const parsed = RecipeWatchStateSchema.safeParse(raw);
    if (parsed.success) return parsed.data;
    this.onMalformed?.(recipe, parsed.error.issues[0]?.message ?? 'malformed');
    return emptyState();
  }

  async put(recipe: string, state: RecipeWatchState): Promise<void> {
    state.history = state.history.slice(0, HISTORY_MAX);
    state.promoted.sort((a, b) => compareGoVersions(b.caddyVersion, a.caddyVersion));
    await this.store.putRecord(NS, recipe, state);
  }

  /** Forgets a recipe's state (the recipe was removed). */
  async forget(recipe: string): Promise<void> {
    await this.store.deleteRecord(NS, recipe).catch(() => undefined);
  }

  /**
   * The promoted set a recipe tag serves: `latest` is the newest Caddy version promoted, a
   * version its own promoted set. Null when nothing was promoted for it.
   */
  async promoted(recipe: string, caddyVersion: string): Promise<(PinnedSet & { builds: TrialBuild[] }) | null> {
    const s = await this.get(recipe);
    const p = caddyVersion === 'latest' ? s.promoted[0] : s.promoted.find((x) => x.caddyVersion === caddyVersion);
    return p ? { caddyVersion: p.caddyVersion, plugins: p.plugins, builds: p.builds } : null;
  }
}
