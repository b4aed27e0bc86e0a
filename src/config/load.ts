/**
 * Loading: defaults < config file (JSON) < environment (FAIRWAY_*) < command-line flags, merged,
 * validated (validate.ts), and the paths that default to others (cacheDir, toolsDir, the tools) filled in.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { errorMessage } from '../util/errors.js';
import { defaultToolsDir } from './install.js';
import { configSchema, type Config } from './schema.js';
import { ConfigError, validateSettings } from './validate.js';

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
  const c = validateSettings(merged);
  const dataDir = resolve(c.dataDir);
  const toolsDir = resolve(c.toolsDir ?? defaultToolsDir({ env }));
  return {
    ...c,
    dataDir,
    cacheDir: resolve(c.cacheDir ?? join(dataDir, 'go')),
    toolsDir,
    xcaddyBin: c.xcaddyBin ?? join(toolsDir, 'bin', 'xcaddy'),
    goCacheProgBin: c.goCacheProgBin ?? join(toolsDir, 'bin', 'fairway-cacheprog'),
    configFile: file ? resolve(file) : undefined,
  };
}
