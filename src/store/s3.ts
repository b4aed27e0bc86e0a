/**
 * S3 (or S3-compatible) store:
 *
 *   <prefix>artifacts/<key>/binary          the executable (multipart upload; x-amz-meta-sha256)
 *   <prefix>artifacts/<key>/build.log
 *   <prefix>artifacts/<key>/buildinfo.json
 *   <prefix>artifacts/<key>/provenance.json the DSSE envelope of the build's provenance (last but one)
 *   <prefix>artifacts/<key>/meta.json       written LAST: it is what makes the artifact exist
 *
 * S3 has no rename, so atomicity comes from ordering: put() uploads binary, log and build info
 * first and meta.json last; every read (getMeta, list, openBinary, getLog, getBuildInfo) only
 * considers keys whose meta.json exists; delete() removes meta.json first. A crashed agent can
 * leave parts without meta.json behind: they are invisible, and a retry overwrites them.
 *
 * Outside `artifacts/` (so list(), stats() and usage(), which list that prefix only, never see
 * them): blobs `<prefix>blobs/sha256/<hex>` (x-amz-meta-sha256, verified by a HeadObject after the
 * upload like a binary) and records `<prefix>records/<ns>/<name>.json` (one PutObject: atomic).
 * See docs/storage.md.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type _Object,
  type GetObjectCommandOutput,
  type HeadObjectCommandOutput,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { isCacheKey } from '../spec/index.js';
import { DebouncedTracker, usageOf } from './access.js';
import { assertRecordName, digestHex, hashFile, isRecordName, parseRecord, recordJson, verifyBlobFile } from './blobs.js';
import { assertKey } from './fs.js';
import type { AccessTracker, AccessTrackerOptions, ArtifactMeta, ArtifactStore, ArtifactUsage, BlobInfo, ByteRange, ListedBlob, ListOptions, PutArtifact, StoreStats, StoreUsage } from './types.js';
import { CorruptRecordError, NotFoundError, parseBuildInfo, parseMeta } from './types.js';

/** Names inside one artifact, in upload order (meta.json last). */
const PART_NAMES = ['binary', 'build.log', 'buildinfo.json', 'provenance.json'] as const;
type ObjectName = (typeof PART_NAMES)[number] | 'meta.json';

/** Longest expiry SigV4 allows for a presigned URL: 7 days. */
export const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
const MIN_PART_SIZE = 5 * 1024 * 1024;

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, e.g. "fairway/" (a trailing "/" is added). Default "". */
  prefix?: string;
  /** S3-compatible endpoint, e.g. http://127.0.0.1:9000. Default: AWS S3 for the region. */
  endpoint?: string;
  /** Default: AWS_REGION / AWS_DEFAULT_REGION, else "us-east-1" with a custom endpoint, else the SDK's chain. */
  region?: string;
  /** Path-style addressing (bucket in the path). Default: true with a custom endpoint, else false. */
  forcePathStyle?: boolean;
  /** Explicit credentials; default: the SDK's provider chain (env, ~/.aws, SSO, web identity, ECS/EC2 roles). */
  credentials?: S3Credentials;
  /** Seconds a presigned download URL stays valid; 0/undefined: binaryUrl() returns null (no redirects). */
  presign?: number;
  /** Multipart part size in bytes (min 5 MiB). Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded in parallel. Default 4. */
  queueSize?: number;
  /** Attempts per request, including the first. Default 3. */
  maxAttempts?: number;
  /** TCP connect timeout per attempt, ms. Default 5000. */
  connectionTimeoutMs?: number;
  /** Per attempt, time until the response headers (includes sending a part), ms. Default 60000. */
  requestTimeoutMs?: number;
  /** A socket idle for this long is dropped (also while streaming a download), ms. Default 60000. */
  socketTimeoutMs?: number;
  /** Small requests (meta, log, list, delete, ping): per-attempt limit, ms. Default 5000. */
  smallRequestTimeoutMs?: number;
  /** Small requests: limit across all attempts, ms. Default 15000. */
  operationTimeoutMs?: number;
  /** Parallel meta.json reads in list(). Default 16. */
  listConcurrency?: number;
  /** Use this client instead of creating one (not destroyed by close()). */
  client?: S3Client;
}

