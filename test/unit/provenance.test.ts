// src/provenance: DSSE's pre-authentication encoding against the spec's own test vector, signing
// and verifying, each way verification must refuse, the key checks, dirHash, resolvedDependencies
// from a binary's build info, and the canonical statement.
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  EnvelopeError,
  IN_TOTO_PAYLOAD_TYPE,
  KeyError,
  SLSA_PROVENANCE_V1,
  STATEMENT_TYPE,
  binaryProvenance,
  createKeyPair,
  envelope,
  fingerprintOf,
  loadPublicKey,
  loadSigner,
  parseEnvelope,
  provenancePredicate,
  publicKeyFromPem,
  readStatement,
  statement,
  statementBytes,
  summarizeProvenance,
  verifyProvenance,
  type DsseEnvelope,
  type ProvenanceCheck,
} from '../../src/provenance/index.js';
import { BUILD_TYPE, dirHash, ProvenanceRefused, resolvedDependencies, type ProvenanceInput } from '../../src/provenance/statement.js';
import { openEnvelope, pae } from '../../src/provenance/dsse.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { BUILD_FLAGS, type ResolvedSpec } from '../../src/request/index.js';
import { LEGACY_BUILD_FLAGS } from '../../src/request/key.js';

// ---- the DSSE spec's test vector (github.com/secure-systems-lab/dsse, protocol.md, "Test Vectors") ----
// SERIALIZED_BODY "hello world", PAYLOAD_TYPE "http://example.com/HelloWorld",
// PAE "DSSEv1 29 http://example.com/HelloWorld 11 hello world"; ECDSA P-256/SHA-256 key (X, Y
// below, decimal) and its signature, raw r||s, in the envelope the spec shows.
const VECTOR = {
  type: 'http://example.com/HelloWorld',
  body: 'hello world',
  pae: 'DSSEv1 29 http://example.com/HelloWorld 11 hello world',
  x: 46950820868899156662930047687818585632848591499744589407958293238635476079160n,
  y: 5640078356564379163099075877009565129882514886557779369047442380624545832820n,
  payload: 'aGVsbG8gd29ybGQ=',
  sig: 'A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA==',
};

const b64url = (n: bigint) => Buffer.from(n.toString(16).padStart(64, '0'), 'hex').toString('base64url');
const vectorKey = () => createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(VECTOR.x), y: b64url(VECTOR.y) }, format: 'jwk' });

/** Raw r||s (IEEE P1363) as ASN.1 DER, the encoding Fairway and cosign write. */
function p1363ToDer(raw: Buffer): Buffer {
  const int = (b: Buffer) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    const v = b.subarray(i);
    const body = v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v;
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const seq = Buffer.concat([int(raw.subarray(0, 32)), int(raw.subarray(32))]);
  return Buffer.concat([Buffer.from([0x30, seq.length]), seq]);
}

describe('DSSE: PAE and envelopes', () => {
  test("PAE is the spec's bytes for its test vector", () => {
    assert.equal(pae(VECTOR.type, Buffer.from(VECTOR.body)).toString('latin1'), VECTOR.pae);
    assert.equal(Buffer.from(VECTOR.body).toString('base64'), VECTOR.payload);
  });

  test("the spec's signature verifies over our PAE bytes (and not over others)", () => {
    const key = vectorKey();
    const sig = Buffer.from(VECTOR.sig, 'base64');
    assert.equal(verify('sha256', pae(VECTOR.type, Buffer.from(VECTOR.body)), { key, dsaEncoding: 'ieee-p1363' }, sig), true);
    assert.equal(verify('sha256', pae(VECTOR.type, Buffer.from('hello World')), { key, dsaEncoding: 'ieee-p1363' }, sig), false);
    // The same signature in DER opens the spec's envelope with openEnvelope.
    const env = parseEnvelope({ payload: VECTOR.payload, payloadType: VECTOR.type, signatures: [{ sig: p1363ToDer(sig).toString('base64') }] });
    assert.equal(openEnvelope(env, key).toString(), VECTOR.body);
  });

  test('PAE lengths count bytes, not characters', () => {
    assert.equal(pae('t/é', Buffer.from('ü€')).toString('utf8'), 'DSSEv1 4 t/é 5 ü€');
    assert.equal(pae('', Buffer.alloc(0)).toString(), 'DSSEv1 0  0 ');
  });

  test('parseEnvelope refuses what is not an envelope', () => {
    assert.throws(() => parseEnvelope(null), /not a JSON object/);
    assert.throws(() => parseEnvelope([]), /not a JSON object/);
    assert.throws(() => parseEnvelope({ payload: 'aGk=', signatures: [] }), /no payloadType/);
    assert.throws(() => parseEnvelope({ payloadType: 't', payload: 'not base64!', signatures: [] }), /payload is not base64/);
    assert.throws(() => parseEnvelope({ payloadType: 't', payload: 'aGk=' }), /no signatures array/);
    assert.throws(() => parseEnvelope({ payloadType: 't', payload: 'aGk=', signatures: [{ sig: '%%' }] }), /a signature is not base64/);
  });
});

