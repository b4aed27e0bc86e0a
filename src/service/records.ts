/** The build record every caller sees (GET /api/builds/{id}), made from a stored artifact or a queue job. */
import { binaryName } from '../runner/index.js';
import type { JobPhase, JobSnapshot } from '../queue/index.js';
import { storedRequest, type BuildRequest, type ResolvedSpec } from '../request/index.js';
import type { ArtifactMeta } from '../store/index.js';
import type { BuildPayload } from './processor.js';

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

export interface BuildRecord {
  id: string;
  key: string;
  status: BuildStatus;
  phase: JobPhase;
  position?: number;
  /** True when the answer came from the store without building. */
  cached: boolean;
  request: BuildRequest;
  spec: ResolvedSpec;
  filename: string;
  sha256?: string;
  size?: number;
  goVersion?: string;
  error?: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  agent?: string;
  /** A verification rebuild (POST /api/builds/:id/rebuild): the id of the build it rebuilt. */
  rebuildOf?: string;
  /** Whether the build's provenance is signed; absent while it runs, or for builds older than provenance. */
  provenance?: 'signed' | 'unsigned';
  links: { self: string; log: string; artifact: string; buildinfo: string; provenance: string };
}

function links(key: string): BuildRecord['links'] {
  return {
    self: `/api/builds/${key}`,
    log: `/api/builds/${key}/log`,
    artifact: `/api/builds/${key}/artifact`,
    buildinfo: `/api/builds/${key}/buildinfo`,
    provenance: `/api/builds/${key}/provenance`,
  };
}

/** The record of a finished build, from its stored meta (`cached`: answered from the store without building). */
export function recordOfMeta(m: ArtifactMeta, cached: boolean): BuildRecord {
  const spec = m.spec;
  return {
    id: m.key,
    key: m.key,
    status: m.status,
    phase: m.status === 'succeeded' ? 'done' : m.status,
    cached,
    request: m.request,
    spec,
    filename: m.filename,
    ...(m.sha256 ? { sha256: m.sha256 } : {}),
    ...(m.size !== undefined ? { size: m.size } : {}),
    ...(m.goVersion ? { goVersion: m.goVersion } : {}),
    ...(m.error ? { error: m.error } : {}),
    createdAt: m.createdAt,
    ...(m.startedAt ? { startedAt: m.startedAt } : {}),
    finishedAt: m.finishedAt,
    ...(m.durationMs !== undefined ? { durationMs: m.durationMs } : {}),
    ...(m.agent ? { agent: m.agent } : {}),
    ...(m.provenance ? { provenance: m.provenance } : {}),
    ...(m.rebuildOf ? { rebuildOf: m.rebuildOf } : {}),
    links: links(m.key),
  };
}

/** The record of a queued or running build (or one the queue still remembers), from its job. */
export function recordOfJob(j: JobSnapshot & { payload: BuildPayload }): BuildRecord {
  const { spec, request } = j.payload;
  return {
    id: j.key,
    key: j.key,
    status: j.state,
    phase: j.phase,
    ...(j.position ? { position: j.position } : {}),
    cached: false,
    request: storedRequest(request, spec),
    spec,
    filename: binaryName(spec.os, spec.arch),
    ...(j.error ? { error: j.error } : {}),
    createdAt: j.createdAt,
    ...(j.startedAt ? { startedAt: j.startedAt } : {}),
    ...(j.finishedAt ? { finishedAt: j.finishedAt } : {}),
    ...(j.agent ? { agent: j.agent } : {}),
    ...(j.payload.rebuildOf ? { rebuildOf: j.payload.rebuildOf } : {}),
    links: links(j.key),
  };
}
