/**
 * The artifact store contract, run against every implementation: FsStore on a temp dir and
 * S3Store on a real S3 server (versitygw on loopback, `bash scripts/deps.sh`). Then what only
 * S3 has: presigned URLs, integrity metadata, orphaned parts, and an S3 that goes away mid-upload.
 *   node --import tsx --test test/integration/store.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CorruptRecordError, FsStore, openStore, parseStoreUrl, type ArtifactMeta, type ArtifactStore, type ListedBlob } from '../../src/store/index.js';
import { BlobDigestMismatchError, InvalidDigestError, InvalidRecordNameError } from '../../src/store/blobs.js';
import { S3Store, type S3StoreOptions } from '../../src/store/s3/index.js';
import { getFreePort, startS3, type S3Service } from '../helpers/services.js';

// ------------------------------------------------------------------ helpers

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const randomKey = (): string => randomBytes(32).toString('hex');

async function readAll(s: Readable | NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer | string>) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

async function collect(it: AsyncIterable<ArtifactMeta>): Promise<ArtifactMeta[]> {
  const out: ArtifactMeta[] = [];
  for await (const m of it) out.push(m);
  return out;
}

async function collectBlobs(it: AsyncIterable<ListedBlob>): Promise<ListedBlob[]> {
  const out: ListedBlob[] = [];
  for await (const b of it) out.push(b);
  return out;
}

let scratch: string;
before(async () => {
  scratch = await mkdtemp(join(process.env.FAIRWAY_TEST_TMPDIR || tmpdir(), 'fairway-store-test-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Binary {
  path: string;
  bytes: Buffer;
  sha256: string;
}

async function binaryFile(size: number): Promise<Binary> {
  const bytes = randomBytes(size);
  const path = join(scratch, `bin-${randomBytes(6).toString('hex')}`);
  await writeFile(path, bytes);
  return { path, bytes, sha256: sha256(bytes) };
}

function succeeded(key: string, bin: Binary, over: Partial<ArtifactMeta> = {}): ArtifactMeta {
  return {
    key,
    status: 'succeeded',
    request: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'amd64', plugins: [] },
    spec: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.0', xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' } },
    filename: 'caddy_linux_amd64',
    sha256: bin.sha256,
    size: bin.bytes.length,
    goVersion: 'go1.26.0',
    createdAt: '2025-01-01T00:00:00.000Z',
    startedAt: '2025-01-01T00:00:01.000Z',
    finishedAt: '2025-01-01T00:00:30.000Z',
    durationMs: 29_000,
    agent: 'test',
    ...over,
  };
}

function failed(key: string, over: Partial<ArtifactMeta> = {}): ArtifactMeta {
  return {
    key,
    status: 'failed',
    request: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'amd64', plugins: [] },
    spec: { caddyVersion: 'v2.10.0', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.0', xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' } },
    filename: 'caddy_linux_amd64',
    error: 'go build: exit status 1',
    createdAt: '2025-01-01T00:00:00.000Z',
    finishedAt: '2025-01-01T00:00:10.000Z',
    ...over,
  };
}

const BUILD_INFO = { go: 'go1.26.0', path: 'caddy', deps: [{ path: 'github.com/caddyserver/caddy/v2', version: 'v2.10.0' }] };

function isNotFound(err: unknown): boolean {
  assert.equal((err as Error).name, 'NotFoundError', `expected NotFoundError, got ${String(err)}`);
  return true;
}

// ------------------------------------------------------------------ the contract

interface Harness {
  store: ArtifactStore;
  /** Requests the store has sent to its backend so far (when it can count them). */
  requests?: () => number;
  /** Every object/file stored under one key, published or not (raw view of the backend). */
  rawNames(key: string): Promise<string[]>;
  /** Number of parts the binary was uploaded in (S3 multipart); undefined where it does not apply. */
  binaryParts?(key: string): Promise<number>;
  /** Puts a complete-looking artifact OUTSIDE the store, where the traversal key `../<name>` would point. */
  plantOutside?(name: string, log: string): Promise<void>;
  /** Damages a record behind the store's back: writes / removes one of its raw objects or files. */
  writeRaw(key: string, name: string, body: string): Promise<void>;
  removeRaw(key: string, name: string): Promise<void>;
  /** What freeBytes() must give: the free bytes of this directory's filesystem, or null (no disk). */
  freeBytesOf: { dir: string } | null;
  /** Every file/object in the blob area (`blobs/`), temporary ones included (raw view of the backend). */
  rawBlobNames(): Promise<string[]>;
  /** Something that changes whenever the stored blob is rewritten (fs: inode and mtime; s3: LastModified and ETag). */
  blobMarker(digest: string): Promise<string>;
  /** Writes a stray file/object `blobs/sha256/<name>` behind the store's back; returns its removal. */
  writeRawBlobArea(name: string, body: string): Promise<() => Promise<void>>;
  /** Writes a record's raw bytes behind the store's back. */
  writeRawRecord(ns: string, name: string, body: string): Promise<void>;
  /** Names of the commands the store has sent to its backend so far (when it can tell). */
  commands?: () => string[];
  close(): Promise<void>;
}

/** The bytes put() stores for an artifact: binary, build.log, buildinfo.json and meta.json as written. */
function storedBytes(meta: ArtifactMeta, log: string, binary?: Binary, buildInfo?: unknown): number {
  const json = (v: unknown) => Buffer.byteLength(JSON.stringify(v, null, 2));
  return (binary?.bytes.length ?? 0) + Buffer.byteLength(log) + (buildInfo === undefined ? 0 : json(buildInfo)) + json(meta);
}

