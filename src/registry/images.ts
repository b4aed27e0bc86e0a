/**
 * Making an artifact's image and publishing it to the store: its blobs (BlobStore) and the record
 * `images/<key>` (RecordStore); and, when a signer is given, its cosign signature and attestation
 * (`signatures/<key>`). Used by the builder right after a build (the builder signs: src/main wires
 * it into the build processor) and by the registry for artifacts that have no image yet.
 *
 * cosign's layout (sigstore/cosign, "Signature specification"): the signature of manifest
 * `sha256:<hex>` is an image manifest tagged `sha256-<hex>.sig` whose one layer is the "simple
 * signing" payload naming the digest, with the base64 signature in the layer annotation
 * `dev.cosignproject.cosign/signature`; the attestation (`.att`) has a DSSE envelope (an in-toto
 * statement about the manifest) as its layer.
 *
 * Beside them, the same two published the OCI 1.1 way, as cosign v3 writes them: each a Sigstore
 * bundle v0.3 (JSON, a DSSE envelope signed with the key; no certificate, no transparency-log
 * entry) as the one layer of a manifest whose `subject` is the image manifest, found through the
 * referrers API (`GET /v2/<name>/referrers/<digest>`). The signature's bundle is an in-toto
 * statement about the image with cosign's predicate type `https://sigstore.dev/cosign/sign/v1`;
 * the attestation's is the `.att` envelope itself (the SLSA statement).
 *
 * With the build's SBOM (docs/sbom.md), the `.att` manifest has a second layer, as `cosign attest
 * --type spdxjson` adds one: a DSSE envelope of an in-toto statement about the image whose
 * predicate is the SPDX document (predicateType https://spdx.dev/Document); and a third bundle
 * referrer holds the same envelope.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ANNOTATION, MEDIA_TYPE, buildImage, canonicalBytes, platformString, type Descriptor, type ImageManifest } from '../image/index.js';
import {
  IN_TOTO_PAYLOAD_TYPE,
  SLSA_PROVENANCE_V1,
  SPDX_DOCUMENT,
  STATEMENT_TYPE,
  attestationBytes,
  envelope,
  statement,
  statementBytes,
  type DsseEnvelope,
  type Signer,
  type SlsaProvenance,
} from '../provenance/index.js';
import { canonicalSpec, type ResolvedSpec } from '../request/index.js';
import type { ArtifactMeta, BlobInfo, BlobStore, RecordStore } from '../store/index.js';

/** The `created` of every image: the Unix epoch (see IMAGE_CREATED in index.ts). */
export const IMAGE_CREATED = '1970-01-01T00:00:00Z';
export const IMAGES_NS = 'images';
export const SIGNATURES_NS = 'signatures';

export const COSIGN = {
  simpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  dsse: 'application/vnd.dsse.envelope.v1+json',
  signatureAnnotation: 'dev.cosignproject.cosign/signature',
  signatureType: 'cosign container image signature',
} as const;

/** Sigstore bundles as OCI 1.1 referrers (cosign v3). */
export const SIGSTORE = {
  /** The bundle's media type: the referrer manifest's artifactType and its layer's media type. */
  bundle: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  /** cosign v3's predicate type of an image signature: an in-toto statement about the image, empty predicate. */
  signPredicateType: 'https://sigstore.dev/cosign/sign/v1',
  contentAnnotation: 'dev.sigstore.bundle.content',
  predicateTypeAnnotation: 'dev.sigstore.bundle.predicateType',
} as const;

/** The record kept per artifact: how its image is made of store blobs. */
export interface ImageRecord {
  key: string;
  manifestDigest: string;
  /** The manifest's descriptor with its platform (an entry of a tag's index). */
  descriptor: Descriptor;
  /** Every blob of the image: manifest, config, layers. */
  blobs: Array<{ digest: string; size: number }>;
}

