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
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { Counter, Registry } from 'prom-client';
import type { AccessTracker, ArtifactStore } from '../store/index.js';
import { errorMessage } from '../util/errors.js';
import { ACTIONS, type ActionEntry, type AgentCacheSummary, type Answer, type GoCacheStats, hashFile, parseEntry, writeHashed } from './gocache-entries.js';
import { pruneLocalTier, pruneSharedTier, type PruneResult } from './gocache-prune.js';

export type { AgentCacheSummary, GoCacheStats } from './gocache-entries.js';

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
   * Keeps the local tier under its budget, least recently used out first (./gocache-prune.ts). Run
   * it between builds only (entries handed to a running go command must stay until it ends).
   */
  pruneLocal(): Promise<PruneResult> {
    return pruneLocalTier(this.o);
  }

  /** Keeps the shared tier under its budget (./gocache-prune.ts). */
  pruneShared(): Promise<PruneResult> {
    return pruneSharedTier(this.o, this.tracker);
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
