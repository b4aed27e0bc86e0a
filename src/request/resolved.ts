/**
 * Checks a resolved spec that comes from outside this process: the payload of a job an agent
 * took from Redis. Hubs only queue specs they parsed and resolved themselves, but anyone who can
 * write to Redis could queue anything, so an agent holds the spec to the same grammar as a
 * request (module paths, exact versions, a buildable platform, no local directories) before any
 * of it reaches xcaddy. The caller also compares the spec's cache key with the job's key, so a
 * forged job cannot publish a binary under another spec's key.
 */
import { isExactVersion, isLocalPath, modulePathError } from './grammar.js';
import { SpecError } from './parse.js';
import { ARM_VERSIONS, type PlatformSet } from './platform.js';
import { resolvedSpecSchema } from './spec-schema.js';
import type { BuildRequest, ResolvedSpec } from './types.js';

export interface CheckResolvedOptions {
  /** Targets this machine's Go can build; absent = not checked. */
  platforms?: PlatformSet;
  /** Local directory replacements (only a trusted in-process caller may queue them). */
  allowLocalPaths: boolean;
}

/** The spec, typed, when every part of it is well-formed; else a SpecError naming the part. */
export function checkResolvedSpec(input: unknown, opts: CheckResolvedOptions): ResolvedSpec {
  const parsed = resolvedSpecSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new SpecError(`spec.${issue.path.join('.') || '(root)'}`, issue.message);
  }
  const spec = parsed.data;
  if (!isExactVersion(spec.caddyVersion)) throw new SpecError('spec.caddyVersion', `"${spec.caddyVersion}" is not an exact version`);
  const platform = opts.platforms?.check(spec.os, spec.arch);
  if (platform) throw new SpecError('spec.os', platform);
  if (spec.arch === 'arm' ? !spec.arm || !(ARM_VERSIONS as readonly string[]).includes(spec.arm) : spec.arm !== undefined) {
    throw new SpecError('spec.arm', spec.arch === 'arm' ? `must be one of ${ARM_VERSIONS.join(', ')}` : 'is only for arch "arm"');
  }
  const seen = new Set<string>();
  spec.plugins.forEach((p, i) => {
    const at = `spec.plugins[${i}]`;
    const bad = modulePathError(p.module);
    if (bad) throw new SpecError(`${at}.module`, bad);
    if (seen.has(p.module)) throw new SpecError(`${at}.module`, `${p.module} appears twice`);
    seen.add(p.module);
    if (p.version !== undefined && !isExactVersion(p.version)) throw new SpecError(`${at}.version`, `"${p.version}" is not an exact version`);
    if (p.version === undefined && !p.replace) throw new SpecError(`${at}.version`, 'is missing (a resolved plugin has an exact version or a replacement)');
    if (p.replace?.kind === 'module') {
      const badR = modulePathError(p.replace.module);
      if (badR) throw new SpecError(`${at}.replace.module`, badR);
      if (!isExactVersion(p.replace.version)) throw new SpecError(`${at}.replace.version`, `"${p.replace.version}" is not an exact version`);
    } else if (p.replace?.kind === 'path') {
      if (!opts.allowLocalPaths) throw new SpecError(`${at}.replace`, 'local directory replacements are not accepted here');
      if (!isLocalPath(p.replace.path)) throw new SpecError(`${at}.replace.path`, 'is not a local path');
    }
  });
  return spec;
}

const EXACT = /^v\d+\.\d+\.\d+$/;
const REQUEST_KEYS = new Set(['caddyVersion', 'os', 'arch', 'arm', 'plugins']);
const PLUGIN_KEYS = new Set(['module', 'version', 'replace']);

/**
 * Why a build request does not describe a resolved spec, or null when it does. An agent signs the
 * job's request beside the spec (provenance's externalParameters), so the request must be the one
 * that resolved to this spec: the same target, the same set of plugin modules, and every version
 * the request pinned exactly (`vX.Y.Z`, its replacements too) the one in the spec. Queries
 * (`latest`, a branch, a prefix) are not re-resolved here: the spec's exact version stands for them.
 */
