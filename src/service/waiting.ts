/**
 * Callers blocked until a build ends (the blocking download API), woken when its job finishes,
 * by a poll of the queue, or by shutdown() (a 503 with Retry-After, then for every later caller).
 */
import type { JobState } from '../queue/index.js';
import { AppError } from '../util/errors.js';
import type { BuildRecord } from './record-schema.js';

export interface BuildWaitersOptions {
  /** The record of a build (BuildService.get). */
  record(key: string): Promise<BuildRecord>;
  /** The queue's job of a key. */
  job(key: string): Promise<{ state: JobState } | null>;
}

export class BuildWaiters {
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Set by shutdown(): the answer of every waitFor() from then on. */
  private closing: AppError | null = null;
  /** Callers blocked in waitFor(), released by shutdown(). */
  private readonly blocked = new Set<(err: AppError) => void>();

  constructor(private readonly o: BuildWaitersOptions) {}

  /** The job of `key` ended: its waiters look again. */
  wake(key: string): void {
    for (const w of this.waiters.get(key) ?? []) w();
    this.waiters.delete(key);
  }

  shutdown(retryAfterS: number): void {
    this.closing ??= new AppError(
      'shutting_down',
      `the server is shutting down; the build is not lost (it goes on elsewhere, or is re-queued when the server starts again); retry in ${retryAfterS}s`,
      retryAfterS,
    );
    for (const stop of [...this.blocked]) stop(this.closing);
  }

  async waitFor(key: string, signal?: AbortSignal): Promise<BuildRecord> {
    for (;;) {
      if (this.closing) throw this.closing;
      const rec = await this.o.record(key);
      if (rec.status !== 'queued' && rec.status !== 'running') return rec;
      if (this.closing) throw this.closing;
      await new Promise<void>((resolve, reject) => {
        const set = this.waiters.get(key) ?? new Set();
        this.waiters.set(key, set);
        const done = () => {
          clearInterval(poll);
          signal?.removeEventListener('abort', abort);
          set.delete(done);
          this.blocked.delete(stop);
          resolve();
        };
        const abort = () => {
          clearInterval(poll);
          set.delete(done);
          this.blocked.delete(stop);
          reject(new AppError('client_gone', 'the client went away'));
        };
        const stop = (err: AppError) => {
          clearInterval(poll);
          signal?.removeEventListener('abort', abort);
          set.delete(done);
          this.blocked.delete(stop);
          reject(err);
        };
        this.blocked.add(stop);
        // Events can be missed (a finish between get() and subscribing, a queue connection that
        // was down): look at the job now and every few seconds too.
        const check = () =>
          void this.o.job(key).then(
            (j) => {
              if (!j || (j.state !== 'queued' && j.state !== 'running')) done();
            },
            () => undefined,
          );
        const poll = setInterval(check, 5000);
        set.add(done);
        signal?.addEventListener('abort', abort, { once: true });
        check();
      });
    }
  }
}
