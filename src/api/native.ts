/**
 * The native JSON API as a Fastify plugin: builds (request, status, cancel, log, artifact, build
 * info), version/platform/statistics/agent listings, and the health checks. Routes only
 * translate HTTP to service calls; build specs are validated by the service's spec parser.
 * Registered by createApi (src/api/index.ts) with `app.register(nativeApi, opts)`.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { BuildService, BuildStatus } from '../service/index.js';
import { ARM_VERSIONS } from '../request/index.js';
import { CycloneDxDocument, SBOM_MEDIA_TYPE, SpdxDocument, type SbomFormat } from '../sbom/index.js';
import { sendArtifact } from './artifact.js';
import { fromSeq, logHttp, logWebSocket } from './logs.js';
import { AppError } from '../util/errors.js';
import { BINARY, BuildIdParams, BuildRecord, buildRequestBody, DsseEnvelope, QueueDepth, errors } from './schemas.js';
import { requestContext, requireScope } from './security.js';

export interface NativeApiOptions {
  service: BuildService;
  /** Redirect artifact downloads to presigned store URLs when available. */
  downloadRedirect?: boolean;
  /** Extra readiness checks (store, Redis). */
  ready?: () => Promise<Record<string, string>>;
  /** Whether this Authorization header is an admin's: only admins see /readyz details (raw store and Redis errors). */
  readyDetails?: (authorization: string | undefined) => Promise<boolean>;
  /** The public key builds are signed with (PEM), served at /api/signing-key; absent: this server knows none. */
  publicKeyPem?: string;
  /** The public key the image indexes behind tags are signed with (PEM), served at /api/index-signing-key; absent: indexes are not signed. */
  indexPublicKeyPem?: string;
}

const ListQuery = z.object({
  limit: z.string().optional().describe('how many recent builds (1–500, default 50; anything else means 50)'),
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'sha256: 64 lowercase hex digits')
    .optional()
    .describe("only the finished builds whose binary has this sha256 (64 lowercase hex digits): how `fairway verify` finds a file's build"),
  status: z
    .string()
    .regex(/^(queued|running|succeeded|failed|canceled)(,(queued|running|succeeded|failed|canceled))*$/, 'status: a comma-separated list of queued, running, succeeded, failed, canceled')
    .optional()
    .describe('only builds in these states, e.g. `queued,running` (default: all; queued and running builds come first)'),
});
const VersionsQuery = z.object({ refresh: z.string().optional().describe('`1`: ask the module proxy again now (needs the build scope)') });
const SbomQuery = z.object({
  format: z.enum(['spdx', 'cyclonedx']).optional().describe('`spdx` (SPDX 2.3 JSON, the default) or `cyclonedx` (CycloneDX 1.6 JSON); without it, the Accept header chooses'),
});
/** `?format=` first; else the first of the two media types the Accept header names; else SPDX. */
function sbomFormat(format: SbomFormat | undefined, accept: string | undefined): SbomFormat {
  if (format) return format;
  const a = (accept ?? '').toLowerCase();
  const spdx = a.indexOf(SBOM_MEDIA_TYPE.spdx);
  const cdx = a.indexOf(SBOM_MEDIA_TYPE.cyclonedx);
  return cdx >= 0 && (spdx < 0 || cdx < spdx) ? 'cyclonedx' : 'spdx';
}
const LogQuery = z.object({ from: z.string().optional().describe('first line number to send (default 0, or after `Last-Event-ID`)') });

/** OpenAPI links from a build record (`id`) to the operations on that build. */
const buildLinks = (ops: string[]) => Object.fromEntries(ops.map((op) => [op, { operationId: op, parameters: { id: '$response.body#/id' } }]));
/**
 * A build answered 200 has succeeded (everything is there); one answered 202 is queued: its
 * artifact, build info and provenance answer 409 until it succeeds.
 */
const BUILD_LINKS = {
  200: buildLinks(['getBuild', 'getBuildLog', 'getBuildArtifact', 'getBuildInfo', 'getBuildProvenance', 'getBuildSbom', 'getBuildSbomAttestation', 'rebuildBuild']),
  202: buildLinks(['getBuild', 'getBuildLog', 'cancelBuild', 'getBuildArtifact', 'getBuildInfo', 'getBuildProvenance', 'getBuildSbom', 'getBuildSbomAttestation']),
};

