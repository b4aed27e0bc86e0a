/**
 * The OCI registry's HTTP side (pull side of the OCI Distribution Spec v1.1, docs/registry.md) and
 * the recipes API. The logic (recipes, tags, images made from the build cache) is src/registry;
 * these plugins only map HTTP to it, with api's schemas, scopes, Range parsing and error model:
 *
 *  - `registryApi` (register with `prefix: '/v2'`): `GET /v2/`, `GET|HEAD /v2/<name>/manifests/<ref>`,
 *    `GET|HEAD /v2/<name>/blobs/<digest>`, `GET /v2/<name>/tags/list`, `GET /v2/<name>/referrers/<digest>`
 *    (OCI 1.1, `artifactType` filter); names `caddy` and
 *    `caddy/<recipe>` (and `caddy/build`). Its own error handler answers the spec's
 *    `{"errors":[{code,message,detail}]}`; its routes take HTTP Basic credentials (token as password)
 *    and challenge with `Basic realm="fairway"` (src/api/security.ts).
 *  - `recipesApi`: `GET /api/recipes` (read), `PUT|DELETE /api/recipes/:name` (admin).
 */
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { RegistryError, type ImageRegistry, type OciErrorCode } from '../registry/index.js';
import { parseRange, sendBody } from './artifact.js';
import { isBodyParseError, methodNotAllowed, sendError } from './errors.js';
import { documented, errors, OciErrorBody, RecipeBody, RecipeName, RecipeTestConfig } from './schemas.js';
import { requestContext } from './security.js';

export interface RegistryApiOptions {
  registry: ImageRegistry;
  /** Redirect blob downloads to presigned store URLs when the store gives them (`downloadRedirect`). */
  downloadRedirect?: boolean;
}

export { OciErrorBody } from './schemas.js';

function ociErrors<S extends number>(...statuses: S[]): Record<S, typeof OciErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, OciErrorBody])) as Record<S, typeof OciErrorBody>;
}

/** The OCI code of an error that is not a RegistryError, and the status to answer it with. */
function ociCodeOf(status: number, code: string): [number, OciErrorCode] {
  if (status === 401) return [401, 'UNAUTHORIZED'];
  if (status === 403) return [403, 'DENIED'];
  if (status === 429) return [429, 'TOOMANYREQUESTS'];
  // A version that does not exist (resolution failed): that tag has no manifest.
  if (code === 'unknown_version') return [404, 'MANIFEST_UNKNOWN'];
  if (status === 404) return [404, 'NAME_UNKNOWN'];
  if (status === 405) return [405, 'UNSUPPORTED'];
  if (status === 400 && code === 'bad_request') return [400, 'NAME_INVALID'];
  if (status === 503 || status === 507) return [status, 'UNAVAILABLE'];
  if (status >= 500) return [status, 'UNKNOWN'];
  return [status, 'DENIED'];
}

/** The spec's error body for any thrown error (HEAD answers carry no body). */
export function ociErrorHandler(thrown: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  // A request no route matched that failed before the not-found handler (e.g. a body method without a content type).
  const err = req.is404 && isBodyParseError(thrown) ? registryMiss(req, reply) : thrown;
  sendError(req, reply, err, (mapped, error) => {
    const [status, code] = err instanceof RegistryError ? [err.statusCode, err.ociCode] : ociCodeOf(mapped, error.code);
    return { status, code, body: { errors: [{ code, message: error.message, detail: { code: error.code } }] } };
  });
}

/** Any other /v2 path: 405 (with `Allow`) for a path with other methods, else a name this registry does not have (or a push). */
function registryMiss(req: FastifyRequest, reply: FastifyReply): RegistryError {
  const wrong = methodNotAllowed(req, reply);
  if (wrong) return new RegistryError(405, 'UNSUPPORTED', `${wrong.message}: this registry is pull-only`);
  if (req.method !== 'GET' && req.method !== 'HEAD') return new RegistryError(405, 'UNSUPPORTED', 'this registry is pull-only: images are built from recipes (PUT /api/recipes/:name)');
  return new RegistryError(404, 'NAME_UNKNOWN', `no such repository or route (${req.url.split('?')[0]!.slice(0, 200)}): pull caddy, caddy/<recipe> or caddy/build:<build id>`);
}

// Path parameters are described here and checked by the registry (src/registry), which answers
// what the OCI Distribution Spec names for each: NAME_UNKNOWN, MANIFEST_INVALID, DIGEST_INVALID.
const Reference = z
  .string()
  .regex(/^(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|sha256:[0-9a-f]{64})$/)
  .describe('a tag (latest, 2.11.9, v2.11.9; for caddy/build a build id) or a digest sha256:<64 hex>');