/** Builds one error message out of whatever the SDK or Node threw. */
export function describeS3Error(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; Code?: string; $metadata?: { httpStatusCode?: number }; errors?: unknown[] };
  if (e === null || typeof e !== 'object') return String(err);
  const parts: string[] = [];
  const message = e.message || (Array.isArray(e.errors) ? e.errors.map((x) => (x as Error).message).join('; ') : '');
  if (e.name && e.name !== 'Error' && !message.includes(e.name)) parts.push(`${e.name}:`);
  if (message) parts.push(message);
  const code = e.code ?? e.Code;
  if (code && !message.includes(code)) parts.push(`(${code})`);
  const status = e.$metadata?.httpStatusCode;
  if (status) parts.push(`[HTTP ${status}]`);
  return parts.join(' ') || 'unknown error';
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return httpStatus(err) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

/** Normalises a key prefix: "" or "a/b/"; refuses ".", ".." and empty segments. */
export function normalizePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const p = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '') return '';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') throw new Error(`invalid S3 prefix "${prefix}": empty, "." and ".." segments are not allowed`);
  }
  if (/[\x00-\x1f\x7f\\]/.test(p)) throw new Error(`invalid S3 prefix "${prefix}": control characters and "\\" are not allowed`);
  return `${p}/`;
}