/** The builds resource: request, list, status, cancel. */
const buildRoutes: FastifyPluginAsync<NativeApiOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const { service } = o;
  const tags = ['builds'];

  app.post(
    '/api/builds',
    {
      config: { scope: 'build' },
      schema: {
        tags,
        summary: 'Request a build (200 on a cache hit, else 202 queued)',
        body: buildRequestBody(service.platforms.list(), service.maxPlugins),
        response: { 200: BuildRecord, 202: BuildRecord, ...errors(400, 401, 403, 413, 415, 422, 429, 502, 507) },
      },
      links: BUILD_LINKS,
    },
    async (req, reply) => {
      const build = await service.request(req.body ?? {}, requestContext(req));
      return reply.code(build.status === 'succeeded' ? 200 : 202).send(build);
    },
  );

  app.get(
    '/api/builds',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        summary: 'Builds in flight (queued, running) and recent finished ones, newest first (or those of one binary: ?sha256=; of some states: ?status=), and the queue depth',
        querystring: ListQuery,
        response: { 200: z.object({ builds: z.array(BuildRecord), queue: QueueDepth }) },
      },
    },
    async (req) => {
      const limitRaw = Number(req.query.limit ?? 50);
      const limit = Number.isInteger(limitRaw) && limitRaw > 0 ? Math.min(limitRaw, 500) : 50;
      const filter = {
        ...(req.query.sha256 !== undefined ? { sha256: req.query.sha256 } : {}),
        ...(req.query.status !== undefined ? { status: req.query.status.split(',') as BuildStatus[] } : {}),
      };
      return { builds: await service.list(limit, filter), queue: await service.depth() };
    },
  );

  app.get(
    '/api/builds/:id',
    { config: { scope: 'read' }, schema: { tags, operationId: 'getBuild', summary: "A build's status and record", params: BuildIdParams, response: { 200: BuildRecord, ...errors(400, 404) } } },
    async (req) => service.get(req.params.id),
  );

  app.delete(
    '/api/builds/:id',
    {
      config: { scope: 'build' },
      schema: {
        tags,
        operationId: 'cancelBuild',
        summary: 'Cancel a queued or running build (its client, or an admin); the record stays, status canceled',
        params: BuildIdParams,
        response: { 200: BuildRecord, ...errors(400, 403, 404, 409) },
      },
    },
    async (req) => service.cancel(req.params.id, requestContext(req)),
  );
};