const Digest = z
  .string()
  .regex(/^sha256:[0-9a-f]{64}$/)
  .describe('sha256:<64 lowercase hex>');
const Recipe = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,63}$/)
  .describe('a recipe name (GET /api/recipes); `build` is caddy/build');
const TagsQuery = z.object({
  n: z.coerce.number().int().min(0).max(10_000).optional().describe('at most this many tags'),
  last: z.string().max(200).optional().describe('tags after this one (lexical order)'),
});
const TagList = z.object({ name: z.string(), tags: z.array(z.string()) });
const ReferrersQuery = z.object({
  artifactType: z.string().max(255).optional().describe('only the referrers of this artifactType (the answer then has OCI-Filters-Applied: artifactType)'),
});
const REFERRERS_BODY = {
  description: 'an image index: a descriptor (mediaType, digest, size, artifactType, annotations) of each manifest whose subject is the digest; empty when there are none',
  content: {
    'application/vnd.oci.image.index.v1+json': {
      schema: z.object({
        schemaVersion: z.literal(2),
        mediaType: z.literal('application/vnd.oci.image.index.v1+json'),
        manifests: z.array(
          z.object({
            mediaType: z.string(),
            digest: z.string(),
            size: z.number().int().nonnegative(),
            artifactType: z.string().optional(),
            annotations: z.record(z.string(), z.string()).optional(),
          }),
        ),
      }),
    },
  },
};
const MANIFEST_BODY = {
  description: 'the manifest or index, its exact bytes',
  content: {
    'application/vnd.oci.image.index.v1+json': { schema: z.string().describe('an OCI image index') },
    'application/vnd.oci.image.manifest.v1+json': { schema: z.string().describe('an OCI image manifest') },
  },
};
const BLOB_BODY = { description: 'the blob', content: { 'application/octet-stream': { schema: z.string().describe('bytes') } } };
const MEDIA_TYPE_INDEX = 'application/vnd.oci.image.index.v1+json';
const HEAD_BODY = z.undefined().describe('the headers only (no body)');
const GET_ERRORS = ociErrors(400, 401, 403, 404, 429, 500, 503);

