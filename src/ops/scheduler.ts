/**
 * Periodic background tasks (version refresh + prebuilds, store pruning, Go cache budget).
 * Timers are unref'd (they never keep the process alive) and jittered (several hubs do not
 * all hit the module proxy or the bucket at the same second); a task never overlaps itself;
 * stop() clears the timers and waits for runs in progress.
 */
import type { Logger } from 'pino';
import { errorMessage } from '../util/errors.js';

export interface ScheduledTask {
  name: string;
  intervalMs: number;
  run: () => Promise<unknown>;
  /** Delay of the first run after start(); default: one interval (jittered). 0 = at once. */
  firstDelayMs?: number;
  /** Fraction of the interval added or removed at random. Default 0.1. */
  jitter?: number;
}

interface TaskState {
  task: ScheduledTask;
  timer: NodeJS.Timeout | null;
  running: Promise<void> | null;
  runs: number;
  lastRunAt?: string;
  lastError?: string;
}

export class Scheduler {
  private readonly tasks = new Map<string, TaskState>();
  private started = false;
  private stopped = false;

  constructor(private readonly logger?: Logger) {}

  add(task: ScheduledTask): void {
    if (this.tasks.has(task.name)) throw new Error(`task ${task.name} is already scheduled`);
    if (!(task.intervalMs > 0)) throw new Error(`task ${task.name}: the interval must be positive`);
    const st: TaskState = { task, timer: null, running: null, runs: 0 };
    this.tasks.set(task.name, st);
    if (this.started && !this.stopped) this.arm(st, task.firstDelayMs ?? this.jittered(task));
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    for (const st of this.tasks.values()) this.arm(st, st.task.firstDelayMs ?? this.jittered(st.task));
  }

  /** Runs a task now (or joins its run in progress). */
  runNow(name: string): Promise<void> {
    const st = this.tasks.get(name);
    if (!st) return Promise.reject(new Error(`no task ${name}`));
    return this.execute(st);
  }

  status(): Array<{ name: string; intervalMs: number; runs: number; lastRunAt?: string; lastError?: string }> {
    return [...this.tasks.values()].map((s) => ({
      name: s.task.name,
      intervalMs: s.task.intervalMs,
      runs: s.runs,
      ...(s.lastRunAt ? { lastRunAt: s.lastRunAt } : {}),
      ...(s.lastError ? { lastError: s.lastError } : {}),
    }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const st of this.tasks.values()) {
      if (st.timer) clearTimeout(st.timer);
      st.timer = null;
    }
    await Promise.all([...this.tasks.values()].map((s) => s.running?.catch(() => undefined)));
  }

  private jittered(t: ScheduledTask): number {
    const j = t.jitter ?? 0.1;
    return Math.max(0, Math.round(t.intervalMs * (1 + (Math.random() * 2 - 1) * j)));
  }

  private arm(st: TaskState, delay: number): void {
    if (this.stopped) return;
    st.timer = setTimeout(() => {
      st.timer = null;
      void this.execute(st).finally(() => {
        if (!this.stopped && !st.timer) this.arm(st, this.jittered(st.task));
      });
    }, delay);
    st.timer.unref();
  }

  private execute(st: TaskState): Promise<void> {
    if (st.running) return st.running;
    st.running = (async () => {
      st.runs++;
      st.lastRunAt = new Date().toISOString();
      try {
        await st.task.run();
        delete st.lastError;
      } catch (err) {
        st.lastError = errorMessage(err);
        this.logger?.warn({ task: st.task.name, err }, `scheduled task ${st.task.name} failed`);
      }
    })().finally(() => {
      st.running = null;
    });
    return st.running;
  }
}
