import { z } from 'zod';
import { AppError } from '../util/errors.js';
import { classifyVersionQuery, isLocalPath, modulePathError } from './grammar.js';
import { ARM_VERSIONS, DEFAULT_ARM, type PlatformSet } from './platform.js';
import type { BuildRequest, PluginRequest } from './types.js';

export const CADDY_MODULE = 'github.com/caddyserver/caddy/v2';

/** A request that cannot be built as given; `field` names the offending input. */
export class SpecError extends AppError {
  constructor(
    override readonly field: string,
    message: string,
  ) {
    super('invalid_spec', `${field}: ${message}`);
    this.name = 'SpecError';
  }
}

export interface ParseOptions {
  platforms: PlatformSet;
  maxPlugins: number;
  /** Local directory replacements are for trusted local callers (the CLI), never HTTP. */
  allowLocalReplace: boolean;
}

const str = (max: number) => z.string().max(max * 4);
const pluginShape = z.object({ module: str(255), version: str(128).optional(), replace: str(512).optional() }).strict();
const requestShape = z
  .object({
    caddyVersion: str(128).optional(),
    os: str(32).optional(),
    arch: str(32).optional(),
    arm: z.union([str(4), z.number().int()]).optional(),
    plugins: z.array(pluginShape).max(10_000).optional(),
  })
  .strict();

/** Validates untrusted input against Go's grammar and the toolchain's platform list. */
export function parseBuildRequest(input: unknown, opts: ParseOptions): BuildRequest {
  const shaped = requestShape.safeParse(input);
  if (!shaped.success) {
    const issue = shaped.error.issues[0]!;
    const field = issue.path.length ? issue.path.join('.') : 'body';
    throw new SpecError(field, issue.message);
  }
  const raw = shaped.data;

  const caddyVersion = normaliseCaddyVersion(raw.caddyVersion);
  const os = checkToken('os', raw.os ?? '');
  const arch = checkToken('arch', raw.arch ?? '');
  const platformError = opts.platforms.check(os, arch);
  if (platformError) throw new SpecError('os/arch', platformError);

  let arm: string | undefined;
  const armRaw = raw.arm === undefined || raw.arm === '' ? undefined : String(raw.arm);
  if (arch === 'arm') {
    arm = armRaw ?? DEFAULT_ARM;
    if (!(ARM_VERSIONS as readonly string[]).includes(arm)) {
      throw new SpecError('arm', `must be one of ${ARM_VERSIONS.join(', ')} (got "${arm}")`);
    }
  } else if (armRaw !== undefined) {
    throw new SpecError('arm', 'is only valid with arch "arm"');
  }

  const pluginsRaw = raw.plugins ?? [];
  if (pluginsRaw.length > opts.maxPlugins) {
    throw new SpecError('plugins', `at most ${opts.maxPlugins} plugins per build (got ${pluginsRaw.length})`);
  }
  const seen = new Set<string>();
  const plugins = pluginsRaw.map((p, i) => {
    const plugin = checkPlugin(`plugins[${i}]`, p, opts);
    if (seen.has(plugin.module)) throw new SpecError(`plugins[${i}].module`, `duplicate module "${plugin.module}"`);
    seen.add(plugin.module);
    return plugin;
  });
  return { caddyVersion, os, arch, ...(arm ? { arm } : {}), plugins };
}

function checkToken(field: string, v: string): string {
  if (v === '') throw new SpecError(field, 'is required');
  if (!/^[a-z0-9]{1,16}$/.test(v)) throw new SpecError(field, 'must be a Go platform name such as "linux" or "amd64"');
  return v;
}

function normaliseCaddyVersion(v: string | undefined): string {
  if (v === undefined || v === '' || v === 'latest') return 'latest';
  const version = /^2(\.[0-9]|$)/.test(v) ? `v${v}` : v;
  const q = classifyVersionQuery(version);
  if ('error' in q) throw new SpecError('caddyVersion', q.error);
  if ((q.kind === 'exact' || q.kind === 'prefix') && !/^v2(\.|$)/.test(version)) {
    throw new SpecError('caddyVersion', `Fairway builds Caddy v2; "${v}" is not a v2 version`);
  }
  return version;
}

function checkModule(field: string, module: string): string {
  const err = modulePathError(module);
  if (err) throw new SpecError(field, `module path ${err}`);
  return module;
}

function checkVersion(field: string, version: string): string {
  const q = classifyVersionQuery(version);
  if ('error' in q) throw new SpecError(field, `version ${q.error}`);
  return version;
}

function checkPlugin(field: string, p: z.infer<typeof pluginShape>, opts: ParseOptions): PluginRequest {
  const module = checkModule(`${field}.module`, p.module);
  if (module === CADDY_MODULE) throw new SpecError(`${field}.module`, 'Caddy itself is chosen with caddyVersion, not as a plugin');
  const out: PluginRequest = { module };
  if (p.version !== undefined && p.version !== '') out.version = checkVersion(`${field}.version`, p.version);
  if (p.replace !== undefined && p.replace !== '') out.replace = checkReplace(`${field}.replace`, p.replace, opts);
  return out;
}

function checkReplace(field: string, r: string, opts: ParseOptions): string {
  if (isLocalPath(r)) {
    if (!opts.allowLocalReplace) throw new SpecError(field, 'local path replacements are not allowed over HTTP; publish the module and use module@version');
    if (!/^[\x21-\x7e]+$/.test(r) || r.length > 512) throw new SpecError(field, 'local path must be printable ASCII without spaces');
    return r;
  }
  const at = r.indexOf('@');
  if (at === -1) {
    checkModule(field, r);
    return r;
  }
  checkModule(field, r.slice(0, at));
  checkVersion(field, r.slice(at + 1));
  return r;
}

/**
 * Parses the compact `module[@version][=replacement]` form used by `--with` and by the
 * caddyserver.com download API's `p` parameter into a (not yet validated) plugin object.
 */
export function parsePluginArg(arg: string): { module: string; version?: string; replace?: string } {
  const eq = arg.indexOf('=');
  const left = eq === -1 ? arg : arg.slice(0, eq);
  const replace = eq === -1 ? undefined : arg.slice(eq + 1);
  const at = left.indexOf('@');
  const module = at === -1 ? left : left.slice(0, at);
  const version = at === -1 ? undefined : left.slice(at + 1);
  return { module, ...(version !== undefined ? { version } : {}), ...(replace !== undefined ? { replace } : {}) };
}
