/**
 * Configuration: defaults < config file (JSON) < environment (FAIRWAY_*) < command-line flags.
 * Every value is validated here, at the edge, with a message naming the setting.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { parseBytes, parseDuration } from '../util/units.js';

/** The project folder (where package.json and .tools/ are). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const XCADDY_VERSION = 'v0.4.5';

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseDuration(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
}).pipe(z.number().int().positive('must be greater than zero'));
const bytes = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    return parseBytes(v);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
}).pipe(z.number().int().positive('must be greater than zero'));
const int = (min: number, max: number) =>
  z
    .union([z.number(), z.string().trim().regex(/^[0-9]+$/, 'must be a whole number').transform(Number)])
    .pipe(z.number().int().min(min).max(max));

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
    goBin: z.string().min(1).default('go'),
    xcaddyBin: z.string().min(1).default(join(PROJECT_ROOT, '.tools', 'bin', 'xcaddy')),
    /** Distributed mode: the Redis that carries the BullMQ queue, logs and agent heartbeats. */
    redis: z.string().optional(),
    /** Artifact store: a directory, fs:///path, or s3://bucket/prefix?endpoint=...; default <dataDir>/artifacts. */
    store: z.string().optional(),
    /** Serve downloads by redirecting to a presigned URL when the store supports it. */
    downloadRedirect: z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1').default(false),
    agentId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" and "-" only').optional(),
    jobAttempts: int(1, 20).default(3),
    /** How long an agent's lock on a job lasts; a dead agent's job is taken back after about this. */
    jobLockDuration: duration.default(30_000),
    stalledInterval: duration.default(15_000),
    goproxy: z.string().optional(),
    goprivate: z.string().optional(),
    gonosumdb: z.string().optional(),
    gonoproxy: z.string().optional(),
    gosumdb: z.string().optional(),
    /** caddyserver.com-shaped package list to mirror into the catalog (e.g. https://caddyserver.com/api/packages). */
    catalogUpstream: z.url({ protocol: /^https?$/ }).optional(),
    /** How often the catalog mirror refreshes; 0 = only at start. */
    catalogRefresh: duration.default(6 * 3600_000),
    /** Learn plugins' Caddy module IDs by running built binaries: off, catalog (listed plugins only), all. */
    catalogLearn: z.enum(['off', 'catalog', 'all']).default('catalog'),
  })
  .strict();

export type Config = z.output<typeof configSchema> & { cacheDir: string };
export type ConfigInput = z.input<typeof configSchema>;

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
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
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
  const dataDir = resolve(c.dataDir);
  return { ...c, dataDir, cacheDir: resolve(c.cacheDir ?? join(dataDir, 'go')) };
}