// ---- a build's provenance -------------------------------------------------------------------------

const CADDY = 'github.com/caddyserver/caddy/v2';
const L4 = 'github.com/mholt/caddy-l4';
const FORKED = 'github.com/example/caddy-thing';
const SUM = {
  caddy: 'h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=',
  l4: 'h1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
  fork: 'h1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=',
  text: 'h1:QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=',
};

const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [
    { module: L4, version: 'v0.1.2' },
    { module: FORKED, version: 'v1.0.0', replacement: 'github.com/fork/caddy-thing@v1.0.1' },
  ],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: BUILD_FLAGS },
} as ResolvedSpec;

/** What `go version -m -json` prints for such a binary (the fields resolvedDependencies reads, and more). */
const buildInfo = {
  GoVersion: 'go1.26.8',
  Path: 'caddy',
  Main: { Path: 'caddy', Version: '(devel)' },
  Deps: [
    { Path: 'golang.org/x/text', Version: 'v0.3.0', Sum: SUM.text },
    { Path: L4, Version: 'v0.1.2', Sum: SUM.l4 },
    { Path: FORKED, Version: 'v1.0.0', Replace: { Path: 'github.com/fork/caddy-thing', Version: 'v1.0.1', Sum: SUM.fork } },
    { Path: CADDY, Version: 'v2.11.9', Sum: SUM.caddy },
    { Path: 'example.com/nosum', Version: 'v0.0.1' },
    { Version: 'v9' },
  ],
  Settings: [{ Key: 'CGO_ENABLED', Value: '0' }],
};

const SHA = 'c0ffee'.padEnd(64, '0');

function input(over: Partial<ProvenanceInput & { filename: string; sha256: string }> = {}): ProvenanceInput & { filename: string; sha256: string } {
  return {
    key: 'a'.repeat(64),
    request: { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [{ module: L4 }, { module: FORKED, version: 'v1.0.0' }] },
    spec,
    buildInfo,
    builder: 'agent-1',
    fairwayVersion: '0.1.0',
    startedAt: '2026-12-01T10:00:00.000Z',
    finishedAt: '2026-12-01T10:01:00.000Z',
    filename: 'caddy_linux_amd64',
    sha256: SHA,
    ...over,
  };
}

const pair = createKeyPair();
const signer = signerFromPem(pair.privatePem);
const pub = publicKeyFromPem(pair.publicPem);
const other = publicKeyFromPem(createKeyPair().publicPem);

/** The envelope with its payload replaced (the signature left as it was). */
function withPayload(env: DsseEnvelope, edit: (payload: Buffer) => Buffer): DsseEnvelope {
  return { ...env, payload: edit(Buffer.from(env.payload, 'base64')).toString('base64') };
}

