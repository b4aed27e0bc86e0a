/**
 * Which methods a path answers to, from the routes themselves, so a request with another method
 * gets 405 with `Allow` (RFC 9110 §15.5.6) instead of a 404 that says the path does not exist.
 * Collected with an `onRoute` hook registered before any route; Fastify's HEAD routes for GET
 * routes are routes too.
 */
import type { FastifyInstance } from 'fastify';

interface RoutePattern {
  pattern: RegExp;
  methods: Set<string>;
}

export interface RouteMethods {
  /** The methods some route answers on this path (sorted), empty when no route has the path. */
  allowed(path: string): string[];
}

/** A Fastify route URL (`/api/builds/:id/log`, `/goproxy/*`) as an anchored regular expression. */
export function routePattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((seg) => {
      if (seg === '*') return '.*';
      if (seg.startsWith(':')) return '[^/]+';
      return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${source}$`);
}

/** Collects every route added to `app` after this call. */
export function collectRouteMethods(app: FastifyInstance): RouteMethods {
  const routes = new Map<string, RoutePattern>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const url = route.url;
    let r = routes.get(url);
    if (!r) {
      r = { pattern: routePattern(url), methods: new Set() };
      routes.set(url, r);
    }
    for (const m of methods) r.methods.add(m.toUpperCase());
  });
  return {
    allowed(path: string): string[] {
      const out = new Set<string>();
      for (const r of routes.values()) if (r.pattern.test(path)) for (const m of r.methods) out.add(m);
      return [...out].sort();
    },
  };
}
