/**
 * Route schemas, declared once in zod: Fastify validates params and queries with them
 * (fastify-type-provider-zod), types the handlers from them, serializes the main responses with
 * them, and @fastify/swagger turns them into the OpenAPI document served at /openapi.json.
 *
 * A schema wrapped in `documented()` only describes: the route's handler validates that part
 * itself (POST /api/builds: the service's spec parser, whose SpecError messages clients rely on).
 */
import type { FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify';
import { ResponseSerializationError, validatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ARM_VERSIONS, CADDY_MODULE, CADDY_VERSION_PATTERN, MAX_TEST_CONFIG, MODULE_PATH_PATTERN, type Platform, VERSION_QUERY_PATTERN, recipeVersionPattern, whole } from '../request/index.js';
import { buildRecordSchema } from '../service/index.js';

const DESCRIBED_ONLY = new WeakSet<object>();

/**
 * `schema` in the OpenAPI document, but not checked at the edge: the value reaches the handler as
 * it came (typed `unknown`), and the handler's own validation answers with its own messages.
 */
export function documented(schema: z.ZodType): z.ZodType<unknown> {
  DESCRIBED_ONLY.add(schema);
  return schema;
}

/** The zod validator compiler, except for `documented()` parts (passed through unchanged). */
export const edgeValidator: FastifySchemaCompiler<z.ZodType> = (route) => (DESCRIBED_ONLY.has(route.schema) ? (data: unknown) => ({ value: data }) : validatorCompiler(route));

/**
 * Responses are checked against their schema (a mismatch is a 500, like the plugin's own
 * serializerCompiler) and then sent as they are: a schema describes a record's main fields, and
 * fields it does not list are not dropped on the way out.
 */
export const responseSerializer: FastifySerializerCompiler<z.ZodType> =
  ({ schema, method, url }) =>
  (data: unknown) => {
    const checked = z.safeEncode(schema, data);
    if (!checked.success) throw new ResponseSerializationError(method, url, { cause: checked.error });
    return JSON.stringify(data);
  };

/**
 * A route schema key (copied onto the operation by @fastify/swagger, as every `x-` key) marking a
 * request body that may be left out; `optionalBodies` turns it into `requestBody.required: false`
 * (@fastify/swagger marks every body required).
 */
export const OPTIONAL_BODY = 'x-fairway-optional-body';

/** The document's operations with an optional body get `required: false` (a `transformObject` of @fastify/swagger). */
export function optionalBodies<T>(doc: T): T {
  const paths = (doc as { paths?: Record<string, Record<string, Record<string, unknown>>> }).paths ?? {};
  for (const ops of Object.values(paths)) {
    for (const op of Object.values(ops)) {
      if (!op || typeof op !== 'object' || !(OPTIONAL_BODY in op)) continue;
      delete op[OPTIONAL_BODY];
      const body = op.requestBody as { required?: boolean } | undefined;
      if (body) body.required = false;
    }
  }
  return doc;
}

/** Tags of the OpenAPI document, one per route group. */
export const TAGS = [
  { name: 'builds', description: 'Native JSON API: request, follow and download builds' },
  { name: 'info', description: 'Versions, platforms, statistics and agents' },
  { name: 'compat', description: "caddyserver.com-compatible download API (errors in Caddy's envelope)" },
  { name: 'ops', description: 'Operations: Prometheus metrics and administration' },
  { name: 'health', description: 'Liveness and readiness (no authentication)' },
  { name: 'ui', description: 'The web UI (HTML and its assets)' },
  { name: 'registry', description: 'OCI registry (pull): caddy, caddy/<recipe>, caddy/build images; recipes' },
] as const;

export type Tag = (typeof TAGS)[number]['name'];

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().describe('stable machine-readable code, e.g. invalid_spec, not_found, unauthorized'),
      message: z.string().describe('what went wrong and what to do'),
      field: z.string().optional().describe('the offending input, when there is one'),
    }),
  })
  .describe('Fairway error');

