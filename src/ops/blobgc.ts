/**
 * The store's blob area (`blobs/sha256/<hex>`: image layers, configs, manifests, indexes,
 * signatures) has no owner per blob: records reference blobs. A record of a referencing namespace
 * (`images/<key>` and `signatures/<key>` by default; the list is a parameter) is read as JSON whose
 * `blobs: [{digest, size}]` names the blobs it needs. Records named by a cache key belong to that
 * artifact and go with it (dropArtifactRecords; collectBlobs drops those whose artifact is gone).
 *
 * collectBlobs() is a mark-and-sweep: every blob no remaining record references is deleted, unless
 * it is younger than a grace period (default 1 h): image makes in flight put their blobs before
 * their record, and tag indexes are served from blobs no record names (an index blob is made again,
 * deterministically, at the next pull of its tag). When a referencing record cannot be read, nothing
 * is swept: a blob is only deleted when it is known to be unreferenced.
 *
 * Records of a follower namespace (`index-signatures`: the signatures of tag indexes) name blobs
 * without keeping them; the pass that deletes one of their blobs drops them.
 *
 * attributeBlobs() is the budget's view (src/ops/prune.ts): each artifact is charged the bytes of
 * the blobs only its records reference; blobs several artifacts share (the base layer) are counted
 * once as shared bytes, which no single removal frees.
 */
import type { Logger } from 'pino';
import { isCacheKey } from '../request/index.js';
import type { BlobStore, ListedBlob, RecordStore } from '../store/index.js';
import { errorMessage } from '../util/errors.js';

/**
 * The record namespaces whose records reference blobs, by default: image records and the cosign
 * signature/attestation records of src/registry (both `<ns>/<artifact key>` with a `blobs` array).
 */
export const BLOB_REFERENCE_NAMESPACES: readonly string[] = ['images', 'signatures'];
/**
 * Record namespaces whose records name blobs without keeping them: the signatures of tag indexes
 * (src/registry/indexsign.ts), made again at the next request once their blobs are gone, like the
 * index blobs themselves. A record there is dropped in the pass that deletes one of its blobs.
 */
export const BLOB_FOLLOWER_NAMESPACES: readonly string[] = ['index-signatures'];
/** Unreferenced blobs younger than this are kept (ms). */
export const DEFAULT_BLOB_GRACE_MS = 60 * 60_000;

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export type BlobGcStore = Pick<BlobStore, 'listBlobs' | 'deleteBlob'> & Pick<RecordStore, 'listRecords' | 'getRecord' | 'deleteRecord'>;

/** The digests a record names in its `blobs` array (entries that are not `{digest: sha256:…}` are ignored). */
export function recordBlobDigests(value: unknown): string[] {
  const blobs = value && typeof value === 'object' ? (value as { blobs?: unknown }).blobs : undefined;
  if (!Array.isArray(blobs)) return [];
  const out: string[] = [];
  for (const b of blobs) {
    const d = b && typeof b === 'object' ? (b as { digest?: unknown }).digest : undefined;
    if (typeof d === 'string' && DIGEST.test(d)) out.push(d);
  }
  return out;
}

/** Who references which blob: by artifact key (records named by a cache key) and by other records. */
export interface BlobReferences {
  /** Artifact key → the digests its records reference. */
  byKey: Map<string, Set<string>>;
  /** Digests referenced by records not named by a cache key (they belong to no artifact). */
  unowned: Set<string>;
  /** Artifact key → the namespaces it has a record in. */
  namespacesOf?: Map<string, string[]>;
}

/** Every referenced digest. */
export function referencedDigests(refs: BlobReferences): Set<string> {
  const all = new Set(refs.unowned);
  for (const s of refs.byKey.values()) for (const d of s) all.add(d);
  return all;
}

/**
 * Reads every record of the namespaces. Rejects when a record cannot be read (the store failed,
 * or the record is not JSON): the reference set is then unknown.
 */
export async function readBlobReferences(store: BlobGcStore, namespaces: readonly string[] = BLOB_REFERENCE_NAMESPACES): Promise<BlobReferences> {
  const refs: BlobReferences = { byKey: new Map(), unowned: new Set(), namespacesOf: new Map() };
  for (const ns of namespaces) {
    for (const name of await store.listRecords(ns)) {
      const value = await store.getRecord(ns, name);
      if (value === null) continue; // deleted since the listing
      const digests = recordBlobDigests(value);
      if (isCacheKey(name)) {
        const set = refs.byKey.get(name) ?? new Set<string>();
        refs.byKey.set(name, set);
        for (const d of digests) set.add(d);
        refs.namespacesOf!.set(name, [...(refs.namespacesOf!.get(name) ?? []), ns]);
      } else {
        for (const d of digests) refs.unowned.add(d);
      }
    }
  }
  return refs;
}

