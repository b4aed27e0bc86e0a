/**
 * Issue 26, point 7 (and the Redis side of point 4), with the real parts: a real Redis, a real
 * `fairway hub` and `fairway agent` (separate processes, the real sandbox), a stand-in xcaddy that
 * logs a line every 50 ms (with terminal escapes) for a few seconds.
 *  - N followers of the running build on the hub (websocket and SSE) hold ONE Redis connection
 *    between them (counted with CLIENT LIST on the real Redis), and every follower gets every line,
 *    in order, without terminal control;
 *  - /readyz: status only for anonymous and non-admin callers, the raw store/Redis error for admin.
 *   node --import tsx --test --test-reporter=spec test/integration/log-relay.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { LogRelay } from '../../src/queue/logrelay.js';
import { api, CADDY_VERSION, standInDir, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, type RedisService } from '../helpers/services.js';

const BUILD = 10 * 60_000;
const LINES = 200;
const FOLLOWERS = 12;
/** Any C0 control but tab, DEL, any C1 control. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Line {
  seq: number;
  text: string;
}

/** A websocket follower: its lines, until the end message. */
function wsFollower(url: string): { lines: Line[]; done: Promise<string> } {
  const lines: Line[] = [];
  const done = new Promise<string>((resolve, reject) => {
    const ws = new WebSocket(url);
    let status = 'closed without end';
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'line') lines.push({ seq: m.seq, text: m.text });
      if (m.type === 'end') status = m.status;
    });
    ws.on('close', () => resolve(status));
    ws.on('error', reject);
  });
  return { lines, done };
}

/** An SSE follower (fetch, text/event-stream): its lines, until the end event. */
function sseFollower(url: string): { lines: Line[]; done: Promise<string> } {
  const lines: Line[] = [];
  const done = (async () => {
    const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
    assert.equal(res.status, 200);
    let buf = '';
    let status = 'closed without end';
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      for (let i = buf.indexOf('\n\n'); i !== -1; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (!data) continue;
        const m = JSON.parse(data.slice(6));
        if (m.type === 'line') lines.push({ seq: m.seq, text: m.text });
        if (m.type === 'end') status = m.status;
      }
    }
    return status;
  })();
  return { lines, done };
}

