/**
 * Reproducibility: agents with separate Go caches, with and without the fleet caches, build the
 * same spec (its two plugins listed in another order each time) and produce the same binary: same
 * sha256, same size, same Go build info; and signed
 * provenance (the same key on every agent, as a fleet has) that differs only in the builder and
 * the times.
 *
 * Real parts: Redis, an S3-compatible server, a hub and three `fairway agent` processes, real
 * xcaddy. Agent A uses the shared test cache (warm, inside the repository's checkout) and no fleet
 * caches. Agent B has an empty temp dir outside it and the fleet caches (docs/distributed.md):
 * its modules come through the hub's module proxy (itself empty: it fills from the upstream
 * proxy) and its build cache is the GOCACHEPROG program with an empty shared tier in the bucket,
 * so it compiles everything from scratch and puts every object there. Between the two builds the
 * artifact is deleted from the store and a fresh hub (whose index is rebuilt from the store)
 * takes the request, so the second agent really builds the same key again. Agent C, new with
 * empty local caches, then does the verification rebuild from the warm fleet: the shared tier's
 * objects and the hub's modules. One spec only: a cold Caddy build takes minutes on two cores.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { sha256Hash } from '../../src/auth/index.js';
import { createKeyPair, publicKeyFromPem, readStatement, verifyProvenance, type DsseEnvelope, type Statement } from '../../src/provenance/index.js';
import { api, CADDY_VERSION, startFairway, tempDir, waitForBuild, XCADDY, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';

const run = promisify(execFile);
const BUILD = 25 * 60_000;
const AGENT_TOKEN = 'fw_repro_fleet_agent_0123456789abcdef0123';

/** Module files the hub's module proxy answered (from its cache, or filled from the upstream). */
async function goproxyAnswers(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^fairway_goproxy_requests_total\{result="(hit|fill)"\} (\d+)$/gm)) n += Number(m[2]);
  return n;
}

