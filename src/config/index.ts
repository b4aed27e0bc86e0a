/**
 * Configuration: defaults < config file (JSON) < environment (FAIRWAY_*) < command-line flags.
 * Every value is validated here, at the edge, with a message naming the setting.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { hostNameError, normalizeOrigin, originError } from '../util/hosts.js';
import { SCOPES, bearerTokenError } from '../auth/index.js';
import { goEnvError, modulePatternError, versionRangeError } from '../policy/index.js';
import { isCacheKey, recipeVersionKind, testConfigError, type TestConfig } from '../request/index.js';
import { parseBytes, parseDuration } from '../util/units.js';
import { errorMessage } from '../util/errors.js';

/** The project folder (where package.json and .tools/ are). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The pinned xcaddy: the one version `fairway setup` installs and `fairway doctor` expects. */
export const XCADDY_VERSION = 'v0.4.7';
export const XCADDY_MODULE = 'github.com/caddyserver/xcaddy/cmd/xcaddy';
/** The oldest Go the builds, xcaddy and tools/cacheprog need (goCacheShared: 1.24). */
export const MIN_GO_VERSION = '1.22';
/**
 * The Node.js lines Fairway runs on: those that still get security fixes (package.json
 * `engines.node` says the same). 24 is the active LTS and what a checkout, the tests and CI run
 * (the `node` devDependency); 22 from 22.12 is maintenance LTS. 23 and anything older are past
 * their end of life.
 */
export const NODE_ENGINES = '^22.12.0 || >=24.0.0';
export const NODE_RECOMMENDED = '24';

// ---- install kind and tools dir (docs/install.md) ----
/**
 * How this Fairway was installed: `checkout` (a clone of the repository, run with npm scripts:
 * it has its TypeScript sources) or `package` (`npm install -g fairway-<version>.tgz`: compiled
 * output only).
 */
export type InstallKind = 'checkout' | 'package';
export function installKindOf(root: string): InstallKind {
  return existsSync(join(root, 'src', 'main', 'index.ts')) ? 'checkout' : 'package';
}
export const INSTALL_KIND: InstallKind = installKindOf(PROJECT_ROOT);
/**
 * The exact command that installs what is missing (xcaddy, fairway-cacheprog, the sandbox's OS
 * parts): `npm run setup` in a checkout, `fairway setup` for the package; with the tools dir
 * named when it is not the default one.
 */
export function setupCommand(o: { toolsDir?: string; kind?: InstallKind } = {}): string {
  const kind = o.kind ?? INSTALL_KIND;
  const custom = o.toolsDir !== undefined && resolve(o.toolsDir) !== resolve(defaultToolsDir({ kind }));
  if (kind === 'checkout') return custom ? `FAIRWAY_TOOLS_DIR=${o.toolsDir} npm run setup` : 'npm run setup';
  return custom ? `fairway setup --tools-dir ${o.toolsDir}` : 'fairway setup';
}
/**
 * Where `fairway setup` installs the tools when toolsDir is not set: `<checkout>/.tools` for a
 * checkout; for a package `/usr/local/lib/fairway/tools` as root, else `$XDG_DATA_HOME/fairway/tools`
 * (default `~/.local/share/fairway/tools`).
 */
export function defaultToolsDir(o: { kind?: InstallKind; env?: NodeJS.ProcessEnv; uid?: number; root?: string } = {}): string {
  const kind = o.kind ?? INSTALL_KIND;
  if (kind === 'checkout') return join(o.root ?? PROJECT_ROOT, '.tools');
  // Root: under /usr/local, read-only to the systemd units (ProtectSystem=strict) and outside their StateDirectory.
  if ((o.uid ?? process.getuid?.() ?? -1) === 0) return '/usr/local/lib/fairway/tools';
  const env = o.env ?? process.env;
  const xdg = env.XDG_DATA_HOME ?? '';
  // The XDG spec: a relative XDG_DATA_HOME is invalid and ignored.
  const data = xdg.startsWith('/') ? xdg : join(env.HOME || '/nonexistent', '.local', 'share');
  return join(data, 'fairway', 'tools');
}
// ---- end install kind ----
/** This Fairway's version (package.json), in provenance and `fairway --version`. */
export const FAIRWAY_VERSION: string = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const duration = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    try {
      return parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: errorMessage(e) });
      return z.NEVER;
    }
  })
  .pipe(z.number().int().positive('must be greater than zero'));
