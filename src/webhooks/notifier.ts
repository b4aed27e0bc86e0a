/**
 * The Notifier: a payload in, one signed POST per target that wants its event, each retried with
 * backoff on its own, in the background. notify() never blocks its caller and never throws; every
 * delivery is in the delivery log (src/webhooks/log.ts) from its first attempt to its end.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { RecordStore } from '../store/index.js';
import { errorMessage } from '../util/errors.js';
import { DEFAULT_RETRY, backoffDelay, classifyStatus, parseRetryAfter, signBody, type RetryPolicy } from './delivery.js';
import { DEFAULT_KEEP, DeliveryLog, deliveryRecordName, type WebhookDelivery } from './log.js';
import { parseWebhookTargets, redactUrl, scrubUrl, wants, type WebhookEvent, type WebhookTarget } from './targets.js';

export interface WebhookPlugin {
  module: string;
  version: string;
}

/** The body of a delivery (docs/recipes.md "Webhooks"), sent as JSON. */
export interface WebhookPayload {
  event: WebhookEvent;
  recipe?: string;
  caddyVersion: string;
  plugins: WebhookPlugin[];
  /** The set this one replaces (recipe.promoted), or the last promoted one (recipe.failed); null when there was none. */
  previous?: { caddyVersion: string; plugins: WebhookPlugin[] } | null;
  /** recipe.failed: the module and version (or Caddy) that breaks the candidate, when found. */
  culprit?: WebhookPlugin;
  builds: Array<{ platform: string; id: string; url: string; log: string }>;
  links?: Record<string, string>;
  /** When the event happened (ISO 8601). */
  at: string;
}

export type DeliveryResult = 'delivered' | 'failed' | 'dropped' | 'abandoned';

/** What the watcher (issue 29) holds: fire and forget, a log to show, a clean stop. */
export interface Notifier {
  /** Starts the deliveries of an event to the targets that want it. Never blocks the caller, never throws. */
  notify(payload: WebhookPayload): void;
  /** The newest deliveries (at most `limit`, default all kept: 200), newest first, from the store. */
  deliveries(limit?: number): Promise<WebhookDelivery[]>;
  /**
   * Stops: no new deliveries; deliveries waiting for their next attempt end as failed
   * ("abandoned"); running attempts get `closeGraceMs` to answer, then are aborted; resolves once
   * the log is written.
   */
  close(): Promise<void>;
}

export interface NotifierOptions {
  /** Checked again here (parseWebhookTargets); src/config checked them at start. */
  targets: readonly WebhookTarget[];
  /** Where the delivery log lives (the artifact store's records). */
  store: RecordStore;
  logger: Logger;
  /** The User-Agent of every POST, e.g. `Fairway-Webhooks/1.4.0`. */
  userAgent: string;
  retry?: Partial<RetryPolicy>;
  /** HTTP attempts running at once, over every target. Default 8. */
  maxInFlight?: number;
  /** Deliveries not ended yet (running, waiting to run, waiting to retry); more are dropped (logged, in the log as failed). Default 1000. */
  maxPending?: number;
  /** Deliveries kept in the log. Default 200. */
  keep?: number;
  /** How long close() lets running attempts answer. Default 5 s. */
  closeGraceMs?: number;
  /** The jitter's source, [0, 1). Default Math.random. */
  random?: () => number;
  /** Each delivery's end, for the metrics (src/ops: fairway_webhook_deliveries_total). */
  onResult?: (event: WebhookEvent, result: DeliveryResult) => void;
}

interface Delivery {
  rec: WebhookDelivery;
  name: string;
  /** The target's URL as configured (for scrubbing messages), and as fetch takes it. */
  target: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** The last write of its record; the next one waits for it, so the log sees them in order. */
  written: Promise<void>;
  timer?: NodeJS.Timeout;
  abort?: AbortController;
}

/** A target URL as fetch takes it: userinfo moves to an Authorization: Basic header (fetch refuses URLs with credentials). */
function requestTarget(url: string): { url: string; authorization?: string } {
  const u = new URL(url);
  if (!u.username && !u.password) return { url: u.href };
  const basic = Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
  u.username = '';
  u.password = '';
  return { url: u.href, authorization: `Basic ${basic}` };
}

class ShutdownAbort extends Error {}
class AttemptTimeout extends Error {}

/** Why a fetch failed, without the request: a timeout, the shutdown, or the network error's code and message. */
function describeFailure(err: unknown, reason: unknown): string {
  if (reason instanceof AttemptTimeout || reason instanceof ShutdownAbort) return reason.message;
  const cause = (err as { cause?: unknown })?.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return `${typeof code === 'string' ? `${code}: ` : ''}${cause.message}`;
  }
  return errorMessage(err);
}

