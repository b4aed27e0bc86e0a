/**
 * The stored files of a succeeded build besides its binary: its build info and its provenance.
 * An unreadable file quarantines the artifact (artifacts.ts) and says how to rebuild it.
 */
import { attestedSbom, isSigned, parseEnvelope, type DsseEnvelope } from '../provenance/index.js';
import { cyclonedxDocument, sbomBytes, spdxDocument, type SbomFormat } from '../sbom/index.js';
import { CorruptRecordError, type ArtifactMeta, type ArtifactStore } from '../store/index.js';
import { AppError, NotFoundError, errorMessage } from '../util/errors.js';
import type { ArtifactIndex } from './artifacts.js';

const QUARANTINED = 'the artifact was quarantined; request the build again (POST /api/builds) to rebuild it';
const NO_PROVENANCE = 'it was built before this Fairway recorded provenance; once it is pruned, the next request rebuilds it with provenance';

export async function readBuildInfo(store: ArtifactStore, artifacts: ArtifactIndex, meta: ArtifactMeta, id: string): Promise<unknown> {
  const key = meta.key;
  let info: unknown;
  try {
    info = await store.getBuildInfo(key);
  } catch (err) {
    if (!(err instanceof CorruptRecordError)) throw artifacts.unavailable(key, err);
    await artifacts.quarantineKey(key, 'bad_buildinfo', err.message, meta);
    throw new AppError('buildinfo_unreadable', `the build info of build ${id} is unreadable in the artifact store; ${QUARANTINED}`);
  }
  if (info === null) throw new NotFoundError(`build info of ${id}`);
  return info;
}

/** The DSSE envelope of a finished build's provenance (docs/provenance.md). */
export async function readProvenance(store: ArtifactStore, artifacts: ArtifactIndex, meta: ArtifactMeta, id: string): Promise<DsseEnvelope> {
  const key = meta.key;
  let env: unknown;
  try {
    env = await store.getProvenance(key);
  } catch (err) {
    if (!(err instanceof CorruptRecordError)) throw artifacts.unavailable(key, err);
    await artifacts.quarantineKey(key, 'bad_provenance', err.message, meta);
    throw new AppError('provenance_unreadable', `the provenance of build ${id} is unreadable in the artifact store; ${QUARANTINED}`);
  }
  if (env !== null) {
    try {
      return parseEnvelope(env);
    } catch (err) {
      await artifacts.quarantineKey(key, 'bad_provenance', errorMessage(err), meta);
      const why = `the provenance of build ${id} is not a DSSE envelope (${errorMessage(err)})`;
      throw new AppError('provenance_unreadable', `${why}; the artifact was quarantined; request the build again to rebuild it`);
    }
  }
  throw new AppError('no_provenance', `build ${id} has no provenance: ${NO_PROVENANCE}`);
}

/**
 * The stored SBOM attestation of a finished build and its document; null when it has none (built
 * before SBOMs existed). Unreadable, or not an SBOM attestation about its binary: quarantined.
 */
export async function readSbomAttestation(store: ArtifactStore, artifacts: ArtifactIndex, meta: ArtifactMeta, id: string): Promise<{ envelope: DsseEnvelope; document: unknown } | null> {
  const key = meta.key;
  let env: unknown;
  try {
    env = await store.getSbom(key);
  } catch (err) {
    if (!(err instanceof CorruptRecordError)) throw artifacts.unavailable(key, err);
    await artifacts.quarantineKey(key, 'bad_sbom', err.message, meta);
    throw new AppError('sbom_unreadable', `the SBOM of build ${id} is unreadable in the artifact store; ${QUARANTINED}`);
  }
  if (env === null) return null;
  try {
    return { document: attestedSbom(env, meta.sha256 ?? ''), envelope: parseEnvelope(env) };
  } catch (err) {
    await artifacts.quarantineKey(key, 'bad_sbom', errorMessage(err), meta);
    throw new AppError('sbom_unreadable', `the SBOM of build ${id} is not an SBOM attestation of its binary (${errorMessage(err)}); ${QUARANTINED}`);
  }
}

/** An SBOM's bytes and where they come from: the stored attestation (signed or not), or made now from the build info. */
export interface SbomAnswer {
  bytes: Buffer;
  source: 'signed' | 'unsigned' | 'generated';
}

/**
 * The SBOM of a finished build (docs/sbom.md). SPDX: the document of its stored attestation
 * (sbom.json), or, for a build made before SBOMs existed, made from its stored build info (the
 * same bytes: the document is a function of the build). CycloneDX: made from the build info.
 */
export async function readSbom(store: ArtifactStore, artifacts: ArtifactIndex, meta: ArtifactMeta, id: string, format: SbomFormat): Promise<SbomAnswer> {
  const key = meta.key;
  const stored = format === 'spdx' ? await readSbomAttestation(store, artifacts, meta, id) : null;
  if (stored) return { bytes: sbomBytes(stored.document), source: isSigned(stored.envelope) ? 'signed' : 'unsigned' };
  const input = { key, filename: meta.filename, sha256: meta.sha256 ?? '', caddyVersion: meta.spec.caddyVersion, buildInfo: await readBuildInfo(store, artifacts, meta, id) };
  return { bytes: sbomBytes(format === 'spdx' ? spdxDocument(input) : cyclonedxDocument(input)), source: 'generated' };
}