function storeContract(name: string, makeStore: () => Promise<Harness>): void {
  describe(`store contract: ${name}`, { timeout: 5 * 60_000 }, () => {
    let h: Harness;
    let store: ArtifactStore;
    before(async () => {
      h = await makeStore();
      store = h.store;
    });
    after(async () => {
      await h?.close();
    });

    test('put, then getMeta, getLog, getBuildInfo, getProvenance, getSbom, openBinary (full and ranged)', async () => {
      const key = randomKey();
      const bin = await binaryFile(100_000);
      const meta = succeeded(key, bin);
      const provenance = { payloadType: 'application/vnd.in-toto+json', payload: 'e30=', signatures: [] };
      const sbom = { payloadType: 'application/vnd.in-toto+json', payload: 'e30K', signatures: [] };
      await store.put({ meta, binaryPath: bin.path, log: 'line 1\nline 2\n', buildInfo: BUILD_INFO, provenance, sbom });
      assert.deepEqual(await store.getMeta(key), meta);
      assert.equal(await store.getLog(key), 'line 1\nline 2\n');
      assert.deepEqual(await store.getBuildInfo(key), BUILD_INFO);
      assert.deepEqual(await store.getProvenance(key), provenance);
      assert.deepEqual(await store.getSbom(key), sbom);
      // A record without provenance or SBOM (an older build) has none.
      const other = randomKey();
      await store.put({ meta: succeeded(other, bin), binaryPath: bin.path, log: '' });
      assert.equal(await store.getProvenance(other), null);
      assert.equal(await store.getSbom(other), null);
      const full = await readAll(await store.openBinary(key));
      assert.equal(full.length, bin.bytes.length);
      assert.equal(sha256(full), bin.sha256);
      const ranged = await readAll(await store.openBinary(key, { start: 1000, end: 1999 }));
      assert.deepEqual(ranged, bin.bytes.subarray(1000, 2000));
      const last = await readAll(await store.openBinary(key, { start: bin.bytes.length - 1, end: bin.bytes.length - 1 }));
      assert.deepEqual(last, bin.bytes.subarray(bin.bytes.length - 1));
    });

    test('unknown keys: getMeta null, openBinary NotFoundError, getLog/getBuildInfo null', async () => {
      const key = randomKey();
      assert.equal(await store.getMeta(key), null);
      await assert.rejects(() => store.openBinary(key), isNotFound);
      assert.equal(await store.getLog(key), null);
      assert.equal(await store.getBuildInfo(key), null);
    });

    test('list() yields every published artifact', async () => {
      const bin = await binaryFile(2_000);
      const metas = [succeeded(randomKey(), bin), succeeded(randomKey(), bin), failed(randomKey())];
      for (const m of metas) {
        await store.put(m.status === 'succeeded' ? { meta: m, binaryPath: bin.path, log: 'ok\n', buildInfo: BUILD_INFO } : { meta: m, log: 'boom\n' });
      }
      const listed = new Map((await collect(store.list())).map((m) => [m.key, m]));
      for (const m of metas) assert.deepEqual(listed.get(m.key), m);
    });

    test('stats() counts artifacts and bytes', async () => {
      const before = await store.stats();
      const bin = await binaryFile(50_000);
      const key = randomKey();
      await store.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'log\n', buildInfo: BUILD_INFO });
      const after = await store.stats();
      assert.equal(after.objects, before.objects + 1);
      assert.ok(after.bytes >= before.bytes + bin.bytes.length + 4, `bytes ${before.bytes} -> ${after.bytes}`);
      await store.delete(key);
      const gone = await store.stats();
      assert.equal(gone.objects, before.objects);
      assert.equal(gone.bytes, before.bytes);
    });

    test('delete() removes the artifact for every reader and from the backend', async () => {
      const key = randomKey();
      const bin = await binaryFile(10_000);
      await store.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'x\n', buildInfo: BUILD_INFO });
      assert.ok((await h.rawNames(key)).length >= 4);
      await store.delete(key);
      assert.equal(await store.getMeta(key), null);
      await assert.rejects(() => store.openBinary(key), isNotFound);
      assert.equal(await store.getLog(key), null);
      assert.equal(await store.getBuildInfo(key), null);
      assert.ok(!(await collect(store.list())).some((m) => m.key === key));
      assert.deepEqual(await h.rawNames(key), []);
      await store.delete(key); // idempotent
      await store.delete(randomKey());
    });

    test('a failed record (no binary), then replaced by a success', async () => {
      const key = randomKey();
      const failure = failed(key);
      await store.put({ meta: failure, log: 'attempt 1 failed\n' });
      assert.deepEqual(await store.getMeta(key), failure);
      assert.equal(await store.getLog(key), 'attempt 1 failed\n');
      assert.equal(await store.getBuildInfo(key), null);
      await assert.rejects(() => store.openBinary(key), isNotFound);

      const bin = await binaryFile(30_000);
      const success = succeeded(key, bin);
      await store.put({ meta: success, binaryPath: bin.path, log: 'attempt 2 ok\n', buildInfo: BUILD_INFO });
      assert.deepEqual(await store.getMeta(key), success);
      assert.equal(await store.getLog(key), 'attempt 2 ok\n');
      assert.deepEqual(await store.getBuildInfo(key), BUILD_INFO);
      assert.equal(sha256(await readAll(await store.openBinary(key))), bin.sha256);
      const listed = (await collect(store.list())).filter((m) => m.key === key);
      assert.deepEqual(listed, [success]);
    });

    test('damaged records: a missing binary, an unreadable meta.json or buildinfo.json are not outages', async () => {
      const bin = await binaryFile(3_000);
      const [gone, badJson, badSchema, badInfo] = [randomKey(), randomKey(), randomKey(), randomKey()];
      for (const k of [gone, badJson, badSchema, badInfo]) await store.put({ meta: succeeded(k, bin), binaryPath: bin.path, log: 'x\n', buildInfo: BUILD_INFO });
      assert.equal(await store.hasBinary(gone), true);
      await h.removeRaw(gone, 'binary');
      assert.equal(await store.hasBinary(gone), false, 'hasBinary sees the binary gone');
      assert.equal(await store.hasBinary(randomKey()), false, 'hasBinary of an unknown key');
      assert.ok(await store.getMeta(gone), 'the record itself is still there');
      await assert.rejects(() => store.openBinary(gone), isNotFound);

      await h.writeRaw(badJson, 'meta.json', '{"key": "trunc');
      await h.writeRaw(badSchema, 'meta.json', JSON.stringify({ key: badSchema, status: 'succeeded' }));
      const isCorrupt = (part: string) => (err: unknown) => {
        assert.ok(err instanceof CorruptRecordError, `expected CorruptRecordError, got ${String(err)}`);
        assert.equal(err.part, part);
        assert.match(err.message, /unreadable/);
        return true;
      };
      await assert.rejects(() => store.getMeta(badJson), isCorrupt('meta.json'));
      await assert.rejects(() => store.getMeta(badSchema), isCorrupt('meta.json'));
      const reported: string[] = [];
      const listed = (
        await collect(
          store.list({
            onCorrupt: (k, err) => {
              assert.ok(err instanceof CorruptRecordError);
              reported.push(k);
            },
          }),
        )
      ).map((m) => m.key);
      assert.ok(!listed.includes(badJson) && !listed.includes(badSchema), 'unreadable records are not listed');
      assert.ok(listed.includes(gone) && listed.includes(badInfo), 'the others are');
      assert.ok(reported.includes(badJson) && reported.includes(badSchema), `unreadable records are reported: ${reported.join(',')}`);
      assert.ok(!(await collect(store.list())).some((m) => m.key === badJson), 'list() without options skips them too');

      await h.writeRaw(badInfo, 'buildinfo.json', '{{{');
      await assert.rejects(() => store.getBuildInfo(badInfo), isCorrupt('buildinfo.json'));
      assert.ok(await store.getMeta(badInfo));

      // quarantine() takes each of them out of the store, whatever is missing or broken.
      for (const k of [gone, badJson, badSchema, badInfo]) {
        await store.quarantine!(k);
        assert.equal(await store.getMeta(k), null, `quarantined ${k}`);
      }
      assert.ok(!(await collect(store.list())).some((m) => [gone, badJson, badSchema, badInfo].includes(m.key)));
    });

    test('invalid keys (traversal, uppercase, wrong length) are refused without touching the backend', async () => {
      const valid = randomKey();
      const bin = await binaryFile(1_000);
      await store.put({ meta: succeeded(valid, bin), binaryPath: bin.path, log: 'valid\n', buildInfo: BUILD_INFO });
      await h.plantOutside?.('x', 'planted outside the store\n');
      const bad = ['../x', `../${valid.slice(3)}`, valid.toUpperCase(), `${valid.slice(0, 63)}G`, valid.slice(0, 63), `${valid}0`, `${valid}/../x`, '', '..', '/etc/passwd', '..%2fx'];
      const before = h.requests?.();
      for (const key of bad) {
        assert.equal(await store.getMeta(key), null, `getMeta(${key})`);
        await assert.rejects(() => store.openBinary(key), isNotFound, `openBinary(${key})`);
        await assert.rejects(() => store.openBinary(key, { start: 0, end: 1 }), isNotFound);
        await assert.rejects(() => store.getLog(key), isNotFound, `getLog(${key})`);
        await assert.rejects(() => store.getBuildInfo(key), isNotFound, `getBuildInfo(${key})`);
        await assert.rejects(() => store.delete(key), isNotFound, `delete(${key})`);
        await assert.rejects(() => store.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'evil\n' }), isNotFound, `put(${key})`);
        if (store.binaryUrl) await assert.rejects(() => store.binaryUrl!(key, 'caddy'), isNotFound);
      }
      if (before !== undefined) assert.equal(h.requests!(), before, 'no request reached the backend');
      // The valid artifact is untouched.
      assert.equal(await store.getLog(valid), 'valid\n');
    });

    test('a ~12 MB binary (multipart on S3) round-trips, also ranged across a part boundary', async () => {
      const key = randomKey();
      const bin = await binaryFile(12 * 1024 * 1024 + 4321);
      await store.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'big\n', buildInfo: BUILD_INFO });
      const parts = await h.binaryParts?.(key);
      if (parts !== undefined) assert.ok(parts >= 2, `uploaded in ${parts} part(s)`);
      const full = await readAll(await store.openBinary(key));
      assert.equal(full.length, bin.bytes.length);
      assert.equal(sha256(full), bin.sha256);
      for (const boundary of [5 * 1024 * 1024, 8 * 1024 * 1024]) {
        const got = await readAll(await store.openBinary(key, { start: boundary - 7, end: boundary + 6 }));
        assert.deepEqual(got, bin.bytes.subarray(boundary - 7, boundary + 7));
      }
    });

    test('usage(): per-artifact bytes that follow puts and deletes, leftovers unpublished, in agreement with stats()', async () => {
      const before = await store.usage();
      assert.equal(before.bytes, (await store.stats()).bytes);
      const bin = await binaryFile(40_000);
      const [ok, bad, leftover] = [randomKey(), randomKey(), randomKey()];
      const okMeta = succeeded(ok, bin);
      const badMeta = failed(bad);
      await store.put({ meta: okMeta, binaryPath: bin.path, log: 'log\n', buildInfo: BUILD_INFO });
      await store.put({ meta: badMeta, log: 'boom\n' });
      await h.writeRaw(leftover, 'build.log', 'partial\n'); // a crashed upload: parts without meta.json
      const okBytes = storedBytes(okMeta, 'log\n', bin, BUILD_INFO);
      const badBytes = storedBytes(badMeta, 'boom\n');
      const mid = await store.usage();
      assert.deepEqual(mid.entries.get(ok), { bytes: okBytes, published: true });
      assert.deepEqual(mid.entries.get(bad), { bytes: badBytes, published: true });
      assert.deepEqual(mid.entries.get(leftover), { bytes: 'partial\n'.length, published: false });
      assert.equal(mid.objects, before.objects + 2, 'published artifacts only');
      assert.equal(mid.bytes, before.bytes + okBytes + badBytes + 'partial\n'.length);
      assert.equal(mid.bytes, (await store.stats()).bytes, 'usage agrees with stats()');
      await store.delete(ok);
      const after = await store.usage();
      assert.equal(after.entries.has(ok), false);
      assert.equal(after.objects, before.objects + 1);
      assert.equal(after.bytes, before.bytes + badBytes + 'partial\n'.length);
      await store.delete(bad);
      await store.delete(leftover);
      const end = await store.usage();
      assert.deepEqual([end.bytes, end.objects, end.entries.size], [before.bytes, before.objects, before.entries.size]);
    });

    test('accessTracker(): last-download times round-trip through the store, survive a new tracker, are forgotten, never count as artifacts', async () => {
      const [a, b, never] = [randomKey(), randomKey(), randomKey()];
      const usageBefore = await store.usage();
      const first = store.accessTracker({ intervalMs: 60_000 });
      assert.equal(first.kind, store.kind, 'the tracker belongs to the store kind');
      const at = Date.now();
      first.touch(a, at);
      first.touch(b, at);
      first.touch('../not-a-key', at);
      assert.equal(await first.get(a), at, 'a pending time is visible at once');
      await first.close();

      // "Restart": a new tracker reads the durable records (s3: an object's LastModified, whole seconds).
      const second = store.accessTracker();
      const all = await second.all();
      for (const k of [a, b]) {
        const t = all.get(k);
        assert.ok(t !== undefined && Math.abs(t - at) <= 2_000, `the recorded time of ${k.slice(0, 8)}: ${t} vs ${at}`);
        assert.equal(await second.get(k), t);
      }
      assert.equal(await second.get(never), null);
      assert.ok(![...all.keys()].some((k) => k.includes('not-a-key')), 'only cache keys are recorded');
      const usageAfter = await store.usage();
      assert.deepEqual([usageAfter.bytes, usageAfter.objects], [usageBefore.bytes, usageBefore.objects], 'records live outside the artifacts area');
      assert.ok(!(await collect(store.list())).some((m) => m.key === a || m.key === b));

      await second.forget(a);
      await second.close();
      const third = store.accessTracker();
      assert.equal(await third.get(a), null, 'forget() removed the durable record');
      assert.notEqual(await third.get(b), null);
      await third.forget(b);
      await third.close();
    });

    test('freeBytes(): the free bytes of the disk the store writes to, or null where there is none', async () => {
      const free = await store.freeBytes();
      if (h.freeBytesOf === null) {
        assert.equal(free, null);
        return;
      }
      assert.ok(typeof free === 'number' && Number.isSafeInteger(free) && free > 0, `freeBytes() = ${free}`);
      const s = await statfs(h.freeBytesOf.dir);
      assert.ok(Math.abs(free - s.bavail * s.bsize) < 512 * 1024 * 1024, `freeBytes() ${free} vs statfs ${s.bavail * s.bsize}`);
    });

    // ---------------------------------------------------------------- blobs

    test('blobs: put, stat, open (full and ranged), list, delete; NotFoundError once gone', async () => {
      const blob = await binaryFile(9 * 1024 * 1024 + 123); // more than one 8 MiB part on S3
      const digest = `sha256:${blob.sha256}`;
      assert.equal(await store.statBlob(digest), null);
      await assert.rejects(() => store.openBlob(digest), isNotFound);
      assert.deepEqual(await store.putBlob(digest, blob.path), { digest, size: blob.bytes.length });
      assert.deepEqual(await store.statBlob(digest), { digest, size: blob.bytes.length });
      const full = await readAll(await store.openBlob(digest));
      assert.equal(full.length, blob.bytes.length);
      assert.equal(sha256(full), blob.sha256);
      assert.deepEqual(await readAll(await store.openBlob(digest, { start: 0, end: 0 })), blob.bytes.subarray(0, 1));
      const boundary = 8 * 1024 * 1024;
      assert.deepEqual(await readAll(await store.openBlob(digest, { start: boundary - 5, end: boundary + 4 })), blob.bytes.subarray(boundary - 5, boundary + 5));
      const end = blob.bytes.length - 1;
      assert.deepEqual(await readAll(await store.openBlob(digest, { start: end - 9, end })), blob.bytes.subarray(end - 9));

      const small = await binaryFile(10);
      const smallDigest = `sha256:${small.sha256}`;
      // listBlobs() yields each blob's write time (fs mtime, s3 LastModified: whole seconds), for the blob collector.
      const putAt = Date.now();
      await store.putBlob(smallDigest, small.path);
      const putDone = Date.now();
      // Strays in the blob area (an interrupted write, a foreign file) are no blobs.
      const strays = [await h.writeRawBlobArea('.tmp-leftover', 'x'), await h.writeRawBlobArea('README', 'x'), await h.writeRawBlobArea(blob.sha256.toUpperCase(), 'x')];
      const listed = await collectBlobs(store.listBlobs());
      for (const remove of strays) await remove();
      const smallListed = listed.find((b) => b.digest === smallDigest);
      assert.ok(smallListed && typeof smallListed.modifiedAt === 'number', 'listed with its write time');
      assert.ok(
        smallListed.modifiedAt >= Math.floor(putAt / 1000) * 1000 - 1000 && smallListed.modifiedAt <= putDone + 1000,
        `modifiedAt ${smallListed.modifiedAt} is when it was put (${putAt}..${putDone})`,
      );
      assert.deepEqual(
        listed
          .filter((b) => b.digest === digest || b.digest === smallDigest)
          .map((b) => ({ digest: b.digest, size: b.size }))
          .sort((a, b) => a.size - b.size),
        [
          { digest: smallDigest, size: 10 },
          { digest, size: blob.bytes.length },
        ],
      );
      assert.ok(
        listed.every((b) => /^sha256:[0-9a-f]{64}$/.test(b.digest)),
        'only digests are listed',
      );

      await store.deleteBlob(digest);
      assert.equal(await store.statBlob(digest), null);
      await assert.rejects(() => store.openBlob(digest), isNotFound);
      await assert.rejects(() => store.openBlob(digest, { start: 0, end: 1 }), isNotFound);
      assert.ok(!(await collectBlobs(store.listBlobs())).some((b) => b.digest === digest), 'deleted blobs are not listed');
      await store.deleteBlob(digest); // idempotent
      assert.deepEqual(await store.statBlob(smallDigest), { digest: smallDigest, size: 10 }, 'the other blob stays');
      await store.deleteBlob(smallDigest);
    });

    test('blobs: a digest mismatch publishes nothing; putting an existing digest is a no-op', async () => {
      const good = await binaryFile(50_000);
      const other = await binaryFile(50_000);
      const digest = `sha256:${good.sha256}`;
      const rawBefore = await h.rawBlobNames();
      await assert.rejects(
        () => store.putBlob(digest, other.path),
        (err: unknown) => {
          assert.ok(err instanceof BlobDigestMismatchError, `expected BlobDigestMismatchError, got ${String(err)}`);
          assert.equal(err.actual, `sha256:${other.sha256}`);
          assert.match(err.message, /digest mismatch.*not published/);
          return true;
        },
      );
      assert.equal(await store.statBlob(digest), null, 'the mismatching file was not published under the digest');
      assert.equal(await store.statBlob(`sha256:${other.sha256}`), null, 'nor under its own');
      await assert.rejects(() => store.openBlob(digest), isNotFound);
      assert.deepEqual(await h.rawBlobNames(), rawBefore, 'nothing (not even a temporary file) was left in the backend');

      assert.deepEqual(await store.putBlob(digest, good.path), { digest, size: good.bytes.length });
      const rawAfter = await h.rawBlobNames();
      const marker = await h.blobMarker(digest);
      const sent = h.commands?.().length;
      assert.deepEqual(await store.putBlob(digest, good.path), { digest, size: good.bytes.length }, 'the second put returns the info');
      if (sent !== undefined) {
        const uploads = h.commands!()
          .slice(sent)
          .filter((c) => /^(PutObject|CreateMultipartUpload|UploadPart|CopyObject|DeleteObject)Command$/.test(c));
        assert.deepEqual(uploads, [], 'the second put wrote nothing');
      }
      assert.equal(await h.blobMarker(digest), marker, 'the stored blob was not rewritten');
      assert.deepEqual(await h.rawBlobNames(), rawAfter);
      // An existing digest does not make a wrong file acceptable.
      await assert.rejects(() => store.putBlob(digest, other.path), /digest mismatch/);
      assert.equal(sha256(await readAll(await store.openBlob(digest))), good.sha256, 'the blob is intact');
      await store.deleteBlob(digest);
    });

    test('blobs: an empty blob and a two-byte one (the OCI empty config `{}`) round-trip', async () => {
      for (const body of ['', '{}']) {
        const path = join(scratch, `blob-${randomBytes(6).toString('hex')}`);
        await writeFile(path, body);
        const digest = `sha256:${sha256(Buffer.from(body))}`;
        assert.deepEqual(await store.putBlob(digest, path), { digest, size: body.length });
        assert.deepEqual(await store.statBlob(digest), { digest, size: body.length });
        assert.equal((await readAll(await store.openBlob(digest))).toString(), body);
        assert.ok((await collectBlobs(store.listBlobs())).some((b) => b.digest === digest && b.size === body.length));
        await store.deleteBlob(digest);
        assert.equal(await store.statBlob(digest), null);
      }
    });

    test('blobs: blobUrl is null without presigned URLs (fs; s3 without presign)', async () => {
      const blob = await binaryFile(100);
      const digest = `sha256:${blob.sha256}`;
      await store.putBlob(digest, blob.path);
      if (store.blobUrl) assert.equal(await store.blobUrl(digest), null);
      await store.deleteBlob(digest);
    });

    test('blobs: invalid digests (traversal, uppercase, other algorithms, wrong length) are refused without touching the backend', async () => {
      const blob = await binaryFile(1_000);
      const valid = `sha256:${blob.sha256}`;
      await store.putBlob(valid, blob.path);
      await h.plantOutside?.('x', 'planted outside the store\n');
      const hex = blob.sha256;
      const bad = [
        'sha256:../../x',
        'sha256:../../../x',
        'sha256:../x/binary',
        'sha256:../../../x/binary',
        `sha256:${hex}/../x`,
        `sha256:../sha256/${hex.slice(10)}`,
        '../x',
        hex,
        `sha256:${hex.toUpperCase()}`,
        `SHA256:${hex}`,
        `sha512:${hex}`,
        `sha256:${hex.slice(1)}`,
        `sha256:${hex}0`,
        `sha256:${hex}\n`,
        `sha256:${hex.slice(0, 63)}g`,
        'sha256:',
        '',
      ];
      const before = h.requests?.();
      const isInvalid = (err: unknown) => {
        assert.ok(err instanceof InvalidDigestError, `expected InvalidDigestError, got ${String(err)}`);
        assert.match(err.message, /invalid blob digest/);
        return true;
      };
      for (const d of bad) {
        await assert.rejects(() => store.putBlob(d, blob.path), isInvalid, `putBlob(${d})`);
        await assert.rejects(() => store.statBlob(d), isInvalid, `statBlob(${d})`);
        await assert.rejects(() => store.openBlob(d), isInvalid, `openBlob(${d})`);
        await assert.rejects(() => store.openBlob(d, { start: 0, end: 1 }), isInvalid);
        await assert.rejects(() => store.deleteBlob(d), isInvalid, `deleteBlob(${d})`);
        if (store.blobUrl) await assert.rejects(() => store.blobUrl!(d), isInvalid, `blobUrl(${d})`);
      }
      if (before !== undefined) assert.equal(h.requests!(), before, 'no request reached the backend');
      assert.deepEqual(await store.statBlob(valid), { digest: valid, size: 1_000 }, 'the valid blob is untouched');
      await store.deleteBlob(valid);
    });

    // ---------------------------------------------------------------- records

    test('records: put, get, replace, delete; null when absent; listRecords sorted and per namespace', async () => {
      const ns = `t${randomBytes(4).toString('hex')}`;
      const other = `${ns}.other`;
      assert.deepEqual(await store.listRecords(ns), []);
      assert.equal(await store.getRecord(ns, 'missing'), null);
      const value = { tag: 'v1', digest: `sha256:${'a'.repeat(64)}`, nested: { list: [1, 2, 3], s: 'ü "quoted"' } };
      await store.putRecord(ns, 'latest', value);
      assert.deepEqual(await store.getRecord(ns, 'latest'), value);
      await store.putRecord(ns, 'latest', ['replaced']);
      assert.deepEqual(await store.getRecord(ns, 'latest'), ['replaced'], 'a put replaces the whole document');
      await store.putRecord(ns, 'n', 42);
      assert.equal(await store.getRecord(ns, 'n'), 42);
      await store.putRecord(ns, 's', 'text');
      assert.equal(await store.getRecord(ns, 's'), 'text');

      const names = ['zeta', 'a.json', 'a', 'a_b', 'a-b', '0x', 'v1.2.3', 'x'.repeat(128), 'latest', 'n', 's'];
      for (const n of names) if (!['latest', 'n', 's'].includes(n)) await store.putRecord(ns, n, { n });
      await store.putRecord(other, 'only-here', true);
      const listed = await store.listRecords(ns);
      assert.deepEqual(listed, [...names].sort(), 'every name, sorted');
      assert.deepEqual(await store.listRecords(other), ['only-here'], 'namespaces are separate');
      assert.deepEqual(await store.getRecord(ns, 'a.json'), { n: 'a.json' }, 'a name ending in .json is still itself');
      assert.equal(await store.getRecord(other, 'latest'), null);

      await store.deleteRecord(ns, 'latest');
      assert.equal(await store.getRecord(ns, 'latest'), null);
      assert.ok(!(await store.listRecords(ns)).includes('latest'));
      await store.deleteRecord(ns, 'latest'); // idempotent
      await store.deleteRecord(ns, 'never-was');
      for (const n of await store.listRecords(ns)) await store.deleteRecord(ns, n);
      await store.deleteRecord(other, 'only-here');
      assert.deepEqual(await store.listRecords(ns), []);
    });

    test('records: a record that is not JSON rejects with a CorruptRecordError (not an outage)', async () => {
      const ns = `t${randomBytes(4).toString('hex')}`;
      await store.putRecord(ns, 'good', { ok: true });
      await h.writeRawRecord(ns, 'broken', '{"tag": "trunc');
      await assert.rejects(
        () => store.getRecord(ns, 'broken'),
        (err: unknown) => {
          assert.ok(err instanceof CorruptRecordError, `expected CorruptRecordError, got ${String(err)}`);
          assert.equal(err.part, 'record');
          assert.equal(err.key, `${ns}/broken`);
          assert.match(err.message, /record .*broken is unreadable \(not JSON/);
          return true;
        },
      );
      assert.deepEqual(await store.getRecord(ns, 'good'), { ok: true }, 'the other records are fine');
      assert.deepEqual(await store.listRecords(ns), ['broken', 'good']);
      await store.putRecord(ns, 'broken', { repaired: true });
      assert.deepEqual(await store.getRecord(ns, 'broken'), { repaired: true }, 'a put repairs it');
      await store.deleteRecord(ns, 'broken');
      await store.deleteRecord(ns, 'good');
    });

    test('records: invalid namespaces and names (traversal, uppercase, too long) are refused without touching the backend', async () => {
      const ns = `t${randomBytes(4).toString('hex')}`;
      await store.putRecord(ns, 'kept', { kept: true });
      const bad = ['../x', '..', 'a..b', '../../etc/passwd', 'a/b', 'a\\b', '', '.hidden', '-x', '_x', 'A', 'Tag', 'x'.repeat(129), 'a\n', 'a b', 'é', '%2e%2e', '.', 'x.json/..'];
      const isInvalid = (err: unknown) => {
        assert.ok(err instanceof InvalidRecordNameError, `expected InvalidRecordNameError, got ${String(err)}`);
        assert.match(err.message, /invalid record (namespace|name)/);
        return true;
      };
      const before = h.requests?.();
      for (const b of bad) {
        await assert.rejects(() => store.putRecord(b, 'name', {}), isInvalid, `putRecord(ns ${JSON.stringify(b)})`);
        await assert.rejects(() => store.putRecord(ns, b, {}), isInvalid, `putRecord(name ${JSON.stringify(b)})`);
        await assert.rejects(() => store.getRecord(b, 'kept'), isInvalid);
        await assert.rejects(() => store.getRecord(ns, b), isInvalid, `getRecord(name ${JSON.stringify(b)})`);
        await assert.rejects(() => store.deleteRecord(b, 'kept'), isInvalid);
        await assert.rejects(() => store.deleteRecord(ns, b), isInvalid, `deleteRecord(name ${JSON.stringify(b)})`);
        await assert.rejects(() => store.listRecords(b), isInvalid, `listRecords(${JSON.stringify(b)})`);
      }
      if (before !== undefined) assert.equal(h.requests!(), before, 'no request reached the backend');
      assert.deepEqual(await store.listRecords(ns), ['kept']);
      assert.deepEqual(await store.getRecord(ns, 'kept'), { kept: true });
      await store.deleteRecord(ns, 'kept');
    });

    test('blobs and records live outside the artifacts area: list(), stats() and usage() do not see them', async () => {
      const listedBefore = (await collect(store.list())).length;
      const statsBefore = await store.stats();
      const usageBefore = await store.usage();
      const blob = await binaryFile(200_000);
      const digest = `sha256:${blob.sha256}`;
      const ns = `t${randomBytes(4).toString('hex')}`;
      await store.putBlob(digest, blob.path);
      await store.putRecord(ns, 'tag', { digest });
      assert.equal((await collect(store.list())).length, listedBefore, 'list()');
      assert.deepEqual(await store.stats(), statsBefore, 'stats()');
      const usageAfter = await store.usage();
      assert.deepEqual([usageAfter.bytes, usageAfter.objects, usageAfter.entries.size], [usageBefore.bytes, usageBefore.objects, usageBefore.entries.size], 'usage()');
      assert.deepEqual([...usageAfter.entries.keys()].sort(), [...usageBefore.entries.keys()].sort());
      await store.deleteBlob(digest);
      await store.deleteRecord(ns, 'tag');
    });

    test('ping() answers', async () => {
      await store.ping();
    });
  });
}