export class WebhookNotifier implements Notifier {
  private readonly targets: WebhookTarget[];
  private readonly retry: RetryPolicy;
  private readonly log: DeliveryLog;
  private readonly logger: Logger;
  private readonly pending = new Set<Delivery>();
  private readonly ready: Delivery[] = [];
  private readonly running = new Set<Promise<void>>();
  private readonly writes = new Set<Promise<void>>();
  private trimming: Promise<void> | null = null;
  private trimAgain = false;
  private closed = false;

  constructor(private readonly o: NotifierOptions) {
    this.targets = parseWebhookTargets(o.targets);
    this.retry = { ...DEFAULT_RETRY, ...o.retry };
    this.log = new DeliveryLog(o.store, o.keep ?? DEFAULT_KEEP);
    this.logger = o.logger.child({ part: 'webhooks' });
  }

  /** The targets as logs show them: origin and path, events. */
  describe(): Array<{ target: string; events: WebhookEvent[] | 'all' }> {
    return this.targets.map((t) => ({ target: redactUrl(t.url), events: t.events ?? 'all' }));
  }

  notify(payload: WebhookPayload): void {
    try {
      if (this.closed) {
        this.logger.warn({ event: payload.event }, 'webhooks: an event after shutdown began is not delivered');
        return;
      }
      const body = JSON.stringify(payload);
      for (const t of this.targets) if (wants(t, payload.event)) this.start(t, payload, body);
    } catch (err) {
      this.logger.error({ event: payload?.event, error: errorMessage(err) }, 'webhooks: could not start the deliveries of an event');
    }
  }

  deliveries(limit?: number): Promise<WebhookDelivery[]> {
    return this.log.list(limit);
  }

