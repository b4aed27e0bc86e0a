/**
 * Serves the web UI: `/` is the page, `/ui/<name>` its content-hashed script and stylesheet,
 * built by scripts/build-ui.mjs into dist/ui/static. Files are read once at start and served
 * from memory with a strict Content-Security-Policy (no inline script or style, same-origin
 * fetch and websocket only); the page talks to the server through the public HTTP API only.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ErrorBody } from '../api/index.js';

export const UI_BUDGET_BYTES = 60_000;

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
};

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

export interface UiOptions {
  /** Directory with index.html and the hashed assets; default dist/ui/static. */
  dir?: string;
}

/** dist/ui/static next to the compiled plugin, or from the repository root when run from src/. */
export function defaultUiDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const candidates = [join(here, 'static'), join(here, '..', '..', 'dist', 'ui', 'static')];
  return candidates.find((d) => existsSync(join(d, 'index.html'))) ?? candidates[0]!;
}

function loadAssets(dir: string): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(join(dir, 'index.html'))) return assets;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type || name === 'manifest.json') continue;
    const body = readFileSync(join(dir, name));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 20)}"` });
  }
  return assets;
}

function securityHeaders(reply: FastifyReply): void {
  reply.header('Content-Security-Policy', CONTENT_SECURITY_POLICY);
  reply.header('X-Content-Type-Options', 'nosniff');
  reply.header('Referrer-Policy', 'no-referrer');
  reply.header('X-Frame-Options', 'DENY');
  reply.header('Cross-Origin-Opener-Policy', 'same-origin');
}

function send(req: FastifyRequest, reply: FastifyReply, a: Asset, cacheControl: string): FastifyReply {
  securityHeaders(reply);
  reply.header('Cache-Control', cacheControl);
  reply.header('ETag', a.etag);
  const inm = req.headers['if-none-match'];
  if (inm?.split(',').some((t) => t.trim() === a.etag)) return reply.code(304).send();
  return reply.type(a.type).send(a.body);
}

const Html = { description: 'the web UI page', content: { 'text/html': { schema: z.string() } } };
const Asset = { description: 'a content-hashed asset (script, stylesheet)', content: { 'text/javascript': { schema: z.string() }, 'text/css': { schema: z.string() } } };
const UNBUILT = { description: 'the UI is not built', content: { 'text/plain': { schema: z.string() } } };

/**
 * The web UI as a Fastify plugin: `app.register(uiRoutes, { dir })` (default dir: dist/ui/static).
 * Its routes are `public` (src/api/security.ts): the page and its assets load without a token.
 */
export const uiRoutes: FastifyPluginAsync<UiOptions> = async (instance, opts) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const dir = opts.dir ?? defaultUiDir();
  const assets = loadAssets(dir);
  const index = assets.get('index.html');
  if (!index) app.log.warn({ dir }, 'the web UI is not built (run `node scripts/setup.mjs`); / will answer 503');

  const page = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!index) {
      securityHeaders(reply);
      return reply.code(503).type('text/plain; charset=utf-8').send('The Fairway web UI is not built. Run `node scripts/setup.mjs` and restart. The API under /api works without it.\n');
    }
    // The page names its assets by content hash, so only the page itself must be revalidated.
    return send(req, reply, index, 'no-cache');
  };
  const schema = { tags: ['ui'], summary: 'The web UI', response: { 200: Html, 503: UNBUILT } };
  app.get('/', { config: { scope: 'public' }, schema }, page);
  app.get('/index.html', { config: { scope: 'public' }, schema }, page);

  app.get(
    '/ui/:name',
    { config: { scope: 'public' }, schema: { tags: ['ui'], summary: 'A UI asset', params: z.object({ name: z.string().max(100) }), response: { 200: Asset, 404: ErrorBody } } },
    async (req, reply) => {
      const { name } = req.params;
      const a = name === 'index.html' ? undefined : assets.get(name);
      if (!a) return reply.code(404).send({ error: { code: 'not_found', message: `no UI asset ${JSON.stringify(name)}` } });
      return send(req, reply, a, 'public, max-age=31536000, immutable');
    },
  );
};
