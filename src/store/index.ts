export { CorruptRecordError } from './types.js';
export type { ArtifactMeta, ByteRange, StoreStats, StoreUsage, AccessTracker, BlobInfo, ListedBlob, BlobStore, RecordStore, ArtifactStore } from './types.js';
export { FsStore } from './fs.js';

import { isAbsolute, join, resolve } from 'node:path';
import { FsStore } from './fs.js';
import { MAX_PRESIGN_SECONDS, S3Store, assertBucketName, normalizePrefix, type S3Credentials, type S3StoreOptions } from './s3/index.js';

export type StoreSpec = { kind: 'fs'; root: string } | { kind: 's3'; options: S3StoreOptions };

export interface OpenStoreOptions {
  /** Base directory of a relative fs path (`--store artifacts` -> `<dataDir>/artifacts`). Default: process.cwd(). */
  dataDir?: string;
  /** Explicit S3 credentials (tests); default: the AWS SDK's provider chain. Never in the URL. */
  credentials?: S3Credentials;
  /** Programmatic S3 settings (timeouts, part size, an injected client), merged over the URL's. */
  s3?: Partial<Omit<S3StoreOptions, 'bucket' | 'prefix'>>;
  /** ping() the store before returning it, so a wrong URL fails at start. Default false. */
  ping?: boolean;
  /**
   * A named area of the store, kept apart from its artifacts: fs `<root>/<area>`, S3
   * `<prefix><area>/` (the fleet's shared Go cache is the area `gocache`).
   */
  area?: string;
}

const S3_PARAMS = ['endpoint', 'region', 'forcePathStyle', 'presign', 'redirect'] as const;
const SYNTAX = 'use an absolute or relative path, fs:///absolute/path, or s3://bucket/prefix?endpoint=...&region=...&forcePathStyle=true&presign=3600';

function bool(name: string, v: string): boolean {
  if (/^(true|1|yes|on)$/i.test(v)) return true;
  if (/^(false|0|no|off)$/i.test(v)) return false;
  throw new Error(`invalid store URL: ${name}=${v} must be true or false`);
}

function presignSeconds(name: string, v: string): number {
  if (/^(false|no|off)$/i.test(v)) return 0;
  if (!/^\d+$/.test(v) || Number(v) > MAX_PRESIGN_SECONDS) {
    throw new Error(`invalid store URL: ${name}=${v} must be the expiry of presigned URLs in whole seconds (1-${MAX_PRESIGN_SECONDS}), or 0/false for none`);
  }
  return Number(v);
}

/**
 * Parses a store URL without touching the store (for config validation).
 *   /var/lib/fairway/artifacts, ./artifacts, fs:///var/lib/fairway/artifacts   -> fs
 *   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true&presign=3600 -> s3
 */
