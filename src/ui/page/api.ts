/**
 * The page's requests: the API token (kept in sessionStorage, or localStorage when remembered)
 * and the calls that carry it as `Authorization: Bearer`, with the server's error messages.
 */
import { withHint as hintFor } from './format.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const TOKEN_KEY = 'fairway.token';

function storage(kind: 'local' | 'session'): Storage | null {
  try {
    return kind === 'local' ? window.localStorage : window.sessionStorage;
  } catch {
    return null; // storage disabled: the token lives for this page only
  }
}

let token = storage('local')?.getItem(TOKEN_KEY) ?? storage('session')?.getItem(TOKEN_KEY) ?? '';

/** Whether requests carry a token (the log is then followed over SSE, downloads are fetched). */
export const hasToken = (): boolean => token !== '';

/** Whether the token is kept on this device (localStorage) rather than for this tab. */
export const tokenRemembered = (): boolean => !!storage('local')?.getItem(TOKEN_KEY);

/** Use `t` from now on, kept for this tab or, when `remember`, on this device; '' forgets the token. */
export function setToken(t: string, remember = false): void {
  token = t;
  for (const k of ['local', 'session'] as const) storage(k)?.removeItem(TOKEN_KEY);
  if (t) storage(remember ? 'local' : 'session')?.setItem(TOKEN_KEY, t);
}

function auth(): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** The server's message, plus what to do when it wants a token (or a better one). */
export const withHint = (message: string, status: number): string => hintFor(message, status, hasToken());

/** The message of a refused request (the JSON error body, else the status), with the token hint. */
export async function refusal(res: Response): Promise<string> {
  const body = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
  return withHint(body?.error?.message ?? `HTTP ${res.status}`, res.status);
}

/** A JSON API call; a refusal throws ApiError with the server's message and the token hint. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, {
    ...init,
    headers: { accept: 'application/json', ...(init.body ? { 'content-type': 'application/json' } : {}), ...auth() },
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = (body as { error?: { message?: string } } | null)?.error;
    throw new ApiError(res.status, withHint(e?.message ?? `HTTP ${res.status}`, res.status));
  }
  return body as T;
}

/** A GET whose answer the caller reads itself (catalog, agents, recipes, signing key, log over SSE, artifact), with the token. */
export const get = (path: string, accept?: string, signal?: AbortSignal): Promise<Response> => fetch(path, { headers: { ...(accept ? { accept } : {}), ...auth() }, signal });
