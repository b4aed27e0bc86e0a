// The shared build cache (src/fleet/gocache.ts, tools/cacheprog) with a real `go build` of a tiny
// program: GOCACHEPROG=.tools/bin/fairway-cacheprog, a fresh GOCACHE per build, the fs store as
// the shared tier. No sandbox here (test/integration/gocache-sandbox.test.ts has it): go runs
// directly, talking to the server's socket. An integration test because it runs Go (CONTRIBUTING).
//   node --import tsx --test test/integration/gocache.test.ts
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { GoCacheServer, flushingGoCache } from '../../src/fleet/index.js';
import { FsStore, openStore, type ArtifactStore } from '../../src/store/index.js';
import { startS3, type S3Service } from '../helpers/services.js';
import { tempDir } from '../helpers/fairway.js';
import { CACHEPROG, writeTinyProgram } from '../helpers/gocache.js';

const execFileP = promisify(execFile);
async function goBuild(dir: string, gocache: string, socket: string): Promise<string> {
  const out = join(dir, 'tiny');
  await execFileP('go', ['build', '-o', out, '.'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOME: dir,
      GOCACHE: gocache,
      GOCACHEPROG: CACHEPROG,
      FAIRWAY_GOCACHE_SOCKET: socket,
      GOTOOLCHAIN: 'local',
      GOENV: 'off',
      GOFLAGS: '-mod=mod -buildvcs=false',
      GOPROXY: 'off',
      CGO_ENABLED: '0',
      GOTELEMETRY: 'off',
    },
    timeout: 300_000,
  });
  return (await execFileP(out, [])).stdout.trim();
}