export const CompatErrorBody = z
  .object({
    status_code: z.number().int(),
    error: z.object({
      message: z.string(),
      id: z.string().describe('error id, also in the server log'),
      code: z.string().describe("Fairway's error code (as in the native API)"),
    }),
  })
  .describe("caddyserver.com's error envelope, as Caddy's CLI decodes it");

export const OciErrorBody = z
  .object({
    errors: z.array(
      z.object({
        code: z.string().describe('MANIFEST_UNKNOWN, NAME_UNKNOWN, BLOB_UNKNOWN, UNAUTHORIZED, DENIED, UNSUPPORTED, TOOMANYREQUESTS, …'),
        message: z.string(),
        detail: z.unknown().optional(),
      }),
    ),
  })
  .describe('OCI Distribution error body');

/** The routes of the caddyserver.com-compatible API, which answer errors in its envelope. */
const COMPAT_PATHS = ['/api/download', '/api/packages', '/api/catalog'];

/** Which error envelope a path answers in: the registry's (/v2), caddyserver.com's, or Fairway's own. */
export function envelopeOf(url: string): 'oci' | 'compat' | 'native' {
  const path = url.split('?')[0]!;
  if (path === '/v2' || path.startsWith('/v2/')) return 'oci';
  return COMPAT_PATHS.includes(path) ? 'compat' : 'native';
}

const ENVELOPES = { oci: OciErrorBody, compat: CompatErrorBody, native: ErrorBody } as const;

/**
 * The answers every route can give besides its own, added to its documented responses (an
 * `onRoute` hook of createApi), each in the route's envelope: 400 (a malformed URL, a parameter
 * failing its schema), 414 for a route with path parameters (one longer than 200 characters),
 * 403 and 421 (the cross-site and Host checks), 503 (shutting down, or a dependency down), and
 * for a route that needs a token 401 and 429 (the rate limits), and for a route with a body 413
 * (over bodyLimit) and 415 (a media type other than JSON).
 */
export function documentCommonErrors(route: { url: string; schema?: unknown; config?: unknown }): void {
  const schema = route.schema as { response?: Record<string | number, unknown>; hide?: boolean } | undefined;
  if (!schema?.response || schema.hide) return;
  const envelope = ENVELOPES[envelopeOf(route.url)];
  const scoped = (route.config as { scope?: string } | undefined)?.scope !== 'public';
  const body = (route.schema as { body?: unknown }).body !== undefined ? [413, 415] : [];
  const statuses = [400, 403, 421, 503, ...(route.url.includes(':') || route.url.includes('*') ? [414] : []), ...(scoped ? [401, 429] : []), ...body];
  for (const s of statuses) if (schema.response[s] === undefined && schema.response[String(s)] === undefined) schema.response[s] = envelope;
  // Refused by the HTTP parser before any route is known (src/api/errors.ts clientErrorHandler).
  schema.response[431] ??= ParserErrorBody;
}

/** What Node's HTTP parser refusals answer (431: request line and headers too large), before routing. */
const ParserErrorBody = z.object({ status_code: z.number().int(), error: z.object({ code: z.string(), message: z.string() }) }).describe('a request the HTTP parser refused, before any route');

/** Error responses a route may answer with, for the document. */
export function errors<S extends number>(...statuses: S[]): Record<S, typeof ErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, ErrorBody])) as Record<S, typeof ErrorBody>;
}

export function compatErrors<S extends number>(...statuses: S[]): Record<S, typeof CompatErrorBody> {
  return Object.fromEntries(statuses.map((s) => [s, CompatErrorBody])) as Record<S, typeof CompatErrorBody>;
}

/** A pattern (src/request/grammar.ts) as a whole-value regular expression. */
const exactly = (pattern: string) => new RegExp(whole(pattern));
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const CADDY = escapeRe(CADDY_MODULE);
const MODULE = `(?!${CADDY}$)${MODULE_PATH_PATTERN}`;

