/**
 * The work of one build job, shared by the embedded workers and the distributed agents:
 * run xcaddy, then publish the artifact (or the failure record, with its log) to the store.
 */
import { BuildFailed, binaryName, type BuildOutput, type BuildRunner } from '../runner/index.js';
import { binaryProvenance, isSigned, provenancePredicate, sbomAttestation, unsignableReason, type DsseEnvelope, type Signer, type SlsaProvenance } from '../provenance/index.js';
import { spdxDocument, type SpdxDocument } from '../sbom/index.js';
import type { Processor } from '../queue/index.js';
import type { BuildRequest, ResolvedSpec } from '../request/index.js';
import type { ArtifactMeta, ArtifactStore } from '../store/index.js';
import { stripControl } from '../util/text.js';
import { formatLog } from './logformat.js';
import { errorMessage } from '../util/errors.js';

export interface BuildPayload {
  request: BuildRequest;
  spec: ResolvedSpec;
  requestedAt: string;
  /** The client that started the build (`token:<name>` or `ip:<addr>`); it (or an admin) may cancel it. */
  requestedBy?: string;
  /**
   * A verification rebuild of the build with this key (the job's key is rebuildKey(rebuildOf)):
   * built and stored like any build, under its own key, without an image.
   */
  rebuildOf?: string;
  /** The agent that built the original: a rebuild goes to another agent when there is one. */
  avoidAgent?: string;
}

/** What a builder does with a build's bytes before its artifact is published (the image, its signatures). */
export type PublishHook = (a: { binaryPath: string; meta: ArtifactMeta; predicate: SlsaProvenance; sbom: SpdxDocument; log: (text: string) => void }) => Promise<void>;

export interface ProcessorOptions {
  /** Signs the provenance (and, through `publish`, the image); absent: provenance is written unsigned. */
  signer?: Signer;
  /** This Fairway's version, in the provenance's builder. */
  fairwayVersion: string;
  /**
   * Runs after a successful build, before the artifact is published, so that the image and its
   * signatures exist when the artifact appears (src/main: src/registry publishImage). A failure
   * is logged in the build log and does not fail the build: the registry makes the image on its
   * first pull (unsigned on a hub).
   */
  publish?: PublishHook;
}

/**
 * The processor trusts its payload: `serve` queues in-process (its own parsed and resolved specs;
 * local directory replacements from the trusted CLI allowed), and an agent's worker runs only
 * what checkRemoteJob (src/service/jobcheck.ts) accepted from Redis.
 */
export function buildProcessor(runner: BuildRunner, store: ArtifactStore, opts: ProcessorOptions = { fairwayVersion: '0.0.0' }): Processor<BuildPayload> {
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
      ...(ctx.payload.rebuildOf ? { rebuildOf: ctx.payload.rebuildOf } : {}),
    };
    if (ctx.payload.rebuildOf)
      ctx.log('system', `fairway: verification rebuild of build ${ctx.payload.rebuildOf}${ctx.payload.avoidAgent ? ` (built on ${ctx.payload.avoidAgent}; this is ${ctx.agent})` : ''}`);
    let out: BuildOutput;
    try {
      // Nothing is built whose provenance could not be signed as it is (src/provenance unsignableReason).
      const refused = unsignableReason(request, spec);
      if (refused) throw new Error(`refused to build ${ctx.key}: ${refused}; nothing was built or signed`);
      out = await runner.run(spec, { onLine: ctx.log, onPhase: ctx.phase, signal: ctx.signal });
    } catch (err) {
      const canceled = err instanceof BuildFailed && err.reason === 'canceled';
      // A failure may quote build output (xcaddy's last lines): no terminal control in the record or the job's error.
      const message = stripControl(errorMessage(err));
      if (err instanceof Error) err.message = message;
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
      // The builder signs what it built (docs/provenance.md): statement about the binary, DSSE envelope.
      const input = { key: ctx.key, request, spec, buildInfo: out.buildInfo, builder: ctx.agent, fairwayVersion: opts.fairwayVersion, startedAt, finishedAt: meta.finishedAt };
      const provenance: DsseEnvelope = binaryProvenance({ ...input, filename: meta.filename, sha256: out.sha256 }, opts.signer);
      ctx.log(
        'system',
        isSigned(provenance)
          ? `fairway: provenance signed (SLSA v1, key ${opts.signer!.fingerprint.slice(0, 16)})`
          : 'fairway: provenance written UNSIGNED: this builder has no signing key (signingKey)',
      );
      // The SBOM (docs/sbom.md): SPDX made from the binary's build info, attested like the provenance.
      const sbom = spdxDocument({ key: ctx.key, filename: meta.filename, sha256: out.sha256, caddyVersion: spec.caddyVersion, buildInfo: out.buildInfo });
      const sbomEnv = sbomAttestation({ filename: meta.filename, sha256: out.sha256 }, sbom, opts.signer);
      ctx.log('system', `fairway: SBOM written (SPDX 2.3, ${sbom.packages.length} packages), ${isSigned(sbomEnv) ? 'signed' : 'UNSIGNED'}`);
      if (opts.publish && !ctx.payload.rebuildOf) {
        try {
          await opts.publish({ binaryPath: out.binaryPath, meta, predicate: provenancePredicate(input), sbom, log: (text) => ctx.log('system', `fairway: ${text}`) });
        } catch (err) {
          ctx.log('system', `fairway: could not make the image now (${errorMessage(err)}); the registry makes it at its first pull`);
        }
      }
      ctx.log('system', `fairway: done in ${(out.durationMs / 1000).toFixed(1)}s`);
      meta.provenance = isSigned(provenance) ? 'signed' : 'unsigned';
      await store.put({ meta, binaryPath: out.binaryPath, buildInfo: out.buildInfo, provenance, sbom: sbomEnv, log: formatLog(await ctx.lines()) });
    } finally {
      await out.cleanup();
    }
  };
}
