/**
 * S3 (or S3-compatible) store: one bucket and prefix (bucket.ts) holding four areas, each its own
 * module: artifacts (`<prefix>artifacts/<key>/…`, meta.json written last: artifacts.ts), blobs
 * (`<prefix>blobs/sha256/<hex>`: blobs.ts), records (`<prefix>records/<ns>/<name>.json`:
 * records.ts) and last-download times (`<prefix>access/<key>`: access.ts). The listings of
 * artifacts (list, stats, usage) see `artifacts/` only. See docs/storage.md.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import type { AccessTracker, AccessTrackerOptions, ArtifactMeta, ArtifactStore, BlobInfo, ByteRange, ListedBlob, ListOptions, PutArtifact, StoreStats, StoreUsage } from '../types.js';
import { S3AccessTracker, s3AccessRecords } from './access.js';
import { S3Artifacts } from './artifacts.js';
import { S3Blobs } from './blobs.js';
import { S3Bucket, type S3StoreOptions } from './bucket.js';
import { S3Records } from './records.js';

export { MAX_PRESIGN_SECONDS, assertBucketName, describeS3Error, normalizePrefix, type S3Credentials, type S3StoreOptions } from './bucket.js';

export class S3Store implements ArtifactStore {
  readonly kind = 's3';
  private readonly b: S3Bucket;
  private readonly artifacts: S3Artifacts;
  private readonly blobs: S3Blobs;
  private readonly records: S3Records;

  constructor(opts: S3StoreOptions) {
    this.b = new S3Bucket(opts);
    this.artifacts = new S3Artifacts(this.b);
    this.blobs = new S3Blobs(this.b);
    this.records = new S3Records(this.b);
  }

  get client(): S3Client {
    return this.b.client;
  }
  get bucket(): string {
    return this.b.bucket;
  }
  get prefix(): string {
    return this.b.prefix;
  }
  get endpoint(): string | undefined {
    return this.b.endpoint;
  }
  get presign(): number {
    return this.b.presign;
  }
  /** For messages: "<endpoint>/<bucket>", or "s3://<bucket>" on AWS. */
  get where(): string {
    return this.b.where;
  }

  put(a: PutArtifact): Promise<void> {
    return this.artifacts.put(a);
  }
  getMeta(key: string): Promise<ArtifactMeta | null> {
    return this.artifacts.getMeta(key);
  }
  list(opts?: ListOptions): AsyncIterable<ArtifactMeta> {
    return this.artifacts.list(opts);
  }
  hasBinary(key: string): Promise<boolean> {
    return this.artifacts.hasBinary(key);
  }
  openBinary(key: string, range?: ByteRange): Promise<Readable> {
    return this.artifacts.openBinary(key, range);
  }
  binaryUrl(key: string, filename: string): Promise<string | null> {
    return this.artifacts.binaryUrl(key, filename);
  }
  getLog(key: string): Promise<string | null> {
    return this.artifacts.getLog(key);
  }
  getBuildInfo(key: string): Promise<unknown | null> {
    return this.artifacts.getBuildInfo(key);
  }
  getProvenance(key: string): Promise<unknown | null> {
    return this.artifacts.getProvenance(key);
  }
  getSbom(key: string): Promise<unknown | null> {
    return this.artifacts.getSbom(key);
  }
  delete(key: string): Promise<void> {
    return this.artifacts.delete(key);
  }
  quarantine(key: string): Promise<void> {
    return this.artifacts.quarantine(key);
  }
  stats(): Promise<StoreStats> {
    return this.artifacts.stats();
  }
  usage(): Promise<StoreUsage> {
    return this.artifacts.usage();
  }

  accessTracker(opts?: AccessTrackerOptions): AccessTracker {
    return new S3AccessTracker(s3AccessRecords(this.b), opts);
  }

  putBlob(digest: string, path: string): Promise<BlobInfo> {
    return this.blobs.putBlob(digest, path);
  }
  statBlob(digest: string): Promise<BlobInfo | null> {
    return this.blobs.statBlob(digest);
  }
  openBlob(digest: string, range?: ByteRange): Promise<Readable> {
    return this.blobs.openBlob(digest, range);
  }
  blobUrl(digest: string): Promise<string | null> {
    return this.blobs.blobUrl(digest);
  }
  deleteBlob(digest: string): Promise<void> {
    return this.blobs.deleteBlob(digest);
  }
  listBlobs(): AsyncIterable<ListedBlob> {
    return this.blobs.listBlobs();
  }

  putRecord(ns: string, name: string, value: unknown): Promise<void> {
    return this.records.putRecord(ns, name, value);
  }
  getRecord(ns: string, name: string): Promise<unknown | null> {
    return this.records.getRecord(ns, name);
  }
  listRecords(ns: string): Promise<string[]> {
    return this.records.listRecords(ns);
  }
  deleteRecord(ns: string, name: string): Promise<void> {
    return this.records.deleteRecord(ns, name);
  }

  /** A bucket has no free space to speak of. */
  async freeBytes(): Promise<null> {
    return null;
  }
  ping(): Promise<void> {
    return this.b.ping();
  }
  async close(): Promise<void> {
    this.b.close();
  }
}
