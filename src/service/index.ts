/**
 * The use cases: request a build, read its status, follow its log, fetch its artifact, list and
 * cancel builds. Knows only the interfaces of resolve, queue and store, so the same code runs
 * embedded (local queue, fs store) and distributed (BullMQ, S3).
 */
import type { Logger } from 'pino';
import type { AgentInfo, JobEvent, QueueDepth } from '../queue/index.js';
import type { VersionList } from '../resolve/index.js';
import { BUILD_FLAGS, cacheKey, isCacheKey, parseBuildRequest, rebuildKey, type BuildRequest, type PlatformSet, type ResolvedSpec } from '../request/index.js';
import type { ArtifactMeta, ByteRange } from '../store/index.js';
import type { DsseEnvelope } from '../provenance/index.js';
import { AppError, NotFoundError } from '../util/errors.js';
import { ArtifactIndex } from './artifacts.js';
import { mayBuild, mayCancelAny, requireBuildScope, type RequestContext } from './context.js';
import { readBuildInfo, readProvenance, readSbom, readSbomAttestation, type SbomAnswer } from './files.js';
import type { SbomFormat } from '../sbom/index.js';
import type { CorruptReason } from './integrity.js';
import { parseLog } from './logformat.js';
import type { ServiceHooks, ServiceOptions } from './options.js';
import { type BuildRecord, type BuildStatus, recordOfJob, recordOfMeta } from './records.js';
import type { BuildPayload } from './processor.js';
import { AdmittedResolver } from './resolving.js';
import { BuildWaiters } from './waiting.js';

export { buildProcessor, type BuildPayload, type ProcessorOptions } from './processor.js';
export { remoteJobCheck } from './jobcheck.js';
export { verifyingStream, verifyWhole } from './integrity.js';
export { buildRecordSchema, type BuildRecord, type BuildStatus } from './record-schema.js';
export type { RequestContext } from './context.js';
export type { ServiceHooks } from './options.js';

export type LogEvent = JobEvent | { type: 'status'; build: BuildRecord };

export class BuildService {
  /** Finished artifacts by key, their integrity and quarantine (artifacts.ts). */
  private readonly artifacts: ArtifactIndex;
  /** Callers blocked until a build ends (waiting.ts). */
  private readonly waiters: BuildWaiters;
  /** The resolution step of the admission, with each client's resolutions in flight (resolving.ts). */
  private readonly resolver: AdmittedResolver;
  private readonly log: Logger;
  private readonly observers: ServiceHooks[] = [];
  /** Quarantines before an observer with a `corrupt` hook was added (init()), replayed to it by observe(). */
  private readonly earlyCorrupt: Array<[string, CorruptReason]> = [];

  constructor(private readonly o: ServiceOptions) {
    this.log = o.logger;
    this.artifacts = new ArtifactIndex({
      store: o.store,
      logger: o.logger,
      ...(o.hot ? { hot: o.hot } : {}),
      onCorrupt: (key, reason) => {
        if (!this.observers.some((h) => h.corrupt) && this.earlyCorrupt.length < 10_000) this.earlyCorrupt.push([key, reason]);
        this.emit((h) => h.corrupt?.(key, reason));
      },
    });
    this.waiters = new BuildWaiters({ record: (key) => this.get(key), job: (key) => o.queue.get(key) });
    this.resolver = new AdmittedResolver({ resolver: o.resolver, admission: o.admission, existing: (key) => this.existing(key) });
    o.queue.onFinished((key, state, error) => {
      void this.artifacts.refresh(key).finally(() => {
        this.log.info({ key, state, error }, 'build finished');
        this.emit((h) => h.finished?.(key, state, this.artifacts.indexed(key)));
        this.waiters.wake(key);
      });
    });
  }

  /** Rebuilds the index by scanning the store: the store is the truth, the index only a cache of it. */
  async init(): Promise<void> {
    const n = await this.artifacts.rescan({ checkAll: true });
    this.log.info({ artifacts: n, store: this.o.store.kind }, 'index rebuilt from store');
  }

  get platforms(): PlatformSet {
    return this.o.platforms;
  }

  /** Plugins per build (maxPlugins), for the request schema. */
  get maxPlugins(): number {
    return this.o.maxPlugins;
  }

