/**
 * Secrets in query strings never reach the logs (docs/SECURITY.md, "Tokens"). Fastify logs each
 * request's URL ("incoming request") and errors through the serializers below; createApi installs
 * them on the logger it gives Fastify, so every request log line of every route family uses them.
 */
import pino from 'pino';
import type { FastifyRequest } from 'fastify';

/** Query parameters whose values are replaced by `[REDACTED]` (compared case-insensitively). */
export const SECRET_PARAMS: ReadonlySet<string> = new Set(['access_token', 'token', 'api_key', 'apikey', 'key', 'password', 'secret', 'auth']);
export const REDACTED = '[REDACTED]';

function paramName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' ')).trim().toLowerCase();
  } catch {
    return raw.trim().toLowerCase();
  }
}

/** A request URL (path and query) with the values of secret-looking query parameters replaced. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q === -1) return url;
  const hash = url.indexOf('#', q);
  const query = url.slice(q + 1, hash === -1 ? undefined : hash);
  const parts = query.split('&').map((part) => {
    const eq = part.indexOf('=');
    const name = eq === -1 ? part : part.slice(0, eq);
    return eq !== -1 && SECRET_PARAMS.has(paramName(name)) ? `${name}=${REDACTED}` : part;
  });
  return `${url.slice(0, q)}?${parts.join('&')}${hash === -1 ? '' : url.slice(hash)}`;
}

/** `?name=value` / `&name=value` pairs in free text. */
const PAIR_IN_TEXT = /([?&;])([^=&#\s"'<>?;]+)=([^&#\s"'<>]*)/g;

/** Free text (an error message, a stack) with secret query parameter values in any URLs it quotes replaced. */
export function redactText(text: string): string {
  return text.replace(PAIR_IN_TEXT, (all, sep: string, name: string) => (SECRET_PARAMS.has(paramName(name)) ? `${sep}${name}=${REDACTED}` : all));
}

/** Fastify's request serializer, with the URL redacted. */
function req(r: FastifyRequest): Record<string, unknown> {
  return {
    method: r.method,
    url: typeof r.url === 'string' ? redactUrl(r.url) : r.url,
    version: r.headers?.['accept-version'],
    host: r.host,
    remoteAddress: r.ip,
    remotePort: r.socket ? r.socket.remotePort : undefined,
  };
}

/** pino's error serializer, with URLs quoted in the message or stack redacted. */
function err(e: Error): unknown {
  const out = pino.stdSerializers.err(e) as unknown as Record<string, unknown>;
  if (out === null || typeof out !== 'object') return typeof out === 'string' ? redactText(out) : out;
  for (const k of ['message', 'stack', 'url']) if (typeof out[k] === 'string') out[k] = redactText(out[k] as string);
  return out;
}

export const LOG_SERIALIZERS = { req, err };
