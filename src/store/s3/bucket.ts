/**
 * One S3 bucket and key prefix: the client, its timeouts and the few operations every area of the
 * store (artifacts, blobs, records, access times) is made of. Errors name the store (`where`).
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type _Object,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { ByteRange } from '../types.js';

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

export function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

export function isNotFound(err: unknown): boolean {
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

export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
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

/**
 * The connection to one bucket under one prefix. Small requests (`small`) get a per-attempt timeout
 * and a limit across retries; streamed downloads do not (the abort would cut the body).
 */
export class S3Bucket {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string | undefined;
  readonly presign: number;
  readonly partSize: number;
  readonly queueSize: number;
  readonly listConcurrency: number;
  private readonly ownsClient: boolean;
  private readonly smallRequestTimeoutMs: number;
  private readonly operationTimeoutMs: number;

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
    this.partSize = partSize;
    this.queueSize = Math.max(1, opts.queueSize ?? 4);
    this.smallRequestTimeoutMs = opts.smallRequestTimeoutMs ?? 5_000;
    this.operationTimeoutMs = opts.operationTimeoutMs ?? 15_000;
    this.listConcurrency = Math.max(1, opts.listConcurrency ?? 16);
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

  /**
   * Options for a small request: a per-attempt timeout and a limit across all retries.
   * Not for streamed downloads (the abort would cut the body).
   */
  async small<T>(fn: (opts: { abortSignal: AbortSignal; requestTimeout: number }) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    const ms = this.operationTimeoutMs;
    const timer = setTimeout(() => ac.abort(), ms);
    try {
      return await fn({ abortSignal: ac.signal, requestTimeout: this.smallRequestTimeoutMs });
    } catch (err) {
      if (ac.signal.aborted) throw Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError', cause: err });
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** HeadObject: the object's metadata, or null when there is none. Other errors are thrown as the SDK's. */
  async head(Key: string): Promise<HeadObjectCommandOutput | null> {
    try {
      return await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), o));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** The object as text, or null when there is none. */
  async getText(Key: string): Promise<string | null> {
    try {
      return await this.small(async (o) => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }), o);
        return (await res.Body?.transformToString('utf8')) ?? '';
      });
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** One PutObject of a small body: readers see the old object or the new one. */
  async putText(Key: string, body: string, contentType: string): Promise<void> {
    await this.small((o) => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentType: contentType }), o));
  }

  /** DeleteObject (S3 answers a missing object like a deleted one). */
  async delete(Key: string): Promise<void> {
    await this.small((o) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), o));
  }

  /** A streamed GetObject (no overall timeout), or null when there is none. */
  async open(Key: string, range?: ByteRange): Promise<Readable | null> {
    let body: unknown;
    try {
      body = (await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }))).Body;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    if (body instanceof Readable) return body;
    throw new Error(`S3 read of ${Key} from ${this.where} returned no body`);
  }

  /** A presigned GET when `presign` is set; null otherwise. */
  async presignedGet(Key: string, contentDisposition?: string): Promise<string | null> {
    if (!this.presign) return null;
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key, ...(contentDisposition ? { ResponseContentDisposition: contentDisposition } : {}) }), {
      expiresIn: this.presign,
    });
  }

  /**
   * Uploads a file (multipart) with `x-amz-meta-sha256`, then checks with a HeadObject that the
   * bucket holds those bytes: returns null when it does, else what it holds (the caller decides).
   */
  async upload(Key: string, path: string, local: { sha256: string; size: number }): Promise<string | null> {
    const body = createReadStream(path);
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: body, ContentType: 'application/octet-stream', Metadata: { sha256: local.sha256 } },
        partSize: this.partSize,
        queueSize: this.queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } finally {
      body.destroy();
    }
    const head = await this.small((o) => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }), o));
    const remoteSha = head.Metadata?.sha256;
    if (head.ContentLength === local.size && remoteSha === local.sha256) return null;
    return `the bucket holds ${head.ContentLength} bytes with sha256 ${remoteSha ?? '(none)'}, expected ${local.size} bytes with sha256 ${local.sha256}`;
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

  async ping(): Promise<void> {
    try {
      await this.small((o) => this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), o));
    } catch (err) {
      const status = httpStatus(err);
      const hint = status === 404 ? ' (no such bucket)' : status === 403 ? ' (access denied: check the credentials)' : status === 301 ? ' (wrong region?)' : '';
      throw new Error(`S3 bucket ${this.where} is not reachable${hint}: ${describeS3Error(err)}`, { cause: err });
    }
  }

  close(): void {
    if (this.ownsClient) this.client.destroy();
  }
}
