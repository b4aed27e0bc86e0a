/**
 * The distributed queue on BullMQ/Redis. Hubs enqueue (job id = cache key, so one build per key
 * across every hub), follow logs from Redis Streams and learn about finished jobs from
 * QueueEvents. Agents run a BullMQ Worker: retries with backoff, stalled-job recovery when an
 * agent dies, graceful shutdown, a heartbeat in Redis.
 */
import { hostname } from 'node:os';
import { Job, Queue, QueueEvents, UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { JobRefused } from './types.js';
import type { BuildPhase } from '../build/index.js';
import { Channel } from '../util/channel.js';
import { RedisLog } from './redislog.js';
import type { AgentInfo, BuildQueue, FinalState, JobEvent, JobPhase, JobSnapshot, JobState, Processor, QueueDepth } from './types.js';

export interface BullConfig {
  redisUrl: string;
  /** Key prefix for BullMQ and Fairway's own keys. Default "fairway". */
  prefix?: string;
  queueName?: string;
  attempts?: number;
  backoffMs?: number;
}


interface Progress {
  phase?: JobPhase;
  agent?: string;
}

export function redisConnection(url: string, name: string, overrides: RedisOptions = {}): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`invalid Redis URL "${url}" (expected redis://[user:password@]host:port[/db])`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error(`invalid Redis URL "${url}": scheme must be redis:// or rediss://`);
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * times, 2000),
    reconnectOnError: () => true,
    ...overrides,
  });
}

const names = (c: BullConfig) => ({ prefix: c.prefix ?? 'fairway', queue: c.queueName ?? 'builds' });

function stateOf(bullState: string, failedReason?: string): JobState {
  switch (bullState) {
    case 'active':
      return 'running';
    case 'completed':
      return 'succeeded';
    case 'failed':
      return failedReason?.startsWith('canceled') ? 'canceled' : 'failed';
    default:
      return 'queued';
  }
}

export class BullMqQueue<P> implements BuildQueue<P> {
  private readonly queue: Queue;
  private readonly events: QueueEvents;
  private readonly redis: Redis;
  private readonly log: RedisLog;
  private readonly prefix: string;
  private readonly listeners: Array<(key: string, state: FinalState, error?: string) => void> = [];

  constructor(private readonly c: BullConfig) {
    const n = names(c);
    this.prefix = n.prefix;
    this.redis = redisConnection(c.redisUrl, 'fairway-hub');
    this.queue = new Queue(n.queue, { connection: this.redis as unknown as ConnectionOptions, prefix: n.prefix });
    this.events = new QueueEvents(n.queue, { connection: redisConnection(c.redisUrl, 'fairway-hub-events') as unknown as ConnectionOptions, prefix: n.prefix });
    this.log = new RedisLog(this.redis, { prefix: n.prefix });
    const emit = async (key: string) => {
      const job = await this.queue.getJob(key).catch(() => undefined);
      if (!job) return;
      const state = stateOf(await job.getState(), job.failedReason);
      if (state === 'succeeded' || state === 'failed' || state === 'canceled') {
        for (const l of this.listeners) l(key, state, job.failedReason || undefined);
      }
    };
    this.events.on('completed', ({ jobId }) => void emit(jobId));
    this.events.on('failed', ({ jobId }) => void emit(jobId));
    this.queue.on('error', () => undefined);
    this.events.on('error', () => undefined);
  }

  async ready(): Promise<void> {
    await this.queue.waitUntilReady();
    await this.events.waitUntilReady();
  }