/** Drops the records of artifacts (by key) in every referencing namespace; their blobs become garbage. */
export async function dropArtifactRecords(store: Pick<RecordStore, 'deleteRecord'>, keys: Iterable<string>, namespaces: readonly string[] = BLOB_REFERENCE_NAMESPACES): Promise<void> {
  for (const key of keys) for (const ns of namespaces) await store.deleteRecord(ns, key);
}

export interface BlobAttribution {
  /** Per artifact key: the bytes of the blobs only that artifact references. */
  perKey: Map<string, number>;
  /** Per artifact key: how many blobs only that artifact references. */
  perKeyBlobs: Map<string, number>;
  /** Blobs referenced by several artifacts or by records of no artifact. */
  sharedBytes: number;
  /** Blobs nobody references and younger than the grace period: kept, counted. */
  youngBytes: number;
  /** Blobs nobody references and older than the grace period: the next collection deletes them. */
  garbageBytes: number;
  /** How many blobs are young / garbage. */
  young: number;
  garbage: number;
  /** All blob bytes (the sum of the four). */
  totalBytes: number;
  blobs: number;
}

/** The budget's view of the blob area (pure). */
export function attributeBlobs(refs: BlobReferences, blobs: Iterable<ListedBlob>, o: { now: number; graceMs?: number }): BlobAttribution {
  const grace = o.graceMs ?? DEFAULT_BLOB_GRACE_MS;
  const owners = new Map<string, string[]>();
  for (const [key, set] of refs.byKey) {
    for (const d of set) {
      const list = owners.get(d);
      if (list) list.push(key);
      else owners.set(d, [key]);
    }
  }
  const out: BlobAttribution = { perKey: new Map(), perKeyBlobs: new Map(), sharedBytes: 0, youngBytes: 0, garbageBytes: 0, young: 0, garbage: 0, totalBytes: 0, blobs: 0 };
  for (const b of blobs) {
    out.blobs++;
    out.totalBytes += b.size;
    const who = owners.get(b.digest);
    if (who && who.length === 1 && !refs.unowned.has(b.digest)) {
      out.perKey.set(who[0]!, (out.perKey.get(who[0]!) ?? 0) + b.size);
      out.perKeyBlobs.set(who[0]!, (out.perKeyBlobs.get(who[0]!) ?? 0) + 1);
    } else if (who || refs.unowned.has(b.digest)) {
      out.sharedBytes += b.size;
    } else if (o.now - b.modifiedAt < grace) {
      out.youngBytes += b.size;
      out.young++;
    } else {
      out.garbageBytes += b.size;
      out.garbage++;
    }
  }
  return out;
}

export interface CollectBlobsOptions {
  /** Unreferenced blobs younger than this stay (default 1 h). */
  graceMs?: number;
  now?: number;
  log?: Logger;
  /** Referencing record namespaces (default BLOB_REFERENCE_NAMESPACES: `images`, `signatures`). */
  namespaces?: readonly string[];
  /**
   * Whether the artifact of a key still exists. Records named by a key whose artifact is gone
   * (deleted, quarantined, pruned by another process) are dropped first, unless one of their blobs
   * is younger than the grace period (an image made before its artifact is published). Without
   * it, none are.
   */
  artifactExists?: (key: string) => Promise<boolean>;
  /** Report what would go, delete nothing. */
  dryRun?: boolean;
  /** Namespaces whose records go when a blob they name is collected (default BLOB_FOLLOWER_NAMESPACES). */
  followers?: readonly string[];
}

export interface CollectBlobsResult {
  /** Blobs deleted (dry run: that would be). */
  removed: Array<{ digest: string; size: number }>;
  bytes: number;
  /** Unreferenced blobs kept because they are younger than the grace period. */
  young: number;
  /** Referenced blobs (kept). */
  referenced: number;
  /** Records dropped because their artifact is gone (`<ns>/<key>`). */
  droppedRecords: string[];
  /** Why nothing was swept (an unreadable record, a store error), when so. */
  skipped?: string;
  errors: Array<{ digest: string; error: string }>;
}

