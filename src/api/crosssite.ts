/**
 * Cross-site requests and DNS rebinding (docs/SECURITY.md). Installed by createApi before any
 * route (and before authentication), so every route family gets it, websocket upgrades included.
 *
 *  - Host check: on a loopback address (or whenever `allowedHosts` is set) a request whose Host
 *    name is not localhost, 127.0.0.1, [::1], the configured `host` or an `allowedHosts` entry is
 *    refused with 421 `unknown_host`, on every route. A web page on a name the attacker controls,
 *    re-pointed at 127.0.0.1 (DNS rebinding), is "same-origin" to the browser; only its Host says
 *    which name it was loaded under.
 *  - Origin check: on every route except the UI's page and assets and the health checks, a request
 *    sent by a web page Fairway did not serve is refused with 403 `cross_site`: an `Origin` that is
 *    neither the request's own (scheme://Host) nor in `allowedOrigins`, or, without `Origin`, a
 *    `Sec-Fetch-Site` of `cross-site` or `same-site` (an <img>, a link, a form on another page;
 *    `same-site` includes other ports of localhost). `same-origin` and `none` (typed URL, bookmark)
 *    pass, and so do clients that send neither header (curl, Caddy, the CLI, CI scripts).
 *
 * Errors are thrown, so each route family's error handler shapes the body.
 */
import { hostName, hostNameError, normalizeOrigin, originError } from '../util/hosts.js';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { isLoopbackHost } from '../auth/index.js';
import { AppError } from '../util/errors.js';
import { routeScope } from './security.js';

export interface CrossSiteOptions {
  /** The address the server listens on (config `host`): on loopback the Host header is checked. */
  listenHost: string;
  /** Extra host names accepted in Host (config `allowedHosts`); when given, Host is checked on any address. */
  allowedHosts?: readonly string[];
  /** Extra origins whose pages may call the API (config `allowedOrigins`), e.g. https://ci.example.com. */
  allowedOrigins?: readonly string[];
}

/** What createApi uses when nothing is configured (tests that build an API by hand): the default loopback server. */
export const DEV_CROSS_SITE: CrossSiteOptions = { listenHost: '127.0.0.1' };

/** Names a loopback server always answers. */
export const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'] as const;

export { hostName, hostNameError, normalizeOrigin, originError } from '../util/hosts.js';

/** Header values are bounded and printable in messages. */
function shown(v: string): string {
  const t = v.replace(/[^\x20-\x7e]/g, '?');
  return t.length > 120 ? `${t.slice(0, 120)}…` : t;
}

export class CrossSiteGuard {
  private readonly hosts: ReadonlySet<string>;
  private readonly origins: ReadonlySet<string>;
  /** Whether the Host header is checked at all: on loopback, or when allowedHosts is configured. */
  readonly checksHost: boolean;

  constructor(o: CrossSiteOptions) {
    for (const h of o.allowedHosts ?? []) {
      const err = hostNameError(h);
      if (err) throw new Error(`allowedHosts: ${err}`);
    }
    const origins = new Set<string>();
    for (const raw of o.allowedOrigins ?? []) {
      const n = normalizeOrigin(raw);
      if (!n) throw new Error(`allowedOrigins: ${originError(raw)}`);
      origins.add(n);
    }
    const listen = hostName(o.listenHost);
    const wildcard = listen === '0.0.0.0' || listen === '::' || listen === '';
    this.hosts = new Set([...DEFAULT_HOSTS, ...(wildcard ? [] : [listen]), ...(o.allowedHosts ?? []).map(hostName)]);
    this.origins = origins;
    this.checksHost = isLoopbackHost(o.listenHost) || (o.allowedHosts ?? []).length > 0;
  }

  /** The names a request may use (for messages and the start-up log). */
  allowedHosts(): string[] {
    return [...this.hosts].map((h) => (h.includes(':') ? `[${h}]` : h));
  }

