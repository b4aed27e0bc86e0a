/**
 * The queue's contract. Generic over the payload `P`: nothing here (or in local.ts, bullmq-*.ts)
 * knows a payload's fields; what a worker must decide about one is given to it as a function.
 */

import type { LogLine, LogStream } from '../util/logline.js';

export type { LogLine, LogStream };

/** The phases a running job reports (the processor's progress); the first is set when it starts. */
export type RunPhase = 'resolving' | 'building' | 'storing';

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
export type JobPhase = 'queued' | RunPhase | 'done' | 'failed' | 'canceled';
export type FinalState = Extract<JobState, 'succeeded' | 'failed' | 'canceled'>;

export interface JobSnapshot {
  key: string;
  state: JobState;
  phase: JobPhase;
  /** 1-based place in the queue while queued. */
  position?: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
  /** Which worker or agent runs it. */
  agent?: string;
  lines: number;
}

export type JobEvent = { type: 'line'; line: LogLine } | { type: 'phase'; phase: JobPhase; position?: number } | { type: 'end'; state: FinalState; error?: string };

export interface JobContext<P> {
  key: string;
  payload: P;
  agent: string;
  signal: AbortSignal;
  /** False when a failure will be retried (distributed queue); record failures only on the last. */
  finalAttempt: boolean;
  log(stream: LogStream, text: string): void;
  phase(phase: RunPhase): void;
  /** Every line logged so far (all attempts), for storing with the artifact. */
  lines(): Promise<LogLine[]>;
}

/**
 * Does the work of one job: build and store the result (success or failure record). Throwing
 * marks the job failed with the error's message; the processor is called once per key at a time.
 */
export type Processor<P> = (ctx: JobContext<P>) => Promise<void>;

/**
 * Thrown by a processor, or by a worker's job check, for a job that must fail now, without
 * further attempts (e.g. a refused payload).
 */
export class JobRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobRefused';
  }
}

/** A worker process that runs builds: an agent, or the embedded server's own workers. */
export interface AgentInfo {
  id: string;
  host: string;
  go: string;
  xcaddy: string;
  concurrency: number;
  /** Keys of the builds it runs now. */
  jobs: string[];
  startedAt: string;
  lastSeen: string;
  /** Shared build cache (docs/distributed.md): this agent's Go build cache lookups since it started. */
  cache?: AgentCacheInfo;
}

/** The Go build cache figures an agent heartbeats (opaque to the queue: the agent's composition root fills them). */
export interface AgentCacheInfo {
  shared: boolean;
  hits: number;
  misses: number;
  hitRate: number;
  sharedHits: number;
  corrupt: number;
  /** Bytes read from and written to the shared tier (absent from agents older than these fields). */
  sharedBytesRead?: number;
  sharedBytesWritten?: number;
}

export interface QueueDepth {
  queued: number;
  running: number;
}

/** What enqueue() did: `created` true when this call queued the job, false when it joined the one queued or running. */
export interface Enqueued {
  job: JobSnapshot;
  created: boolean;
}

/** Builds by key: one job per key, workers, progress, live logs. `local` and `bullmq`. */
export interface BuildQueue<P> {
  /** Queues a job unless one with this key is queued or running (then that one is returned, `created: false`). */
  enqueue(key: string, payload: P): Promise<Enqueued>;
  /** The job if it is active or finished recently, else null (look in the store then). */
  get(key: string): Promise<(JobSnapshot & { payload: P }) | null>;
  /** Replays the log from line `fromSeq`, follows it live, and ends with an `end` event. */
  follow(key: string, opts?: { fromSeq?: number; signal?: AbortSignal }): AsyncIterable<JobEvent>;
  /** Cancels a queued job (it never runs) or a running one (its signal aborts); false when it is neither. */
  cancel(key: string): Promise<boolean>;
  depth(): Promise<QueueDepth>;
  /** The queued and running jobs, running first, then in queue order; at most `limit`. */
  active(limit: number): Promise<Array<JobSnapshot & { payload: P }>>;
  /** Called after a job ended (the processor has already stored its result). */
  onFinished(listener: (key: string, state: FinalState, error?: string) => void): void;
  /** The workers that take jobs from this queue. */
  agents(): Promise<AgentInfo[]>;
  /** Throws when the queue's backend cannot be reached (readiness). */
  ping(): Promise<void>;
  /** Stops taking jobs; lets running jobs finish up to `graceMs`, then cancels them. */
  close(graceMs?: number): Promise<void>;
}

/**
 * The worker side of a queue whose jobs run elsewhere (an agent): takes jobs, runs them with the
 * processor it was built with, after the job check it was given. `bullmq`.
 */
export interface BuildWorker {
  readonly id: string;
  start(): Promise<void>;
  /** Graceful: stops taking jobs and lets running ones finish; with `force`, hands them back. */
  close(force?: boolean): Promise<void>;
}