  async enqueue(key: string, payload: P): Promise<{ job: JobSnapshot; created: boolean }> {
    const existing = await this.queue.getJob(key);
    if (existing) {
      const st = await existing.getState();
      if (st !== 'completed' && st !== 'failed' && st !== 'unknown') return { job: await this.snapshot(existing), created: false };
      // A finished job under this key (a failure being retried): clear it and start afresh.
      await existing.remove().catch(() => undefined);
      await this.log.reset(key);
    }
    const added = await this.queue.add('build', payload, {
      jobId: key,
      attempts: this.c.attempts ?? 3,
      backoff: { type: 'exponential', delay: this.c.backoffMs ?? 5000 },
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 3600 },
    });
    const created = (added.data as { requestedAt?: string }).requestedAt === (payload as { requestedAt?: string }).requestedAt;
    return { job: await this.snapshot(added), created };
  }

  async get(key: string): Promise<(JobSnapshot & { payload: P }) | null> {
    const job = await this.queue.getJob(key);
    if (!job) return null;
    return { ...(await this.snapshot(job)), payload: job.data as P };
  }

  private async position(job: Job): Promise<number | undefined> {
    const waiting = await this.queue.getJobs(['prioritized', 'waiting'], 0, 1000, true);
    const i = waiting.findIndex((j) => j.id === job.id);
    return i === -1 ? undefined : i + 1;
  }

  private async snapshot(job: Job): Promise<JobSnapshot> {
    const state = stateOf(await job.getState(), job.failedReason);
    const progress = (typeof job.progress === 'object' ? job.progress : {}) as Progress;
    const phase: JobPhase =
      state === 'succeeded' ? 'done' : state === 'failed' || state === 'canceled' ? state : state === 'queued' ? 'queued' : (progress.phase ?? 'resolving');
    const position = state === 'queued' ? await this.position(job) : undefined;
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
      lines: 0,
    };
  }

  follow(key: string, opts: { fromSeq?: number; signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    const ch = new Channel<JobEvent>();
    void this.pump(key, ch, opts).catch(() => ch.close());
    return ch;
  }

  private async pump(key: string, ch: Channel<JobEvent>, opts: { fromSeq?: number; signal?: AbortSignal }): Promise<void> {
    const from = opts.fromSeq ?? 0;
    let lastId = '-';
    let conn: Redis | null = null;
    const close = () => {
      conn?.disconnect();
      conn = null;
      ch.close();
    };
    opts.signal?.addEventListener('abort', close, { once: true });
    try {
      const job = await this.queue.getJob(key);
      if (job) {
        const snap = await this.snapshot(job);
        ch.push({ type: 'phase', phase: snap.phase, ...(snap.position ? { position: snap.position } : {}) });
      }
      if (opts.signal?.aborted) {
        // Already aborted: the caller wants what exists now, without following.
        for (const e of await this.log.range(key)) if (e.t === 'line' && e.line.seq >= from) ch.push({ type: 'line', line: e.line });
        return;
      }
      let lastPosition: number | undefined;
      for (;;) {
        if (opts.signal?.aborted) return;
        let entries;
        if (lastId === '-') entries = await this.log.range(key);
        else {
          conn ??= this.redis.duplicate({ connectionName: 'fairway-hub-follow' });
          entries = await RedisLog.read(conn, this.log.streamKey(key), lastId, 3000).catch(async () => {
            await new Promise((r) => setTimeout(r, 1000));
            return [];
          });
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
          const j = await this.queue.getJob(key).catch(() => undefined);
          if (!j) {
            ch.push({ type: 'end', state: 'failed', error: 'the job is no longer in the queue (was Redis restarted?); request the build again' });
            return;
          }
          const st = stateOf(await j.getState(), j.failedReason);
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

  async cancel(key: string): Promise<boolean> {
    const job = await this.queue.getJob(key);
    if (!job) return false;
    const st = await job.getState();
    if (st === 'active') {
      await this.redis.set(`${this.prefix}:cancel:${key}`, '1', 'EX', 3600);
      return true;
    }
    if (st === 'waiting' || st === 'delayed' || st === 'prioritized') {
      await job.remove();
      await this.log.append(key, 'system', 'fairway: canceled while queued');
      await this.log.end(key, 'canceled', 'canceled while queued');
      for (const l of this.listeners) l(key, 'canceled', 'canceled while queued');
      return true;
    }
    return false;
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

  async close(): Promise<void> {
    await this.events.close();
    await this.queue.close();
    this.redis.disconnect();
  }
}

export async function listAgents(redis: Redis, prefix: string): Promise<AgentInfo[]> {
  const out: AgentInfo[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:agent:*`, 'COUNT', 200);
    cursor = next;
    for (const k of keys) {
      const v = await redis.get(k);
      if (v) out.push(JSON.parse(v) as AgentInfo);
    }
  } while (cursor !== '0');
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

export interface AgentOptions extends BullConfig {
  id?: string;
  concurrency: number;
  identity: { go: string; xcaddy: string };
  /** BullMQ lock: a dead agent's job is taken back after about this long. Default 30 s. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  heartbeatMs?: number;
}

/** The agent side: runs jobs with the shared processor, streams logs to Redis, heartbeats. */
export class BullMqWorker<P extends { spec: { toolchain: { go: string; xcaddy: string } } }> {
  readonly id: string;
  private readonly worker: Worker;
  private readonly redis: Redis;
  private readonly log: RedisLog;
  private readonly prefix: string;
  private readonly startedAt = new Date().toISOString();
  private readonly current = new Set<string>();
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly processor: Processor<P>,
    private readonly o: AgentOptions,
  ) {
    const n = names(o);
    this.prefix = n.prefix;
    this.id = o.id ?? `${hostname()}-${process.pid}`;
    this.redis = redisConnection(o.redisUrl, `fairway-agent-${this.id}`);
    this.log = new RedisLog(this.redis, { prefix: n.prefix });
    this.worker = new Worker(n.queue, (job) => this.run(job), {
      connection: redisConnection(o.redisUrl, `fairway-agent-worker-${this.id}`) as unknown as ConnectionOptions,
      prefix: n.prefix,
      concurrency: o.concurrency,
      lockDuration: o.lockDurationMs ?? 30_000,
      stalledInterval: o.stalledIntervalMs ?? 15_000,
      maxStalledCount: 3,
      autorun: false,
    });
    this.worker.on('error', () => undefined);
  }

  async start(): Promise<void> {
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat().catch(() => undefined), this.o.heartbeatMs ?? 5000);
    void this.worker.run();
    await this.worker.waitUntilReady();
  }

  private async beat(): Promise<void> {
    const info: AgentInfo = {
      id: this.id,
      host: hostname(),
      go: this.o.identity.go,
      xcaddy: this.o.identity.xcaddy,
      concurrency: this.o.concurrency,
      jobs: [...this.current],
      startedAt: this.startedAt,
      lastSeen: new Date().toISOString(),
    };
    const ttl = Math.ceil(((this.o.heartbeatMs ?? 5000) * 4) / 1000);
    await this.redis.set(`${this.prefix}:agent:${this.id}`, JSON.stringify(info), 'EX', ttl);
  }

  private async run(job: Job): Promise<void> {
    const key = job.id!;
    const payload = job.data as P;
    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    const tc = (payload as { spec?: { toolchain?: { go?: unknown; xcaddy?: unknown } } } | null)?.spec?.toolchain;
    if (!tc || tc.go !== this.o.identity.go || tc.xcaddy !== this.o.identity.xcaddy) {
      const msg = tc
        ? `agent ${this.id} has ${this.o.identity.go} and xcaddy ${this.o.identity.xcaddy}, but this build was keyed for ${String(tc.go)} and xcaddy ${String(tc.xcaddy)}; run the same versions on hubs and agents`
        : `agent ${this.id} refused job ${key}: its payload has no spec.toolchain (not queued by a Fairway hub?)`;
      await this.log.append(key, 'system', `fairway: ${msg}`);
      throw new UnrecoverableError(msg);
    }
    this.current.add(key);
    void this.beat().catch(() => undefined);
    const ac = new AbortController();
    const cancelKey = `${this.prefix}:cancel:${key}`;
    const poll = setInterval(() => {
      void this.redis.get(cancelKey).then((v) => v && ac.abort(), () => undefined);
    }, 1000);
    // Log appends are fire-and-forget for the runner; keep them ordered and await them at the end.
    let chain: Promise<unknown> = Promise.resolve();
    const append = (stream: 'stdout' | 'stderr' | 'system', text: string) => {
      chain = chain.then(() => this.log.append(key, stream, text)).catch(() => undefined);
    };
    const setPhase = (phase: BuildPhase | JobPhase) => {
      chain = chain
        .then(() => Promise.all([this.log.phase(key, phase), job.updateProgress({ phase, agent: this.id } satisfies Progress)]))
        .catch(() => undefined);
    };
    append('system', `fairway: attempt ${attempt} of ${attempts} on agent ${this.id}`);
    setPhase('resolving');
    const finalAttempt = attempt >= attempts;
    try {
      await this.processor({
        key,
        payload,
        agent: this.id,
        signal: ac.signal,
        finalAttempt,
        log: append,
        phase: setPhase,
        lines: async () => {
          await chain;
          return this.log.lines(key);
        },
      });
      await chain;
      await this.log.end(key, 'succeeded');
    } catch (err) {
      const message = (err as Error).message;
      await chain;
      if (ac.signal.aborted) {
        await this.log.end(key, 'canceled', 'canceled');
        throw new UnrecoverableError(`canceled: ${message}`);
      }
      if (err instanceof JobRefused) {
        await this.log.end(key, 'failed', message);
        throw new UnrecoverableError(message);
      }
      if (finalAttempt) await this.log.end(key, 'failed', message);
      else await this.log.append(key, 'system', `fairway: attempt ${attempt} failed (${message}); it will be retried`);
      throw err;
    } finally {
      clearInterval(poll);
      await this.redis.del(cancelKey).catch(() => undefined);
      this.current.delete(key);
      void this.beat().catch(() => undefined);
    }
  }

  /** Graceful: stop taking jobs and let running ones finish; with `force`, hand them back. */
  async close(force = false): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.worker.close(force);
    await this.redis.del(`${this.prefix}:agent:${this.id}`).catch(() => undefined);
    this.redis.disconnect();
  }
}
