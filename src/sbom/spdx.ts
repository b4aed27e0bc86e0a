/**
 * The SPDX 2.3 JSON document of a build (docs/sbom.md), defined once as zod: the API's response
 * schema (hence OpenAPI) and the type the generator returns. Deterministic: the document is a
 * function of the build key, the binary's sha256, Caddy's version and the stored build info.
 */
import { z } from 'zod';
import { h1Hex, sbomFacts, type SbomInput } from './buildinfo.js';

/**
 * `created` of every document: the Unix epoch, like the images' `created`. The build's own times
 * differ from builder to builder (and are in its provenance); the SBOM of one key is one sequence
 * of bytes on every builder.
 */
export const SBOM_CREATED = '1970-01-01T00:00:00Z';
/** The namespace of every Fairway SPDX document: `<base><key>/<sha256>`, unique per build and binary. */
export const SPDX_NAMESPACE_BASE = 'https://fairway.dev/spdx/builds/';
const TOOL = 'Tool: fairway';

const Checksum = z.object({ algorithm: z.literal('SHA256'), checksumValue: z.string().regex(/^[0-9a-f]{64}$/) });
const ExternalRef = z.object({ referenceCategory: z.literal('PACKAGE-MANAGER'), referenceType: z.literal('purl'), referenceLocator: z.string() });
const Annotation = z.object({ annotationDate: z.string(), annotationType: z.literal('OTHER'), annotator: z.string(), comment: z.string() });

const SpdxPackage = z.object({
  SPDXID: z.string().regex(/^SPDXRef-[A-Za-z0-9.-]+$/),
  name: z.string(),
  versionInfo: z.string(),
  downloadLocation: z.literal('NOASSERTION'),
  filesAnalyzed: z.literal(false),
  primaryPackagePurpose: z.enum(['APPLICATION', 'LIBRARY']),
  checksums: z.array(Checksum).optional(),
  externalRefs: z.array(ExternalRef).optional(),
  sourceInfo: z.string().optional(),
  comment: z.string().optional(),
  annotations: z.array(Annotation).optional(),
});

export const SpdxDocument = z
  .object({
    spdxVersion: z.literal('SPDX-2.3'),
    dataLicense: z.literal('CC0-1.0'),
    SPDXID: z.literal('SPDXRef-DOCUMENT'),
    name: z.string(),
    documentNamespace: z.string(),
    creationInfo: z.object({ created: z.string(), creators: z.array(z.string()), comment: z.string() }),
    packages: z.array(SpdxPackage),
    relationships: z.array(z.object({ spdxElementId: z.string(), relationshipType: z.enum(['DESCRIBES', 'DEPENDS_ON']), relatedSpdxElement: z.string() })),
  })
  .describe('an SPDX 2.3 document (JSON) of the binary: its Go modules, the Go standard library, the build settings');
export type SpdxDocument = z.infer<typeof SpdxDocument>;

type Pkg = z.infer<typeof SpdxPackage>;
const BINARY_ID = 'SPDXRef-Binary';
const STDLIB_ID = 'SPDXRef-Go-stdlib';

/** The SPDX 2.3 document of a build: the same input gives the same document. */
export function spdxDocument(i: SbomInput): SpdxDocument {
  const f = sbomFacts(i);
  const annotation = (comment: string) => ({ annotationDate: SBOM_CREATED, annotationType: 'OTHER' as const, annotator: TOOL, comment });
  const from = f.main ? ` from main module ${f.main.path} ${f.main.version}` : '';
  const binary: Pkg = {
    SPDXID: BINARY_ID,
    name: f.filename,
    versionInfo: f.caddyVersion,
    downloadLocation: 'NOASSERTION',
    filesAnalyzed: false,
    primaryPackagePurpose: 'APPLICATION',
    checksums: [{ algorithm: 'SHA256', checksumValue: f.sha256 }],
    comment: `Caddy ${f.caddyVersion} built by Fairway (build ${f.key})${from}${f.goVersion ? ` with ${f.goVersion}` : ''}`,
    ...(f.settings.length ? { annotations: f.settings.map((s) => annotation(`go build setting ${s.key}=${s.value}`)) } : {}),
  };
  const packages: Pkg[] = [binary];
  if (f.goVersion) {
    packages.push({
      SPDXID: STDLIB_ID,
      name: 'stdlib',
      versionInfo: f.goVersion,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'LIBRARY',
      ...(f.stdlibPurl ? { externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: f.stdlibPurl }] } : {}),
      comment: 'the Go standard library of the toolchain that built the binary',
    });
  }
  for (const m of f.modules) {
    const hex = m.sum ? h1Hex(m.sum) : null;
    packages.push({
      SPDXID: m.id,
      name: m.path,
      versionInfo: m.version,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'LIBRARY',
      // The h1: sum is a SHA-256 (of the module's file list and file hashes: Go's dirhash), as syft writes it.
      ...(hex ? { checksums: [{ algorithm: 'SHA256', checksumValue: hex }] } : {}),
      ...(m.purl ? { externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: m.purl }] } : {}),
      ...(m.replacedBy ? { sourceInfo: `replaced by ${m.replacedBy} (a replace directive)` } : {}),
      ...(m.sum ? { comment: `go.sum ${m.sum}` } : {}),
    });
  }
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `${f.filename} ${f.caddyVersion} (fairway build ${f.key})`,
    documentNamespace: `${SPDX_NAMESPACE_BASE}${f.key}/${f.sha256}`,
    creationInfo: {
      created: SBOM_CREATED,
      creators: [TOOL],
      comment: 'generated from the Go build info recorded in the binary (go version -m); created is the Unix epoch so that every builder of this build writes the same bytes',
    },
    packages,
    relationships: [
      { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: BINARY_ID },
      ...packages.slice(1).map((p) => ({ spdxElementId: BINARY_ID, relationshipType: 'DEPENDS_ON' as const, relatedSpdxElement: p.SPDXID })),
    ],
  };
}
