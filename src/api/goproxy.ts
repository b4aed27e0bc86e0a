/**
 * The fleet module proxy's route (docs/distributed.md "Fleet caches"): `GET /goproxy/<escaped
 * module>/@v/<escaped version>.info|.mod|.zip`, the GOPROXY protocol, answered by a hub (and
 * `serve`) from its own module cache, read-through (src/fleet). It needs the `agent` scope, which
 * only a token that lists it (or `admin`) has, never an anonymous client. The path is checked by
 * the fleet part before anything touches a file or a go command; refusals are plain text, the way
 * module proxies answer (the go command shows the text): 403 for a module the build policy denies
 * or a private one, 503 when too many fills are under way, 507 when the disk is short.
 */
import { createReadStream } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GOPROXY_PATH_PATTERN, type FleetModuleProxy } from '../fleet/index.js';
import { documented, errors } from './schemas.js';

export interface GoproxyApiOptions {
  proxy: FleetModuleProxy;
}

const text = (description: string) => ({ description, content: { 'text/plain': { schema: z.string() } } });

export const goproxyApi: FastifyPluginAsync<GoproxyApiOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/goproxy/*',
    {
      config: { scope: 'agent' },
      schema: {
        tags: ['ops'],
        summary: "Fleet module proxy (GOPROXY protocol) over the hub's module cache: <module>/@v/<version>.info|.mod|.zip; @v/list and @latest answer 404 (agent scope)",
        // Described here, checked by the fleet part (parseGoproxyPath), which answers 400 in plain text.
        params: documented(
          z.object({
            '*': z.string().max(1024).regex(new RegExp(GOPROXY_PATH_PATTERN)).describe('escaped module path, then /@v/<escaped version>.info|.mod|.zip (or /@v/list, /@latest: 404)'),
          }),
        ),
        response: {
          200: {
            description: 'the file from the module cache',
            content: { 'application/zip': { schema: z.string() }, 'application/json': { schema: z.string() }, 'text/plain': { schema: z.string() } },
          },
          400: text('not a GOPROXY request, or a module path or version Go does not accept'),
          // 403 is also the answer (plain text) for a module the build policy denies or a private one (GONOPROXY/GOPRIVATE).
          ...errors(401, 403),
          404: text('not in the cache and could not be fetched, or not served here (list, @latest, sumdb): the go command asks the next proxy'),
          503: text('too many module fills at once on this hub (a bounded queue is full): the agent asks its next proxy'),
          507: text('not enough free disk space on the hub for a fill (minFreeDisk): the agent asks its next proxy'),
        },
      },
    },
    async (req, reply) => {
      // The raw URL, not the decoded parameter: the fleet part decodes it once and checks the result.
      const raw = (req.raw.url ?? '').replace(/^\/goproxy\//, '');
      const a = await o.proxy.answer(raw);
      reply.header('cache-control', 'no-store');
      if (a.status !== 200) return reply.code(a.status).type('text/plain; charset=utf-8').send(`${a.message}\n`);
      reply.header('content-length', String(a.size)).type(a.contentType);
      // The zod provider types 200 as text; the body is the file's stream (Fastify streams it).
      const body: unknown = req.method === 'HEAD' ? '' : createReadStream(a.file);
      return reply.send(body as string);
    },
  );
};
