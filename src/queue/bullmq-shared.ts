/**
 * The distributed queue on BullMQ/Redis, what both sides share: the configuration, the Redis
 * connection, the progress a job reports, the agents' heartbeats, a warner for survived errors.
 * The hub side is ./bullmq-hub.ts, the agent side ./bullmq-agent.ts.
 */
import { Redis, type RedisOptions } from 'ioredis';
import pino, { type Logger } from 'pino';
import type { AgentInfo, JobPhase } from './types.js';

export interface BullConfig {
  redisUrl: string;
  /** Key prefix for BullMQ and Fairway's own keys. Default "fairway". */
  prefix?: string;
  queueName?: string;
  attempts?: number;
  backoffMs?: number;
  /** Where the adapter's own errors go (Redis unreachable, a log append lost, ...). Default: nowhere. */
  logger?: Logger;
}

/** What a job reports in BullMQ's progress field: its phase, its agent, and how it ended when BullMQ cannot say. */
export interface Progress {
  phase?: JobPhase;
  agent?: string;
  /** Set by the agent before a canceled job is moved to failed (BullMQ knows no "canceled"). */
  outcome?: 'canceled';
}

/**
 * Warns about an error the adapter survives (it retries, or a later read repairs it), at most
 * once per `what` every few seconds, so an outage of Redis does not flood the log.
 */
export class Warner {
  private readonly last = new Map<string, { at: number; suppressed: number }>();
  constructor(
    readonly log: Logger,
    private readonly everyMs = 5000,
  ) {}

  warn(what: string, err: unknown, fields: Record<string, unknown> = {}): void {
    const now = Date.now();
    const seen = this.last.get(what);
    if (seen && now - seen.at < this.everyMs) {
      seen.suppressed++;
      return;
    }
    this.last.set(what, { at: now, suppressed: 0 });
    this.log.warn({ ...fields, err, ...(seen?.suppressed ? { suppressed: seen.suppressed } : {}) }, what);
  }
}

export const silent = (): Logger => pino({ level: 'silent' });

export function redisConnection(url: string, name: string, overrides: RedisOptions = {}): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`invalid Redis URL "${url}" (expected redis://[user:password@]host:port[/db])`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new Error(`invalid Redis URL "${url}": scheme must be redis:// or rediss://`);
  return new Redis(url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * times, 2000),
    reconnectOnError: () => true,
    ...overrides,
  });
}

export const names = (c: BullConfig) => ({ prefix: c.prefix ?? 'fairway', queue: c.queueName ?? 'builds' });

export async function listAgents(redis: Redis, prefix: string): Promise<AgentInfo[]> {
  const out: AgentInfo[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:agent:*`, 'COUNT', 200);
    cursor = next;
    for (const k of keys) {
      const v = await redis.get(k);
      if (v) out.push(JSON.parse(v) as AgentInfo);
    }
  } while (cursor !== '0');
  return out.sort((a, b) => a.id.localeCompare(b.id));
}