/** The registry's routes; registered by the composition root with `{ prefix: '/v2' }`. */
export const registryApi: FastifyPluginAsync<RegistryApiOptions> = async (instance, o) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const { registry } = o;
  app.setErrorHandler(ociErrorHandler);
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('Docker-Distribution-API-Version', 'registry/2.0');
    return payload;
  });
  // Any other /v2 path: a name this registry does not have (or an operation it does not do).
  app.setNotFoundHandler((req, reply) => ociErrorHandler(registryMiss(req, reply), req, reply));
  const config = { scope: 'read', challenge: 'basic' } as const;
  const tags = ['registry'];

  app.get(
    '/',
    {
      config,
      prefixTrailingSlash: 'slash',
      schema: { tags, summary: 'OCI Distribution API version check (200 when the credentials may pull)', response: { 200: z.object({}), ...ociErrors(401, 403, 429) } },
    },
    async () => ({}),
  );

  const manifest = async (repo: string, reference: string, req: FastifyRequest, reply: FastifyReply, head: boolean) => {
    const ac = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) ac.abort();
    };
    reply.raw.once('close', onClose);
    let m: Awaited<ReturnType<ImageRegistry['manifest']>>;
    try {
      m = await registry.manifest(repo, reference, requestContext(req), ac.signal);
    } catch (err) {
      // The client went away while the builds ran: they go on for everyone else (and the cache).
      if (!ac.signal.aborted) throw err;
      req.log.info({ repo, reference }, 'registry: client went away while waiting for builds');
      reply.hijack();
      if (!reply.raw.destroyed) reply.raw.destroy();
      return reply;
    } finally {
      reply.raw.off('close', onClose);
    }
    reply.header('Content-Type', m.mediaType);
    reply.header('Content-Length', String(m.size));
    reply.header('Docker-Content-Digest', m.digest);
    reply.header('ETag', `"${m.digest}"`);
    // A digest names fixed bytes; a tag may name a newer build later.
    reply.header('Cache-Control', reference.startsWith('sha256:') ? 'public, max-age=31536000, immutable' : 'no-cache');
    return reply.code(200).send(head ? undefined : m.bytes);
  };

  const blob = async (repo: string, digest: string, req: FastifyRequest, reply: FastifyReply, head: boolean) => {
    const b = await registry.blob(repo, digest);
    reply.header('Docker-Content-Digest', b.digest);
    reply.header('ETag', `"${b.digest}"`);
    reply.header('Accept-Ranges', 'bytes');
    reply.header('Cache-Control', 'public, max-age=31536000, immutable');
    if (!head && o.downloadRedirect && b.url) {
      const url = await b.url();
      if (url) return reply.redirect(url, 307);
    }
    reply.header('Content-Type', 'application/octet-stream');
    const range = head ? null : parseRange(req.headers.range, b.size);
    if (range === 'unsatisfiable') {
      reply.header('Content-Range', `bytes */${b.size}`);
      throw new RegistryError(416, 'BLOB_UNKNOWN', `the range is outside the blob (${b.size} bytes)`);
    }
    if (head) {
      reply.header('Content-Length', String(b.size));
      return reply.code(200).send();
    }
    return sendBody(reply.code(200), b.size, range, (r) => b.open(r));
  };

  const referrers = async (repo: string, digest: string, artifactType: string | undefined, reply: FastifyReply) => {
    const r = await registry.referrers(repo, digest, artifactType);
    if (r.filtersApplied.length > 0) reply.header('OCI-Filters-Applied', r.filtersApplied.join(','));
    // New signatures may appear for a digest: not cached.
    reply.header('Cache-Control', 'no-cache');
    // Bytes, so no `; charset` is added to the media type.
    reply.header('Content-Type', MEDIA_TYPE_INDEX);
    return reply.code(200).send(Buffer.from(JSON.stringify(r.index), 'utf8'));
  };

  const list = async (repo: string, q: { n?: number | undefined; last?: string | undefined }, reply: FastifyReply) => {
    const all = await registry.tags(repo);
    const after = q.last !== undefined ? all.filter((t) => t > q.last!) : all;
    const page = q.n !== undefined ? after.slice(0, q.n) : after;
    if (q.n !== undefined && q.n > 0 && after.length > page.length) {
      const qs = new URLSearchParams({ n: String(q.n), last: page[page.length - 1]! });
      reply.header('Link', `</v2/${repo}/tags/list?${qs.toString()}>; rel="next"`);
    }
    return { name: repo, tags: page };
  };

  // `caddy` (plain Caddy) and `caddy/<recipe>` (caddy/build: one finished build).
  for (const [prefix, params, repoOf] of [
    ['/caddy', z.object({}), () => 'caddy'],
    ['/caddy/:recipe', z.object({ recipe: Recipe }), (p: { recipe?: string }) => `caddy/${p.recipe}`],
  ] as const) {
    const where = prefix === '/caddy' ? 'caddy' : 'caddy/<recipe>';
    app.route({
      method: 'GET',
      url: `${prefix}/manifests/:reference`,
      config,
      exposeHeadRoute: false,
      schema: {
        tags,
        summary: `The manifest of ${where} (an index over imagePlatforms; builds what is missing and waits)`,
        params: documented(params.extend({ reference: Reference })),
        response: { 200: MANIFEST_BODY, ...GET_ERRORS },
      },
      handler: (req, reply) => manifest(repoOf(req.params as { recipe?: string }), (req.params as { reference: string }).reference, req, reply, false),
    });
    app.route({
      method: 'HEAD',
      url: `${prefix}/manifests/:reference`,
      config: { ...config, swagger: { exposeHeadRoute: true } },
      schema: { tags, summary: `The manifest of ${where}: headers only`, params: documented(params.extend({ reference: Reference })), response: { 200: HEAD_BODY, ...GET_ERRORS } },
      handler: (req, reply) => manifest(repoOf(req.params as { recipe?: string }), (req.params as { reference: string }).reference, req, reply, true),
    });
    app.route({
      method: 'GET',
      url: `${prefix}/blobs/:digest`,
      config,
      exposeHeadRoute: false,
      schema: {
        tags,
        summary: `A blob of ${where} (Range supported; verified while it streams)`,
        params: documented(params.extend({ digest: Digest })),
        response: { 200: BLOB_BODY, 206: BLOB_BODY, 307: z.undefined().describe('redirect to the store (downloadRedirect)'), ...GET_ERRORS, ...ociErrors(416) },
      },
      handler: (req, reply) => blob(repoOf(req.params as { recipe?: string }), (req.params as { digest: string }).digest, req, reply, false),
    });
    app.route({
      method: 'HEAD',
      url: `${prefix}/blobs/:digest`,
      config: { ...config, swagger: { exposeHeadRoute: true } },
      schema: { tags, summary: `A blob of ${where}: headers only`, params: documented(params.extend({ digest: Digest })), response: { 200: HEAD_BODY, ...GET_ERRORS } },
      handler: (req, reply) => blob(repoOf(req.params as { recipe?: string }), (req.params as { digest: string }).digest, req, reply, true),
    });
    app.route({
      method: 'GET',
      url: `${prefix}/referrers/:digest`,
      config,
      exposeHeadRoute: false,
      schema: {
        tags,
        summary: `OCI 1.1 referrers of a manifest of ${where} (the Sigstore bundles of an image; an empty index for any other digest)`,
        params: documented(params.extend({ digest: Digest })),
        querystring: ReferrersQuery,
        response: { 200: REFERRERS_BODY, ...ociErrors(400, 401, 403, 404, 429, 500, 503) },
      },
      handler: (req, reply) => referrers(repoOf(req.params as { recipe?: string }), (req.params as { digest: string }).digest, req.query.artifactType, reply),
    });
    app.get(
      `${prefix}/tags/list`,
      {
        config,
        schema: {
          tags,
          ...(prefix === '/caddy' ? {} : { operationId: 'getRecipeTags' }),
          summary: `The tags of ${where} (n/last pagination, Link header)`,
          params: documented(params),
          querystring: TagsQuery,
          response: { 200: TagList, ...ociErrors(400, 401, 403, 404, 429) },
        },
      },
      (req, reply) => list(repoOf(req.params as { recipe?: string }), req.query, reply),
    );
  }
};

