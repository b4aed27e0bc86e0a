/**
 * Live build logs in Redis: one Stream per build (bounded length, expiring after the build).
 * Entries are `line` (with a per-build sequence number kept across attempts and agents),
 * `phase` and `end`. Agents append; hubs replay and follow.
 */
import type { Redis } from 'ioredis';
import { stripControl } from '../util/text.js';
import type { FinalState, JobPhase, LogLine, LogStream } from './types.js';

export type LogEntry = { id: string; t: 'line'; line: LogLine } | { id: string; t: 'phase'; phase: JobPhase } | { id: string; t: 'end'; state: FinalState; error?: string };

const APPEND = `
local seq = redis.call('INCR', KEYS[2]) - 1
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 't', 'line', 'seq', seq, 'ts', ARGV[2], 's', ARGV[3], 'x', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return seq`;

export interface RedisLogOptions {
  prefix: string;
  maxLen?: number;
  /** Seconds a log stream lives after its last write. */
  ttlSec?: number;
}

export class RedisLog {
  private readonly maxLen: number;
  private readonly ttlSec: number;

  constructor(
    private readonly redis: Redis,
    private readonly o: RedisLogOptions,
  ) {
    this.maxLen = o.maxLen ?? 50_000;
    this.ttlSec = o.ttlSec ?? 6 * 3600;
    if (!(redis as unknown as { fairwayAppend?: unknown }).fairwayAppend) {
      redis.defineCommand('fairwayAppend', { numberOfKeys: 2, lua: APPEND });
    }
  }

  streamKey(key: string): string {
    return `${this.o.prefix}:log:${key}`;
  }

  private seqKey(key: string): string {
    return `${this.o.prefix}:logseq:${key}`;
  }

  async append(key: string, stream: LogStream, text: string, ts = new Date().toISOString()): Promise<number> {
    const r = this.redis as unknown as { fairwayAppend(...a: (string | number)[]): Promise<number> };
    // No terminal control from a build is stored (src/util/text.ts); lines read back are cleaned again (parseEntry).
    return r.fairwayAppend(this.streamKey(key), this.seqKey(key), this.maxLen, ts, stream, stripControl(text), this.ttlSec);
  }

  async phase(key: string, phase: JobPhase): Promise<void> {
    await this.redis.xadd(this.streamKey(key), 'MAXLEN', '~', this.maxLen, '*', 't', 'phase', 'p', phase);
  }

  async end(key: string, state: FinalState, error?: string): Promise<void> {
    await this.redis
      .multi()
      .xadd(this.streamKey(key), '*', 't', 'end', 'st', state, 'err', error ?? '')
      .expire(this.streamKey(key), this.ttlSec)
      .expire(this.seqKey(key), this.ttlSec)
      .exec();
  }

  /** Forgets a build's log (before a fresh retry of a failed key). */
  async reset(key: string): Promise<void> {
    await this.redis.del(this.streamKey(key), this.seqKey(key));
  }

  /** Lines appended so far (all attempts). */
  async count(key: string): Promise<number> {
    return Number((await this.redis.get(this.seqKey(key))) ?? 0);
  }

  async exists(key: string): Promise<boolean> {
    return (await this.redis.exists(this.streamKey(key))) === 1;
  }

  /** Entries after `afterId` ('-' for all). */
  async range(key: string, afterId = '-'): Promise<LogEntry[]> {
    const start = afterId === '-' ? '-' : `(${afterId}`;
    const rows = await this.redis.xrange(this.streamKey(key), start, '+');
    return rows.map(([id, fields]) => parseEntry(id, fields));
  }

  async lines(key: string): Promise<LogLine[]> {
    return (await this.range(key)).flatMap((e) => (e.t === 'line' ? [e.line] : []));
  }
}

function parseEntry(id: string, fields: string[]): LogEntry {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  if (f.t === 'phase') return { id, t: 'phase', phase: f.p as JobPhase };
  if (f.t === 'end') return { id, t: 'end', state: f.st as FinalState, ...(f.err ? { error: stripControl(f.err) } : {}) };
  return { id, t: 'line', line: { seq: Number(f.seq), ts: stripControl(f.ts ?? ''), stream: (f.s ?? 'stdout') as LogStream, text: stripControl(f.x ?? '') } };
}
