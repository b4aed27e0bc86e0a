/**
 * Signing the image index behind a tag (docs/provenance.md, "Tags"): what `cosign verify` and
 * `cosign verify-attestation` of `caddy/<recipe>:<version>` check, since a tag resolves to the
 * index's digest, not to a platform image's.
 *
 * The index is assembled by the registry (src/registry/index.ts tagIndex), on `serve` or on a hub,
 * from platform images that builders signed (src/registry/images.ts). Before the index is signed,
 * every platform image it lists is verified with the trusted build key(s): its cosign signature
 * (the simple-signing payload names its manifest digest, and the ECDSA signature over the payload
 * verifies) and its attestation (a DSSE envelope signed by the build key whose in-toto statement is
 * SLSA v1 provenance about that manifest, of that build). An index key never vouches for an image
 * it cannot verify: one image that does not verify and the index is not signed.
 *
 * What is made, in cosign's tag layout for the index digest `sha256:<hex>`:
 *  - `sha256-<hex>.sig`: the simple-signing payload naming the index digest, signed;
 *  - `sha256-<hex>.att`: one layer per platform image, each a DSSE envelope (signed) of an in-toto
 *    statement whose subjects are the index (so cosign's subject check of the tag's digest passes)
 *    and that platform's image manifest, and whose predicate is that image's verified SLSA
 *    provenance. The statement says: this index lists this image, and this is its provenance, as
 *    verified under the build key.
 * Both manifests carry the annotation `dev.fairway.index` (the index digest): they belong to every
 * repository the index belongs to (manifestBelongs).
 *
 * The result is kept as the record `index-signatures/<index hex>.<key fingerprint, 32 hex>`:
 * indexes are deterministic (the same platform images make the same digest), so a tag is signed
 * once per key, not at every pull. Its blobs are referenced by no record the blob collector reads
 * (like the index blob itself, made again at the next pull): the pass that collects them drops the
 * record too (src/ops/blobgc.ts BLOB_FOLLOWER_NAMESPACES), and the index is verified and signed
 * again at the next request.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ANNOTATION, MEDIA_TYPE, canonicalBytes, platformString, type Descriptor, type ImageIndex, type ImageManifest, type OciPlatform } from '../image/index.js';
import {
  EnvelopeError,
  IN_TOTO_PAYLOAD_TYPE,
  SLSA_PROVENANCE_V1,
  envelope,
  fingerprintOf,
  statement,
  statementBytes,
  verifyProvenance,
  verifySignature,
  type Signer,
  type Statement,
} from '../provenance/index.js';
import type { ArtifactStore, BlobInfo, BlobStore, RecordStore } from '../store/index.js';
import { COSIGN, IMAGE_CREATED, SIGNATURES_NS, putBytes, simpleSigningPayload, type SignatureRecord } from './images.js';
import { errorMessage } from '../util/errors.js';
import { RegistryError, fairwayImageOf } from './oci.js';

export const INDEX_SIGNATURES_NS = 'index-signatures';
/** The largest signature manifest, payload or envelope read while verifying (Fairway's are a few KB). */
const MAX_DOC = 1024 * 1024;

type Store = BlobStore & RecordStore;

/** A platform image an index lists: its manifest digest, the build (artifact key) it is the image of, its platform. */
export interface IndexChild {
  manifestDigest: string;
  key: string;
  platform: string;
}

/** A platform image whose signature and provenance verified under a trusted build key. */
export interface VerifiedImage extends IndexChild {
  /** The statement of its attestation (subject: the manifest; predicate: SLSA v1). */
  statement: Statement;
  /** The build key it verified with (fingerprint). */
  buildKey: string;
}

/** The record `index-signatures/<name>`: the cosign signature and attestation of an index. */
export interface IndexSignatureRecord {
  indexDigest: string;
  /** The index key's fingerprint. */
  keyFingerprint: string;
  /** The manifest tagged `sha256-<hex>.sig`. */
  sig: { digest: string; size: number };
  /** The manifest tagged `sha256-<hex>.att`. */
  att: { digest: string; size: number };
  /** The platform images the index lists, each verified under the build key `buildKey`. */
  images: Array<IndexChild & { buildKey: string }>;
  blobs: Array<{ digest: string; size: number }>;
}

/** Why an index is not signed: a platform image that does not verify (the message says which and why). */
export class IndexSignRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IndexSignRefused';
  }
}

/** The record name of an index's signature under a key: `<index hex>.<fingerprint, 32 hex>` (record names are at most 128 characters). */
export function indexSignatureName(indexDigest: string, keyFingerprint: string): string {
  return `${indexDigest.slice(7)}.${keyFingerprint.slice(0, 32)}`;
}

