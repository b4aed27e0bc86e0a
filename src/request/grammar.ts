/**
 * Go's grammar for module paths and version queries, checked by hand because nothing from a
 * request may reach the toolchain unchecked. The rules follow golang.org/x/mod/module.CheckPath
 * and the `go help module-get` query syntax, restricted to ASCII.
 */

export const MAX_MODULE_PATH = 255;
export const MAX_VERSION = 128;

const ELEM_CHARS = /^[A-Za-z0-9._~-]+$/;
const FIRST_ELEM = /^[a-z0-9.-]+$/;
const WINDOWS_RESERVED = new Set([
  'con',
  'prn',
  'aux',
  'nul',
  'com1',
  'com2',
  'com3',
  'com4',
  'com5',
  'com6',
  'com7',
  'com8',
  'com9',
  'lpt1',
  'lpt2',
  'lpt3',
  'lpt4',
  'lpt5',
  'lpt6',
  'lpt7',
  'lpt8',
  'lpt9',
]);

/** Returns null when `path` is a valid Go module path, else a human-readable reason. */
export function modulePathError(path: string): string | null {
  if (path.length === 0) return 'is empty';
  if (path.length > MAX_MODULE_PATH) return `is longer than ${MAX_MODULE_PATH} characters`;
  if (!/^[\x21-\x7e]+$/.test(path)) return 'must contain only printable ASCII characters (no spaces, no unicode)';
  if (path.startsWith('-')) return 'must not start with "-"';
  if (path.startsWith('/') || path.endsWith('/')) return 'must not start or end with "/"';
  const elems = path.split('/');
  const first = elems[0]!;
  if (!first.includes('.')) return `must start with a domain name containing a dot (got "${first}")`;
  if (!FIRST_ELEM.test(first)) return 'domain part may contain only lowercase letters, digits, "." and "-"';
  if (first.startsWith('-')) return 'domain part must not start with "-"';
  for (const elem of elems) {
    if (elem === '') return 'must not contain empty path elements ("//")';
    if (elem === '.' || elem === '..') return 'must not contain "." or ".." elements';
    if (!ELEM_CHARS.test(elem)) return `element "${elem}" may contain only letters, digits and "-._~"`;
    if (elem.startsWith('.') || elem.endsWith('.')) return `element "${elem}" must not start or end with "."`;
    const short = elem.split('.')[0]!.toLowerCase();
    if (WINDOWS_RESERVED.has(short)) return `element "${elem}" is a reserved file name on Windows`;
    if (/~[0-9]+$/.test(short)) return `element "${elem}" looks like a Windows short name`;
  }
  const last = elems[elems.length - 1]!;
  if (elems.length > 1 && /^v[0-9]+$/.test(last) && !/^v([2-9]|[1-9][0-9]+)$/.test(last)) {
    return `major version suffix "/${last}" is invalid (must be /v2 or higher, without leading zeros)`;
  }
  return null;
}

const NUM = '(?:0|[1-9][0-9]*)';
const IDENT = '[0-9A-Za-z-]+';
const PRE = `(?:-${IDENT}(?:\\.${IDENT})*)`;
const BUILD = `(?:\\+${IDENT}(?:\\.${IDENT})*)`;
/** Complete semantic version as Go uses it (pseudo-versions and +incompatible included). */
const EXACT_RE = new RegExp(`^v${NUM}\\.${NUM}\\.${NUM}${PRE}?${BUILD}?$`);
/** Version prefix queries like v2 or v2.11, which Go resolves to the newest matching release. */
const PREFIX_RE = new RegExp(`^v${NUM}(?:\\.${NUM})?$`);
/**
 * Comparisons: `<` and `>=` take a prefix too (v2, v2.11); `<=` and `>` a complete version only, as
 * the go command refuses to say whether `<=v2.11` allows v2.11.3 ("ambiguous semantic version").
 */
const COMPARE_RE = new RegExp(`^(?:(?:<|>=)v${NUM}(?:\\.${NUM}(?:\\.${NUM}${PRE}?)?)?|(?:<=|>)v${NUM}\\.${NUM}\\.${NUM}${PRE}?)$`);
/** Branch names or commit hashes: Go passes them to the VCS/proxy as revision queries. */
const REVISION_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

export function isExactVersion(v: string): boolean {
  return EXACT_RE.test(v) && numericPrereleaseOk(v);
}

function numericPrereleaseOk(v: string): boolean {
  const m = /-([^+]*)/.exec(v.replace(/^v[0-9.]+/, ''));
  if (!m || !v.includes('-')) return true;
  return m[1]!.split('.').every((id) => !/^0[0-9]+$/.test(id));
}

export type VersionQueryKind = 'latest' | 'exact' | 'prefix' | 'compare' | 'revision';

