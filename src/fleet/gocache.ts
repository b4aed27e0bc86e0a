/**
 * The shared Go build cache (docs/distributed.md, "Shared build cache"): a GOCACHEPROG server.
 *
 * The go command of a sandboxed build starts `fairway-cacheprog` (tools/cacheprog), which relays
 * every get and put over a unix socket to this server, in the Fairway process, outside the
 * sandbox. The socket is bound only into build sandboxes (src/sandbox `goCacheSocket`, set by the
 * toolchain), never into the sandbox that runs a built binary.
 *
 * Two tiers, both content-addressed by the go command's OutputID (the sha256 of the bytes):
 *
 *   local   <localDir>/o/<xx>/<output hex>   the bytes; the go command reads them by DiskPath
 *           <localDir>/a/<xx>/<action hex>   {"o": output hex, "size": n, "time": ISO}
 *           Written by this server only; the sandbox sees the directory read-only.
 *   shared  a store at `<store>/gocache/` (fs or S3, the artifact store's settings): blobs
 *           `sha256:<output>` and records `actions/<action>` = {"o", "size", "time"}; last use of
 *           each blob in the store's access records. Outside the image blob area, so the image
 *           blob GC (src/ops/blobgc.ts) never sees it.
 *
 * Checks: a put whose body's sha256 is not its OutputID is refused (nothing is kept); every read
 * (local or shared) hashes the bytes against the OutputID before the go command gets a DiskPath;
 * a corrupt entry is deleted, counted, and answered as a miss (the go command rebuilds it). What
 * cannot be checked by content is the action → output mapping: only the go command writes it.
 *
 * Read-through / write-through: a local miss asks the shared tier and fills the local tier; a put
 * is written locally at once and to the shared tier in the background; flush() waits for those
 * uploads (a build ends only after its puts are durable or dropped with a log line).
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, open, readFile, readdir, rename, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { AccessTracker, ArtifactStore } from '../store/index.js';
import { errorMessage } from '../util/errors.js';

const HEX64 = /^[0-9a-f]{64}$/;
const ACTIONS = 'actions';

export interface GoCacheStats {
  /** Gets answered with an entry (local + shared). */
  hits: number;
  localHits: number;
  sharedHits: number;
  misses: number;
  puts: number;
  /** Puts whose body did not match their OutputID (refused). */
  refused: number;
  /** Corrupt entries found (and deleted), by tier. */
  corrupt: { local: number; shared: number };
  /** Bytes read from and written to the shared tier. */
  sharedBytesRead: number;
  sharedBytesWritten: number;
  /** Shared-tier uploads that failed and were dropped (logged). */
  uploadsDropped: number;
}

/** The small `cache` object an agent's heartbeat carries (GET /api/agents). */
export interface AgentCacheSummary {
  shared: boolean;
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 when nothing was asked yet. */
  hitRate: number;
  sharedHits: number;
  corrupt: number;
  /** Bytes read from and written to the shared tier. */
  sharedBytesRead: number;
  sharedBytesWritten: number;
}

export interface GoCacheServerOptions {
  /** The local tier (made if missing). */
  localDir: string;
  /** The shared tier; absent: local tier only. */
  shared?: ArtifactStore;
  /** Byte budget of the local tier (least recently used out first); absent: none. */
  localMaxBytes?: number;
  /**
   * Local entries used or written less than this long ago are never pruned (default 30 min): a
   * go command of another agent sharing the cache dir may still hold them. Set it to the build timeout.
   */
  protectRecentMs?: number;
  /** Byte budget of the shared tier; absent: none. */
  sharedMaxBytes?: number;
  /** Largest object accepted (default 1 GiB). */
  maxEntryBytes?: number;
  /** Parallel uploads to the shared tier (default 4). */
  uploadConcurrency?: number;
  /** Durable last-use writes per blob at most once per this interval (default 10 min). */
  accessWriteIntervalMs?: number;
  /** close() closes the shared store too (it was opened for this server). */
  ownsShared?: boolean;
  /** Where the counters are registered (default: a private registry, `.registry`). */
  registers?: Registry[];
  logger?: Logger;
}