  allowedOrigins(): string[] {
    return [...this.origins];
  }

  /** Throws 421 when a Host name the request claims is not one this server answers. */
  checkHost(req: FastifyRequest): void {
    if (!this.checksHost) return;
    const claimed = new Set<string>();
    const raw = req.headers.host;
    if (typeof raw === 'string' && raw !== '') claimed.add(raw);
    // Behind a trusted proxy (trustProxy), X-Forwarded-Host is the name the browser used: both must be allowed.
    if (req.host && req.host !== raw) claimed.add(req.host);
    for (const h of claimed) {
      const name = hostName(h);
      if (this.hosts.has(name)) continue;
      throw new AppError(
        'unknown_host',
        `this server does not answer to the host name "${shown(h)}" (Host header); it answers only ${this.allowedHosts().join(', ')}. ` +
          'A web page loaded under another name and re-pointed at this address (DNS rebinding) would send exactly this request. ' +
          'If you reach Fairway under that name yourself (a reverse proxy, /etc/hosts), add it to allowedHosts (--allowed-hosts, FAIRWAY_ALLOWED_HOSTS)',
      );
    }
  }

  /** The origins of pages this server served itself: scheme://Host (and https://Host, a TLS proxy in front). */
  private selfOrigins(req: FastifyRequest): Set<string> {
    const out = new Set<string>();
    const scheme = req.protocol ?? 'http';
    for (const h of [req.headers.host, req.host]) {
      if (typeof h !== 'string' || h === '') continue;
      for (const s of new Set([scheme, 'https'])) {
        const n = normalizeOrigin(`${s}://${h}`);
        if (n) out.add(n);
      }
    }
    return out;
  }

  /** Throws 403 when a web page Fairway did not serve sent the request. */
  checkOrigin(req: FastifyRequest): void {
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    const fix = 'Open the Fairway UI itself, or use curl, the fairway CLI or a script (they send no Origin)';
    if (typeof origin === 'string') {
      const n = normalizeOrigin(origin);
      if (n !== null && this.origins.has(n)) return;
      if (n === null || !this.selfOrigins(req).has(n)) {
        const from = n === null ? `a page without a usable origin (Origin: ${shown(origin)}; a sandboxed frame, a file:// page or a redirect)` : `the web page at ${shown(n)} (Origin)`;
        throw new AppError(
          'cross_site',
          `refused: this request came from ${from}; Fairway only answers pages it serves itself, so other web pages cannot start or cancel builds or read its answers. ` +
            `${fix}. Add the origin to allowedOrigins (--allowed-origins, FAIRWAY_ALLOWED_ORIGINS) if that page is yours`,
        );
      }
    }
    if (site === 'cross-site' || site === 'same-site') {
      throw new AppError(
        'cross_site',
        `refused: this request came from another web page (Sec-Fetch-Site: ${site}: a link, image, form or script on a page Fairway did not serve${site === 'same-site' ? ', e.g. another port of the same host' : ''}); ` +
          `Fairway's API only answers its own pages, so other pages cannot start or cancel builds or read its answers. ${fix}`,
      );
    }
  }
}

/** Whether a route is exempt from the Origin check: the UI's page and assets and the health checks, never an API route. */
function exempt(req: FastifyRequest): boolean {
  const route = req.routeOptions.url;
  return route !== undefined && routeScope(req) === 'public' && !route.startsWith('/api');
}

export function installCrossSite(app: FastifyInstance, o: CrossSiteOptions): CrossSiteGuard {
  const guard = new CrossSiteGuard(o);
  app.addHook('onRequest', async (req) => {
    guard.checkHost(req);
    if (!exempt(req)) guard.checkOrigin(req);
  });
  app.log.info({ hostCheck: guard.checksHost ? guard.allowedHosts() : 'off (not on loopback; set allowedHosts)', allowedOrigins: guard.allowedOrigins() }, 'cross-site settings');
  return guard;
}