  parse(input: unknown, ctx: RequestContext = {}): BuildRequest {
    return parseBuildRequest(input, { platforms: this.o.platforms, maxPlugins: this.o.maxPlugins, allowLocalReplace: !!ctx.trusted });
  }

  /** Checks a request against the grammar and the build policy without resolving or queueing it (recipes). */
  check(input: unknown, ctx: RequestContext = {}): BuildRequest {
    const request = this.parse(input, ctx);
    this.o.policy?.checkRequest(request, ctx);
    return request;
  }

  /**
   * Validates, pins versions, and either answers from the cache or joins/queues the build. The one
   * admission of every route that can start a build or a resolution (native, compat, registry;
   * rebuild() takes the same first step): the grammar and policy, then the `build` scope, then
   * (only when Go must be asked) the build rate limit and the client's limit of builds and
   * resolutions, then the resolution itself (src/resolve: the concurrency cap and the memory of
   * failed queries), then (only for a new build) the rate limit again, free disk and the client's
   * limit of active builds. Nothing is resolved for a caller refused at an earlier step.
   */
  async request(input: unknown, ctx: RequestContext = {}): Promise<BuildRecord> {
    const request = this.parse(input, ctx);
    this.o.policy?.checkRequest(request, ctx);
    requireBuildScope(ctx);
    const spec = await this.resolver.resolve(request, ctx);
    this.o.policy?.checkResolved(spec);
    const key = cacheKey(spec);
    const done = await this.finished(key);
    if (done?.status === 'succeeded' && (await this.artifacts.binaryThere(done))) {
      this.log.debug({ key }, 'cache hit');
      this.emit((h) => h.requested?.(key, 'hit'));
      return recordOfMeta(done, true);
    }
    await ctx.chargeBuild?.();
    await this.o.admission?.admit(key, ctx.client);
    const { job, created } = await this.o.queue.enqueue(key, { request, spec, requestedAt: new Date().toISOString(), ...(ctx.client ? { requestedBy: ctx.client } : {}) });
    this.emit((h) => h.requested?.(key, created ? 'queued' : 'joined'));
    this.log.info({ key, created, caddy: spec.caddyVersion, os: spec.os, arch: spec.arch, plugins: spec.plugins.length }, created ? 'build queued' : 'joined build in flight');
    return recordOfJob({ ...job, payload: { request, spec, requestedAt: job.createdAt } });
  }

  /** Whether a build of `key` is queued, running or succeeded (its versions were resolved before). */
  private async existing(key: string): Promise<boolean> {
    const job = await this.o.queue.get(key);
    if (job && (job.state === 'queued' || job.state === 'running')) return true;
    return (await this.finished(key))?.status === 'succeeded';
  }

  /** Whether this caller may start builds and resolutions (the `build` scope; in-process callers may). */
  mayBuild(ctx: RequestContext): boolean {
    return mayBuild(ctx);
  }

  /**
   * The build a request names, found from what exists, for callers that may not build: versions
   * are taken as the resolver last knew them (exact ones as they are), never asked of Go, and
   * nothing is queued. The record of a succeeded build (cached), of one queued or running, or
   * null when it is not built (or its versions were never resolved here).
   */
  async lookup(input: unknown, ctx: RequestContext = {}): Promise<BuildRecord | null> {
    const request = this.parse(input, ctx);
    this.o.policy?.checkRequest(request, ctx);
    const spec = this.o.resolver.peek?.(request, { stale: true });
    if (!spec) return null;
    this.o.policy?.checkResolved(spec);
    const key = cacheKey(spec);
    const done = await this.finished(key);
    if (done?.status === 'succeeded' && (await this.artifacts.binaryThere(done))) return recordOfMeta(done, true);
    const job = await this.o.queue.get(key);
    return job && (job.state === 'queued' || job.state === 'running') ? recordOfJob(job) : null;
  }

  async get(id: string): Promise<BuildRecord> {
    const key = this.keyOf(id);
    const job = await this.o.queue.get(key);
    if (job && (job.state === 'queued' || job.state === 'running')) return recordOfJob(job);
    const meta = await this.finished(key);
    if (meta) return recordOfMeta(meta, false);
    // A succeeded job whose artifact is no longer in the store was pruned: it is gone.
    if (job && job.state !== 'succeeded') return recordOfJob(job);
    throw new NotFoundError(`build ${id}`);
  }