describe('sign and verify', () => {
  test('a signed provenance verifies with its key; every check is made, in order', () => {
    const env = binaryProvenance(input(), signer);
    assert.equal(env.payloadType, IN_TOTO_PAYLOAD_TYPE);
    assert.equal(env.signatures.length, 1);
    const seen: ProvenanceCheck[] = [];
    const v = verifyProvenance(env, pub, SHA, (c) => seen.push(c));
    assert.deepEqual(seen, ['envelope', 'signature', 'statement', 'predicate', 'subject']);
    assert.deepEqual(v.subject, { name: 'caddy_linux_amd64', digest: { sha256: SHA } });
    assert.equal(v.statement._type, STATEMENT_TYPE);
    assert.equal(v.statement.predicateType, SLSA_PROVENANCE_V1);
    assert.equal(v.statement.predicate.buildDefinition.buildType, BUILD_TYPE);
    assert.equal(v.statement.predicate.runDetails.metadata.invocationId, 'a'.repeat(64));
    // The signature is ECDSA-SHA256 over PAE(payloadType, payload), in DER (as cosign checks it).
    assert.equal(verify('sha256', pae(env.payloadType, Buffer.from(env.payload, 'base64')), pub, Buffer.from(env.signatures[0]!.sig, 'base64')), true);
    // It survives JSON (what the server stores and serves).
    assert.doesNotThrow(() => verifyProvenance(JSON.parse(JSON.stringify(env)), pub, SHA));
  });

  test('refused: another key', () => {
    assert.throws(
      () => verifyProvenance(binaryProvenance(input(), signer), other, SHA),
      (e: Error) => e instanceof EnvelopeError && /none of the envelope's 1 signature\(s\) verifies with this key/.test(e.message),
    );
  });

  test('refused: one flipped byte of the payload, or of the signature', () => {
    const env = binaryProvenance(input(), signer);
    const flipped = withPayload(env, (p) => {
      const b = Buffer.from(p);
      const i = b.indexOf(SHA.slice(0, 6));
      b[i] = b[i]! ^ 0x01;
      return b;
    });
    assert.throws(() => verifyProvenance(flipped, pub, SHA), /none of the envelope's 1 signature\(s\) verifies/);
    const sig = Buffer.from(env.signatures[0]!.sig, 'base64');
    sig[sig.length - 3] = sig[sig.length - 3]! ^ 0x40;
    assert.throws(() => verifyProvenance({ ...env, signatures: [{ keyid: '', sig: sig.toString('base64') }] }, pub, SHA), /none of the envelope's 1 signature\(s\) verifies/);
    // The payloadType is signed too.
    assert.throws(() => openEnvelope({ ...env, payloadType: 'application/json' }, pub), /none of the envelope's/);
  });

  test('refused: no signatures (an unsigned provenance)', () => {
    const env = binaryProvenance(input());
    assert.deepEqual(env.signatures, []);
    assert.throws(() => verifyProvenance(env, pub, SHA), /the envelope is not signed/);
  });

  test('refused: a subject that is not the file', () => {
    assert.throws(() => verifyProvenance(binaryProvenance(input(), signer), pub, 'f'.repeat(64)), /is about caddy_linux_amd64 \(sha256 c0ffee0+\), not a file with sha256 f{64}/);
  });

  test('refused, even when signed: another payload type, statement type or predicate type', () => {
    const st = statement([{ name: 'x', digest: { sha256: SHA } }], provenancePredicate(input()));
    const signed = (type: string, body: unknown) => envelope(type, Buffer.from(JSON.stringify(body)), signer);
    assert.throws(() => verifyProvenance(signed('application/json', st), pub, SHA), /payloadType is application\/json/);
    assert.throws(() => verifyProvenance(signed(IN_TOTO_PAYLOAD_TYPE, { ...st, _type: 'https://in-toto.io/Statement/v0.1' }), pub, SHA), /not an in-toto Statement v1/);
    assert.throws(
      () => verifyProvenance(signed(IN_TOTO_PAYLOAD_TYPE, { ...st, predicateType: 'https://slsa.dev/provenance/v0.2' }), pub, SHA),
      /predicateType is "https:\/\/slsa.dev\/provenance\/v0.2"/,
    );
    assert.throws(() => verifyProvenance(envelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from('{not json'), signer), pub, SHA), /not JSON/);
    // readStatement (no signature check) applies the same type checks.
    assert.throws(() => readStatement(signed(IN_TOTO_PAYLOAD_TYPE, { ...st, predicateType: 'x' })), /predicateType/);
    assert.equal(readStatement(binaryProvenance(input())).subject[0]!.name, 'caddy_linux_amd64');
  });
});

describe('only what was verified is signed', () => {
  test('the statement names the flags Fairway builds with (BUILD_FLAGS) and the request, plugins in the key’s order', () => {
    const p = provenancePredicate(input());
    assert.equal(p.buildDefinition.internalParameters.buildFlags, BUILD_FLAGS);
    assert.deepEqual(p.buildDefinition.externalParameters.request, { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [{ module: FORKED, version: 'v1.0.0' }, { module: L4 }] });
  });

  test('refused: a spec with other flags, or a request that contradicts the spec (nothing to sign)', () => {
    for (const flags of [LEGACY_BUILD_FLAGS, '-ldflags=-X main.backdoor=1', '']) {
      const other = { ...spec, toolchain: { ...spec.toolchain, flags } } as ResolvedSpec;
      assert.throws(
        () => binaryProvenance(input({ spec: other }), signer),
        (e: Error) => e instanceof ProvenanceRefused && e.message.includes(`but Fairway builds with ${BUILD_FLAGS}`),
      );
    }
    const forged = [
      { ...(input().request as object), caddyVersion: 'v2.0.0' },
      { ...(input().request as object), plugins: [{ module: L4 }] },
      { ...(input().request as object), plugins: [{ module: L4, version: 'v9.9.9' }, { module: FORKED }] },
      { ...(input().request as object), note: 'attacker-chosen JSON' },
      { ...(input().request as object), arch: 'arm64' },
    ];
    for (const request of forged) {
      assert.throws(
        () => provenancePredicate(input({ request })),
        (e: Error) => e instanceof ProvenanceRefused && /its request contradicts its spec/.test(e.message),
        JSON.stringify(request),
      );
    }
  });
});

describe('keys', () => {
  test('createKeyPair: a P-256 PKCS#8 key and its SPKI public key; the fingerprint is sha256 of the DER', () => {
    assert.match(pair.privatePem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(pair.publicPem, /^-----BEGIN PUBLIC KEY-----\n/);
    assert.equal(signer.fingerprint, pair.fingerprint);
    assert.equal(fingerprintOf(pub), pair.fingerprint);
    assert.match(pair.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(signer.publicKeyPem, pair.publicPem);
    assert.equal(pub.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  test('refused with the message: an RSA key, a P-384 key, an encrypted key, not a key', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const isKeyError = (re: RegExp) => (e: Error) => e instanceof KeyError && re.test(e.message);
    assert.throws(() => signerFromPem(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()), isKeyError(/the signing key is a rsa key; Fairway signs with ECDSA P-256/));
    assert.throws(() => publicKeyFromPem(rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()), isKeyError(/the public key is a rsa key; Fairway signs with ECDSA P-256/));
    assert.throws(() => signerFromPem(p384.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()), isKeyError(/is a ec key on secp384r1; Fairway signs with ECDSA P-256/));
    assert.throws(() => publicKeyFromPem(p384.publicKey.export({ type: 'spki', format: 'pem' }).toString()), isKeyError(/is a ec key on secp384r1/));
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pkcs8Encrypted = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
    const sec1Encrypted = privateKey.export({ type: 'sec1', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }).toString();
    assert.match(pkcs8Encrypted, /BEGIN ENCRYPTED PRIVATE KEY/);
    assert.match(sec1Encrypted, /Proc-Type: 4,ENCRYPTED/);
    assert.throws(() => signerFromPem(pkcs8Encrypted), isKeyError(/the signing key is encrypted; Fairway needs an unencrypted PKCS#8 key/));
    assert.throws(() => signerFromPem(sec1Encrypted), isKeyError(/is encrypted/));
    assert.throws(() => signerFromPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'), isKeyError(/is not a PEM private key/));
    assert.throws(() => publicKeyFromPem('hello'), isKeyError(/is not a PEM public key/));
  });

  test('loadSigner / loadPublicKey read files and name them in their errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fw-prov-'));
    await writeFile(join(dir, 'k.key'), pair.privatePem);
    await writeFile(join(dir, 'k.pub'), pair.publicPem);
    assert.equal((await loadSigner(join(dir, 'k.key'))).fingerprint, pair.fingerprint);
    assert.equal(fingerprintOf(await loadPublicKey(join(dir, 'k.pub'))), pair.fingerprint);
    // The public half of a private key file is accepted where a public key is asked for.
    assert.equal(fingerprintOf(await loadPublicKey(join(dir, 'k.key'))), pair.fingerprint);
    await assert.rejects(loadPublicKey(join(dir, 'missing.pub')), (e: Error) => e instanceof KeyError && e.message.includes(`cannot read the public key ${join(dir, 'missing.pub')}`));
    await assert.rejects(loadSigner(join(dir, 'k.pub')), (e: Error) => e instanceof KeyError && e.message.includes(`the signing key ${join(dir, 'k.pub')} is not a PEM private key`));
  });
});

describe('statement', () => {
  test("dirHash is the h1 sum's sha256 in hex; anything else is null", () => {
    // go.sum: golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg= (hex computed with Python's base64).
    assert.equal(dirHash(SUM.caddy), '83ad6dced139a9e190f3db66e8d4e38ccf553c89b4f3ca1dd65e9a4a8ad64568');
    assert.equal(dirHash(SUM.l4), '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    for (const bad of [
      '',
      'h1:',
      'h2:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=',
      'h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg',
      'h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRW=x',
      ' h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=',
    ]) {
      assert.equal(dirHash(bad), null, bad);
    }
  });

  test('resolvedDependencies: every module with role, exact version, sum and replacement, sorted by path', () => {
    assert.deepEqual(resolvedDependencies(buildInfo, spec), [
      { name: 'example.com/nosum', uri: 'pkg:golang/example.com/nosum@v0.0.1', annotations: { role: 'dependency', version: 'v0.0.1' } },
      {
        name: CADDY,
        uri: `pkg:golang/${CADDY}@v2.11.9`,
        digest: { dirHash: '83ad6dced139a9e190f3db66e8d4e38ccf553c89b4f3ca1dd65e9a4a8ad64568' },
        annotations: { role: 'caddy', version: 'v2.11.9', sum: SUM.caddy },
      },
      {
        name: FORKED,
        uri: 'pkg:golang/github.com/fork/caddy-thing@v1.0.1',
        digest: { dirHash: '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f' },
        annotations: { role: 'plugin', version: 'v1.0.0', sum: SUM.fork, replacedBy: 'github.com/fork/caddy-thing@v1.0.1' },
      },
      {
        name: L4,
        uri: `pkg:golang/${L4}@v0.1.2`,
        digest: { dirHash: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' },
        annotations: { role: 'plugin', version: 'v0.1.2', sum: SUM.l4 },
      },
      {
        name: 'golang.org/x/text',
        uri: 'pkg:golang/golang.org/x/text@v0.3.0',
        digest: { dirHash: '404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f' },
        annotations: { role: 'dependency', version: 'v0.3.0', sum: SUM.text },
      },
    ]);
    assert.deepEqual(resolvedDependencies(undefined, spec), []);
    assert.deepEqual(resolvedDependencies({ Deps: 'no' }, spec), []);
  });

  test('summarizeProvenance: builder, invocation, Caddy and plugins from resolvedDependencies (else the spec)', () => {
    const st = readStatement(binaryProvenance(input()));
    assert.deepEqual(summarizeProvenance(st), {
      builderId: 'urn:fairway:builder:agent-1',
      invocationId: 'a'.repeat(64),
      buildType: BUILD_TYPE,
      startedOn: '2026-12-01T10:00:00.000Z',
      finishedOn: '2026-12-01T10:01:00.000Z',
      caddy: { version: 'v2.11.9', from: 'resolvedDependencies' },
      plugins: [
        { module: FORKED, version: 'v1.0.0', replacedBy: 'github.com/fork/caddy-thing@v1.0.1' },
        { module: L4, version: 'v0.1.2' },
      ],
      dependencies: 5,
    });
    const bare = summarizeProvenance(readStatement(binaryProvenance(input({ buildInfo: undefined }))));
    assert.deepEqual(bare.caddy, { version: 'v2.11.9', from: 'spec' });
    // The signed spec lists the plugins in the key's order (sorted), whatever order the request had.
    assert.deepEqual(bare.plugins, [
      { module: FORKED, version: 'v1.0.0' },
      { module: L4, version: 'v0.1.2' },
    ]);
    assert.equal(bare.dependencies, 0);
  });

  test('canonical: the same build gives the same bytes, whatever the key order of its input', () => {
    const a = binaryProvenance(input());
    const b = binaryProvenance(input());
    assert.equal(a.payload, b.payload);
    const reordered = input({
      request: { plugins: [{ module: L4 }, { version: 'v1.0.0', module: FORKED }], arch: 'amd64', os: 'linux', caddyVersion: 'latest' },
      spec: { toolchain: { flags: spec.toolchain.flags, xcaddy: 'v0.4.7', go: 'go1.26.8' }, plugins: spec.plugins, arch: 'amd64', os: 'linux', caddyVersion: 'v2.11.9' } as ResolvedSpec,
    });
    assert.equal(binaryProvenance(reordered).payload, a.payload);
    const text = statementBytes(readStatement(a)).toString();
    assert.equal(text, Buffer.from(a.payload, 'base64').toString());
    assert.ok(
      text.indexOf('"_type"') < text.indexOf('"predicate"') && text.indexOf('"predicate"') < text.indexOf('"predicateType"') && text.indexOf('"predicateType"') < text.indexOf('"subject"'),
      'keys sorted',
    );
  });

  test('two builders of the same spec write statements that differ only in the builder and the times', () => {
    const a = readStatement(binaryProvenance(input()));
    const b = readStatement(binaryProvenance(input({ builder: 'serve@other-host', startedAt: '2026-12-02T00:00:00.000Z', finishedAt: '2026-12-02T00:05:00.000Z' })));
    assert.notDeepEqual(a, b);
    const strip = (s: typeof a) => {
      const c = structuredClone(s);
      const rd = c.predicate.runDetails;
      rd.builder.id = '';
      delete rd.metadata.startedOn;
      delete rd.metadata.finishedOn;
      return c;
    };
    assert.deepEqual(strip(a), strip(b));
    assert.equal(b.predicate.runDetails.builder.id, 'urn:fairway:builder:serve@other-host');
    // A different binary is a different statement.
    assert.notDeepEqual(strip(a), strip(readStatement(binaryProvenance(input({ sha256: 'f'.repeat(64) })))));
  });
});
