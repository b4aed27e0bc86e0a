/**
 * Build policy (docs/SECURITY.md): which modules may be built, which Caddy versions,
 * and who may use replacements. A pure class: the service calls `checkRequest` right after the
 * spec parser (before anything is fetched) and `checkResolved` after versions are pinned.
 *
 * Module patterns follow GOPRIVATE's rules: a pattern is matched element by element against a
 * prefix of the module path, `*` and `?` match within one element. So `github.com/myorg/*` (and
 * `github.com/myorg`) allow every module of myorg, including `github.com/myorg/x/v2`. The word
 * `catalog` stands for every package the plugin catalog lists.
 *
 * Matching ignores case (patterns and the catalog alike): GitHub and most hosts treat
 * `github.com/MyOrg/Evil` and `github.com/myorg/evil` as one repository, so a deny pattern must
 * not be side-stepped by writing a path in capitals (Go itself would fetch the differently-cased
 * module path, whose go.mod may well declare it).
 */
import { expandScopes, type Scope } from '../auth/index.js';
import type { BuildRequest, ResolvedSpec } from '../request/index.js';
import { isExactVersion, isLocalPath } from '../request/index.js';
import { AppError, errorMessage } from '../util/errors.js';

export { BuildAdmission, freeBytesAt } from './admission.js';
export { RedisActiveBuilds } from './active-redis.js';

/** Who is asking: the scopes of the caller's token (or the anonymous ones). */
export interface PolicyContext {
  /** Trusted local callers (the CLI in-process) may do anything the policy allows. */
  trusted?: boolean;
  /** Absent = an internal caller with no token: no admin rights. */
  scopes?: Iterable<Scope>;
}

export interface PolicyOptions {
  /** Module path patterns that may be built; absent or empty = any module. `catalog` = listed packages. */
  allowModules?: readonly string[];
  /** Module path patterns that are refused, even when allowed above. */
  denyModules?: readonly string[];
  /** Allowed Caddy versions, e.g. ">=v2.8.0 <v3.0.0"; absent = any v2. */
  caddyVersions?: string;
  /** Whether the catalog lists a module (for the `catalog` pattern), ignoring case like the patterns (FileCatalog.lists does). */
  inCatalog?: (module: string) => boolean;
}

export const CATALOG_PATTERN = 'catalog';
const PATTERN_RE = /^[A-Za-z0-9._~*?-]+(\/[A-Za-z0-9._~*?-]+)*$/;

/** Null when `p` is a usable module pattern, else why not. */
export function modulePatternError(p: string): string | null {
  if (p === CATALOG_PATTERN) return null;
  if (p.length === 0 || p.length > 255) return 'must be 1 to 255 characters';
  if (!PATTERN_RE.test(p)) return 'may contain only letters, digits, "._~-", "/" between elements, and the wildcards "*" and "?"';
  return null;
}

/** Whether a GOPRIVATE-style glob pattern matches a prefix of the module path, ignoring case. */
export function matchModulePattern(pattern: string, module: string): boolean {
  const pe = pattern.toLowerCase().split('/');
  const me = module.toLowerCase().split('/');
  if (me.length < pe.length) return false;
  return pe.every((p, i) => globElem(p, me[i]!));
}

