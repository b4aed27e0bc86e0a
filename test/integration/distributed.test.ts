/**
 * Distributed mode with real parts: a real Redis, a real S3-compatible server (versitygw), two
 * hubs and two agents as separate OS processes, real xcaddy builds, and the faults they must survive.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Queue } from 'bullmq';
import WebSocket from 'ws';
import { api, CADDY_VERSION, countingXcaddy, PLUGIN, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';
import { cacheKey } from '../../src/request/index.js';
import { XCADDY_VERSION } from '../../src/config/index.js';

const BUILD = 20 * 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects websocket log messages until the server closes, or until `stopAfterLines`. */
function collect(url: string, stopAfterLines = Infinity): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const msgs: any[] = [];
    const ws = new WebSocket(url);
    ws.on('message', (d) => {
      msgs.push(JSON.parse(d.toString()));
      if (msgs.filter((m) => m.type === 'line').length >= stopAfterLines) ws.terminate();
    });
    ws.on('close', () => resolve(msgs));
    ws.on('error', (e) => (msgs.length ? resolve(msgs) : reject(e)));
  });
}

describe('distributed: hubs + agents on BullMQ/Redis with an S3 store', { timeout: 90 * 60_000 }, () => {
  let redis: RedisService;
  let s3: S3Service;
  let dir: string;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  let xcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  const hubs: FairwayProcess[] = [];
  const agents: Record<string, FairwayProcess> = {};
  let s3client: S3Client;

  const hubArgs = () => ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', xcaddy.bin, '--index-rescan-interval', '3s'];
  const startHub = (port?: number) => startFairway({ command: 'hub', args: hubArgs(), env, ...(port ? { port } : {}) });
  const startAgent = (id: string) =>
    startFairway({
      command: 'agent',
      args: ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', xcaddy.bin, '--agent-id', id, '--concurrency', '1', '--job-lock-duration', '8s', '--stalled-interval', '4s'],
      env,
    });

  const objectsFor = async (key: string) => {
    const res = await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `fw/artifacts/${key}/` }));
    return (res.Contents ?? []).map((o) => o.Key!.split('/').pop()!).sort();
  };

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await tempDir();
    xcaddy = await countingXcaddy(dir);
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    s3client = new S3Client(s3.clientConfig());
    hubs.push(await startHub(), await startHub());
    agents.a = await startAgent('agent-a');
    agents.b = await startAgent('agent-b');
  });

  after(async () => {
    await Promise.all([...hubs, ...Object.values(agents)].map((p) => p.stop('SIGKILL')));
    await Promise.all([redis?.destroy(), s3?.destroy()]);
  });

  test('both agents register with a heartbeat; GET /api/agents lists them', async () => {
    const res = await api(hubs[0]!.url, '/api/agents');
    assert.equal(res.status, 200);
    const ids = res.body.agents.map((a: any) => a.id);
    assert.deepEqual(ids, ['agent-a', 'agent-b']);
    for (const a of res.body.agents) {
      assert.match(a.go, /^go1\./);
      assert.equal(a.xcaddy, XCADDY_VERSION, 'the pinned xcaddy (scripts/setup.mjs)');
      assert.equal(a.concurrency, 1);
      assert.ok(Date.now() - Date.parse(a.lastSeen) < 30_000);
    }
    // Without keys: agents never make one of their own (a fleet shares one) and say their builds are unsigned; hubs say they have none to serve.
    for (const a of Object.values(agents)) assert.match(a.output(), /no signing key \(signingKey\): this agent writes UNSIGNED provenance and unsigned images\. The agents of a fleet share one key/);
    for (const h of hubs) assert.match(h.output(), /no publicKey \(and no signingKey\): \/api\/signing-key answers 404/);
    assert.equal((await api(hubs[0]!.url, '/api/signing-key')).status, 404);
  });

  test('20 concurrent identical requests across two hubs make one build', { timeout: BUILD }, async () => {
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' };
    const before = await xcaddy.count();
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => api(hubs[i % 2]!.url, '/api/builds', { json: spec })));
    const ids = new Set(answers.map((a) => a.body.id));
    assert.equal(ids.size, 1, JSON.stringify(answers.map((a) => a.body)));
    const id = [...ids][0] as string;
    const done = await waitForBuild(hubs[1]!.url, id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    assert.equal(await xcaddy.count(), before + 1, 'exactly one xcaddy run');
    for (const hub of hubs) {
      const bin = Buffer.from(await (await fetch(`${hub.url}/api/builds/${id}/artifact`)).arrayBuffer());
      assert.equal(createHash('sha256').update(bin).digest('hex'), done.sha256);
    }
    assert.deepEqual(await objectsFor(id), ['binary', 'build.log', 'buildinfo.json', 'meta.json', 'provenance.json', 'sbom.json']);
  });

  test("a job forged in Redis (its spec is not its key's) is refused by the agent at once: no retry, no build, nothing stored", async () => {
    // Someone with write access to Redis queues a job under the key of a plain linux/amd64 Caddy
    // whose spec adds a plugin: a binary with other code under a popular key, if agents trusted it.
    const honest = (await api(hubs[0]!.url, '/api/builds')).body.builds.find((b: any) => b.status === 'succeeded' && b.spec.plugins.length === 0);
    assert.ok(honest, 'the plain build of the test before');
    // The key of a plain freebsd/amd64 Caddy (not built yet), with a payload that is not that spec.
    const target = { ...honest.spec, os: 'freebsd' };
    const key = cacheKey(target);
    const before = await xcaddy.count();
    const queue = new Queue('builds', { connection: { url: redis.url }, prefix: 'fairway' });
    try {
      const spec = { ...target, plugins: [{ module: 'github.com/evil/caddy-backdoor', version: 'v1.0.0' }] };
      await queue.add('build', { request: { caddyVersion: CADDY_VERSION, os: 'freebsd', arch: 'amd64', plugins: [] }, spec, requestedAt: new Date().toISOString() }, { jobId: key, attempts: 3 });
      let job = await queue.getJob(key);
      for (let i = 0; i < 300 && (await job?.getState()) !== 'failed'; i++) {
        await sleep(100);
        job = await queue.getJob(key);
      }
      assert.equal(await job!.getState(), 'failed');
      assert.match(job!.failedReason, /refused job [0-9a-f]{64}: its spec has the cache key [0-9a-f]{64}, not the job's/);
      assert.equal(job!.attemptsMade, 1, 'not retried');
    } finally {
      await queue.close();
    }
    assert.equal(await xcaddy.count(), before, 'xcaddy never ran');
    assert.deepEqual(await objectsFor(key), [], 'nothing stored under the key');
    const seen = (await api(hubs[1]!.url, `/api/builds/${key}`)).body;
    assert.equal(seen.status, 'failed', JSON.stringify(seen));
    assert.match(seen.error, /refused job/);
  });

  test('jobs forged in Redis whose spec does hash to their key are refused too: foreign build flags, a request that contradicts the spec; nothing built, stored or signed', async () => {
    const honest = (await api(hubs[0]!.url, '/api/builds')).body.builds.find((b: any) => b.status === 'succeeded' && b.spec.plugins.length === 0);
    assert.ok(honest, 'the plain build of an earlier test');
    const before = await xcaddy.count();
    const queue = new Queue('builds', { connection: { url: redis.url }, prefix: 'fairway' });
    const cases = [
      {
        what: 'foreign flags',
        spec: { ...honest.spec, os: 'openbsd', toolchain: { ...honest.spec.toolchain, flags: '-ldflags=-X main.backdoor=1' } },
        request: { caddyVersion: CADDY_VERSION, os: 'openbsd', arch: 'amd64', plugins: [] },
        reason: /it was keyed for the build flags "-ldflags=-X main\.backdoor=1", but this agent builds with xcaddy-default\+sorted-plugins/,
      },
      {
        what: 'a request contradicting its spec',
        spec: { ...honest.spec, os: 'netbsd' },
        request: { caddyVersion: CADDY_VERSION, os: 'netbsd', arch: 'amd64', plugins: [{ module: 'github.com/evil/caddy-backdoor', version: 'v1.0.0' }] },
        reason: /its request contradicts its spec: the request's plugin "github\.com\/evil\/caddy-backdoor" is not in the spec/,
      },
    ];
    try {
      for (const c of cases) {
        const key = cacheKey(c.spec);
        await queue.add('build', { request: c.request, spec: c.spec, requestedAt: new Date().toISOString() }, { jobId: key, attempts: 3 });
        let job = await queue.getJob(key);
        for (let i = 0; i < 300 && (await job?.getState()) !== 'failed'; i++) {
          await sleep(100);
          job = await queue.getJob(key);
        }
        assert.equal(await job!.getState(), 'failed', c.what);
        assert.match(job!.failedReason, c.reason, c.what);
        assert.equal(job!.attemptsMade, 1, `${c.what}: not retried`);
        assert.deepEqual(await objectsFor(key), [], `${c.what}: nothing stored (no binary, no provenance) under the key`);
      }
    } finally {
      await queue.close();
    }
    assert.equal(await xcaddy.count(), before, 'xcaddy never ran');
    // The agent that took each job says why in its log.
    // (JSON log lines: the quotes in the reasons are escaped there.)
    const logs = Object.values(agents)
      .map((a) => a.output())
      .join('\n')
      .replace(/\\"/g, '"');
    for (const c of cases) assert.match(logs, c.reason, `an agent's log says why (${c.what})`);
  });

  test('rate limits are shared by the hubs through Redis: one allowance per client across all of them', async () => {
    // Behind a trusted proxy, so that this test is a client of its own (the other tests share 127.0.0.1).
    const limited = await Promise.all([0, 1].map(() => startFairway({ command: 'hub', args: [...hubArgs(), '--rate-limit', '6', '--rate-limit-window', '1m', '--trust-proxy', '127.0.0.1'], env })));
    const client = { 'x-forwarded-for': `198.51.100.${1 + (Date.now() % 250)}` };
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await api(limited[i % 2]!.url, '/api/versions', { headers: client })).status);
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200]);
      // Each hub has seen only 3 requests; counted alone, either would still allow 3 more.
      for (const hub of limited) {
        const r = await api(hub.url, '/api/versions', { headers: client });
        assert.equal(r.status, 429, JSON.stringify(r.body));
        assert.equal(r.body.error.code, 'rate_limited');
        assert.ok(Number(r.headers.get('retry-after')) > 0);
      }
      // Another client has its own allowance; health checks are never limited.
      assert.equal((await api(limited[0]!.url, '/api/versions', { headers: { 'x-forwarded-for': '192.0.2.77' } })).status, 200);
      assert.equal((await api(limited[0]!.url, '/healthz', { headers: client })).status, 200);
    } finally {
      await Promise.all(limited.map((h) => h.stop()));
    }
  });

  test("maxActiveBuilds holds across hubs: a client's active builds are counted in Redis", { timeout: BUILD }, async () => {
    const limited = await Promise.all([0, 1].map(() => startFairway({ command: 'hub', args: [...hubArgs(), '--max-active-builds', '1', '--trust-proxy', '127.0.0.1'], env })));
    const client = { 'x-forwarded-for': '203.0.113.9' };
    const post = (hub: FairwayProcess, arch: string) => api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'freebsd', arch }, headers: client });
    const until = async (id: string) => {
      for (let i = 0; i < 300; i++) {
        if (!['queued', 'running'].includes((await api(hubs[0]!.url, `/api/builds/${id}`)).body.status)) return;
        await sleep(100);
      }
      throw new Error(`build ${id} did not end`);
    };
    try {
      const first = await post(limited[0]!, 'arm64');
      assert.equal(first.status, 202, JSON.stringify(first.body));
      // On the other hub: a second build is one too many for this client; joining the first is free.
      const second = await post(limited[1]!, '386');
      assert.equal(second.status, 429, JSON.stringify(second.body));
      assert.equal(second.body.error.code, 'too_many_builds');
      assert.equal((await post(limited[1]!, 'arm64')).status, 202);
      // Once the first has ended (canceled by its client, on the other hub), the client may start another.
      assert.equal((await api(limited[1]!.url, `/api/builds/${first.body.id}`, { method: 'DELETE', headers: client })).status, 200);
      await until(first.body.id);
      const third = await post(limited[1]!, '386');
      assert.equal(third.status, 202, JSON.stringify(third.body));
      assert.equal((await api(limited[0]!.url, `/api/builds/${third.body.id}`, { method: 'DELETE', headers: client })).status, 200);
      await until(third.body.id);
    } finally {
      await Promise.all(limited.map((h) => h.stop()));
    }
  });

  test('kill -9 of the agent running a build: the other agent completes it, nothing partial is left', { timeout: BUILD }, async () => {
    const res = await api(hubs[0]!.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'arm64', plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.id as string;
    const following = collect(`${hubs[1]!.url.replace('http', 'ws')}/api/builds/${id}/log`);
    let victim = '';
    for (let i = 0; i < 600 && !victim; i++) {
      const b = (await api(hubs[0]!.url, `/api/builds/${id}`)).body;
      if (b.status === 'running' && b.agent) victim = b.agent;
      else await sleep(100);
    }
    assert.ok(victim === 'agent-a' || victim === 'agent-b', `running on ${victim}`);
    await sleep(1500);
    agents[victim.slice(-1)]!.proc.kill('SIGKILL');
    const done = await waitForBuild(hubs[0]!.url, id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    assert.notEqual(done.agent, victim, 'finished on the other agent');
    const msgs = await following;
    const end = msgs[msgs.length - 1];
    assert.equal(end.type, 'end');
    assert.equal(end.status, 'succeeded');
    assert.ok(
      msgs.some((m) => m.type === 'line' && /attempt \d of \d on agent/.test(m.text) && !m.text.includes(victim)),
      'log shows the hand-over',
    );
    assert.deepEqual(await objectsFor(id), ['binary', 'buildinfo.json', 'build.log', 'meta.json', 'provenance.json', 'sbom.json'].sort());
    const bin = Buffer.from(await (await fetch(`${hubs[0]!.url}/api/builds/${id}/artifact`)).arrayBuffer());
    assert.equal(createHash('sha256').update(bin).digest('hex'), done.sha256);
    // Bring a second agent back for the following tests.
    agents[victim.slice(-1)] = await startAgent(victim);
  });

  test('restart the hub mid-build: nothing is lost, a reconnecting websocket gets the whole log', { timeout: BUILD }, async () => {
    const hub = hubs[0]!;
    const res = await api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'windows', arch: 'amd64', plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
    const id = res.body.id as string;
    const wsUrl = `${hub.url.replace('http', 'ws')}/api/builds/${id}/log`;
    const firstPart = await collect(wsUrl, 5);
    const got = firstPart.filter((m) => m.type === 'line');
    assert.ok(got.length >= 5);
    const port = hub.port;
    await hub.stop('SIGKILL');
    await sleep(500);
    hubs[0] = await startHub(port);
    const next = got[got.length - 1].seq + 1;
    const rest = await collect(`${wsUrl}?from=${next}`);
    const lines = [...got, ...rest.filter((m) => m.type === 'line')];
    assert.deepEqual(
      lines.map((l) => l.seq),
      lines.map((_, i) => i),
      'no line lost or repeated across the restart',
    );
    const end = rest[rest.length - 1];
    assert.equal(end.type, 'end');
    assert.equal(end.status, 'succeeded', end.error);
    const stored = await (await fetch(`${hubs[0]!.url}/api/builds/${id}/log`)).text();
    assert.equal(stored.trim().split('\n').length, lines.length, 'the stored log is the same log');
    const listed = await api(hubs[0]!.url, '/api/builds');
    assert.ok(listed.body.builds.some((b: any) => b.id === id && b.status === 'succeeded'));
    const dl = await fetch(`${hubs[0]!.url}/api/builds/${id}/artifact`);
    assert.equal(dl.headers.get('content-disposition'), 'attachment; filename="caddy_windows_amd64.exe"');
    assert.equal(
      Buffer.from(await dl.arrayBuffer())
        .subarray(0, 2)
        .toString(),
      'MZ',
    );
  });

  test('restart Redis: hubs and agents reconnect by themselves and new builds work', { timeout: BUILD }, async () => {
    await redis.restart();
    let res: { status: number; body: any } | undefined;
    for (let i = 0; i < 60; i++) {
      res = await api(hubs[1]!.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
      if (res.status === 202 || res.status === 200) break;
      await sleep(500);
    }
    assert.ok(res && (res.status === 202 || res.status === 200), JSON.stringify(res?.body));
    const done = await waitForBuild(hubs[0]!.url, res!.body.id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    for (let i = 0; i < 40; i++) {
      const a = await api(hubs[0]!.url, '/api/agents');
      if (a.body.agents?.length === 2) return;
      await sleep(500);
    }
    assert.fail('agents did not re-register after the Redis restart');
  });

  test('S3 unreachable during upload: the attempt fails clearly, is retried, and no partial artifact is visible', { timeout: BUILD }, async () => {
    const res = await api(hubs[0]!.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'arm64' } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.id as string;
    // Take S3 away as soon as xcaddy runs; the upload at the end of the build then fails.
    for (let i = 0; i < 600; i++) {
      const b = (await api(hubs[0]!.url, `/api/builds/${id}`)).body;
      if (b.status === 'running') break;
      await sleep(100);
    }
    await s3.stop();
    let failedAttempt = '';
    for (let i = 0; i < 1200 && !failedAttempt; i++) {
      const text = await (await fetch(`${hubs[0]!.url}/api/builds/${id}/log`)).text();
      failedAttempt = text.split('\n').find((l) => /attempt 1 failed/.test(l)) ?? '';
      if (!failedAttempt) await sleep(250);
    }
    assert.match(failedAttempt, /S3|store|upload|ECONNREFUSED|connect/i, 'the failure names the store');
    await s3.start();
    assert.equal((await objectsFor(id)).includes('meta.json'), false, 'not published after the failed attempt');
    const done = await waitForBuild(hubs[0]!.url, id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    assert.deepEqual(await objectsFor(id), ['binary', 'build.log', 'buildinfo.json', 'meta.json', 'provenance.json', 'sbom.json']);
    const meta = JSON.parse(await (await s3client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `fw/artifacts/${id}/meta.json` }))).Body!.transformToString());
    assert.equal(meta.sha256, done.sha256);
  });

  test('an agent asked to stop (SIGTERM) finishes its running build, then exits cleanly', { timeout: BUILD }, async () => {
    const res = await api(hubs[0]!.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'freebsd', arch: 'amd64' } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.id as string;
    let runner = '';
    for (let i = 0; i < 600 && !runner; i++) {
      const b = (await api(hubs[0]!.url, `/api/builds/${id}`)).body;
      if (b.status === 'running' && b.agent) runner = b.agent;
      else await sleep(100);
    }
    assert.ok(runner, 'the build started on an agent');
    const agent = agents[runner.slice(-1)]!;
    const exit = agent.stop('SIGTERM');
    const done = await waitForBuild(hubs[0]!.url, id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    assert.equal(done.agent, runner, 'finished by the agent that was stopping, not handed over');
    assert.equal(await exit, 0, 'clean exit after the build');
    assert.match(agent.output(), /shutting down: finishing running builds/);
    agents[runner.slice(-1)] = await startAgent(runner);
  });

  test('with --download-redirect and a presigning store, downloads redirect to S3 and the bytes match', async () => {
    const listed = (await api(hubs[0]!.url, '/api/builds')).body.builds.find((b: any) => b.status === 'succeeded');
    const redirecting = await startFairway({
      command: 'hub',
      args: ['--redis', redis.url, '--store', `${storeUrl}&presign=120`, '--xcaddy-bin', xcaddy.bin, '--download-redirect'],
      env,
    });
    hubs.push(redirecting);
    const res = await fetch(`${redirecting.url}/api/builds/${listed.id}/artifact`, { redirect: 'manual' });
    assert.equal(res.status, 302);
    const location = res.headers.get('location')!;
    assert.ok(location.startsWith(s3.endpoint), location);
    assert.match(location, /X-Amz-Signature=/);
    const bin = Buffer.from(await (await fetch(location)).arrayBuffer());
    assert.equal(createHash('sha256').update(bin).digest('hex'), listed.sha256);
  });

  test('a hub started from scratch rebuilds its index from the S3 listing; running hubs resync to it', async () => {
    const listing = await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'fw/artifacts/' }));
    const inStore = (listing.Contents ?? [])
      .filter((o) => o.Key!.endsWith('/meta.json'))
      .map((o) => o.Key!.split('/')[2]!)
      .sort();
    assert.ok(inStore.length >= 5);
    const fresh = await startHub();
    hubs.push(fresh);
    const listed = (await api(fresh.url, '/api/builds')).body.builds.map((b: any) => b.id).sort();
    assert.deepEqual(listed, inStore);
    // The long-running hubs converge on the listing too (they resync every --index-rescan-interval).
    for (const hub of hubs.slice(0, 2)) {
      let ids: string[] = [];
      for (let i = 0; i < 40; i++) {
        ids = (await api(hub.url, '/api/builds')).body.builds.map((b: any) => b.id).sort();
        if (ids.join() === inStore.join()) break;
        await sleep(250);
      }
      assert.deepEqual(ids, inStore);
    }
  });
});
