/**
 * The work of one build job, shared by the embedded workers and the distributed agents:
 * run xcaddy, then publish the artifact (or the failure record, with its log) to the store.
 */
import { BuildFailed, binaryName, type BuildRunner } from '../build/index.js';
import { JobRefused, type Processor } from '../queue/index.js';
import { cacheKey, checkResolvedSpec, type BuildRequest, type PlatformSet, type ResolvedSpec } from '../spec/index.js';
import type { ArtifactMeta, ArtifactStore } from '../store/index.js';
import { formatLog } from './logformat.js';

export interface BuildPayload {
  request: BuildRequest;
  spec: ResolvedSpec;
  requestedAt: string;
  /** The client that started the build (`token:<name>` or `ip:<addr>`); it (or an admin) may cancel it. */
  requestedBy?: string;
}

export interface ProcessorOptions {
  /**
   * Where jobs come from decides how far they are trusted. `serve` queues in-process (its own
   * parsed and resolved specs; local directory replacements from the trusted CLI allowed);
   * an agent takes them from Redis, so it re-checks every spec (src/spec/resolved.ts), refuses
   * local directories and checks that the spec's cache key is the job's key.
   */
  trust: 'in-process' | 'remote';
  /** Targets this machine can build (remote jobs are checked against it). */
  platforms?: PlatformSet;
}

export function buildProcessor(runner: BuildRunner, store: ArtifactStore, opts: ProcessorOptions = { trust: 'in-process' }): Processor<BuildPayload> {
  return async (ctx) => {
    const { request } = ctx.payload;
    let spec: ResolvedSpec = ctx.payload.spec;
    if (opts.trust === 'remote') {
      // Nothing is written for a refused job: its key may belong to another spec.
      try {
        spec = checkResolvedSpec(ctx.payload.spec, { allowLocalPaths: false, ...(opts.platforms ? { platforms: opts.platforms } : {}) });
      } catch (err) {
        throw new JobRefused(`refused job ${ctx.key}: ${(err as Error).message} (jobs come from the hubs; check who else writes to Redis)`);
      }
      const key = cacheKey(spec);
      if (key !== ctx.key) {
        throw new JobRefused(`refused job ${ctx.key}: its spec has the cache key ${key}, not the job's (jobs come from the hubs; check who else writes to Redis)`);
      }
    }
    const startedAt = new Date().toISOString();
    const base = {
      key: ctx.key,
      request,
      spec,
      filename: binaryName(spec.os, spec.arch),
      createdAt: ctx.payload.requestedAt,
      startedAt,
      agent: ctx.agent,
    };
    let out;
    try {
      out = await runner.run(spec, { onLine: ctx.log, onPhase: ctx.phase, signal: ctx.signal });
    } catch (err) {
      const canceled = err instanceof BuildFailed && err.reason === 'canceled';
      const message = (err as Error).message;
      ctx.log('system', `fairway: build ${canceled ? 'canceled' : 'failed'}: ${message}`);
      const meta: ArtifactMeta = {
        ...base,
        status: canceled ? 'canceled' : 'failed',
        error: message,
        finishedAt: new Date().toISOString(),
        durationMs: Date.now() - Date.parse(startedAt),
      };
      if (!canceled && ctx.finalAttempt) await store.put({ meta, log: formatLog(await ctx.lines()) });
      throw err;
    }
    try {
      ctx.phase('storing');
      ctx.log('system', `fairway: storing artifact ${ctx.key}`);
      const meta: ArtifactMeta = {
        ...base,
        status: 'succeeded',
        sha256: out.sha256,
        size: out.size,
        goVersion: out.goVersion,
        finishedAt: new Date().toISOString(),
        durationMs: out.durationMs,
        ...(out.listModules !== undefined ? { listModules: out.listModules } : {}),
      };
      ctx.log('system', `fairway: done in ${(out.durationMs / 1000).toFixed(1)}s`);
      await store.put({ meta, binaryPath: out.binaryPath, buildInfo: out.buildInfo, log: formatLog(await ctx.lines()) });
    } finally {
      await out.cleanup();
    }
  };
}
