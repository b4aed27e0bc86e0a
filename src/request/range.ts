/**
 * Version ranges of recipe plugins (docs/recipes.md "Version ranges"): a recipe's plugin version is
 * `latest` (or left out), an exact version (v1.2.3), a semver range (`^1.2`, `~0.3.1`,
 * `>=1.0.0 <2.0.0`, `1.x`, `1.2.3 - 1.4`, `^1 || ^2`), or, as before ranges, any other version
 * query of the build grammar (a branch or commit), which Go resolves.
 *
 * A range is read by node-semver (`semver`, its default rules: a prerelease is admitted only when a
 * comparator of the same alternative names a prerelease of the same major.minor.patch), over a
 * grammar of our own that is a strict subset of node-semver's: no space after an operator, single
 * spaces between comparators, numbers of at most 15 digits. The subset has one regular expression
 * (RANGE_PATTERN, for the OpenAPI document), and `isVersionRange` is that expression and node-semver
 * agreeing, so the document and the check cannot drift (test/unit/recipe-range.test.ts).
 *
 * Go versions carry a `v` and may carry `+incompatible` (a v2+ tag of a module without a /vN path):
 * both are read as semver (the build metadata is ignored in comparisons), and the exact Go version
 * is what `admitted` answers. Pseudo-versions (v0.0.0-20240101000000-abcdef123456 and the like) are
 * never admitted: they name commits, not releases.
 */
import semver from 'semver';
import { MAX_VERSION, classifyVersionQuery, isExactVersion } from './grammar.js';

/** A number of a range: at most 15 digits, so every one is a safe integer for node-semver. */
const NUM = '(?:0|[1-9][0-9]{0,14})';
/** Wildcards: after the first one, only wildcards (node-semver refuses x.1 and 1.x.1). */
const X = '[xX*]';
/** A prerelease identifier: numeric without a leading zero, or with a letter or hyphen. */
const PRE_ID = '(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)';
const BUILD_ID = '[0-9A-Za-z-]+';
/** A version in a range: complete (with an optional prerelease and build), or partial (1, 1.2), or with x wildcards (1.x, 1.2.*, x). */
const PARTIAL = `v?(?:${NUM}\\.${NUM}\\.${NUM}(?:-${PRE_ID}(?:\\.${PRE_ID})*)?(?:\\+${BUILD_ID}(?:\\.${BUILD_ID})*)?|${X}(?:\\.${X}){0,2}|${NUM}(?:\\.(?:${X}(?:\\.${X})?|${NUM}(?:\\.${X})?))?)`;
const COMPARATOR = `(?:<=?|>=?|=|~|\\^)?${PARTIAL}`;
/** One alternative: a hyphen range, or comparators separated by single spaces (all must hold). */
const ALTERNATIVE = `(?:${PARTIAL} - ${PARTIAL}|${COMPARATOR}(?: ${COMPARATOR})*)`;
/** A semver range as recipes take it: alternatives separated by `||` (spaces around it allowed), at most 128 characters. */
export const RANGE_PATTERN = `(?=.{1,${MAX_VERSION}}$)${ALTERNATIVE}(?: *\\|\\| *${ALTERNATIVE})*`;
const RANGE_RE = new RegExp(`^${RANGE_PATTERN}$`);

/** Whether `v` is a version range of the recipe grammar (RANGE_PATTERN, and node-semver reads it). */
export function isVersionRange(v: string): boolean {
  return RANGE_RE.test(v) && semver.validRange(v) !== null;
}

export type RecipeVersionKind = 'latest' | 'exact' | 'range' | 'query';

/**
 * What a recipe plugin's version is: `latest` (absent, empty or `latest`), `exact` (v1.2.3, as Go
 * writes it), `range` (a semver range: resolved against the module's version list), `query` (any
 * other version query of the build grammar, a branch or commit: resolved by Go as in a build);
 * else why it is none of them.
 */
export function recipeVersionKind(v: string | undefined): { kind: RecipeVersionKind } | { error: string } {
  if (v === undefined || v === '' || v === 'latest') return { kind: 'latest' };
  if (v.length > MAX_VERSION) return { error: `is longer than ${MAX_VERSION} characters` };
  if (isExactVersion(v)) return { kind: 'exact' };
  if (isVersionRange(v)) return { kind: 'range' };
  const q = classifyVersionQuery(v);
  if ('kind' in q) return { kind: 'query' };
  return {
    error: `${JSON.stringify(v.slice(0, MAX_VERSION))} is not a version a recipe takes: use latest, an exact version (v1.2.3), or a semver range (^1.2, ~0.3.1, >=1.0.0 <2.0.0, 1.x; no space after an operator, one space between comparators, at most ${MAX_VERSION} characters)`,
  };
}

/**
 * A recipe plugin version as a pattern (OpenAPI): empty, or a version query of the build grammar
 * (`versionQueryPattern`, latest and exact versions among them), or a range.
 */
export function recipeVersionPattern(versionQueryPattern: string): string {
  return `(?:|${versionQueryPattern}|${RANGE_PATTERN})`;
}

/**
 * Go's pseudo-versions (golang.org/x/mod/module.IsPseudoVersion): vX.0.0-yyyymmddhhmmss-abcdef123456,
 * vX.Y.Z-pre.0.yyyymmddhhmmss-abcdef123456, vX.Y.(Z+1)-0.yyyymmddhhmmss-abcdef123456 (+build allowed).
 */
const PSEUDO_RE = /^v[0-9]+\.(?:0\.0-|[0-9]+\.[0-9]+-(?:[^+]*\.)?0\.)[0-9]{14}-[A-Za-z0-9]+(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

export function isPseudoVersion(v: string): boolean {
  return (v.match(/-/g)?.length ?? 0) >= 2 && isExactVersion(v) && PSEUDO_RE.test(v);
}

/** A Go version as node-semver reads it (the `v` dropped, build metadata kept); null when it is not one a range may admit. */
function asSemver(goVersion: string): semver.SemVer | null {
  if (!isExactVersion(goVersion) || isPseudoVersion(goVersion)) return null;
  try {
    return new semver.SemVer(goVersion.slice(1));
  } catch {
    // Beyond node-semver's limits (a number past 2^53): never admitted.
    return null;
  }
}

/**
 * The versions of `versions` (Go versions, any order) that `range` admits, newest first, as Go
 * writes them (`v1.2.3`, `v2.0.0+incompatible`). Pseudo-versions and anything that is not an exact
 * Go version are never admitted; a prerelease only when the range names a prerelease of the same
 * major.minor.patch (node-semver's rule). Throws when `range` is not a range (isVersionRange).
 */
export function admitted(versions: readonly string[], range: string): string[] {
  if (!isVersionRange(range)) throw new Error(`${JSON.stringify(range.slice(0, MAX_VERSION))} is not a version range`);
  const r = new semver.Range(range);
  const out: Array<{ go: string; sv: semver.SemVer }> = [];
  const seen = new Set<string>();
  for (const go of versions) {
    if (seen.has(go)) continue;
    seen.add(go);
    const sv = asSemver(go);
    if (sv && r.test(sv)) out.push({ go, sv });
  }
  // Newest first; two Go versions equal but for build metadata (not in one module's list) by their text.
  return out.sort((a, b) => semver.rcompare(a.sv, b.sv) || (a.go < b.go ? 1 : a.go > b.go ? -1 : 0)).map((x) => x.go);
}

/** The newest version `range` admits, or null. */
export function newestAdmitted(versions: readonly string[], range: string): string | null {
  return admitted(versions, range)[0] ?? null;
}
