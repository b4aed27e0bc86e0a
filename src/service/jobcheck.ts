/**
 * Every check an agent makes on a job it takes from Redis, in one place. Anyone with write
 * access to Redis can queue a job, so nothing of it is trusted: the toolchain it was keyed for
 * must be this agent's, its spec must hold to the request grammar (every version exact, no local
 * directory, a target this machine builds: src/request/resolved.ts), and the spec must hash to the
 * job's key (else a binary with other code would be stored under a popular key). The queue
 * adapter (src/queue/bullmq-agent.ts) calls the check it is given before anything runs; a refused job
 * fails at once, without retries, and nothing is written to the store.
 */
import { JobRefused, type RemoteJob } from '../queue/index.js';
import { BUILD_FLAGS, cacheKey, checkResolvedSpec, rebuildKey, requestMismatch, type PlatformSet, type ResolvedSpec } from '../request/index.js';
import type { BuildPayload } from './processor.js';
import { errorMessage } from '../util/errors.js';

export interface RemoteJobCheckOptions {
  /** The agent's toolchain: jobs keyed for other versions are refused. */
  identity: { go: string; xcaddy: string };
  /** Targets this machine can build; absent = not checked. */
  platforms?: PlatformSet;
}

const FROM_HUBS = '(jobs come from the hubs; check who else writes to Redis)';

/** The payload of a job taken from Redis, with its spec checked; throws a JobRefused saying why not. */
export function checkRemoteJob(job: RemoteJob, opts: RemoteJobCheckOptions): BuildPayload {
  const { key, agent } = job;
  const data = job.data && typeof job.data === 'object' ? (job.data as Record<string, unknown>) : null;
  const rawSpec = data?.spec && typeof data.spec === 'object' ? (data.spec as Record<string, unknown>) : null;
  const tc = rawSpec?.toolchain && typeof rawSpec.toolchain === 'object' ? (rawSpec.toolchain as Record<string, unknown>) : null;
  if (!data || !tc) throw new JobRefused(`agent ${agent} refused job ${key}: its payload has no spec.toolchain (not queued by a Fairway hub?)`);
  if (tc.go !== opts.identity.go || tc.xcaddy !== opts.identity.xcaddy) {
    throw new JobRefused(
      `agent ${agent} has ${opts.identity.go} and xcaddy ${opts.identity.xcaddy}, but this build was keyed for ${String(tc.go)} and xcaddy ${String(tc.xcaddy)}; run the same versions on hubs and agents`,
    );
  }
  // The flags name how Fairway builds (BUILD_FLAGS): a job with any other value asks this agent to
  // build in a way it does not, and to sign a statement saying so.
  if (tc.flags !== BUILD_FLAGS) {
    throw new JobRefused(`refused job ${key}: it was keyed for the build flags ${JSON.stringify(tc.flags).slice(0, 80)}, but this agent builds with ${BUILD_FLAGS} ${FROM_HUBS}`);
  }
  let spec: ResolvedSpec;
  try {
    spec = checkResolvedSpec(rawSpec, { allowLocalPaths: false, ...(opts.platforms ? { platforms: opts.platforms } : {}) });
  } catch (err) {
    throw new JobRefused(`refused job ${key}: ${errorMessage(err)} ${FROM_HUBS}`);
  }
  const specKey = cacheKey(spec);
  // A verification rebuild runs under rebuildKey(original key), and names the original.
  const rebuildOf = data.rebuildOf;
  if (rebuildOf !== undefined) {
    if (rebuildOf !== specKey || key !== rebuildKey(specKey))
      throw new JobRefused(
        `refused job ${key}: it claims to rebuild ${String(rebuildOf).slice(0, 80)}, but its spec has the cache key ${specKey} and its key is not that build's rebuild key ${FROM_HUBS}`,
      );
    if (data.avoidAgent !== undefined && typeof data.avoidAgent !== 'string') throw new JobRefused(`refused job ${key}: its avoidAgent is not a string ${FROM_HUBS}`);
  } else if (specKey !== key) throw new JobRefused(`refused job ${key}: its spec has the cache key ${specKey}, not the job's ${FROM_HUBS}`);
  if (!data.request || typeof data.request !== 'object') throw new JobRefused(`refused job ${key}: its payload has no request ${FROM_HUBS}`);
  // The request is signed beside the spec (provenance): it must be the request that resolved to it.
  const mismatch = requestMismatch(data.request, spec);
  if (mismatch) throw new JobRefused(`refused job ${key}: its request contradicts its spec: ${mismatch} ${FROM_HUBS}`);
  if (typeof data.requestedAt !== 'string' || Number.isNaN(Date.parse(data.requestedAt))) {
    throw new JobRefused(`refused job ${key}: its payload has no valid requestedAt ${FROM_HUBS}`);
  }
  if (data.requestedBy !== undefined && typeof data.requestedBy !== 'string') throw new JobRefused(`refused job ${key}: its requestedBy is not a string ${FROM_HUBS}`);
  return {
    request: data.request as BuildPayload['request'],
    spec,
    requestedAt: data.requestedAt,
    ...(typeof data.requestedBy === 'string' ? { requestedBy: data.requestedBy } : {}),
    ...(rebuildOf !== undefined ? { rebuildOf: specKey } : {}),
    ...(typeof data.avoidAgent === 'string' ? { avoidAgent: data.avoidAgent } : {}),
  };
}

/** The check for an agent's BullMqWorker (its `check` option). */
export function remoteJobCheck(opts: RemoteJobCheckOptions): (job: RemoteJob) => BuildPayload {
  return (job) => checkRemoteJob(job, opts);
}
