/**
 * A lease on Redis (the hubs' shared Redis): at most one holder at a time, who keeps it by
 * renewing before it expires; another hub takes it once the holder stops renewing (it died or
 * stopped). One Lua script: take the key when free, renew it when it is ours, else refuse.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

const ACQUIRE = `
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`;

export class RedisLease {
  /** This holder's token (the key's value while it holds the lease). */
  readonly token = randomUUID();

  constructor(
    private readonly redis: Redis,
    /** The key, under the `fairway:` prefix the ACLs grant (docs/SECURITY.md). */
    private readonly key: string,
  ) {}

  /** Takes or renews the lease for `ttlMs`: true when this holder has it now. */
  async acquire(ttlMs: number): Promise<boolean> {
    const r = await this.redis.eval(ACQUIRE, 1, this.key, this.token, String(Math.max(1, Math.round(ttlMs))));
    return r === 1;
  }

  /** Who holds it (a token), or null. */
  async holder(): Promise<string | null> {
    return this.redis.get(this.key);
  }
}