export function parseStoreUrl(spec: string, opts: Pick<OpenStoreOptions, 'dataDir'> = {}): StoreSpec {
  const s = spec.trim();
  if (s === '') throw new Error(`empty store URL: ${SYNTAX}`);
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):/.exec(s)?.[1]?.toLowerCase();
  // A plain path (a one-letter "scheme" would be a Windows drive).
  if (!scheme || scheme.length === 1 || !s.slice(scheme.length + 1).startsWith('//')) {
    if (scheme && ['fs', 'file', 's3', 'http', 'https'].includes(scheme)) throw new Error(`invalid store URL "${s}": ${scheme}: needs "//"; ${SYNTAX}`);
    return { kind: 'fs', root: resolve(opts.dataDir ?? process.cwd(), s) };
  }
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new Error(`invalid store URL "${s}": ${SYNTAX}`);
  }
  if (url.username || url.password) {
    throw new Error('invalid store URL: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance/pod role');
  }
  if (scheme === 'fs' || scheme === 'file') {
    if (url.host) throw new Error(`invalid store URL "${s}": ${scheme}: URLs take an absolute path with an empty host, e.g. fs:///var/lib/fairway/artifacts`);
    if (url.search || url.hash) throw new Error(`invalid store URL "${s}": ${scheme}: URLs take no query or fragment`);
    const root = decodeURIComponent(url.pathname);
    if (!isAbsolute(root) || root === '/') throw new Error(`invalid store URL "${s}": the path must be absolute and not "/"`);
    return { kind: 'fs', root: resolve(root) };
  }
  if (scheme !== 's3') throw new Error(`unsupported store URL scheme "${scheme}:": ${SYNTAX}`);
  const bucket = decodeURIComponent(url.hostname);
  if (!bucket) throw new Error(`invalid store URL "${s}": missing bucket (s3://bucket/prefix)`);
  if (url.port) throw new Error(`invalid store URL "${s}": s3://bucket takes no port; put the server in ?endpoint=http://host:port`);
  if (url.hash) throw new Error(`invalid store URL "${s}": no fragment allowed`);
  assertBucketName(bucket);
  // The raw path: URL parsing would silently resolve "a/../b".
  const rawPath = /^s3:\/\/[^/?#]*([^?#]*)/i.exec(s)?.[1] ?? '';
  let prefix: string;
  try {
    prefix = normalizePrefix(decodeURIComponent(rawPath));
  } catch (err) {
    if (err instanceof URIError) throw new Error(`invalid store URL "${s}": bad percent-encoding in the prefix`);
    throw err;
  }
  const options: S3StoreOptions = { bucket, prefix };
  const seen = new Set<string>();
  for (const [name, value] of url.searchParams) {
    if (!(S3_PARAMS as readonly string[]).includes(name)) {
      throw new Error(`invalid store URL: unknown parameter "${name}" (known: ${S3_PARAMS.join(', ')})`);
    }
    if (seen.has(name)) throw new Error(`invalid store URL: parameter "${name}" given twice`);
    seen.add(name);
    switch (name) {
      case 'endpoint': {
        let e: URL;
        try {
          e = new URL(value);
        } catch {
          throw new Error(`invalid store URL: endpoint=${value} is not a URL (e.g. endpoint=http://127.0.0.1:9000)`);
        }
        if (e.protocol !== 'http:' && e.protocol !== 'https:') throw new Error(`invalid store URL: endpoint=${value} must be http:// or https://`);
        if (e.username || e.password) throw new Error('invalid store URL: no credentials in the endpoint');
        options.endpoint = value.replace(/\/+$/, '');
        break;
      }
      case 'region':
        if (!/^[a-z0-9-]{1,40}$/.test(value)) throw new Error(`invalid store URL: region=${value} (e.g. region=us-east-1)`);
        options.region = value;
        break;
      case 'forcePathStyle':
        options.forcePathStyle = bool(name, value);
        break;
      case 'presign':
      case 'redirect':
        if (options.presign !== undefined) throw new Error('invalid store URL: give either presign= or redirect=, not both');
        options.presign = presignSeconds(name, value);
        break;
    }
  }
  return { kind: 's3', options };
}

/**
 * Opens the artifact store named by a URL (see parseStoreUrl and docs/storage.md).
 * Throws a clear Error for a malformed URL; with `ping`, also when the store is unreachable.
 */
export async function openStore(spec: string, opts: OpenStoreOptions = {}): Promise<FsStore | S3Store> {
  const parsed = parseStoreUrl(spec, opts);
  if (opts.area !== undefined && !/^[a-z][a-z0-9-]{0,31}$/.test(opts.area)) throw new Error(`invalid store area ${JSON.stringify(opts.area)}: lower-case letters, digits and dashes`);
  let store: FsStore | S3Store;
  if (parsed.kind === 'fs') {
    store = await FsStore.open(opts.area ? join(parsed.root, opts.area) : parsed.root);
  } else {
    store = new S3Store({
      ...parsed.options,
      ...(opts.area ? { prefix: `${parsed.options.prefix}${opts.area}/` } : {}),
      ...opts.s3,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
  }
  if (opts.ping) {
    try {
      await store.ping();
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return store;
}
