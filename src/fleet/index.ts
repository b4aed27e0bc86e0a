/**
 * Fleet caches (docs/distributed.md "Fleet caches"): what a hub shares with its agents so that a
 * fleet fetches and compiles things once.
 */

// ---- fleet module proxy (src/fleet/goproxy.ts) ----
export { FleetModuleProxy, GOPROXY_PATH_PATTERN } from './goproxy.js';
// ---- end fleet module proxy ----

// ---- shared build cache (src/fleet/gocache*.ts) ----
export { GoCacheServer } from './gocache.js';
export { flushingGoCache, startAgentGoCache } from './gocache-agent.js';
// ---- end shared build cache ----