// ------------------------------------------------------------------ fs

storeContract('fs', async () => {
  const dir = await mkdtemp(join(scratch, 'fs-'));
  const root = join(dir, 'store');
  const store = await FsStore.open(root);
  return {
    store,
    rawNames: (key) => readdir(join(root, key)).catch(() => []),
    writeRaw: async (key, name, body) => {
      await mkdir(join(root, key), { recursive: true });
      await writeFile(join(root, key, name), body);
    },
    removeRaw: (key, name) => rm(join(root, key, name)),
    freeBytesOf: { dir: root },
    // Blobs and their temporary files live in blobs/sha256/ (the directories themselves are no data).
    rawBlobNames: async () => (await readdir(join(root, 'blobs', 'sha256')).catch(() => [] as string[])).sort(),
    blobMarker: async (digest) => {
      const s = await stat(join(root, 'blobs', 'sha256', digest.slice('sha256:'.length)), { bigint: true });
      return `${s.ino}:${s.mtimeNs}:${s.ctimeNs}`;
    },
    writeRawBlobArea: async (name, body) => {
      await mkdir(join(root, 'blobs', 'sha256'), { recursive: true });
      await writeFile(join(root, 'blobs', 'sha256', name), body);
      return () => rm(join(root, 'blobs', 'sha256', name), { force: true });
    },
    writeRawRecord: async (ns, name, body) => {
      await mkdir(join(root, 'records', ns), { recursive: true });
      await writeFile(join(root, 'records', ns, `${name}.json`), body);
    },
    plantOutside: async (name, log) => {
      await mkdir(join(dir, name), { recursive: true });
      await writeFile(join(dir, name, 'build.log'), log);
      await writeFile(join(dir, name, 'binary'), 'planted');
      await writeFile(join(dir, name, 'meta.json'), JSON.stringify(failed(name)));
    },
    close: async () => undefined,
  };
});

