/**
 * The HTTP API (Fastify): the app, its error model, security, the OpenAPI document
 * (`GET /openapi.json`) and the native API plugin (src/api/native.ts). The other route groups are
 * Fastify plugins too, registered by the composition root: compatApi (src/api/compat.ts),
 * uiRoutes (src/ui/index.ts), opsRoutes (src/ops/http.ts), webhooksApi (src/api/webhooks.ts).
 */
import swagger from '@fastify/swagger';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { OpenAPIV3 } from 'openapi-types';
import type { Logger } from 'pino';
import type { BuildService } from '../service/index.js';
import { checkingIntervalMs, closeAfterEarlyErrors, DEFAULT_CONNECTIONS, limitConnectionsPerClient, type ConnectionOptions } from './connections.js';
import { DEV_CROSS_SITE, installCrossSite, type CrossSiteOptions } from './crosssite.js';
import { clientErrorHandler, frameworkErrors, installErrorHandlers } from './errors.js';
import { collectRouteMethods, type RouteMethods } from './methods.js';
import { nativeApi } from './native.js';
import { LOG_SERIALIZERS } from './redact.js';
import { documentCommonErrors, edgeValidator, optionalBodies, responseSerializer, TAGS } from './schemas.js';
import { DEV_SECURITY, installSecurity, type SecurityOptions } from './security.js';

export { compatApi } from './compat.js';
export { goproxyApi } from './goproxy.js'; // fleet module proxy
export { recipesApi, registryApi } from './registry.js';
export { upstreamApi, type WatchApi } from './upstream.js';
export { webhooksApi } from './webhooks.js';
export { ErrorBody, OPTIONAL_BODY, documented, errors } from './schemas.js';

export interface ApiOptions {
  service: BuildService;
  logger: Logger;
  bodyLimit: number;
  /** Redirect artifact downloads to presigned store URLs when available. */
  downloadRedirect?: boolean;
  /** Extra readiness checks (store, Redis). */
  ready?: () => Promise<Record<string, string>>;
  /** The public key builds are signed with (PEM): GET /api/signing-key. */
  publicKeyPem?: string;
  /** The public key image indexes (tags) are signed with (PEM): GET /api/index-signing-key. */
  indexPublicKeyPem?: string;
  /** Tokens, scopes and rate limits (src/api/security.ts); default: anonymous read+build, no limits. */
  security?: SecurityOptions;
  /** Fastify's trustProxy: take the client address from X-Forwarded-For (behind a reverse proxy). */
  trustProxy?: boolean | string;
  /** Host and Origin checks (src/api/crosssite.ts); default: a loopback server with no extra hosts or origins. */
  crossSite?: CrossSiteOptions;
  /** Header/body/keep-alive timeouts and the per-client connection cap (src/api/connections.ts). */
  connections?: ConnectionOptions;
}

/** The OpenAPI document's fixed part; paths come from the route schemas (src/api/schemas.ts). */
const OPENAPI_INFO: Partial<OpenAPIV3.Document> = {
  openapi: '3.0.3',
  info: {
    title: 'Fairway',
    description: 'A self-hosted build server for custom Caddy binaries: native JSON API, caddyserver.com-compatible download API, operations.',
    version: '1',
  },
  tags: TAGS.map((t) => ({ ...t })),
  // A bearer token, or none where the anonymous scopes (anonymousScopes) allow the route.
  security: [{ bearer: [] }, {}],
  components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'an API token (`fairway token create`); scopes read, build, admin' } } },
};

/**
 * The Fastify app with the native API registered; the composition root registers the other route
 * plugins on it (`app.register(compatApi, …)`, `uiRoutes`, `opsRoutes`) before `listen`. Every
 * route declares its zod schema (for validation, types and /openapi.json) and `config.scope`.
 */
declare module 'fastify' {
  interface FastifyInstance {
    /** The methods each path answers (src/api/methods.ts); decorated by createApi. */
    routeMethods?: RouteMethods;
  }
}

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
    // Request logging stays on (Fastify's default); ids and names in paths are at most 200 characters.
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    ...(o.trustProxy !== undefined ? { trustProxy: o.trustProxy } : {}),
    // Errors raised before routing still answer in the JSON error shape (src/api/errors.ts).
    frameworkErrors,
    clientErrorHandler,
  });
  // Route schemas are zod (src/api/schemas.ts): validation, handler types, response serialization.
  app.setValidatorCompiler(edgeValidator);
  app.setSerializerCompiler(responseSerializer);
  // Before any route: which methods each path answers, for 405 + Allow (src/api/methods.ts).
  app.decorate('routeMethods', collectRouteMethods(app));
  installErrorHandlers(app);
  app.server.headersTimeout = conn.headersTimeoutMs;
  limitConnectionsPerClient(app.server, conn.maxPerClient, app.log);
  closeAfterEarlyErrors(app);
  // The document marks the routes that need no token (`config.scope: 'public'`).
  app.addHook('onRoute', (route) => {
    if (route.config?.scope === 'public' && route.schema) route.schema = { ...route.schema, security: [] };
    // The answers any route can give (400, 403, 421, 503; 414 with path parameters; 401, 429 with a scope).
    documentCommonErrors(route);
  });
  // Before any route: it collects every route registered after it for the document.
  await app.register(swagger, { openapi: OPENAPI_INFO, transform: jsonSchemaTransform, transformObject: (d) => optionalBodies('openapiObject' in d ? d.openapiObject : d.swaggerObject) });
  // Registered before the checks below: its hooks mark websocket upgrades, so an upgrade refused
  // by a check still gets its socket closed after the error answer (else it stays half-open).
  await app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  // Before authentication: Host (DNS rebinding) and Origin (cross-site) checks (src/api/crosssite.ts).
  installCrossSite(app, o.crossSite ?? DEV_CROSS_SITE);
  // Before any route: every route is checked against its `config.scope` (src/api/security.ts).
  await installSecurity(app, o.security ?? DEV_SECURITY);

  app.get('/openapi.json', { config: { scope: 'public' }, schema: { hide: true } }, async () => app.swagger());
  await app.register(nativeApi, {
    service: o.service,
    ...(o.downloadRedirect !== undefined ? { downloadRedirect: o.downloadRedirect } : {}),
    ...(o.ready ? { ready: o.ready } : {}),
    readyDetails: async (header) => {
      const r = await (o.security ?? DEV_SECURITY).auth.authenticate(header);
      return r.ok && r.principal.scopes.has('admin');
    },
    ...(o.publicKeyPem ? { publicKeyPem: o.publicKeyPem } : {}),
    ...(o.indexPublicKeyPem ? { indexPublicKeyPem: o.indexPublicKeyPem } : {}),
  });
  return app;
}
