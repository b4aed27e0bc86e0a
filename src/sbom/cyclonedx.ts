/**
 * The CycloneDX 1.6 JSON document of a build (docs/sbom.md): the same facts as the SPDX document,
 * defined once as zod (the API's response schema and the generator's type). Deterministic like it:
 * the serial number is derived from the build key and the binary's sha256, the timestamp is the epoch.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { h1Hex, sbomFacts, type SbomInput } from './buildinfo.js';
import { SBOM_CREATED } from './spdx.js';

const Hash = z.object({ alg: z.literal('SHA-256'), content: z.string().regex(/^[0-9a-f]{64}$/) });
const Property = z.object({ name: z.string(), value: z.string() });
const Component = z.object({
  type: z.enum(['application', 'library']),
  'bom-ref': z.string(),
  name: z.string(),
  version: z.string(),
  purl: z.string().optional(),
  hashes: z.array(Hash).optional(),
  properties: z.array(Property).optional(),
});

export const CycloneDxDocument = z
  .object({
    bomFormat: z.literal('CycloneDX'),
    specVersion: z.literal('1.6'),
    serialNumber: z.string().regex(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
    version: z.literal(1),
    metadata: z.object({ timestamp: z.string(), tools: z.object({ components: z.array(z.object({ type: z.literal('application'), name: z.string() })) }), component: Component }),
    components: z.array(Component),
    dependencies: z.array(z.object({ ref: z.string(), dependsOn: z.array(z.string()) })),
  })
  .describe('a CycloneDX 1.6 document (JSON) of the binary: its Go modules, the Go standard library, the build settings');
export type CycloneDxDocument = z.infer<typeof CycloneDxDocument>;

type Comp = z.infer<typeof Component>;

/** A name-based UUID (version 5 layout) of the build: the same build, the same serial number. */
function serialOf(key: string, sha256: string): string {
  const h = createHash('sha256').update(`fairway-sbom-v1\n${key}\n${sha256}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `urn:uuid:${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** The CycloneDX 1.6 document of a build: the same input gives the same document. */
export function cyclonedxDocument(i: SbomInput): CycloneDxDocument {
  const f = sbomFacts(i);
  const root: Comp = {
    type: 'application',
    'bom-ref': 'SPDXRef-Binary',
    name: f.filename,
    version: f.caddyVersion,
    hashes: [{ alg: 'SHA-256', content: f.sha256 }],
    properties: [
      { name: 'fairway:build', value: f.key },
      ...(f.main ? [{ name: 'go:main', value: `${f.main.path} ${f.main.version}` }] : []),
      ...(f.goVersion ? [{ name: 'go:version', value: f.goVersion }] : []),
      ...f.settings.map((s) => ({ name: `go:build-setting:${s.key}`, value: s.value })),
    ],
  };
  const components: Comp[] = [];
  if (f.goVersion) components.push({ type: 'library', 'bom-ref': 'SPDXRef-Go-stdlib', name: 'stdlib', version: f.goVersion, ...(f.stdlibPurl ? { purl: f.stdlibPurl } : {}) });
  for (const m of f.modules) {
    const hex = m.sum ? h1Hex(m.sum) : null;
    const props = [...(m.sum ? [{ name: 'go:sum', value: m.sum }] : []), ...(m.replacedBy ? [{ name: 'go:replaced-by', value: m.replacedBy }] : [])];
    components.push({
      type: 'library',
      'bom-ref': m.id,
      name: m.path,
      version: m.version,
      ...(m.purl ? { purl: m.purl } : {}),
      ...(hex ? { hashes: [{ alg: 'SHA-256', content: hex }] } : {}),
      ...(props.length ? { properties: props } : {}),
    });
  }
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: serialOf(f.key, f.sha256),
    version: 1,
    metadata: { timestamp: SBOM_CREATED, tools: { components: [{ type: 'application', name: 'fairway' }] }, component: root },
    components,
    dependencies: [{ ref: root['bom-ref'], dependsOn: components.map((c) => c['bom-ref']) }, ...components.map((c) => ({ ref: c['bom-ref'], dependsOn: [] }))],
  };
}
