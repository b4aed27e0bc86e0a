/**
 * Recipes that follow upstream (docs/recipes.md): the watcher (new Caddy releases and plugin
 * versions a recipe admits, trial builds, promotion, the culprit of a failure), its record per
 * recipe, and the checks a candidate passes. Wired by src/main.
 */
export { fits } from './sets.js';
export { RecipeWatchStateSchema, type RecipeWatchState } from './state-schema.js';
export { WatchBook } from './state.js';
export { trialChecks } from './checks.js';
export { LocalLease } from './lease.js';
export { Watcher, type WatchEvent, type WatchReport } from './watcher.js';