/** The record `signatures/<key>`: the cosign signature and attestation manifests of the artifact's image. */
export interface SignatureRecord {
  key: string;
  /** The signed image manifest. */
  manifestDigest: string;
  /** The manifest tagged `sha256-<hex>.sig`. */
  sig: { digest: string; size: number };
  /** The manifest tagged `sha256-<hex>.att`; absent when the build has no provenance to attest. */
  att?: { digest: string; size: number };
  /**
   * The Sigstore bundle referrers (manifests whose `subject` is the image manifest): the
   * signature's and the attestation's. Absent in records made before they existed.
   */
  referrers?: Array<{ digest: string; size: number; artifactType: string }>;
  /** sha256 of the signing key's public key (src/provenance fingerprintOf). */
  keyFingerprint: string;
  /** Every blob the manifests use (.sig, .att and the referrers). */
  blobs: Array<{ digest: string; size: number }>;
}

type Store = BlobStore & RecordStore;

export interface PublishImageOptions {
  store: Store;
  /** The Caddy binary on local disk (checked against meta.sha256 while it goes into the layer). */
  binaryPath: string;
  /** The succeeded artifact's record (before or after it is published). */
  meta: ArtifactMeta;
  /** Where the image is assembled before its blobs go to the store. */
  tmpDir: string;
  /** Signs the image (cosign signature and attestation) when given. */
  signer?: Signer;
  /** The build's SLSA predicate: the attestation's, about the image manifest. */
  predicate?: SlsaProvenance;
  /** The build's SPDX document (src/sbom): attested about the image beside the SLSA predicate. */
  sbom?: unknown;
  logger?: Logger;
}

/** Puts `bytes` as a blob (written to `dir` first), unless the store has it. */
export async function putBytes(store: BlobStore, dir: string, bytes: Buffer): Promise<BlobInfo> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const have = await store.statBlob(digest);
  if (have) return have;
  const p = join(dir, digest.slice(7));
  await writeFile(p, bytes);
  return store.putBlob(digest, p);
}

