/**
 * Live log relay of a hub: ONE Redis connection (named `fairway-hub-logs`) watches every build
 * log that anyone follows on this hub, however many followers there are, and wakes the followers
 * of a stream when it grows; each follower then reads what it has not seen yet on the hub's shared
 * command connection (XRANGE from its own last id, non-blocking), so none misses or repeats a line
 * whatever it joined. Before this, each SSE/websocket follower held its own blocking connection:
 * enough of them exhausted Redis `maxclients` and stopped the fleet.
 *
 * The watcher blocks in `XREAD BLOCK … STREAMS <every watched stream>`; a follower of a stream
 * not watched yet unblocks it (`CLIENT UNBLOCK`, from the command connection) so the new stream
 * is watched at once.
 */
import type { Redis } from 'ioredis';
import { errorMessage } from '../util/errors.js';

export interface LogSubscription {
  /** Resolves when the stream may have grown since the last call, after `ms` at the latest, or at close. */
  wait(ms: number): Promise<void>;
  close(): void;
}

export interface LogRelayOptions {
  /** Told of a failed read (Redis away; it is retried). */
  onError?(err: unknown): void;
  /** Block time of one XREAD; default 3000 ms (1000 ms when Redis refuses CLIENT UNBLOCK). */
  blockMs?: number;
  /** Redis refused CLIENT UNBLOCK (its ACL): said once; new followers then wait up to a second for their first live line. */
  onNoUnblock?(): void;
}

class Subscriber implements LogSubscription {
  private pending = false;
  private waiter: (() => void) | null = null;
  private closed = false;

  constructor(private readonly leave: (s: Subscriber) => void) {}

  notify(): void {
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w();
    } else this.pending = true;
  }

  wait(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve();
      }, ms);
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.leave(this);
    this.notify();
  }
}

interface Watched {
  /** The last entry id the watcher has seen of this stream. */
  cursor: string;
  subs: Set<Subscriber>;
}

export class LogRelay {
  private conn: Redis | null = null;
  private connId: number | null = null;
  private blocked = false;
  /** Whether Redis lets this user CLIENT UNBLOCK (probed once, harmlessly, on the watcher's own id); without, new streams wait for the next turn (1 s blocks). */
  private canUnblock: boolean | null = null;
  private running = false;
  private closed = false;
  private readonly watched = new Map<string, Watched>();

  constructor(
    /** The hub's command connection: the watcher is its duplicate, and unblocking goes through it. */
    private readonly redis: Redis,
    private readonly o: LogRelayOptions = {},
  ) {}

  /** Followers now, by stream (for tests and metrics). */
  get followers(): number {
    let n = 0;
    for (const w of this.watched.values()) n += w.subs.size;
    return n;
  }

  /** Follows `streamKey` from after `afterId` (an id the caller has read up to; `0-0` for the start). */
  subscribe(streamKey: string, afterId: string): LogSubscription {
    const sub = new Subscriber((s) => {
      const w = this.watched.get(streamKey);
      w?.subs.delete(s);
      if (w && w.subs.size === 0) this.watched.delete(streamKey);
    });
    if (this.closed) {
      sub.close();
      return sub;
    }
    let w = this.watched.get(streamKey);
    if (!w) {
      w = { cursor: afterId, subs: new Set() };
      this.watched.set(streamKey, w);
      this.unblock();
    }
    w.subs.add(sub);
    if (!this.running) void this.loop();
    return sub;
  }

  /** A new stream: the watcher's blocking read must include it now, not at its next turn. */
  private unblock(): void {
    if (!this.blocked || this.connId === null || !this.canUnblock) return;
    this.redis.call('CLIENT', 'UNBLOCK', String(this.connId)).catch((err: unknown) => this.o.onError?.(err));
  }

  /** CLIENT UNBLOCK of a client that is not blocked does nothing: asked once, it tells whether this user may. */
  private async probeUnblock(id: number): Promise<void> {
    try {
      await this.redis.call('CLIENT', 'UNBLOCK', String(id));
      this.canUnblock = true;
    } catch (err) {
      if (!/NOPERM/i.test(String(errorMessage(err)))) throw err;
      this.canUnblock = false;
      this.o.onNoUnblock?.();
    }
  }

  private connection(): Redis {
    if (!this.conn) {
      const conn = this.redis.duplicate({ connectionName: 'fairway-hub-logs' });
      conn.on('error', (err: Error) => this.o.onError?.(err));
      // A reconnect is a new client id.
      conn.on('close', () => (this.connId = null));
      this.conn = conn;
    }
    return this.conn;
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      while (!this.closed && this.watched.size > 0) {
        const conn = this.connection();
        const keys = [...this.watched.keys()];
        const ids = keys.map((k) => this.watched.get(k)!.cursor);
        let res: Array<[string, Array<[string, string[]]>]> | null;
        try {
          if (this.connId === null) this.connId = Number(await conn.client('ID'));
          if (this.canUnblock === null) await this.probeUnblock(this.connId);
          this.blocked = true;
          res = (await conn.xread('COUNT', 200, 'BLOCK', this.canUnblock ? (this.o.blockMs ?? 3000) : Math.min(this.o.blockMs ?? 3000, 1000), 'STREAMS', ...keys, ...ids)) as typeof res;
        } catch (err) {
          if (this.closed) return;
          this.o.onError?.(err);
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        } finally {
          this.blocked = false;
        }
        for (const [key, rows] of res ?? []) {
          const w = this.watched.get(key);
          if (!w || rows.length === 0) continue;
          w.cursor = rows[rows.length - 1]![0];
          for (const s of w.subs) s.notify();
        }
      }
    } finally {
      this.running = false;
    }
    // A follower that came while the loop was ending.
    if (!this.closed && this.watched.size > 0) void this.loop();
  }

  close(): void {
    this.closed = true;
    for (const w of [...this.watched.values()]) for (const s of [...w.subs]) s.close();
    this.conn?.disconnect();
    this.conn = null;
  }
}
