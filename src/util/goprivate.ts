/**
 * Go's private module patterns (`go help module-private`): GOPRIVATE, GONOPROXY and GONOSUMDB are
 * comma-separated globs matched against a prefix of the module path (golang.org/x/mod/module.
 * MatchPrefixPatterns: each glob against the prefix with as many elements, path.Match per element).
 * Here matching ignores case, so a private path written in other capitals stays private. Used by
 * the sandbox's module relay and the hub's fleet module proxy (docs/SECURITY.md).
 */

export interface PrivateModules {
  /** GONOPROXY (default GOPRIVATE): module path patterns no proxy may be asked for. */
  noProxy?: string;
  /** GONOSUMDB (default GOPRIVATE): module path patterns no checksum database may be asked about. */
  noSumdb?: string;
}

/** The relay's private patterns from the go settings, with Go's defaults (an empty value means unset, as in `go env`). */
export function privateModules(env: { goprivate?: string | undefined; gonoproxy?: string | undefined; gonosumdb?: string | undefined }): PrivateModules {
  const or = (v: string | undefined, d: string | undefined) => (v !== undefined && v.trim() !== '' ? v : d);
  const noProxy = or(env.gonoproxy, env.goprivate);
  const noSumdb = or(env.gonosumdb, env.goprivate);
  return { ...(noProxy ? { noProxy } : {}), ...(noSumdb ? { noSumdb } : {}) };
}

const literal = (c: string) => c.replace(/[.*+?^${}()|[\]\\/-]/g, (x) => `\\${x}`);

/** One glob element (Go's path.Match: `*`, `?`, `[…]` classes with ranges and `^`, `\` escapes) as a regular expression, ignoring case. */
function globElement(p: string): RegExp {
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < p.length) re += literal(p[++i]!);
    else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end === -1) return /(?!)/; // a bad pattern matches nothing (path.Match: ErrBadPattern)
      let cls = p.slice(i + 1, end).replace(/[\\\]]/g, (x) => `\\${x}`);
      if (cls.startsWith('^')) cls = `^${cls.slice(1)}`;
      re += `[${cls}]`;
      i = end;
    } else re += literal(c);
  }
  return new RegExp(`^${re}$`, 'i');
}

/**
 * The pattern of a comma-separated GOPRIVATE-style list that matches `module`, or null
 * (golang.org/x/mod/module.MatchPrefixPatterns: each glob against the path prefix with as many
 * elements; empty globs are ignored). Ignores case.
 */
export function matchPrivate(patterns: string | undefined, module: string): string | null {
  if (!patterns) return null;
  const elems = module.split('/');
  for (const raw of patterns.split(',')) {
    const glob = raw.trim().replace(/\/+$/, '');
    if (glob === '') continue;
    const g = glob.split('/');
    if (g.length > elems.length) continue;
    if (g.every((ge, i) => globElement(ge).test(elems[i]!))) return glob;
  }
  return null;
}
