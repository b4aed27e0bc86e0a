/**
 * The hub side of the BullMQ/Redis queue. Hubs enqueue (job id = cache key, so one build per key
 * across every hub), follow logs from Redis Streams and learn about finished jobs from
 * QueueEvents.
 */
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents, type ConnectionOptions, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { Channel } from '../util/channel.js';
import { LogRelay, type LogSubscription } from './logrelay.js';
import { RedisLog, type LogEntry } from './redislog.js';
import type { AgentInfo, BuildQueue, Enqueued, FinalState, JobEvent, JobPhase, JobSnapshot, JobState, QueueDepth } from './types.js';
import { type BullConfig, listAgents, names, type Progress, redisConnection, silent, Warner } from './bullmq-shared.js';

/** A job canceled while queued: BullMQ removes it, so what get() answers is kept here for a while. */
interface CanceledRecord {
  createdAt: string;
  finishedAt: string;
  error: string;
  payload: unknown;
}

/** How long finished jobs (and canceled-while-queued records) stay in Redis, seconds. */
const FINISHED_TTL_S = 3600;

const JOB_PHASES: ReadonlySet<string> = new Set<JobPhase>(['queued', 'resolving', 'building', 'storing', 'done', 'failed', 'canceled']);

function progressOf(job: Job): Progress {
  const p: unknown = job.progress;
  if (!p || typeof p !== 'object') return {};
  const r = p as Record<string, unknown>;
  return {
    ...(typeof r.phase === 'string' && JOB_PHASES.has(r.phase) ? { phase: r.phase as JobPhase } : {}),
    ...(typeof r.agent === 'string' ? { agent: r.agent } : {}),
    ...(r.outcome === 'canceled' ? { outcome: 'canceled' as const } : {}),
  };
}

function parseCanceled(text: string | null): CanceledRecord | null {
  if (!text) return null;
  try {
    const v = JSON.parse(text) as Partial<CanceledRecord> | null;
    if (!v || typeof v.createdAt !== 'string' || typeof v.finishedAt !== 'string' || typeof v.error !== 'string') return null;
    return { createdAt: v.createdAt, finishedAt: v.finishedAt, error: v.error, payload: v.payload };
  } catch {
    return null; // not ours (written by something else): as if absent
  }
}

