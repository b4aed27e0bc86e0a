/**
 * The work of one build job, shared by the embedded workers and the distributed agents:
 * run xcaddy, then publish the artifact (or the failure record, with its log) to the store.
 */
import { BuildFailed, binaryName, type BuildOutput, type BuildRunner } from '../build/index.js';
import type { Processor } from '../queue/index.js';
import type { BuildRequest, ResolvedSpec } from '../spec/index.js';
import type { ArtifactMeta, ArtifactStore } from '../store/index.js';
import { formatLog } from './logformat.js';

export interface BuildPayload {
  request: BuildRequest;
  spec: ResolvedSpec;
  requestedAt: string;
  /** The client that started the build (`token:<name>` or `ip:<addr>`); it (or an admin) may cancel it. */
  requestedBy?: string;
}

/**
 * The processor trusts its payload: `serve` queues in-process (its own parsed and resolved specs;
 * local directory replacements from the trusted CLI allowed), and an agent's worker runs only
 * what checkRemoteJob (src/service/jobcheck.ts) accepted from Redis.
 */
export function buildProcessor(runner: BuildRunner, store: ArtifactStore): Processor<BuildPayload> {
  return async (ctx) => {
    const { request, spec } = ctx.payload;
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
    let out: BuildOutput;
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