const BUCKET_RE = /^(?!xn--)(?!.*-s3alias$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function assertBucketName(bucket: string): string {
  if (!BUCKET_RE.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    throw new Error(`invalid S3 bucket name "${bucket}": 3-63 characters, lowercase letters, digits, "." and "-", starting and ending with a letter or digit`);
  }
  return bucket;
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A quoted filename for Content-Disposition; anything odd becomes "_". */
function dispositionFor(filename: string): string {
  const safe = filename.replace(/[^A-Za-z0-9._+-]/g, '_').slice(0, 200) || 'caddy';
  return `attachment; filename="${safe}"`;
}

/** `<key>/<name>` (an object name below `<prefix>artifacts/`): its key and name; null for anything else. */
function splitArtifactName(rel: string): { key: string; name: string } | null {
  const slash = rel.indexOf('/');
  if (slash === -1) return null;
  const key = rel.slice(0, slash);
  return isCacheKey(key) ? { key, name: rel.slice(slash + 1) } : null;
}

/** What an S3AccessTracker needs from its store: one small object per key under one prefix. */
export interface S3AccessRecords {
  put(key: string, body: string): Promise<void>;
  /** Every record: its key and LastModified (one listing, no GET per key). */
  list(): AsyncIterable<{ key: string; time: number }>;
  delete(key: string): Promise<void>;
}

/** Last-download times as tiny objects `<prefix>access/<key>`; an object's LastModified is the time. */
export class S3AccessTracker extends DebouncedTracker {
  readonly kind = 's3';

  constructor(
    private readonly records: S3AccessRecords,
    opts?: AccessTrackerOptions,
  ) {
    super(opts);
  }

  protected async write(key: string, at: number): Promise<void> {
    await this.records.put(key, new Date(at).toISOString());
  }

  protected async readAll(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const r of this.records.list()) out.set(r.key, r.time);
    return out;
  }

  protected async remove(key: string): Promise<void> {
    await this.records.delete(key);
  }
}

class StepError extends Error {
  constructor(
    readonly step: ObjectName,
    readonly original: unknown,
  ) {
    super(describeS3Error(original));
  }
}

export class S3Store implements ArtifactStore {
  readonly kind = 's3';
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string | undefined;
  readonly presign: number;
  private readonly ownsClient: boolean;
  private readonly o: Required<Pick<S3StoreOptions, 'partSize' | 'queueSize' | 'smallRequestTimeoutMs' | 'operationTimeoutMs' | 'listConcurrency'>>;

  constructor(opts: S3StoreOptions) {
    this.bucket = assertBucketName(opts.bucket);
    this.prefix = normalizePrefix(opts.prefix);
    if (opts.endpoint !== undefined) {
      let u: URL;
      try {
        u = new URL(opts.endpoint);
      } catch {
        throw new Error(`invalid S3 endpoint "${opts.endpoint}": expected a URL like http://127.0.0.1:9000`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`invalid S3 endpoint "${opts.endpoint}": only http and https are supported`);
      if (u.username || u.password) throw new Error('invalid S3 endpoint: no credentials in the URL; use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws');
      this.endpoint = opts.endpoint.replace(/\/+$/, '');
    }
    const presign = opts.presign ?? 0;
    if (!Number.isInteger(presign) || presign < 0 || presign > MAX_PRESIGN_SECONDS) {
      throw new Error(`invalid S3 presign expiry ${presign}: whole seconds from 1 to ${MAX_PRESIGN_SECONDS} (7 days), or 0 for none`);
    }
    this.presign = presign;
    const partSize = opts.partSize ?? 8 * 1024 * 1024;
    if (!Number.isInteger(partSize) || partSize < MIN_PART_SIZE) throw new Error(`invalid S3 part size ${partSize}: at least ${MIN_PART_SIZE} bytes (5 MiB)`);
    this.o = {
      partSize,
      queueSize: Math.max(1, opts.queueSize ?? 4),
      smallRequestTimeoutMs: opts.smallRequestTimeoutMs ?? 5_000,
      operationTimeoutMs: opts.operationTimeoutMs ?? 15_000,
      listConcurrency: Math.max(1, opts.listConcurrency ?? 16),
    };
    if (opts.client) {
      this.client = opts.client;
      this.ownsClient = false;
    } else {
      const region = opts.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (this.endpoint ? 'us-east-1' : undefined);
      const config: S3ClientConfig = {
        ...(this.endpoint ? { endpoint: this.endpoint } : {}),
        ...(region ? { region } : {}),
        forcePathStyle: opts.forcePathStyle ?? this.endpoint !== undefined,
        ...(opts.credentials ? { credentials: opts.credentials } : {}),
        maxAttempts: opts.maxAttempts ?? 3,
        requestHandler: {
          connectionTimeout: opts.connectionTimeoutMs ?? 5_000,
          requestTimeout: opts.requestTimeoutMs ?? 60_000,
          throwOnRequestTimeout: true,
          socketTimeout: opts.socketTimeoutMs ?? 60_000,
        },
      };
      this.client = new S3Client(config);
      this.ownsClient = true;
    }
  }

  /** For messages: "<endpoint>/<bucket>", or "s3://<bucket>" on AWS. */
  get where(): string {
    return this.endpoint ? `${this.endpoint}/${this.bucket}` : `s3://${this.bucket}`;
  }

  private objectKey(key: string, name: ObjectName): string {
    return `${this.prefix}artifacts/${key}/${name}`;
  }

  private get artifactsPrefix(): string {
    return `${this.prefix}artifacts/`;
  }

  /**
   * Options for a small request: a per-attempt timeout and a limit across all retries.
   * Not for streamed downloads (the abort would cut the body).
   */
  private async small<T>(fn: (opts: { abortSignal: AbortSignal; requestTimeout: number }) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const ms = this.o.operationTimeoutMs;
    const timer = setTimeout(() => ac.abort(), ms);
    try {
      return await fn({ abortSignal: ac.signal, requestTimeout: this.o.smallRequestTimeoutMs });
    } catch (err) {
      if (ac.signal.aborted) throw Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError', cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async exists(key: string, name: ObjectName): Promise<boolean> {
    try {
      await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, name) }), o));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw this.readError(key, name, err);
    }
  }

  private async getText(key: string, name: ObjectName): Promise<string | null> {
    try {
      return await this.small(async (o) => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, name) }), o);
        return (await res.Body?.transformToString('utf8')) ?? '';
      });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.readError(key, name, err);
    }
  }

  private readError(key: string, name: string, err: unknown): Error {
    return new Error(`S3 read of ${key}/${name} from ${this.where} failed: ${describeS3Error(err)}`, { cause: err });
  }

  private async putSmall(key: string, name: ObjectName, body: string, contentType: string): Promise<void> {
    try {
      await this.small((o) => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, name), Body: body, ContentType: contentType }), o));
    } catch (err) {
      throw new StepError(name, err);
    }
  }

  private async deleteObject(key: string, name: ObjectName): Promise<void> {
    await this.small((o) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, name) }), o));
  }

  async put(a: PutArtifact): Promise<void> {
    const key = assertKey(a.meta.key);
    let local: { sha256: string; size: number } | undefined;
    if (a.binaryPath) {
      local = await hashFile(a.binaryPath);
      if (a.meta.sha256 !== undefined && a.meta.sha256 !== local.sha256) {
        throw new Error(`integrity check failed for ${key}: meta.sha256 is ${a.meta.sha256} but ${a.binaryPath} hashes to ${local.sha256}; the artifact was not published`);
      }
      if (a.meta.size !== undefined && a.meta.size !== local.size) {
        throw new Error(`integrity check failed for ${key}: meta.size is ${a.meta.size} but ${a.binaryPath} has ${local.size} bytes; the artifact was not published`);
      }
    }

    const metaJson = JSON.stringify(a.meta, null, 2);
    // Everything this attempt may have written, in order; meta.json last.
    const attempted: ObjectName[] = [];
    try {
      if (a.binaryPath && local) {
        attempted.push('binary');
        await this.uploadBinary(key, a.binaryPath, local);
      }
      attempted.push('build.log');
      await this.putSmall(key, 'build.log', a.log, 'text/plain; charset=utf-8');
      if (a.buildInfo !== undefined) {
        attempted.push('buildinfo.json');
        await this.putSmall(key, 'buildinfo.json', JSON.stringify(a.buildInfo, null, 2), 'application/json');
      }
      if (a.provenance !== undefined) {
        attempted.push('provenance.json');
        await this.putSmall(key, 'provenance.json', JSON.stringify(a.provenance, null, 2), 'application/json');
      }
      attempted.push('meta.json');
      await this.putSmall(key, 'meta.json', metaJson, 'application/json');
    } catch (err) {
      const outcome = await this.cleanupFailedPut(key, attempted, metaJson);
      if (outcome !== 'published') {
        const step = err instanceof StepError ? err.step : (attempted.at(-1) ?? 'binary');
        const detail = err instanceof StepError ? err.message : describeS3Error(err);
        throw new Error(`S3 upload of ${key}/${step} to ${this.where} failed: ${detail}; the artifact was not published`, {
          cause: err instanceof StepError ? err.original : err,
        });
      }
      // The meta.json PUT reported a failure but landed, after every part: the artifact is complete.
    }

    // Published. Objects of an earlier record that the new one does not have are now stale.
    const stale: ObjectName[] = [];
    if (!a.binaryPath) stale.push('binary');
    if (a.buildInfo === undefined) stale.push('buildinfo.json');
    if (a.provenance === undefined) stale.push('provenance.json');
    await Promise.all(stale.map((n) => this.deleteObject(key, n).catch(() => undefined)));
  }

  private async uploadBinary(key: string, path: string, local: { sha256: string; size: number }): Promise<void> {
    const Key = this.objectKey(key, 'binary');
    const body = createReadStream(path);
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body, ContentType: 'application/octet-stream', Metadata: { sha256: local.sha256 } },
        partSize: this.o.partSize,
        queueSize: this.o.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (err) {
      throw new StepError('binary', err);
    } finally {
      body.destroy();
    }
    // Integrity: what the bucket now holds must be what we hashed.
    let head: HeadObjectCommandOutput;
    try {
      head = await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), o));
    } catch (err) {
      throw new StepError('binary', err);
    }
    const remoteSha = head.Metadata?.sha256;
    if (head.ContentLength !== local.size || remoteSha !== local.sha256) {
      throw new StepError(
        'binary',
        new Error(`integrity check failed: the bucket holds ${head.ContentLength} bytes with sha256 ${remoteSha ?? '(none)'}, expected ${local.size} bytes with sha256 ${local.sha256}`),
      );
    }
  }

  /**
   * Best effort after a failed put(): removes what it may have written, without ever breaking the
   * record that is currently published. Returns 'published' when our own meta.json turns out to
   * have landed (a lost response): every part was uploaded before it, so the artifact is complete.
   */
  private async cleanupFailedPut(key: string, attempted: ObjectName[], metaJson: string): Promise<'published' | 'cleaned' | 'left'> {
    try {
      const current = await this.getText(key, 'meta.json');
      if (current !== null && current === metaJson && attempted.includes('meta.json')) return 'published';
      let previous: ArtifactMeta | null = null;
      try {
        previous = current === null ? null : (JSON.parse(current) as ArtifactMeta);
      } catch {
        previous = null; // corrupt: invisible to readers anyway
      }
      // What the published record (if any) refers to must stay.
      const keep = new Set<ObjectName>(previous ? (previous.status === 'succeeded' ? [...PART_NAMES] : ['build.log']) : []);
      const remove = attempted.filter((n) => n !== 'meta.json' && !keep.has(n));
      await Promise.all(remove.map((n) => this.deleteObject(key, n)));
      return 'cleaned';
    } catch {
      // The store is unreachable: the parts stay, invisible without meta.json, and are
      // overwritten by the next attempt.
      return 'left';
    }
  }

  private async getMetaStrict(key: string): Promise<ArtifactMeta | null> {
    const text = await this.getText(key, 'meta.json');
    if (text === null) return null;
    return parseMeta(key, text);
  }

  async getMeta(key: string): Promise<ArtifactMeta | null> {
    if (!isCacheKey(key)) return null;
    return this.getMetaStrict(key);
  }

  /** Every object under `prefix`, a page at a time (paginated ListObjectsV2, errors naming the store). */
  async *listPages(prefix: string): AsyncIterable<_Object[]> {
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.small((o) => this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }), o));
      } catch (err) {
        throw new Error(`S3 listing of ${prefix} in ${this.where} failed: ${describeS3Error(err)}`, { cause: err });
      }
      yield page.Contents ?? [];
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async *list(opts: ListOptions = {}): AsyncIterable<ArtifactMeta> {
    const base = this.artifactsPrefix;
    for await (const objects of this.listPages(base)) {
      const keys: string[] = [];
      for (const obj of objects) {
        const part = obj.Key?.startsWith(base) ? splitArtifactName(obj.Key.slice(base.length)) : null;
        if (part?.name === 'meta.json') keys.push(part.key);
      }
      const metas = await mapLimit(keys, this.o.listConcurrency, (k) =>
        this.getMetaStrict(k).catch((err: unknown) => {
          if (err instanceof CorruptRecordError) {
            opts.onCorrupt?.(k, err);
            return null;
          }
          throw err;
        }),
      );
      for (const meta of metas) if (meta) yield meta;
    }
  }

  /** Throws NotFoundError unless the artifact is published (meta.json exists). */
  private async assertPublished(key: string, what: string): Promise<void> {
    if (!(await this.exists(key, 'meta.json'))) throw new NotFoundError(what);
  }

  async hasBinary(key: string): Promise<boolean> {
    assertKey(key);
    return this.exists(key, 'binary');
  }

  async openBinary(key: string, range?: ByteRange): Promise<Readable> {
    assertKey(key);
    await this.assertPublished(key, `binary of ${key}`);
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, 'binary'), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }));
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`binary of ${key}`);
      throw this.readError(key, 'binary', err);
    }
    const body = res.Body;
    if (body instanceof Readable) return body;
    throw new Error(`S3 read of ${key}/binary from ${this.where} returned no body`);
  }

  async binaryUrl(key: string, filename: string): Promise<string | null> {
    assertKey(key);
    if (!this.presign) return null;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key, 'binary'), ResponseContentDisposition: dispositionFor(filename) }), {
      expiresIn: this.presign,
    });
  }

  private async readPublished(key: string, name: ObjectName): Promise<string | null> {
    assertKey(key);
    const [published, text] = await Promise.all([this.exists(key, 'meta.json'), this.getText(key, name)]);
    return published ? text : null;
  }

  async getLog(key: string): Promise<string | null> {
    return this.readPublished(key, 'build.log');
  }

  async getBuildInfo(key: string): Promise<unknown | null> {
    const text = await this.readPublished(key, 'buildinfo.json');
    return text === null ? null : parseBuildInfo(key, text);
  }

  async getProvenance(key: string): Promise<unknown | null> {
    const text = await this.readPublished(key, 'provenance.json');
    return text === null ? null : parseBuildInfo(key, text, 'provenance.json');
  }

  async delete(key: string): Promise<void> {
    assertKey(key);
    try {
      // meta.json first: the artifact disappears for readers in one step.
      await this.deleteObject(key, 'meta.json');
      await Promise.all(PART_NAMES.map((n) => this.deleteObject(key, n)));
    } catch (err) {
      throw new Error(`S3 delete of ${key} in ${this.where} failed: ${describeS3Error(err)}`, { cause: err });
    }
  }

  /**
   * Copies the parts that are there to `<prefix>quarantine/<key>-<time>/<name>` (best effort: kept
   * for inspection; a missing binary is simply not copied), then deletes the artifact (meta.json
   * first, as delete()).
   */
  async quarantine(key: string): Promise<void> {
    assertKey(key);
    const base = `${this.prefix}quarantine/${key}-${Date.now()}/`;
    await Promise.all(
      (['meta.json', ...PART_NAMES] as ObjectName[]).map((name) =>
        this.small((o) => this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: base + name, CopySource: encodeURI(`${this.bucket}/${this.objectKey(key, name)}`) }), o)).catch(
          () => undefined,
        ),
      ),
    );
    await this.delete(key);
  }

  /** bytes: every object under `<prefix>artifacts/` (also orphaned parts); objects: published artifacts. */
  async stats(): Promise<StoreStats> {
    let objects = 0;
    let bytes = 0;
    const base = this.artifactsPrefix;
    for await (const page of this.listPages(base)) {
      for (const obj of page) {
        bytes += obj.Size ?? 0;
        if (obj.Key && splitArtifactName(obj.Key.slice(base.length))?.name === 'meta.json') objects++;
      }
    }
    return { objects, bytes };
  }

  /** One listing of `<prefix>artifacts/`: the sizes of each key's objects. */
  async usage(): Promise<StoreUsage> {
    const entries = new Map<string, ArtifactUsage>();
    const base = this.artifactsPrefix;
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const part = splitArtifactName(o.Key?.slice(base.length) ?? '');
        if (!part) continue;
        const e = entries.get(part.key) ?? { bytes: 0, published: false };
        e.bytes += o.Size ?? 0;
        if (part.name === 'meta.json') e.published = true;
        entries.set(part.key, e);
      }
    }
    return usageOf(entries);
  }

  /** Records as tiny objects `<prefix>access/<key>` (outside `artifacts/`). */
  accessTracker(opts?: AccessTrackerOptions): AccessTracker {
    const base = `${this.prefix}access/`;
    return new S3AccessTracker(
      {
        put: async (key, body) => {
          await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: base + key, Body: body, ContentType: 'text/plain' }), {
            abortSignal: AbortSignal.timeout(15_000),
          });
        },
        list: () => this.listAccessRecords(base),
        delete: async (key) => {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: base + key }), { abortSignal: AbortSignal.timeout(15_000) });
        },
      },
      opts,
    );
  }

  private async *listAccessRecords(base: string): AsyncIterable<{ key: string; time: number }> {
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const key = o.Key?.slice(base.length) ?? '';
        if (isCacheKey(key) && o.LastModified) yield { key, time: o.LastModified.getTime() };
      }
    }
  }

  // --- blobs: <prefix>blobs/sha256/<hex> ---

  private get blobsPrefix(): string {
    return `${this.prefix}blobs/sha256/`;
  }

  /** The object key of a blob; throws an InvalidDigestError for anything but `sha256:<64 hex>`. */
  private blobKey(digest: string): string {
    return this.blobsPrefix + digestHex(digest);
  }

  private blobError(op: string, digest: string, err: unknown): Error {
    return new Error(`S3 ${op} of blob ${digest} in ${this.where} failed: ${describeS3Error(err)}`, { cause: err });
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
    const body = createReadStream(path);
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body, ContentType: 'application/octet-stream', Metadata: { sha256: hex } },
        partSize: this.o.partSize,
        queueSize: this.o.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } catch (err) {
      throw this.blobError('upload', digest, err);
    } finally {
      body.destroy();
    }
    let head: HeadObjectCommandOutput;
    try {
      head = await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), o));
    } catch (err) {
      throw this.blobError('upload (verify)', digest, err);
    }
    const remoteSha = head.Metadata?.sha256;
    if (head.ContentLength !== size || remoteSha !== hex) {
      await this.small((o) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), o)).catch(() => undefined);
      throw new Error(
        `S3 upload of blob ${digest} to ${this.where} failed the integrity check: the bucket held ${head.ContentLength} bytes with sha256 ${remoteSha ?? '(none)'}, expected ${size} bytes; the blob was not published`,
      );
    }
    return { digest, size };
  }

  async statBlob(digest: string): Promise<BlobInfo | null> {
    const Key = this.blobKey(digest);
    try {
      const head = await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), o));
      return { digest, size: head.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.blobError('stat', digest, err);
    }
  }

  async openBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const Key = this.blobKey(digest);
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }));
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`blob ${digest}`);
      throw this.blobError('read', digest, err);
    }
    const body = res.Body;
    if (body instanceof Readable) return body;
    throw new Error(`S3 read of blob ${digest} from ${this.where} returned no body`);
  }

  /** A presigned GET of the blob when `presign` is set; null otherwise. */
  async blobUrl(digest: string): Promise<string | null> {
    const Key = this.blobKey(digest);
    if (!this.presign) return null;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key }), { expiresIn: this.presign });
  }

  async deleteBlob(digest: string): Promise<void> {
    const Key = this.blobKey(digest);
    try {
      await this.small((o) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), o));
    } catch (err) {
      if (!isNotFound(err)) throw this.blobError('delete', digest, err);
    }
  }

  /** One listing of `<prefix>blobs/sha256/` (sizes from the listing, no HeadObject per blob). */
  async *listBlobs(): AsyncIterable<ListedBlob> {
    const base = this.blobsPrefix;
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const hex = o.Key?.startsWith(base) ? o.Key.slice(base.length) : '';
        // Without a LastModified (S3 always sends one) the blob counts as new: never collected on a guess.
        if (/^[0-9a-f]{64}$/.test(hex)) yield { digest: `sha256:${hex}`, size: o.Size ?? 0, modifiedAt: o.LastModified?.getTime() ?? Date.now() };
      }
    }
  }

  // --- records: <prefix>records/<ns>/<name>.json ---

  private recordKey(ns: string, name: string): string {
    assertRecordName(ns, name);
    return `${this.prefix}records/${ns}/${name}.json`;
  }

  private recordError(op: string, ns: string, name: string, err: unknown): Error {
    return new Error(`S3 ${op} of record ${ns}/${name} in ${this.where} failed: ${describeS3Error(err)}`, { cause: err });
  }

  /** One PutObject: readers see the old document or the new one. */
  async putRecord(ns: string, name: string, value: unknown): Promise<void> {
    const Key = this.recordKey(ns, name);
    const body = recordJson(ns, name, value);
    try {
      await this.small((o) => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentType: 'application/json' }), o));
    } catch (err) {
      throw this.recordError('write', ns, name, err);
    }
  }

  async getRecord(ns: string, name: string): Promise<unknown | null> {
    const Key = this.recordKey(ns, name);
    let text: string;
    try {
      text = await this.small(async (o) => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }), o);
        return (await res.Body?.transformToString('utf8')) ?? '';
      });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.recordError('read', ns, name, err);
    }
    return parseRecord(ns, name, text);
  }

  async listRecords(ns: string): Promise<string[]> {
    assertRecordName(ns);
    const base = `${this.prefix}records/${ns}/`;
    const names: string[] = [];
    for await (const page of this.listPages(base)) {
      for (const o of page) {
        const rel = o.Key?.startsWith(base) ? o.Key.slice(base.length) : '';
        if (!rel.endsWith('.json')) continue;
        const name = rel.slice(0, -'.json'.length);
        if (isRecordName(name)) names.push(name);
      }
    }
    return names.sort();
  }

  async deleteRecord(ns: string, name: string): Promise<void> {
    const Key = this.recordKey(ns, name);
    try {
      await this.small((o) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), o));
    } catch (err) {
      if (!isNotFound(err)) throw this.recordError('delete', ns, name, err);
    }
  }

  /** A bucket has no free space to speak of. */
  async freeBytes(): Promise<null> {
    return null;
  }

  async ping(): Promise<void> {
    try {
      await this.small((o) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), o));
    } catch (err) {
      const status = httpStatus(err);
      const hint = status === 404 ? ' (no such bucket)' : status === 403 ? ' (access denied: check the credentials)' : status === 301 ? ' (wrong region?)' : '';
      throw new Error(`S3 bucket ${this.where} is not reachable${hint}: ${describeS3Error(err)}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.destroy();
  }
}