/** A build's log (text, SSE, websocket), artifact and build info. */
const buildOutputRoutes: FastifyPluginAsync<NativeApiOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const { service } = o;
  const tags = ['builds'];

  app.route({
    method: 'GET',
    url: '/api/builds/:id/log',
    config: { scope: 'read' },
    schema: {
      tags,
      operationId: 'getBuildLog',
      summary: 'The build log: plain text, SSE (Accept: text/event-stream) or a websocket; replayed from the first line',
      params: BuildIdParams,
      querystring: LogQuery,
      response: { 200: { description: 'the log', content: { 'text/plain': { schema: z.string() }, 'text/event-stream': { schema: z.string() } } }, ...errors(404) },
    },
    handler: (req, reply) => logHttp(service)(req, reply, req.params.id, fromSeq(req.query.from, req.headers['last-event-id'])),
    wsHandler: (socket, req) => logWebSocket(service)(socket, req.params.id, fromSeq(req.query.from, req.headers['last-event-id'])),
  });

  app.get(
    '/api/builds/:id/artifact',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getBuildArtifact',
        summary: 'Download the binary (Range, ETag, X-Checksum-Sha256); 409 until the build succeeded',
        params: BuildIdParams,
        response: { 200: BINARY, ...errors(404, 409, 416) },
      },
    },
    async (req, reply) => sendArtifact(service, req.params.id, req, reply, o.downloadRedirect ?? false),
  );

  app.get(
    '/api/builds/:id/buildinfo',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getBuildInfo',
        summary: "The binary's Go build info (409 until the build succeeded)",
        params: BuildIdParams,
        response: { 200: z.unknown().describe('the build info Go recorded in the binary'), ...errors(404, 409, 410) },
      },
    },
    async (req) => service.buildInfo(req.params.id),
  );

  app.post(
    '/api/builds/:id/rebuild',
    {
      config: { scope: 'build' },
      schema: {
        tags,
        operationId: 'rebuildBuild',
        summary: 'Build a finished build again, on another agent when there is one, to compare the bytes (fairway verify --rebuild); 202 queued, 200 when already rebuilt',
        params: BuildIdParams,
        response: { 200: BuildRecord, 202: BuildRecord, ...errors(401, 403, 404, 409, 429, 507) },
      },
      links: BUILD_LINKS,
    },
    async (req, reply) => {
      const build = await service.rebuild(req.params.id, requestContext(req));
      return reply.code(build.status === 'succeeded' ? 200 : 202).send(build);
    },
  );

  app.get(
    '/api/builds/:id/provenance',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getBuildProvenance',
        summary: 'The signed SLSA v1 provenance of the binary: a DSSE envelope (cosign verify-blob-attestation --signature)',
        params: BuildIdParams,
        response: { 200: DsseEnvelope, ...errors(404, 409, 410) },
      },
    },
    async (req, reply) => {
      const env = await service.provenance(req.params.id);
      reply.header('x-fairway-provenance', env.signatures.length > 0 ? 'signed' : 'unsigned');
      return env;
    },
  );

  app.get(
    '/api/builds/:id/sbom',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getBuildSbom',
        summary: "The binary's SBOM, made from its Go build info: SPDX 2.3 or CycloneDX 1.6 JSON (?format= or Accept); 409 until the build succeeded (docs/sbom.md)",
        params: BuildIdParams,
        querystring: SbomQuery,
        response: {
          200: {
            description: 'the SBOM; X-Fairway-Sbom says whether it is the stored attestation (signed or unsigned) or was made now from the build info (generated)',
            content: { [SBOM_MEDIA_TYPE.spdx]: { schema: SpdxDocument }, [SBOM_MEDIA_TYPE.cyclonedx]: { schema: CycloneDxDocument } },
          },
          ...errors(404, 409, 410),
        },
      },
    },
    async (req, reply) => {
      const format = sbomFormat(req.query.format, req.headers.accept);
      const sbom = await service.sbom(req.params.id, format);
      reply.header('x-fairway-sbom', sbom.source).header('vary', 'Accept');
      // The stored (or made) bytes as they are: canonical JSON of a document of the schema above, never re-serialized.
      return reply.type(SBOM_MEDIA_TYPE[format]).send(sbom.bytes as never);
    },
  );

  app.get(
    '/api/builds/:id/sbom/attestation',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        operationId: 'getBuildSbomAttestation',
        summary:
          "The builder's signed SBOM attestation of the binary: a DSSE envelope of an in-toto statement, predicateType https://spdx.dev/Document (cosign verify-blob-attestation --type spdxjson --signature); 404 for builds made before SBOMs were attested",
        params: BuildIdParams,
        response: { 200: DsseEnvelope, ...errors(404, 409, 410) },
      },
    },
    async (req, reply) => {
      const env = await service.sbomAttestation(req.params.id);
      reply.header('x-fairway-sbom', env.signatures.length > 0 ? 'signed' : 'unsigned');
      return env;
    },
  );

  app.get(
    '/api/signing-key',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        summary: 'The public key (PEM) that builds and images are signed with',
        response: { 200: { description: 'the public key', content: { 'application/x-pem-file': { schema: z.string() } } }, ...errors(404) },
      },
    },
    async (_req, reply) => {
      if (!o.publicKeyPem) {
        throw new AppError(
          'no_signing_key',
          'this server has no signing key: its builds carry unsigned provenance; set signingKey on the builders (serve or agents) and publicKey on hubs (docs/provenance.md)',
        );
      }
      return reply.type('application/x-pem-file').send(o.publicKeyPem);
    },
  );

  app.get(
    '/api/index-signing-key',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        summary: 'The public key (PEM) that the image indexes behind registry tags are signed with',
        response: { 200: { description: 'the public key', content: { 'application/x-pem-file': { schema: z.string() } } }, ...errors(404) },
      },
    },
    async (_req, reply) => {
      if (!o.indexPublicKeyPem) {
        throw new AppError(
          'no_index_signing_key',
          'this server signs no image indexes: a hub needs publicKey (the build key its agents sign with, to verify each platform image) and uses indexSigningKey or the key it makes in its data dir (docs/provenance.md, "Tags")',
        );
      }
      return reply.type('application/x-pem-file').send(o.indexPublicKeyPem);
    },
  );
};

const Stats = z.object({ artifacts: z.number().int(), succeeded: z.number().int(), failed: z.number().int(), queue: QueueDepth });
const Agents = z.object({
  agents: z.array(
    z.object({
      id: z.string(),
      host: z.string().optional(),
      go: z.string().optional(),
      xcaddy: z.string().optional(),
      concurrency: z.number().optional(),
      jobs: z.array(z.string()).optional().describe('keys of the builds it runs now'),
      startedAt: z.string().optional(),
      lastSeen: z.string().optional().describe('last heartbeat'),
      // shared build cache (docs/distributed.md)
      cache: z
        .object({
          shared: z.boolean().describe('whether the shared tier (the store) is on'),
          hits: z.number().int(),
          misses: z.number().int(),
          hitRate: z.number().describe('hits / (hits + misses) since the agent started'),
          sharedHits: z.number().int().describe('hits answered from the shared tier'),
          corrupt: z.number().int().describe('corrupt entries found, deleted and answered as misses'),
          sharedBytesRead: z.number().int().optional().describe('bytes read from the shared tier'),
          sharedBytesWritten: z.number().int().optional().describe('bytes written to the shared tier'),
        })
        .optional()
        .describe("the agent's Go build cache lookups (GOCACHEPROG)"),
    }),
  ),
  queue: QueueDepth,
});

