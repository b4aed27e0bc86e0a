/**
 * SBOMs (src/sbom, docs/sbom.md): the SPDX 2.3 and CycloneDX 1.6 documents of a build are
 * functions of the build (key, binary, Caddy version, build info): the same bytes every time, in
 * whatever order the build info lists its modules; every module with its version, h1: sum and purl;
 * replacements as the binary was built; and the SBOM attestation (src/provenance) verifies with the
 * builder's key only, about the binary only.
 */
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { describe, test } from 'node:test';
import { attestedSbom, createKeyPair, sbomAttestation, SPDX_DOCUMENT } from '../../src/provenance/index.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { golangPurl } from '../../src/sbom/buildinfo.js';
import { CycloneDxDocument, cyclonedxDocument } from '../../src/sbom/cyclonedx.js';
import { sbomBytes } from '../../src/sbom/index.js';
import { SBOM_CREATED, SpdxDocument, spdxDocument } from '../../src/sbom/spdx.js';

const sum = (n: number) => `h1:${Buffer.alloc(32, n).toString('base64')}`;
const hex = (n: number) => Buffer.alloc(32, n).toString('hex');
const CADDY = 'github.com/caddyserver/caddy/v2';
const buildInfo = {
  GoVersion: 'go1.26.0',
  Path: 'caddy',
  Main: { Path: 'caddy', Version: '(devel)' },
  Deps: [
    { Path: 'golang.org/x/text', Version: 'v0.3.0', Sum: sum(1) },
    { Path: CADDY, Version: 'v2.11.9', Sum: sum(2) },
    { Path: 'example.com/forked', Version: 'v1.0.0', Replace: { Path: 'github.com/fork/thing', Version: 'v1.0.1+incompatible', Sum: sum(3) } },
    { Path: 'example.com/local', Version: 'v0.0.0-00010101000000-000000000000', Replace: { Path: '/src/local' } },
    { Path: 'example.com/nosum', Version: 'v0.0.1' },
    { Version: 'v9' },
  ],
  Settings: [
    { Key: '-buildmode', Value: 'exe' },
    { Key: '-trimpath', Value: 'true' },
    { Key: 'CGO_ENABLED', Value: '0' },
    { Key: 'GOARCH', Value: 'amd64' },
  ],
};
const KEY = 'a'.repeat(64);
const SHA = 'c0ffee'.padEnd(64, '0');
const input = (over: Partial<{ buildInfo: unknown; key: string; sha256: string }> = {}) => ({ key: KEY, filename: 'caddy', sha256: SHA, caddyVersion: 'v2.11.9', buildInfo, ...over });