/** Mark and sweep of the blob area (see the top of this file). Never throws for a store error: it reports it. */
export async function collectBlobs(store: BlobGcStore, o: CollectBlobsOptions = {}): Promise<CollectBlobsResult> {
  const namespaces = o.namespaces ?? BLOB_REFERENCE_NAMESPACES;
  const grace = o.graceMs ?? DEFAULT_BLOB_GRACE_MS;
  const now = o.now ?? Date.now();
  const out: CollectBlobsResult = { removed: [], bytes: 0, young: 0, referenced: 0, droppedRecords: [], errors: [] };
  try {
    // The listing comes first: a blob put after it is not looked at, so its record need not be seen.
    const blobs: ListedBlob[] = [];
    for await (const b of store.listBlobs()) blobs.push(b);
    let refs = await readBlobReferences(store, namespaces);
    if (o.artifactExists) {
      // A record with a blob younger than the grace period may be an image made just before its
      // artifact is published (the builder makes it first): it stays until a later pass.
      const age = new Map(blobs.map((b) => [b.digest, now - b.modifiedAt]));
      const settled = (key: string) => [...(refs.byKey.get(key) ?? [])].every((d) => (age.get(d) ?? grace) >= grace);
      const gone: string[] = [];
      for (const key of refs.byKey.keys()) if (settled(key) && !(await o.artifactExists(key))) gone.push(key);
      for (const k of gone) {
        const held = refs.namespacesOf?.get(k) ?? namespaces;
        if (!o.dryRun) for (const ns of held) await store.deleteRecord(ns, k);
        for (const ns of held) out.droppedRecords.push(`${ns}/${k}`);
      }
      if (gone.length) refs = { byKey: new Map([...refs.byKey].filter(([k]) => !gone.includes(k))), unowned: refs.unowned };
    }
    const live = referencedDigests(refs);
    for (const b of blobs) {
      if (live.has(b.digest)) {
        out.referenced++;
        continue;
      }
      if (now - b.modifiedAt < grace) {
        out.young++;
        continue;
      }
      try {
        if (!o.dryRun) await store.deleteBlob(b.digest);
        out.removed.push({ digest: b.digest, size: b.size });
        out.bytes += b.size;
      } catch (err) {
        out.errors.push({ digest: b.digest, error: errorMessage(err) });
      }
    }
    if (out.removed.length) await dropFollowers(store, new Set(out.removed.map((r) => r.digest)), o, out);
  } catch (err) {
    out.skipped = `the blob references could not be read, nothing was collected: ${errorMessage(err)}`;
    o.log?.warn({ error: errorMessage(err) }, 'blob collection skipped: a referencing record or the blob listing could not be read');
    return out;
  }
  if (out.removed.length || out.droppedRecords.length || out.errors.length) {
    o.log?.info(
      { dryRun: !!o.dryRun, blobs: out.removed.length, bytes: out.bytes, young: out.young, referenced: out.referenced, droppedRecords: out.droppedRecords.length, errors: out.errors.length },
      o.dryRun ? 'blob collection (dry run): would delete unreferenced blobs' : 'blob collection: deleted unreferenced blobs',
    );
  }
  return out;
}

/** Drops the follower records (BLOB_FOLLOWER_NAMESPACES) that name a collected blob; a failure is logged, never fatal. */
async function dropFollowers(store: BlobGcStore, removed: Set<string>, o: CollectBlobsOptions, out: CollectBlobsResult): Promise<void> {
  for (const ns of o.followers ?? BLOB_FOLLOWER_NAMESPACES) {
    try {
      for (const name of await store.listRecords(ns)) {
        const value = await store.getRecord(ns, name).catch(() => null);
        if (!recordBlobDigests(value).some((d) => removed.has(d))) continue;
        if (!o.dryRun) await store.deleteRecord(ns, name);
        out.droppedRecords.push(`${ns}/${name}`);
      }
    } catch (err) {
      o.log?.warn({ ns, error: errorMessage(err) }, 'blob collection: the records naming collected blobs could not all be dropped; the next pass tries again');
    }
  }
}

/** Blob count and bytes (one listing), for stats and metrics. */
export async function blobUsage(store: Pick<BlobStore, 'listBlobs'>): Promise<{ blobs: number; bytes: number }> {
  let blobs = 0;
  let bytes = 0;
  for await (const b of store.listBlobs()) {
    blobs++;
    bytes += b.size;
  }
  return { blobs, bytes };
}
