/**
 * The embedded queue: N in-process workers, one job per key, FIFO, live log fan-out with full
 * replay. Finished jobs linger briefly so late followers still get the whole log from memory;
 * after that the store holds it.
 */
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import pino, { type Logger } from 'pino';
import { Channel } from '../util/channel.js';
import { stripControl } from '../util/text.js';
import type { JournalEntry, JournalState, QueueJournal } from './journal.js';
import type { AgentInfo, BuildQueue, Enqueued, FinalState, JobEvent, JobPhase, JobSnapshot, JobState, LogLine, LogStream, Processor, QueueDepth } from './types.js';
import { errorMessage } from '../util/errors.js';

export interface LocalQueueOptions<P = unknown> {
  workers: number;
  /** How long a finished job stays in memory. Default 60 s. */
  lingerMs?: number;
  /** Lines kept per job; later lines are dropped with a notice. Default 50,000. */
  maxLines?: number;
  name?: string;
  /** Toolchain versions shown in the agent list. */
  identity?: { go: string; xcaddy: string };
  /**
   * Durable record of queued and running jobs (src/queue/journal.ts): written before enqueue()
   * answers, removed when a job ends. Jobs stopped by close() stay in it; restore() re-queues them.
   */
  journal?: QueueJournal<P>;
  /** Where errors the queue survives go (a journal write that failed). Default: nowhere. */
  logger?: Logger;
}

/** What restore() did with the journal found at start. */
export interface RestoreReport {
  /** Re-queued, oldest first, with the state they had when the process stopped. */
  requeued: Array<{ key: string; was: JournalState }>;
  /** Entries whose job had already ended (its result is in the store): removed. */
  dropped: string[];
  /** Entries that could not be read: skipped (moved aside). */
  corrupt: Array<{ file: string; error: string }>;
}

/** The first log line of a job re-queued from the journal. */
export const requeuedLine = (was: JournalState) => `fairway: re-queued after the server restarted (it was ${was} when the process stopped)`;

interface Job<P> {
  key: string;
  payload: P;
  state: JobState;
  phase: JobPhase;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
  agent?: string;
  lines: LogLine[];
  truncated: boolean;
  events: EventEmitter;
  abort: AbortController;
}

export class LocalQueue<P> implements BuildQueue<P> {
  private readonly jobs = new Map<string, Job<P>>();
  private readonly pending: Job<P>[] = [];
  private running = 0;
  private closing = false;
  private readonly finished = new EventEmitter();
  private readonly maxLines: number;
  private readonly lingerMs: number;
  private readonly idle = new Set<() => void>();
  private readonly startedAt = new Date().toISOString();
  private readonly logger: Logger;

  constructor(
    private readonly processor: Processor<P>,
    private readonly opts: LocalQueueOptions<P>,
  ) {
    if (!Number.isInteger(opts.workers) || opts.workers < 1) throw new Error('workers must be a positive integer');
    this.maxLines = opts.maxLines ?? 50_000;
    this.lingerMs = opts.lingerMs ?? 60_000;
    this.logger = opts.logger ?? pino({ level: 'silent' });
  }

  private journalFailed(what: string, key: string | undefined, err: unknown): void {
    this.logger.warn({ err, ...(key ? { key } : {}), journal: this.opts.journal?.dir }, what);
  }