interface ActionEntry {
  o: string;
  size: number;
  time: string;
}

interface Answer {
  Miss?: boolean;
  OutputID?: string;
  Size?: number;
  Time?: string;
  DiskPath?: string;
  Err?: string;
}

function parseEntry(v: unknown): ActionEntry | null {
  if (!v || typeof v !== 'object') return null;
  const r = v as Record<string, unknown>;
  if (typeof r.o !== 'string' || !HEX64.test(r.o) || typeof r.size !== 'number' || !Number.isSafeInteger(r.size) || r.size < 0) return null;
  return { o: r.o, size: r.size, time: typeof r.time === 'string' && !Number.isNaN(Date.parse(r.time)) ? r.time : new Date().toISOString() };
}

/** sha256 and size of a file; null when it does not exist. */
async function hashFile(path: string): Promise<{ sha256: string; size: number } | null> {
  const h = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      h.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return { sha256: h.digest('hex'), size };
}

/** Writes a stream to `tmp` while hashing it; rejects when it is over `max` bytes. */
async function writeHashed(src: AsyncIterable<unknown>, tmp: string, max: number): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  const fh = await open(tmp, 'wx', 0o644);
  try {
    for await (const chunk of src) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > max) throw new Error(`object over the ${max}-byte limit`);
      h.update(buf);
      await fh.write(buf);
    }
  } finally {
    await fh.close();
  }
  // The process umask may have narrowed the mode: the build identity must read entries.
  await chmod(tmp, 0o644);
  return { sha256: h.digest('hex'), size };
}

export class GoCacheServer {
  readonly registry: Registry;
  private readonly counters: {
    lookups: Counter<'result'>;
    puts: Counter<'result'>;
    corrupt: Counter<'tier'>;
    bytes: Counter<'direction'>;
    uploadsDropped: Counter;
  };
  private readonly s: GoCacheStats = {
    hits: 0,
    localHits: 0,
    sharedHits: 0,
    misses: 0,
    puts: 0,
    refused: 0,
    corrupt: { local: 0, shared: 0 },
    sharedBytesRead: 0,
    sharedBytesWritten: 0,
    uploadsDropped: 0,
  };
  private readonly pending = new Set<Promise<void>>();
  private readonly uploadQueue: Array<() => Promise<void>> = [];
  private uploading = 0;
  private readonly tracker: AccessTracker | null;
  /** Shared fetches in flight per output, so concurrent gets download once. */
  private readonly fetching = new Map<string, Promise<boolean>>();

  private constructor(
    private readonly o: GoCacheServerOptions,
    private readonly server: http.Server,
    private readonly socketDir: string,
    readonly socketPath: string,
  ) {
    this.registry = o.registers?.[0] ?? new Registry();
    const registers = o.registers ?? [this.registry];
    this.counters = {
      lookups: new Counter({ name: 'fairway_gocache_lookups_total', help: 'Go build cache gets, by result (local_hit, shared_hit, miss).', labelNames: ['result'], registers }),
      puts: new Counter({ name: 'fairway_gocache_puts_total', help: 'Go build cache puts, by result (stored, refused: the body did not match its OutputID).', labelNames: ['result'], registers }),
      corrupt: new Counter({
        name: 'fairway_gocache_corrupt_total',
        help: 'Corrupt Go build cache entries found, deleted and answered as misses, by tier (local, shared).',
        labelNames: ['tier'],
        registers,
      }),
      bytes: new Counter({ name: 'fairway_gocache_shared_bytes_total', help: 'Bytes read from (read) and written to (written) the shared Go build cache.', labelNames: ['direction'], registers }),
      uploadsDropped: new Counter({ name: 'fairway_gocache_uploads_dropped_total', help: 'Puts that could not be written to the shared tier (logged, dropped).', registers }),
    };
    this.tracker = o.shared ? o.shared.accessTracker({ intervalMs: o.accessWriteIntervalMs ?? 600_000, onError: (err) => o.logger?.debug({ err }, 'go cache: last-use write failed') }) : null;
  }

