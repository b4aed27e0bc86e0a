/**
 * caddyserver.com-compatible API (docs/compat.md): what `caddy upgrade`/`add-package`/
 * `remove-package` and the caddyserver.com download page call, so they work against Fairway by
 * changing only the host.
 *
 *  - GET  /api/download?os=&arch=[&arm=][&version=]&p=<module[@version]>...[&idempotency=]
 *         builds or serves from cache, blocks until the binary is ready, streams it.
 *  - HEAD /api/download  same build; 200 with the binary's headers and a `Location` of a pinned
 *         GET URL (the download page sends HEAD, then navigates to `Location`).
 *  - GET  /api/packages[?q=]  the catalog in caddyserver.com's shape.
 *  - GET  /api/catalog[?q=|?path=]  the catalog in Fairway's own shape, with the mirror status.
 *
 * Errors on these routes use the envelope Caddy's CLI decodes:
 * `{"status_code": N, "error": {"message": "...", "id": "...", "code": "..."}}` (the plugin's own
 * error handler; `code` as in the native API).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Catalog, CatalogPackage } from '../catalog/index.js';
import type { BuildRecord, BuildService } from '../service/index.js';
import { CADDY_MODULE, MODULE_PATH_PATTERN, SpecError, parsePluginArg, type Platform, type ResolvedSpec, whole } from '../request/index.js';
import type { ArtifactMeta } from '../store/index.js';
import { AppError } from '../util/errors.js';
import { openOrStrip } from './artifact.js';
import { sendError } from './errors.js';
import { BINARY, CaddyVersion, DownloadPlugin, compatErrors, documented, platformValues } from './schemas.js';
import { requestContext } from './security.js';

export interface CompatOptions {
  service: BuildService;
  catalog: Catalog;
}

type Query = Record<string, string | string[] | undefined>;

/** The longest `p` value accepted (module path 255 + `@` + version 128 + replacement). */
const MAX_P = 1024;

function one(q: Query, name: string): string | undefined {
  const v = q[name];
  if (!Array.isArray(v)) return v;
  if (new Set(v).size > 1) throw new SpecError(name, `given more than once with different values (${v.slice(0, 3).join(', ')})`);
  return v[0];
}