  async enqueue(key: string, payload: P): Promise<Enqueued> {
    const existing = this.jobs.get(key);
    if (existing && (existing.state === 'queued' || existing.state === 'running')) {
      return { job: this.snapshot(existing), created: false };
    }
    if (this.closing) throw new Error('the queue is shutting down; retry on another server or after restart');
    const job = this.newJob(key, payload, new Date().toISOString());
    this.jobs.set(key, job);
    const journal = this.opts.journal;
    if (journal) {
      // On disk before the caller is told it is queued; joiners see it (queued) meanwhile.
      try {
        await journal.add(key, payload, job.createdAt);
      } catch (err) {
        const message = `could not record the build in the queue journal (${journal.dir}): ${errorMessage(err)}`;
        if (job.state === 'queued') this.finish(job, 'failed', message);
        throw new Error(message);
      }
      if (job.state !== 'queued') return { job: this.snapshot(job), created: true }; // canceled meanwhile
      if (this.closing) {
        this.log(job, 'system', 'fairway: the server is shutting down: the build is re-queued when it starts again');
        this.finish(job, 'canceled', 'the server shut down before the build started; it is re-queued when the server starts again');
        return { job: this.snapshot(job), created: true };
      }
    }
    this.pending.push(job);
    queueMicrotask(() => this.pump());
    return { job: this.snapshot(job), created: true };
  }

  /**
   * Re-queues the jobs recorded in the journal (call once, at start, before taking requests), in
   * their original order, each with a first log line saying so. Entries for which `isDone` says
   * the job already ended (its result is in the store) are removed; a corrupt entry is skipped.
   */
  async restore(opts: { isDone?: (entry: JournalEntry<P>) => Promise<boolean> } = {}): Promise<RestoreReport> {
    const report: RestoreReport = { requeued: [], dropped: [], corrupt: [] };
    const journal = this.opts.journal;
    if (!journal) return report;
    const { entries, corrupt } = await journal.load();
    report.corrupt = corrupt;
    for (const entry of entries) {
      const existing = this.jobs.get(entry.key);
      if (existing && (existing.state === 'queued' || existing.state === 'running')) continue;
      // When the store cannot say, the job runs again: a duplicate build beats a lost one.
      const done = opts.isDone
        ? await opts.isDone(entry).catch((err: unknown) => {
            this.logger.warn({ err, key: entry.key }, 'could not ask whether a journaled build already ended; it runs again');
            return false;
          })
        : false;
      if (done) {
        await journal.remove(entry.key).catch((err: unknown) => this.journalFailed('could not remove a finished build from the queue journal (it is dropped again at the next start)', entry.key, err));
        report.dropped.push(entry.key);
        continue;
      }
      const job = this.newJob(entry.key, entry.payload, entry.createdAt);
      this.push(job, 'system', requeuedLine(entry.state));
      this.jobs.set(entry.key, job);
      this.pending.push(job);
      if (entry.state !== 'queued') await journal.mark(entry.key, 'queued').catch((err: unknown) => this.journalFailed('could not mark a re-queued build in the queue journal', entry.key, err));
      report.requeued.push({ key: entry.key, was: entry.state });
    }
    if (this.pending.length) queueMicrotask(() => this.pump());
    return report;
  }

  async get(key: string): Promise<(JobSnapshot & { payload: P }) | null> {
    const job = this.jobs.get(key);
    return job ? { ...this.snapshot(job), payload: job.payload } : null;
  }

  follow(key: string, opts: { fromSeq?: number; signal?: AbortSignal } = {}): AsyncIterable<JobEvent> {
    const job = this.jobs.get(key);
    const ch = new Channel<JobEvent>();
    if (!job) {
      ch.close();
      return ch;
    }
    let next = opts.fromSeq ?? 0;
    const onLine = (line: LogLine) => {
      if (line.seq >= next) {
        next = line.seq + 1;
        ch.push({ type: 'line', line });
      }
    };
    const onPhase = (phase: JobPhase) => ch.push({ type: 'phase', phase, ...(phase === 'queued' ? { position: this.position(job) } : {}) });
    const onEnd = (state: FinalState, error?: string) => {
      ch.push({ type: 'end', state, ...(error ? { error } : {}) });
      detach();
      ch.close();
    };
    const detach = () => {
      job.events.off('line', onLine);
      job.events.off('phase', onPhase);
      job.events.off('end', onEnd);
      opts.signal?.removeEventListener('abort', detachAndClose);
    };
    const detachAndClose = () => {
      detach();
      ch.close();
    };
    // Replay what exists, then follow; seq numbers make the hand-over exact.
    ch.push({ type: 'phase', phase: job.phase, ...(job.state === 'queued' ? { position: this.position(job) } : {}) });
    for (const line of job.lines.slice(next)) onLine(line);
    if (job.state === 'succeeded' || job.state === 'failed' || job.state === 'canceled') {
      onEnd(job.state, job.error);
      return ch;
    }
    if (opts.signal?.aborted) {
      // Already aborted: the caller wants what exists now, without following.
      ch.close();
      return ch;
    }
    job.events.on('line', onLine);
    job.events.on('phase', onPhase);
    job.events.on('end', onEnd);
    opts.signal?.addEventListener('abort', detachAndClose, { once: true });
    return ch;
  }