/** Classifies a version query, or returns an error string. */
export function classifyVersionQuery(v: string): { kind: VersionQueryKind } | { error: string } {
  if (v.length === 0) return { error: 'is empty' };
  if (v.length > MAX_VERSION) return { error: `is longer than ${MAX_VERSION} characters` };
  if (!/^[\x21-\x7e]+$/.test(v)) return { error: 'must contain only printable ASCII characters' };
  if (v.startsWith('-')) return { error: 'must not start with "-"' };
  if (v === 'latest') return { kind: 'latest' };
  if (v === 'upgrade' || v === 'patch' || v === 'none') return { error: `query "${v}" is not supported; use "latest", a version or a revision` };
  if (isExactVersion(v)) return { kind: 'exact' };
  if (PREFIX_RE.test(v)) return { kind: 'prefix' };
  if (COMPARE_RE.test(v) && numericPrereleaseOk(v.replace(/^[<>]=?/, ''))) return { kind: 'compare' };
  if (/^v[0-9]/.test(v)) return { error: `"${v}" is not a valid semantic version (expected like v1.2.3)` };
  if (REVISION_RE.test(v) && !v.includes('..') && !v.includes('//') && !v.endsWith('/') && !v.endsWith('.lock') && !v.endsWith('.')) {
    return { kind: 'revision' };
  }
  return { error: 'must be "latest", a semantic version (v1.2.3), a comparison (>=v1.2.0), or a branch/commit name' };
}

/** Local filesystem path replacements, in the forms xcaddy and `go mod edit -replace` accept. */
export function isLocalPath(s: string): boolean {
  return s.startsWith('/') || s.startsWith('./') || s.startsWith('../') || s === '.' || s === '..' || /^[A-Za-z]:[\\/]/.test(s);
}

// ---------------------------------------------------------------- the same grammar as patterns
// For the OpenAPI document (src/api): regular expressions (ECMA-262, as JSON Schema `pattern`)
// that accept exactly what the checks above accept, so a client generating requests from the
// document sends what the server takes. test/unit/spec-patterns.test.ts holds them to the checks.

const N = '(?:0|[1-9][0-9]*)';
/** A pre-release identifier of an exact version: no leading zero when numeric. */
const PRE_ID = `(?:${N}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)`;
const BUILD_P = '[0-9A-Za-z-]+';
const EXACT = `v${N}\\.${N}\\.${N}(?:-${PRE_ID}(?:\\.${PRE_ID})*)?(?:\\+${BUILD_P}(?:\\.${BUILD_P})*)?`;
const PREFIX_P = `v${N}(?:\\.${N})?`;
const PRE_P = `(?:-${PRE_ID}(?:\\.${PRE_ID})*)?`;
const COMPARE = `(?:(?:<|>=)v${N}(?:\\.${N}(?:\\.${N}${PRE_P})?)?|(?:<=|>)v${N}\\.${N}\\.${N}${PRE_P})`;
/** A branch or commit: not v<digit> (that must be a version), not upgrade/patch/none, no "..", "//", no trailing "/", "." or ".lock". */
const REVISION = '(?!v[0-9])(?!(?:upgrade|patch|none)$)(?!.*\\.\\.)(?!.*//)(?!.*(?:/|\\.|\\.lock)$)[A-Za-z0-9][A-Za-z0-9._/-]*';
/** A version query (classifyVersionQuery): latest, an exact version, a prefix (v2.11), a comparison (>=v2.10) or a revision. */
export const VERSION_QUERY_PATTERN = `(?:${EXACT}|${PREFIX_P}|${COMPARE}|${REVISION})`;

/** Windows reserved names and short names, refused as any element's part before its first dot. */
const RESERVED_P = '(?!(?:[Cc][Oo][Nn]|[Pp][Rr][Nn]|[Aa][Uu][Xx]|[Nn][Uu][Ll]|[Cc][Oo][Mm][1-9]|[Ll][Pp][Tt][1-9])(?:[./]|$))(?![^/.]*~[0-9]+(?:[./]|$))';
const FIRST_ELEM_P = `(?=[a-z0-9.-]*\\.)${RESERVED_P}[a-z0-9](?:[a-z0-9.-]*[a-z0-9-])?`;
const ELEM = `${RESERVED_P}[A-Za-z0-9_~-](?:[A-Za-z0-9._~-]*[A-Za-z0-9_~-])?`;
/** A module path (modulePathError): a host name with a dot, then elements; no /v0 or /v1 suffix. */
export const MODULE_PATH_PATTERN = `(?!.*/v(?:[01]|0[0-9]+)$)${FIRST_ELEM_P}(?:/${ELEM})*`;

/** `^…$` around a pattern, for a whole value. */
export function whole(pattern: string): string {
  return `^${pattern}$`;
}

/**
 * A caddyVersion as a build request takes it (parse.ts normaliseCaddyVersion): empty or latest,
 * a v2 version or prefix (the `v` may be left out: 2.11.9), a comparison, or a revision.
 */
export const CADDY_VERSION_PATTERN = `(?:|latest|v?2(?:\\.${N}(?:\\.${N}(?:-${PRE_ID}(?:\\.${PRE_ID})*)?(?:\\+${BUILD_P}(?:\\.${BUILD_P})*)?)?)?|${COMPARE}|(?!2(?:\\.[0-9]|$))${REVISION})`;
