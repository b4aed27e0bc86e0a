/**
 * The artifact index: finished records by key, rebuilt from the store at start (the store is the
 * truth, the index a cache of it), and everything that keeps a stored artifact trustworthy:
 * integrity checks of the bytes served (integrity.ts), the background re-check behind the hot
 * tier, and the one quarantine path for every damaged record.
 */
import type { Logger } from 'pino';
import type { HotCache } from '../hottier/index.js';
import { CorruptRecordError, type ArtifactMeta, type ArtifactStore, type ByteRange } from '../store/index.js';
import { AppError, NotFoundError, errorMessage } from '../util/errors.js';
import { IntegrityError, verifyWhole, verifyingStream, type CorruptReason } from './integrity.js';

/** Without a cheap fingerprint (s3), a binary served from the hot tier is re-read from the store this often. */
const STORE_RECHECK_MS = 10 * 60_000;
/** With one (fs), its fingerprint is compared at most this often per key while hot hits go on. */
const FINGERPRINT_RECHECK_MS = 1000;
/** Parallel checks of records (binary present, build info readable) while the index is rebuilt. */
const RESCAN_CHECK_CONCURRENCY = 16;

/** What the error log says when a record is quarantined, by reason. */
const QUARANTINE_LOG: Record<CorruptReason, string> = {
  checksum: 'stored binary does not match its record: quarantining the artifact; the next request rebuilds it',
  truncated: 'stored binary does not match its record: quarantining the artifact; the next request rebuilds it',
  oversized: 'stored binary does not match its record: quarantining the artifact; the next request rebuilds it',
  missing: 'the binary of a succeeded record is missing from the store: quarantining the record; the next request rebuilds it',
  bad_meta: 'meta.json is unreadable: quarantining the record; the next request rebuilds it',
  bad_buildinfo: 'buildinfo.json is unreadable: quarantining the artifact; the next request rebuilds it',
  bad_provenance: 'provenance.json is unreadable: quarantining the artifact; the next request rebuilds it',
  bad_sbom: 'sbom.json is unreadable: quarantining the artifact; the next request rebuilds it',
};

export interface ArtifactIndexOptions {
  store: ArtifactStore;
  logger: Logger;
  /** Recently downloaded binaries held in memory (src/hottier); absent = every download reads the store. */
  hot?: HotCache;
  /** A damaged record was found and is being quarantined (the service tells its observers). */
  onCorrupt(key: string, reason: CorruptReason): void;
}

export class ArtifactIndex {
  /** Finished artifacts by key: rebuilt from the store at start, updated as jobs end. */
  private readonly index = new Map<string, ArtifactMeta>();
  /** Stored binaries known good: key -> sha256 and the store's fingerprint when they were hashed. */
  private readonly verified = new Map<string, { sha256: string; version: string }>();
  /** Corrupt artifacts being moved aside: lookups of the key wait for it (then find nothing). */
  private readonly quarantining = new Map<string, Promise<void>>();
  /** Background re-checks of the store copy behind hot-tier hits: key -> last start (ms). */
  private readonly rechecked = new Map<string, number>();
  private readonly store: ArtifactStore;
  private readonly hot: HotCache | undefined;
  private readonly log: Logger;
  private readonly onCorrupt: (key: string, reason: CorruptReason) => void;

  constructor(o: ArtifactIndexOptions) {
    this.store = o.store;
    this.hot = o.hot;
    this.log = o.logger;
    this.onCorrupt = o.onCorrupt;
  }

  /** The indexed record of a key, without asking the store. */
  indexed(key: string): ArtifactMeta | null {
    return this.index.get(key) ?? null;
  }

  /** Every indexed record. */
  records(): ArtifactMeta[] {
    return [...this.index.values()];
  }

  /**
   * Opens a succeeded artifact's binary, checked: from the hot tier when it holds it (its fills
   * read through the same check), else the whole stored object verified while it streams; a range
   * is served from a stored object verified first (once per fingerprint on fs; every time on s3).
   * A stored object that does not match its record is quarantined.
   */
  async open(meta: ArtifactMeta, range?: ByteRange): Promise<NodeJS.ReadableStream> {
    const hot = this.hot?.open(meta, () => this.openVerified(meta), range);
    if (hot) {
      // Good bytes (hashed on the way in); the store copy behind them is still checked now and then.
      this.recheckBehindHot(meta);
      return hot;
    }
    if (!range) return this.openVerified(meta);
    await this.ensureVerified(meta);
    return this.openStored(meta, range);
  }

  /** A presigned store URL of the binary, or null; throws (after quarantining the record) when the binary is missing. */
  async url(meta: ArtifactMeta): Promise<string | null> {
    if (!this.store.binaryUrl) return null;
    // A presigned URL to a missing object would send the client to an S3 404.
    if (!(await this.binaryThere(meta))) throw this.missingError(meta.key);
    return this.store.binaryUrl(meta.key, meta.filename);
  }

