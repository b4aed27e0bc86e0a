/**
 * The blobs area of an S3 store: `<prefix>blobs/sha256/<hex>` (x-amz-meta-sha256, verified by a
 * HeadObject after the upload like a binary). Outside `artifacts/`, so artifact listings never see them.
 */
import type { Readable } from 'node:stream';
import { digestHex, verifyBlobFile } from '../blobs.js';
import type { BlobInfo, ByteRange, ListedBlob } from '../types.js';
import { NotFoundError } from '../types.js';
import { type S3Bucket, describeS3Error, isNotFound } from './bucket.js';

export class S3Blobs {
  constructor(private readonly b: S3Bucket) {}

  private get base(): string {
    return `${this.b.prefix}blobs/sha256/`;
  }

  /** The object key of a blob; throws an InvalidDigestError for anything but `sha256:<64 hex>`. */
  private blobKey(digest: string): string {
    return this.base + digestHex(digest);
  }

  private blobError(op: string, digest: string, err: unknown): Error {
    return new Error(`S3 ${op} of blob ${digest} in ${this.b.where} failed: ${describeS3Error(err)}`, { cause: err });
  }

  /**
   * Hashes the file first (a mismatch uploads nothing), then uploads it with x-amz-meta-sha256 and
   * checks with a HeadObject that the bucket holds those bytes; an object that fails the check is
   * deleted again.
   */
  async putBlob(digest: string, path: string): Promise<BlobInfo> {
    const Key = this.blobKey(digest);
    const { hex, size } = await verifyBlobFile(digest, path);
    const existing = await this.statBlob(digest);
    if (existing) return existing;
    let mismatch: string | null;
    try {
      mismatch = await this.b.upload(Key, path, { sha256: hex, size });
    } catch (err) {
      throw this.blobError('upload', digest, err);
    }
    if (mismatch) {
      await this.b.delete(Key).catch(() => undefined);
      throw new Error(`S3 upload of blob ${digest} to ${this.b.where} failed the integrity check: ${mismatch}; the blob was not published`);
    }
    return { digest, size };
  }

  async statBlob(digest: string): Promise<BlobInfo | null> {
    const Key = this.blobKey(digest);
    try {
      const head = await this.b.head(Key);
      return head ? { digest, size: head.ContentLength ?? 0 } : null;
    } catch (err) {
      throw this.blobError('stat', digest, err);
    }
  }

  async openBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const Key = this.blobKey(digest);
    let body: Readable | null;
    try {
      body = await this.b.open(Key, range);
    } catch (err) {
      throw this.blobError('read', digest, err);
    }
    if (!body) throw new NotFoundError(`blob ${digest}`);
    return body;
  }

  /** A presigned GET of the blob when `presign` is set; null otherwise. */
  async blobUrl(digest: string): Promise<string | null> {
    return this.b.presignedGet(this.blobKey(digest));
  }

  async deleteBlob(digest: string): Promise<void> {
    const Key = this.blobKey(digest);
    try {
      await this.b.delete(Key);
    } catch (err) {
      if (!isNotFound(err)) throw this.blobError('delete', digest, err);
    }
  }

  /** One listing of `<prefix>blobs/sha256/` (sizes from the listing, no HeadObject per blob). */
  async *listBlobs(): AsyncIterable<ListedBlob> {
    const base = this.base;
    for await (const page of this.b.listPages(base)) {
      for (const o of page) {
        const hex = o.Key?.startsWith(base) ? o.Key.slice(base.length) : '';
        // Without a LastModified (S3 always sends one) the blob counts as new: never collected on a guess.
        if (/^[0-9a-f]{64}$/.test(hex)) yield { digest: `sha256:${hex}`, size: o.Size ?? 0, modifiedAt: o.LastModified?.getTime() ?? Date.now() };
      }
    }
  }
}
