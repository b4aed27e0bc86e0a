/**
 * Recipes that follow upstream (docs/recipes.md): a recipe with what the watcher knows of it (the
 * promoted set per Caddy version, the candidates tried, the versions found broken), a watch run
 * on demand, and a recipe's download link (the promoted set's pinned /api/download URL).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ImageRegistry } from '../registry/index.js';
import { fits, RecipeWatchStateSchema, type RecipeWatchState, type WatchReport } from '../upstream/index.js';
import { AppError, NotFoundError } from '../util/errors.js';
import { pinnedDownloadUrl } from './compat.js';
import { RecipeOut, RecipeParams } from './registry.js';
import { CaddyVersion, errors, platformValues } from './schemas.js';
import type { Platform } from '../request/index.js';

/** The watcher as the API sees it (src/main wires it; absent parts when watching is off). */
export interface WatchApi {
  /** Watching is on (watchInterval > 0). */
  readonly enabled: boolean;
  state(recipe: string): Promise<RecipeWatchState>;
  run(reason: string): Promise<WatchReport>;
}

export interface UpstreamApiOptions {
  registry: ImageRegistry;
  watch: WatchApi;
  platforms: readonly Platform[];
}

const WatchReportSchema = z.object({
  ran: z.boolean().describe('false when another hub holds the watch'),
  why: z.string().optional(),
  recipes: z.array(z.object({ recipe: z.string(), outcome: z.string() })),
});

export const upstreamApi: FastifyPluginAsync<UpstreamApiOptions> = async (instance, { registry, watch, platforms }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const tags = ['registry'];
  const { oses, arches, arms } = platformValues(platforms);

  const recipe = async (name: string) => {
    const r = (await registry.recipes()).find((x) => x.name === name);
    if (!r) throw new NotFoundError(`recipe ${name}`);
    return r;
  };

  app.get(
    '/api/recipes/:name',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getRecipe',
        summary: 'A recipe and what the watcher knows of it: the promoted set per Caddy version, the candidates tried, the versions found broken',
        params: RecipeParams,
        response: {
          200: RecipeOut.extend({ watching: z.boolean().describe('the server watches upstream (watchInterval > 0)'), upstream: RecipeWatchStateSchema }),
          ...errors(401, 403, 404),
        },
      },
    },
    async (req) => {
      const { name } = req.params as { name: string };
      const r = await recipe(name);
      const upstream = await watch.state(name);
      // Only sets of the recipe as it is now (the watcher drops the others at its next run).
      return { ...r, watching: watch.enabled, upstream: { ...upstream, promoted: upstream.promoted.filter((p) => fits(r, p)) } };
    },
  );

  app.post(
    '/api/watch',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        operationId: 'runWatch',
        summary: 'Look for new Caddy and plugin versions now and trial, promote or fail each recipe (admin); ?wait=true answers when done',
        querystring: z.object({ wait: z.enum(['true', 'false']).optional().describe('answer when the run is done (default: at once, 202)') }),
        response: { 200: WatchReportSchema, 202: z.object({ started: z.literal(true) }), ...errors(401, 403, 409) },
      },
    },
    async (req, reply) => {
      // The schema is only documented (checked here, after the admin scope): a wait that is neither value is a 400.
      const wait = (req.query as { wait?: unknown }).wait;
      if (wait !== undefined && wait !== 'true' && wait !== 'false') throw new AppError('bad_request', `wait must be true or false, not ${JSON.stringify(wait).slice(0, 40)}`);
      if (!watch.enabled) throw new AppError('watch_off', 'this server does not watch upstream (watchInterval is 0): set watchInterval (env FAIRWAY_WATCH_INTERVAL, e.g. 1h) and restart');
      const run = watch.run('api');
      if ((req.query as { wait?: string }).wait === 'true') return reply.code(200).send(await run);
      run.catch((err: Error) => req.log.warn({ err: err.message }, 'watch run failed'));
      return reply.code(202).send({ started: true });
    },
  );

  app.get(
    '/api/recipes/:name/download',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'downloadRecipe',
        summary: "Redirect (302) to the pinned /api/download URL of the recipe's promoted set for a platform (the newest Caddy promoted, or caddyVersion's)",
        params: RecipeParams,
        querystring: z.object({
          os: z.enum(oses).describe('GOOS'),
          arch: z.enum(arches).describe('GOARCH'),
          arm: z.enum(arms).optional().describe('GOARM (arch arm only)'),
          caddyVersion: CaddyVersion.optional().describe('a promoted Caddy version (default: the newest promoted)'),
        }),
        response: { 302: z.undefined().describe('Location: the pinned /api/download URL'), ...errors(401, 403, 404, 409) },
      },
    },
    async (req, reply) => {
      const { name } = req.params as { name: string };
      const q = req.query as { os: string; arch: string; arm?: string; caddyVersion?: string };
      const r = await recipe(name);
      const state = await watch.state(name);
      state.promoted = state.promoted.filter((p) => fits(r, p));
      const wanted = q.caddyVersion && q.caddyVersion !== 'latest' ? (q.caddyVersion.startsWith('v') ? q.caddyVersion : `v${q.caddyVersion}`) : null;
      const set = wanted ? state.promoted.find((p) => p.caddyVersion === wanted) : state.promoted[0];
      if (!set) {
        const have = state.promoted.map((p) => p.caddyVersion).join(', ') || 'none';
        throw new AppError(
          'not_promoted',
          `recipe ${name} has no promoted set${wanted ? ` for Caddy ${wanted}` : ''} (promoted: ${have}); see GET /api/recipes/${name} for its candidates${watch.enabled ? '' : ', and turn watching on (watchInterval)'}`,
        );
      }
      const url = pinnedDownloadUrl({ os: q.os, arch: q.arch, ...(q.arm ? { arm: q.arm } : {}), caddyVersion: set.caddyVersion, plugins: set.plugins });
      return reply.redirect(url, 302);
    },
  );
};
