/**
 * Reproducibility: two agents with separate Go caches build the same spec and produce
 * the same binary: same sha256, same size, same Go build info.
 *
 * Real parts: Redis, an S3-compatible server, a hub and two `fairway agent` processes, real
 * xcaddy. Agent A uses the shared test cache (warm, inside the repository's checkout); agent B an
 * empty temp dir outside it, so its build downloads every module from the proxy and compiles
 * everything from scratch. Between the two builds the artifact is deleted from the store and a
 * fresh hub (whose index is rebuilt from the store) takes the request, so the second agent really
 * builds the same key again. One spec only: a cold Caddy build takes minutes on two cores.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { api, CADDY_VERSION, startFairway, tempDir, waitForBuild, XCADDY, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';

const run = promisify(execFile);
const BUILD = 25 * 60_000;

describe('reproducibility: two agents with separate Go caches build the same binary', { timeout: 40 * 60_000 }, () => {
  let redis: RedisService;
  let s3: S3Service;
  let s3client: S3Client;
  let dir: string;
  let freshCache: string;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  const procs: FairwayProcess[] = [];

  const hub = async () => {
    const p = await startFairway({ command: 'hub', args: ['--redis', redis.url, '--store', storeUrl], env });
    procs.push(p);
    return p;
  };
  const agent = async (id: string, cacheArgs: string[] = []) => {
    const p = await startFairway({
      command: 'agent',
      args: ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', XCADDY, '--agent-id', id, '--concurrency', '1', '--build-timeout', '25m', ...cacheArgs],
      env,
    });
    procs.push(p);
    return p;
  };
  const keysUnder = async (prefix: string) => ((await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!);

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await tempDir('fairway-repro-');
    freshCache = join(dir, 'go-fresh');
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    s3client = new S3Client(s3.clientConfig());
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await Promise.all([redis?.destroy(), s3?.destroy()]);
    s3client?.destroy();
    // Go makes its module cache read-only; make it writable to delete it.
    if (dir) {
      await run('chmod', ['-R', 'u+w', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('same spec on agent A (shared warm cache) and agent B (empty cache): identical sha256 and build info', { timeout: 2 * BUILD }, async () => {
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' };

    // Build 1 on agent A, the shared cache of the test suite.
    const hubA = await hub();
    const agentA = await agent('repro-a');
    const first = await api(hubA.url, '/api/builds', { json: spec });
    assert.ok(first.status === 202, `expected a new build: ${JSON.stringify(first.body)}`);
    const a = await waitForBuild(hubA.url, first.body.id, BUILD);
    assert.equal(a.status, 'succeeded', a.error);
    assert.equal(a.agent, 'repro-a');
    const infoA = (await api(hubA.url, `/api/builds/${a.id}/buildinfo`)).body;
    const binA = Buffer.from(await (await fetch(`${hubA.url}/api/builds/${a.id}/artifact`)).arrayBuffer());
    assert.equal(createHash('sha256').update(binA).digest('hex'), a.sha256);

    // Take agent A and its artifact away; a fresh hub rebuilds its index from the (now empty) store.
    await agentA.stop();
    await hubA.stop();
    const objects = await keysUnder(`fw/artifacts/${a.id}/`);
    assert.ok(objects.length >= 2, `artifact objects: ${objects.join(', ')}`);
    await s3client.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: objects.map((Key) => ({ Key })) } }));
    assert.deepEqual(await keysUnder(`fw/artifacts/${a.id}/`), []);

    // Build 2 on agent B with its own, empty Go caches (outside any VCS checkout).
    const hubB = await hub();
    await agent('repro-b', ['--cache-dir', freshCache]);
    const second = await api(hubB.url, '/api/builds', { json: spec });
    assert.equal(second.status, 202, `expected a rebuild, not a cache hit: ${JSON.stringify(second.body)}`);
    assert.equal(second.body.id, a.id, 'same spec, same cache key');
    const b = await waitForBuild(hubB.url, second.body.id, BUILD);
    assert.equal(b.status, 'succeeded', b.error);
    assert.equal(b.agent, 'repro-b');

    // Agent B really used its own caches: the modules were downloaded into it and compiled there.
    assert.ok(existsSync(join(freshCache, 'mod', 'cache', 'download', 'github.com', 'caddyserver', 'caddy', 'v2', '@v', `${CADDY_VERSION}.zip`)), 'caddy module downloaded into the fresh cache');
    assert.ok((await readdir(join(freshCache, 'build'))).length > 10, 'the fresh build cache was filled');

    const infoB = (await api(hubB.url, `/api/builds/${b.id}/buildinfo`)).body;
    const binB = Buffer.from(await (await fetch(`${hubB.url}/api/builds/${b.id}/artifact`)).arrayBuffer());
    assert.equal(createHash('sha256').update(binB).digest('hex'), b.sha256);

    assert.equal(b.size, a.size, 'same size');
    assert.deepEqual(infoB, infoA, 'same Go build info (module versions, sums, build settings)');
    assert.ok(!JSON.stringify(infoA).includes('vcs.revision'), 'no VCS stamp of whatever checkout holds the cache');
    assert.equal(b.sha256, a.sha256, 'same sha256 from separate Go caches');
  });
});