const bytes = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    try {
      return parseBytes(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: errorMessage(e) });
      return z.NEVER;
    }
  })
  .pipe(z.number().int().positive('must be greater than zero'));
const int = (min: number, max: number) =>
  z
    .union([
      z.number(),
      z
        .string()
        .trim()
        .regex(/^[0-9]+$/, 'must be a whole number')
        .transform(Number),
    ])
    .pipe(z.number().int().min(min).max(max));
/** A list from JSON (array) or from a flag/env (comma-separated). */
const list = z.union([
  z.array(z.string()),
  z.string().transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  ),
]);
const patterns = list.pipe(
  z.array(
    z.string().superRefine((p, ctx) => {
      const err = modulePatternError(p);
      if (err) ctx.addIssue({ code: 'custom', message: `module pattern "${p}" ${err}` });
    }),
  ),
);
/** A size, or 0 for "off". One parse, so a bad value gets parseBytes' message rather than a union's "Invalid input". */
const bytesOrZero = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    const n = parseBytes(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid size "${v}": must be 0 or a positive size`);
    return n;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: errorMessage(e) });
    return z.NEVER;
  }
});
const goEnv = (name: 'gosumdb' | 'gonosumdb' | 'goprivate') =>
  z.string().superRefine((v, ctx) => {
    const err = goEnvError(name, v);
    if (err) ctx.addIssue({ code: 'custom', message: err });
  });

/** Ops lists (pinned, prebuild): a JSON array in a file; from env/flags a JSON array or comma-separated items. */
function opsList<T extends z.ZodType>(item: T, fromString: (parts: string[]) => unknown[] = (p) => p) {
  return z
    .union([z.array(z.unknown()), z.string()])
    .transform((v, ctx) => {
      if (Array.isArray(v)) return v;
      const t = v.trim();
      if (t === '') return [];
      if (t.startsWith('[')) {
        try {
          return JSON.parse(t) as unknown[];
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: `invalid JSON list: ${errorMessage(e)}` });
          return z.NEVER;
        }
      }
      return fromString(
        t
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      );
    })
    .pipe(z.array(item));
}
const specObject = z.record(z.string(), z.unknown());
/** Recipes: an object in a file; from env/flags a JSON object. Names and plugins are checked again by src/registry. */
const recipesSetting = z.preprocess(
  (v, ctx) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `invalid JSON object: ${errorMessage(e)}` });
      return z.NEVER;
    }
  },
  z.record(
    z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a recipe name is [a-z0-9][a-z0-9-]{0,63}'),
    z.strictObject({
      plugins: z
        .array(
          z.strictObject({
            module: z.string().min(1),
            // latest, exact, a semver range (^1.2, >=1.0.0 <2.0.0) or a branch: docs/recipes.md "Version ranges".
            version: z
              .string()
              .min(1)
              .superRefine((v, ctx) => {
                const k = recipeVersionKind(v);
                if ('error' in k) ctx.addIssue({ code: 'custom', message: k.error });
              })
              .optional(),
          }),
        )
        .max(200),
      caddyVersion: z.string().min(1).optional(),
      // A Caddyfile or a Caddy JSON config, at most 64 KiB: only its shape and size are checked here.
      testConfig: z
        .unknown()
        .superRefine((v, ctx) => {
          const err = testConfigError(v);
          if (err) ctx.addIssue({ code: 'custom', message: err });
        })
        .transform((v) => v as TestConfig)
        .optional(),
    }),
  ),
);

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
    downloadRedirect: z
      .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
      .transform((v) => v === true || v === 'true' || v === '1')
      .default(false),
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
    imagePlatforms: list.pipe(z.array(z.string().regex(/^linux\/[a-z0-9]+(?:\/v[5-8])?$/, 'a platform like linux/amd64 or linux/arm/v7')).min(1)).default(['linux/amd64', 'linux/arm64']),
    /** How long a manifest request waits for on-demand builds before answering 503 with Retry-After. */
    imageWait: duration.default(10 * 60_000),
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
    caddyVersions: z
      .string()
      .superRefine((v, ctx) => {
        const err = versionRangeError(v);
        if (err) ctx.addIssue({ code: 'custom', message: err });
      })
      .optional(),
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
    fleetToken: z
      .string()
      .superRefine((t, ctx) => {
        const err = bearerTokenError(t);
        if (err) ctx.addIssue({ code: 'custom', message: err });
      })
      .optional(),

    // ---- shared build cache (docs/distributed.md) ----
    /** Agents: share Go build outputs across the fleet through GOCACHEPROG and the store's `gocache/` area (Go >= 1.24). */
    goCacheShared: z
      .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
      .transform((v) => v === true || v === 'true' || v === '1')
      .default(false),
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
    allowedHosts: list
      .pipe(
        z.array(
          z.string().superRefine((h, ctx) => {
            const err = hostNameError(h);
            if (err) ctx.addIssue({ code: 'custom', message: err });
          }),
        ),
      )
      .default([]),
    /** Origins of web pages besides Fairway's own that may call the API, e.g. https://ci.example.com. */
    allowedOrigins: list
      .pipe(
        z.array(
          z
            .string()
            .superRefine((o, ctx) => {
              const err = originError(o);
              if (err) ctx.addIssue({ code: 'custom', message: err });
            })
            .transform((o) => normalizeOrigin(o)!),
        ),
      )
      .default([]),
  })
  .strict();

export type Config = z.output<typeof configSchema> & {
  cacheDir: string;
  toolsDir: string;
  xcaddyBin: string;
  goCacheProgBin: string;
  /** The config file read (`--config`, FAIRWAY_CONFIG), resolved; it may hold secrets (fleetToken, a Redis password). */
  configFile?: string;
};

/** FAIRWAY_DATA_DIR -> dataDir, etc. */
export function envToConfig(env: NodeJS.ProcessEnv): Record<string, string> {
  const keys = Object.keys(configSchema.shape);
  const out: Record<string, string> = {};
  for (const k of keys) {
    const name = `FAIRWAY_${k.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
    const v = env[name];
    if (v !== undefined && v !== '') out[k] = v;
  }
  // The standard Go variables are honoured too when not set the Fairway way.
  for (const g of ['GOPROXY', 'GOPRIVATE', 'GONOSUMDB', 'GONOPROXY', 'GOSUMDB']) {
    const k = g.toLowerCase();
    if (out[k] === undefined && env[g]) out[k] = env[g]!;
  }
  return out;
}