/** A build id: its cache key, 64 lowercase hex digits (checked at the edge: 400 otherwise). */
export const BuildIdParams = z.object({
  id: z
    .string()
    .regex(/^[0-9a-f]{64}$/, 'a build id is 64 lowercase hex digits (the cache key)')
    .describe('build id (the cache key: 64 hex digits)'),
});

/** Caddy's version in a build request or a recipe: empty or `latest`, a v2 version or prefix (`2.11.9`, `v2.11`), a comparison, a branch or commit. */
export const CaddyVersion = z
  .string()
  .max(128)
  // 2.11.9 is read as v2.11.9, which may be 128 characters at most.
  .regex(exactly(`(?!2\\.[0-9].{125})${CADDY_VERSION_PATTERN}`))
  .describe('Caddy version (default `latest`): `latest`, `v2.11.9` (or `2.11.9`), a prefix `v2.11`, a comparison `>=v2.10`, a branch or commit');
/** A plugin's module path (Go's grammar; not Caddy itself, which caddyVersion chooses). */
export const PluginModule = z.string().max(255).regex(exactly(MODULE)).describe('Go module path, e.g. github.com/mholt/caddy-l4');
/** A plugin version query; empty means `latest`. */
export const PluginVersion = z
  .string()
  .max(128)
  .regex(exactly(`(?:|${VERSION_QUERY_PATTERN})`))
  .describe('version, branch or `latest` (default; empty means latest)');

export const PluginBody = z.strictObject({
  module: PluginModule,
  version: PluginVersion.optional(),
  replace: z
    .string()
    .max(512)
    .regex(exactly(`(?:|(?![^@]{256})${MODULE_PATH_PATTERN}(?:@(?=.{1,128}$)${VERSION_QUERY_PATTERN})?)`))
    .optional()
    .describe('replacement `module[@version]` (needs the admin scope); empty: none'),
});

/** The platforms grouped by GOOS, each with its GOARCHes. */
function byOs(platforms: readonly Platform[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const p of platforms) out.set(p.os, [...(out.get(p.os) ?? []), p.arch]);
  return out;
}

type Enum = [string, ...string[]];

/**
 * What POST /api/builds accepts, from the platforms this toolchain builds (GET /api/platforms): one
 * branch per GOOS with its GOARCHes (GOARM only with arch arm). Checked by the service's spec
 * parser (src/request), not at the edge: its messages name the field and what to do.
 */
export function buildRequestBody(platforms: readonly Platform[], maxPlugins: number): z.ZodType<unknown> {
  const common = { caddyVersion: CaddyVersion.optional(), plugins: z.array(PluginBody).max(maxPlugins).optional().describe(`at most ${maxPlugins} plugins, each module once`) };
  const branches: z.ZodType[] = [];
  for (const [os, arches] of byOs(platforms)) {
    const other = arches.filter((a) => a !== 'arm');
    if (other.length > 0) {
      branches.push(z.strictObject({ ...common, os: z.enum([os]), arch: z.enum(other as Enum), arm: z.enum(['']).optional().describe('GOARM: empty or absent (arch arm only)') }));
    }
    if (arches.includes('arm')) {
      const arm = z.union([z.enum([...ARM_VERSIONS, '']), z.union(ARM_VERSIONS.map((v) => z.literal(Number(v))) as [z.ZodLiteral<number>, ...z.ZodLiteral<number>[]])]);
      branches.push(z.strictObject({ ...common, os: z.enum([os]), arch: z.enum(['arm']), arm: arm.optional().describe(`GOARM ${ARM_VERSIONS.join(', ')} (default 7)`) }));
    }
  }
  // No platform (a toolchain that builds none): nothing is accepted.
  const body = branches.length === 0 ? z.never() : branches.length === 1 ? branches[0]! : z.union(branches as [z.ZodType, z.ZodType, ...z.ZodType[]]);
  return documented(body.describe("a build request: a platform GET /api/platforms lists, Caddy's version, plugins"));
}