  /** Starts the server on a fresh unix socket in a private directory (0700; the socket 0666, reachable only where it is bound in). */
  static async start(o: GoCacheServerOptions): Promise<GoCacheServer> {
    for (const d of ['o', 'a', 'tmp']) await mkdir(join(o.localDir, d), { recursive: true, mode: 0o755 });
    await chmod(o.localDir, 0o755);
    for (const name of await readdir(join(o.localDir, 'tmp'))) await rm(join(o.localDir, 'tmp', name), { force: true });
    const socketDir = await mkdtemp(join(tmpdir(), 'fairway-gocache-'));
    const socketPath = join(socketDir, 'gocache.sock');
    let self: GoCacheServer | null = null;
    const server = http.createServer((req, res) => {
      void self!.handle(req, res).catch((err: Error) => {
        o.logger?.warn({ err: err.message, url: req.url }, 'go cache: request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ Err: 'fairway go cache: internal error' }));
        else res.destroy();
      });
    });
    server.keepAliveTimeout = 60_000;
    server.requestTimeout = 10 * 60_000;
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(socketPath, () => ok());
    });
    await chmod(socketPath, 0o666);
    self = new GoCacheServer(o, server, socketDir, socketPath);
    return self;
  }

  get localDir(): string {
    return this.o.localDir;
  }

  get sharedTier(): boolean {
    return !!this.o.shared;
  }

  stats(): GoCacheStats {
    return { ...this.s, corrupt: { ...this.s.corrupt } };
  }

  /** The heartbeat's `cache` object. */
  summary(): AgentCacheSummary {
    const asked = this.s.hits + this.s.misses;
    return {
      shared: this.sharedTier,
      hits: this.s.hits,
      misses: this.s.misses,
      hitRate: asked ? Math.round((this.s.hits / asked) * 1000) / 1000 : 0,
      sharedHits: this.s.sharedHits,
      corrupt: this.s.corrupt.local + this.s.corrupt.shared,
      sharedBytesRead: this.s.sharedBytesRead,
      sharedBytesWritten: this.s.sharedBytesWritten,
    };
  }

  /** What start-up logs: where the caches come from. */
  describe(): Record<string, unknown> {
    return {
      local: this.o.localDir,
      localMaxBytes: this.o.localMaxBytes ?? null,
      shared: this.o.shared ? `${this.o.shared.kind} store, gocache/` : 'off',
      sharedMaxBytes: this.o.sharedMaxBytes ?? null,
    };
  }

  private outPath(hex: string): string {
    return join(this.o.localDir, 'o', hex.slice(0, 2), hex);
  }

  private actionPath(hex: string): string {
    return join(this.o.localDir, 'a', hex.slice(0, 2), hex);
  }

  private tmpPath(): string {
    return join(this.o.localDir, 'tmp', randomBytes(8).toString('hex'));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, a: Answer) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(a));
    };
    const url = req.url ?? '';
    const get = req.method === 'GET' ? /^\/get\/([0-9a-f]{64})$/.exec(url) : null;
    if (get) return send(200, await this.get(get[1]!));
    const put = req.method === 'PUT' ? /^\/put\/([0-9a-f]{64})\/([0-9a-f]{64})$/.exec(url) : null;
    if (put) {
      const r = await this.put(put[1]!, put[2]!, req);
      return send(r.Err ? 400 : 200, r);
    }
    req.resume();
    send(404, { Err: 'fairway go cache: unknown request' });
  }

  private async readAction(action: string): Promise<ActionEntry | null> {
    const text = await readFile(this.actionPath(action), 'utf8').catch(() => null);
    if (text === null) return null;
    try {
      return parseEntry(JSON.parse(text));
    } catch {
      return null;
    }
  }

  private async writeAction(action: string, e: ActionEntry): Promise<void> {
    const path = this.actionPath(action);
    await mkdir(join(this.o.localDir, 'a', action.slice(0, 2)), { recursive: true, mode: 0o755 });
    const tmp = this.tmpPath();
    await writeFile(tmp, JSON.stringify(e), { mode: 0o644 });
    await rename(tmp, path);
  }

  /** Whether the local output file holds exactly `hex`'s bytes; a wrong one is deleted and counted. */
  private async verifyLocal(hex: string, size: number): Promise<boolean> {
    const path = this.outPath(hex);
    const h = await hashFile(path);
    if (!h) return false;
    if (h.sha256 === hex && h.size === size) return true;
    await unlink(path).catch(() => undefined);
    this.corrupt('local', hex);
    return false;
  }

  private corrupt(tier: 'local' | 'shared', hex: string): void {
    this.s.corrupt[tier]++;
    this.counters.corrupt.inc({ tier });
    this.o.logger?.warn({ tier, output: hex }, `go cache: corrupt ${tier} entry deleted (its bytes do not match its OutputID); answered as a miss`);
  }

  private hit(kind: 'local' | 'shared', action: string, e: ActionEntry): Answer {
    this.s.hits++;
    if (kind === 'local') this.s.localHits++;
    else this.s.sharedHits++;
    this.counters.lookups.inc({ result: `${kind}_hit` });
    const now = new Date();
    // Least recently used first out of the local tier: a hit renews the entry.
    void utimes(this.outPath(e.o), now, now).catch(() => undefined);
    void utimes(this.actionPath(action), now, now).catch(() => undefined);
    this.tracker?.touch(e.o);
    return { OutputID: e.o, Size: e.size, Time: e.time, DiskPath: this.outPath(e.o) };
  }

  private miss(): Answer {
    this.s.misses++;
    this.counters.lookups.inc({ result: 'miss' });
    return { Miss: true };
  }

  async get(action: string): Promise<Answer> {
    const local = await this.readAction(action);
    if (local) {
      if (await this.verifyLocal(local.o, local.size)) return this.hit('local', action, local);
      await unlink(this.actionPath(action)).catch(() => undefined);
    }
    const shared = this.o.shared;
    if (!shared) return this.miss();
    let e: ActionEntry | null;
    try {
      e = parseEntry(await shared.getRecord(ACTIONS, action));
    } catch (err) {
      this.o.logger?.debug({ err: errorMessage(err), action }, 'go cache: shared tier lookup failed (a miss)');
      return this.miss();
    }
    if (!e) return this.miss();
    const entry = e;
    // The same output may already be here under another action; else fetch it, once.
    let ok = await this.verifyLocal(entry.o, entry.size);
    if (!ok) {
      let p = this.fetching.get(entry.o);
      if (!p) {
        p = this.fetchShared(shared, action, entry).finally(() => this.fetching.delete(entry.o));
        this.fetching.set(entry.o, p);
      }
      ok = await p;
    }
    if (!ok) return this.miss();
    await this.writeAction(action, entry);
    return this.hit('shared', action, entry);
  }

  /** Downloads a shared blob into the local tier, hashing it; a wrong one is deleted from the store. */
  private async fetchShared(shared: ArtifactStore, action: string, e: ActionEntry): Promise<boolean> {
    const digest = `sha256:${e.o}`;
    let body: Readable;
    try {
      body = await shared.openBlob(digest);
    } catch (err) {
      // A record whose blob was pruned: forget it.
      if ((err as { statusCode?: number }).statusCode === 404 || (err as Error).name === 'NotFoundError') await shared.deleteRecord(ACTIONS, action).catch(() => undefined);
      else this.o.logger?.debug({ err: errorMessage(err), digest }, 'go cache: shared tier read failed (a miss)');
      return false;
    }
    const tmp = this.tmpPath();
    try {
      const got = await writeHashed(body, tmp, this.o.maxEntryBytes ?? 1 << 30);
      this.s.sharedBytesRead += got.size;
      this.counters.bytes.inc({ direction: 'read' }, got.size);
      if (got.sha256 !== e.o || got.size !== e.size) {
        await unlink(tmp).catch(() => undefined);
        this.corrupt('shared', e.o);
        await Promise.all([shared.deleteBlob(digest), shared.deleteRecord(ACTIONS, action)]).catch((err: unknown) =>
          this.o.logger?.warn({ err: errorMessage(err), digest }, 'go cache: could not delete a corrupt shared entry'),
        );
        return false;
      }
      await mkdir(join(this.o.localDir, 'o', e.o.slice(0, 2)), { recursive: true, mode: 0o755 });
      await rename(tmp, this.outPath(e.o));
      return true;
    } catch (err) {
      body.destroy();
      await unlink(tmp).catch(() => undefined);
      this.o.logger?.debug({ err: errorMessage(err), digest }, 'go cache: shared tier read failed (a miss)');
      return false;
    }
  }

  async put(action: string, output: string, body: AsyncIterable<unknown>): Promise<Answer> {
    const tmp = this.tmpPath();
    let got: { sha256: string; size: number };
    try {
      got = await writeHashed(body, tmp, this.o.maxEntryBytes ?? 1 << 30);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      return this.refuse(output, errorMessage(err));
    }
    if (got.sha256 !== output) {
      await unlink(tmp).catch(() => undefined);
      return this.refuse(output, `the body's sha256 is ${got.sha256}, not its OutputID`);
    }
    const path = this.outPath(output);
    await mkdir(join(this.o.localDir, 'o', output.slice(0, 2)), { recursive: true, mode: 0o755 });
    await rename(tmp, path);
    const entry: ActionEntry = { o: output, size: got.size, time: new Date().toISOString() };
    await this.writeAction(action, entry);
    this.s.puts++;
    this.counters.puts.inc({ result: 'stored' });
    if (this.o.shared) this.upload(this.o.shared, action, entry);
    return { DiskPath: path };
  }

  private refuse(output: string, why: string): Answer {
    this.s.refused++;
    this.counters.puts.inc({ result: 'refused' });
    this.o.logger?.warn({ output, why }, 'go cache: put refused');
    return { Err: `fairway go cache: put refused: ${why}` };
  }

  /** Queues the write of an entry to the shared tier (bounded parallelism); flush() waits for it. */
  private upload(shared: ArtifactStore, action: string, e: ActionEntry): void {
    let done: () => void = () => undefined;
    const p = new Promise<void>((r) => (done = r));
    this.pending.add(p);
    this.uploadQueue.push(async () => {
      try {
        const digest = `sha256:${e.o}`;
        if (!(await shared.statBlob(digest))) {
          // putBlob hashes the file again: what the store publishes is what was checked.
          await shared.putBlob(digest, this.outPath(e.o));
          this.s.sharedBytesWritten += e.size;
          this.counters.bytes.inc({ direction: 'written' }, e.size);
        }
        await shared.putRecord(ACTIONS, action, e);
        this.tracker?.touch(e.o);
      } catch (err) {
        this.s.uploadsDropped++;
        this.counters.uploadsDropped.inc();
        this.o.logger?.warn({ err: errorMessage(err), action, output: e.o }, 'go cache: could not write an entry to the shared tier; dropped (it stays in the local tier)');
      } finally {
        this.pending.delete(p);
        done();
      }
    });
    this.pump();
  }

  private pump(): void {
    while (this.uploading < (this.o.uploadConcurrency ?? 4) && this.uploadQueue.length) {
      const job = this.uploadQueue.shift()!;
      this.uploading++;
      void job().finally(() => {
        this.uploading--;
        this.pump();
      });
    }
  }

  /** Resolves when every put so far is in the shared tier or was dropped with a log line. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
    await this.tracker?.flush().catch(() => undefined);
  }

  /**
   * Keeps the local tier under its budget, least recently used out first. Run it between builds
   * only (entries handed to a running go command must stay until it ends).
   */
  async pruneLocal(): Promise<{ bytes: number; removed: number; removedBytes: number }> {
    const files: Array<{ path: string; size: number; at: number }> = [];
    let bytes = 0;
    for (const sub of await readdir(join(this.o.localDir, 'o')).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.o.localDir, 'o', sub)).catch(() => [] as string[])) {
        const path = join(this.o.localDir, 'o', sub, name);
        const st = await stat(path).catch(() => null);
        if (!st?.isFile()) continue;
        files.push({ path, size: st.size, at: st.mtimeMs });
        bytes += st.size;
      }
    }
    const max = this.o.localMaxBytes;
    let removed = 0;
    let removedBytes = 0;
    if (max === undefined || bytes <= max) return { bytes, removed, removedBytes };
    files.sort((a, b) => a.at - b.at);
    let cutoff = 0;
    const recent = Date.now() - (this.o.protectRecentMs ?? 30 * 60_000);
    for (const f of files) {
      if (bytes - removedBytes <= max || f.at > recent) break;
      await unlink(f.path).catch(() => undefined);
      removed++;
      removedBytes += f.size;
      cutoff = f.at;
    }
    // Action files older than the newest removed output point at nothing kept, mostly: drop them too.
    for (const sub of await readdir(join(this.o.localDir, 'a')).catch(() => [] as string[])) {
      for (const name of await readdir(join(this.o.localDir, 'a', sub)).catch(() => [] as string[])) {
        const path = join(this.o.localDir, 'a', sub, name);
        const st = await stat(path).catch(() => null);
        if (st && st.mtimeMs <= cutoff) await unlink(path).catch(() => undefined);
      }
    }
    this.o.logger?.info({ removed, removedBytes, budget: max }, 'go cache: local tier over budget, least recently used entries removed');
    return { bytes: bytes - removedBytes, removed, removedBytes };
  }

  /**
   * Keeps the shared tier under its budget: blobs least recently used (last use from the access
   * records, else their write time) out first; records whose blob is gone are dropped when read.
   */
  async pruneShared(): Promise<{ bytes: number; removed: number; removedBytes: number }> {
    const shared = this.o.shared;
    if (!shared) return { bytes: 0, removed: 0, removedBytes: 0 };
    await this.tracker?.flush().catch(() => undefined);
    const used = this.tracker ? await this.tracker.all() : new Map<string, number>();
    const blobs: Array<{ digest: string; size: number; at: number }> = [];
    let bytes = 0;
    for await (const b of shared.listBlobs()) {
      const hex = b.digest.slice('sha256:'.length);
      blobs.push({ digest: b.digest, size: b.size, at: Math.max(b.modifiedAt, used.get(hex) ?? 0) });
      bytes += b.size;
    }
    const max = this.o.sharedMaxBytes;
    let removed = 0;
    let removedBytes = 0;
    if (max === undefined || bytes <= max) return { bytes, removed, removedBytes };
    blobs.sort((a, b) => a.at - b.at);
    for (const b of blobs) {
      if (bytes - removedBytes <= max) break;
      try {
        await shared.deleteBlob(b.digest);
        await this.tracker?.forget(b.digest.slice('sha256:'.length));
        removed++;
        removedBytes += b.size;
      } catch (err) {
        this.o.logger?.warn({ err: errorMessage(err), digest: b.digest }, 'go cache: could not prune a shared blob');
      }
    }
    this.o.logger?.info({ removed, removedBytes, budget: max }, 'go cache: shared tier over budget, least recently used entries removed');
    return { bytes: bytes - removedBytes, removed, removedBytes };
  }

  /**
   * Budgets: the local tier is pruned when the last running build ends (at most once a minute,
   * through `whenIdle`, so no running go command loses an entry), the shared tier every `intervalMs`.
   */
  schedulePruning(o: { intervalMs: number; onIdle(listener: () => void): void; whenIdle(fn: () => Promise<unknown>): Promise<unknown> }): void {
    let lastLocal = 0;
    const warn = (tier: string) => (err: unknown) => this.o.logger?.warn({ err: errorMessage(err), tier }, 'go cache: pruning failed');
    if (this.o.localMaxBytes !== undefined) {
      o.onIdle(() => {
        if (this.closed || Date.now() - lastLocal < 60_000) return;
        lastLocal = Date.now();
        void o.whenIdle(() => this.pruneLocal()).catch(warn('local'));
      });
      void o.whenIdle(() => this.pruneLocal()).catch(warn('local'));
    }
    if (this.o.shared && this.o.sharedMaxBytes !== undefined) {
      const run = () => void this.pruneShared().catch(warn('shared'));
      this.timer = setInterval(run, o.intervalMs);
      this.timer.unref();
      run();
    }
  }

  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.flush();
    await this.tracker?.close().catch(() => undefined);
    if (this.o.ownsShared) await this.o.shared?.close?.();
    this.server.closeAllConnections();
    await new Promise<void>((ok) => this.server.close(() => ok()));
    await rm(this.socketDir, { recursive: true, force: true });
  }
}