  async cancel(key: string): Promise<boolean> {
    const job = this.jobs.get(key);
    if (!job) return false;
    if (job.state === 'queued') {
      const i = this.pending.indexOf(job);
      if (i >= 0) this.pending.splice(i, 1);
      this.log(job, 'system', 'fairway: canceled while queued');
      this.finish(job, 'canceled', 'canceled while queued');
      this.broadcastPositions();
      return true;
    }
    if (job.state === 'running') {
      job.abort.abort();
      return true;
    }
    return false;
  }

  async active(limit: number): Promise<Array<JobSnapshot & { payload: P }>> {
    const jobs = [...this.jobs.values()].filter((j) => j.state === 'running' || j.state === 'queued');
    const rank = (j: (typeof jobs)[number]) => (j.state === 'running' ? 0 : (this.position(j) ?? Number.MAX_SAFE_INTEGER));
    return jobs
      .sort((a, b) => rank(a) - rank(b))
      .slice(0, Math.max(0, limit))
      .map((j) => ({ ...this.snapshot(j), payload: j.payload }));
  }

  async depth(): Promise<QueueDepth> {
    return { queued: this.pending.length, running: this.running };
  }

  async agents(): Promise<AgentInfo[]> {
    const now = new Date().toISOString();
    return [
      {
        id: `${this.opts.name ?? hostname()}/local`,
        host: hostname(),
        go: this.opts.identity?.go ?? '',
        xcaddy: this.opts.identity?.xcaddy ?? '',
        concurrency: this.opts.workers,
        jobs: [...this.jobs.values()].filter((j) => j.state === 'running').map((j) => j.key),
        startedAt: this.startedAt,
        lastSeen: now,
      },
    ];
  }

  async ping(): Promise<void> {}

  onFinished(listener: (key: string, state: FinalState, error?: string) => void): void {
    this.finished.on('finished', listener);
  }

  async close(graceMs = 30_000): Promise<void> {
    this.closing = true;
    const journal = this.opts.journal;
    for (const job of this.pending.splice(0)) {
      if (journal) this.log(job, 'system', 'fairway: the server is shutting down: the build is re-queued when it starts again');
      this.finish(job, 'canceled', journal ? 'the server shut down before the build started; it is re-queued when the server starts again' : 'the server shut down before the build started');
    }
    if (this.running > 0) {
      const done = new Promise<void>((r) => this.idle.add(r));
      const timer = setTimeout(() => {
        for (const job of this.jobs.values()) {
          if (job.state !== 'running') continue;
          if (journal) this.log(job, 'system', 'fairway: the server is shutting down: stopping the build; it is re-queued when the server starts again');
          job.abort.abort();
        }
      }, graceMs);
      await done;
      clearTimeout(timer);
    }
    await journal?.flush().catch((err: unknown) => this.journalFailed('could not finish writing the queue journal at shutdown', undefined, err));
  }

  private newJob(key: string, payload: P, createdAt: string): Job<P> {
    const job: Job<P> = {
      key,
      payload,
      state: 'queued',
      phase: 'queued',
      createdAt,
      lines: [],
      truncated: false,
      events: new EventEmitter(),
      abort: new AbortController(),
    };
    job.events.setMaxListeners(0);
    return job;
  }