describe('fs store specifics', () => {
  test('blobs/ and records/ sit next to the artifacts; interrupted writes (.tmp-*) are swept when the store opens', async () => {
    const root = join(await mkdtemp(join(scratch, 'fs-')), 'store');
    const store = await FsStore.open(root);
    const blob = await binaryFile(1_000);
    const digest = `sha256:${blob.sha256}`;
    await store.putBlob(digest, blob.path);
    await store.putRecord('tags', 'v1', { digest });
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [blob.sha256]);
    assert.deepEqual(await readdir(join(root, 'records', 'tags')), ['v1.json']);
    assert.deepEqual(JSON.parse(await readFile(join(root, 'records', 'tags', 'v1.json'), 'utf8')), { digest });
    await writeFile(join(root, 'blobs', 'sha256', '.tmp-crashed'), 'half a blob');
    await writeFile(join(root, 'records', 'tags', '.tmp-crashed'), '{"half');
    assert.deepEqual(await store.listRecords('tags'), ['v1']);
    const reopened = await FsStore.open(root);
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [blob.sha256]);
    assert.deepEqual(await readdir(join(root, 'records', 'tags')), ['v1.json']);
    assert.deepEqual(await reopened.getRecord('tags', 'v1'), { digest });
    assert.deepEqual(await reopened.statBlob(digest), { digest, size: 1_000 });
  });
});