function globElem(p: string, s: string): boolean {
  // Iterative wildcard match (`*` any run, `?` one char); linear in practice, no regex built from input.
  let pi = 0;
  let si = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === s[si])) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = si;
    } else if (star !== -1) {
      pi = star + 1;
      si = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

// ---- semantic versions and ranges -------------------------------------------------------------

interface SemVer {
  major: number;
  minor: number;
  patch: number;
  pre: string[];
}

const SEMVER_RE = /^v?(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?(?:\.(0|[1-9][0-9]*))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$/;

export function parseSemver(v: string): SemVer | null {
  const m = SEMVER_RE.exec(v.trim());
  if (!m) return null;
  const n = (x: string | undefined) => (x === undefined ? 0 : Number(x));
  if (![m[1], m[2], m[3]].every((x) => x === undefined || Number.isSafeInteger(Number(x)))) return null;
  return { major: n(m[1]), minor: n(m[2]), patch: n(m[3]), pre: m[4] ? m[4].split('.') : [] };
}

/** Semver precedence (build metadata ignored); a prerelease sorts before its release. */
export function compareSemver(a: SemVer, b: SemVer): number {
  for (const k of ['major', 'minor', 'patch'] as const) if (a[k] !== b[k]) return a[k] < b[k] ? -1 : 1;
  if (!a.pre.length || !b.pre.length) return a.pre.length === b.pre.length ? 0 : a.pre.length ? -1 : 1;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const xn = /^[0-9]+$/.test(x);
    const yn = /^[0-9]+$/.test(y);
    if (xn && yn) return Number(x) < Number(y) ? -1 : 1;
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

type Op = '>=' | '>' | '<=' | '<' | '=';
interface Comparator {
  op: Op;
  v: SemVer;
}

/**
 * A version range: comparators joined by spaces or commas must all hold; `||` separates
 * alternatives. `>=v2.8.0 <v3`, `>=2.9, <2.11 || =2.11.2`, `v2.10.0` (exactly).
 */
export class VersionRange {
  private constructor(
    readonly text: string,
    private readonly alternatives: Comparator[][],
  ) {}

  static parse(text: string): VersionRange {
    const alternatives = text.split('||').map((alt, i) => {
      const parts = alt
        .trim()
        .split(/[\s,]+/)
        .filter(Boolean);
      if (!parts.length) throw new Error(`version range "${text}": alternative ${i + 1} is empty`);
      return parts.map((p) => {
        const m = /^(>=|<=|>|<|=)?(.+)$/.exec(p)!;
        const v = parseSemver(m[2]!);
        if (!v) throw new Error(`version range "${text}": "${p}" is not a comparison like >=v2.8.0`);
        return { op: (m[1] ?? '=') as Op, v };
      });
    });
    return new VersionRange(text.trim(), alternatives);
  }

  contains(version: string): boolean {
    const v = parseSemver(version);
    if (!v) return false;
    return this.alternatives.some((alt) =>
      alt.every(({ op, v: b }) => {
        const c = compareSemver(v, b);
        return op === '>=' ? c >= 0 : op === '>' ? c > 0 : op === '<=' ? c <= 0 : op === '<' ? c < 0 : c === 0;
      }),
    );
  }
}

export function versionRangeError(text: string): string | null {
  try {
    VersionRange.parse(text);
    return null;
  } catch (err) {
    return errorMessage(err);
  }
}

// ---- the policy --------------------------------------------------------------------------------

export const policyDenied = (message: string) => new AppError('policy_denied', message);

export class BuildPolicy {
  private readonly allow: readonly string[];
  private readonly deny: readonly string[];
  private readonly range: VersionRange | null;

  constructor(private readonly o: PolicyOptions = {}) {
    for (const p of [...(o.allowModules ?? []), ...(o.denyModules ?? [])]) {
      const err = modulePatternError(p);
      if (err) throw new Error(`module pattern "${p}" ${err}`);
    }
    if ((o.allowModules ?? []).includes(CATALOG_PATTERN) && !o.inCatalog) throw new Error('the "catalog" pattern needs a catalog');
    this.allow = o.allowModules ?? [];
    this.deny = o.denyModules ?? [];
    this.range = o.caddyVersions ? VersionRange.parse(o.caddyVersions) : null;
  }

  /** Null when the module may be fetched and built, else why not. */
  moduleError(module: string): string | null {
    const matches = (p: string) => (p === CATALOG_PATTERN ? !!this.o.inCatalog?.(module) : matchModulePattern(p, module));
    const denied = this.deniedError(module);
    if (denied) return denied;
    if (this.allow.length && !this.allow.some(matches)) {
      return `module ${module} is not allowed on this server (allowed: ${this.allow.map((p) => (p === CATALOG_PATTERN ? 'the catalog (GET /api/catalog)' : p)).join(', ')})`;
    }
    return null;
  }

  /**
   * Null unless the deny list matches the module. What a fetch of any module (a plugin or one of
   * its dependencies: the fleet module proxy) must obey; the allow list names what may be
   * requested as a plugin, not the dependencies those pull.
   */
  deniedError(module: string): string | null {
    const denied = this.deny.find((p) => (p === CATALOG_PATTERN ? !!this.o.inCatalog?.(module) : matchModulePattern(p, module)));
    return denied ? `module ${module} is not allowed on this server (denied by "${denied}")` : null;
  }

  /** Checks a parsed request before any version is resolved (nothing has been fetched yet). */
  checkRequest(req: BuildRequest, ctx: PolicyContext = {}): void {
    const admin = !!ctx.trusted || expandScopes(ctx.scopes ?? []).has('admin');
    req.plugins.forEach((p, i) => {
      const err = this.moduleError(p.module);
      if (err) throw policyDenied(`plugins[${i}].module: ${err}`);
      if (p.replace === undefined) return;
      if (!admin) {
        throw new AppError('admin_required', `plugins[${i}].replace: module replacements need a token with the admin scope (they swap the code that gets built)`);
      }
      if (!isLocalPath(p.replace)) {
        const target = p.replace.split('@')[0]!;
        const rerr = this.moduleError(target);
        if (rerr) throw policyDenied(`plugins[${i}].replace: ${rerr}`);
      }
    });
    // An exact version is refused before anything is fetched; queries are checked once resolved.
    if (isExactVersion(req.caddyVersion)) this.checkCaddy(req.caddyVersion);
  }

  /** Checks the pinned versions. */
  checkResolved(spec: ResolvedSpec): void {
    this.checkCaddy(spec.caddyVersion);
  }

  private checkCaddy(version: string): void {
    if (this.range && !this.range.contains(version)) {
      throw policyDenied(`caddyVersion: Caddy ${version} is outside the versions this server builds (${this.range.text})`);
    }
  }

  describe(): Record<string, unknown> {
    return {
      allowModules: this.allow.length ? this.allow : 'any',
      denyModules: this.deny,
      caddyVersions: this.range?.text ?? 'any v2',
    };
  }
}

// ---- Go module download settings ---------------------------------------------------------------

/**
 * Null when the module settings keep the checksum database on, else why not. GOSUMDB=off is
 * refused; GONOSUMDB/GOPRIVATE patterns are allowed, except catch-alls that would turn it off
 * for (nearly) everything, such as `*` or `*.com`.
 */
export function goEnvError(name: 'gosumdb' | 'gonosumdb' | 'goprivate' | 'gonoproxy', value: string): string | null {
  if (name === 'gosumdb') {
    if (value.trim().toLowerCase() === 'off') return 'GOSUMDB=off is refused: the Go checksum database stays on (exempt private modules with GONOSUMDB or GOPRIVATE patterns)';
    return null;
  }
  if (name === 'gonoproxy') return null;
  for (const raw of value.split(',')) {
    const p = raw.trim();
    if (p === '') continue;
    const first = p.split('/')[0]!;
    const literal = first.replace(/^(\*\.)+/, '');
    if (!/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(literal)) {
      return `${name.toUpperCase()} pattern "${p}" would turn the checksum database off for too much; name a domain such as corp.example.com or github.com/myorg`;
    }
  }
  return null;
}