/** Described here, checked by the registry (400 invalid_recipe names the rule). */
export const RecipeParams = documented(z.object({ name: RecipeName }));
const RecipePlugin = z.object({ module: z.string(), version: z.string().optional().describe('latest when absent; exact, a semver range or a branch') });
export const RecipeOut = z.object({
  name: z.string(),
  plugins: z.array(RecipePlugin),
  caddyVersion: z.string().optional(),
  testConfig: RecipeTestConfig.optional(),
  source: z.enum(['config', 'api']),
});

/** The body limit of PUT /api/recipes/:name at least: a test config of 64 KiB (JSON-escaped) and the plugins. */
export const RECIPE_BODY_LIMIT = 512 * 1024;

/** `/api/recipes`: list (read), put and delete (admin); native error envelope. */
export const recipesApi: FastifyPluginAsync<{ registry: ImageRegistry }> = async (instance, { registry }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const tags = ['registry'];
  app.get(
    '/api/recipes',
    { config: { scope: 'read' }, schema: { tags, summary: 'Recipes: named plugin sets, pulled as caddy/<name>', response: { 200: z.object({ recipes: z.array(RecipeOut) }), ...errors(401, 403) } } },
    async () => ({ recipes: await registry.recipes() }),
  );
  app.put(
    '/api/recipes/:name',
    {
      // A recipe may carry a test config of 64 KiB: its body may be larger than other requests' (bodyLimit).
      bodyLimit: Math.max(instance.initialConfig.bodyLimit ?? 0, RECIPE_BODY_LIMIT),
      config: { scope: 'admin' },
      schema: {
        tags,
        operationId: 'putRecipe',
        summary: 'Add or change a recipe (admin; kept in the store, every hub sees it)',
        params: RecipeParams,
        body: RecipeBody,
        response: { 200: RecipeOut, ...errors(400, 401, 403) },
      },
      links: {
        200: {
          getRecipeTags: { operationId: 'getRecipeTags', parameters: { recipe: '$request.path.name' } },
          getRecipe: { operationId: 'getRecipe', parameters: { name: '$request.path.name' } },
          downloadRecipe: { operationId: 'downloadRecipe', parameters: { name: '$request.path.name' } },
          deleteRecipe: { operationId: 'deleteRecipe', parameters: { name: '$request.path.name' } },
        },
      },
    },
    async (req) => registry.putRecipe((req.params as { name: string }).name, req.body, requestContext(req)),
  );
  app.delete(
    '/api/recipes/:name',
    {
      config: { scope: 'admin' },
      schema: {
        tags,
        operationId: 'deleteRecipe',
        summary: 'Remove a recipe put through the API (admin)',
        params: RecipeParams,
        response: { 204: z.undefined().describe('removed'), ...errors(401, 403, 404, 409) },
      },
    },
    async (req, reply) => {
      await registry.deleteRecipe((req.params as { name: string }).name);
      return reply.code(204).send();
    },
  );
};
