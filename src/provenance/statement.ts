/**
 * The provenance of a build: an in-toto Statement v1 whose subject is the binary (or an image
 * manifest) and whose predicate is SLSA Provenance v1 (docs/provenance.md). Its JSON is canonical
 * (sorted keys), so two builders that build the same spec write statements that differ only in
 * the builder and the times.
 */
import { BUILD_FLAGS, canonicalJson, canonicalRequest, canonicalSpec, requestMismatch, type BuildRequest, type ResolvedSpec } from '../request/index.js';

export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
/** What a Fairway build is: the parameters below mean what docs/provenance.md says. */
export const BUILD_TYPE = 'https://fairway.dev/buildtypes/xcaddy/v1';
const CADDY_MODULE = 'github.com/caddyserver/caddy/v2';

export interface DigestSet {
  [algorithm: string]: string;
}

export interface ResourceDescriptor {
  name?: string;
  uri?: string;
  digest?: DigestSet;
  annotations?: Record<string, string>;
}

export interface SlsaProvenance {
  buildDefinition: {
    buildType: string;
    externalParameters: { request: unknown; spec: unknown };
    internalParameters: Record<string, unknown>;
    resolvedDependencies: ResourceDescriptor[];
  };
  runDetails: {
    builder: { id: string; version?: Record<string, string> };
    metadata: { invocationId: string; startedOn?: string; finishedOn?: string };
  };
}

export interface Statement {
  _type: typeof STATEMENT_TYPE;
  subject: Array<{ name: string; digest: DigestSet }>;
  predicateType: typeof SLSA_PROVENANCE_V1;
  predicate: SlsaProvenance;
}

/** The part of `go version -m -json` this reads. */
interface GoModule {
  Path?: string;
  Version?: string;
  Sum?: string;
  Replace?: GoModule;
}

export interface ProvenanceInput {
  /** The build's cache key: the invocation id. */
  key: string;
  request: BuildRequest | unknown;
  spec: ResolvedSpec;
  /** `go version -m -json` of the binary (absent: no dependencies listed). */
  buildInfo?: unknown;
  /** Who built it: an agent id, or `serve@<host>`. */
  builder: string;
  /** This Fairway's version. */
  fairwayVersion: string;
  startedAt?: string;
  finishedAt?: string;
}

/** The `h1:` sum of a module as the in-toto `dirHash` (lowercase hex of the same sha256). */
export function dirHash(sum: string): string | null {
  const m = /^h1:([A-Za-z0-9+/]{43}=)$/.exec(sum);
  return m ? Buffer.from(m[1]!, 'base64').toString('hex') : null;
}

function moduleRole(path: string, plugins: ReadonlySet<string>): string {
  if (path === CADDY_MODULE) return 'caddy';
  return plugins.has(path) ? 'plugin' : 'dependency';
}

/** Every module of the binary's build info, with its exact version and Go checksum; sorted by path. */
export function resolvedDependencies(buildInfo: unknown, spec: ResolvedSpec): ResourceDescriptor[] {
  const deps = (buildInfo as { Deps?: GoModule[] } | null)?.Deps;
  if (!Array.isArray(deps)) return [];
  const plugins = new Set(spec.plugins.map((p) => p.module));
  const out: ResourceDescriptor[] = [];
  for (const d of deps) {
    if (!d || typeof d.Path !== 'string' || typeof d.Version !== 'string') continue;
    const used = d.Replace && typeof d.Replace.Path === 'string' ? d.Replace : d;
    const annotations: Record<string, string> = { role: moduleRole(d.Path, plugins), version: d.Version };
    if (typeof used.Sum === 'string') annotations.sum = used.Sum;
    if (used !== d) annotations.replacedBy = `${used.Path}${used.Version ? `@${used.Version}` : ''}`;
    const hex = typeof used.Sum === 'string' ? dirHash(used.Sum) : null;
    out.push({
      name: d.Path,
      uri: `pkg:golang/${used.Path}@${used.Version ?? d.Version}`,
      ...(hex ? { digest: { dirHash: hex } } : {}),
      annotations,
    });
  }
  return out.sort((a, b) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : 0));
}

const isRequestLike = (r: unknown): r is { plugins: Array<{ module: string }> } =>
  !!r &&
  typeof r === 'object' &&
  Array.isArray((r as { plugins?: unknown }).plugins) &&
  (r as { plugins: unknown[] }).plugins.every((p) => !!p && typeof (p as { module?: unknown }).module === 'string');

/** A build whose provenance this builder will not write: what it would sign is not what it verified. */
export class ProvenanceRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvenanceRefused';
  }
}

/**
 * Why the provenance of building `spec` for `request` cannot be signed, or null when it can: the
 * spec's flags must be exactly the flags Fairway builds with (BUILD_FLAGS; the statement says
 * so), and the request must be one that resolved to this spec (src/request requestMismatch), since
 * both are signed as the build's external parameters. An agent's job check refuses such jobs
 * before they run (src/service/jobcheck.ts); this is the same rule where the statement is made.
 */
export function unsignableReason(request: unknown, spec: ResolvedSpec): string | null {
  if (spec.toolchain?.flags !== BUILD_FLAGS) return `the spec names the build flags ${JSON.stringify(spec.toolchain?.flags).slice(0, 80)}, but Fairway builds with ${BUILD_FLAGS}`;
  const mismatch = requestMismatch(request, spec);
  return mismatch ? `its request contradicts its spec: ${mismatch}` : null;
}

/** The SLSA v1 predicate of one build; throws ProvenanceRefused when unsignableReason has one. */
export function provenancePredicate(i: ProvenanceInput): SlsaProvenance {
  const spec = i.spec;
  const refused = unsignableReason(i.request, spec);
  if (refused) throw new ProvenanceRefused(`no provenance for build ${i.key}: ${refused}`);
  return {
    buildDefinition: {
      buildType: BUILD_TYPE,
      // Plugins in the key's order in both: the order a client listed them in changes nothing built.
      externalParameters: { request: isRequestLike(i.request) ? canonicalRequest(i.request) : i.request, spec: canonicalSpec(spec) },
      internalParameters: {
        go: spec.toolchain.go,
        xcaddy: spec.toolchain.xcaddy,
        // The flags Fairway builds with, checked above: never a value carried by the job.
        buildFlags: BUILD_FLAGS,
        env: { CGO_ENABLED: '0', GOOS: spec.os, GOARCH: spec.arch, ...(spec.arm ? { GOARM: spec.arm } : {}) },
      },
      resolvedDependencies: resolvedDependencies(i.buildInfo, spec),
    },
    runDetails: {
      builder: { id: `urn:fairway:builder:${i.builder}`, version: { fairway: i.fairwayVersion } },
      metadata: { invocationId: i.key, ...(i.startedAt ? { startedOn: i.startedAt } : {}), ...(i.finishedAt ? { finishedOn: i.finishedAt } : {}) },
    },
  };
}

export function statement(subject: Array<{ name: string; digest: DigestSet }>, predicate: SlsaProvenance): Statement {
  return { _type: STATEMENT_TYPE, subject, predicateType: SLSA_PROVENANCE_V1, predicate };
}

/** The statement's bytes: canonical JSON, the DSSE payload. */
export function statementBytes(s: Statement): Buffer {
  return Buffer.from(canonicalJson(s), 'utf8');
}
