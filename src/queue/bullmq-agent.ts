/**
 * The agent side of the BullMQ/Redis queue: a BullMQ Worker with retries and backoff, stalled-job
 * recovery when an agent dies, graceful shutdown, a heartbeat in Redis.
 */
import { hostname } from 'node:os';
import { DelayedError, UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { RedisLog } from './redislog.js';
import { JobRefused, type AgentCacheInfo, type AgentInfo, type BuildWorker, type LogStream, type Processor, type RunPhase } from './types.js';
import { errorMessage } from '../util/errors.js';
import { type BullConfig, listAgents, names, type Progress, redisConnection, silent, Warner } from './bullmq-shared.js';

/** A job as it comes out of Redis: its key, its data as stored (unchecked), and the agent about to run it. */
export interface RemoteJob {
  key: string;
  data: unknown;
  agent: string;
}

export interface AgentOptions<P> extends BullConfig {
  id?: string;
  concurrency: number;
  identity: { go: string; xcaddy: string };
  /**
   * Decides whether this agent takes a job from Redis (anyone with write access to Redis can
   * queue one): returns the payload to run, or throws (a JobRefused) to refuse it. A refused job
   * fails at once, without further attempts, with the thrown message; the processor never sees it.
   */
  check: (job: RemoteJob) => P | Promise<P>;
  /**
   * The agent a job would rather not run on (a verification rebuild avoids the agent that built
   * the original). That agent puts the job back, delayed a moment, while another live agent may
   * take it, for at most `avoidForMs` (default 120 s) after the job was queued; then anyone runs it.
   */
  avoid?: (payload: P) => string | undefined;
  avoidForMs?: number;
  /** BullMQ lock: a dead agent's job is taken back after about this long. Default 30 s. */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  heartbeatMs?: number;
  /** Shared build cache: figures carried by each heartbeat (GET /api/agents). */
  cacheInfo?: () => AgentCacheInfo | undefined;
}

/** The agent side: runs jobs with the shared processor, streams logs to Redis, heartbeats. */
export class BullMqWorker<P> implements BuildWorker {
  readonly id: string;
  private readonly worker: Worker;
  private readonly redis: Redis;
  private readonly workerRedis: Redis;
  private readonly log: RedisLog;
  private readonly prefix: string;
  private readonly warner: Warner;
  private readonly startedAt = new Date().toISOString();
  private readonly current = new Set<string>();
  private heartbeat?: NodeJS.Timeout;

  constructor(
    private readonly processor: Processor<P>,
    private readonly o: AgentOptions<P>,
  ) {
    const n = names(o);
    this.prefix = n.prefix;
    this.id = o.id ?? `${hostname()}-${process.pid}`;
    this.warner = new Warner((o.logger ?? silent()).child({ agent: this.id }));
    this.redis = redisConnection(o.redisUrl, `fairway-agent-${this.id}`);
    this.workerRedis = redisConnection(o.redisUrl, `fairway-agent-worker-${this.id}`);
    this.redis.on('error', (err: Error) => this.warner.warn('Redis connection error (reconnecting)', err));
    this.workerRedis.on('error', (err: Error) => this.warner.warn('Redis connection error (reconnecting)', err));
    this.log = new RedisLog(this.redis, { prefix: n.prefix });
    this.worker = new Worker(n.queue, (job, token) => this.run(job, token), {
      connection: this.workerRedis as unknown as ConnectionOptions,
      prefix: n.prefix,
      concurrency: o.concurrency,
      lockDuration: o.lockDurationMs ?? 30_000,
      stalledInterval: o.stalledIntervalMs ?? 15_000,
      maxStalledCount: 3,
      autorun: false,
    });
    // Connection errors: ioredis reconnects by itself (redisConnection's retryStrategy).
    this.worker.on('error', (err) => this.warner.warn('BullMQ worker error', err));
  }

  async start(): Promise<void> {
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat().catch((err: unknown) => this.warner.warn('could not write the agent heartbeat to Redis', err)), this.o.heartbeatMs ?? 5000);
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
    const cache = this.o.cacheInfo?.(); // shared build cache
    if (cache) info.cache = cache;
    const ttl = Math.ceil(((this.o.heartbeatMs ?? 5000) * 4) / 1000);
    await this.redis.set(`${this.prefix}:agent:${this.id}`, JSON.stringify(info), 'EX', ttl);
  }

  private beatSoon(): void {
    void this.beat().catch((err: unknown) => this.warner.warn('could not write the agent heartbeat to Redis', err));
  }

  /** Whether another agent than this one heartbeats now. */
  private async othersAlive(): Promise<boolean> {
    return (await listAgents(this.redis, this.prefix)).some((a) => a.id !== this.id);
  }

  private async run(job: Job, token?: string): Promise<void> {
    const key = job.id!;
    const attempt = job.attemptsMade + 1;
    const attempts = job.opts.attempts ?? 1;
    let payload: P;
    try {
      payload = await this.o.check({ key, data: job.data as unknown, agent: this.id });
    } catch (err) {
      // Refused: nothing runs; the job fails now, for good, with the check's message.
      const msg = errorMessage(err);
      this.warner.log.warn({ key, err: msg }, 'refused a job taken from Redis');
      try {
        await this.log.append(key, 'system', `fairway: ${msg}`);
        await this.log.end(key, 'failed', msg);
      } catch (logErr) {
        this.warner.warn("could not write a refused job's log to Redis", logErr, { key });
      }
      throw new UnrecoverableError(msg);
    }
    if (token && this.o.avoid?.(payload) === this.id && Date.now() - job.timestamp < (this.o.avoidForMs ?? 120_000) && (await this.othersAlive())) {
      this.warner.log.info({ key }, 'leaving this job to another agent (it asks not to run here)');
      await job.moveToDelayed(Date.now() + 2000, token);
      throw new DelayedError();
    }
    this.current.add(key);
    this.beatSoon();
    const ac = new AbortController();
    const cancelKey = `${this.prefix}:cancel:${key}`;
    const poll = setInterval(() => {
      void this.redis.get(cancelKey).then(
        (v) => v && ac.abort(),
        (err: unknown) => this.warner.warn('could not look for a cancel request in Redis', err, { key }),
      );
    }, 1000);
    // Log appends are fire-and-forget for the runner; keep them ordered and await them at the end.
    let chain: Promise<unknown> = Promise.resolve();
    const append = (stream: LogStream, text: string) => {
      chain = chain.then(() => this.log.append(key, stream, text)).catch((err: unknown) => this.warner.warn('could not append a log line to Redis (the line is lost)', err, { key }));
    };
    const setPhase = (phase: RunPhase) => {
      chain = chain
        .then(() => Promise.all([this.log.phase(key, phase), job.updateProgress({ phase, agent: this.id } satisfies Progress)]))
        .catch((err: unknown) => this.warner.warn('could not record a job phase in Redis', err, { key, phase }));
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
      const message = errorMessage(err);
      await chain;
      if (ac.signal.aborted) {
        // Canceled: recorded on the job itself (BullMQ has no such state), then failed for good.
        try {
          await job.updateProgress({ phase: 'canceled', agent: this.id, outcome: 'canceled' } satisfies Progress);
          await this.log.end(key, 'canceled', message);
        } catch (recErr) {
          this.warner.warn('could not record a canceled job in Redis (it may show as failed)', recErr, { key });
        }
        throw new UnrecoverableError(message);
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
      await this.redis.del(cancelKey).catch((err: unknown) => this.warner.warn('could not clear a cancel request in Redis', err, { key }));
      this.current.delete(key);
      this.beatSoon();
    }
  }

  /** Graceful: stop taking jobs and let running ones finish; with `force`, hand them back. */
  async close(force = false): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.worker.close(force);
    // Its heartbeat expires by itself within a few seconds anyway.
    await this.redis.del(`${this.prefix}:agent:${this.id}`).catch((err: unknown) => this.warner.warn('could not remove the agent heartbeat from Redis', err));
    // BullMQ does not close connections it was given.
    this.workerRedis.disconnect();
    this.redis.disconnect();
  }
}
