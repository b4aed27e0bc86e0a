/**
 * `maxActiveBuilds` across hubs: which builds each client has queued or running, kept in Redis.
 *   <prefix>:active:client:<client>   set of cache keys
 *   <prefix>:active:key:<key>         set of clients (so that release(key) finds them)
 * Both expire a day after their last change, so a release lost with a crashed hub cannot pin a
 * client's count for longer; stale entries are also dropped by the admission's isActive check.
 */
import type { Redis } from 'ioredis';
import type { ActiveBuilds } from './admission.js';

const TTL_S = 24 * 3600;

export class RedisActiveBuilds implements ActiveBuilds {
  constructor(
    private readonly redis: Redis,
    private readonly prefix = 'fairway',
  ) {}

  private clientSet(client: string): string {
    return `${this.prefix}:active:client:${client}`;
  }

  private keySet(key: string): string {
    return `${this.prefix}:active:key:${key}`;
  }

  keys(client: string): Promise<string[]> {
    return this.redis.smembers(this.clientSet(client));
  }

  async add(client: string, key: string): Promise<void> {
    await this.redis.multi().sadd(this.clientSet(client), key).expire(this.clientSet(client), TTL_S).sadd(this.keySet(key), client).expire(this.keySet(key), TTL_S).exec();
  }

  async remove(client: string, key: string): Promise<void> {
    await this.redis.multi().srem(this.clientSet(client), key).srem(this.keySet(key), client).exec();
  }

  async release(key: string): Promise<void> {
    const clients = await this.redis.smembers(this.keySet(key));
    const m = this.redis.multi();
    for (const c of clients) m.srem(this.clientSet(c), key);
    m.del(this.keySet(key));
    await m.exec();
  }
}
