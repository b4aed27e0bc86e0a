/**
 * The composition root's servers. `fairway serve`: HTTP API + in-process queue with N workers + local disk
 * store, no other server. `fairway hub`: the same HTTP service on a BullMQ queue and any store.
 * `fairway agent`: a BullMQ worker that builds and uploads. The service code is the same in all.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { flushingGoCache } from '../fleet/index.js';
import { publishImage } from '../registry/index.js';
import type { Signer } from '../provenance/index.js';
import { FAIRWAY_VERSION, secretFiles, type Config } from '../config/index.js';
import { BullMqQueue, BullMqWorker, LocalQueue, QueueJournal, redisConnection } from '../queue/index.js';
import { buildProcessor, remoteJobCheck, type BuildPayload, type ProcessorOptions } from '../service/index.js';
import type { ArtifactStore } from '../store/index.js';
import { BuildGate, createWorkerOps } from '../ops/index.js';
import { agentGoCache, fleetUpstream, probeFleetProxy } from './fleetcaches.js';
import { startHttp, type Running } from './http.js';
import { builderSigner, hubPublicKey, indexSigning, refuseVisibleSecrets, sandboxBound } from './keys.js';
import { loadPlatforms, prepareStore, prepareToolchain, runner } from './parts.js';

export type { Running } from './http.js';

/** What the builder does with each build: provenance (signed with its key) and, for Linux, the image with its signatures. */
function processorOptions(config: Config, store: ArtifactStore, signer: Signer | undefined, logger: Logger): ProcessorOptions {
  const tmpDir = join(config.dataDir, 'tmp');
  return {
    fairwayVersion: FAIRWAY_VERSION,
    signer,
    publish: async ({ binaryPath, meta, predicate, sbom, log }) => {
      if (meta.spec.os !== 'linux') return;
      const rec = await publishImage({ store, binaryPath, meta, tmpDir, predicate, sbom, logger, signer });
      log(`image ${rec.manifestDigest}${signer ? ' (signed, with its provenance attested)' : ' (unsigned)'}`);
    },
  };
}

export async function startServe(config: Config, logger: Logger): Promise<Running> {
  const toolchain = await prepareToolchain(config, logger);
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  const store = await prepareStore(config);
  const gate = new BuildGate(); // Go cache cleaning runs between builds only (src/ops/gocachebudget.ts)
  // serve is the builder: it signs its builds and the images it makes (docs/provenance.md), with a key of its own when none is set.
  const signer = await builderSigner(config, logger, 'serve', bound);
  const indexSigner = await indexSigning(config, logger, { role: 'serve', buildPublicKeyPem: signer?.publicKeyPem, builder: signer, bound });
  // Queued and running builds survive a crash or a restart: `<data-dir>/queue/<key>.json` (docs/operations.md).
  const journalDir = join(config.dataDir, 'queue');
  const journal = await QueueJournal.open<BuildPayload>(journalDir);
  const queue = new LocalQueue<BuildPayload>(gate.wrap(buildProcessor(runner(config, toolchain), store, processorOptions(config, store, signer, logger))), {
    workers: config.workers,
    identity: toolchain.identity,
    journal,
    logger,
  });
  const restore = async () => {
    const report = await queue.restore({
      // Ended already when the store holds a success, or a record written after the job was queued.
      isDone: async (entry) => {
        const meta = await store.getMeta(entry.key);
        return !!meta && (meta.status === 'succeeded' || Date.parse(meta.finishedAt) >= Date.parse(entry.createdAt));
      },
    });
    for (const c of report.corrupt) logger.warn({ file: c.file, error: c.error }, 'skipped a corrupt queue journal entry (moved aside to .corrupt)');
    if (report.dropped.length) logger.info({ dropped: report.dropped }, 'queue journal: dropped builds whose result is already in the store');
    if (report.requeued.length) logger.warn({ requeued: report.requeued }, `re-queued ${report.requeued.length} build(s) that were queued or running when the process stopped`);
  };
  // Running builds are stopped at shutdown (they stay in the journal and run again at the next start).
  return startHttp(config, logger, {
    toolchain,
    store,
    queue,
    role: 'serve',
    gate,
    restore,
    shutdownGraceMs: 0,
    journalDir,
    signer,
    publicKeyPem: signer?.publicKeyPem,
    indexSigning: indexSigner,
  });
}