async function readDoc(store: BlobStore, digest: string, what: string): Promise<Buffer> {
  const info = await store.statBlob(digest);
  if (!info) throw new IndexSignRefused(`its ${what} ${digest} is not in the store`);
  if (info.size > MAX_DOC) throw new IndexSignRefused(`its ${what} ${digest} is ${info.size} bytes, larger than any Fairway writes`);
  const chunks: Buffer[] = [];
  for await (const c of await store.openBlob(digest)) chunks.push(c as Buffer);
  const bytes = Buffer.concat(chunks);
  if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) throw new IndexSignRefused(`its ${what} ${digest} does not match its digest in the store`);
  return bytes;
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8')) as unknown;
  } catch {
    throw new IndexSignRefused(`its ${what} is not JSON`);
  }
}

/**
 * The one layer of a cosign signature/attestation manifest, of `mediaType`; with `predicateType`,
 * the one layer annotated with it (an image's `.att` has one layer per attestation: the SLSA
 * provenance and the SBOM, docs/sbom.md).
 */
async function oneLayer(store: BlobStore, digest: string, mediaType: string, what: string, predicateType?: string): Promise<Descriptor> {
  const m = parseJson(await readDoc(store, digest, `${what} manifest`), `${what} manifest`) as Partial<ImageManifest> | null;
  const all = Array.isArray(m?.layers) ? m.layers : [];
  const layers = predicateType ? all.filter((l) => l?.annotations?.predicateType === predicateType) : all;
  const layer = layers.length === 1 ? layers[0] : undefined;
  if (!layer || layer.mediaType !== mediaType || typeof layer.digest !== 'string') {
    throw new IndexSignRefused(`its ${what} manifest ${digest} is not one ${mediaType} layer${predicateType ? ` of ${predicateType}` : ''}`);
  }
  return layer;
}

/**
 * Verifies a platform image with the trusted build keys: its `.sig` (the payload names its
 * manifest digest as a cosign image signature, and the signature over the payload verifies with a
 * trusted key) and its `.att` (the DSSE envelope verifies with a trusted key, and its statement is
 * SLSA v1 provenance whose subject is the manifest and whose invocation is the image's build).
 * Throws IndexSignRefused saying what did not verify.
 */
export async function verifyPlatformImage(store: Store, child: IndexChild, trusted: readonly KeyObject[]): Promise<VerifiedImage> {
  const what = `${child.platform} image ${child.manifestDigest} (build ${child.key})`;
  try {
    if (trusted.length === 0) throw new IndexSignRefused('no build key is trusted to verify it with');
    const rec = (await store.getRecord(SIGNATURES_NS, child.key)) as SignatureRecord | null;
    if (!rec || typeof rec !== 'object' || !rec.sig) throw new IndexSignRefused('it is not signed (its builder had no signing key, or it was made unsigned: see the log)');
    if (rec.manifestDigest !== child.manifestDigest) throw new IndexSignRefused(`its signature record is about ${String(rec.manifestDigest).slice(0, 80)}, not this manifest`);
    // .sig: the simple-signing payload, and the signature in the layer annotation.
    const sigLayer = await oneLayer(store, rec.sig.digest, COSIGN.simpleSigning, 'signature');
    const payload = await readDoc(store, sigLayer.digest, 'signature payload');
    const critical = (parseJson(payload, 'signature payload') as { critical?: { image?: Record<string, unknown>; type?: unknown } } | null)?.critical;
    if (critical?.type !== COSIGN.signatureType) throw new IndexSignRefused('its signature payload is not a cosign container image signature');
    if (critical.image?.['docker-manifest-digest'] !== child.manifestDigest) {
      throw new IndexSignRefused(`its signature payload names ${String(critical.image?.['docker-manifest-digest']).slice(0, 80)}, not this manifest`);
    }
    const sig = Buffer.from(sigLayer.annotations?.[COSIGN.signatureAnnotation] ?? '', 'base64');
    const sigKey = trusted.find((k) => verifySignature(k, payload, sig));
    if (!sigKey) throw new IndexSignRefused(`its signature does not verify with the build key${trusted.length > 1 ? 's' : ''} ${trusted.map((k) => fingerprintOf(k).slice(0, 16)).join(', ')}`);
    // .att: the DSSE envelope of its provenance.
    if (!rec.att) throw new IndexSignRefused('it has no attestation (its build has no provenance)');
    const attLayer = await oneLayer(store, rec.att.digest, COSIGN.dsse, 'attestation', SLSA_PROVENANCE_V1);
    const env = parseJson(await readDoc(store, attLayer.digest, 'attestation envelope'), 'attestation envelope');
    let verified: { statement: Statement; key: KeyObject } | undefined;
    let why = '';
    for (const k of trusted) {
      try {
        verified = { statement: verifyProvenance(env, k, child.manifestDigest.slice(7)).statement, key: k };
        break;
      } catch (err) {
        why = errorMessage(err);
      }
    }
    if (!verified) throw new IndexSignRefused(`its attestation does not verify with the build key: ${why}`);
    const invocation = verified.statement.predicate?.runDetails?.metadata?.invocationId;
    if (invocation !== child.key) throw new IndexSignRefused(`its attestation is about build ${JSON.stringify(invocation).slice(0, 80)}, not ${child.key}`);
    return { ...child, statement: verified.statement, buildKey: fingerprintOf(verified.key) };
  } catch (err) {
    if (err instanceof IndexSignRefused || err instanceof EnvelopeError) throw new IndexSignRefused(`the ${what} does not verify: ${err.message}`);
    throw err;
  }
}