  async close(): Promise<void> {
    if (this.closed) return this.settled();
    this.closed = true;
    // Waiting for a retry or for a free slot: they end now.
    for (const d of [...this.pending]) {
      if (d.abort) continue;
      if (d.timer) clearTimeout(d.timer);
      this.end(d, 'failed', 'abandoned', `abandoned: the server stopped before attempt ${d.rec.attempts + 1}`);
    }
    this.ready.length = 0;
    // Running attempts get the grace period, then are aborted.
    if (this.running.size) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((r) => {
        timer = setTimeout(r, this.o.closeGraceMs ?? 5000);
      });
      await Promise.race([Promise.allSettled([...this.running]), grace]);
      clearTimeout(timer);
      for (const d of this.pending) d.abort?.abort(new ShutdownAbort('abandoned: the server stopped during the attempt'));
      await Promise.allSettled([...this.running]);
    }
    return this.settled();
  }

  /** Resolves once every record write and trim has ended. */
  private async settled(): Promise<void> {
    while (this.writes.size || this.trimming) {
      await Promise.allSettled([...this.writes]);
      await this.trimming;
    }
  }

  private start(t: WebhookTarget, payload: WebhookPayload, body: string): void {
    const now = Date.now();
    const id = randomUUID();
    const req = requestTarget(t.url);
    const d: Delivery = {
      rec: {
        id,
        event: payload.event,
        ...(payload.recipe !== undefined ? { recipe: payload.recipe } : {}),
        target: redactUrl(t.url),
        status: 'pending',
        attempts: 0,
        lastStatus: null,
        lastError: null,
        createdAt: new Date(now).toISOString(),
        updatedAt: new Date(now).toISOString(),
        nextAttemptAt: null,
      },
      name: deliveryRecordName(now, id),
      target: t.url,
      url: req.url,
      headers: {
        'content-type': 'application/json',
        'user-agent': this.o.userAgent,
        'x-fairway-event': payload.event,
        'x-fairway-delivery': id,
        'x-fairway-signature-256': signBody(body, t.secret),
        ...(req.authorization ? { authorization: req.authorization } : {}),
      },
      body,
      written: Promise.resolve(),
    };
    if (this.pending.size >= (this.o.maxPending ?? 1000)) {
      this.logger.warn({ event: d.rec.event, target: d.rec.target, delivery: id, pending: this.pending.size }, 'webhooks: too many deliveries pending: this one is dropped');
      this.end(d, 'failed', 'dropped', `dropped: ${this.pending.size} deliveries were pending already`);
      this.scheduleTrim();
      return;
    }
    this.pending.add(d);
    this.save(d);
    this.scheduleTrim();
    this.ready.push(d);
    this.pump();
  }

  /** Starts ready attempts while there is a free slot. */
  private pump(): void {
    const max = this.o.maxInFlight ?? 8;
    while (!this.closed && this.running.size < max && this.ready.length) {
      const d = this.ready.shift()!;
      const p = this.attempt(d).catch((err: unknown) => {
        this.logger.error({ delivery: d.rec.id, error: errorMessage(err) }, 'webhooks: an attempt failed unexpectedly');
        this.end(d, 'failed', 'failed', `internal error: ${errorMessage(err)}`);
      });
      this.running.add(p);
      void p.finally(() => {
        this.running.delete(p);
        this.pump();
      });
    }
  }

  private async attempt(d: Delivery): Promise<void> {
    const r = this.retry;
    d.rec.attempts++;
    d.rec.nextAttemptAt = null;
    const abort = new AbortController();
    d.abort = abort;
    const timer = setTimeout(() => abort.abort(new AttemptTimeout(`timed out: no answer within ${r.timeoutMs} ms`)), r.timeoutMs);
    let status: number | null = null;
    let error: string | null = null;
    let retryAfter: number | null = null;
    try {
      const res = await fetch(d.url, { method: 'POST', headers: d.headers, body: d.body, redirect: 'manual', signal: abort.signal });
      status = res.status;
      retryAfter = parseRetryAfter(res.headers.get('retry-after'));
      await res.body?.cancel().catch(() => {});
    } catch (err) {
      error = scrubUrl(describeFailure(err, abort.signal.reason), d.target);
    } finally {
      clearTimeout(timer);
      d.abort = undefined;
    }
    const outcome = status === null ? 'retry' : classifyStatus(status);
    d.rec.lastStatus = status;
    const log = { event: d.rec.event, target: d.rec.target, delivery: d.rec.id, attempt: d.rec.attempts, ...(status !== null ? { status } : { error }) };
    if (outcome === 'delivered') {
      this.logger.info(log, 'webhooks: delivered');
      this.end(d, 'delivered', 'delivered', null);
      return;
    }
    const why = status === null ? error! : status >= 300 && status < 400 ? `HTTP ${status} (redirects are not followed: give the final URL)` : `HTTP ${status}`;
    if (abort.signal.reason instanceof ShutdownAbort) {
      this.end(d, 'failed', 'abandoned', `${why}`);
      return;
    }
    if (outcome === 'final') {
      this.logger.warn(log, `webhooks: the target refused the delivery (${why}); not retried`);
      this.end(d, 'failed', 'failed', `${why}: not retried`);
      return;
    }
    if (d.rec.attempts >= r.maxAttempts) {
      this.logger.warn(log, `webhooks: delivery failed after ${d.rec.attempts} attempts (${why})`);
      this.end(d, 'failed', 'failed', `${why}; gave up after ${d.rec.attempts} attempt${d.rec.attempts === 1 ? '' : 's'}`);
      return;
    }
    if (this.closed) {
      this.end(d, 'failed', 'abandoned', `${why}; abandoned: the server stopped before attempt ${d.rec.attempts + 1}`);
      return;
    }
    const wait = backoffDelay(d.rec.attempts, r, this.o.random, status === 429 || status === 503 ? retryAfter : null);
    d.rec.lastError = why;
    d.rec.nextAttemptAt = new Date(Date.now() + wait).toISOString();
    this.logger.info({ ...log, retryInMs: wait }, `webhooks: attempt ${d.rec.attempts} did not deliver (${why}); retrying`);
    this.save(d);
    d.timer = setTimeout(() => {
      d.timer = undefined;
      if (this.closed) return;
      this.ready.push(d);
      this.pump();
    }, wait);
  }

  private end(d: Delivery, status: 'delivered' | 'failed', result: DeliveryResult, error: string | null): void {
    if (d.rec.status !== 'pending') return;
    this.pending.delete(d);
    d.rec.status = status;
    d.rec.lastError = error;
    d.rec.nextAttemptAt = null;
    this.save(d);
    try {
      this.o.onResult?.(d.rec.event, result);
    } catch {
      /* a metrics hook never breaks a delivery */
    }
  }

  /** Writes the record as it is now, after its previous write. */
  private save(d: Delivery): void {
    d.rec.updatedAt = new Date().toISOString();
    const snapshot = { ...d.rec };
    const p = d.written
      .then(() => this.log.put(d.name, snapshot))
      .catch((err: unknown) => this.logger.warn({ delivery: d.rec.id, error: errorMessage(err) }, 'webhooks: could not write the delivery log record'));
    d.written = p;
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
  }

  /** Keeps the log at `keep` records (one trim at a time, after the writes so far). */
  private scheduleTrim(): void {
    if (this.trimming) {
      this.trimAgain = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.trimAgain = false;
        await Promise.allSettled([...this.writes]);
        await this.log.trim().catch((err: unknown) => this.logger.warn({ error: errorMessage(err) }, 'webhooks: could not trim the delivery log'));
      } while (this.trimAgain);
    };
    this.trimming = run().finally(() => {
      this.trimming = null;
    });
  }
}