describe('SPDX 2.3 document of a build', () => {
  test('deterministic: two generations are the same bytes, whatever the order of the build info', () => {
    const a = sbomBytes(spdxDocument(input()));
    const b = sbomBytes(spdxDocument(input()));
    assert.ok(a.equals(b));
    const shuffled = { ...buildInfo, Deps: [...buildInfo.Deps].reverse() };
    assert.ok(sbomBytes(spdxDocument(input({ buildInfo: shuffled }))).equals(a), 'the modules are sorted: the order go lists them in changes nothing');
    // Only the build changes the unique fields: another key or binary, another namespace.
    assert.notEqual(spdxDocument(input({ key: 'b'.repeat(64) })).documentNamespace, spdxDocument(input()).documentNamespace);
    assert.notEqual(spdxDocument(input({ sha256: 'd'.repeat(64) })).documentNamespace, spdxDocument(input()).documentNamespace);
  });

  test('its fields: version, license, namespace and creation from the build, the binary with its sha256 and build settings', () => {
    const d = SpdxDocument.parse(spdxDocument(input()));
    assert.equal(d.spdxVersion, 'SPDX-2.3');
    assert.equal(d.dataLicense, 'CC0-1.0');
    assert.equal(d.documentNamespace, `https://fairway.dev/spdx/builds/${KEY}/${SHA}`);
    assert.equal(d.creationInfo.created, SBOM_CREATED);
    assert.equal(SBOM_CREATED, '1970-01-01T00:00:00Z');
    assert.deepEqual(d.creationInfo.creators, ['Tool: fairway']);
    const bin = d.packages[0]!;
    assert.equal(bin.SPDXID, 'SPDXRef-Binary');
    assert.equal(bin.name, 'caddy');
    assert.equal(bin.versionInfo, 'v2.11.9');
    assert.equal(bin.primaryPackagePurpose, 'APPLICATION');
    assert.deepEqual(bin.checksums, [{ algorithm: 'SHA256', checksumValue: SHA }]);
    assert.match(bin.comment!, /main module caddy \(devel\) with go1\.26\.0/);
    assert.deepEqual(
      bin.annotations!.map((a) => a.comment),
      ['go build setting -buildmode=exe', 'go build setting -trimpath=true', 'go build setting CGO_ENABLED=0', 'go build setting GOARCH=amd64'],
    );
    const std = d.packages.find((p) => p.name === 'stdlib')!;
    assert.equal(std.versionInfo, 'go1.26.0');
    assert.equal(std.externalRefs![0]!.referenceLocator, 'pkg:golang/stdlib@v1.26.0');
    assert.deepEqual(d.relationships[0], { spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: 'SPDXRef-Binary' });
    // The binary depends on every other package, once; every SPDXID is unique.
    const ids = d.packages.map((p) => p.SPDXID);
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual(
      d.relationships.slice(1).map((r) => [r.spdxElementId, r.relationshipType, r.relatedSpdxElement]),
      ids.slice(1).map((id) => ['SPDXRef-Binary', 'DEPENDS_ON', id]),
    );
  });

  test('every module with its version, h1: sum (as SHA256 and as text) and purl; malformed entries left out', () => {
    const d = spdxDocument(input());
    const mods = d.packages.filter((p) => p.primaryPackagePurpose === 'LIBRARY' && p.name !== 'stdlib');
    assert.deepEqual(
      mods.map((m) => m.name),
      ['example.com/forked', 'example.com/local', 'example.com/nosum', CADDY, 'golang.org/x/text'],
    );
    const caddy = mods.find((m) => m.name === CADDY)!;
    assert.equal(caddy.versionInfo, 'v2.11.9');
    assert.deepEqual(caddy.checksums, [{ algorithm: 'SHA256', checksumValue: hex(2) }]);
    assert.deepEqual(caddy.externalRefs, [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: `pkg:golang/${CADDY}@v2.11.9` }]);
    assert.equal(caddy.comment, `go.sum ${sum(2)}`);
    assert.equal(caddy.SPDXID, 'SPDXRef-Module-github.com-caddyserver-caddy-v2');
    const nosum = mods.find((m) => m.name === 'example.com/nosum')!;
    assert.equal(nosum.checksums, undefined);
    assert.equal(nosum.externalRefs![0]!.referenceLocator, 'pkg:golang/example.com/nosum@v0.0.1');
  });

  test('a build info with replacements: the replacement as built (version, sum, purl), the replace directive said; a local directory has no purl or sum', () => {
    const d = spdxDocument(input());
    const forked = d.packages.find((p) => p.name === 'example.com/forked')!;
    assert.equal(forked.versionInfo, 'v1.0.1+incompatible');
    assert.deepEqual(forked.checksums, [{ algorithm: 'SHA256', checksumValue: hex(3) }]);
    assert.equal(forked.externalRefs![0]!.referenceLocator, 'pkg:golang/github.com/fork/thing@v1.0.1%2Bincompatible');
    assert.equal(forked.sourceInfo, 'replaced by github.com/fork/thing@v1.0.1+incompatible (a replace directive)');
    const local = d.packages.find((p) => p.name === 'example.com/local')!;
    assert.equal(local.versionInfo, 'v0.0.0-00010101000000-000000000000');
    assert.equal(local.externalRefs, undefined);
    assert.equal(local.checksums, undefined);
    assert.equal(local.sourceInfo, 'replaced by /src/local (a replace directive)');
    assert.equal(golangPurl('example.com/a b', 'v1'), 'pkg:golang/example.com/a%20b@v1');
  });

  test('no build info: the binary alone, still a valid document of the schema', () => {
    const d = SpdxDocument.parse(spdxDocument(input({ buildInfo: null })));
    assert.equal(d.packages.length, 1);
    assert.equal(d.relationships.length, 1);
  });
});