  private position(job: Job<P>): number {
    return this.pending.indexOf(job) + 1;
  }

  private broadcastPositions(): void {
    for (const job of this.pending) job.events.emit('phase', 'queued');
  }

  private pump(): void {
    while (!this.closing && this.running < this.opts.workers && this.pending.length) {
      const job = this.pending.shift()!;
      this.running++;
      void this.runJob(job);
    }
    this.broadcastPositions();
  }

  private async runJob(job: Job<P>): Promise<void> {
    job.state = 'running';
    job.startedAt = new Date().toISOString();
    job.agent = `${this.opts.name ?? hostname()}/local-${this.running}`;
    this.setPhase(job, 'resolving');
    this.opts.journal?.mark(job.key, 'running', job.startedAt).catch((err: unknown) => this.log(job, 'system', `fairway: could not update the queue journal: ${errorMessage(err)}`));
    let state: FinalState = 'succeeded';
    let error: string | undefined;
    try {
      await this.processor({
        key: job.key,
        payload: job.payload,
        agent: job.agent,
        signal: job.abort.signal,
        finalAttempt: true,
        log: (stream, text) => this.log(job, stream, text),
        phase: (phase) => this.setPhase(job, phase),
        lines: async () => job.lines,
      });
    } catch (err) {
      state = job.abort.signal.aborted ? 'canceled' : 'failed';
      error = errorMessage(err);
    }
    this.running--;
    this.finish(job, state, error);
    if (this.running === 0 && this.closing) for (const r of this.idle) r();
    this.pump();
  }

  private log(job: Job<P>, stream: LogStream, text: string): void {
    if (job.lines.length >= this.maxLines) {
      if (!job.truncated) {
        job.truncated = true;
        this.push(job, 'system', `fairway: log truncated after ${this.maxLines} lines`);
      }
      return;
    }
    this.push(job, stream, text);
  }

  private push(job: Job<P>, stream: LogStream, text: string): void {
    // No terminal control from a build reaches the stored or served log (src/util/text.ts).
    const line: LogLine = { seq: job.lines.length, ts: new Date().toISOString(), stream, text: stripControl(text) };
    job.lines.push(line);
    job.events.emit('line', line);
  }

  private setPhase(job: Job<P>, phase: JobPhase): void {
    if (job.phase === phase) return;
    job.phase = phase;
    job.events.emit('phase', phase);
  }

  private finish(job: Job<P>, state: FinalState, error?: string): void {
    job.state = state;
    job.finishedAt = new Date().toISOString();
    if (error) job.error = error;
    this.setPhase(job, state === 'succeeded' ? 'done' : state);
    job.events.emit('end', state, error);
    this.finished.emit('finished', job.key, state, error);
    // The processor has stored the result: the job leaves the journal. A job stopped by the
    // shutdown stays in it, so the next start re-queues it.
    if (this.opts.journal && !(this.closing && state === 'canceled'))
      void this.opts.journal.remove(job.key).catch((err: unknown) => this.journalFailed('could not remove an ended build from the queue journal (it may run again at the next start)', job.key, err));
    setTimeout(() => {
      if (this.jobs.get(job.key) === job) this.jobs.delete(job.key);
    }, this.lingerMs).unref();
  }

  private snapshot(job: Job<P>): JobSnapshot {
    return {
      key: job.key,
      state: job.state,
      phase: job.phase,
      ...(job.state === 'queued' ? { position: this.position(job) } : {}),
      createdAt: job.createdAt,
      ...(job.startedAt ? { startedAt: job.startedAt } : {}),
      ...(job.finishedAt ? { finishedAt: job.finishedAt } : {}),
      ...(job.error ? { error: job.error } : {}),
      ...(job.agent ? { agent: job.agent } : {}),
      lines: job.lines.length,
    };
  }
}
