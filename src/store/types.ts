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

export interface StoreStats {
  objects: number;
  bytes: number;
}

/** Artifacts by cache key. Implementations: `fs` (local disk) and `s3`. */
export interface ArtifactStore {
  readonly kind: string;
  /** Atomically publishes an artifact: readers see all of it or none of it. */
  put(a: PutArtifact): Promise<void>;
  getMeta(key: string): Promise<ArtifactMeta | null>;
  /** Every published artifact's meta, in no particular order. */
  list(): AsyncIterable<ArtifactMeta>;
  openBinary(key: string, range?: ByteRange): Promise<Readable>;
  /** A URL the client may download from directly (presigned), when the store supports it. */
  binaryUrl?(key: string, filename: string): Promise<string | null>;
  getLog(key: string): Promise<string | null>;
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
