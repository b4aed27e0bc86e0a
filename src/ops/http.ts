/**
 * Operations routes: GET /metrics (Prometheus text format) and POST /api/admin/prune.
 * Every route declares its scope for the security layer (src/api/security.ts): /metrics is
 * `read` (like the other read-only API routes), pruning is `admin`.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AppError } from '../util/errors.js';
import { parseBytes, parseDuration } from '../util/units.js';
import type { OpsMetrics } from './metrics.js';
import type { Pruner } from './prune.js';

const flag = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');
const size = z.union([z.number().int().nonnegative(), z.string().max(32)]).transform((v, ctx) => {
  try {
    return parseBytes(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
const age = z.union([z.number().int().positive(), z.string().max(32)]).transform((v, ctx) => {
  try {
    const ms = parseDuration(v);
    if (ms <= 0) throw new Error('must be greater than zero');
    return ms;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
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

export function opsRoutes(o: OpsRoutesOptions) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', { config: { scope: 'read' } }, async (_req, reply) => {
      const text = await o.metrics.metrics();
      return reply.header('Cache-Control', 'no-store').type(o.metrics.contentType).send(text);
    });

    app.post('/api/admin/prune', { config: { scope: 'admin' } }, async (req) => {
      const q = (req.query ?? {}) as Record<string, unknown>;
      const body = req.body === undefined || req.body === null || req.body === '' ? {} : req.body;
      const parsed = pruneBody.safeParse({ ...(typeof body === 'object' ? body : {}), ...(q.dryRun !== undefined ? { dryRun: q.dryRun } : {}) });
      if (!parsed.success || typeof body !== 'object') {
        const issue = parsed.success ? undefined : parsed.error.issues[0];
        throw new AppError(400, 'bad_request', `invalid prune request: ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'expected a JSON object'} (fields: dryRun, maxBytes, maxAge)`);
      }
      const p = parsed.data;
      return o.pruner.run({
        dryRun: p.dryRun ?? false,
        trigger: 'api',
        ...(p.maxBytes !== undefined ? { maxBytes: p.maxBytes } : {}),
        ...(p.maxAge !== undefined ? { maxAgeMs: p.maxAge } : {}),
      });
    });
  };
}