export interface AgentGoCacheOptions {
  /**
   * The shared tier: the store's `gocache` area, opened by the composition root
   * (`openStore(url, { area: 'gocache' })`); the server closes it when it stops.
   */
  shared: ArtifactStore;
  /** The local tier (`<cacheDir>/gocacheprog`). */
  localDir: string;
  localMaxBytes?: number;
  protectRecentMs?: number;
  sharedMaxBytes?: number;
  /** The GOCACHEPROG program, checked here. */
  progBin: string;
  /** The toolchain's Go version (`go1.26.8`): GOCACHEPROG needs Go 1.24 or newer. */
  goVersion: string;
  logger?: Logger;
}

/**
 * An agent's cache server: checks Go, the program and the shared tier, then starts. It owns the
 * shared tier from here on: closed when the server stops, or here when a check fails.
 */
export async function startAgentGoCache(o: AgentGoCacheOptions): Promise<GoCacheServer> {
  try {
    const v = /^go1\.(\d+)/.exec(o.goVersion);
    if (!v || Number(v[1]) < 24) throw new Error(`goCacheShared needs Go 1.24 or newer (GOCACHEPROG); this toolchain is ${o.goVersion}`);
    try {
      await access(o.progBin, constants.X_OK);
    } catch {
      throw new Error(`goCacheShared: the GOCACHEPROG program ${o.progBin} is missing or not executable; run "npm run setup" (it builds tools/cacheprog) or set goCacheProgBin`);
    }
    await o.shared.ping();
    return await GoCacheServer.start({
      localDir: o.localDir,
      shared: o.shared,
      ownsShared: true,
      ...(o.localMaxBytes !== undefined ? { localMaxBytes: o.localMaxBytes } : {}),
      ...(o.protectRecentMs !== undefined ? { protectRecentMs: o.protectRecentMs } : {}),
      ...(o.sharedMaxBytes !== undefined ? { sharedMaxBytes: o.sharedMaxBytes } : {}),
      ...(o.logger ? { logger: o.logger } : {}),
    });
  } catch (err) {
    await o.shared.close?.();
    throw err;
  }
}

/** Wraps a build processor so a build ends only after its cache puts are durable (or dropped with a log line). */
export function flushingGoCache<A extends unknown[], R>(cache: Pick<GoCacheServer, 'flush'>, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } finally {
      await cache.flush();
    }
  };
}