  /**
   * Makes the index match the store listing: adds what other hubs or agents published (a missed
   * event, e.g. across a Redis restart) and drops what was deleted behind this process's back.
   */
  async rescan(opts: { checkAll?: boolean } = {}): Promise<number> {
    const seen = new Set<string>();
    const unreadable: CorruptRecordError[] = [];
    // Succeeded records are only indexed once their binary is there (and, new ones, their build
    // info readable): the index never answers `cached` for what it cannot serve. At start every
    // record is checked (a stat / HeadObject and a small read each); later rescans check new ones.
    const toCheck: ArtifactMeta[] = [];
    for await (const meta of this.store.list({ onCorrupt: (_key, err) => unreadable.push(err) })) {
      seen.add(meta.key);
      const known = this.index.get(meta.key);
      if (meta.status === 'succeeded' && (opts.checkAll || !known || known.finishedAt !== meta.finishedAt)) toCheck.push(meta);
      else this.index.set(meta.key, meta);
    }
    for (const key of this.index.keys()) if (!seen.has(key)) this.forget(key);
    for (const err of unreadable) await this.quarantineKey(err.key, 'bad_meta', err.message, null);
    let damaged = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < toCheck.length) {
        const meta = toCheck[next++]!;
        let damage: { reason: CorruptReason; detail: string } | null = null;
        try {
          damage = await this.damageOf(meta);
        } catch (err) {
          this.log.warn({ key: meta.key, err: errorMessage(err) }, 'could not check a stored record while rebuilding the index');
        }
        if (damage) {
          damaged++;
          await this.quarantineKey(meta.key, damage.reason, damage.detail, meta);
        } else if (!this.quarantining.has(meta.key)) {
          this.index.set(meta.key, meta);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(RESCAN_CHECK_CONCURRENCY, toCheck.length) }, worker));
    return seen.size - damaged;
  }
  /** A succeeded record's damage that a listing does not show: its binary missing, its build info unreadable. */
  private async damageOf(meta: ArtifactMeta): Promise<{ reason: CorruptReason; detail: string } | null> {
    if (!(await this.store.hasBinary(meta.key))) return { reason: 'missing', detail: 'the binary is missing from the store' };
    try {
      await this.store.getBuildInfo(meta.key);
    } catch (err) {
      if (err instanceof CorruptRecordError) return { reason: 'bad_buildinfo', detail: err.message };
      throw err;
    }
    return null;
  }
  /** The whole stored binary, checked while it streams (see integrity.ts); records it as verified when it matched. */
  private async openVerified(meta: ArtifactMeta): Promise<NodeJS.ReadableStream> {
    const version = await this.binaryVersion(meta.key);
    const out = verifyingStream(await this.openStored(meta), meta, (e) => this.quarantine(meta, e));
    out.on('end', () => {
      if (version) this.verified.set(meta.key, { sha256: meta.sha256!, version });
    });
    return out;
  }
  private async openStored(meta: ArtifactMeta, range?: ByteRange): Promise<NodeJS.ReadableStream> {
    const key = meta.key;
    return this.store.openBinary(key, range).catch(async (err: unknown) => {
      if (!(err instanceof NotFoundError)) throw err;
      // Removed behind our back (pruned by another hub): forget it so the next request rebuilds.
      // Its record still there without the binary: a damaged record, quarantined.
      const cur = this.quarantining.has(key) ? null : await this.store.getMeta(key).catch(() => null);
      this.forget(key);
      if (this.quarantining.has(key) || (cur && cur.finishedAt === meta.finishedAt && cur.sha256 === meta.sha256)) {
        await this.quarantineKey(key, 'missing', 'the binary is missing from the store', meta);
        throw this.missingError(key);
      }
      throw new AppError('not_found', `the artifact of build ${key} is no longer in the store (pruned or quarantined); request the build again (POST /api/builds) to rebuild it`);
    });
  }
  /**
   * Before answering `cached`: the binary of a succeeded record is there (a stat on fs, a HeadObject
   * on s3). When it is not, the record is quarantined (reason "missing") and false returned, so the
   * caller builds it again. A store that cannot be asked does not turn a hit into a rebuild.
   */
  async binaryThere(meta: ArtifactMeta): Promise<boolean> {
    let there: boolean;
    try {
      there = await this.store.hasBinary(meta.key);
    } catch (err) {
      this.log.warn({ key: meta.key, err: errorMessage(err) }, 'could not check that a stored binary is there');
      return true;
    }
    if (!there) await this.quarantineKey(meta.key, 'missing', 'the binary is missing from the store', meta);
    return there;
  }
  missingError(key: string): AppError {
    return new AppError('artifact_missing', `the binary of build ${key} is missing from the artifact store; its record was quarantined; request the build again (POST /api/builds) to rebuild it`);
  }
  private async binaryVersion(key: string): Promise<string | null> {
    if (!this.store.binaryVersion) return null;
    return this.store.binaryVersion(key).catch(() => null);
  }
  /** Resolves when the stored binary matches its record; throws an IntegrityError (after quarantining it) when not. */
  private async ensureVerified(meta: ArtifactMeta): Promise<void> {
    const version = await this.binaryVersion(meta.key);
    const known = this.verified.get(meta.key);
    if (version && known && known.version === version && known.sha256 === meta.sha256) return;
    let bad: IntegrityError | null = null;
    try {
      await verifyWhole(await this.openStored(meta), meta, (e) => {
        bad = e;
        this.quarantine(meta, e);
      });
    } catch (err) {
      if (bad) throw bad;
      throw err;
    }
    if (version) this.verified.set(meta.key, { sha256: meta.sha256!, version });
  }
  /** Hot hits never read the store: look at the store copy in the background, so its corruption is found. */
  private recheckBehindHot(meta: ArtifactMeta): void {
    const key = meta.key;
    const now = Date.now();
    const every = this.store.binaryVersion ? FINGERPRINT_RECHECK_MS : STORE_RECHECK_MS;
    const last = this.rechecked.get(key);
    if (last !== undefined && now - last < every) return;
    this.rechecked.set(key, now);
    // The fill that put the bytes in memory verified the store copy; only later checks read it again.
    if (last === undefined && !this.store.binaryVersion) return;
    this.ensureVerified(meta).catch((err: unknown) => {
      if (!(err instanceof IntegrityError)) this.log.warn({ key, err: errorMessage(err) }, 'could not re-check the stored binary behind the hot tier');
    });
  }
  /**
   * A stored binary that does not match its record: counted, dropped from the index and the hot
   * tier at once, and moved aside in the store, so the next request rebuilds it. Idempotent.
   */
  private quarantine(meta: ArtifactMeta, e: IntegrityError): void {
    void this.quarantineKey(meta.key, e.reason, e.detail, meta);
  }
  /**
   * The one path for every damaged record (see CorruptReason): counted, dropped from the index and
   * the hot tier at once, and moved aside in the store, so the next request rebuilds it.
   * `recorded` is the record found damaged (null: its meta.json was unreadable). Idempotent while
   * the move is in flight; resolves when it is done (never rejects).
   */
  quarantineKey(key: string, reason: CorruptReason, detail: string, recorded: ArtifactMeta | null): Promise<void> {
    const running = this.quarantining.get(key);
    if (running) return running;
    this.log.error({ key, reason, detail }, QUARANTINE_LOG[reason]);
    this.forget(key);
    this.onCorrupt(key, reason);
    const store = this.store;
    const p = (async () => {
      // A record replaced in the meantime (rebuilt by another hub) is not this damaged one.
      const cur = await store.getMeta(key).catch(() => null);
      if (recorded ? cur && (cur.sha256 !== recorded.sha256 || cur.finishedAt !== recorded.finishedAt) : cur) return;
      if (store.quarantine) await store.quarantine(key);
      else await store.delete(key);
    })()
      .catch((err: unknown) => this.log.error({ key, reason, err: errorMessage(err) }, 'could not quarantine the damaged artifact'))
      .finally(() => {
        this.quarantining.delete(key);
        this.forget(key);
      });
    this.quarantining.set(key, p);
    return p;
  }
  /** Drops a key from the index (its artifact was pruned). */
  forget(key: string): void {
    this.index.delete(key);
    this.hot?.delete(key);
    this.verified.delete(key);
    this.rechecked.delete(key);
  }
  /** Keys the index holds. */
  indexedKeys(): string[] {
    return [...this.index.keys()];
  }
  async finished(key: string): Promise<ArtifactMeta | null> {
    // A corrupt artifact being moved aside is gone already.
    const q = this.quarantining.get(key);
    if (q) await q;
    const hit = this.index.get(key);
    if (hit) return hit;
    // Another hub or agent may have written it: the store is the source of truth.
    let meta: ArtifactMeta | null;
    try {
      meta = await this.store.getMeta(key);
    } catch (err) {
      // An unreadable meta.json is one damaged record, not an outage: moved aside, then absent.
      if (err instanceof CorruptRecordError) {
        await this.quarantineKey(key, 'bad_meta', err.message, null);
        return null;
      }
      throw this.unavailable(key, err);
    }
    if (meta) this.index.set(key, meta);
    return meta;
  }
  unavailable(key: string, err: unknown): AppError {
    this.log.warn({ key, err }, 'artifact store unreachable');
    return new AppError('store_unavailable', `the artifact store (${this.store.kind}) cannot be reached: ${errorMessage(err).split('\n')[0]}; try again shortly`);
  }
  async refresh(key: string): Promise<void> {
    try {
      const q = this.quarantining.get(key);
      if (q) await q;
      const meta = await this.store.getMeta(key);
      if (meta) this.index.set(key, meta);
    } catch (err) {
      this.log.warn({ key, err }, 'could not read finished build from the store');
    }
  }
}