function requireRedis(config: Config, role: string): string {
  if (!config.redis) throw new Error(`fairway ${role} needs --redis URL (env FAIRWAY_REDIS), e.g. redis://127.0.0.1:6379`);
  return config.redis;
}

export async function startHub(config: Config, logger: Logger): Promise<Running> {
  const toolchain = await prepareToolchain(config, logger);
  // A hub runs sandboxed go commands too (resolutions, the fleet module proxy's fills).
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  const store = await prepareStore(config);
  const queue = new BullMqQueue<BuildPayload>({ redisUrl: requireRedis(config, 'hub'), attempts: config.jobAttempts, logger });
  await queue.ready();
  // Rate limits and per-client build counts live in Redis, shared by all hubs. Fails fast: requests pass while Redis is down.
  const limitsRedis = redisConnection(requireRedis(config, 'hub'), 'fairway-hub-limits', { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 1000 });
  limitsRedis.on('error', (err: Error) => logger.debug({ err: err.message }, 'Redis connection for the shared limits'));
  const publicKeyPem = await hubPublicKey(config, logger);
  // The hub assembles the tags' indexes: it signs them with its index key once their images verified under the agents' key.
  const indexSigner = await indexSigning(config, logger, { role: 'hub', buildPublicKeyPem: publicKeyPem, bound });
  return startHttp(config, logger, { toolchain, store, queue, role: 'hub', limitsRedis, publicKeyPem, indexSigning: indexSigner });
}

export interface RunningAgent {
  id: string;
  close(force?: boolean): Promise<void>;
}

export async function startAgent(config: Config, logger: Logger): Promise<RunningAgent> {
  // fleet module proxy: <hub>/goproxy first in the relay's list (docs/distributed.md "Fleet caches").
  const fleet = fleetUpstream(config, logger);
  const toolchain = await prepareToolchain(config, logger, { fleetUpstream: fleet });
  const bound = sandboxBound(config, toolchain);
  refuseVisibleSecrets(secretFiles(config), bound, logger);
  if (fleet) await probeFleetProxy(fleet, logger);
  const store = await prepareStore(config);
  await store.ping();
  const gate = new BuildGate();
  const ops = createWorkerOps({ config, logger, toolchain, gate });
  // shared build cache: GOCACHEPROG for builds, a local tier and the store's gocache/ area (docs/distributed.md).
  const goCache = config.goCacheShared ? await agentGoCache(config, toolchain, gate, logger) : null;
  // Jobs come from Redis: the worker runs only what the job check accepts (src/service/jobcheck.ts).
  const platforms = await loadPlatforms(toolchain);
  // The agent is the builder: it signs what it builds (docs/provenance.md).
  const signer = await builderSigner(config, logger, 'agent', bound);
  const processor = buildProcessor(runner(config, toolchain), store, processorOptions(config, store, signer, logger));
  // shared build cache: a build ends once its cache puts are in the store (or dropped, logged).
  const worker = new BullMqWorker<BuildPayload>(gate.wrap(goCache ? flushingGoCache(goCache, processor) : processor), {
    redisUrl: requireRedis(config, 'agent'),
    ...(config.agentId ? { id: config.agentId } : {}),
    concurrency: config.workers,
    identity: toolchain.identity,
    check: remoteJobCheck({ identity: toolchain.identity, platforms }),
    // A verification rebuild goes to another agent than the original's, when one is alive.
    avoid: (payload) => payload.avoidAgent,
    logger,
    lockDurationMs: config.jobLockDuration,
    stalledIntervalMs: config.stalledInterval,
    ...(goCache ? { cacheInfo: () => goCache.summary() } : {}), // shared build cache
  });
  await worker.start();
  ops.start();
  logger.info({ agent: worker.id, concurrency: config.workers, store: store.kind }, `fairway agent ${worker.id} ready`);
  return {
    id: worker.id,
    close: async (force = false) => {
      await ops.close();
      await worker.close(force);
      await goCache?.close(); // shared build cache
      await toolchain.sandbox.close();
      await store.close?.();
    },
  };
}
