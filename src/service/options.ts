/** What the service is built from (its options) and what it tells its observers (hooks). */
import type { Logger } from 'pino';
import type { HotCache } from '../hottier/index.js';
import type { BuildAdmission, BuildPolicy } from '../policy/index.js';
import type { BuildQueue, FinalState } from '../queue/index.js';
import type { Resolver } from '../resolve/index.js';
import type { PlatformSet } from '../request/index.js';
import type { ArtifactMeta, ArtifactStore } from '../store/index.js';
import type { CorruptReason } from './integrity.js';
import type { BuildPayload } from './processor.js';

export interface ServiceOptions {
  resolver: Resolver;
  queue: BuildQueue<BuildPayload>;
  store: ArtifactStore;
  platforms: PlatformSet;
  maxPlugins: number;
  logger: Logger;
  /** Module, version and replacement rules (src/policy); absent = anything the parser accepts. */
  policy?: BuildPolicy;
  /** Free-disk and per-client checks before a new build is queued (src/policy/admission.ts). */
  admission?: BuildAdmission;
  /** Recently downloaded binaries held in memory (src/hottier); absent = every download reads the store. */
  hot?: HotCache;
}

/** Observers of the service (metrics, pruning, last-download times); see observe(). */
export interface ServiceHooks {
  /** A build request was answered: from the cache, by queueing a build, or by joining one. */
  requested?(key: string, result: 'hit' | 'queued' | 'joined'): void;
  /** An artifact is about to be served (native or compat download). */
  downloaded?(key: string): void;
  /** A job ended and its record (if any) was read back from the store. */
  finished?(key: string, state: FinalState, meta: ArtifactMeta | null): void;
  /** A stored record was damaged (binary not matching, binary missing, unreadable meta/build info) and was quarantined. */
  corrupt?(key: string, reason: CorruptReason): void;
}