/** Versions, platforms, statistics and agents. */
const infoRoutes: FastifyPluginAsync<NativeApiOptions> = async (instance, { service }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const tags = ['info'];
  app.get(
    '/api/versions',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        summary: 'Caddy versions (newest first)',
        querystring: VersionsQuery,
        response: {
          200: z.strictObject({
            module: z.string().describe("Caddy's module path"),
            versions: z.array(z.strictObject({ version: z.string(), prerelease: z.boolean() })),
            latest: z.string().nullable(),
            refreshedAt: z.string().describe('when the list was last read from the module proxy'),
          }),
          ...errors(401, 403),
        },
      },
    },
    async (req, reply) => {
      // A refresh runs `go list` now: like any resolution, it needs the build scope.
      if (req.query.refresh === '1') requireScope(req, reply, 'build', 'refreshing the version list (?refresh=1 runs go list; without it the list is answered as last read, see refreshedAt)');
      return service.versions({ refresh: req.query.refresh === '1' });
    },
  );
  app.get(
    '/api/platforms',
    {
      config: { scope: 'read' },
      schema: {
        tags,
        summary: 'GOOS/GOARCH pairs this toolchain builds',
        response: { 200: z.object({ platforms: z.array(z.object({ os: z.string(), arch: z.string() })), arm: z.array(z.string()) }) },
      },
    },
    async () => ({ platforms: service.platforms.list(), arm: [...ARM_VERSIONS] }),
  );
  app.get('/api/stats', { config: { scope: 'read' }, schema: { tags, summary: 'Artifact and queue counts', response: { 200: Stats } } }, async () => service.stats());
  app.get('/api/agents', { config: { scope: 'read' }, schema: { tags, summary: 'Workers that run builds, and the queue depth', response: { 200: Agents } } }, async () => ({
    agents: await service.agents(),
    queue: await service.depth(),
  }));
};

const Status = z.object({ status: z.string() });

/** Liveness and readiness, without authentication. */
const healthRoutes: FastifyPluginAsync<NativeApiOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const tags = ['health'];
  app.get('/healthz', { config: { scope: 'public' }, schema: { tags, summary: 'The process answers', response: { 200: Status } } }, async () => ({ status: 'ok' }));
  let lastLogged = 0;
  app.get(
    '/readyz',
    {
      config: { scope: 'public' },
      schema: {
        tags,
        summary: 'The store and the queue answer (status only; with an admin token, the checks and the raw error of a failed one)',
        response: { 200: z.object({ status: z.string(), checks: z.record(z.string(), z.string()).optional() }), ...errors(503) },
      },
    },
    async (req, reply) => {
      let checks: Record<string, string> = {};
      let failure: Error | null = null;
      let timer: NodeJS.Timeout | undefined;
      try {
        // A Redis that is away queues commands (they would wait for it): not ready after 3 s.
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('the readiness checks did not answer within 3 s (store or Redis unreachable)')), 3000);
        });
        checks = o.ready ? await Promise.race([o.ready(), timeout]) : {};
      } catch (err) {
        failure = err as Error;
      } finally {
        clearTimeout(timer);
      }
      // Raw errors name hosts, ports, buckets: for admin tokens (and the server log) only.
      const details = o.readyDetails ? await o.readyDetails(req.headers.authorization).catch(() => false) : false;
      if (!failure) return details ? { status: 'ready', checks } : { status: 'ready' };
      if (Date.now() - lastLogged > 60_000) {
        lastLogged = Date.now();
        req.log.warn({ err: failure.message }, 'not ready: a readiness check failed (/readyz answers 503)');
      }
      const message = details ? failure.message : 'not ready: the artifact store or the queue does not answer; the server log has the cause (an admin token sees it here)';
      return reply.code(503).send({ error: { code: 'not_ready', message } });
    },
  );
};

/** The native API: every route group above, sharing the app's JSON error handler. */
export const nativeApi: FastifyPluginAsync<NativeApiOptions> = async (app, o) => {
  await app.register(buildRoutes, o);
  await app.register(buildOutputRoutes, o);
  await app.register(infoRoutes, o);
  await app.register(healthRoutes, o);
};
