/**
 * In a fleet exactly one hub watches upstream (docs/recipes.md "Watching"): two hubs on one Redis,
 * both with a 1 s watch interval, run the watch in one of them only (the Redis lease); when that
 * hub stops, the other takes the watch over once the lease expires. A hub's watch runs are its
 * log lines `watch: N recipes looked at`.
 *
 *   npm run build && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/watch-fleet.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { countingXcaddy, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, type RedisService } from '../helpers/services.js';

const runs = (hub: FairwayProcess) => (hub.output().match(/watch: \d+ recipes looked at/g) ?? []).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('one watcher among the hubs of a fleet', { timeout: 5 * 60_000 }, () => {
  let redis: RedisService;
  const hubs: FairwayProcess[] = [];

  before(async () => {
    redis = await startRedis();
    const dir = await tempDir('fairway-watch-fleet-');
    const xcaddy = await countingXcaddy(dir);
    const args = ['--redis', redis.url, '--store', `file://${dir}/store`, '--xcaddy-bin', xcaddy.bin, '--watch-interval', '1s'];
    hubs.push(await startFairway({ command: 'hub', args }), await startFairway({ command: 'hub', args }));
  });

  after(async () => {
    await Promise.all(hubs.map((h) => h.stop('SIGKILL')));
    await redis?.destroy();
  });

  test('two hubs, one watcher; the other takes over when it stops', async () => {
    // The first run comes one interval after start; give both hubs several intervals.
    const until = Date.now() + 60_000;
    while (Date.now() < until && runs(hubs[0]!) + runs(hubs[1]!) < 5) await sleep(500);
    await sleep(3000);
    const counts = hubs.map(runs);
    assert.ok(counts[0]! + counts[1]! >= 5, `the hubs watched ${counts.join(' + ')} times in a minute with a 1 s interval`);
    assert.ok(counts[0] === 0 || counts[1] === 0, `both hubs watched (${counts.join(' and ')} runs): the lease must keep one watcher`);
    const [holder, other] = counts[0]! > 0 ? [hubs[0]!, hubs[1]!] : [hubs[1]!, hubs[0]!];
    await holder.stop('SIGKILL');
    // The lease lasts 1.25 intervals + 30 s past the holder's last renewal.
    const takeover = Date.now() + 90_000;
    while (Date.now() < takeover && runs(other) === 0) await sleep(1000);
    assert.ok(runs(other) > 0, `the other hub did not take the watch over after the holder stopped:\n${other.output().slice(-3000)}`);
  });
});
