/**
 * Recipes that follow upstream (docs/recipes.md): the watcher (new Caddy releases and plugin
 * versions a recipe admits, trial builds, promotion, the culprit of a failure), its record per
 * recipe, and the checks a candidate passes. Wired by src/main.
 */
export { CADDY_MODULE, type Change, fits, type PinnedSet, type PluginPin, setId } from './sets.js';
export { RecipeWatchStateSchema, type PromotedSet, type RecipeWatchState } from './state-schema.js';
export { WatchBook } from './state.js';
export { trialChecks, type TrialCheckOptions } from './checks.js';
export { LocalLease } from './lease.js';
export { Watcher, type Lease, type WatchEvent, type WatchedRecipe, type WatchReport, type WatcherOptions } from './watcher.js';
