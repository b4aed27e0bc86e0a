/**
 * One delivery's pure rules: the signature of a body, the backoff between attempts, what an
 * answer means (delivered, final, retried) and Retry-After. No I/O: src/webhooks/notifier.ts runs them.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** `sha256=<hex HMAC-SHA256 of the exact body bytes, keyed with the secret>`: X-Fairway-Signature-256. */
export function signBody(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Whether `header` is the signature of `body` with `secret` (constant time), as a receiver checks it. */
export function verifySignature(body: string | Uint8Array, secret: string, header: string | undefined | null): boolean {
  if (!header) return false;
  const want = Buffer.from(signBody(body, secret));
  const got = Buffer.from(header.trim());
  return got.length === want.length && timingSafeEqual(got, want);
}

export interface RetryPolicy {
  /** Attempts in all (the first included). Default 10. */
  maxAttempts: number;
  /** The wait after the first failed attempt, before jitter; it doubles after each one. Default 5 s. */
  baseDelayMs: number;
  /** The longest wait between two attempts. Default 15 min. */
  maxDelayMs: number;
  /** The longest Retry-After honoured (a longer one waits this long). Default 15 min. */
  retryAfterCapMs: number;
  /** Time one attempt may take, the answer's headers included. Default 10 s. */
  timeoutMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 10, baseDelayMs: 5000, maxDelayMs: 15 * 60_000, retryAfterCapMs: 15 * 60_000, timeoutMs: 10_000 };

/**
 * The wait after failed attempt `attempt` (1 = the first): exponential, `base · 2^(attempt-1)`
 * capped at `maxDelayMs`, with equal jitter (a uniform share between half and all of it, so
 * receivers coming back are not hit by every sender at once). A Retry-After (ms) is honoured up
 * to `retryAfterCapMs`: the wait is never shorter than it.
 */
export function backoffDelay(attempt: number, p: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs' | 'retryAfterCapMs'>, random: () => number = Math.random, retryAfterMs?: number | null): number {
  const exp = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.round(exp / 2 + random() * (exp / 2));
  if (retryAfterMs === undefined || retryAfterMs === null) return jittered;
  return Math.max(jittered, Math.min(retryAfterMs, p.retryAfterCapMs));
}

/** A Retry-After header (seconds, or an HTTP date) in ms from `now`; null when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now: number = Date.now()): number | null {
  if (!value) return null;
  const v = value.trim();
  if (/^[0-9]+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

export type AttemptOutcome = 'delivered' | 'retry' | 'final';

/**
 * What an HTTP answer means: 2xx delivered; 408, 429 and 5xx retried; anything else (other 4xx,
 * 3xx: redirects are not followed, 1xx) final.
 */
export function classifyStatus(status: number): AttemptOutcome {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  return 'final';
}