// ------------------------------------------------------------------ s3

function s3Options(s3: S3Service, over: Partial<S3StoreOptions> = {}): S3StoreOptions {
  return {
    bucket: s3.bucket,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    ...over,
  };
}

/** An initialize-step middleware (typed loosely to avoid importing @smithy/types). */
type Middleware = (next: (args: { input: object }) => Promise<unknown>, context: { commandName?: string }) => (args: { input: object }) => Promise<unknown>;

/** Counts every command the client sends (before retries). */
function countRequests(client: S3Client): () => number {
  let n = 0;
  const mw: Middleware = (next) => async (args) => {
    n++;
    return next(args);
  };
  client.middlewareStack.add(mw as never, { step: 'initialize', name: 'fairwayTestCounter' });
  return () => n;
}

/** Records the name of every command the client sends (before retries). */
function recordCommands(client: S3Client): () => string[] {
  const names: string[] = [];
  const mw: Middleware = (next, context) => async (args) => {
    names.push(context.commandName ?? '?');
    return next(args);
  };
  client.middlewareStack.add(mw as never, { step: 'initialize', name: 'fairwayTestCommands' });
  return () => names;
}

async function rawS3Names(client: S3Client, bucket: string, prefix: string, key: string): Promise<string[]> {
  const base = `${prefix}artifacts/${key}/`;
  const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: base }));
  return (res.Contents ?? []).map((o) => o.Key!.slice(base.length)).sort();
}

