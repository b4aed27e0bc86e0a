/**
 * Fleet caches (docs/distributed.md "Fleet caches"): what a hub shares with its agents so that a
 * fleet fetches and compiles things once.
 */

// ---- fleet module proxy (src/fleet/goproxy.ts) ----
export {
  FleetModuleProxy,
  GOPROXY_PATH_PATTERN,
  GoproxyPathError,
  escapeGo,
  modulePathError,
  parseGoproxyPath,
  unescapeGo,
  versionError,
  type FillRequest,
  type FleetModuleProxyOptions,
  type GoproxyAnswer,
  type GoproxyFile,
  type GoproxyPath,
  type GoproxyResult,
} from './goproxy.js';
// ---- end fleet module proxy ----

// ---- shared build cache (src/fleet/gocache*.ts) ----
export { GoCacheServer, type AgentCacheSummary, type GoCacheServerOptions, type GoCacheStats } from './gocache.js';
export { flushingGoCache, startAgentGoCache, type AgentGoCacheOptions } from './gocache-agent.js';
// ---- end shared build cache ----
