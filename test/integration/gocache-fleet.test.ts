// The shared build cache in a fleet: a real hub and two real agents (`fairway agent
// --go-cache-shared`, separate OS processes) on a real Redis and the real S3 server. A build runs on
// one agent; its verification rebuild goes to the other agent, whose go build is answered from
// the shared tier in the bucket; GET /api/agents shows each agent's hits.
//
// Stand-in: xcaddy is a script that compiles a tiny Go program (the real go command, in the real
// build sandbox, through GOCACHEPROG) instead of Caddy: the part under test is the cache and its
// wiring, and a cold Caddy build per agent is too slow for this machine (two shared cores).
//   FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/gocache-fleet.test.ts
import assert from 'node:assert/strict';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';

const STANDIN = [
  '#!/bin/sh',
  'if [ "$1" = "version" ]; then echo "v0.4.7 h1:gocache-standin"; exit 0; fi',
  'set -e',
  'mkdir -p src/greet',
  "printf 'module caddy\\n\\ngo 1.22\\n' > src/go.mod",
  `printf 'package greet\\n\\nimport "strings"\\n\\nfunc Hello() string { return strings.Repeat("v2.0.0-standin ", 1) }\\n' > src/greet/greet.go`,
  `printf 'package main\\n\\nimport (\\n\\t"fmt"\\n\\n\\t"caddy/greet"\\n)\\n\\nfunc main() { fmt.Println(greet.Hello()) }\\n' > src/main.go`,
  'cd src && "$XCADDY_WHICH_GO" build -trimpath -o "$4" .',
  'echo "[INFO] Build complete: $4"',
].join('\n');

describe('shared build cache: hub + two agents on Redis and S3', { timeout: 15 * 60_000 }, () => {
  let redis: RedisService;
  let s3: S3Service;
  let dir: string;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  let xcaddy: string;
  const procs: FairwayProcess[] = [];
  let hub: FairwayProcess;
  const agents: Record<string, FairwayProcess> = {};

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await tempDir('fairway-gocache-fleet-');
    xcaddy = join(dir, 'xcaddy');
    await writeFile(xcaddy, `${STANDIN}\n`);
    await chmod(xcaddy, 0o755);
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    hub = await startFairway({ command: 'hub', args: ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', xcaddy], env });
    procs.push(hub);
    for (const id of ['agent-a', 'agent-b']) {
      // Each agent its own Go caches (a fresh GOCACHE and local tier): what they share is the bucket.
      agents[id] = await startFairway({
        command: 'agent',
        args: ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', xcaddy, '--agent-id', id, '--cache-dir', join(dir, id, 'go'), '--go-cache-shared'],
        env,
      });
      procs.push(agents[id]);
    }
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await Promise.all([redis?.destroy(), s3?.destroy()]);
  });

  test('each agent says where its caches come from', () => {
    for (const a of Object.values(agents)) assert.match(a.output(), /shared build cache on/);
    assert.match(agents['agent-a']!.output(), /"shared":"s3 store, gocache\/"/);
  });

  test("a rebuild on the other agent is answered from the first agent's puts in the bucket", async () => {
    const res = await api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const first = await waitForBuild(hub.url, res.body.id, 5 * 60_000);
    assert.equal(first.status, 'succeeded', JSON.stringify(first));
    const builtBy: string = first.agent;
    const other = builtBy === 'agent-a' ? 'agent-b' : 'agent-a';
    // The build ended after its puts were in the bucket.
    const blobs = await readdir(join(s3.dataDir, s3.bucket, 'fw', 'gocache', 'blobs', 'sha256'));
    assert.ok(blobs.length > 10, `${blobs.length} objects in the shared tier`);

    const rb = await api(hub.url, `/api/builds/${res.body.id}/rebuild`, { method: 'POST' });
    assert.ok([200, 202].includes(rb.status), JSON.stringify(rb.body));
    const again = await waitForBuild(hub.url, rb.body.id, 5 * 60_000);
    assert.equal(again.status, 'succeeded', JSON.stringify(again));
    assert.equal(again.agent, other);

    // The heartbeats carry each agent's figures (written every 5 s).
    const deadline = Date.now() + 20_000;
    let cache: Record<string, any> = {};
    for (;;) {
      const list = await api(hub.url, '/api/agents');
      cache = Object.fromEntries(list.body.agents.map((a: any) => [a.id, a.cache]));
      if (cache[other]?.sharedHits > 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(cache[builtBy]?.shared, true, JSON.stringify(cache));
    assert.ok(cache[builtBy].misses > 10, JSON.stringify(cache));
    assert.ok(cache[other]?.sharedHits > 10, JSON.stringify(cache));
    assert.ok(cache[other].hitRate > 0.5, JSON.stringify(cache));
    assert.equal(cache[other].corrupt, 0);
  });
});