storeContract('s3', async () => {
  const s3 = await startS3();
  const prefix = 'contract/';
  const store = new S3Store(s3Options(s3, { prefix }));
  const raw = new S3Client(s3.clientConfig());
  return {
    store,
    requests: countRequests(store.client),
    commands: recordCommands(store.client),
    rawNames: (key) => rawS3Names(raw, s3.bucket, prefix, key),
    rawBlobNames: async () => {
      const res = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}blobs/` }));
      return (res.Contents ?? []).map((o) => o.Key!).sort();
    },
    blobMarker: async (digest) => {
      const head = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${prefix}blobs/sha256/${digest.slice('sha256:'.length)}` }));
      return `${head.LastModified?.getTime()}:${head.ETag}`;
    },
    writeRawBlobArea: async (name, body) => {
      const Key = `${prefix}blobs/sha256/${name}`;
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: body }));
      return async () => void (await raw.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key })));
    },
    writeRawRecord: async (ns, name, body) => void (await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}records/${ns}/${name}.json`, Body: body }))),
    writeRaw: async (key, name, body) => void (await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}artifacts/${key}/${name}`, Body: body }))),
    removeRaw: async (key, name) => void (await raw.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `${prefix}artifacts/${key}/${name}` }))),
    freeBytesOf: null,
    binaryParts: async (key) => {
      const head = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${prefix}artifacts/${key}/binary` }));
      const m = /-(\d+)"?$/.exec(head.ETag ?? '');
      return m ? Number(m[1]) : 1;
    },
    close: async () => {
      raw.destroy();
      await store.close();
      await s3.destroy();
    },
  };
});

/**
 * s3.kill() awaits the exit of an unref'd child with no timer pending: when nothing else holds the
 * event loop (the SDK waiting on our middleware), Node would exit mid-test. A timer keeps it alive.
 */
async function killS3(s3: S3Service): Promise<void> {
  const keepAlive = setInterval(() => undefined, 1_000);
  try {
    await s3.kill();
  } finally {
    clearInterval(keepAlive);
  }
}

/** Runs `action` once, just before the first command that `match`es is sent. */
function injectOnce(client: S3Client, name: string, match: (command: string, input: Record<string, unknown>) => boolean, action: () => Promise<void>): void {
  let fired = false;
  const mw: Middleware = (next, context) => async (args) => {
    if (!fired && match(context.commandName ?? '', args.input as Record<string, unknown>)) {
      fired = true;
      await action();
    }
    return next(args);
  };
  client.middlewareStack.add(mw as never, { step: 'initialize', name });
}

describe('s3 store specifics', { timeout: 5 * 60_000 }, () => {
  let s3: S3Service;
  let raw: S3Client;
  const stores: S3Store[] = [];
  const open = (over: Partial<S3StoreOptions> = {}): S3Store => {
    const st = new S3Store(s3Options(s3, { prefix: `t-${randomBytes(4).toString('hex')}/`, ...over }));
    stores.push(st);
    return st;
  };
  const names = (st: S3Store, key: string) => rawS3Names(raw, s3.bucket, st.prefix, key);
  const assertInvisible = async (st: S3Store, key: string): Promise<void> => {
    assert.equal(await st.getMeta(key), null);
    assert.ok(!(await collect(st.list())).some((m) => m.key === key), 'not listed');
    await assert.rejects(() => st.openBinary(key), isNotFound);
    assert.equal(await st.getLog(key), null);
    assert.equal(await st.getBuildInfo(key), null);
  };

  before(async () => {
    s3 = await startS3();
    raw = new S3Client(s3.clientConfig());
  });
  after(async () => {
    for (const st of stores) await st.close();
    raw?.destroy();
    await s3?.destroy();
  });

  test('the binary object carries its sha256 in metadata; layout is <prefix>artifacts/<key>/...', async () => {
    const st = open();
    const key = randomKey();
    const bin = await binaryFile(4_096);
    await st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO });
    assert.deepEqual(await names(st, key), ['binary', 'build.log', 'buildinfo.json', 'meta.json']);
    const head = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${st.prefix}artifacts/${key}/binary` }));
    assert.equal(head.Metadata?.sha256, bin.sha256);
    assert.equal(head.ContentLength, bin.bytes.length);
  });

  test('put refuses a binary whose sha256 or size differs from the meta, before uploading anything', async () => {
    const st = open();
    const key = randomKey();
    const bin = await binaryFile(4_096);
    await assert.rejects(() => st.put({ meta: succeeded(key, bin, { sha256: 'f'.repeat(64) }), binaryPath: bin.path, log: 'l\n' }), /integrity check failed .*meta\.sha256.*not published/);
    await assert.rejects(() => st.put({ meta: succeeded(key, bin, { size: 1 }), binaryPath: bin.path, log: 'l\n' }), /integrity check failed .*meta\.size/);
    assert.deepEqual(await names(st, key), []);
  });

  test('presigned URL: fetch downloads the same bytes with the filename; without presign, null', async () => {
    const st = open({ presign: 600 });
    const key = randomKey();
    const bin = await binaryFile(300_000);
    await st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO });
    const url = await st.binaryUrl(key, 'caddy_linux_amd64');
    assert.ok(typeof url === 'string' && url.startsWith(`${s3.endpoint}/${s3.bucket}/${st.prefix}artifacts/${key}/binary?`), String(url));
    assert.match(url, /X-Amz-Expires=600/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="caddy_linux_amd64"/);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(sha256(body), bin.sha256);
    // Ranged through the presigned URL too.
    const part = await fetch(url, { headers: { Range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), bin.bytes.subarray(10, 20));

    const plain = open({ prefix: st.prefix });
    assert.equal(await plain.binaryUrl(key, 'caddy_linux_amd64'), null);
  });

  test('blobs: <prefix>blobs/sha256/<hex> with x-amz-meta-sha256; a presigned URL fetches it (full and ranged)', async () => {
    const st = open({ presign: 600 });
    const blob = await binaryFile(300_000);
    const digest = `sha256:${blob.sha256}`;
    await st.putBlob(digest, blob.path);
    const Key = `${st.prefix}blobs/sha256/${blob.sha256}`;
    const head = await raw.send(new HeadObjectCommand({ Bucket: s3.bucket, Key }));
    assert.equal(head.Metadata?.sha256, blob.sha256);
    assert.equal(head.ContentLength, blob.bytes.length);
    const url = await st.blobUrl(digest);
    assert.ok(typeof url === 'string' && url.startsWith(`${s3.endpoint}/${s3.bucket}/${Key}?`), String(url));
    assert.match(url, /X-Amz-Expires=600/);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), blob.sha256);
    const part = await fetch(url, { headers: { Range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), blob.bytes.subarray(100, 200));
    assert.equal(await open({ prefix: st.prefix }).blobUrl(digest), null, 'without presign: null');
    await st.deleteBlob(digest);
    assert.equal((await fetch(url)).status, 404, 'the URL of a deleted blob finds nothing');
  });

  test('blobs: a mismatch uploads nothing; an upload the bucket does not hold right is refused and removed', async () => {
    const st = open();
    const good = await binaryFile(20_000);
    const other = await binaryFile(20_000);
    const digest = `sha256:${good.sha256}`;
    const sent = recordCommands(st.client);
    await assert.rejects(() => st.putBlob(digest, other.path), /digest mismatch/);
    assert.deepEqual(
      sent().filter((c) => c !== 'HeadObjectCommand'),
      [],
      'nothing was uploaded',
    );
    // The bytes change in the bucket between the upload and its check (a bad upload, a racing writer).
    const Key = `${st.prefix}blobs/sha256/${good.sha256}`;
    let heads = 0;
    const mw: Middleware = (next, context) => async (args) => {
      if (context.commandName === 'HeadObjectCommand' && (args.input as { Key?: string }).Key === Key && ++heads === 2) {
        await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: other.bytes, Metadata: { sha256: other.sha256 } }));
      }
      return next(args);
    };
    st.client.middlewareStack.add(mw as never, { step: 'initialize', name: 'corruptAfterUpload' });
    await assert.rejects(() => st.putBlob(digest, good.path), /integrity check.*not published/);
    assert.equal(heads, 2, 'the upload was checked with a HeadObject');
    assert.equal(await st.statBlob(digest), null, 'the bad object was removed');
    st.client.middlewareStack.remove('corruptAfterUpload');
    assert.deepEqual(await st.putBlob(digest, good.path), { digest, size: good.bytes.length }, 'a retry publishes');
    assert.equal(sha256(await readAll(await st.openBlob(digest))), good.sha256);
  });

  test('records: <prefix>records/<ns>/<name>.json, JSON in the bucket', async () => {
    const st = open();
    await st.putRecord('tags', 'v1.0', { digest: 'sha256:x' });
    const res = await raw.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: st.prefix }));
    assert.deepEqual(
      (res.Contents ?? []).map((o) => o.Key),
      [`${st.prefix}records/tags/v1.0.json`],
    );
    await st.deleteRecord('tags', 'v1.0');
  });

  test('parts without meta.json (a crashed agent) are invisible; a later put publishes', async () => {
    const st = open();
    const key = randomKey();
    const before = await st.stats();
    for (const name of ['binary', 'build.log', 'buildinfo.json']) {
      await raw.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${st.prefix}artifacts/${key}/${name}`, Body: name === 'buildinfo.json' ? '{}' : 'partial' }));
    }
    await assertInvisible(st, key);
    assert.equal((await st.stats()).objects, before.objects);
    const bin = await binaryFile(2_000);
    await st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'retry\n', buildInfo: BUILD_INFO });
    assert.equal((await st.getMeta(key))?.status, 'succeeded');
    assert.equal(sha256(await readAll(await st.openBinary(key))), bin.sha256);
  });

  test('a failed meta.json upload removes the parts that were uploaded', async () => {
    const st = open();
    const key = randomKey();
    const bin = await binaryFile(10_000);
    injectOnce(
      st.client,
      'failMeta',
      (cmd, input) => cmd === 'PutObjectCommand' && String(input.Key).endsWith('/meta.json'),
      async () => {
        throw Object.assign(new Error('injected failure'), { name: 'InjectedError' });
      },
    );
    await assert.rejects(
      () => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO }),
      (err: Error) => {
        assert.match(err.message, new RegExp(`^S3 upload of ${key}/meta\\.json to ${s3.endpoint}/${s3.bucket} failed: .*injected failure.*; the artifact was not published$`));
        return true;
      },
    );
    assert.deepEqual(await names(st, key), []);
    await assertInvisible(st, key);
  });

  test('a failed upload never breaks the published record it was replacing', async () => {
    const st = open();
    const key = randomKey();
    await st.put({ meta: failed(key), log: 'first failure\n' });
    const bin = await binaryFile(10_000);
    injectOnce(
      st.client,
      'failBuildInfo',
      (cmd, input) => cmd === 'PutObjectCommand' && String(input.Key).endsWith('/buildinfo.json'),
      async () => {
        throw new Error('injected failure');
      },
    );
    await assert.rejects(() => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'second\n', buildInfo: BUILD_INFO }), /buildinfo\.json .*not published/);
    const meta = await st.getMeta(key);
    assert.equal(meta?.status, 'failed');
    assert.ok((await st.getLog(key)) !== null, 'the failed record still has a log');
    assert.deepEqual(await names(st, key), ['build.log', 'meta.json'], 'the new binary was removed');
  });

  test('S3 stopped before the upload: put fails within seconds with a clear message; nothing published', async () => {
    const st = open();
    const key = randomKey();
    const bin = await binaryFile(100_000);
    await s3.stop();
    try {
      const t0 = Date.now();
      await assert.rejects(
        () => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO }),
        (err: Error) => {
          assert.match(err.message, new RegExp(`^S3 upload of ${key}.* to ${s3.endpoint}/${s3.bucket} failed: .*ECONNREFUSED.*the artifact was not published$`));
          return true;
        },
      );
      assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
      await assert.rejects(() => st.ping(), /S3 bucket .* is not reachable: .*ECONNREFUSED/);
    } finally {
      await s3.start();
    }
    await assertInvisible(st, key);
    await st.ping();
  });

  test('S3 killed in the middle of a multipart upload: put rejects, nothing published', async () => {
    const st = open({ queueSize: 1 });
    const key = randomKey();
    const bin = await binaryFile(20 * 1024 * 1024);
    injectOnce(
      st.client,
      'killMidUpload',
      (cmd, input) => cmd === 'UploadPartCommand' && input.PartNumber === 2,
      () => killS3(s3),
    );
    const t0 = Date.now();
    try {
      await assert.rejects(
        () => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO }),
        new RegExp(`^Error: S3 upload of ${key}/binary to ${s3.endpoint}/${s3.bucket} failed: .*the artifact was not published$`),
      );
      assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
    } finally {
      await s3.start();
    }
    await assertInvisible(st, key);
    assert.ok(!(await names(st, key)).includes('binary'), 'an unfinished multipart upload is no object');
  });

  test('S3 killed just before meta.json: the uploaded parts stay invisible; a retry publishes', async () => {
    const st = open();
    const key = randomKey();
    const bin = await binaryFile(50_000);
    injectOnce(
      st.client,
      'killBeforeMeta',
      (cmd, input) => cmd === 'PutObjectCommand' && String(input.Key).endsWith('/meta.json'),
      () => killS3(s3),
    );
    try {
      await assert.rejects(
        () => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO }),
        /^Error: S3 upload of [0-9a-f]{64}\/meta\.json to .* failed: .*ECONNREFUSED.*not published$/,
      );
    } finally {
      await s3.start();
    }
    assert.deepEqual(await names(st, key), ['binary', 'build.log', 'buildinfo.json'], 'cleanup could not run: orphans remain');
    await assertInvisible(st, key);
    await st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'retry\n', buildInfo: BUILD_INFO });
    assert.equal(await st.getLog(key), 'retry\n');
  });

  test('a hanging S3 (SIGSTOP) fails by timeout within seconds, not a hang', async () => {
    const st = open({ smallRequestTimeoutMs: 1_000, operationTimeoutMs: 3_000 });
    await s3.pause();
    try {
      const t0 = Date.now();
      await assert.rejects(() => st.ping(), /not reachable: .*(no answer within 3000 ms|requestTimeout)/);
      await assert.rejects(() => st.getMeta(randomKey()), /S3 read of .*meta\.json .* failed: .*(no answer within 3000 ms|requestTimeout)/);
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
    } finally {
      await s3.resume();
    }
    await st.ping();
  });

  test('prefixes isolate stores sharing a bucket', async () => {
    const a = open({ prefix: 'team-a/fairway' });
    const b = open({ prefix: 'team-b/' });
    assert.equal(a.prefix, 'team-a/fairway/');
    const key = randomKey();
    const bin = await binaryFile(1_000);
    await a.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO });
    assert.equal(await b.getMeta(key), null);
    assert.ok(!(await collect(b.list())).some((m) => m.key === key));
    assert.ok((await collect(a.list())).some((m) => m.key === key));
  });

  test('list() pages through more than one ListObjectsV2 page', async () => {
    const st = open();
    const bin = await binaryFile(16);
    const keys = Array.from({ length: 300 }, randomKey); // 4 objects each: 1200 > 1000 per page
    for (let i = 0; i < keys.length; i += 25) {
      await Promise.all(keys.slice(i, i + 25).map((key) => st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO })));
    }
    const listed = await collect(st.list());
    assert.equal(listed.length, keys.length);
    assert.deepEqual(new Set(listed.map((m) => m.key)), new Set(keys));
    assert.equal((await st.stats()).objects, keys.length);
  });

  test('openStore(): an s3:// URL opens a working store', async () => {
    const st = await openStore(`s3://${s3.bucket}/via-url?endpoint=${s3.endpoint}&region=${s3.region}&forcePathStyle=true&presign=120`, {
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      ping: true,
    });
    assert.ok(st instanceof S3Store);
    stores.push(st);
    assert.equal(st.prefix, 'via-url/');
    assert.equal(st.presign, 120);
    const key = randomKey();
    const bin = await binaryFile(1_000);
    await st.put({ meta: succeeded(key, bin), binaryPath: bin.path, log: 'l\n', buildInfo: BUILD_INFO });
    assert.deepEqual(await names(st, key), ['binary', 'build.log', 'buildinfo.json', 'meta.json']);
    const res = await fetch((await st.binaryUrl(key, 'caddy'))!);
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), bin.sha256);
  });

  test('openStore() with ping: an unreachable endpoint fails within seconds', async () => {
    const port = await getFreePort();
    const t0 = Date.now();
    await assert.rejects(
      () => openStore(`s3://fairway-test?endpoint=http://127.0.0.1:${port}`, { credentials: { accessKeyId: 'a', secretAccessKey: 'b' }, ping: true }),
      new RegExp(`S3 bucket http://127\\.0\\.0\\.1:${port}/fairway-test is not reachable: .*ECONNREFUSED`),
    );
    assert.ok(Date.now() - t0 < 20_000);
  });
});