async function until(cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('reproducibility: two agents with separate Go caches build the same binary', { timeout: 40 * 60_000 }, () => {
  let redis: RedisService;
  let s3: S3Service;
  let s3client: S3Client;
  let dir: string;
  let freshCache: string;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  let keyFile: string;
  const keys = createKeyPair();
  const procs: FairwayProcess[] = [];
  /** A statement without what may differ between two builders of the same spec: the builder and the times. */
  const sameParts = (s: Statement) => ({
    ...s,
    predicate: { ...s.predicate, runDetails: { ...s.predicate.runDetails, builder: null, metadata: { ...s.predicate.runDetails.metadata, startedOn: null, finishedOn: null } } },
  });

  // Agents authenticate to the hub's module proxy with the agent scope; the test's own calls are anonymous.
  const hub = async () => {
    const p = await startFairway({
      command: 'hub',
      args: ['--redis', redis.url, '--store', storeUrl, '--anonymous-scopes', 'read,build'],
      env: { ...env, FAIRWAY_TOKENS: `fleet:agent:${sha256Hash(AGENT_TOKEN)}` },
    });
    procs.push(p);
    return p;
  };
  const agent = async (id: string, cacheArgs: string[] = []) => {
    const p = await startFairway({
      command: 'agent',
      args: ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', XCADDY, '--agent-id', id, '--concurrency', '1', '--build-timeout', '25m', '--signing-key', keyFile, ...cacheArgs],
      env: { ...env, FAIRWAY_FLEET_TOKEN: AGENT_TOKEN },
    });
    procs.push(p);
    return p;
  };
  const keysUnder = async (prefix: string) => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys;
  };

  before(async () => {
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await tempDir('fairway-repro-');
    freshCache = join(dir, 'go-fresh');
    keyFile = join(dir, 'fleet.key');
    await writeFile(keyFile, keys.privatePem, { mode: 0o600 });
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

  test('same spec on agent A (warm local cache), agent B (empty caches, cold fleet) and agent C (empty caches, warm fleet): identical sha256 and build info', { timeout: 2 * BUILD }, async () => {
    // Two plugins, listed in one order for agent A and in the other for agent B: one key, one binary.
    const L4 = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };
    const RATELIMIT = { module: 'github.com/mholt/caddy-ratelimit', version: 'v0.1.0' };
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [RATELIMIT, L4] };
    const specOtherOrder = { ...spec, plugins: [L4, RATELIMIT] };

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
    const provA = (await api<DsseEnvelope>(hubA.url, `/api/builds/${a.id}/provenance`)).body;

    // Take agent A and its artifact away; a fresh hub rebuilds its index from the (now empty) store.
    await agentA.stop();
    await hubA.stop();
    const objects = await keysUnder(`fw/artifacts/${a.id}/`);
    assert.ok(objects.length >= 2, `artifact objects: ${objects.join(', ')}`);
    await s3client.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: objects.map((Key) => ({ Key })) } }));
    assert.deepEqual(await keysUnder(`fw/artifacts/${a.id}/`), []);

    // Build 2 on agent B with its own, empty Go caches (outside any VCS checkout) and the fleet caches, both empty.
    const hubB = await hub();
    const fleet = (cacheDir: string) => ['--cache-dir', cacheDir, '--fleet-proxy', hubB.url, '--go-cache-shared'];
    const agentB = await agent('repro-b', fleet(freshCache));
    const second = await api(hubB.url, '/api/builds', { json: specOtherOrder });
    assert.equal(second.status, 202, `expected a rebuild, not a cache hit: ${JSON.stringify(second.body)}`);
    assert.equal(second.body.id, a.id, 'same spec, same cache key');
    const b = await waitForBuild(hubB.url, second.body.id, BUILD);
    assert.equal(b.status, 'succeeded', b.error);
    assert.equal(b.agent, 'repro-b');

    // Agent B really used its own caches and the fleet's: the modules were downloaded into it
    // through the hub (whose module cache now has them), compiled there, and put in the bucket.
    const caddyZip = join('mod', 'cache', 'download', 'github.com', 'caddyserver', 'caddy', 'v2', '@v', `${CADDY_VERSION}.zip`);
    assert.ok(existsSync(join(freshCache, caddyZip)), 'caddy module downloaded into the fresh cache');
    const proxied = await goproxyAnswers(hubB.url);
    assert.ok(proxied > 100, `the hub's module proxy answered ${proxied} module files`);
    assert.match(agentB.output(), /shared build cache on/);
    const sharedObjects = (await keysUnder('fw/gocache/blobs/')).length;
    assert.ok(sharedObjects > 1000, `${sharedObjects} objects in the shared build cache`);

    const infoB = (await api(hubB.url, `/api/builds/${b.id}/buildinfo`)).body;
    const binB = Buffer.from(await (await fetch(`${hubB.url}/api/builds/${b.id}/artifact`)).arrayBuffer());
    assert.equal(createHash('sha256').update(binB).digest('hex'), b.sha256);

    assert.equal(b.size, a.size, 'same size');
    assert.deepEqual(infoB, infoA, 'same Go build info (module versions, sums, build settings)');
    assert.ok(!JSON.stringify(infoA).includes('vcs.revision'), 'no VCS stamp of whatever checkout holds the cache');
    assert.equal(b.sha256, a.sha256, 'same sha256 from separate Go caches');

    // Provenance: both signed by the fleet key, about the same bytes, equal but for builder and times.
    const provB = (await api<DsseEnvelope>(hubB.url, `/api/builds/${b.id}/provenance`)).body;
    const pub = publicKeyFromPem(keys.publicPem);
    const stA = verifyProvenance(provA, pub, a.sha256!).statement;
    const stB = verifyProvenance(provB, pub, b.sha256!).statement;
    assert.equal(stA.predicate.runDetails.builder.id, 'urn:fairway:builder:repro-a');
    assert.equal(stB.predicate.runDetails.builder.id, 'urn:fairway:builder:repro-b');
    assert.notEqual(stA.predicate.runDetails.metadata.startedOn, stB.predicate.runDetails.metadata.startedOn);
    assert.deepEqual(sameParts(stB), sameParts(stA), 'provenance differs only in builder and times');
    assert.deepEqual(readStatement(provB).subject, [{ name: 'caddy_linux_amd64', digest: { sha256: a.sha256 } }]);

    // A verification rebuild of B's build goes to another agent: C, new, with empty local caches
    // in a warm fleet, builds from the shared tier and the hub's modules, and gives the same bytes.
    const cCache = join(dir, 'go-fleet-c');
    await agent('repro-c', fleet(cCache));
    await until(async () => ((await api(hubB.url, '/api/agents')).body.agents as Array<{ id: string }>).length === 2);
    const asked = await api(hubB.url, `/api/builds/${b.id}/rebuild`, { method: 'POST' });
    assert.equal(asked.status, 202, JSON.stringify(asked.body));
    assert.equal(asked.body.rebuildOf, b.id);
    assert.notEqual(asked.body.id, b.id, 'a rebuild has its own id and never replaces the original');
    const r = await waitForBuild(hubB.url, asked.body.id, BUILD);
    assert.equal(r.status, 'succeeded', r.error);
    assert.equal(r.agent, 'repro-c', 'the rebuild ran on the other agent');
    assert.equal(r.sha256, b.sha256, 'the rebuild has the same bytes');
    assert.deepEqual((await api(hubB.url, `/api/builds/${r.id}/buildinfo`)).body, infoA, 'and the same build info');
    const cStats = ((await api(hubB.url, '/api/agents')).body.agents as Array<{ id: string; cache?: { sharedHits: number; hitRate: number } }>).find((x) => x.id === 'repro-c')?.cache;
    assert.ok(cStats && cStats.sharedHits > 1000 && cStats.hitRate > 0.9, `agent C built from the shared tier: ${JSON.stringify(cStats)}`);
    assert.equal((await api(hubB.url, `/api/builds/${b.id}`)).body.sha256, b.sha256, 'the original is untouched');
    const again = await api(hubB.url, `/api/builds/${b.id}/rebuild`, { method: 'POST' });
    assert.equal(again.status, 200, 'one rebuild per build: the finished one answers');
    assert.equal(again.body.id, r.id);
  });
});
