/**
 * What the watcher knows of each recipe, one store record per recipe (`upstream/<recipe>`), so
 * every hub of a fleet serves the same promoted sets: the promoted set per Caddy version (what the
 * recipe's tags and download links serve), the candidates tried (newest first, bounded), and the
 * versions found broken (never tried again for that recipe). The record is defined once, as zod,
 * in state-schema.ts.
 */
import type { ArtifactStore } from '../store/index.js';
import { compareGoVersions, type PinnedSet } from './sets.js';
import { type RecipeWatchState, RecipeWatchStateSchema, type TrialBuild } from './state-schema.js';

export const HISTORY_MAX = 100;
const NS = 'upstream';

export function emptyState(): RecipeWatchState {
  return { promoted: [], history: [], broken: [] };
}

/** The store's records (the watcher's one dependency on the store). */
export type RecordStore = Pick<ArtifactStore, 'getRecord' | 'putRecord' | 'deleteRecord'>;

/** How long a promoted set read for a tag is reused (a pull is several requests in a row); this process's own writes show at once. */
const PROMOTED_MEMO_MS = 1_000;

export class WatchBook {
  private readonly memo = new Map<string, { state: RecipeWatchState; at: number }>();

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
    this.memo.delete(recipe);
  }

  /** Forgets a recipe's state (the recipe was removed). */
  async forget(recipe: string): Promise<void> {
    await this.store.deleteRecord(NS, recipe).catch(() => undefined);
    this.memo.delete(recipe);
  }

  /**
   * The promoted set a recipe tag serves: `latest` is the newest Caddy version promoted, a
   * version its own promoted set. Null when nothing was promoted for it.
   */
  async promoted(recipe: string, caddyVersion: string): Promise<(PinnedSet & { builds: TrialBuild[] }) | null> {
    const m = this.memo.get(recipe);
    const s = m && Date.now() - m.at <= PROMOTED_MEMO_MS ? m.state : await this.get(recipe);
    if (!m || m.state !== s) {
      if (this.memo.size >= 512) this.memo.delete(this.memo.keys().next().value!);
      this.memo.set(recipe, { state: s, at: Date.now() });
    }
    const p = caddyVersion === 'latest' ? s.promoted[0] : s.promoted.find((x) => x.caddyVersion === caddyVersion);
    return p ? { caddyVersion: p.caddyVersion, plugins: p.plugins, builds: p.builds } : null;
  }
}
