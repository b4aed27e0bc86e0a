/**
 * The image of an artifact (docs/registry.md): its stored record when every blob it names is in
 * the store, else made now from the binary (once per key in this process), and signed only when
 * this server verified that it built these bytes (its own signed provenance).
 */
import type { KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { attestedSbom, publicKeyFromPem, verifyProvenance, type Signer, type SlsaProvenance } from '../provenance/index.js';
import type { BuildService } from '../service/index.js';
import type { ArtifactMeta, ArtifactStore } from '../store/index.js';
import { errorMessage } from '../util/errors.js';
import { IMAGES_NS, publishImage, type ImageRecord } from './images.js';

export interface ImageMakerOptions {
  service: Pick<BuildService, 'artifact'>;
  store: ArtifactStore;
  /** Signs the images this process makes (serve); absent: unsigned. */
  signer?: Signer | undefined;
  /** Where images are made before their blobs go into the store; default the OS temp dir. */
  tmpDir?: string | undefined;
  log: Logger;
}

export class ImageMaker {
  /** Images being made, by artifact key: one make per key in this process. */
  private readonly making = new Map<string, Promise<ImageRecord>>();
  /** This server's public key, for checking stored provenance before its image is signed. */
  private publicKey: KeyObject | undefined;

  constructor(private readonly o: ImageMakerOptions) {}

  /** The image of an artifact: its record when its blobs are all there, else made now (once per key in this process). */
  async image(meta: ArtifactMeta): Promise<ImageRecord> {
    const have = await this.storedImage(meta.key);
    if (have) return have;
    let p = this.making.get(meta.key);
    if (!p) {
      p = this.makeImage(meta).finally(() => this.making.delete(meta.key));
      this.making.set(meta.key, p);
    }
    return p;
  }

  /**
   * The image record of `key` when every blob it names is in the store (one stat each), checked on
   * every tag request: a blob deleted as corrupt by any hub makes the image again at the next pull.
   */
  private async storedImage(key: string): Promise<ImageRecord | null> {
    const rec = (await this.o.store.getRecord(IMAGES_NS, key)) as ImageRecord | null;
    if (!rec || typeof rec.manifestDigest !== 'string' || !Array.isArray(rec.blobs)) return null;
    for (const b of rec.blobs) {
      const info = await this.o.store.statBlob(b.digest);
      if (!info || info.size !== b.size) {
        this.o.log.warn({ key, digest: b.digest }, 'a blob of a stored image is missing: making the image again');
        return null;
      }
    }
    return rec;
  }

  private async makeImage(meta: ArtifactMeta): Promise<ImageRecord> {
    const base = this.o.tmpDir ?? tmpdir();
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(join(base, 'fairway-image-'));
    try {
      const binaryPath = join(dir, 'caddy');
      const a = await this.o.service.artifact(meta.key);
      await pipeline((await a.open()) as Readable, createWriteStream(binaryPath, { mode: 0o755 }));
      // Signed only when this server verified that it built these bytes: the build's stored
      // provenance verifies with its key (and is about this binary and this build); the
      // attestation then carries that statement's predicate. Anything else is made unsigned.
      let signer = this.o.signer;
      let predicate: SlsaProvenance | undefined;
      let sbom: unknown;
      if (signer) {
        const v = await this.verifiedPredicate(meta, signer);
        if ('predicate' in v) {
          predicate = v.predicate;
          sbom = await this.verifiedSbom(meta);
        } else {
          this.o.log.warn(
            { key: meta.key, reason: v.refused },
            `not signing the image of build ${meta.key}: ${v.refused}. This server signs only what it verified it built (its own signed provenance); the image is served unsigned, without an attestation. If the store was changed, or this build was made by another builder or under another key, request a new build`,
          );
          signer = undefined;
        }
      }
      return await publishImage({ store: this.o.store, binaryPath, meta, tmpDir: dir, logger: this.o.log, ...(signer ? { signer } : {}), ...(predicate ? { predicate } : {}), sbom });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * The predicate of a build's stored provenance when its DSSE envelope verifies with this
   * server's key and its statement is about this artifact (the binary's sha256, the build's key as
   * the invocation); otherwise why not. The store is not trusted: whoever can write to it could
   * put any statement there, and this server re-signs only its own.
   */
  private async verifiedPredicate(meta: ArtifactMeta, signer: Signer): Promise<{ predicate: SlsaProvenance } | { refused: string }> {
    let env: unknown;
    try {
      env = await this.o.store.getProvenance(meta.key);
    } catch (err) {
      return { refused: `its provenance cannot be read (${errorMessage(err)})` };
    }
    if (!env) return { refused: 'it has no provenance in the store (built before provenance existed, or it was removed)' };
    if (typeof meta.sha256 !== 'string') return { refused: 'its record has no sha256' };
    try {
      this.publicKey ??= publicKeyFromPem(signer.publicKeyPem);
      const { statement } = verifyProvenance(env, this.publicKey, meta.sha256);
      const invocation = statement.predicate?.runDetails?.metadata?.invocationId;
      if (invocation !== meta.key) return { refused: `its provenance is about build ${JSON.stringify(invocation).slice(0, 80)}, not ${meta.key}` };
      return { predicate: statement.predicate };
    } catch (err) {
      return { refused: `its provenance does not verify with this server's key ${signer.fingerprint.slice(0, 16)}: ${errorMessage(err)}` };
    }
  }

  /**
   * The SPDX document of a build's stored SBOM attestation when it verifies with this server's key
   * and is about this binary (checked after its provenance verified); otherwise none, logged: the
   * image is then attested without an SBOM (docs/sbom.md).
   */
  private async verifiedSbom(meta: ArtifactMeta): Promise<unknown> {
    try {
      const env = await this.o.store.getSbom(meta.key);
      if (env === null) return undefined;
      return attestedSbom(env, meta.sha256 ?? '', this.publicKey);
    } catch (err) {
      this.o.log.warn({ key: meta.key, reason: errorMessage(err) }, `not attesting the SBOM of build ${meta.key} on its image: ${errorMessage(err)}`);
      return undefined;
    }
  }
}
