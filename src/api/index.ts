/**
 * The HTTP API (Fastify): native JSON API, websocket/SSE logs, artifacts. Routes only translate
 * HTTP to service calls; validation of build specs happens in the service's spec parser.
 */
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { ARM_VERSIONS } from '../spec/index.js';
import type { BuildService } from '../service/index.js';
import { sendArtifact } from './artifact.js';
import { checkingIntervalMs, closeAfterEarlyErrors, DEFAULT_CONNECTIONS, limitConnectionsPerClient, type ConnectionOptions } from './connections.js';
import { DEV_CROSS_SITE, installCrossSite, type CrossSiteOptions } from './crosssite.js';
import { clientErrorHandler, frameworkErrors, installErrorHandlers } from './errors.js';
import { logHttp, logWebSocket } from './logs.js';
import { LOG_SERIALIZERS } from './redact.js';
import { DEV_SECURITY, installSecurity, requestContext, type SecurityOptions } from './security.js';

export interface ApiOptions {
  service: BuildService;
  logger: Logger;
  bodyLimit: number;
  /** Redirect artifact downloads to presigned store URLs when available. */
  downloadRedirect?: boolean;
  /** Extra readiness checks (store, Redis). */
  ready?: () => Promise<Record<string, string>>;
  /** Extra route plugins (compat API, UI, metrics) registered by the composition root. */
  plugins?: Array<(app: FastifyInstance) => Promise<void> | void>;
  /** Tokens, scopes and rate limits (src/api/security.ts); default: anonymous read+build, no limits. */
  security?: SecurityOptions;
  /** Fastify's trustProxy: take the client address from X-Forwarded-For (behind a reverse proxy). */
  trustProxy?: boolean | string;
  /** Host and Origin checks (src/api/crosssite.ts); default: a loopback server with no extra hosts or origins. */
  crossSite?: CrossSiteOptions;
  /** Header/body/keep-alive timeouts and the per-client connection cap (src/api/connections.ts). */
  connections?: ConnectionOptions;
}

const ID_PARAMS = {
  type: 'object',
  properties: { id: { type: 'string', maxLength: 128 } },
  required: ['id'],
} as const;

export async function createApi(o: ApiOptions): Promise<FastifyInstance> {
  const conn = o.connections ?? DEFAULT_CONNECTIONS;
  const app = Fastify({
    // Request URLs and errors are logged with secret query parameters redacted (src/api/redact.ts).
    loggerInstance: o.logger.child({}, { serializers: LOG_SERIALIZERS }) as FastifyBaseLogger,
    bodyLimit: o.bodyLimit,
    // Timeouts bound only the receiving of a request (headers, body) and idle keep-alive time.
    // No socket inactivity timeout (connectionTimeout): a response in progress (a long download,
    // a log stream, the blocking /api/download for up to the build timeout) is never cut.
    requestTimeout: conn.requestTimeoutMs,
    connectionTimeout: 0,
    keepAliveTimeout: conn.keepAliveTimeoutMs,
    http: { headersTimeout: conn.headersTimeoutMs, requestTimeout: conn.requestTimeoutMs, connectionsCheckingInterval: checkingIntervalMs(conn) },
    disableRequestLogging: false,
    maxParamLength: 200,
    return503OnClosing: true,
    ...(o.trustProxy !== undefined ? { trustProxy: o.trustProxy } : {}),
    // Errors raised before routing still answer in the JSON error shape (src/api/errors.ts).
    frameworkErrors,
    clientErrorHandler,
  });
  installErrorHandlers(app);
  app.server.headersTimeout = conn.headersTimeoutMs;
  limitConnectionsPerClient(app.server, conn.maxPerClient, app.log);
  closeAfterEarlyErrors(app);
  // Registered before the checks below: its hooks mark websocket upgrades, so an upgrade refused
  // by a check still gets its socket closed after the error answer (else it stays half-open).
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  // Before authentication: Host (DNS rebinding) and Origin (cross-site) checks (src/api/crosssite.ts).
  installCrossSite(app, o.crossSite ?? DEV_CROSS_SITE);
  // Before any route: every route is checked against its `config.scope` (src/api/security.ts).
  await installSecurity(app, o.security ?? DEV_SECURITY);
  const { service } = o;

  app.post('/api/builds', { config: { scope: 'build' } }, async (req, reply) => {
    const build = await service.request(req.body ?? {}, requestContext(req));
    return reply.code(build.status === 'succeeded' ? 200 : 202).send(build);
  });

  app.get('/api/builds', { config: { scope: 'read' } }, async (req) => {
    const limitRaw = Number((req.query as { limit?: string }).limit ?? 50);
    const limit = Number.isInteger(limitRaw) && limitRaw > 0 ? Math.min(limitRaw, 500) : 50;
    return { builds: await service.list(limit), queue: await service.depth() };
  });

  app.get('/api/builds/:id', { schema: { params: ID_PARAMS }, config: { scope: 'read' } }, async (req) => service.get((req.params as { id: string }).id));

  app.delete('/api/builds/:id', { schema: { params: ID_PARAMS }, config: { scope: 'build' } }, async (req) => service.cancel((req.params as { id: string }).id, requestContext(req)));

  app.route({
    method: 'GET',
    url: '/api/builds/:id/log',
    schema: { params: ID_PARAMS },
    config: { scope: 'read' },
    handler: logHttp(service),
    wsHandler: logWebSocket(service),
  });

  app.get('/api/builds/:id/artifact', { schema: { params: ID_PARAMS }, config: { scope: 'read' } }, async (req, reply) =>
    sendArtifact(service, (req.params as { id: string }).id, req, reply, o.downloadRedirect ?? false),
  );

  app.get('/api/builds/:id/buildinfo', { schema: { params: ID_PARAMS }, config: { scope: 'read' } }, async (req) => service.buildInfo((req.params as { id: string }).id));

  app.get('/api/versions', { config: { scope: 'read' } }, async (req) => {
    const refresh = (req.query as { refresh?: string }).refresh === '1';
    return service.versions({ refresh });
  });

  app.get('/api/platforms', { config: { scope: 'read' } }, async () => ({ platforms: service.platforms.list(), arm: ARM_VERSIONS }));

  app.get('/api/stats', { config: { scope: 'read' } }, async () => service.stats());

  app.get('/api/agents', { config: { scope: 'read' } }, async () => ({ agents: await service.agents(), queue: await service.depth() }));

  app.get('/healthz', { config: { scope: 'public' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { scope: 'public' } }, async (_req, reply) => {
    try {
      const checks = o.ready ? await o.ready() : {};
      return { status: 'ready', checks };
    } catch (err) {
      return reply.code(503).send({ error: { code: 'not_ready', message: (err as Error).message } });
    }
  });

  for (const p of o.plugins ?? []) await p(app);
  return app;
}