/** Deletes a key's log and canceled record, unless a job exists under it again (atomically: a new job's lines are never lost). */
const RESET_IF_NO_JOB = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return 1`;

function stateOf(bullState: string, progress: Progress): JobState {
  switch (bullState) {
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return progress.outcome === 'canceled' ? 'canceled' : 'failed';
    default:
      return 'queued';
  }
}

export class BullMqQueue<P> implements BuildQueue<P> {
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly redis: Redis;
  private readonly eventsRedis: Redis;
  private readonly log: RedisLog;
  /** One Redis connection for every log follower of this hub (src/queue/logrelay.ts). */
  private readonly relay: LogRelay;
  private readonly prefix: string;
  private readonly warner: Warner;
  private closing = false;
  private readonly listeners: Array<(key: string, state: FinalState, error?: string) => void> = [];

  constructor(private readonly c: BullConfig) {
    const n = names(c);
    this.prefix = n.prefix;
    this.warner = new Warner(c.logger ?? silent());
    this.redis = redisConnection(c.redisUrl, 'fairway-hub');
    this.eventsRedis = redisConnection(c.redisUrl, 'fairway-hub-events');
    // BullMQ listens to the connections it is given only while open; these keep errors from going unhandled.
    this.redis.on('error', (err: Error) => this.warner.warn('Redis connection error (reconnecting)', err));
    this.eventsRedis.on('error', (err: Error) => this.warner.warn('Redis connection error (reconnecting)', err));
    this.queue = new Queue(n.queue, { connection: this.redis as unknown as ConnectionOptions, prefix: n.prefix });
    this.events = new QueueEvents(n.queue, { connection: this.eventsRedis as unknown as ConnectionOptions, prefix: n.prefix });
    this.log = new RedisLog(this.redis, { prefix: n.prefix });
    this.relay = new LogRelay(this.redis, {
      onError: (err) => this.warner.warn('could not watch the followed build logs in Redis; retrying', err),
      onNoUnblock: () =>
        this.warner.log.warn(
          "Redis refused CLIENT UNBLOCK to this hub's user: a new log follower may wait up to a second for its first live line; grant +client|unblock to the hub's Redis user (docs/SECURITY.md)",
        ),
    });
    if (!(this.redis as unknown as { fairwayResetIfNoJob?: unknown }).fairwayResetIfNoJob) {
      this.redis.defineCommand('fairwayResetIfNoJob', { numberOfKeys: 4, lua: RESET_IF_NO_JOB });
    }
    const emit = async (key: string) => {
      let job: Job | undefined;
      let state: JobState;
      try {
        job = await this.queue.getJob(key);
        if (!job) return;
        state = stateOf(await job.getState(), progressOf(job));
      } catch (err) {
        if (this.closing) return; // an event that came in while closing: nobody listens any more
        // The waiters of this key poll too (src/service), so a missed event is late, not lost.
        this.warner.warn('could not read a finished job from Redis to report its end', err, { key });
        return;
      }
      if (state === 'succeeded' || state === 'failed' || state === 'canceled') {
        for (const l of this.listeners) l(key, state, job.failedReason || undefined);
      }
    };
    // A job canceled while queued is removed: every hub learns it from the record left behind.
    const emitCanceled = async (key: string) => {
      let rec: CanceledRecord | null;
      try {
        rec = parseCanceled(await this.redis.get(this.canceledKey(key)));
      } catch (err) {
        if (this.closing) return;
        this.warner.warn('could not read a canceled job from Redis to report its end', err, { key });
        return;
      }
      if (rec) for (const l of this.listeners) l(key, 'canceled', rec.error);
    };
    this.events.on('completed', ({ jobId }) => void emit(jobId));
    this.events.on('failed', ({ jobId }) => void emit(jobId));
    this.events.on('removed', ({ jobId }) => void emitCanceled(jobId));
    // Connection errors: ioredis reconnects by itself (redisConnection's retryStrategy).
    this.queue.on('error', (err) => this.warner.warn('BullMQ queue connection error (reconnecting)', err));
    this.events.on('error', (err) => this.warner.warn('BullMQ queue events connection error (reconnecting)', err));
  }

  async ready(): Promise<void> {
    await this.queue.waitUntilReady();
    await this.events.waitUntilReady();
  }

  async enqueue(key: string, payload: P): Promise<Enqueued> {
    if (this.closing) throw new Error('the queue is shutting down; retry on another server or after restart');
    const existing = await this.queue.getJob(key);
    if (existing) {
      const st = await existing.getState();
      if (st !== 'completed' && st !== 'failed' && st !== 'unknown') return { job: await this.snapshot(existing), created: false };
      // A finished job under this key (a failure being retried): clear it and start afresh.
      await existing.remove().catch((err: unknown) => this.warner.warn('could not remove the finished job before queueing its key again', err, { key }));
    }
    // What a job before left under this key (its log, a canceled-while-queued record) goes; never a new job's.
    await this.resetIfNoJob(key);
    // The job name carries a token of this call: BullMQ's add() of an existing id is a no-op
    // that still answers with a Job, so the stored name says who created it (one job per key, across hubs).
    const name = `build:${randomUUID()}`;
    const added = await this.queue.add(name, payload, {
      jobId: key,
      attempts: this.c.attempts ?? 3,
      backoff: { type: 'exponential', delay: this.c.backoffMs ?? 5000 },
      removeOnComplete: { age: FINISHED_TTL_S },
      removeOnFail: { age: FINISHED_TTL_S },
    });
    const stored = await this.queue.getJob(key);
    return { job: await this.snapshot(stored ?? added), created: !stored || stored.name === name };
  }

  private async resetIfNoJob(key: string): Promise<void> {
    const r = this.redis as unknown as { fairwayResetIfNoJob(...a: string[]): Promise<number> };
    await r.fairwayResetIfNoJob(this.queue.toKey(key), this.log.streamKey(key), `${this.prefix}:logseq:${key}`, this.canceledKey(key));
  }

  private canceledKey(key: string): string {
    return `${this.prefix}:canceled:${key}`;
  }

  async get(key: string): Promise<(JobSnapshot & { payload: P }) | null> {
    const job = await this.queue.getJob(key);
    if (job) return { ...(await this.snapshot(job)), payload: job.data as P };
    const rec = parseCanceled(await this.redis.get(this.canceledKey(key)));
    return rec ? { ...(await this.canceledSnapshot(key, rec)), payload: rec.payload as P } : null;
  }

  private async canceledSnapshot(key: string, rec: CanceledRecord): Promise<JobSnapshot> {
    return { key, state: 'canceled', phase: 'canceled', createdAt: rec.createdAt, finishedAt: rec.finishedAt, error: rec.error, lines: await this.log.count(key) };
  }

  private async position(job: Job): Promise<number | undefined> {
    const waiting = await this.queue.getJobs(['prioritized', 'waiting'], 0, 1000, true);
    const i = waiting.findIndex((j) => j.id === job.id);
    return i === -1 ? undefined : i + 1;
  }

  /** `known`: the job's place in the queue when the caller has read the queue already (else it is looked up). */
  private async snapshot(job: Job, known?: { position: number | undefined }): Promise<JobSnapshot> {
    const progress = progressOf(job);
    const state = stateOf(await job.getState(), progress);
    const phase: JobPhase = state === 'succeeded' ? 'done' : state === 'failed' || state === 'canceled' ? state : state === 'queued' ? 'queued' : (progress.phase ?? 'resolving');
    const position = state === 'queued' ? (known ? known.position : await this.position(job)) : undefined;
    return {
      key: job.id!,
      state,
      phase,
      ...(position ? { position } : {}),
      createdAt: new Date(job.timestamp).toISOString(),
      ...(job.processedOn ? { startedAt: new Date(job.processedOn).toISOString() } : {}),
      ...(job.finishedOn ? { finishedAt: new Date(job.finishedOn).toISOString() } : {}),
      ...(job.failedReason ? { error: job.failedReason } : {}),
      ...(progress.agent ? { agent: progress.agent } : {}),
      lines: await this.log.count(job.id!),
    };
  }

  follow(key: string, opts: { fromSeq?: number; signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    const ch = new Channel<JobEvent>();
    void this.pump(key, ch, opts).catch((err: unknown) => {
      this.warner.warn('following a job log in Redis failed; the follower is closed', err, { key });
      ch.close();
    });
    return ch;
  }

  private async pump(key: string, ch: Channel<JobEvent>, opts: { fromSeq?: number; signal?: AbortSignal }): Promise<void> {
    const from = opts.fromSeq ?? 0;
    let lastId = '-';
    let sub: LogSubscription | null = null;
    const close = () => {
      sub?.close();
      sub = null;
      ch.close();
    };
    opts.signal?.addEventListener('abort', close, { once: true });
    try {
      const job = await this.queue.getJob(key);
      const canceled = job ? null : parseCanceled(await this.redis.get(this.canceledKey(key)));
      if (job) {
        const snap = await this.snapshot(job);
        ch.push({ type: 'phase', phase: snap.phase, ...(snap.position ? { position: snap.position } : {}) });
      } else if (canceled) {
        ch.push({ type: 'phase', phase: 'canceled' });
      } else if (!(await this.log.exists(key))) {
        return; // no such job: nothing to follow (as the local queue)
      }
      if (opts.signal?.aborted) {
        // Already aborted: the caller wants what exists now, without following.
        for (const e of await this.log.range(key)) if (e.t === 'line' && e.line.seq >= from) ch.push({ type: 'line', line: e.line });
        return;
      }
      let lastPosition: number | undefined;
      for (;;) {
        if (opts.signal?.aborted) return;
        let entries: LogEntry[];
        if (lastId === '-') entries = await this.log.range(key);
        else {
          // The hub's one log watcher (LogRelay) wakes this follower; what it has not seen is read here, from its own last id.
          sub ??= this.relay.subscribe(this.log.streamKey(key), lastId);
          entries = await this.readAfter(key, lastId);
          if (entries.length === 0 && !opts.signal?.aborted) {
            await sub.wait(3000);
            entries = await this.readAfter(key, lastId);
          }
        }
        if (entries.length === 0 && lastId === '-') lastId = '0-0';
        for (const e of entries) {
          lastId = e.id;
          if (e.t === 'line' && e.line.seq >= from) ch.push({ type: 'line', line: e.line });
          else if (e.t === 'phase') ch.push({ type: 'phase', phase: e.phase });
          else if (e.t === 'end') {
            ch.push({ type: 'end', state: e.state, ...(e.error ? { error: e.error } : {}) });
            return;
          }
        }
        if (opts.signal?.aborted) return;
        if (entries.length === 0) {
          // Quiet: is the job still there? (It may have been lost with Redis, or finished without a stream.)
          const j = await this.queue.getJob(key).catch((err: unknown) => {
            this.warner.warn('could not look up a followed job in Redis', err, { key });
            return undefined;
          });
          if (!j) {
            ch.push({ type: 'end', state: 'failed', error: 'the job is no longer in the queue (was Redis restarted?); request the build again' });
            return;
          }
          const st = stateOf(await j.getState(), progressOf(j));
          if (st === 'succeeded' || st === 'failed' || st === 'canceled') {
            // Give the agent's final stream entry a moment to land, then end.
            const tail = await this.log.range(key, lastId === '0-0' ? '-' : lastId);
            for (const e of tail) if (e.t === 'line' && e.line.seq >= from) ch.push({ type: 'line', line: e.line });
            ch.push({ type: 'end', state: st, ...(j.failedReason ? { error: j.failedReason } : {}) });
            return;
          }
          if (st === 'queued') {
            const pos = await this.position(j);
            if (pos !== lastPosition) {
              lastPosition = pos;
              ch.push({ type: 'phase', phase: 'queued', ...(pos ? { position: pos } : {}) });
            }
          }
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', close);
      close();
    }
  }

  /** Log entries after `lastId`, on the shared command connection; [] (after a pause) while Redis is away. */
  private async readAfter(key: string, lastId: string): Promise<LogEntry[]> {
    return this.log.range(key, lastId === '0-0' ? '-' : lastId).catch(async (err: unknown) => {
      // Redis away (restarting): wait and read again; the stream ids make the resume exact.
      this.warner.warn('could not read a job log from Redis; retrying', err, { key });
      await new Promise((r) => setTimeout(r, 1000));
      return [];
    });
  }

  async cancel(key: string): Promise<boolean> {
    const job = await this.queue.getJob(key);
    if (!job) return false;
    const st = await job.getState();
    if (st === 'waiting' || st === 'delayed' || st === 'prioritized') {
      const error = 'canceled while queued';
      const rec: CanceledRecord = { createdAt: new Date(job.timestamp).toISOString(), finishedAt: new Date().toISOString(), error, payload: job.data };
      // The record first: the hubs read it when they hear of the removal (onFinished).
      await this.redis.set(this.canceledKey(key), JSON.stringify(rec), 'EX', FINISHED_TTL_S);
      try {
        await job.remove();
      } catch (err) {
        // Taken by an agent in the meantime (BullMQ refuses to remove a locked job): cancel it running.
        this.warner.log.debug({ key, err }, 'a queued job started while being canceled; canceling it running');
        await this.redis.del(this.canceledKey(key));
        return this.cancelRunning(key);
      }
      await this.log.append(key, 'system', `fairway: ${error}`);
      await this.log.end(key, 'canceled', error);
      return true;
    }
    if (st === 'active') return this.cancelRunning(key);
    return false;
  }

  private async cancelRunning(key: string): Promise<boolean> {
    await this.redis.set(`${this.prefix}:cancel:${key}`, '1', 'EX', FINISHED_TTL_S);
    return true;
  }

  async active(limit: number): Promise<Array<JobSnapshot & { payload: P }>> {
    if (limit <= 0) return [];
    // Running first, then the queue in the order it is taken (prioritized, then waiting, oldest
    // first: a job's index there is its place, as position() counts it), then delayed ones. The
    // lists are read once here, not once per job.
    const running = await this.queue.getJobs(['active'], 0, limit - 1, true);
    const waiting = await this.queue.getJobs(['prioritized', 'waiting'], 0, limit - 1, true);
    const delayed = await this.queue.getJobs(['delayed'], 0, limit - 1, true);
    const jobs: Array<[Job, { position: number | undefined }]> = [
      ...running.map((j): [Job, { position: undefined }] => [j, { position: undefined }]),
      ...waiting.map((j, i): [Job, { position: number }] => [j, { position: i + 1 }]),
      ...delayed.map((j): [Job, { position: undefined }] => [j, { position: undefined }]),
    ];
    const out: Array<JobSnapshot & { payload: P }> = [];
    for (const [job, known] of jobs.slice(0, limit)) {
      const snap = await this.snapshot(job, known);
      if (snap.state === 'queued' || snap.state === 'running') out.push({ ...snap, payload: job.data as P });
    }
    return out;
  }

  async depth(): Promise<QueueDepth> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active');
    return { queued: (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0), running: c.active ?? 0 };
  }

  onFinished(listener: (key: string, state: FinalState, error?: string) => void): void {
    this.listeners.push(listener);
  }

  async agents(): Promise<AgentInfo[]> {
    return listAgents(this.redis, this.prefix);
  }

  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /** Stops queueing and closes the connections (the hub side: builds go on on the agents). */
  async close(): Promise<void> {
    this.closing = true;
    this.relay.close();
    await this.events.close();
    await this.queue.close();
    // BullMQ does not close connections it was given.
    this.eventsRedis.disconnect();
    this.redis.disconnect();
  }
}
