/**
 * Operations (docs/operations.md): version refresh and prebuilds, store pruning with
 * durable last-download times, the Go cache budget, Prometheus metrics and their routes.
 * createHttpOps() wires them for `serve` and `hub`; createWorkerOps() for `agent` (Go caches): wiring.ts.
 */
export { createHttpOps, createWorkerOps } from './wiring.js';
export { BuildGate } from './gocachebudget.js';
export { opsRoutes } from './http.js';
export { OpsMetrics } from './metrics.js';
export { Pruner, type PruneReport } from './prune.js';
export type { PinResolver } from './prune-pinned.js';
export type { Scheduler } from './scheduler.js';
