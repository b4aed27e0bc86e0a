/**
 * Checks a resolved spec that comes from outside this process: the payload of a job an agent
 * took from Redis. Hubs only queue specs they parsed and resolved themselves, but anyone who can
 * write to Redis could queue anything, so an agent holds the spec to the same grammar as a
 * request (module paths, exact versions, a buildable platform, no local directories) before any
 * of it reaches xcaddy. The caller also compares the spec's cache key with the job's key, so a
 * forged job cannot publish a binary under another spec's key.
 */
import { z } from 'zod';
import { isExactVersion, isLocalPath, modulePathError } from './grammar.js';
import { SpecError } from './parse.js';
import { ARM_VERSIONS, type PlatformSet } from './platform.js';
import type { ResolvedSpec } from './types.js';

const text = (max: number) => z.string().min(1).max(max);

const schema = z.strictObject({
  caddyVersion: text(128),
  os: text(32),
  arch: text(32),
  arm: text(4).optional(),
  plugins: z
    .array(
      z.strictObject({
        module: text(255),
        version: text(128).optional(),
        replace: z
          .discriminatedUnion('kind', [z.strictObject({ kind: z.literal('module'), module: text(255), version: text(128) }), z.strictObject({ kind: z.literal('path'), path: text(4096) })])
          .optional(),
      }),
    )
    .max(200),
  toolchain: z.strictObject({ go: text(64), xcaddy: text(64), flags: text(256) }),
});

export interface CheckResolvedOptions {
  /** Targets this machine's Go can build; absent = not checked. */
  platforms?: PlatformSet;
  /** Local directory replacements (only a trusted in-process caller may queue them). */
  allowLocalPaths: boolean;
}

/** The spec, typed, when every part of it is well-formed; else a SpecError naming the part. */
export function checkResolvedSpec(input: unknown, opts: CheckResolvedOptions): ResolvedSpec {
  const parsed = schema.safeParse(input);
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
  return spec as ResolvedSpec;
}
