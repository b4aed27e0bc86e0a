/**
 * Operations routes: GET /metrics (Prometheus text format) and POST /api/admin/prune.
 * Every route declares its scope for the security layer (src/api/security.ts): /metrics is
 * `read` (like the other read-only API routes), pruning is `admin`.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { OPTIONAL_BODY, documented, errors } from '../api/index.js';
import { AppError, errorMessage } from '../util/errors.js';
import { parseBytes, parseDuration } from '../util/units.js';
import type { OpsMetrics } from './metrics.js';
import type { Pruner } from './prune.js';

const flag = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');
// The string forms parseBytes and parseDuration take, as patterns (for the document and the first check).
const SIZE = /^\s*[0-9]+(?:\.[0-9]+)?\s*(?:[kKmMgGtT]?[iI]?[bB]?)\s*$/;
const AGE = /^\s*(?=.*[1-9])(?:[0-9]+|(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+)\s*$/;
const size = z.union([z.number().int().nonnegative(), z.string().max(32).regex(SIZE, 'a size such as 500MB, 20GB, 1GiB or a number of bytes')]).transform((v, ctx) => {
  try {
    return parseBytes(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: errorMessage(e) });
    return z.NEVER;
  }
});
const age = z.union([z.number().int().positive(), z.string().max(32).regex(AGE, 'a duration greater than zero such as 90s, 30m, 7d or a number of milliseconds')]).transform((v, ctx) => {
  try {
    const ms = parseDuration(v);
    if (ms <= 0) throw new Error('must be greater than zero');
    return ms;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: errorMessage(e) });
    return z.NEVER;
  }
});
const pruneBody = z
  .object({
    dryRun: flag.optional(),
    /** One-off budget instead of the configured one (e.g. "what would 10GB remove?"). */
    maxBytes: size.optional(),
    maxAge: age.optional(),
  })
  .strict();

export interface OpsRoutesOptions {
  metrics: OpsMetrics;
  pruner: Pruner;
}

const PruneQuery = z.object({ dryRun: z.enum(['true', 'false', '1', '0']).optional().describe('`true`/`1`: report what would go, remove nothing') });
const Usage = z.object({ bytes: z.number(), objects: z.number().int() });
const PruneReport = z
  .object({
    dryRun: z.boolean(),
    trigger: z.string(),
    budget: z.object({ maxBytes: z.number().nullable(), maxAgeMs: z.number().nullable() }),
    before: Usage,
    after: Usage,
    removed: z.array(z.object({ key: z.string(), bytes: z.number(), status: z.string(), lastAccess: z.string(), reason: z.string() })),
    pinned: z.number().int(),
    overBudget: z.boolean(),
    errors: z.array(z.object({ key: z.string(), error: z.string() })),
    blobs: z
      .object({ removed: z.number().int(), bytes: z.number(), young: z.number().int(), storedBytes: z.number(), skipped: z.string().optional(), errors: z.number().int() })
      .describe('the blob collection of the pass: unreferenced image blobs deleted (dry run: that would be), those kept as younger than the grace period'),
    startedAt: z.string(),
    durationMs: z.number(),
  })
  .describe('what was (or would be) removed');

/** Parses the prune options from the body and `?dryRun=`, with the message clients know. */
function pruneOptions(dryRun: string | undefined, rawBody: unknown): z.output<typeof pruneBody> {
  const body = rawBody === undefined || rawBody === null ? {} : rawBody;
  // The body is checked as it came; `?dryRun=` (checked at the edge) then wins over its dryRun.
  const parsed = typeof body === 'object' && !Array.isArray(body) ? pruneBody.safeParse(body) : null;
  if (!parsed?.success) {
    const issue = parsed?.error.issues[0];
    throw new AppError('bad_request', `invalid prune request: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'expected a JSON object'} (fields: dryRun, maxBytes, maxAge)`);
  }
  return dryRun !== undefined ? { ...parsed.data, dryRun: dryRun === 'true' || dryRun === '1' } : parsed.data;
}

/**
 * The operations routes as a Fastify plugin: `app.register(opsRoutes, { metrics, pruner })`.
 * The prune options are checked in the handler (body and query together, with their own
 * message); the schema describes them for the document.
 */
export const opsRoutes: FastifyPluginAsync<OpsRoutesOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const tags = ['ops'];
  app.get(
    '/metrics',
    { config: { scope: 'read' }, schema: { tags, summary: 'Prometheus metrics (text format)', response: { 200: { description: 'metrics', content: { 'text/plain': { schema: z.string() } } } } } },
    async (_req, reply) => {
      const text = await o.metrics.metrics();
      return reply.header('Cache-Control', 'no-store').type(o.metrics.contentType).send(text);
    },
  );

  app.post(
    '/api/admin/prune',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        summary: 'Apply the store budget now (or report what it would remove)',
        querystring: PruneQuery,
        body: documented(pruneBody.nullable().optional().describe('the options; absent or null: the configured budget')),
        [OPTIONAL_BODY]: true,
        response: { 200: PruneReport, ...errors(400, 401, 403) },
      },
    },
    async (req) => {
      const p = pruneOptions(req.query.dryRun, req.body);
      return o.pruner.run({
        dryRun: p.dryRun ?? false,
        trigger: 'api',
        ...(p.maxBytes !== undefined ? { maxBytes: p.maxBytes } : {}),
        ...(p.maxAge !== undefined ? { maxAgeMs: p.maxAge } : {}),
      });
    },
  );
};