// ------------------------------------------------------------------ openStore URL parsing (no network)

describe('openStore / parseStoreUrl', () => {
  test('fs: absolute fs:/// URL, plain absolute path, relative path against dataDir', async () => {
    const dir = await mkdtemp(join(scratch, 'open-'));
    const a = await openStore(`fs://${join(dir, 'a b')}`.replace(' ', '%20'));
    assert.ok(a instanceof FsStore);
    assert.equal(a.root, join(dir, 'a b'));
    const b = await openStore(join(dir, 'b'));
    assert.ok(b instanceof FsStore && b.root === join(dir, 'b'));
    const c = await openStore('artifacts', { dataDir: dir });
    assert.ok(c instanceof FsStore && c.root === join(dir, 'artifacts'));
    assert.deepEqual(parseStoreUrl('./x/../y', { dataDir: '/srv' }), { kind: 'fs', root: '/srv/y' });
    assert.deepEqual(parseStoreUrl('file:///srv/artifacts'), { kind: 'fs', root: '/srv/artifacts' });
  });

  test('an area of the store (the fleet Go cache): a sub-folder, or a sub-prefix of the S3 prefix', async () => {
    const dir = await mkdtemp(join(scratch, 'area-'));
    const fsArea = await openStore(join(dir, 'store'), { area: 'gocache' });
    assert.ok(fsArea instanceof FsStore && fsArea.root === join(dir, 'store', 'gocache'));
    const creds = { accessKeyId: 'a', secretAccessKey: 'b' };
    for (const [url, prefix] of [
      ['s3://abc/fw?endpoint=http://127.0.0.1:1', 'fw/gocache/'],
      ['s3://abc?endpoint=http://127.0.0.1:1', 'gocache/'],
    ] as const) {
      const st = await openStore(url, { area: 'gocache', credentials: creds });
      assert.ok(st instanceof S3Store);
      assert.equal(st.prefix, prefix);
      await st.close();
    }
    await assert.rejects(openStore(join(dir, 'store'), { area: '../x' }), /invalid store area "\.\.\/x"/);
  });

  test('s3: bucket, prefix and parameters', () => {
    assert.deepEqual(parseStoreUrl('s3://my-bucket/a/b?endpoint=http://127.0.0.1:9000/&region=eu-west-1&forcePathStyle=false&presign=3600'), {
      kind: 's3',
      options: { bucket: 'my-bucket', prefix: 'a/b/', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', forcePathStyle: false, presign: 3600 },
    });
    assert.deepEqual(parseStoreUrl('s3://bucket.with.dots'), { kind: 's3', options: { bucket: 'bucket.with.dots', prefix: '' } });
    assert.deepEqual(parseStoreUrl('s3://b3t/?redirect=60'), { kind: 's3', options: { bucket: 'b3t', prefix: '', presign: 60 } });
    const st = new S3Store({ bucket: 'abc', endpoint: 'http://127.0.0.1:1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    assert.equal(st.where, 'http://127.0.0.1:1/abc');
    void st.close();
  });

  const bad: Array<[string, RegExp]> = [
    ['', /empty store URL/],
    ['s3://', /missing bucket/],
    ['s3:///prefix', /missing bucket/],
    ['s3://Bad_Bucket/x', /invalid S3 bucket name "Bad_Bucket"/],
    ['s3://ab/x', /invalid S3 bucket name/],
    ['s3://bucket/a/../b', /invalid S3 prefix .*"\.\."/],
    ['s3://bucket/a//b', /invalid S3 prefix/],
    ['s3://bucket?endpoint=ftp://x', /endpoint=ftp:\/\/x must be http/],
    ['s3://bucket?endpoint=not a url', /endpoint=not a url is not a URL/],
    ['s3://bucket?presign=soon', /presign=soon must be the expiry/],
    ['s3://bucket?presign=999999999', /presign=999999999/],
    ['s3://bucket?presign=60&redirect=60', /either presign= or redirect=/],
    ['s3://bucket?forcePathStyle=maybe', /forcePathStyle=maybe must be true or false/],
    ['s3://bucket?secret=x', /unknown parameter "secret"/],
    ['s3://bucket?region=us-east-1&region=eu-west-1', /given twice/],
    ['s3://key:secret@bucket/x', /credentials do not belong in the URL/],
    ['s3://bucket:9000/x', /takes no port/],
    ['fs://host/path', /empty host/],
    ['fs:///', /must be absolute and not "\/"/],
    ['s3:bucket', /needs "\/\/"/],
    ['http://example.com/artifacts', /unsupported store URL scheme "http:"/],
    ['gs://bucket/x', /unsupported store URL scheme "gs:"/],
  ];
  for (const [url, re] of bad) {
    test(`refuses ${JSON.stringify(url)}`, async () => {
      await assert.rejects(() => openStore(url), re);
    });
  }
});