  /**
   * Builds in flight (running, then queued in queue order) and finished ones (newest first), at
   * most `limit` in all; `status` keeps only those states; `sha256` only the finished builds of
   * that binary.
   */
  async list(limit = 50, filter: { sha256?: string; status?: readonly BuildStatus[] } = {}): Promise<BuildRecord[]> {
    const wanted = (s: BuildStatus) => !filter.status || filter.status.includes(s);
    const inFlight =
      filter.sha256 === undefined && (wanted('queued') || wanted('running')) ? (await this.o.queue.active(limit)).filter((j) => wanted(j.state as BuildStatus)).map((j) => recordOfJob(j)) : [];
    const all = this.artifacts.records().filter((m) => (filter.sha256 === undefined || m.sha256 === filter.sha256) && wanted(m.status as BuildStatus));
    const metas = all.sort((a, b) => (a.finishedAt < b.finishedAt ? 1 : -1)).slice(0, Math.max(0, limit - inFlight.length));
    return [...inFlight, ...metas.map((m) => recordOfMeta(m, false))];
  }

  /**
   * The log from the first line: live from the queue while the build is active, from the store
   * once it ended. Starts with a `status` event and ends with an `end` event.
   */
  async *followLog(id: string, opts: { fromSeq?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogEvent> {
    const key = this.keyOf(id);
    const job = await this.o.queue.get(key);
    const active = job && (job.state === 'queued' || job.state === 'running');
    // An active job is its own status (as get() would answer); otherwise ask get() for the stored one.
    yield { type: 'status', build: active ? recordOfJob(job) : await this.get(key) };
    if (job) {
      let ended = false;
      for await (const ev of this.o.queue.follow(key, opts)) {
        if (ev.type === 'end') ended = true;
        yield ev;
      }
      if (ended || opts.signal?.aborted) return;
    }
    const meta = await this.finished(key);
    if (!meta) return;
    const text = (await this.o.store.getLog(key)) ?? '';
    for (const line of parseLog(text).slice(opts.fromSeq ?? 0)) yield { type: 'line', line };
    yield { type: 'end', state: meta.status, ...(meta.error ? { error: meta.error } : {}) };
  }

  /**
   * Graceful shutdown, before the HTTP server closes: every caller blocked in waitFor() (and any
   * later one) gets a 503 with Retry-After at once. The builds themselves stay queued (journal).
   */
  shutdown(retryAfterS = 10): void {
    this.waiters.shutdown(retryAfterS);
  }

  /** Resolves when the build has ended (for the blocking download API). */
  async waitFor(id: string, signal?: AbortSignal): Promise<BuildRecord> {
    return this.waiters.waitFor(this.keyOf(id), signal);
  }

  async artifact(id: string): Promise<{ meta: ArtifactMeta; open: (range?: ByteRange) => Promise<NodeJS.ReadableStream>; url?: () => Promise<string | null> }> {
    const meta = await this.succeeded(id, 'artifact');
    const key = meta.key;
    const store = this.o.store;
    this.emit((h) => h.downloaded?.(key));
    return {
      meta,
      open: (range) => this.artifacts.open(meta, range),
      ...(store.binaryUrl ? { url: () => this.artifacts.url(meta) } : {}),
    };
  }

  async buildInfo(id: string): Promise<unknown> {
    return readBuildInfo(this.o.store, this.artifacts, await this.succeeded(id, 'build info'), id);
  }

  /** The DSSE envelope of a finished build's provenance (docs/provenance.md). */
  async provenance(id: string): Promise<DsseEnvelope> {
    return readProvenance(this.o.store, this.artifacts, await this.succeeded(id, 'provenance'), id);
  }

  /** The SBOM of a finished build in `format` (docs/sbom.md): its bytes, and whether they are the stored attestation's. */
  async sbom(id: string, format: SbomFormat): Promise<SbomAnswer> {
    return readSbom(this.o.store, this.artifacts, await this.succeeded(id, 'SBOM'), id, format);
  }

  /** The DSSE envelope of a finished build's SBOM attestation (docs/sbom.md); 404 for a build made before SBOMs existed. */
  async sbomAttestation(id: string): Promise<DsseEnvelope> {
    const stored = await readSbomAttestation(this.o.store, this.artifacts, await this.succeeded(id, 'SBOM'), id);
    if (!stored) throw new NotFoundError(`the SBOM attestation of build ${id} (it was built before Fairway attested SBOMs; GET /api/builds/${id}/sbom makes its SBOM from its build info)`);
    return stored.envelope;
  }

  /**
   * Queues a verification rebuild of a finished build: the same spec built again, on another
   * agent than the original's when one is alive (the queue's `avoid`), under rebuildKey(key), so
   * it never replaces the original or answers a request for the spec. Its record names the
   * original (`rebuildOf`); the caller compares the two sha256. One rebuild per build: a finished
   * one is answered as it is.
   */
  async rebuild(id: string, ctx: RequestContext = {}): Promise<BuildRecord> {
    requireBuildScope(ctx);
    const meta = await this.succeeded(id, 'provenance');
    const key = meta.key;
    if (meta.rebuildOf) throw new AppError('is_rebuild', `build ${id} is a rebuild of ${meta.rebuildOf}: rebuild that one`);
    const spec = meta.spec;
    if (spec.toolchain.flags !== BUILD_FLAGS) {
      throw new AppError(
        'not_rebuildable',
        `build ${id} was built with the flags ${spec.toolchain.flags}, whose bytes followed the order the plugins were requested in; this server builds with ${BUILD_FLAGS} (the canonical order), so a rebuild could not give its bytes: request the build again (POST /api/builds) for a build under the current flags`,
      );
    }
    if (spec.plugins.some((p) => p.replace?.kind === 'path')) {
      throw new AppError('not_rebuildable', `build ${id} uses a local directory replacement, which only the server that has the directory can build`);
    }
    const rkey = rebuildKey(key);
    const done = await this.finished(rkey);
    if (done?.status === 'succeeded' && (await this.artifacts.binaryThere(done))) return recordOfMeta(done, true);
    await ctx.chargeBuild?.();
    await this.o.admission?.admit(rkey, ctx.client);
    const payload: BuildPayload = {
      request: meta.request,
      spec,
      requestedAt: new Date().toISOString(),
      ...(ctx.client ? { requestedBy: ctx.client } : {}),
      rebuildOf: key,
      ...(meta.agent ? { avoidAgent: meta.agent } : {}),
    };
    const { job, created } = await this.o.queue.enqueue(rkey, payload);
    this.log.info({ key, rebuild: rkey, created, avoidAgent: meta.agent }, created ? 'verification rebuild queued' : 'joined the verification rebuild in flight');
    return recordOfJob({ ...job, payload: { ...payload, requestedAt: job.createdAt } });
  }

  /**
   * Cancels a queued or running build. Builds are shared by key (clients that asked for the same
   * spec wait on one build), so only the client that started it or an admin may stop it; builds
   * the server started itself (prebuilds) need an admin. `ctx` absent = an in-process caller.
   */
  async cancel(id: string, ctx?: RequestContext): Promise<BuildRecord> {
    const key = this.keyOf(id);
    if (ctx && !mayCancelAny(ctx)) {
      const job = await this.o.queue.get(key);
      const owner = job?.payload.requestedBy;
      if (job && (job.state === 'queued' || job.state === 'running') && (!owner || owner !== ctx.client)) {
        throw new AppError(
          'not_your_build',
          `build ${id} was started by ${owner ? 'another client' : 'the server (a prebuild)'}; other clients may be waiting for it, so only ${owner ? 'that client or ' : ''}an admin token may cancel it`,
        );
      }
    }
    if (!(await this.o.queue.cancel(key))) {
      throw new AppError('not_active', `build ${id} is not queued or running`);
    }
    return this.get(key);
  }

  versions(opts?: { refresh?: boolean }): Promise<VersionList> {
    return this.o.resolver.caddyVersions(opts);
  }

  /**
   * A module's published versions, newest first (what a recipe's version range is admitted from:
   * src/registry recipes.ts). A fresh memoised list costs nothing; a go command needs the `build`
   * scope and counts against the build rate limit, as a resolution of a build request does.
   */
  async moduleVersions(module: string, opts: { refresh?: boolean } = {}, ctx: RequestContext = {}): Promise<VersionList> {
    const known = opts.refresh ? null : (this.o.resolver.knownModuleVersions?.(module) ?? null);
    if (known) return known;
    requireBuildScope(ctx);
    await ctx.chargeBuild?.();
    return this.o.resolver.moduleVersions(module, opts);
  }

  /** One module query (`latest`, a branch) pinned to its exact version, as a build resolves it; same rules as moduleVersions. */
  async resolveModule(module: string, query: string): Promise<string> {
    return (await this.o.resolver.resolveModule(module, query)).version;
  }

  agents(): Promise<AgentInfo[]> {
    return this.o.queue.agents();
  }

  depth(): Promise<QueueDepth> {
    return this.o.queue.depth();
  }

  async stats(): Promise<{ artifacts: number; succeeded: number; failed: number; queue: QueueDepth }> {
    const metas = this.artifacts.records();
    return {
      artifacts: metas.length,
      succeeded: metas.filter((m) => m.status === 'succeeded').length,
      failed: metas.filter((m) => m.status !== 'succeeded').length,
      queue: await this.o.queue.depth(),
    };
  }

  /** Adds an observer (metrics, pruning, access tracking). */
  observe(hooks: ServiceHooks): void {
    this.observers.push(hooks);
    // Records quarantined before anyone counted them (while init() rebuilt the index).
    if (hooks.corrupt) for (const [key, reason] of this.earlyCorrupt) hooks.corrupt(key, reason);
  }

  /** Parses and resolves a request to its cache key without queueing anything. */
  async resolveKey(input: unknown, ctx: RequestContext = {}): Promise<{ key: string; request: BuildRequest; spec: ResolvedSpec }> {
    const request = this.parse(input, ctx);
    const spec = await this.o.resolver.resolve(request);
    return { key: cacheKey(spec), request, spec };
  }

  /** The finished record of a key (index, else the store). */
  meta(key: string): Promise<ArtifactMeta | null> {
    return isCacheKey(key) ? this.finished(key) : Promise.resolve(null);
  }

  /**
   * Makes the index match the store listing: adds what other hubs or agents published (a missed
   * event, e.g. across a Redis restart) and drops what was deleted behind this process's back.
   */
  rescan(opts: { checkAll?: boolean } = {}): Promise<number> {
    return this.artifacts.rescan(opts);
  }

  /** Drops a key from the index (its artifact was pruned). */
  forget(key: string): void {
    this.artifacts.forget(key);
  }

  /** Keys the index holds. */
  indexedKeys(): string[] {
    return this.artifacts.indexedKeys();
  }

  private finished(key: string): Promise<ArtifactMeta | null> {
    return this.artifacts.finished(key);
  }

  private emit(fn: (h: ServiceHooks) => void): void {
    for (const h of this.observers) {
      try {
        fn(h);
      } catch (err) {
        this.log.warn({ err }, 'service observer failed');
      }
    }
  }

  /**
   * The record of a build that succeeded, for what only such a build has (its artifact, build
   * info, provenance): 409 while it is queued or running or when it failed, 404 when there is no
   * such build or its artifact left the store.
   */
  private async succeeded(id: string, what: string): Promise<ArtifactMeta> {
    const key = this.keyOf(id);
    const meta = await this.finished(key);
    if (!meta) {
      const job = await this.o.queue.get(key);
      if (job && job.state !== 'succeeded') throw new AppError('not_ready', `build ${id} is ${job.state}: it has no ${what} until it succeeds; wait for it to finish (GET /api/builds/${id}/log)`);
      // A succeeded job whose artifact left the store (pruned, or quarantined as corrupt).
      if (job) throw new AppError('not_found', `the artifact of build ${id} is no longer in the store (pruned or quarantined); request the build again (POST /api/builds) to rebuild it`);
      throw new NotFoundError(`build ${id}`);
    }
    if (meta.status !== 'succeeded') throw new AppError('build_failed', `build ${id} ${meta.status}: ${meta.error ?? `no ${what}`}`);
    return meta;
  }

  private keyOf(id: string): string {
    if (!isCacheKey(id)) throw new NotFoundError(`build ${JSON.stringify(id.slice(0, 80))}`);
    return id;
  }
}
