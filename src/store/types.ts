import type { Readable } from 'node:stream';

export type ArtifactStatus = 'succeeded' | 'failed' | 'canceled';

/**
 * meta.json: the record that makes an artifact exist. Written last; everything the index and the
 * API show about a finished build can be rebuilt from it. Opaque fields are the caller's.
 */
export interface ArtifactMeta {
  key: string;
  status: ArtifactStatus;
  /** The requested spec as the client sent it (normalised), and the resolved one. */
  request: unknown;
  spec: unknown;
  filename: string;
  sha256?: string;
  size?: number;
  goVersion?: string;
  error?: string;
  createdAt: string;
  startedAt?: string;
  finishedAt: string;
  durationMs?: number;
  agent?: string;
  /**
   * What the binary printed for `caddy list-modules --packages --versions --skip-standard`, run by
   * the builder inside the sandbox (host-platform builds with plugins only); the catalog learns
   * module IDs from it.
   */
  listModules?: string;
}

export interface PutArtifact {
  meta: ArtifactMeta;
  /** Local path of the binary; absent for failed builds. */
  binaryPath?: string;
  log: string;
  buildInfo?: unknown;
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

export interface ListOptions {
  /** Called for each key whose meta.json exists but is unreadable (skipped by the listing). */
  onCorrupt?(key: string, err: CorruptRecordError): void;
}

export interface StoreStats {
  objects: number;
  bytes: number;
}

/** Artifacts by cache key. Implementations: `fs` (local disk) and `s3`. */
export interface ArtifactStore {
  readonly kind: string;
  /** Atomically publishes an artifact: readers see all of it or none of it. */
  put(a: PutArtifact): Promise<void>;
  /**
   * The record of a key; null when there is none. A meta.json that exists but is unreadable (not
   * JSON, not the schema, naming another key) rejects with a CorruptRecordError, never with an
   * error that looks like an outage.
   */
  getMeta(key: string): Promise<ArtifactMeta | null>;
  /**
   * Every published artifact's meta, in no particular order. Unreadable meta.json files are skipped
   * (and reported to `opts.onCorrupt`, so the caller can move them aside).
   */
  list(opts?: ListOptions): AsyncIterable<ArtifactMeta>;
  /** Whether the `binary` of a key is in the store (fs: stat, s3: HeadObject). Throws when the store cannot be asked. */
  hasBinary(key: string): Promise<boolean>;
  openBinary(key: string, range?: ByteRange): Promise<Readable>;
  /** A URL the client may download from directly (presigned), when the store supports it. */
  binaryUrl?(key: string, filename: string): Promise<string | null>;
  getLog(key: string): Promise<string | null>;
  /** null when absent; a buildinfo.json that is not JSON rejects with a CorruptRecordError. */
  getBuildInfo(key: string): Promise<unknown | null>;
  delete(key: string): Promise<void>;
  /**
   * A fingerprint of the stored binary that changes whenever its bytes can have changed (fs: size,
   * mtime, ctime, inode, device); null when the binary is missing. Absent when the store has no
   * such cheap check (s3): the service then re-reads and re-hashes the object to verify it.
   */
  binaryVersion?(key: string): Promise<string | null>;
  /**
   * Moves a corrupt artifact aside: it disappears for readers like after delete(), but its files are
   * kept for inspection where the store can (fs: `<root>/.quarantine/`, s3: `<prefix>quarantine/`).
   */
  quarantine?(key: string): Promise<void>;
  stats(): Promise<StoreStats>;
  /** Throws when the store cannot be reached (for readiness checks). */
  ping(): Promise<void>;
  close?(): Promise<void>;
}

export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what} not found`);
    this.name = 'NotFoundError';
  }
}

/**
 * A part of a record that exists but cannot be read as what it must be: a meta.json that is not
 * JSON, not an ArtifactMeta or names another key; a buildinfo.json that is not JSON. The store
 * answered: this is damage to one record, not an outage (docs/storage.md, "Integrity").
 */
export class CorruptRecordError extends Error {
  constructor(
    readonly key: string,
    readonly part: 'meta.json' | 'buildinfo.json',
    readonly detail: string,
  ) {
    super(`the ${part} of artifact ${key} is unreadable (${detail})`);
    this.name = 'CorruptRecordError';
  }
}

const STATUSES: readonly string[] = ['succeeded', 'failed', 'canceled'];

/** Parses and checks a meta.json; throws a CorruptRecordError when it is not a record of `key`. */
export function parseMeta(key: string, text: string): ArtifactMeta {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new CorruptRecordError(key, 'meta.json', `not JSON: ${(err as Error).message}`);
  }
  const bad = (why: string) => new CorruptRecordError(key, 'meta.json', why);
  if (!m || typeof m !== 'object' || Array.isArray(m)) throw bad('not a JSON object');
  const r = m as Record<string, unknown>;
  if (r.key !== key) throw bad(`it names another key (${JSON.stringify(r.key)?.slice(0, 80)})`);
  if (typeof r.status !== 'string' || !STATUSES.includes(r.status)) throw bad(`unknown status ${JSON.stringify(r.status)?.slice(0, 40)}`);
  if (typeof r.filename !== 'string' || r.filename === '') throw bad('no filename');
  if (typeof r.createdAt !== 'string' || typeof r.finishedAt !== 'string') throw bad('no createdAt/finishedAt');
  if (r.status === 'succeeded') {
    if (typeof r.sha256 !== 'string' || r.sha256.length !== 64) throw bad('a succeeded record without a sha256');
    if (typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) throw bad('a succeeded record without a size');
  }
  return m as ArtifactMeta;
}

/** Parses a buildinfo.json; throws a CorruptRecordError when it is not JSON. */
export function parseBuildInfo(key: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CorruptRecordError(key, 'buildinfo.json', `not JSON: ${(err as Error).message}`);
  }
}