function put(socket: string, action: string, output: string, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = http.request({ socketPath: socket, method: 'PUT', path: `/put/${action}/${output}`, headers: { 'content-length': body.length } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (c: string) => (text += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', fail);
    req.end(body);
  });
}

const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('shared build cache with a real go build', () => {
  let root: string;
  let storeRoot: string;
  let shared: ArtifactStore;
  const servers: GoCacheServer[] = [];
  const server = async (name: string) => {
    const s = await GoCacheServer.start({ localDir: join(root, `local-${name}`), shared });
    servers.push(s);
    return s;
  };

  before(async () => {
    assert.ok(existsSync(CACHEPROG), `${CACHEPROG} is missing: run node scripts/setup.mjs`);
    root = await tempDir('fairway-gocache-');
    storeRoot = join(root, 'store');
    shared = await openStore(storeRoot, { area: 'gocache' });
  });
  after(async () => {
    for (const s of servers) await s.close();
    await rm(root, { recursive: true, force: true });
  });

  let firstPuts = 0;
  let firstMisses = 0;

  test('a cold build puts every object, checked, into the local and the shared tier', async () => {
    // The real store behind 150 ms of latency per upload (a slow link to the bucket), two at a
    // time: the uploads outlast the go command, so only waiting for them makes the check below pass.
    const slow = new Proxy(shared, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'putBlob' || typeof v !== 'function') return typeof v === 'function' ? v.bind(target) : v;
        return async (...args: [string, string]) => {
          await new Promise((r) => setTimeout(r, 150));
          return (v as ArtifactStore['putBlob']).apply(target, args);
        };
      },
    });
    const s1 = await GoCacheServer.start({ localDir: join(root, 'local-1'), shared: slow, uploadConcurrency: 2 });
    servers.push(s1);
    const dir = join(root, 'src1');
    await writeTinyProgram(dir, 'hello');
    // As an agent runs a build: it ends only once its puts are in the shared tier.
    assert.equal(await flushingGoCache(s1, () => goBuild(dir, join(root, 'gocache-1'), s1.socketPath))(), 'HELLO, fleet');
    for (const sub of await readdir(join(root, 'local-1', 'o'))) {
      for (const n of await readdir(join(root, 'local-1', 'o', sub))) assert.ok(existsSync(join(storeRoot, 'gocache', 'blobs', 'sha256', n)), `${n} is not in the shared tier yet`);
    }
    const st = s1.stats();
    firstPuts = st.puts;
    firstMisses = st.misses;
    assert.ok(st.puts > 10, `only ${st.puts} puts`);
    assert.ok(st.misses > 10, `only ${st.misses} misses`);
    assert.equal(st.hits, 0);
    assert.equal(st.refused, 0);
    assert.equal(st.uploadsDropped, 0);
    assert.ok(st.sharedBytesWritten > 100_000, `only ${st.sharedBytesWritten} bytes written to the shared tier`);
    // The shared tier is in the store's gocache/ area, by sha256, every blob matching its name.
    const blobDir = join(storeRoot, 'gocache', 'blobs', 'sha256');
    const names = await readdir(blobDir);
    assert.ok(names.length > 10);
    for (const n of names.slice(0, 20)) assert.equal(sha(await readFile(join(blobDir, n))), n);
    assert.ok((await readdir(join(storeRoot, 'gocache', 'records', 'actions'))).length >= names.length);
    // Apart from the artifact store's own areas: its image blobs, artifacts and usage never see the cache.
    const main = await FsStore.open(storeRoot);
    for await (const b of main.listBlobs()) assert.fail(`the artifact store lists a blob ${b.digest}`);
    assert.equal((await main.usage()).bytes, 0);
    assert.equal((await main.stats()).bytes, 0);
  });

  test('a second build in a fresh GOCACHE and a fresh local tier is answered from the shared tier', async () => {
    const s2 = await server('2');
    const dir = join(root, 'src2');
    await writeTinyProgram(dir, 'hello');
    assert.equal(await goBuild(dir, join(root, 'gocache-2'), s2.socketPath), 'HELLO, fleet');
    await s2.flush();
    const st = s2.stats();
    assert.ok(st.sharedHits > 10, `only ${st.sharedHits} shared hits`);
    assert.equal(st.localHits, 0);
    // Nothing was compiled again: no more misses than the first build's objects the go command never reads back.
    assert.ok(st.misses < firstMisses / 4, `${st.misses} misses (the cold build had ${firstMisses})`);
    assert.ok(st.puts < firstPuts / 4, `${st.puts} puts (the cold build had ${firstPuts})`);
    assert.ok(st.sharedBytesRead > 100_000);
    assert.equal(st.corrupt.shared, 0);
    // A third build with the same local tier hits locally.
    assert.equal(await goBuild(dir, join(root, 'gocache-2b'), s2.socketPath), 'HELLO, fleet');
    assert.ok(s2.stats().localHits > 10, `only ${s2.stats().localHits} local hits`);
  });

  test('a corrupted shared entry is detected, deleted, not used, and the build still succeeds', async () => {
    // The largest blob: the biggest package archive or the linked binary, read by every build.
    const blobDir = join(storeRoot, 'gocache', 'blobs', 'sha256');
    const sizes = await Promise.all((await readdir(blobDir)).map(async (n) => ({ n, size: (await stat(join(blobDir, n))).size })));
    const victim = sizes.sort((a, b) => b.size - a.size)[0]!.n;
    const path = join(blobDir, victim);
    const bytes = await readFile(path);
    bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
    await writeFile(path, bytes);
    assert.notEqual(sha(await readFile(path)), victim);

    const s3 = await server('3');
    const dir = join(root, 'src3');
    await writeTinyProgram(dir, 'hello');
    assert.equal(await goBuild(dir, join(root, 'gocache-3'), s3.socketPath), 'HELLO, fleet');
    await s3.flush();
    const st = s3.stats();
    assert.equal(st.corrupt.shared, 1, JSON.stringify(st));
    assert.ok(st.misses >= 1);
    // The go command made the object again and put it: the store holds the right bytes now.
    assert.equal(sha(await readFile(path)), victim);
    // The local tier never kept the corrupt bytes.
    const local = join(root, 'local-3', 'o', victim.slice(0, 2), victim);
    assert.equal(sha(await readFile(local)), victim);
  });

  test('a corrupted local entry is detected and replaced from the shared tier', async () => {
    const s2 = servers[1]!;
    const outDir = join(root, 'local-2', 'o');
    let victim = '';
    let size = 0;
    for (const sub of await readdir(outDir)) {
      for (const n of await readdir(join(outDir, sub))) {
        const s = (await stat(join(outDir, sub, n))).size;
        if (s > size) [victim, size] = [n, s];
      }
    }
    const path = join(outDir, victim.slice(0, 2), victim);
    const bytes = await readFile(path);
    bytes[7]! ^= 0x01;
    await writeFile(path, bytes);
    const before = s2.stats();
    const dir = join(root, 'src2');
    assert.equal(await goBuild(dir, join(root, 'gocache-2c'), s2.socketPath), 'HELLO, fleet');
    const st = s2.stats();
    assert.equal(st.corrupt.local - before.corrupt.local, 1);
    assert.equal(sha(await readFile(path)), victim);
  });

  test('a put whose body is not its OutputID is refused and kept nowhere', async () => {
    const s = servers[0]!;
    const body = Buffer.from('not what the OutputID says');
    const claimed = sha('something else');
    const action = sha('an action');
    const r = await put(s.socketPath, action, claimed, body);
    assert.equal(r.status, 400, r.body);
    assert.match(r.body, /refused/);
    assert.equal(s.stats().refused, 1);
    await s.flush();
    assert.equal(await shared.statBlob(`sha256:${claimed}`), null);
    assert.equal(await shared.getRecord('actions', action), null);
    assert.equal(existsSync(join(root, 'local-1', 'o', claimed.slice(0, 2), claimed)), false);
    // The right body under the same names is accepted.
    const good = await put(s.socketPath, action, sha(body), body);
    assert.equal(good.status, 200, good.body);
    await s.flush();
    assert.ok(await shared.statBlob(`sha256:${sha(body)}`));
  });

  test('both tiers keep to their byte budgets, least recently used out first', async () => {
    const localDir = join(root, 'local-budget');
    const small = await GoCacheServer.start({ localDir, shared, localMaxBytes: 200_000, protectRecentMs: 0, sharedMaxBytes: 1_000_000 });
    servers.push(small);
    const dir = join(root, 'src-budget');
    await writeTinyProgram(dir, 'hello');
    assert.equal(await goBuild(dir, join(root, 'gocache-budget'), small.socketPath), 'HELLO, fleet');
    await small.flush();
    // Use one small entry now: the least recently used go first, so it stays.
    let kept: { action: string; output: string } | null = null;
    for (const sub of await readdir(join(localDir, 'a'))) {
      for (const action of await readdir(join(localDir, 'a', sub))) {
        const e = JSON.parse(await readFile(join(localDir, 'a', sub, action), 'utf8')) as { o: string; size: number };
        if (!kept && e.size > 1000 && e.size < 50_000) kept = { action, output: e.o };
      }
    }
    assert.ok(kept);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal((await small.get(kept.action)).OutputID, kept.output);
    await new Promise((r) => setTimeout(r, 50)); // the hit renews the entry's time in the background
    const l = await small.pruneLocal();
    assert.ok(l.removed > 0 && l.bytes <= 200_000, JSON.stringify(l));
    assert.ok(existsSync(join(localDir, 'o', kept.output.slice(0, 2), kept.output)), 'the entry used last was pruned');
    const s = await small.pruneShared();
    assert.ok(s.removed > 0 && s.bytes <= 1_000_000, JSON.stringify(s));
    let total = 0;
    for await (const b of shared.listBlobs()) total += b.size;
    assert.ok(total <= 1_000_000, `${total} bytes left in the shared tier`);
    // Builds still work from what is left (misses are rebuilt).
    assert.equal(await goBuild(dir, join(root, 'gocache-budget-2'), small.socketPath), 'HELLO, fleet');
  });
});