/** A manifest of the given layers as cosign writes signature and attestation manifests, annotated with the index it is about. */
async function indexSignatureManifest(store: Store, dir: string, layers: Descriptor[], indexDigest: string): Promise<{ manifest: BlobInfo; config: BlobInfo }> {
  const config = await putBytes(store, dir, canonicalBytes({ architecture: '', config: {}, created: IMAGE_CREATED, os: '', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: config.size },
    layers,
    annotations: { [ANNOTATION.fairwayIndex]: indexDigest },
  };
  return { manifest: await putBytes(store, dir, canonicalBytes(manifest)), config };
}

export interface SignIndexOptions {
  store: Store;
  /** Where blobs are written before they go into the store. */
  tmpDir: string;
  indexDigest: string;
  /** The repository the index was assembled for (`caddy/l4`): the signature's docker-reference and the statements' subject name. */
  repository: string;
  /** Every platform image the index lists, verified (verifyPlatformImage). */
  images: VerifiedImage[];
  /** The index key. */
  signer: Signer;
}

/** Signs and attests an index whose platform images all verified; puts the blobs and the record. */
export async function signIndex(o: SignIndexOptions): Promise<IndexSignatureRecord> {
  const { store, indexDigest, signer } = o;
  if (o.images.length === 0) throw new IndexSignRefused(`the index ${indexDigest} lists no image`);
  await mkdir(o.tmpDir, { recursive: true });
  const dir = await mkdtemp(join(o.tmpDir, 'fairway-index-sign-'));
  try {
    const blobs: BlobInfo[] = [];
    const payload = simpleSigningPayload(indexDigest, o.repository);
    const payloadBlob = await putBytes(store, dir, payload);
    const sig = await indexSignatureManifest(
      store,
      dir,
      [{ mediaType: COSIGN.simpleSigning, digest: payloadBlob.digest, size: payloadBlob.size, annotations: { [COSIGN.signatureAnnotation]: signer.sign(payload).toString('base64') } }],
      indexDigest,
    );
    blobs.push(payloadBlob, sig.config, sig.manifest);
    const layers: Descriptor[] = [];
    for (const img of o.images) {
      const subject = [
        { name: `${o.repository}@${indexDigest}`, digest: { sha256: indexDigest.slice(7) } },
        { name: `caddy/build:${img.key}`, digest: { sha256: img.manifestDigest.slice(7) } },
      ];
      const env = canonicalBytes(envelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(statement(subject, img.statement.predicate)), signer));
      const envBlob = await putBytes(store, dir, env);
      blobs.push(envBlob);
      layers.push({ mediaType: COSIGN.dsse, digest: envBlob.digest, size: envBlob.size, annotations: { [COSIGN.signatureAnnotation]: '', predicateType: SLSA_PROVENANCE_V1 } });
    }
    const att = await indexSignatureManifest(store, dir, layers, indexDigest);
    blobs.push(att.config, att.manifest);
    const seen = new Map<string, number>();
    for (const b of blobs) seen.set(b.digest, b.size);
    const rec: IndexSignatureRecord = {
      indexDigest,
      keyFingerprint: signer.fingerprint,
      sig: { digest: sig.manifest.digest, size: sig.manifest.size },
      att: { digest: att.manifest.digest, size: att.manifest.size },
      images: o.images.map((i) => ({ manifestDigest: i.manifestDigest, key: i.key, platform: i.platform, buildKey: i.buildKey })),
      blobs: [...seen].map(([digest, size]) => ({ digest, size })),
    };
    await store.putRecord(INDEX_SIGNATURES_NS, indexSignatureName(indexDigest, signer.fingerprint), rec);
    return rec;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The stored signature of an index under a key when its record and every blob it names are there; else null. */
export async function storedIndexSignature(store: Store, indexDigest: string, keyFingerprint: string): Promise<IndexSignatureRecord | null> {
  const rec = (await store.getRecord(INDEX_SIGNATURES_NS, indexSignatureName(indexDigest, keyFingerprint))) as IndexSignatureRecord | null;
  if (!rec || rec.indexDigest !== indexDigest || rec.keyFingerprint !== keyFingerprint || !rec.sig || !rec.att || !Array.isArray(rec.blobs)) return null;
  for (const b of rec.blobs) {
    const info = await store.statBlob(b.digest);
    if (!info || info.size !== b.size) return null;
  }
  return rec;
}

/** The index key and the build keys an index's images must verify with first (RegistryOptions.indexSigning). */
export interface IndexSigning {
  signer: Signer;
  trusted: readonly KeyObject[];
}

export interface IndexSignerOptions {
  store: ArtifactStore;
  /** Absent: this server signs no indexes. */
  signing?: IndexSigning | undefined;
  tmpDir?: string | undefined;
  log: Logger;
  /** A child manifest of an index, read and checked against its digest (the registry's). */
  childManifest(digest: string): Promise<unknown | null>;
}

/** The signatures of the indexes behind tags: stored ones, or made now once per digest in this process. */
export class IndexSigner {
  /** Index signatures being made, by index digest: one per digest in this process. */
  private readonly signing = new Map<string, Promise<IndexSignatureRecord>>();

  constructor(private readonly o: IndexSignerOptions) {}

  /**
   * The signature of an index (of this repository) under this server's index key: the stored one
   * when its record and blobs are there, else made now (once per digest in this process) after
   * every platform image the index lists verified under the trusted build keys
   * (src/registry/indexsign.ts). MANIFEST_UNKNOWN saying why when the index is not signed.
   */
  async signature(repo: string, index: { digest: string; bytes: Buffer }): Promise<IndexSignatureRecord> {
    const signing = this.o.signing;
    if (!signing) {
      throw new RegistryError(
        404,
        'MANIFEST_UNKNOWN',
        `${index.digest} is an image index, and this server signs no indexes (no index signing key, or no build key to verify its images with: see its log at start; docs/provenance.md). Verify a platform's image instead (its digest is in the index, or pull caddy/build:<build id>)`,
      );
    }
    const have = await storedIndexSignature(this.o.store, index.digest, signing.signer.fingerprint);
    if (have) return have;
    let p = this.signing.get(index.digest);
    if (!p) {
      p = this.make(repo, index, signing).finally(() => this.signing.delete(index.digest));
      this.signing.set(index.digest, p);
    }
    return p;
  }

  private async make(repo: string, index: { digest: string; bytes: Buffer }, signing: IndexSigning): Promise<IndexSignatureRecord> {
    const list = (JSON.parse(index.bytes.toString('utf8')) as ImageIndex).manifests;
    try {
      const children: IndexChild[] = [];
      for (const d of list) {
        const img = fairwayImageOf(await this.o.childManifest(d.digest));
        const platform = d.platform ? platformString(d.platform as OciPlatform) : 'unknown platform';
        if (!img) throw new IndexSignRefused(`the ${platform} manifest ${d.digest} it lists is not a Fairway image`);
        children.push({ manifestDigest: d.digest, key: img.key, platform });
      }
      const images = [];
      for (const c of children) images.push(await verifyPlatformImage(this.o.store, c, signing.trusted));
      const rec = await signIndex({ store: this.o.store, tmpDir: this.o.tmpDir ?? tmpdir(), indexDigest: index.digest, repository: repo, images, signer: signing.signer });
      this.o.log.info(
        { index: index.digest, repo, key: signing.signer.fingerprint, images: images.map((i) => i.manifestDigest) },
        `signed the image index ${index.digest} of ${repo} with the index key ${signing.signer.fingerprint.slice(0, 16)}: its ${images.length} platform image(s) verified under the build key`,
      );
      return rec;
    } catch (err) {
      if (!(err instanceof IndexSignRefused)) throw err;
      this.o.log.warn({ index: index.digest, repo, reason: err.message }, `not signing the image index ${index.digest} of ${repo}: ${err.message}`);
      throw new RegistryError(
        404,
        'MANIFEST_UNKNOWN',
        `the image index ${index.digest} is not signed: ${err.message}. An index is signed only when every platform image it lists verifies under the build key; rebuild that platform under the key (docs/provenance.md)`,
      );
    }
  }
}