function many(q: Query, name: string): string[] {
  const v = q[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export interface DownloadInput {
  caddyVersion?: string;
  os?: string;
  arch?: string;
  arm?: string;
  plugins: Array<{ module: string; version?: string; replace?: string }>;
}

/**
 * Maps the download query to a build request. `p` is an unordered set (Caddy sends it in Go map
 * order); an identical repeat is dropped, the same module with two versions is an error.
 * `p=github.com/caddyserver/caddy/v2@vX` pins Caddy like `version=vX` does. `idempotency` and
 * unknown parameters are ignored: identical requests already share one build by cache key.
 */
export function downloadInput(q: Query): DownloadInput {
  const os = one(q, 'os');
  const arch = one(q, 'arch');
  const arm = one(q, 'arm');
  let caddyVersion = one(q, 'version') || undefined;
  const plugins: DownloadInput['plugins'] = [];
  const seen = new Map<string, string>();
  for (const raw of many(q, 'p')) {
    const s = raw.trim();
    if (s === '') continue;
    if (s.length > MAX_P) throw new SpecError('p', `value longer than ${MAX_P} characters`);
    if ((s.split('=')[0]!.match(/@/g) ?? []).length > 1) throw new SpecError('p', `"${s.slice(0, 200)}": a module path must not contain '@'`);
    const p = parsePluginArg(s);
    if (p.module === CADDY_MODULE) {
      if (p.replace !== undefined) throw new SpecError('p', 'Caddy itself cannot be replaced here');
      if (p.version && caddyVersion && p.version !== caddyVersion) {
        throw new SpecError('p', `Caddy version ${p.version} conflicts with version=${caddyVersion}`);
      }
      caddyVersion = p.version || caddyVersion;
      continue;
    }
    const canon = JSON.stringify([p.module, p.version ?? '', p.replace ?? '']);
    const prev = seen.get(p.module);
    if (prev !== undefined) {
      if (prev === canon) continue;
      throw new SpecError('p', `${p.module} is given twice with different versions`);
    }
    seen.set(p.module, canon);
    plugins.push(p);
  }
  return {
    ...(caddyVersion ? { caddyVersion } : {}),
    ...(os !== undefined ? { os } : {}),
    ...(arch !== undefined ? { arch } : {}),
    ...(arm !== undefined && arm !== '' ? { arm } : {}),
    plugins,
  };
}

/** caddyserver.com's name for a custom build: `caddy_<os>_<arch>_custom[.exe]`. */
export function downloadFilename(os: string, arch: string): string {
  return `caddy_${os}_${arch}_custom${os === 'windows' ? '.exe' : ''}`;
}

/** A GET URL for exactly this build: every version pinned, so it always names the same binary. */
export function pinnedDownloadUrl(
  spec: Pick<ResolvedSpec, 'os' | 'arch' | 'arm' | 'caddyVersion'> & { plugins: ReadonlyArray<Pick<ResolvedSpec['plugins'][number], 'module' | 'version' | 'replace'>> },
): string {
  const qs = new URLSearchParams();
  qs.append('os', spec.os);
  qs.append('arch', spec.arch);
  if (spec.arm) qs.append('arm', spec.arm);
  qs.append('version', spec.caddyVersion);
  for (const p of spec.plugins) {
    let v = p.version ? `${p.module}@${p.version}` : p.module;
    if (p.replace) v += `=${p.replace.kind === 'module' ? `${p.replace.module}@${p.replace.version}` : p.replace.path}`;
    qs.append('p', v);
  }
  return `/api/download?${qs.toString()}`;
}

/** The error envelope Caddy's CLI (`downloadBuild`) and the website's account pages decode. */
/**
 * Errors in caddyserver.com's envelope (`{status_code, error:{message, id}}`, which Caddy's CLI
 * prints), with Fairway's `code` beside; `id` is logged with the error so an operator can find it.
 * A failed build is a 400 here, as caddyserver.com answers it (natively a 409 `build_failed`).
 */
export function compatErrorHandler(err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  const id = randomUUID();
  sendError(req, reply, err, (mapped, error) => {
    const status = error.code === 'build_failed' ? 400 : mapped;
    return { status, body: { status_code: status, error: { message: error.message, id, code: error.code } }, log: { errorId: id } };
  });
}

/** A catalog entry in caddyserver.com's shape. */
function toCaddyPackage(p: CatalogPackage) {
  return {
    id: p.id,
    path: p.path,
    repo: p.repo,
    downloads: p.downloads,
    ...(p.published ? { published: p.published } : {}),
    ...(p.updated ? { updated: p.updated } : {}),
    listed: p.listed,
    available: p.available,
    description: p.description,
    modules: p.modules.length ? p.modules.map((m) => ({ name: m.name, docs: m.docs ?? '', package: p.path, repo: p.repo })) : null,
  };
}

/**
 * The download query, from the platforms this toolchain builds. Described here, checked by
 * downloadInput and the spec parser (their messages name the parameter). os, arch, arm and version
 * are single values (a repeat with another value is refused); `p` repeats. OpenAPI cannot tie
 * arch's values to os's: GET /api/platforms lists the pairs.
 */
function downloadQuery(platforms: readonly Platform[]) {
  const { oses, arches, arms } = platformValues(platforms);
  return documented(
    z.object({
      os: z.enum(oses).describe('GOOS'),
      arch: z.enum(arches).describe('GOARCH (a pair GET /api/platforms lists)'),
      arm: z.enum(arms).optional().describe('GOARM (arch arm only; empty: none)'),
      version: CaddyVersion.optional(),
      p: z.array(DownloadPlugin).optional().describe('a plugin, `module[@version][=replacement]`; repeat for more (an unordered set)'),
      idempotency: z.string().optional().describe('ignored: identical requests share one build anyway'),
    }),
  );
}
const PackagesQuery = documented(z.object({ q: z.string().optional().describe('search text (once)') }));
const CatalogQuery = documented(
  z.object({
    q: z.string().optional().describe('search text (once)'),
    path: z
      .string()
      .max(255)
      .regex(new RegExp(whole(MODULE_PATH_PATTERN)))
      .optional()
      .describe('one package by module path (once)'),
  }),
);

/** One package as caddyserver.com's /api/packages lists it (what `toCaddyPackage` writes). */
const CaddyPackage = z.strictObject({
  id: z.string(),
  path: z.string(),
  repo: z.string(),
  downloads: z.number(),
  published: z.string().optional(),
  updated: z.string().optional(),
  listed: z.boolean(),
  available: z.boolean(),
  description: z.string(),
  modules: z
    .array(z.strictObject({ name: z.string(), docs: z.string(), package: z.string(), repo: z.string() }))
    .nullable()
    .describe('the Caddy modules it registers; null when none are known'),
});
/** One package in Fairway's own shape (src/catalog CatalogPackage). */
const Package = z.strictObject({
  id: z.string(),
  path: z.string(),
  repo: z.string(),
  description: z.string(),
  modules: z.array(z.strictObject({ name: z.string(), docs: z.string().optional() })),
  sources: z.array(z.enum(['curated', 'upstream', 'learned'])),
  downloads: z.number(),
  published: z.string().optional(),
  updated: z.string().optional(),
  listed: z.boolean(),
  available: z.boolean(),
  note: z.string().optional(),
  learned: z.strictObject({ modules: z.array(z.string()), version: z.string().optional(), build: z.string().optional(), at: z.string() }).optional(),
});
/** The mirror of the upstream catalog (src/catalog UpstreamStatus). */
const UpstreamStatus = z.strictObject({
  url: z.string().nullable(),
  fetchedAt: z.string().optional(),
  checkedAt: z.string().optional(),
  ok: z.boolean(),
  error: z.string().optional(),
  packages: z.number().int(),
  refreshMs: z.number(),
});
const DOWNLOAD_ERRORS = compatErrors(400, 401, 403, 422, 429, 502, 503, 507);

/** Requests the build, waits for it (long-poll), and returns the finished record; null when the client went away. */
async function waitForBuild(service: BuildService, input: DownloadInput, req: FastifyRequest, reply: FastifyReply): Promise<BuildRecord | null> {
  let rec = await service.request(input, requestContext(req));
  if (rec.status === 'succeeded') return rec;
  req.log.info({ build: rec.id, status: rec.status, position: rec.position }, 'download: waiting for the build');
  // A client that goes away stops waiting; the build goes on for everyone else (and the cache).
  const ac = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ac.abort();
  };
  reply.raw.once('close', onClose);
  try {
    rec = await service.waitFor(rec.id, ac.signal);
  } catch (err) {
    if (ac.signal.aborted) {
      req.log.info({ build: rec.id }, 'download: client went away; the build continues');
      return null;
    }
    throw err;
  } finally {
    reply.raw.off('close', onClose);
  }
  if (rec.status === 'succeeded') return rec;
  if (rec.status === 'canceled') {
    throw new AppError('build_canceled', `the build was canceled before it finished (${rec.error ?? 'server shutting down or canceled by an operator'}); try again`, 10);
  }
  throw new AppError('build_failed', `build failed: ${rec.error ?? 'unknown error'} (full log: /api/builds/${rec.id}/log)`);
}

/** The headers caddyserver.com sends with a binary (name, size, checksums, pinned version). */
function downloadHeaders(reply: FastifyReply, meta: ArtifactMeta): ResolvedSpec {
  const spec = meta.spec as ResolvedSpec;
  reply.header('Content-Type', 'application/octet-stream');
  reply.header('Content-Disposition', `attachment; filename="${downloadFilename(spec.os, spec.arch)}"`);
  reply.header('Content-Length', String(meta.size));
  reply.header('X-Checksum-Sha256', meta.sha256!);
  reply.header('Digest', `sha-256=${Buffer.from(meta.sha256!, 'hex').toString('base64')}`);
  reply.header('ETag', `"${meta.sha256}"`);
  // The same query may name a newer build later (`latest`), so caches must revalidate.
  reply.header('Cache-Control', 'no-cache');
  reply.header('X-Fairway-Build', meta.key);
  reply.header('X-Fairway-Caddy-Version', spec.caddyVersion);
  return spec;
}

/** GET streams the binary; HEAD answers its headers and a `Location` of the pinned GET URL. */
async function download(service: BuildService, query: Query, req: FastifyRequest, reply: FastifyReply, head: boolean): Promise<void> {
  const rec = await waitForBuild(service, downloadInput(query), req, reply);
  if (!rec) {
    reply.hijack();
    if (!reply.raw.destroyed) reply.raw.destroy();
    return;
  }
  const a = await service.artifact(rec.id);
  const spec = downloadHeaders(reply, a.meta);
  if (head) {
    reply.header('Location', pinnedDownloadUrl(spec));
    await reply.code(200).send();
    return;
  }
  await reply.code(200).send(await openOrStrip(reply, () => a.open()));
}

/** /api/download (GET and HEAD): build or serve from cache, block until ready, stream. */
const downloadRoutes: FastifyPluginAsync<CompatOptions> = async (instance, { service }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const DownloadQuery = downloadQuery(service.platforms.list());
  const summary = 'Build (or serve from cache) and download, blocking until the binary is ready';
  app.route({
    method: 'GET',
    url: '/api/download',
    // It starts builds: the build scope (src/api/security.ts).
    config: { scope: 'build' },
    exposeHeadRoute: false,
    schema: { tags: ['compat'], summary, querystring: DownloadQuery, response: { 200: BINARY, ...DOWNLOAD_ERRORS } },
    handler: (req, reply) => download(service, req.query as Query, req, reply, false),
  });
  app.route({
    method: 'HEAD',
    url: '/api/download',
    config: { scope: 'build', swagger: { exposeHeadRoute: true } },
    schema: {
      tags: ['compat'],
      summary: `${summary}; HEAD: headers and a Location of the pinned GET URL`,
      querystring: DownloadQuery,
      response: { 200: z.undefined().describe('the headers of the binary (no body)'), ...DOWNLOAD_ERRORS },
    },
    handler: (req, reply) => download(service, req.query as Query, req, reply, true),
  });
};

/** The plugin catalog: caddyserver.com's shape (/api/packages) and Fairway's own (/api/catalog). */
const catalogRoutes: FastifyPluginAsync<CompatOptions> = async (instance, { catalog }) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/api/packages',
    {
      schema: {
        tags: ['compat'],
        summary: "The plugin catalog in caddyserver.com's shape",
        querystring: PackagesQuery,
        response: { 200: z.object({ status_code: z.number().int(), result: z.array(CaddyPackage) }), ...compatErrors(400) },
      },
    },
    async (req) => {
      const q = one(req.query as Query, 'q');
      const pkgs = q ? await catalog.search(q) : await catalog.list();
      return { status_code: 200, result: pkgs.map(toCaddyPackage) };
    },
  );
  app.get(
    '/api/catalog',
    {
      schema: {
        tags: ['compat'],
        summary: "The plugin catalog in Fairway's own shape with the mirror status, or one package (?path=)",
        querystring: CatalogQuery,
        response: {
          200: z.union([z.strictObject({ total: z.number().int(), packages: z.array(Package), upstream: UpstreamStatus }), Package]),
          ...compatErrors(400, 404),
        },
      },
    },
    async (req) => {
      const path = one(req.query as Query, 'path');
      if (path !== undefined) {
        const p = await catalog.get(path);
        if (!p) throw new AppError('not_found', `package ${JSON.stringify(path.slice(0, 300))} is not in the catalog`);
        return p;
      }
      const q = one(req.query as Query, 'q') ?? '';
      const packages = q ? await catalog.search(q) : await catalog.list();
      return { total: packages.length, packages, upstream: catalog.upstreamStatus() };
    },
  );
};

/**
 * The compatible API as a Fastify plugin: `app.register(compatApi, { service, catalog })`. Its
 * own encapsulated error handler answers every route in it (and whatever a hook refuses on them,
 * such as a missing token) in Caddy's envelope.
 */
export const compatApi: FastifyPluginAsync<CompatOptions> = async (app, o) => {
  app.setErrorHandler(compatErrorHandler);
  await app.register(downloadRoutes, o);
  await app.register(catalogRoutes, o);
};