describe('hub log relay: one Redis subscriber, fanned out in process', { timeout: 20 * 60_000 }, () => {
  let redis: RedisService;
  let admin: Redis;
  let hub: FairwayProcess;
  let agent: FairwayProcess;
  let dir: string;
  const adminToken = `fw_${randomBytes(24).toString('hex')}`;
  const readToken = `fw_${randomBytes(24).toString('hex')}`;

  /** Redis clients by connection name. */
  const clients = async (): Promise<Map<string, number>> => {
    const text = (await admin.call('CLIENT', 'LIST')) as string;
    const byName = new Map<string, number>();
    for (const line of text.split('\n').filter(Boolean)) {
      const name = /(?:^| )name=(\S*)/.exec(line)?.[1] || '(unnamed)';
      byName.set(name, (byName.get(name) ?? 0) + 1);
    }
    return byName;
  };
  const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

  before(async () => {
    dir = await tempDir('fairway-logrelay-');
    await chmod(dir, 0o755);
    redis = await startRedis();
    admin = new Redis(redis.url, { connectionName: 'test-admin' });
    admin.on('error', () => undefined); // Redis is stopped on purpose in the /readyz test
    const real = await standInDir(dir);
    const bin = join(dir, 'xcaddy-chatty');
    await writeFile(
      bin,
      `#!/bin/sh
if [ "$1" = "build" ]; then
  out=""
  for a in "$@"; do if [ "$prev" = "--output" ]; then out="$a"; fi; prev="$a"; done
  i=0
  while [ $i -lt ${LINES} ]; do printf 'line %d \\033[32mgreen\\033[0m\\007\\n' $i; i=$((i+1)); sleep 0.05; done
  cp '${real}' "$out"
  exit $?
fi
exec '${real}' "$@"
`,
    );
    await chmod(bin, 0o755);
    const store = join(dir, 'store');
    const env = { FAIRWAY_TOKENS: `ops:admin:${sha256hex(adminToken)},viewer:read:${sha256hex(readToken)}` };
    hub = await startFairway({ command: 'hub', dataDir: join(dir, 'hub'), args: ['--redis', redis.url, '--store', store, '--xcaddy-bin', bin, '--anonymous-scopes', 'read,build'], env });
    agent = await startFairway({
      command: 'agent',
      dataDir: join(dir, 'agent'),
      args: ['--redis', redis.url, '--store', store, '--xcaddy-bin', bin, '--agent-id', 'agent-logs', '--concurrency', '1'],
      env,
    });
  });

  after(async () => {
    await Promise.all([hub, agent].filter(Boolean).map((p) => p.stop('SIGKILL')));
    admin?.disconnect();
    await redis?.destroy();
  });

  test(`${FOLLOWERS} followers of a running build share one Redis connection and all get every line`, { timeout: BUILD }, async () => {
    const r = await api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const id = r.body.id as string;
    // Running, with lines out: then the followers come.
    for (let i = 0; ; i++) {
      const b = (await api(hub.url, `/api/builds/${id}`)).body;
      if (b.status === 'running') break;
      assert.ok(i < 600, `the build did not start: ${JSON.stringify(b)}`);
      await sleep(100);
    }
    await sleep(1000);
    const baseline = await clients();
    const ws = hub.url.replace(/^http/, 'ws');
    const followers = Array.from({ length: FOLLOWERS }, (_, i) => (i % 2 === 0 ? wsFollower(`${ws}/api/builds/${id}/log`) : sseFollower(`${hub.url}/api/builds/${id}/log`)));
    // All of them live (each has lines), the build still running: count the hub's connections.
    for (let i = 0; followers.some((f) => f.lines.length === 0); i++) {
      assert.ok(i < 200, 'every follower got lines');
      await sleep(50);
    }
    await sleep(500);
    const during = await clients();
    assert.equal((await api(hub.url, `/api/builds/${id}`)).body.status, 'running', 'counted while the build runs');
    assert.equal(during.get('fairway-hub-follow') ?? 0, 0, `no connection per follower: ${JSON.stringify([...during])}`);
    assert.equal(during.get('fairway-hub-logs'), 1, `one log subscriber for the hub: ${JSON.stringify([...during])}`);
    assert.ok(
      total(during) <= total(baseline) + 1,
      `${FOLLOWERS} followers added ${total(during) - total(baseline)} Redis connections: ${JSON.stringify([...baseline])} -> ${JSON.stringify([...during])}`,
    );

    const statuses = await Promise.all(followers.map((f) => f.done));
    assert.deepEqual(statuses, Array(FOLLOWERS).fill('succeeded'));
    const done = await waitForBuild(hub.url, id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    const stored = (await (await fetch(`${hub.url}/api/builds/${id}/log`)).text()).split('\n').filter(Boolean);
    for (const [i, f] of followers.entries()) {
      assert.deepEqual(
        f.lines.map((l) => l.seq),
        f.lines.map((_, j) => j),
        `follower ${i}: every line once, in order`,
      );
      assert.equal(f.lines.length, stored.length, `follower ${i} got every line`);
      const chatty = f.lines.filter((l) => l.text.startsWith('line '));
      assert.equal(chatty.length, LINES, `follower ${i}: all ${LINES} lines of xcaddy`);
      assert.equal(chatty[7]!.text, 'line 7 green');
      for (const l of f.lines) assert.ok(!CONTROL.test(l.text), `follower ${i}: ${JSON.stringify(l.text)}`);
    }
    // Followers gone: the subscriber is not kept busy for them (it may stay connected, idle).
    await sleep(500);
    assert.ok((await clients()).get('fairway-hub-logs')! <= 1);
  });

  test('/readyz: status only without admin; the raw error for admin', { timeout: 60_000 }, async () => {
    const ok = await api(hub.url, '/readyz');
    assert.equal(ok.status, 200);
    assert.deepEqual(ok.body, { status: 'ready' });
    const okAdmin = await api(hub.url, '/readyz', { headers: { authorization: `Bearer ${adminToken}` } });
    assert.equal(okAdmin.status, 200);
    assert.deepEqual(okAdmin.body, { status: 'ready', checks: { store: 'ok', queue: 'ok' } });

    await redis.stop();
    try {
      let anon: { status: number; body: any } | null = null;
      for (let i = 0; i < 100; i++) {
        anon = await api(hub.url, '/readyz');
        if (anon.status === 503) break;
        await sleep(100);
      }
      assert.equal(anon!.status, 503);
      assert.equal(anon!.body.error.code, 'not_ready');
      assert.doesNotMatch(JSON.stringify(anon!.body), /ECONNREFUSED|127\.0\.0\.1|redis|Connection|\d{4,5}/i, 'no raw error, no address for anonymous');
      const viewer = await api(hub.url, '/readyz', { headers: { authorization: `Bearer ${readToken}` } });
      assert.equal(viewer.status, 503);
      assert.deepEqual(viewer.body, anon!.body, 'a read token sees what anonymous sees');
      const bad = await api(hub.url, '/readyz', { headers: { authorization: 'Bearer fw_not-a-token' } });
      assert.equal(bad.status, 503);
      assert.deepEqual(bad.body, anon!.body, 'an invalid token sees what anonymous sees');
      const adm = await api(hub.url, '/readyz', { headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(adm.status, 503);
      assert.notDeepEqual(adm.body, anon!.body, 'admin gets the details');
      assert.match(adm.body.error.message, /ECONNREFUSED|Connection is closed|connect|Redis|timed out/i, JSON.stringify(adm.body));
    } finally {
      await redis.start();
    }
  });
});

describe('LogRelay on a real Redis: a new stream is watched at once', { timeout: 60_000 }, () => {
  let redis: RedisService;
  let admin: Redis;
  before(async () => {
    redis = await startRedis();
    admin = new Redis(redis.url, { connectionName: 'test-admin' });
  });
  after(async () => {
    admin?.disconnect();
    await redis?.destroy();
  });

  /** A relay blocked on stream A (5 s blocks), then a follower of stream B: how long until B's first entry wakes it. */
  const wakeAfterNewStream = async (conn: Redis, onNoUnblock: () => void): Promise<number> => {
    const relay = new LogRelay(conn, { blockMs: 5000, onNoUnblock });
    try {
      const a = relay.subscribe('t:log:a', '0-0');
      await sleep(300); // the watcher is in its blocking XREAD on A alone
      const b = relay.subscribe('t:log:b', '0-0');
      await sleep(100);
      const t0 = Date.now();
      await admin.xadd('t:log:b', '*', 't', 'line', 'x', 'hello');
      await b.wait(10_000);
      a.close();
      b.close();
      return Date.now() - t0;
    } finally {
      relay.close();
      conn.disconnect();
    }
  };

  test('CLIENT UNBLOCK: the blocked watcher takes the new stream in at once', async () => {
    let refused = false;
    const ms = await wakeAfterNewStream(new Redis(redis.url), () => (refused = true));
    assert.equal(refused, false);
    assert.ok(ms < 1000, `woken after ${ms} ms (the block is 5 s)`);
  });

  test('a Redis user without +client|unblock: said once, then 1 s blocks (the follower still wakes within about a second)', async () => {
    await admin.call('ACL', 'SETUSER', 'nounblock', 'on', '>pw', 'resetkeys', '~t:*', 'resetchannels', '+@all', '-@dangerous', '+client|id', '+client|setname');
    let refused = 0;
    const ms = await wakeAfterNewStream(new Redis(redis.url.replace('redis://', 'redis://nounblock:pw@')), () => refused++);
    assert.equal(refused, 1);
    assert.ok(ms < 2500, `woken after ${ms} ms`);
  });
});