/** The resource limits of sandboxed commands per profile (src/sandbox's SandboxLimits), from the settings. */
export function sandboxLimitsOf(c: Pick<Config, 'buildMemoryMax' | 'buildTasksMax' | 'buildTmpfsSize' | 'buildFileSizeMax' | 'runMemoryMax' | 'runTasksMax' | 'runTmpfsSize'>) {
  return {
    toolchain: { memoryBytes: c.buildMemoryMax, tasks: c.buildTasksMax, tmpfsBytes: c.buildTmpfsSize, fileBytes: c.buildFileSizeMax },
    binary: { memoryBytes: c.runMemoryMax, tasks: c.runTasksMax, tmpfsBytes: c.runTmpfsSize, fileBytes: c.runTmpfsSize },
  };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function loadConfig(opts: { flags?: Record<string, unknown>; env?: NodeJS.ProcessEnv; file?: string }): Config {
  const env = opts.env ?? process.env;
  const file = opts.file ?? (env.FAIRWAY_CONFIG || undefined);
  let fromFile: Record<string, unknown> = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${errorMessage(err)}`);
    }
  }
  const flags = Object.fromEntries(Object.entries(opts.flags ?? {}).filter(([, v]) => v !== undefined));
  const merged = { ...fromFile, ...envToConfig(env), ...flags };
  const parsed = configSchema.safeParse(merged);
  if (!parsed.success) {
    const msgs = parsed.error.issues.map((i) => `${i.path.join('.') || 'config'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${msgs.join('; ')}`);
  }
  const c = parsed.data;
  if (c.maxArtifactSize > c.buildFileSizeMax) {
    throw new ConfigError(`invalid configuration: buildFileSizeMax: must not be smaller than maxArtifactSize (${c.maxArtifactSize} bytes): the go command writes the binary under this limit`);
  }
  if (c.headersTimeout > c.requestTimeout) {
    throw new ConfigError(`invalid configuration: headersTimeout: must not be longer than requestTimeout (${c.requestTimeout} ms)`);
  }
  const dataDir = resolve(c.dataDir);
  const toolsDir = resolve(c.toolsDir ?? defaultToolsDir({ env }));
  return {
    ...c,
    dataDir,
    cacheDir: resolve(c.cacheDir ?? join(dataDir, 'go')),
    toolsDir,
    xcaddyBin: c.xcaddyBin ?? join(toolsDir, 'bin', 'xcaddy'),
    goCacheProgBin: c.goCacheProgBin ?? join(toolsDir, 'bin', 'fairway-cacheprog'),
    ...(file ? { configFile: resolve(file) } : {}),
  };
}

/** A file that holds a secret, and the setting (or variable) that names it. */
export interface SecretFile {
  setting: string;
  path: string;
  /** How to name the moved file, when not by setting `setting`. */
  fix?: string;
}

/** The environment file the systemd units read (deploy/systemd, EnvironmentFile=): it may hold FAIRWAY_FLEET_TOKEN, FAIRWAY_TOKENS. */
export const UNIT_ENV_FILE = '/etc/fairway/fairway.env';

/**
 * Every file this configuration names that holds a secret, which no sandboxed build may see
 * (checked at start by src/main): the signing keys (signingKey, indexSigningKey), the config file (fleetToken, a Redis URL with
 * its password), the auth file (token hashes), the units' environment file, and, for an S3
 * store, the AWS SDK's credential and token files named by their variables (or the defaults in
 * ~/.aws). Files that do not exist are left out, except the signing keys (whose absence is
 * reported where it is loaded).
 */
export function secretFiles(config: Config, env: NodeJS.ProcessEnv = process.env): SecretFile[] {
  const out: SecretFile[] = [];
  if (config.signingKey) out.push({ setting: 'signingKey', path: resolve(config.signingKey) });
  if (config.indexSigningKey) out.push({ setting: 'indexSigningKey', path: resolve(config.indexSigningKey) });
  const existing = (setting: string, path: string | undefined, fix?: string) => {
    if (path && existsSync(path)) out.push({ setting, path: resolve(path), ...(fix ? { fix } : {}) });
  };
  existing('the config file', config.configFile, 'start Fairway with --config (or FAIRWAY_CONFIG) naming the new path');
  existing('authFile', config.authFile);
  existing(`the units' environment file`, UNIT_ENV_FILE, 'keep it where the units read it (EnvironmentFile=)');
  if (config.store?.startsWith('s3://')) {
    const home = env.HOME || '';
    existing('AWS_SHARED_CREDENTIALS_FILE', env.AWS_SHARED_CREDENTIALS_FILE || (home && join(home, '.aws', 'credentials')));
    existing('AWS_CONFIG_FILE', env.AWS_CONFIG_FILE || (home && join(home, '.aws', 'config')));
    existing('AWS_WEB_IDENTITY_TOKEN_FILE', env.AWS_WEB_IDENTITY_TOKEN_FILE);
    existing('AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE);
  }
  return out;
}
