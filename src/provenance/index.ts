/**
 * Provenance (docs/provenance.md): signing keys, in-toto/SLSA v1 statements, DSSE envelopes, and
 * their verification. The builder that produced the bytes signs; everything else only relays.
 */
import type { KeyObject } from 'node:crypto';
import { EnvelopeError, IN_TOTO_PAYLOAD_TYPE, envelope, openEnvelope, parseEnvelope, type DsseEnvelope } from './dsse.js';
import { fingerprintOf, type Signer } from './keys.js';
import { canonicalJson } from '../request/index.js';
import { SLSA_PROVENANCE_V1, STATEMENT_TYPE, provenancePredicate, statement, statementBytes, type ProvenanceInput, type Statement } from './statement.js';

export { EnvelopeError, IN_TOTO_PAYLOAD_TYPE, envelope, parseEnvelope, type DsseEnvelope } from './dsse.js';
export { KeyError, createKeyPair, fingerprintOf, loadOrCreateSigner, loadPublicKey, loadSigner, publicKeyFromPem, verifySignature, type Signer } from './keys.js';
export { SLSA_PROVENANCE_V1, STATEMENT_TYPE, provenancePredicate, statement, statementBytes, type SlsaProvenance, unsignableReason, type Statement } from './statement.js';

/** The provenance of a binary `filename` with `sha256`: the DSSE envelope, signed when a signer is given. */
export function binaryProvenance(i: ProvenanceInput & { filename: string; sha256: string }, signer?: Signer): DsseEnvelope {
  const s = statement([{ name: i.filename, digest: { sha256: i.sha256 } }], provenancePredicate(i));
  return envelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(s), signer);
}

/** cosign's predicate type of an SPDX document (`cosign attest --type spdxjson`). */
export const SPDX_DOCUMENT = 'https://spdx.dev/Document';

/** An in-toto Statement v1 with any predicate (the SBOM's), as canonical JSON bytes: a DSSE payload. */
export function attestationBytes(subject: Array<{ name: string; digest: Record<string, string> }>, predicateType: string, predicate: unknown): Buffer {
  return Buffer.from(canonicalJson({ _type: STATEMENT_TYPE, subject, predicateType, predicate }), 'utf8');
}

/** The SBOM attestation of a binary `filename` with `sha256` (docs/sbom.md): the DSSE envelope, signed when a signer is given. */
export function sbomAttestation(i: { filename: string; sha256: string }, document: unknown, signer?: Signer): DsseEnvelope {
  return envelope(IN_TOTO_PAYLOAD_TYPE, attestationBytes([{ name: i.filename, digest: { sha256: i.sha256 } }], SPDX_DOCUMENT, document), signer);
}

/**
 * The predicate of an SBOM attestation (a DSSE envelope read from outside) about a file with
 * `sha256`; with `key`, only when a signature verifies with it. Throws EnvelopeError saying why not.
 */
export function attestedSbom(value: unknown, sha256: string, key?: KeyObject): unknown {
  const env = parseEnvelope(value);
  checkPayloadType(env);
  const body = key ? openEnvelope(env, key) : Buffer.from(env.payload, 'base64');
  let st: { _type?: unknown; predicateType?: unknown; subject?: unknown; predicate?: unknown } | null;
  try {
    st = JSON.parse(body.toString('utf8')) as typeof st;
  } catch {
    throw new EnvelopeError('the envelope payload is not JSON');
  }
  if (!st || st._type !== STATEMENT_TYPE) throw new EnvelopeError('the payload is not an in-toto Statement v1');
  if (st.predicateType !== SPDX_DOCUMENT) throw new EnvelopeError(`the statement's predicateType is ${JSON.stringify(st.predicateType)}, not ${SPDX_DOCUMENT}`);
  const subjects = Array.isArray(st.subject) ? (st.subject as Array<{ digest?: { sha256?: unknown } } | null>) : [];
  if (!subjects.some((s) => s?.digest?.sha256 === sha256)) throw new EnvelopeError(`the SBOM attestation is not about a file with sha256 ${sha256}`);
  if (!st.predicate || typeof st.predicate !== 'object') throw new EnvelopeError('the SBOM attestation has no predicate');
  return st.predicate;
}

/** Whether an envelope carries a signature (unsigned: a server without a key built it). */
export function isSigned(env: DsseEnvelope): boolean {
  return env.signatures.length > 0;
}

/** One check verifyProvenance passed, in the order it made them (for `fairway verify`'s report). */
export type ProvenanceCheck = 'envelope' | 'signature' | 'statement' | 'predicate' | 'subject';

type OnCheck = (check: ProvenanceCheck, detail: string) => void;