/** Makes the image of a succeeded linux artifact, puts its blobs and its record (and its signatures with a signer). */
export async function publishImage(o: PublishImageOptions): Promise<ImageRecord> {
  const { meta, store } = o;
  const spec = meta.spec as ResolvedSpec;
  await mkdir(o.tmpDir, { recursive: true });
  const dir = await mkdtemp(join(o.tmpDir, 'fairway-image-'));
  try {
    const img = await buildImage({
      binaryPath: o.binaryPath,
      platform: { os: spec.os, arch: spec.arch, ...(spec.arm ? { arm: spec.arm } : {}) },
      caddyVersion: spec.caddyVersion,
      key: meta.key,
      spec,
      created: IMAGE_CREATED,
      blobDir: join(dir, 'blobs'),
      ...(meta.sha256 ? { binarySha256: meta.sha256 } : {}),
    });
    const blobs: ImageRecord['blobs'] = [];
    // Layers and config first, the manifest last: a manifest in the store has all its blobs.
    for (const l of img.layers) blobs.push(await store.putBlob(l.digest, l.path));
    const cfg = join(dir, 'blobs', 'sha256', img.configDescriptor.digest.slice(7));
    blobs.push(await store.putBlob(img.configDescriptor.digest, cfg));
    blobs.push(await store.putBlob(img.manifestDigest, join(dir, 'blobs', 'sha256', img.manifestDigest.slice(7))));
    const rec: ImageRecord = { key: meta.key, manifestDigest: img.manifestDigest, descriptor: img.descriptor, blobs: blobs.map((b) => ({ digest: b.digest, size: b.size })) };
    if (o.signer) await publishSignatures({ store, dir, rec, meta, signer: o.signer, ...(o.predicate ? { predicate: o.predicate } : {}), sbom: o.sbom });
    await store.putRecord(IMAGES_NS, meta.key, rec);
    o.logger?.info({ key: meta.key, manifest: img.manifestDigest, platform: platformString(img.platform), signed: !!o.signer }, 'image made');
    return rec;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The "simple signing" payload cosign signs for an image manifest. */
export function simpleSigningPayload(manifestDigest: string, reference: string): Buffer {
  return canonicalBytes({
    critical: { identity: { 'docker-reference': reference }, image: { 'docker-manifest-digest': manifestDigest }, type: COSIGN.signatureType },
    optional: null,
  });
}

/** The annotations naming the artifact (key and resolved spec): where a signature manifest belongs (registry manifestBelongs). */
function fairwayAnnotations(meta: ArtifactMeta): Record<string, string> {
  return { [ANNOTATION.fairwayKey]: meta.key, [ANNOTATION.fairwaySpec]: canonicalBytes(canonicalSpec(meta.spec as ResolvedSpec)).toString('utf8') };
}

/** A Sigstore bundle v0.3 (protobuf-specs JSON) of a DSSE envelope signed with a plain key: no certificate, no tlog entry, no timestamp. */
export function sigstoreBundle(env: DsseEnvelope, keyHint: string): Buffer {
  return canonicalBytes({ mediaType: SIGSTORE.bundle, verificationMaterial: { publicKey: { hint: keyHint } }, dsseEnvelope: env });
}

/**
 * The referrer manifest of a bundle, as cosign v3 writes it: artifactType the bundle's media type,
 * the empty config `{}`, the bundle as its one layer, `subject` the image manifest.
 */
async function bundleReferrer(store: Store, dir: string, subject: Descriptor, bundle: Buffer, predicateType: string, meta: ArtifactMeta): Promise<BlobInfo[]> {
  const config = await putBytes(store, dir, Buffer.from('{}'));
  const layer = await putBytes(store, dir, bundle);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    artifactType: SIGSTORE.bundle,
    config: { mediaType: MEDIA_TYPE.empty, digest: config.digest, size: config.size },
    layers: [{ mediaType: SIGSTORE.bundle, digest: layer.digest, size: layer.size }],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { [SIGSTORE.contentAnnotation]: 'dsse-envelope', [SIGSTORE.predicateTypeAnnotation]: predicateType, ...fairwayAnnotations(meta) },
  };
  return [config, layer, await putBytes(store, dir, canonicalBytes(manifest))];
}

/** A manifest of layers, as cosign writes signature and attestation manifests (one layer each, or one per attestation); annotated with the artifact it is about. */
async function oneLayerManifest(store: Store, dir: string, layer: Descriptor | Descriptor[], meta: ArtifactMeta): Promise<{ manifest: BlobInfo; config: BlobInfo }> {
  const layers = Array.isArray(layer) ? layer : [layer];
  const config = await putBytes(store, dir, canonicalBytes({ architecture: '', config: {}, created: IMAGE_CREATED, os: '', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) } }));
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: { mediaType: MEDIA_TYPE.config, digest: config.digest, size: config.size },
    layers,
    annotations: fairwayAnnotations(meta),
  };
  return { manifest: await putBytes(store, dir, canonicalBytes(manifest)), config };
}

