// The signature of the image index behind a tag (src/registry/indexsign.ts, docs/provenance.md
// "Tags"): signed and attested with the index key only after every platform image it lists
// verified under a trusted build key; cached per index digest and key; refused, saying why, for an
// image signed by another key, an unsigned one, a signature record about another manifest.
//   node --import tsx --test test/unit/indexsign.test.ts
import assert from 'node:assert/strict';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { createKeyPair, parseEnvelope, publicKeyFromPem, verifySignature, type SlsaProvenance, type Statement } from '../../src/provenance/index.js';
import { BUILD_TYPE } from '../../src/provenance/statement.js';
import { openEnvelope } from '../../src/provenance/dsse.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { publishImage } from '../../src/registry/index.js';
import { INDEX_SIGNATURES_NS, indexSignatureName, type IndexSignatureRecord } from '../../src/registry/indexsign.js';
import { SIGNATURES_NS, type SignatureRecord } from '../../src/registry/images.js';
import { manifestBelongs } from '../../src/registry/oci.js';
import type { ResolvedSpec } from '../../src/request/index.js';
import { putSucceededBuild, testApi, type TestApi } from '../helpers/api.js';

const L4 = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };

function specOf(arch: string): ResolvedSpec {
  return { caddyVersion: 'v2.11.9', os: 'linux', arch, plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' } };
}

function predicateOf(key: string, spec: ResolvedSpec): SlsaProvenance {
  return {
    buildDefinition: { buildType: BUILD_TYPE, externalParameters: { request: {}, spec }, internalParameters: {}, resolvedDependencies: [] },
    runDetails: { builder: { id: 'urn:fairway:builder:test' }, metadata: { invocationId: key } },
  };
}

describe('registry: the image index behind a tag is signed by the index key after its images verified under the build key', () => {
  const build = createKeyPair();
  const index = createKeyPair();
  const other = createKeyPair();
  const buildSigner = signerFromPem(build.privatePem);
  const indexSigner = signerFromPem(index.privatePem);
  const otherSigner = signerFromPem(other.privatePem);
  let t: TestApi;
  let plain: TestApi;
  let tmp: string;
  const keys: Record<string, string> = {};

  /** Makes (or makes again) the image of a build, signed by `signer` (with its provenance attested), or unsigned. */
  const publish = async (api: TestApi, key: string, signer?: typeof buildSigner) => {
    const meta = (await api.store.getMeta(key))!;
    const bin = join(tmp, `caddy-${key}`);
    await pipeline((await (await api.service.artifact(key)).open()) as Readable, createWriteStream(bin));
    return publishImage({ store: api.store, binaryPath: bin, meta, tmpDir: tmp, ...(signer ? { signer, predicate: predicateOf(key, meta.spec as ResolvedSpec) } : {}) });
  };
  const get = (api: TestApi, url: string) => api.app.inject({ method: 'GET', url });
  const blob = async (api: TestApi, digest: string) => {
    const res = await get(api, `/v2/caddy/blobs/${digest}`);
    assert.equal(res.statusCode, 200);
    return res.rawPayload;
  };
  const tagDigest = async (api: TestApi) => {
    const res = await get(api, '/v2/caddy/manifests/2.11.9');
    assert.equal(res.statusCode, 200, res.body);
    return String(res.headers['docker-content-digest']);
  };
  const clearIndexSignatures = async () => {
    for (const n of await t.store.listRecords(INDEX_SIGNATURES_NS)) await t.store.deleteRecord(INDEX_SIGNATURES_NS, n);
  };

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'fairway-indexsign-'));
    t = await testApi({
      registry: { recipes: { l4: { plugins: [L4] } }, indexSigning: { signer: indexSigner, trusted: [publicKeyFromPem(build.publicPem)] } },
    });
    plain = await testApi({});
    for (const api of [t, plain]) {
      for (const arch of ['amd64', 'arm64']) {
        keys[arch] = await putSucceededBuild(api, specOf(arch), { request: { caddyVersion: 'latest', os: 'linux', arch, plugins: [] }, seed: `caddy-${arch}`, at: '2026-11-30T08:15:00.000Z' });
        await publish(api, keys[arch]!, buildSigner);
      }
    }
  });
  after(async () => {
    await t?.close();
    await plain?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('.sig: the simple-signing payload names the index digest, signed by the index key (not the build key)', async () => {
    const digest = await tagDigest(t);
    const res = await get(t, `/v2/caddy/manifests/sha256-${digest.slice(7)}.sig`);
    assert.equal(res.statusCode, 200, res.body);
    const m = res.json() as { layers: Array<{ mediaType: string; digest: string; annotations: Record<string, string> }>; annotations: Record<string, string> };
    assert.equal(m.annotations['dev.fairway.index'], digest);
    assert.equal(m.layers.length, 1);
    const payload = await blob(t, m.layers[0]!.digest);
    const claim = JSON.parse(payload.toString()) as { critical: { image: Record<string, string>; type: string } };
    assert.equal(claim.critical.image['docker-manifest-digest'], digest);
    assert.equal(claim.critical.type, 'cosign container image signature');
    const sig = Buffer.from(m.layers[0]!.annotations['dev.cosignproject.cosign/signature']!, 'base64');
    assert.ok(verifySignature(publicKeyFromPem(index.publicPem), payload, sig), 'signed by the index key');
    assert.ok(!verifySignature(publicKeyFromPem(build.publicPem), payload, sig), 'not by the build key');
  });

  test(".att: one DSSE layer per platform image; each statement names the index and that image, with the image's verified provenance", async () => {
    const digest = await tagDigest(t);
    const idx = (await get(t, '/v2/caddy/manifests/2.11.9')).json() as { manifests: Array<{ digest: string }> };
    const res = await get(t, `/v2/caddy/manifests/sha256-${digest.slice(7)}.att`);
    assert.equal(res.statusCode, 200, res.body);
    const m = res.json() as { layers: Array<{ mediaType: string; digest: string; annotations: Record<string, string> }> };
    assert.equal(m.layers.length, 2);
    const statements: Statement[] = [];
    for (const l of m.layers) {
      assert.equal(l.mediaType, 'application/vnd.dsse.envelope.v1+json');
      assert.equal(l.annotations.predicateType, 'https://slsa.dev/provenance/v1');
      const env = parseEnvelope(JSON.parse((await blob(t, l.digest)).toString()));
      assert.throws(() => openEnvelope(env, publicKeyFromPem(build.publicPem)), /none of the envelope/);
      statements.push(JSON.parse(openEnvelope(env, publicKeyFromPem(index.publicPem)).toString()) as Statement);
    }
    assert.deepEqual(
      statements.map((s) => s.subject.map((x) => x.digest.sha256)),
      idx.manifests.map((d) => [digest.slice(7), d.digest.slice(7)]),
    );
    assert.deepEqual(
      statements.map((s) => s.predicate.runDetails.metadata.invocationId),
      [keys.amd64, keys.arm64],
    );
    assert.ok(statements.every((s) => s.predicateType === 'https://slsa.dev/provenance/v1'));
    // The image's own attestation (by the build key) carries the same predicate.
    const own = (await t.store.getRecord(SIGNATURES_NS, keys.amd64!)) as SignatureRecord;
    const ownAtt = JSON.parse((await blob(t, own.att!.digest)).toString()) as { layers: Array<{ digest: string }> };
    const ownSt = JSON.parse(openEnvelope(parseEnvelope(JSON.parse((await blob(t, ownAtt.layers[0]!.digest)).toString())), publicKeyFromPem(build.publicPem)).toString()) as Statement;
    assert.deepEqual(statements[0]!.predicate, ownSt.predicate);
  });

  test('kept per index digest and key: later requests do not sign again; the signature manifests belong where the index does', async () => {
    const digest = await tagDigest(t);
    const rec = (await t.store.getRecord(INDEX_SIGNATURES_NS, indexSignatureName(digest, indexSigner.fingerprint))) as IndexSignatureRecord;
    assert.equal(rec.indexDigest, digest);
    assert.deepEqual(
      rec.images.map((i) => [i.key, i.buildKey]),
      [
        [keys.amd64, buildSigner.fingerprint],
        [keys.arm64, buildSigner.fingerprint],
      ],
    );
    const putRecord = t.store.putRecord.bind(t.store);
    let writes = 0;
    t.store.putRecord = async (ns, name, value) => {
      if (ns === INDEX_SIGNATURES_NS) writes++;
      return putRecord(ns, name, value);
    };
    try {
      for (const kind of ['sig', 'att', 'sig']) assert.equal((await get(t, `/v2/caddy/manifests/sha256-${digest.slice(7)}.${kind}`)).statusCode, 200);
    } finally {
      t.store.putRecord = putRecord;
    }
    assert.equal(writes, 0, 'not signed again');
    // By digest: under caddy (the index's repository), not under caddy/l4 (whose index lists other images).
    assert.equal((await get(t, `/v2/caddy/manifests/${rec.sig.digest}`)).statusCode, 200);
    assert.equal((await get(t, `/v2/caddy/l4/manifests/${rec.sig.digest}`)).statusCode, 404);
    // A signature manifest naming no index, or an index digest that is not an index: nowhere.
    const readChild = async (d: string) => (d === digest ? { mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] } : null);
    assert.equal(await manifestBelongs({ annotations: { 'dev.fairway.index': 'sha256:nope' } }, { plugins: [] }, readChild), false);
    assert.equal(await manifestBelongs({ annotations: { 'dev.fairway.index': digest } }, { plugins: [] }), false, 'without a reader');
    // A blob of the signature gone (collected): signed again at the next request.
    await t.store.deleteBlob(rec.att.digest);
    assert.equal((await get(t, `/v2/caddy/manifests/sha256-${digest.slice(7)}.att`)).statusCode, 200);
    const again = (await t.store.getRecord(INDEX_SIGNATURES_NS, indexSignatureName(digest, indexSigner.fingerprint))) as IndexSignatureRecord;
    assert.ok(await t.store.statBlob(again.att.digest));
  });

  test('a platform image signed by another key: the index is not signed (404 saying which image and why), nothing is kept', async () => {
    await clearIndexSignatures();
    await publish(t, keys.arm64!, otherSigner);
    try {
      const digest = await tagDigest(t);
      for (const kind of ['sig', 'att']) {
        const res = await get(t, `/v2/caddy/manifests/sha256-${digest.slice(7)}.${kind}`);
        assert.equal(res.statusCode, 404);
        const err = (res.json() as { errors: Array<{ code: string; message: string }> }).errors[0]!;
        assert.equal(err.code, 'MANIFEST_UNKNOWN');
        assert.match(
          err.message,
          /the image index sha256:[0-9a-f]{64} is not signed: the linux\/arm64\/v8 image sha256:[0-9a-f]{64} \(build [0-9a-f]{64}\) does not verify: its signature does not verify with the build key/,
        );
      }
      assert.deepEqual(await t.store.listRecords(INDEX_SIGNATURES_NS), []);
    } finally {
      await publish(t, keys.arm64!, buildSigner);
    }
  });

  test('an unsigned platform image, or a signature record about another manifest: not signed', async () => {
    await clearIndexSignatures();
    const digest = await tagDigest(t);
    const url = `/v2/caddy/manifests/sha256-${digest.slice(7)}.sig`;
    const message = async () => {
      const res = await get(t, url);
      assert.equal(res.statusCode, 404);
      return (res.json() as { errors: Array<{ message: string }> }).errors[0]!.message;
    };
    const saved = (await t.store.getRecord(SIGNATURES_NS, keys.amd64!)) as SignatureRecord;
    try {
      await t.store.deleteRecord(SIGNATURES_NS, keys.amd64!);
      assert.match(await message(), /the linux\/amd64 image .* does not verify: it is not signed/);
      // The arm64 image's genuine signature, recorded as the amd64 image's.
      const arm = (await t.store.getRecord(SIGNATURES_NS, keys.arm64!)) as SignatureRecord;
      await t.store.putRecord(SIGNATURES_NS, keys.amd64!, { ...arm, key: keys.amd64, manifestDigest: saved.manifestDigest });
      assert.match(await message(), /the linux\/amd64 image .* does not verify: its signature payload names sha256:[0-9a-f]{64}, not this manifest/);
    } finally {
      await t.store.putRecord(SIGNATURES_NS, keys.amd64!, saved);
    }
    assert.equal((await get(t, url)).statusCode, 200, 'signed once the images verify');
  });

  test('a registry without index signing: 404 saying indexes are not signed here', async () => {
    const digest = await tagDigest(plain);
    const res = await get(plain, `/v2/caddy/manifests/sha256-${digest.slice(7)}.sig`);
    assert.equal(res.statusCode, 404);
    assert.match((res.json() as { errors: Array<{ message: string }> }).errors[0]!.message, /is an image index, and this server signs no indexes/);
  });
});
