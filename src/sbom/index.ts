/**
 * SBOMs of builds (docs/sbom.md): SPDX 2.3 and CycloneDX 1.6 JSON documents made from the binary's
 * own Go build info, deterministic (one build key, one sequence of bytes), their zod schemas (the
 * API's response schemas) and their bytes. Signing them is src/provenance's (sbomAttestation).
 */
import { canonicalJson } from '../request/index.js';

export { CycloneDxDocument, cyclonedxDocument } from './cyclonedx.js';
export { SpdxDocument, spdxDocument } from './spdx.js';

export const SBOM_MEDIA_TYPE = { spdx: 'application/spdx+json', cyclonedx: 'application/vnd.cyclonedx+json' } as const;
export type SbomFormat = keyof typeof SBOM_MEDIA_TYPE;

/** A document's bytes: canonical JSON (keys sorted), so equal documents are equal bytes. */
export function sbomBytes(doc: unknown): Buffer {
  return Buffer.from(canonicalJson(doc), 'utf8');
}
