/** The build record every caller sees (GET /api/builds/{id}), made from a stored artifact or a queue job. */
import { binaryName } from '../runner/index.js';
import type { JobSnapshot } from '../queue/index.js';
import { storedRequest } from '../request/index.js';
import type { ArtifactMeta } from '../store/index.js';
import type { BuildPayload } from './processor.js';
import type { BuildRecord } from './record-schema.js';

export { buildRecordSchema, type BuildRecord, type BuildStatus } from './record-schema.js';

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
