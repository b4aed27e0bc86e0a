/**
 * Image blobs and pruning against a real `fairway serve` on an fs store: two plain Caddy images
 * (caddy:2.11.9 and caddy:2.10.2, linux/amd64) made by the real registry from real builds, then
 * POST /api/admin/prune with a budget the artifact folders alone fit in but the blobs do not. The
 * older artifact goes with its images/<key> record and the blobs only it used; the layer both images
 * share (the base layer, and here the binary layer too: see below) and the other image stay and
 * still pull; the tag indexes (blobs no record names) are collected once past the grace period.
 *
 * Builds use a stand-in xcaddy that copies a real Go binary (xcaddy's own) to --output, so a
 * "build" takes a second (the test is about blobs and pruning, not about compiling Caddy); both
 * builds therefore have the same binary, and both images the same binary layer: a shared blob.
 * The grace period (1 h) is passed by setting the blob files' mtime back, as time would.
 *   node scripts/setup.mjs && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/registry-prune.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, instantXcaddy, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';

const OLD_VERSION = 'v2.10.2';
const TOKEN = randomBytes(24).toString('hex');
const admin = { authorization: `Bearer ${TOKEN}` };

interface ImageRecordFile {
  key: string;
  manifestDigest: string;
  blobs: Array<{ digest: string; size: number }>;
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) n += (await stat(join(dir, f))).size;
  return n;
}

describe('image blobs are pruned with their artifact and counted against storeMaxBytes (fs store, real images)', { timeout: 20 * 60_000 }, () => {
  let dir: string;
  let root: string;
  let fw: FairwayProcess;
  const blobDir = () => join(root, 'blobs', 'sha256');
  const blobs = async () => (await readdir(blobDir()).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((h) => `sha256:${h}`);
  const record = async (key: string) => JSON.parse(await readFile(join(root, 'records', 'images', `${key}.json`), 'utf8')) as ImageRecordFile;
  /** The image's blobs and its signatures' (serve signs by default: the .sig and .att manifests, their configs and layers). */
  const ownBlobs = async (key: string) => {
    const sig = JSON.parse(await readFile(join(root, 'records', 'signatures', `${key}.json`), 'utf8')) as { blobs: ImageRecordFile['blobs'] };
    assert.ok(sig.blobs.length >= 4, 'the image is signed and attested');
    const all = new Map([...(await record(key)).blobs, ...sig.blobs].map((b) => [b.digest, b]));
    return { ...(await record(key)), blobs: [...all.values()] };
  };
  const pull = async (tag: string) => {
    const res = await fetch(`${fw.url}/v2/caddy/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, `caddy:${tag}: ${body.toString().slice(0, 300)}`);
    const index = JSON.parse(body.toString()) as { manifests: Array<{ digest: string }> };
    const manifest = (await (await fetch(`${fw.url}/v2/caddy/manifests/${index.manifests[0]!.digest}`)).json()) as { annotations: Record<string, string> };
    return { indexDigest: `sha256:${createHash('sha256').update(body).digest('hex')}`, key: manifest.annotations['dev.fairway.key']! };
  };

  before(async () => {
    dir = await tempDir('fairway-registry-prune-');
    const bin = await instantXcaddy(dir);
    root = join(dir, 'data', 'artifacts');
    fw = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--xcaddy-bin', bin, '--image-platforms', 'linux/amd64', '--anonymous-scopes', 'read,build'],
      env: { FAIRWAY_TOKENS: `prune-test:admin:${createHash('sha256').update(TOKEN).digest('hex')}` },
    });
  });
  after(async () => {
    await fw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the older image goes with its record and its own blobs; shared blobs and the other image stay; stale index blobs are collected', async () => {
    const older = await pull(OLD_VERSION.slice(1));
    const newer = await pull(CADDY_VERSION.slice(1));
    assert.notEqual(older.key, newer.key);
    const [recOld, recNew] = [await ownBlobs(older.key), await ownBlobs(newer.key)];
    const inNew = new Set(recNew.blobs.map((b) => b.digest));
    const shared = recOld.blobs.filter((b) => inNew.has(b.digest));
    const onlyOld = recOld.blobs.filter((b) => !inNew.has(b.digest));
    assert.ok(shared.length >= 1, 'the images share a layer (the base layer)');
    assert.ok(onlyOld.length >= 2, 'the older image has blobs of its own (config, manifest)');
    const all = await blobs();
    for (const d of [older.indexDigest, newer.indexDigest, ...recOld.blobs.map((b) => b.digest), ...recNew.blobs.map((b) => b.digest)]) assert.ok(all.includes(d), `${d} is stored`);

    // Pass the grace period for every blob so far.
    const past = new Date(Date.now() - 2 * 3_600_000);
    for (const d of all) await utimes(join(blobDir(), d.slice(7)), past, past);

    // The store's metrics count the blob area.
    let blobBytes = 0;
    for (const d of all) blobBytes += (await stat(join(blobDir(), d.slice(7)))).size;
    const metrics = await (await fetch(`${fw.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`^fairway_store_blob_bytes ${blobBytes}$`, 'm'));
    const folders = (await dirBytes(join(root, older.key))) + (await dirBytes(join(root, newer.key)));
    assert.match(metrics, new RegExp(`^fairway_store_bytes ${folders + blobBytes}$`, 'm'), 'store bytes = artifact folders + blobs');

    // A budget the two artifact folders fit in, but not with their blobs: one artifact must go.
    const budget = folders + 1000;
    assert.ok(folders + blobBytes > budget);
    const dry = await api(fw.url, '/api/admin/prune', { json: { dryRun: true, maxBytes: budget }, headers: admin });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    const onlyOldBytes = onlyOld.reduce((n, b) => n + b.size, 0);
    assert.deepEqual(
      dry.body.removed.map((r: { key: string; bytes: number }) => [r.key, r.bytes]),
      [[older.key, (await dirBytes(join(root, older.key))) + onlyOldBytes]],
      'the least recently used artifact, charged its folder and the blobs only it uses',
    );
    assert.equal(dry.body.before.bytes, folders + blobBytes);
    assert.deepEqual((await blobs()).sort(), all.sort(), 'a dry run deletes nothing');

    const res = await api(fw.url, '/api/admin/prune', { json: { maxBytes: budget }, headers: admin });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(
      res.body.removed.map((r: { key: string }) => r.key),
      [older.key],
    );
    assert.equal(res.body.overBudget, false);
    const left = await blobs();
    assert.deepEqual(left.sort(), recNew.blobs.map((b) => b.digest).sort(), 'left: exactly the newer image and its signatures; the older one’s own blobs (and signatures) and both index blobs went');
    for (const b of shared) assert.ok(left.includes(b.digest), `shared ${b.digest} stays`);
    await assert.rejects(readFile(join(root, 'records', 'images', `${older.key}.json`)), /ENOENT/, 'the pruned artifact’s image record is gone');
    let leftBytes = 0;
    for (const d of left) leftBytes += (await stat(join(blobDir(), d.slice(7)))).size;
    assert.equal(res.body.after.bytes, (await dirBytes(join(root, newer.key))) + leftBytes, 'after: what is really in the store');
    assert.equal(res.body.blobs.removed, onlyOld.length + 2);

    // The other image still pulls, digests unchanged; the index is made again (same digest).
    const again = await pull(CADDY_VERSION.slice(1));
    assert.deepEqual(again, newer);
    assert.ok((await blobs()).includes(newer.indexDigest));
    const layer = recNew.blobs.find((b) => b.digest !== recNew.manifestDigest)!;
    const got = Buffer.from(await (await fetch(`${fw.url}/v2/caddy/blobs/${layer.digest}`)).arrayBuffer());
    assert.equal(`sha256:${createHash('sha256').update(got).digest('hex')}`, layer.digest);
  });
});
