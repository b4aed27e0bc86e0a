/**
 * What the fs and s3 stores share for blobs and records (BlobStore, RecordStore in ./types.ts):
 * the checks that keep a digest, a namespace or a name from ever becoming a path, hashing, and
 * parsing a record.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { AppError, errorMessage } from '../util/errors.js';
import { CorruptRecordError } from './types.js';

const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;
const RECORD_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** A digest that is not `sha256:<64 lowercase hex>`: the caller's mistake (400 `invalid_digest`), never a path. */
export class InvalidDigestError extends AppError {
  constructor(readonly digest: string) {
    super('invalid_digest', `invalid blob digest ${JSON.stringify(String(digest).slice(0, 100))}: expected sha256:<64 lowercase hex digits>`);
    this.name = 'InvalidDigestError';
  }
}

/** The bytes put as a blob do not hash to its digest (400 `digest_mismatch`): nothing was published. */
export class BlobDigestMismatchError extends AppError {
  constructor(
    readonly digest: string,
    readonly actual: string,
    path: string,
  ) {
    super('digest_mismatch', `blob digest mismatch: ${path} hashes to ${actual}, not ${digest}; the blob was not published`);
    this.name = 'BlobDigestMismatchError';
  }
}

/** A record namespace or name outside `[a-z0-9][a-z0-9._-]{0,127}` (or containing ".."): 400 `invalid_record_name`. */
export class InvalidRecordNameError extends AppError {
  constructor(
    readonly what: 'namespace' | 'name',
    readonly value: string,
  ) {
    super('invalid_record_name', `invalid record ${what} ${JSON.stringify(String(value).slice(0, 140))}: expected [a-z0-9][a-z0-9._-]{0,127} without ".."`);
    this.name = 'InvalidRecordNameError';
  }
}

export function isDigest(digest: string): boolean {
  return typeof digest === 'string' && DIGEST_RE.test(digest);
}

/** The 64 hex digits of a `sha256:<hex>` digest; throws an InvalidDigestError for anything else. */
export function digestHex(digest: string): string {
  const m = typeof digest === 'string' ? DIGEST_RE.exec(digest) : null;
  if (!m) throw new InvalidDigestError(digest);
  return m[1]!;
}

export function isRecordName(s: string): boolean {
  return typeof s === 'string' && RECORD_NAME_RE.test(s) && !s.includes('..');
}

/** Checks a namespace and a name; throws an InvalidRecordNameError naming the bad one. */
export function assertRecordName(ns: string, name?: string): void {
  if (!isRecordName(ns)) throw new InvalidRecordNameError('namespace', ns);
  if (name !== undefined && !isRecordName(name)) throw new InvalidRecordNameError('name', name);
}

/** The sha256 (hex) and size of a file, streamed. */
export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

/** Hashes the file at `path` and throws (naming both digests) unless it is blob `digest`. */
export async function verifyBlobFile(digest: string, path: string): Promise<{ hex: string; size: number }> {
  const hex = digestHex(digest);
  const local = await hashFile(path);
  if (local.sha256 !== hex) {
    throw new BlobDigestMismatchError(digest, `sha256:${local.sha256}`, path);
  }
  return { hex, size: local.size };
}

/** Serialises a record value; throws for a value JSON cannot represent (undefined, a function). */
export function recordJson(ns: string, name: string, value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new Error(`record ${ns}/${name}: the value cannot be stored as JSON`);
  return text;
}

/** Parses a stored record; throws a CorruptRecordError (key `<ns>/<name>`, part 'record') when it is not JSON. */
export function parseRecord(ns: string, name: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CorruptRecordError(`${ns}/${name}`, 'record', `not JSON: ${errorMessage(err)}`);
  }
}