async function publishSignatures(o: { store: Store; dir: string; rec: ImageRecord; meta: ArtifactMeta; signer: Signer; predicate?: SlsaProvenance; sbom?: unknown }): Promise<SignatureRecord> {
  const { store, dir, rec, meta, signer } = o;
  const blobs: BlobInfo[] = [];
  // .sig: the simple-signing payload, signed (ECDSA-SHA256 over the payload bytes).
  const payload = simpleSigningPayload(rec.manifestDigest, 'caddy/build');
  const payloadBlob = await putBytes(store, dir, payload);
  const sig = await oneLayerManifest(
    store,
    dir,
    { mediaType: COSIGN.simpleSigning, digest: payloadBlob.digest, size: payloadBlob.size, annotations: { [COSIGN.signatureAnnotation]: signer.sign(payload).toString('base64') } },
    meta,
  );
  blobs.push(payloadBlob, sig.config, sig.manifest);
  // .att: a DSSE envelope of an in-toto statement whose subject is the image manifest.
  const subject = [{ name: `caddy/build:${meta.key}`, digest: { sha256: rec.manifestDigest.slice(7) } }];
  // The signature as cosign v3 makes it: a bundle of an in-toto statement about the image.
  const image = rec.descriptor;
  const signStatement = canonicalBytes({ _type: STATEMENT_TYPE, subject: [{ digest: { sha256: rec.manifestDigest.slice(7) } }], predicateType: SIGSTORE.signPredicateType, predicate: {} });
  const signBundle = sigstoreBundle(envelope(IN_TOTO_PAYLOAD_TYPE, signStatement, signer), signer.fingerprint);
  const referrers: BlobInfo[] = [];
  const sigRef = await bundleReferrer(store, dir, image, signBundle, SIGSTORE.signPredicateType, meta);
  blobs.push(...sigRef);
  referrers.push(sigRef.at(-1)!);
  let att: { manifest: BlobInfo; config: BlobInfo } | undefined;
  // .att: one layer per attestation (the SLSA provenance, the SBOM), each also a bundle referrer.
  const attestations: Array<{ predicateType: string; env: DsseEnvelope }> = [];
  if (o.predicate) attestations.push({ predicateType: SLSA_PROVENANCE_V1, env: envelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(statement(subject, withBinary(o.predicate, meta))), signer) });
  if (o.sbom !== undefined) attestations.push({ predicateType: SPDX_DOCUMENT, env: envelope(IN_TOTO_PAYLOAD_TYPE, attestationBytes(subject, SPDX_DOCUMENT, o.sbom), signer) });
  const layers: Descriptor[] = [];
  for (const a of attestations) {
    const envBlob = await putBytes(store, dir, canonicalBytes(a.env));
    layers.push({ mediaType: COSIGN.dsse, digest: envBlob.digest, size: envBlob.size, annotations: { [COSIGN.signatureAnnotation]: '', predicateType: a.predicateType } });
    blobs.push(envBlob);
    const attRef = await bundleReferrer(store, dir, image, sigstoreBundle(a.env, signer.fingerprint), a.predicateType, meta);
    blobs.push(...attRef);
    referrers.push(attRef.at(-1)!);
  }
  if (layers.length) {
    att = await oneLayerManifest(store, dir, layers, meta);
    blobs.push(att.config, att.manifest);
  }
  const out: SignatureRecord = {
    key: meta.key,
    manifestDigest: rec.manifestDigest,
    sig: { digest: sig.manifest.digest, size: sig.manifest.size },
    ...(att ? { att: { digest: att.manifest.digest, size: att.manifest.size } } : {}),
    referrers: referrers.map((r) => ({ digest: r.digest, size: r.size, artifactType: SIGSTORE.bundle })),
    keyFingerprint: signer.fingerprint,
    blobs: dedupe(blobs),
  };
  await store.putRecord(SIGNATURES_NS, meta.key, out);
  return out;
}

/** The image's predicate: the build's, with the binary in the image among the resolved dependencies. */
function withBinary(p: SlsaProvenance, meta: ArtifactMeta): SlsaProvenance {
  const binary = { name: meta.filename, digest: { sha256: meta.sha256 ?? '' }, annotations: { role: 'binary', path: '/usr/bin/caddy' } };
  return { ...p, buildDefinition: { ...p.buildDefinition, resolvedDependencies: [binary, ...p.buildDefinition.resolvedDependencies] } };
}

function dedupe(b: BlobInfo[]): Array<{ digest: string; size: number }> {
  const seen = new Map<string, number>();
  for (const x of b) seen.set(x.digest, x.size);
  return [...seen].map(([digest, size]) => ({ digest, size }));
}
