/**
 * The HTTP side of security (docs/SECURITY.md): bearer-token authentication, route scopes, per-client
 * rate limits and a few response hardening headers. `installSecurity` runs in createApi before
 * any route is registered.
 *
 * Contract for every route (other modules rely on it): a route declares what it needs in its
 * config, `{ config: { scope: 'public' | 'read' | 'build' | 'admin' } }`. Without it: GET/HEAD
 * need `read` (the web UI's page and assets are `public`), every other method needs `build`.
 * 401 = no or bad credential (with `WWW-Authenticate: Bearer`), 403 = a valid token without the
 * scope. Errors are thrown, so each route family's error handler shapes the body.
 */
import rateLimit from '@fastify/rate-limit';
import type { Redis } from 'ioredis';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { allows, TokenAuthenticator, type Principal, type RouteScope, type Scope } from '../auth/index.js';
import { AppError } from '../util/errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What a caller needs to use the route (see src/api/security.ts). */
    scope?: RouteScope;
    /**
     * `basic`: the route also takes HTTP Basic credentials (any user name, the token as password,
     * as `docker login` sends them) and a 401 challenges with `Basic realm="fairway"` (the OCI registry).
     */
    challenge?: 'basic';
  }
  interface FastifyRequest {
    /** The authenticated caller (a token or the anonymous principal); null on public routes. */
    principal: Principal | null;
    /** `token:<name>` or `ip:<address>`: the key for rate limits and per-client build limits. */
    clientId: string | null;
    /**
     * Counts the request against `buildRateLimit` once (a no-op when its route needs `build` or
     * `admin` and was counted on arrival); throws 429 past the limit. For routes that may start a
     * build without needing the build scope to be called (registry tag pulls), via requestContext.
     */
    chargeBuild: (() => Promise<void>) | null;
  }
}

export interface SecurityOptions {
  auth: TokenAuthenticator;
  /** Requests per client per window on every non-public route; 0 = no limit. */
  rateLimit: number;
  rateLimitWindowMs: number;
  /** Requests per client per window on routes that need the build scope (they start builds); 0 = no limit. */
  buildRateLimit: number;
  /**
   * Hubs: count in Redis, so that every hub shares one allowance per client (otherwise each
   * process counts alone). A dedicated connection that fails fast: while Redis is unreachable
   * requests are let through rather than held.
   */
  shared?: { redis: Redis; prefix: string };
}

/** What the API grants when nothing is configured (tests that build an API by hand). */
export const DEV_SECURITY: SecurityOptions = {
  auth: new TokenAuthenticator({ tokens: [], anonymousScopes: ['read', 'build'] }),
  rateLimit: 0,
  rateLimitWindowMs: 60_000,
  buildRateLimit: 0,
};

const PUBLIC_GET = /^\/(?:index\.html|favicon\.ico|ui\/.*)?$/;

/** The scope a request needs: the route's `config.scope`, else the default for its method. */
export function routeScope(req: FastifyRequest): RouteScope {
  const declared = req.routeOptions.config?.scope;
  if (declared) return declared;
  if (req.method === 'GET' || req.method === 'HEAD') {
    const route = req.routeOptions.url;
    return route !== undefined && PUBLIC_GET.test(route) ? 'public' : 'read';
  }
  return req.method === 'OPTIONS' ? 'read' : 'build';
}

/**
 * Scopes, client identity and the build rate limit for BuildService.request (the build scope,
 * the policy, per-client limits): every route that may start a build or a resolution passes it.
 */
export function requestContext(req: FastifyRequest): { scopes: Scope[]; client?: string; chargeBuild?: () => Promise<void> } {
  return {
    scopes: [...(req.principal?.scopes ?? [])],
    ...(req.clientId ? { client: req.clientId } : {}),
    ...(req.chargeBuild ? { chargeBuild: req.chargeBuild } : {}),
  };
}

/**
 * Throws what the security hook would for a route needing `scope` (401 with a challenge for an
 * anonymous caller, 403 for a token without it): for a route that needs more only for some
 * requests (`GET /api/versions?refresh=1`). `what` says what needs it.
 */
export function requireScope(req: FastifyRequest, reply: FastifyReply, scope: Scope, what: string): void {
  const p = req.principal;
  if (p && allows(p, scope)) return;
  if (!p || p.name === null) {
    reply.header('WWW-Authenticate', req.routeOptions.config?.challenge === 'basic' ? 'Basic realm="fairway"' : 'Bearer realm="fairway"');
    throw new AppError('unauthorized', `${what} needs a token with the ${scope} scope; send "Authorization: Bearer <token>"`);
  }
  throw new AppError('forbidden', `token "${p.name}" does not have the ${scope} scope ${what} needs`);
}

const FILENAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/;

/** A Content-Disposition value that can carry no header injection and no path. */
export function contentDisposition(filename: string): string {
  let name = filename
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^[._-]+/, '')
    .slice(0, 200);
  if (!FILENAME_RE.test(name)) name = 'download';
  return `attachment; filename="${name}"`;
}

/** Re-checks a Content-Disposition header set by any route (defence in depth). */
export function safeContentDisposition(value: string): string {
  const m = /^attachment; filename="([^"]*)"$/.exec(value);
  if (m && FILENAME_RE.test(m[1]!)) return value;
  return contentDisposition(m ? m[1]! : 'download');
}

function formatWindow(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${Math.round(ms / 1000)} s`;
}

/** `Basic base64(user:token)` → `Bearer token`; anything else unchanged. */
export function basicAsBearer(header: string | undefined): string | undefined {
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return header;
  const plain = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = plain.indexOf(':');
  // A malformed Basic value stays malformed (401), never anonymous.
  return colon < 0 || colon === plain.length - 1 ? 'Basic malformed' : `Bearer ${plain.slice(colon + 1)}`;
}

export async function installSecurity(app: FastifyInstance, o: SecurityOptions): Promise<void> {
  app.decorateRequest('principal', null);
  app.decorateRequest('clientId', null);
  app.decorateRequest('chargeBuild', null);
  await app.register(rateLimit, {
    global: false,
    ...(o.shared ? { redis: o.shared.redis, nameSpace: `${o.shared.prefix}:ratelimit:`, skipOnError: true } : {}),
  });
  /** `counter` names the limiter's own counters: a shared store would otherwise mix the two limiters' counts. */
  const limiter = (max: number, what: string, counter: string) => {
    if (max <= 0) return null;
    const keyGenerator = (req: FastifyRequest) => `${counter}:${req.clientId ?? `ip:${req.ip}`}`;
    const check = app.createRateLimit({ max, timeWindow: o.rateLimitWindowMs, keyGenerator });
    return async (req: FastifyRequest, reply: FastifyReply) => {
      const r = await check(req);
      if (r.isAllowed || !r.isExceeded) return;
      reply.header('Retry-After', String(r.ttlInSeconds));
      reply.header('X-RateLimit-Limit', String(r.max));
      reply.header('X-RateLimit-Remaining', '0');
      throw new AppError('rate_limited', `too many ${what}: at most ${r.max} per ${formatWindow(o.rateLimitWindowMs)} per client; retry in ${r.ttlInSeconds} s`);
    };
  };
  const general = limiter(o.rateLimit, 'requests', 'all');
  const builds = limiter(o.buildRateLimit, 'build requests', 'build');

  app.addHook('onRequest', async (req, reply) => {
    const scope = routeScope(req);
    if (scope === 'public') return;
    const basic = req.routeOptions.config?.challenge === 'basic';
    const result = await o.auth.authenticate(basic ? basicAsBearer(req.headers.authorization) : req.headers.authorization);
    const principal = result.ok ? result.principal : result.anonymous;
    req.principal = result.ok ? principal : null;
    req.clientId = principal.name !== null && result.ok ? `token:${principal.name}` : `ip:${req.ip}`;
    // Counted before the credential is judged, so guessing tokens is rate limited too.
    await general?.(req, reply);
    const buildRoute = scope === 'build' || scope === 'admin';
    if (buildRoute) await builds?.(req, reply);
    let charged: Promise<void> | null = buildRoute || !builds ? Promise.resolve() : null;
    req.chargeBuild = () => (charged ??= builds!(req, reply));
    if (!result.ok) {
      reply.header('WWW-Authenticate', basic ? 'Basic realm="fairway"' : 'Bearer realm="fairway", error="invalid_token"');
      throw new AppError('unauthorized', result.reason === 'malformed' ? 'the Authorization header must be "Bearer <token>"' : 'the token is not valid (unknown or revoked)');
    }
    if (!allows(principal, scope)) {
      if (principal.name === null) {
        reply.header('WWW-Authenticate', basic ? 'Basic realm="fairway"' : 'Bearer realm="fairway"');
        throw new AppError('unauthorized', `this needs a token with the ${scope} scope; send "Authorization: Bearer <token>"`);
      }
      throw new AppError('forbidden', `token "${principal.name}" does not have the ${scope} scope this needs`);
    }
  });

  app.addHook('onSend', async (_req, reply, payload) => {
    const cd = reply.getHeader('content-disposition');
    if (cd !== undefined) reply.header('content-disposition', safeContentDisposition(String(cd)));
    if (!reply.hasHeader('x-content-type-options')) reply.header('x-content-type-options', 'nosniff');
    return payload;
  });
}
