/**
 * What an SBOM says about one build, read from the binary's own Go build info (`go version -m
 * -json`, stored as buildinfo.json): its modules with their versions, `h1:` sums and replacements,
 * the Go version and the build settings. Malformed entries are left out, never guessed.
 */

/** One module of the binary, sorted by path; `id` is unique in the document (an SPDXID and a CycloneDX bom-ref). */
export interface SbomModule {
  id: string;
  path: string;
  /** The version the binary was built with: the replacement's when the module is replaced by a module. */
  version: string;
  /** `h1:` sum (of the replacement when replaced); absent for a local directory or a module without one. */
  sum?: string;
  /** The module or local directory it is replaced by (`path@version` or a path). */
  replacedBy?: string;
  /** Package URL (`pkg:golang/...@version`); absent for a local directory replacement. */
  purl?: string;
}

export interface SbomFacts {
  key: string;
  filename: string;
  sha256: string;
  caddyVersion: string;
  goVersion?: string;
  /** The Go standard library's purl (`pkg:golang/stdlib@v1.26.0`) when the Go version reads as one. */
  stdlibPurl?: string;
  main?: { path: string; version: string };
  modules: SbomModule[];
  settings: Array<{ key: string; value: string }>;
}

/** Everything an SBOM is made from: the build's key and binary, and the build info stored with it. */
export interface SbomInput {
  /** The build's cache key (its id). */
  key: string;
  filename: string;
  /** The binary's sha256 (hex). */
  sha256: string;
  /** Caddy's exact version (the resolved spec's). */
  caddyVersion: string;
  /** `go version -m -json` of the binary. */
  buildInfo: unknown;
}

interface GoModule {
  Path?: unknown;
  Version?: unknown;
  Sum?: unknown;
  Replace?: GoModule | null;
}

const str = (v: unknown): v is string => typeof v === 'string' && v !== '';

/** A purl segment: percent-encoded as the purl spec asks ('+' of `+incompatible` is %2B). */
const enc = (s: string) => encodeURIComponent(s);

export function golangPurl(path: string, version: string): string {
  return `pkg:golang/${path.split('/').map(enc).join('/')}@${enc(version)}`;
}

/** `go1.26.0` → `v1.26.0` (the stdlib's module version, as the Go vulnerability database writes it). */
function stdlibVersion(go: string): string | null {
  const m = /^go(\d+)\.(\d+)(?:\.(\d+))?$/.exec(go);
  return m ? `v${m[1]}.${m[2]}.${m[3] ?? '0'}` : null;
}

/** An SPDX identifier's idstring: letters, digits, '.' and '-'. */
function idOf(prefix: string, path: string, taken: Set<string>): string {
  const base = `${prefix}${path.replace(/[^A-Za-z0-9.-]+/g, '-')}`;
  let id = base;
  for (let n = 2; taken.has(id); n++) id = `${base}-${n}`;
  taken.add(id);
  return id;
}

/** The facts of one build, from its build info; the same input gives the same facts, in the same order. */
export function sbomFacts(i: SbomInput): SbomFacts {
  const info = (i.buildInfo && typeof i.buildInfo === 'object' ? i.buildInfo : {}) as { GoVersion?: unknown; Main?: GoModule; Deps?: unknown; Settings?: unknown };
  const deps = (Array.isArray(info.Deps) ? info.Deps : []) as GoModule[];
  const taken = new Set<string>();
  const modules: SbomModule[] = [];
  const sorted = deps.filter((d): d is GoModule & { Path: string; Version: string } => !!d && str(d.Path) && str(d.Version)).sort((a, b) => (a.Path < b.Path ? -1 : a.Path > b.Path ? 1 : 0));
  for (const d of sorted) {
    const r = d.Replace && str(d.Replace.Path) ? d.Replace : null;
    const local = !!r && !str(r.Version);
    const version = r && !local ? (r.Version as string) : d.Version;
    const sum = r ? r.Sum : d.Sum;
    modules.push({
      id: idOf('SPDXRef-Module-', d.Path, taken),
      path: d.Path,
      version,
      ...(str(sum) ? { sum } : {}),
      ...(r ? { replacedBy: local ? (r.Path as string) : `${r.Path as string}@${version}` } : {}),
      ...(local ? {} : { purl: golangPurl(r ? (r.Path as string) : d.Path, version) }),
    });
  }
  const settings = (Array.isArray(info.Settings) ? info.Settings : [])
    .filter((s): s is { Key: string; Value: string } => !!s && str((s as { Key?: unknown }).Key) && typeof (s as { Value?: unknown }).Value === 'string')
    .map((s) => ({ key: s.Key, value: s.Value }));
  const goVersion = str(info.GoVersion) ? info.GoVersion : undefined;
  const std = goVersion ? stdlibVersion(goVersion) : null;
  const main = info.Main && str(info.Main.Path) ? { path: info.Main.Path, version: str(info.Main.Version) ? info.Main.Version : '(devel)' } : undefined;
  return {
    key: i.key,
    filename: i.filename,
    sha256: i.sha256,
    caddyVersion: i.caddyVersion,
    ...(goVersion ? { goVersion } : {}),
    ...(std ? { stdlibPurl: golangPurl('stdlib', std) } : {}),
    ...(main ? { main } : {}),
    modules,
    settings,
  };
}

/** The sha256 (hex) an `h1:` sum is the base64 of, or null. */
export function h1Hex(sum: string): string | null {
  const m = /^h1:([A-Za-z0-9+/]{43}=)$/.exec(sum);
  return m ? Buffer.from(m[1]!, 'base64').toString('hex') : null;
}
