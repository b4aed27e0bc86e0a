import type { Readable } from 'node:stream';
import { checkResolvedSpec, storedRequest, type BuildRequest, type ResolvedSpec } from '../request/index.js';
import { errorMessage } from '../util/errors.js';

export type ArtifactStatus = 'succeeded' | 'failed' | 'canceled';

/**
 * meta.json: the record that makes an artifact exist. Written last; everything the index and the
 * API show about a finished build can be rebuilt from it. Opaque fields are the caller's.
 */
export interface ArtifactMeta {
  key: string;
  status: ArtifactStatus;
  /**
   * The request as the client sent it (normalised), and the resolved spec: checked when the record
   * is read (parseMeta), so every reader gets them typed.
   */
  request: BuildRequest;
  spec: ResolvedSpec;
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
  /** Set on a verification rebuild (POST /api/builds/:id/rebuild): the key of the build it rebuilt. */
  rebuildOf?: string;
  /** Whether provenance.json is signed (absent: the build has no provenance, built before it existed). */
  provenance?: 'signed' | 'unsigned';
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
  /** The build's provenance (a DSSE envelope, src/provenance): provenance.json, written before sbom.json and meta.json. */
  provenance?: unknown;
  /** The build's SBOM attestation (a DSSE envelope of its SPDX document, src/provenance sbomAttestation): sbom.json, before meta.json. */
  sbom?: unknown;
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

export interface ArtifactUsage {
  bytes: number;
  /** meta.json exists (the artifact is visible); unpublished leftovers are never pruned. */
  published: boolean;
}

export interface StoreUsage {
  /** Per key under the artifacts area. */
  entries: Map<string, ArtifactUsage>;
  /** All bytes under the artifacts area (as store.stats() counts them). */
  bytes: number;
  /** Published artifacts. */
  objects: number;
}

/**
 * Last-download times of artifacts, kept durably next to the store (src/store/access.ts), so that
 * pruning (least recently *downloaded* first) survives restarts and works across hubs.
 */
export interface AccessTracker {
  readonly kind: string;
  /** Records a download of `key` (now by default). Cheap: the durable write is debounced. */
  touch(key: string, at?: number): void;
  /** Last recorded download (ms since epoch) per key: durable records merged with pending ones. */
  all(): Promise<Map<string, number>>;
  get(key: string): Promise<number | null>;
  /** Drops the record of a key (after the artifact was pruned). */
  forget(key: string): Promise<void>;
  /** Writes every pending time now. */
  flush(): Promise<void>;
  /** Stops the flush timer and flushes. */
  close(): Promise<void>;
}

export interface AccessTrackerOptions {
  /** Per key, at most one durable write per this many ms. Default 60 s. */
  intervalMs?: number;
  /** Called when a durable write fails (it is retried at the next flush). */
  onError?: (err: unknown, key: string) => void;
  now?: () => number;
}

/** A stored blob: its digest and size in bytes. */
export interface BlobInfo {
  digest: string;
  size: number;
}

/** A blob as listBlobs() yields it: with its age, for the blob collector (src/ops/blobgc.ts). */
export interface ListedBlob extends BlobInfo {
  /** When the blob was written (ms since epoch): fs mtime, s3 LastModified. */
  modifiedAt: number;
}

/**
 * Content-addressed blobs (image layers, image configs, manifests, indexes), by digest
 * `sha256:<64 hex>`: fs `<root>/blobs/sha256/<hex>`, s3 `<prefix>blobs/sha256/<hex>`. A blob is
 * immutable: putting an existing digest again is a no-op. Bytes are verified against the digest
 * when put (never published otherwise) and when read by the caller (src/service/integrity.ts).
 */
export interface BlobStore {
  /** Publishes the file at `path` as blob `digest` after checking its sha256; rejects (publishing nothing) on a mismatch. */
  putBlob(digest: string, path: string): Promise<BlobInfo>;
  /** The blob's size, or null when the store has no such blob. */
  statBlob(digest: string): Promise<BlobInfo | null>;
  /** Rejects with NotFoundError when absent. */
  openBlob(digest: string, range?: ByteRange): Promise<Readable>;
  /** A URL the client may fetch the blob from directly (presigned), when the store supports it. */
  blobUrl?(digest: string): Promise<string | null>;
  deleteBlob(digest: string): Promise<void>;
  /** Every stored blob with its size and write time (one listing; no read per blob). */
  listBlobs(): AsyncIterable<ListedBlob>;
}

/**
 * Small JSON documents by namespace and name (recipes, image tags), kept with the store so every
 * hub sees the same: fs `<root>/records/<ns>/<name>.json`, s3 `<prefix>records/<ns>/<name>.json`.
 * Namespaces and names are `[a-z0-9][a-z0-9._-]{0,127}`; a write replaces the whole document
 * atomically; a record that is not JSON rejects with a CorruptRecordError.
 */
export interface RecordStore {
  putRecord(ns: string, name: string, value: unknown): Promise<void>;
  getRecord(ns: string, name: string): Promise<unknown | null>;
  /** Names in the namespace, sorted. */
  listRecords(ns: string): Promise<string[]>;
  deleteRecord(ns: string, name: string): Promise<void>;
}

/** Artifacts by cache key, plus blobs and records. Implementations: `fs` (local disk) and `s3`. */
export interface ArtifactStore extends BlobStore, RecordStore {
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
  /** The provenance envelope; null when absent (built before provenance existed); not JSON rejects with a CorruptRecordError. */
  getProvenance(key: string): Promise<unknown | null>;
  /** The SBOM attestation; null when absent (built before SBOMs existed); not JSON rejects with a CorruptRecordError. */
  getSbom(key: string): Promise<unknown | null>;
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
  /**
   * Bytes per artifact in one pass (fs: a directory walk, s3: one listing), for the pruner:
   * `bytes` agrees with stats().bytes, `objects` counts published artifacts.
   */
  usage(): Promise<StoreUsage>;
  /**
   * A tracker of last-download times whose records live with this store, outside the artifacts
   * area (fs: `<root>/.access/<key>`, s3: `<prefix>access/<key>`). A new tracker (with its own
   * flush timer) per call: close() it. A store with nowhere durable to keep them returns a
   * MemoryAccessTracker, explicitly.
   */
  accessTracker(opts?: AccessTrackerOptions): AccessTracker;
  /**
   * Free bytes for new artifacts where the store writes (fs: the filesystem holding the root);
   * null when the kind has no meaningful figure (s3), so a free-space check skips it.
   */
  freeBytes(): Promise<number | null>;
  /** Throws when the store cannot be reached (for readiness checks). */
  ping(): Promise<void>;
  close?(): Promise<void>;
}

/** The common client error (404 `not_found`), from src/util/errors.ts. */
export { NotFoundError } from '../util/errors.js';

/**
 * A part of a record that exists but cannot be read as what it must be: a meta.json that is not
 * JSON, not an ArtifactMeta or names another key; a buildinfo.json that is not JSON; a RecordStore
 * record (part 'record', key `<ns>/<name>`) that is not JSON. The store
 * answered: this is damage to one record, not an outage (docs/storage.md, "Integrity").
 */
export class CorruptRecordError extends Error {
  constructor(
    /** The artifact's key; for a RecordStore record, `<ns>/<name>`. */
    readonly key: string,
    readonly part: 'meta.json' | 'buildinfo.json' | 'provenance.json' | 'sbom.json' | 'record',
    readonly detail: string,
  ) {
    super(part === 'record' ? `the record ${key} is unreadable (${detail})` : `the ${part} of artifact ${key} is unreadable (${detail})`);
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
    throw new CorruptRecordError(key, 'meta.json', `not JSON: ${errorMessage(err)}`);
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
  let spec: ResolvedSpec;
  try {
    spec = checkResolvedSpec(r.spec, { allowLocalPaths: true });
  } catch (err) {
    throw bad(`its spec is malformed: ${errorMessage(err)}`);
  }
  return { ...(m as ArtifactMeta), spec, request: storedRequest(r.request, spec) };
}

/** Parses a buildinfo.json (or, with `part`, another JSON part); throws a CorruptRecordError when it is not JSON. */
export function parseBuildInfo(key: string, text: string, part: 'buildinfo.json' | 'provenance.json' | 'sbom.json' = 'buildinfo.json'): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new CorruptRecordError(key, part, `not JSON: ${errorMessage(err)}`);
  }
}
