/**
 * The build record every client sees (GET /api/builds/{id}), defined once: this zod schema is the
 * response schema of the routes (hence /openapi.json), `BuildRecord` the service's type and the
 * UI page's (src/ui/page/types.ts) are inferred from it. Its `spec` is the resolved spec's one
 * schema (src/request/spec-schema.ts). Imports only zod and that zod-only file, so the page can
 * use the type without the server's code.
 */
import { z } from 'zod';
import { resolvedSpecSchema } from '../request/spec-schema.js';

const RequestEcho = z
  .strictObject({
    caddyVersion: z.string(),
    os: z.string(),
    arch: z.string(),
    arm: z.string().optional(),
    plugins: z.array(z.strictObject({ module: z.string(), version: z.string().optional(), replace: z.string().optional() })),
  })
  .describe('the request as it was asked (normalised); versions may be queries such as latest');

export const buildRecordSchema = z
  .strictObject({
    id: z.string(),
    key: z.string(),
    status: z.enum(['queued', 'running', 'succeeded', 'failed', 'canceled']),
    phase: z.enum(['queued', 'resolving', 'building', 'storing', 'done', 'failed', 'canceled']).describe('where the build is: queued, resolving, building, storing, then done, failed or canceled'),
    position: z.number().int().optional().describe('place in the queue (queued builds)'),
    cached: z.boolean().describe('served from the store without building'),
    request: RequestEcho,
    spec: resolvedSpecSchema,
    filename: z.string(),
    sha256: z.string().optional(),
    size: z.number().optional(),
    goVersion: z.string().optional().describe('the Go version in the binary (go version -m)'),
    error: z.string().optional(),
    createdAt: z.string(),
    startedAt: z.string().optional(),
    finishedAt: z.string().optional(),
    durationMs: z.number().optional(),
    agent: z.string().optional(),
    provenance: z.enum(['signed', 'unsigned']).optional().describe('whether the provenance (links.provenance) is signed by the builder'),
    rebuildOf: z.string().optional().describe('a verification rebuild (POST /api/builds/:id/rebuild): the build it rebuilt'),
    links: z.object({ self: z.string(), log: z.string(), artifact: z.string(), buildinfo: z.string(), provenance: z.string() }),
  })
  .describe('a build');

/** A build as the API answers it. */
export type BuildRecord = z.infer<typeof buildRecordSchema>;
export type BuildStatus = BuildRecord['status'];
