/**
 * The settings table: every setting, its kind of value (values.ts), its default and what it does,
 * in sections. A new setting is one line here (and its flag in src/main/flags.ts and its row in
 * the README's configuration table); loading (load.ts) and validation (validate.ts) follow it.
 */
import { z } from 'zod';
import { hostNameError, normalizeOrigin, originError } from '../util/hosts.js';
import { SCOPES, bearerTokenError } from '../auth/index.js';
import { versionRangeError } from '../policy/index.js';
import { isCacheKey } from '../request/index.js';
import { webhookTargetsSchema } from '../webhooks/index.js';
import { parseBytes } from '../util/units.js';
import { bool, bytes, bytesOrZero, checked, duration, goEnv, imagePlatform, int, list, opsList, patterns, recipesSetting, specObject } from './values.js';

export const configSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: int(0, 65535).default(8080),
    dataDir: z.string().min(1).default('.data'),
    /** Go module and build caches; default <dataDir>/go. */
    cacheDir: z.string().min(1).optional(),
    workers: int(1, 64).default(1),
    buildTimeout: duration.default(30 * 60_000),
    resolveTtl: duration.default(10 * 60_000),
    maxPlugins: int(0, 200).default(50),
    maxArtifactSize: bytes.default(parseBytes('512MB')),
    bodyLimit: bytes.default(64 * 1024),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** `auto`: readable lines on a terminal, JSON lines otherwise; `json` or `pretty` to force one. */
    logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
    goBin: z.string().min(1).default('go'),
    /** Where `fairway setup` puts xcaddy and fairway-cacheprog (`<toolsDir>/bin`); default: defaultToolsDir(). */
    toolsDir: z.string().min(1).optional(),
    /** Default `<toolsDir>/bin/xcaddy`. */
    xcaddyBin: z.string().min(1).optional(),
    /** Distributed mode: the Redis that carries the BullMQ queue, logs and agent heartbeats. */
    redis: z.string().optional(),
    /** Artifact store: a directory, fs:///path, or s3://bucket/prefix?endpoint=...; default <dataDir>/artifacts. */
    store: z.string().optional(),
    /** Memory for the hot tier (src/hottier): recently downloaded binaries served from RAM; 0 = off. */
    memoryCache: bytesOrZero.default(parseBytes('256MiB')),
    /** Serve downloads by redirecting to a presigned URL when the store supports it. */
    downloadRedirect: bool.default(false),
    agentId: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" and "-" only')
      .optional(),
    jobAttempts: int(1, 20).default(3),
    /** Hubs: how often the index is resynced from the store listing. */
    indexRescanInterval: duration.default(60_000),
    /** How long an agent's lock on a job lasts; a dead agent's job is taken back after about this. */
    jobLockDuration: duration.default(30_000),
    stalledInterval: duration.default(15_000),
    goproxy: z.string().optional(),
    goprivate: goEnv('goprivate').optional(),
    gonosumdb: goEnv('gonosumdb').optional(),
    gonoproxy: z.string().optional(),
    /** The checksum database stays on: "off" is refused (docs/SECURITY.md). */
    gosumdb: goEnv('gosumdb').optional(),
    /** caddyserver.com-shaped package list to mirror into the catalog (e.g. https://caddyserver.com/api/packages). */
    catalogUpstream: z.url({ protocol: /^https?$/ }).optional(),
    /** How often the catalog mirror refreshes; 0 = only at start. */
    catalogRefresh: duration.default(6 * 3600_000),
    /** Learn plugins' Caddy module IDs by running built binaries: off, catalog (listed plugins only), all. */
    catalogLearn: z.enum(['off', 'catalog', 'all']).default('catalog'),

    // ---- build sandbox (docs/SECURITY.md) ----
    /** bwrap: every go command and every run of a built binary in bubblewrap; none: the unsafe, loudly logged opt-out. */
    sandbox: z.enum(['bwrap', 'none']).default('bwrap'),
    /** The unprivileged user builds run as when Fairway runs as root: a name or uid:gid. */
    buildUser: z
      .string()
      .regex(/^(?:[a-z_][a-z0-9_-]{0,31}|[0-9]+:[0-9]+)$/, 'a user name or uid:gid')
      .default('fairway-build'),
    // Resource limits of sandboxed commands (docs/SECURITY.md "Resource limits"): go commands ...
    /** Memory (RAM + swap) of one go command (a build's xcaddy and its compilers together). */
    buildMemoryMax: bytes.pipe(z.number().min(256 * 1024 * 1024, 'must be at least 256MiB (go builds need it)')).default(4 * 1024 ** 3),
    /** Processes and threads of one go command. */
    buildTasksMax: int(64, 1_000_000).default(1024),
    /** Size of the go commands' /tmp and /dev/shm (tmpfs, each). */
    buildTmpfsSize: bytes.default(1024 ** 3),
    /** Largest file a go command may write (RLIMIT_FSIZE): module zips, the binary (maxArtifactSize must fit). */
    buildFileSizeMax: bytes.pipe(z.number().min(64 * 1024 * 1024, 'must be at least 64MiB')).default(2 * 1024 ** 3),
    /** ... and runs of a built binary (`caddy version`, `list-modules`): memory, tasks, /tmp and /dev/shm (also their largest file). */
    runMemoryMax: bytes.pipe(z.number().min(32 * 1024 * 1024, 'must be at least 32MiB')).default(512 * 1024 * 1024),
    runTasksMax: int(8, 1_000_000).default(128),
    runTmpfsSize: bytes.default(64 * 1024 * 1024),
    /** auto: a cgroup per sandboxed command where Fairway can make one (v2 delegated, or v1 as root), rlimits otherwise; rlimits: never cgroups. */
    sandboxLimits: z.enum(['auto', 'rlimits']).default('auto'),

    // ---- operations (docs/operations.md) ----
    /** Byte budget of the artifact store; least recently downloaded artifacts are pruned first. */
    storeMaxBytes: bytes.optional(),
    /** Artifacts not downloaded (or, never downloaded, built) for this long are pruned. */
    storeMaxAge: duration.optional(),
    /** Never pruned: exact cache keys, or build specs (POST /api/builds bodies) resolved to their current key. */
    pinned: opsList(z.union([z.string().refine(isCacheKey, 'a pinned string must be a 64-hex cache key'), specObject])).default([]),
    /** Specs kept built; `platforms: ["linux/amd64", ...]` expands; as a string "linux/amd64,linux/arm64" = latest Caddy, no plugins. */
    prebuild: opsList(specObject, (platforms) => [{ caddyVersion: 'latest', platforms, plugins: [] }]).default([]),
    /** How often the Caddy version list is refreshed (and prebuilds re-checked). */
    refreshInterval: duration.default(3_600_000),

    // ---- OCI registry (docs/registry.md) ----
    /** Named plugin sets served as `caddy/<name>` images: `{"<name>": {plugins: [{module, version?}], caddyVersion?}}` (JSON from env/flags). */
    recipes: recipesSetting.default({}),
    /** Platforms of a tag's image index (`linux/amd64`, `linux/arm/v7`); missing ones are built on demand. */
    imagePlatforms: list.pipe(z.array(imagePlatform).min(1)).default(['linux/amd64', 'linux/arm64']),
    /** How long a manifest request waits for on-demand builds before answering 503 with Retry-After. */
    imageWait: duration.default(10 * 60_000),
    /**
     * How often recipes are checked against upstream (a new Caddy release, plugin versions a recipe
     * admits): candidates are trial-built and promoted only when they pass (docs/recipes.md). 0: off.
     */
    watchInterval: duration.default(3_600_000),
    /**
     * Webhook targets (docs/recipes.md "Webhooks"): `[{url, secret, events?}]`, JSON from
     * FAIRWAY_WEBHOOKS or a list in the config file; no flag (the secrets stay out of `ps`).
     * http/https URLs, a non-empty secret, events from WEBHOOK_EVENTS (absent: all).
     */
    webhooks: webhookTargetsSchema.default([]),
    /** The server's public URL (https://fairway.example), for absolute links in webhook payloads; default: paths only. */
    publicUrl: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL')
      .optional(),
    /** How often the store (and the Go cache budget) is checked, besides after each new artifact. */
    pruneInterval: duration.default(3_600_000),
    /** Budget of this process's Go build + module caches (serve and agent); cleaned between builds. */
    goCacheMaxBytes: bytes.optional(),
    /** Last-download times are written to the store at most once per this interval per artifact. */
    accessWriteInterval: duration.default(60_000),

    // ---- provenance (docs/provenance.md) ----
    /** ECDSA P-256 private key (PKCS#8 PEM file) a builder (serve, agent) signs provenance and images with; a hub never signs. */
    signingKey: z.string().min(1).optional(),
    /** Public key (PEM file) a hub serves at /api/signing-key for its agents' signatures; default: the signing key's public half. */
    publicKey: z.string().min(1).optional(),
    /**
     * ECDSA P-256 private key (PKCS#8 PEM file) that signs the image indexes behind tags, after each
     * platform image verified under the build key (docs/provenance.md, "Tags"). Default: on `serve`
     * its build signing key; on a hub `<dataDir>/index-signing.key`, made at first start.
     */
    indexSigningKey: z.string().min(1).optional(),

    // ---- security (docs/SECURITY.md) ----
    /** JSON file of API tokens: [{name, hash: "sha256:<hex>", scopes}] (scrypt: hashes are refused). */
    authFile: z.string().min(1).optional(),
    /** FAIRWAY_TOKENS: "name:scope1+scope2:<sha256 hex>,...". */
    tokens: z.string().optional(),
    /** Scopes for requests without a token ("none" for none); default: read+build on a loopback server without tokens, else read. Never admin. */
    anonymousScopes: list
      .transform((l) => (l.length === 1 && l[0] === 'none' ? [] : l))
      .pipe(z.array(z.enum(SCOPES)).refine((l) => !l.includes('admin'), 'admin is never granted to anonymous clients'))
      .optional(),
    /** Take the client address from X-Forwarded-For: true, or the proxies' addresses/CIDRs. */
    trustProxy: z
      .union([z.boolean(), z.string().min(1)])
      .transform((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v))
      .optional(),
    /** Module path patterns that may be built ("catalog" = listed packages); default any. */
    allowModules: patterns.optional(),
    /** Module path patterns that are refused. */
    denyModules: patterns.default([]),
    /** Caddy versions this server builds, e.g. ">=v2.8.0 <v3.0.0"; default any v2. */
    caddyVersions: checked(versionRangeError).optional(),
    /** Requests per client per window (0 = no limit); build routes also count against buildRateLimit. */
    rateLimit: int(0, 1_000_000).default(1200),
    rateLimitWindow: duration.default(60_000),
    buildRateLimit: int(0, 1_000_000).default(120),
    /** Builds one client (token or address) may have queued or running; 0 = no limit. */
    maxActiveBuilds: int(0, 100_000).default(10),
    /** Go commands resolving versions at once (the rest wait in line, up to 30 s, then 503 resolver_busy). */
    maxResolutions: int(1, 256).default(4),
    /** How long a query that did not resolve (no such version or module) is answered from memory (422), without a go command. */
    resolveFailureTtl: duration.default(60_000),
    /** Free disk needed (build cache and local store) before a build is queued or started; 0 = no check. */
    minFreeDisk: bytesOrZero.default(parseBytes('2GB')),

    // ---- fleet (docs/distributed.md) ----
    /** Agents: the hub whose fleet module proxy (`<hub>/goproxy`) comes first in the module relay's GOPROXY list. */
    fleetProxy: z
      .url({ protocol: /^https?$/ })
      .refine((u) => {
        const url = new URL(u);
        return !url.username && !url.password && !url.search && !url.hash;
      }, 'the hub URL without credentials, query or fragment (the token goes in fleetToken)')
      .transform((u) => u.replace(/\/+$/, ''))
      .optional(),
    /** Agents: the token (agent scope) the relay sends to the fleet proxy only; from FAIRWAY_FLEET_TOKEN or the config file, never a flag. */
    fleetToken: checked(bearerTokenError).optional(),

    // ---- shared build cache (docs/distributed.md) ----
    /** Agents: share Go build outputs across the fleet through GOCACHEPROG and the store's `gocache/` area (Go >= 1.24). */
    goCacheShared: bool.default(false),
    /** Byte budget of the shared Go build cache in the store (least recently used out first); absent: none. The local tier keeps to goCacheMaxBytes. */
    goCacheSharedMaxBytes: bytes.optional(),
    /** The GOCACHEPROG program (tools/cacheprog, built by the setup step); default `<toolsDir>/bin/fairway-cacheprog`. */
    goCacheProgBin: z.string().min(1).optional(),

    // ---- connections and timeouts (docs/operations.md "Connections and timeouts") ----
    /** Time a client has to send the request line and headers (Node's headersTimeout); never applies to a response. */
    headersTimeout: duration.default(30_000),
    /** Time a client has to send the whole request, body included (Node's requestTimeout); a response in progress is never cut. */
    requestTimeout: duration.default(60_000),
    /** How long an idle keep-alive connection (between requests) stays open (Node's keepAliveTimeout). */
    keepAliveTimeout: duration.default(65_000),
    /** Open connections per client address (counted per remote address); over it a connection gets a 503; 0 = no limit. */
    maxConnectionsPerClient: int(0, 1_000_000).default(256),

    // ---- cross-site requests and DNS rebinding (src/api/crosssite.ts, docs/SECURITY.md) ----
    /** Host names answered besides localhost, 127.0.0.1, [::1] and `host`; checked on loopback, and on any address once set. */
    allowedHosts: list.pipe(z.array(checked(hostNameError))).default([]),
    /** Origins of web pages besides Fairway's own that may call the API, e.g. https://ci.example.com. */
    allowedOrigins: list.pipe(z.array(checked(originError).transform((o) => normalizeOrigin(o)!))).default([]),
  })
  .strict();

/** The settings as validated, before the defaults that depend on others are filled in (load.ts). */
export type Settings = z.output<typeof configSchema>;

/** The configuration every part reads: the settings, with every path filled in. */
export type Config = Settings & {
  cacheDir: string;
  toolsDir: string;
  xcaddyBin: string;
  goCacheProgBin: string;
  /** The config file read (`--config`, FAIRWAY_CONFIG), resolved; it may hold secrets (fleetToken, webhook secrets, a Redis password). */
  configFile?: string;
};