describe('CycloneDX 1.6 document of a build', () => {
  test('deterministic, with the same modules, hashes and purls as the SPDX document', () => {
    const a = sbomBytes(cyclonedxDocument(input()));
    assert.ok(a.equals(sbomBytes(cyclonedxDocument(input({ buildInfo: { ...buildInfo, Deps: [...buildInfo.Deps].reverse() } })))));
    const c = CycloneDxDocument.parse(cyclonedxDocument(input()));
    assert.equal(c.specVersion, '1.6');
    assert.equal(c.metadata.timestamp, SBOM_CREATED);
    assert.equal(c.serialNumber, cyclonedxDocument(input()).serialNumber);
    assert.notEqual(c.serialNumber, cyclonedxDocument(input({ key: 'b'.repeat(64) })).serialNumber);
    assert.deepEqual(c.metadata.component.hashes, [{ alg: 'SHA-256', content: SHA }]);
    assert.ok(c.metadata.component.properties!.some((p) => p.name === 'go:build-setting:-trimpath' && p.value === 'true'));
    const spdx = spdxDocument(input());
    assert.deepEqual(
      c.components.map((x) => [x.name, x.version, x.purl ?? null, x.hashes?.[0]?.content ?? null]),
      spdx.packages.slice(1).map((p) => [p.name, p.versionInfo, p.externalRefs?.[0]?.referenceLocator ?? null, p.checksums?.[0]?.checksumValue ?? null]),
    );
    const forked = c.components.find((x) => x.name === 'example.com/forked')!;
    assert.deepEqual(forked.properties, [
      { name: 'go:sum', value: sum(3) },
      { name: 'go:replaced-by', value: 'github.com/fork/thing@v1.0.1+incompatible' },
    ]);
    assert.deepEqual(
      c.dependencies[0]!.dependsOn,
      c.components.map((x) => x['bom-ref']),
    );
  });
});

describe('the SBOM attestation (in-toto, DSSE, the builder key)', () => {
  const keys = createKeyPair();
  const signer = signerFromPem(keys.privatePem);
  const pub = createPublicKey(keys.publicPem);
  const other = createPublicKey(createKeyPair().publicPem);
  const doc = spdxDocument(input());

  test('about the binary, predicateType https://spdx.dev/Document, the document as predicate; the same bytes twice', () => {
    const env = sbomAttestation({ filename: 'caddy', sha256: SHA }, doc, signer);
    const st = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
    assert.equal(st._type, 'https://in-toto.io/Statement/v1');
    assert.equal(st.predicateType, SPDX_DOCUMENT);
    assert.equal(SPDX_DOCUMENT, 'https://spdx.dev/Document');
    assert.deepEqual(st.subject, [{ name: 'caddy', digest: { sha256: SHA } }]);
    assert.deepEqual(st.predicate, doc);
    assert.equal(sbomAttestation({ filename: 'caddy', sha256: SHA }, doc, signer).payload, env.payload);
    assert.deepEqual(attestedSbom(env, SHA, pub), doc);
  });

  test('refused: another key, another binary, no signature when a key is asked for, another predicate type', () => {
    const env = sbomAttestation({ filename: 'caddy', sha256: SHA }, doc, signer);
    assert.throws(() => attestedSbom(env, SHA, other), /none of the envelope's 1 signature\(s\) verifies/);
    assert.throws(() => attestedSbom(env, 'd'.repeat(64), pub), /not about a file with sha256/);
    const unsigned = sbomAttestation({ filename: 'caddy', sha256: SHA }, doc);
    assert.deepEqual(attestedSbom(unsigned, SHA), doc, 'read without a key: the stored document');
    assert.throws(() => attestedSbom(unsigned, SHA, pub), /not signed/);
    const st = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
    const slsa = { ...env, payload: Buffer.from(JSON.stringify({ ...st, predicateType: 'https://slsa.dev/provenance/v1' })).toString('base64') };
    assert.throws(() => attestedSbom(slsa, SHA), /predicateType/);
  });
});