/** The statement of an (opened) envelope; reports each check it passes to `onCheck`. */
function statementOf(env: DsseEnvelope, onCheck?: OnCheck): Statement {
  let s: unknown;
  try {
    s = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
  } catch {
    throw new EnvelopeError('the envelope payload is not JSON');
  }
  const st = s as Partial<Statement> | null;
  if (!st || st._type !== STATEMENT_TYPE) throw new EnvelopeError(`the payload is not an in-toto Statement v1 (_type ${JSON.stringify(st?._type)})`);
  onCheck?.('statement', `the payload is an in-toto Statement v1 (_type ${STATEMENT_TYPE})`);
  if (st.predicateType !== SLSA_PROVENANCE_V1) throw new EnvelopeError(`the statement's predicateType is ${JSON.stringify(st.predicateType)}, not ${SLSA_PROVENANCE_V1}`);
  onCheck?.('predicate', `the predicate is SLSA Provenance v1 (predicateType ${SLSA_PROVENANCE_V1})`);
  if (!Array.isArray(st.subject)) throw new EnvelopeError('the statement has no subject');
  return st as Statement;
}

function checkPayloadType(env: DsseEnvelope): void {
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw new EnvelopeError(`the envelope's payloadType is ${env.payloadType}, not ${IN_TOTO_PAYLOAD_TYPE}`);
}

/** The statement in an envelope, without checking any signature (for showing it). */
export function readStatement(env: DsseEnvelope): Statement {
  checkPayloadType(env);
  return statementOf(env);
}

export interface VerifiedProvenance {
  statement: Statement;
  /** The subject that matched. */
  subject: { name: string; digest: Record<string, string> };
}

/**
 * Checks, in this order, that the envelope is signed by `key`, that its payload is an in-toto
 * Statement v1 with a SLSA Provenance v1 predicate, and that one of its subjects has `sha256`.
 * Throws EnvelopeError saying which check failed; `onCheck` hears of each check that passed.
 */
export function verifyProvenance(value: unknown, key: KeyObject, sha256: string, onCheck?: OnCheck): VerifiedProvenance {
  const env = parseEnvelope(value);
  checkPayloadType(env);
  onCheck?.('envelope', `a DSSE envelope of ${IN_TOTO_PAYLOAD_TYPE} with ${env.signatures.length} signature(s)`);
  openEnvelope(env, key);
  onCheck?.('signature', `the DSSE signature verifies with key ${fingerprintOf(key)}`);
  const st = statementOf(env, onCheck);
  const subject = st.subject.find((s) => s?.digest?.sha256 === sha256);
  if (!subject) throw new EnvelopeError(`the provenance is about ${st.subject.map((s) => `${s.name} (sha256 ${s.digest?.sha256 ?? '?'})`).join(', ')}, not a file with sha256 ${sha256}`);
  onCheck?.('subject', `the subject ${subject.name} has sha256 ${sha256}, the file's`);
  return { statement: st, subject };
}

export interface ProvenanceSummary {
  builderId: string;
  /** The build's cache key (its build id). */
  invocationId: string;
  buildType: string;
  startedOn?: string;
  finishedOn?: string;
  /** Caddy's exact version; `from` says where it was read. */
  caddy: { version: string; from: 'resolvedDependencies' | 'spec' } | null;
  /** Plugins with their exact versions (and replacements), from resolvedDependencies (role plugin), else the spec. */
  plugins: Array<{ module: string; version: string; replacedBy?: string }>;
  /** How many modules resolvedDependencies lists in all. */
  dependencies: number;
}

/** What a (verified) statement says about its build: builder, invocation, Caddy and plugins. */
export function summarizeProvenance(st: Statement): ProvenanceSummary {
  const p = st.predicate;
  const deps = Array.isArray(p?.buildDefinition?.resolvedDependencies) ? p.buildDefinition.resolvedDependencies : [];
  const role = (r: string) => deps.filter((d) => d?.annotations?.role === r);
  const spec = (p?.buildDefinition?.externalParameters?.spec ?? {}) as { caddyVersion?: unknown; plugins?: Array<{ module?: unknown; version?: unknown }> };
  const caddyDep = role('caddy')[0];
  const caddy = caddyDep?.annotations?.version
    ? { version: caddyDep.annotations.version, from: 'resolvedDependencies' as const }
    : typeof spec.caddyVersion === 'string'
      ? { version: spec.caddyVersion, from: 'spec' as const }
      : null;
  const pluginDeps = role('plugin');
  const plugins = pluginDeps.length
    ? pluginDeps.map((d) => ({ module: d.name ?? '?', version: d.annotations?.version ?? '?', ...(d.annotations?.replacedBy ? { replacedBy: d.annotations.replacedBy } : {}) }))
    : (Array.isArray(spec.plugins) ? spec.plugins : []).map((x) => ({ module: String(x?.module ?? '?'), version: typeof x?.version === 'string' ? x.version : '?' }));
  const meta = p?.runDetails?.metadata;
  return {
    builderId: String(p?.runDetails?.builder?.id ?? ''),
    invocationId: String(meta?.invocationId ?? ''),
    buildType: String(p?.buildDefinition?.buildType ?? ''),
    ...(meta?.startedOn ? { startedOn: meta.startedOn } : {}),
    ...(meta?.finishedOn ? { finishedOn: meta.finishedOn } : {}),
    caddy,
    plugins,
    dependencies: deps.length,
  };
}