export function requestMismatch(request: unknown, spec: ResolvedSpec): string | null {
  if (!request || typeof request !== 'object' || Array.isArray(request)) return 'the request is not an object';
  const r = request as Record<string, unknown>;
  const extra = Object.keys(r).filter((k) => !REQUEST_KEYS.has(k));
  if (extra.length) return `the request has fields a build request does not (${extra.join(', ').slice(0, 200)})`;
  if (r.caddyVersion !== undefined && (typeof r.caddyVersion !== 'string' || r.caddyVersion.length > 128)) return "the request's caddyVersion is not a version";
  if (r.os !== spec.os || r.arch !== spec.arch) return `the request's target ${String(r.os)}/${String(r.arch)} is not the spec's ${spec.os}/${spec.arch}`;
  if ((r.arm ?? undefined) !== (spec.arm ?? undefined)) return `the request's GOARM ${String(r.arm)} is not the spec's ${String(spec.arm)}`;
  if (typeof r.caddyVersion === 'string' && EXACT.test(r.caddyVersion) && r.caddyVersion !== spec.caddyVersion) {
    return `the request asks for Caddy ${r.caddyVersion}, the spec has ${spec.caddyVersion}`;
  }
  if (!Array.isArray(r.plugins)) return 'the request has no plugin list';
  const byModule = new Map(spec.plugins.map((p) => [p.module, p]));
  const seen = new Set<string>();
  for (const p of r.plugins as unknown[]) {
    const rp = p && typeof p === 'object' ? (p as Record<string, unknown>) : {};
    if (Object.keys(rp).some((k) => !PLUGIN_KEYS.has(k))) return 'a plugin of the request has fields a plugin request does not';
    if ((rp.version !== undefined && (typeof rp.version !== 'string' || rp.version.length > 128)) || (rp.replace !== undefined && typeof rp.replace === 'string' && rp.replace.length > 512)) {
      return 'a plugin of the request has a malformed version or replacement';
    }
    const module = typeof rp.module === 'string' ? rp.module : '';
    const sp = byModule.get(module);
    if (!sp || seen.has(module)) return `the request's plugin ${JSON.stringify(module).slice(0, 300)} is not in the spec (or is there twice)`;
    seen.add(module);
    if (typeof rp.version === 'string' && EXACT.test(rp.version) && rp.version !== sp.version) return `the request pins ${module}@${rp.version}, the spec has ${String(sp.version)}`;
    if (rp.replace !== undefined) {
      if (typeof rp.replace !== 'string' || !sp.replace) return `the request replaces ${module}, the spec does not`;
      const [rm, rv] = rp.replace.split('@');
      if (sp.replace.kind === 'module' && (rm !== sp.replace.module || (rv !== undefined && EXACT.test(rv) && rv !== sp.replace.version))) {
        return `the request replaces ${module} with ${rp.replace}, the spec with ${sp.replace.module}@${sp.replace.version}`;
      }
    } else if (sp.replace) return `the spec replaces ${module}, the request does not`;
  }
  if (seen.size !== byModule.size) return `the spec has plugins the request did not ask for (${[...byModule.keys()].filter((m) => !seen.has(m)).join(', ')})`;
  return null;
}

/**
 * The request of a stored record as a BuildRequest with only a request's fields (records are
 * read from a store that older versions, or anyone with access, wrote): the known fields when
 * they have the right types, else the request the spec itself answers.
 */
export function storedRequest(request: unknown, spec: ResolvedSpec): BuildRequest {
  const r = request && typeof request === 'object' && !Array.isArray(request) ? (request as Record<string, unknown>) : null;
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const plugins = Array.isArray(r?.plugins)
    ? (r.plugins as unknown[]).flatMap((p) => {
        const o = p && typeof p === 'object' ? (p as Record<string, unknown>) : {};
        const module = str(o.module);
        if (!module) return [];
        const version = str(o.version);
        const replace = str(o.replace);
        return [{ module, ...(version !== undefined ? { version } : {}), ...(replace !== undefined ? { replace } : {}) }];
      })
    : null;
  if (!r || !plugins || str(r.os) === undefined || str(r.arch) === undefined) {
    return {
      caddyVersion: spec.caddyVersion,
      os: spec.os,
      arch: spec.arch,
      ...(spec.arm ? { arm: spec.arm } : {}),
      plugins: spec.plugins.map((p) => ({ module: p.module, ...(p.version ? { version: p.version } : {}) })),
    };
  }
  const arm = str(r.arm);
  return { caddyVersion: str(r.caddyVersion) ?? 'latest', os: str(r.os)!, arch: str(r.arch)!, ...(arm !== undefined ? { arm } : {}), plugins };
}