/** GOOS, GOARCH and GOARM as separate values (query parameters), from the platforms. */
export function platformValues(platforms: readonly Platform[]): { oses: Enum; arches: Enum; arms: Enum } {
  const oses = [...byOs(platforms).keys()];
  const arches = [...new Set(platforms.map((p) => p.arch))].sort();
  return { oses: oses as Enum, arches: arches as Enum, arms: [...ARM_VERSIONS, ''] as Enum };
}

/** A `p` value of the compatible download API: `module[@version][=replacement]`, or Caddy itself with a version. */
export const DownloadPlugin = z
  .string()
  .max(1024)
  .regex(
    exactly(
      `(?:|${CADDY}(?:@(?!2\\.[0-9].{125})(?=.{0,128}$)${CADDY_VERSION_PATTERN})?|(?![^@=]{256})${MODULE}(?:@(?=[^=]{0,128}(?:=|$))(?:|${VERSION_QUERY_PATTERN}))?(?:=(?![^@]{256})${MODULE_PATH_PATTERN}(?:@(?=.{1,128}$)${VERSION_QUERY_PATTERN})?)?)`,
    ),
  )
  .describe('a plugin, `module[@version][=replacement]` (replacements need the admin scope), or github.com/caddyserver/caddy/v2@<version> to pin Caddy');

/** A recipe name: [a-z0-9][a-z0-9-]{0,63}, and not a word the registry's paths use. */
export const RecipeName = z
  .string()
  .regex(/^(?!(?:build|manifests|blobs|tags)$)[a-z0-9][a-z0-9-]{0,63}$/)
  .describe('recipe name, [a-z0-9][a-z0-9-]{0,63}, not build, manifests, blobs or tags');

/** A recipe plugin's version: a build's version query (latest, exact, a branch), or a semver range (src/request range.ts). */
export const RecipePluginVersion = z
  .string()
  .max(128)
  .regex(exactly(recipeVersionPattern(VERSION_QUERY_PATTERN)))
  .describe('`latest` (default; empty means latest), an exact version `v1.2.3`, a semver range (`^1.2`, `~0.3.1`, `>=1.0.0 <2.0.0`, `1.x`: prereleases only when the range names one), or a branch');
/** A recipe's test config: a Caddyfile or a Caddy JSON config, at most 64 KiB (of UTF-8, or of JSON). */
export const RecipeTestConfig = z
  .union([z.string().min(1).max(MAX_TEST_CONFIG), z.record(z.string(), z.unknown())])
  .describe(`a Caddyfile (string) or a Caddy JSON config (object) the recipe's builds are tried with; at most ${MAX_TEST_CONFIG} bytes (UTF-8, or as JSON)`);

/** A recipe as PUT /api/recipes/:name takes it (the same grammar as a build's plugins, no replacements, versions may be ranges). */
export const RecipeBody = documented(
  z
    .strictObject({
      plugins: z.array(z.strictObject({ module: PluginModule, version: RecipePluginVersion.optional() })),
      caddyVersion: CaddyVersion.optional(),
      testConfig: RecipeTestConfig.optional(),
    })
    .describe('a recipe'),
);

/** The build record (src/service/record-schema.ts): one schema, the service's type and the UI's derived from it. */
export const BuildRecord = buildRecordSchema;

export const DsseEnvelope = z
  .object({
    payloadType: z.string(),
    payload: z.string().describe('base64 of an in-toto Statement v1 with a SLSA Provenance v1 predicate'),
    signatures: z.array(z.object({ keyid: z.string(), sig: z.string() })).describe('empty when the builder had no signing key'),
  })
  .describe('a DSSE envelope');

export const QueueDepth = z.object({ queued: z.number().int(), running: z.number().int() });

/** Binary or text bodies, for the document only (no serialization schema). */
export const BINARY = { description: 'the binary', content: { 'application/octet-stream': { schema: z.string().describe('bytes') } } };