describe('shared build cache on the real S3 server: two agents', () => {
  let root: string;
  let s3: S3Service;
  let storeUrl: string;
  const servers: GoCacheServer[] = [];
  const saved: Record<string, string | undefined> = {};

  before(async () => {
    root = await tempDir('fairway-gocache-s3-');
    s3 = await startS3();
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    // The agents' way: credentials from the AWS SDK chain (the environment), never in the URL.
    for (const [k, v] of Object.entries({ AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region })) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
  });
  after(async () => {
    for (const s of servers) await s.close();
    await s3?.destroy();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await rm(root, { recursive: true, force: true });
  });

  test('agent B builds from what agent A put; a corrupt object in the bucket is caught', async () => {
    const agent = async (name: string) => {
      const s = await GoCacheServer.start({ localDir: join(root, `local-${name}`), shared: await openStore(storeUrl, { area: 'gocache' }), ownsShared: true });
      servers.push(s);
      return s;
    };
    const a = await agent('a');
    const dir = join(root, 'src');
    await writeTinyProgram(dir, 'hey');
    assert.equal(await goBuild(dir, join(root, 'gocache-a'), a.socketPath), 'HEY, fleet');
    await a.flush();
    assert.ok(a.stats().sharedBytesWritten > 100_000, JSON.stringify(a.stats()));
    // In the bucket under <prefix>gocache/, not in the artifact store's blob area.
    const blobDir = join(s3.dataDir, s3.bucket, 'fw', 'gocache', 'blobs', 'sha256');
    const names = await readdir(blobDir);
    assert.ok(names.length > 10);
    const main = await openStore(`s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`);
    for await (const b of main.listBlobs()) assert.fail(`the artifact store lists a blob ${b.digest}`);
    await main.close();

    const b = await agent('b');
    assert.equal(await goBuild(dir, join(root, 'gocache-b'), b.socketPath), 'HEY, fleet');
    const sb = b.stats();
    assert.ok(sb.sharedHits > 10, JSON.stringify(sb));
    assert.equal(sb.corrupt.shared, 0);

    // Flip a byte of the largest object in the bucket: agent C catches it and still builds.
    const sizes = await Promise.all(names.map(async (n) => ({ n, size: (await stat(join(blobDir, n))).size })));
    const victim = sizes.sort((x, y) => y.size - x.size)[0]!.n;
    const bytes = await readFile(join(blobDir, victim));
    bytes[100]! ^= 0x20;
    await writeFile(join(blobDir, victim), bytes);
    const c = await agent('c');
    assert.equal(await goBuild(dir, join(root, 'gocache-c'), c.socketPath), 'HEY, fleet');
    await c.flush();
    assert.equal(c.stats().corrupt.shared, 1, JSON.stringify(c.stats()));
    assert.equal(sha(await readFile(join(blobDir, victim))), victim);
  });
});
