/**
 * The hot tier (src/hottier): fills in the background on a miss, serves verified bytes from memory,
 * keeps to its byte budget (least recently served out first), never holds bytes whose sha256 or
 * size differs from the record, and forgets rebuilt or deleted keys.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { HotCache, type HotItem } from '../../src/hottier/index.js';

function artifact(key: string, bytes: Buffer, over: Partial<HotItem> = {}): HotItem {
  return {
    key: key.padEnd(64, '0'),
    status: 'succeeded',
    sha256: createHash('sha256').update(bytes).digest('hex'),
    size: bytes.length,
    ...over,
  };
}

/** A store read that counts its calls and streams `bytes` in 7-byte chunks. */
function reader(bytes: Buffer) {
  const r = {
    calls: 0,
    read: async () => {
      r.calls++;
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
      return Readable.from(chunks);
    },
  };
  return r;
}

async function body(s: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('a miss returns null and fills in the background; the next open serves the same bytes from memory', async () => {
  const bytes = randomBytes(1000);
  const meta = artifact('a', bytes);
  const cache = new HotCache({ maxBytes: 10_000 });
  const r = reader(bytes);
  assert.equal(cache.open(meta, r.read), null);
  await cache.settled();
  const s = cache.open(meta, r.read);
  assert.ok(s, 'held after the fill');
  assert.deepEqual(await body(s), bytes);
  assert.equal(r.calls, 1, 'the hit did not read the store');
  assert.deepEqual(cache.stats(), { entries: 1, bytes: 1000, maxBytes: 10_000, hits: 1, misses: 1, fills: 1, evictions: 0, failedFills: 0 });
});

test('a range of a held binary is the slice of its bytes', async () => {
  const bytes = randomBytes(500);
  const meta = artifact('b', bytes);
  const cache = new HotCache({ maxBytes: 10_000 });
  cache.open(meta, reader(bytes).read);
  await cache.settled();
  assert.deepEqual(await body(cache.open(meta, reader(bytes).read, { start: 10, end: 99 })!), bytes.subarray(10, 100));
  assert.deepEqual(await body(cache.open(meta, reader(bytes).read, { start: 499, end: 499 })!), bytes.subarray(499));
});

test('concurrent misses on one key share one fill', async () => {
  const bytes = randomBytes(300);
  const meta = artifact('c', bytes);
  const cache = new HotCache({ maxBytes: 10_000 });
  const r = reader(bytes);
  for (let i = 0; i < 20; i++) assert.equal(cache.open(meta, r.read), null);
  await cache.settled();
  assert.equal(r.calls, 1);
  assert.equal(cache.stats().misses, 20);
});

test('bytes that do not hash to the recorded sha256 are never held', async () => {
  const bytes = randomBytes(400);
  const meta = artifact('d', bytes);
  const corrupt = Buffer.from(bytes);
  corrupt[123] = corrupt[123]! ^ 0xff;
  const logged: unknown[] = [];
  const cache = new HotCache({ maxBytes: 10_000, logger: { warn: (o: unknown) => logged.push(o), error: (o: unknown) => logged.push(o), debug: () => undefined } as never });
  assert.equal(cache.open(meta, reader(corrupt).read), null);
  await cache.settled();
  assert.equal(cache.open(meta, reader(corrupt).read), null, 'still a miss');
  await cache.settled();
  assert.equal(cache.stats().entries, 0);
  assert.equal(cache.stats().failedFills, 2);
  assert.ok(
    logged.some((o) => /mismatch/.test(JSON.stringify(o))),
    'the mismatch is logged',
  );
});

test('a stored binary shorter or longer than its record is not held', async () => {
  const bytes = randomBytes(400);
  const cache = new HotCache({ maxBytes: 10_000 });
  cache.open(artifact('e', bytes, { size: 401 }), reader(bytes).read);
  cache.open(artifact('f', bytes, { size: 399 }), reader(bytes).read);
  await cache.settled();
  assert.equal(cache.stats().entries, 0);
  assert.equal(cache.stats().failedFills, 2);
  assert.equal(cache.stats().bytes, 0);
});

test('a failing store read is counted and leaves nothing behind', async () => {
  const bytes = randomBytes(100);
  const cache = new HotCache({ maxBytes: 10_000 });
  cache.open(artifact('g', bytes), () => Promise.reject(new Error('gone')));
  await cache.settled();
  assert.deepEqual([cache.stats().entries, cache.stats().failedFills], [0, 1]);
});

test('the budget holds: least recently served entries are evicted first', async () => {
  const a = randomBytes(40);
  const b = randomBytes(40);
  const c = randomBytes(40);
  const [ma, mb, mc] = [artifact('a', a), artifact('b', b), artifact('c', c)];
  const cache = new HotCache({ maxBytes: 100, maxEntryBytes: 100 });
  cache.open(ma, reader(a).read);
  cache.open(mb, reader(b).read);
  await cache.settled();
  assert.ok(cache.open(ma, reader(a).read), 'a served: now the most recent');
  cache.open(mc, reader(c).read); // needs room: b (least recently served) goes
  await cache.settled();
  assert.deepEqual([cache.has(ma.key), cache.has(mb.key), cache.has(mc.key)], [true, false, true]);
  assert.equal(cache.stats().bytes, 80);
  assert.equal(cache.stats().evictions, 1);
  assert.ok(cache.stats().bytes <= 100);
});

test('a binary over the entry limit is never held, and evicts nothing', async () => {
  const small = randomBytes(30);
  const big = randomBytes(60);
  const cache = new HotCache({ maxBytes: 100 }); // entry limit: 50
  cache.open(artifact('s', small), reader(small).read);
  await cache.settled();
  const r = reader(big);
  assert.equal(cache.open(artifact('big', big), r.read), null);
  await cache.settled();
  assert.equal(r.calls, 0, 'not even read');
  assert.equal(cache.stats().entries, 1);
});

test('a key rebuilt with other bytes misses, and its old bytes are dropped', async () => {
  const v1 = randomBytes(50);
  const v2 = randomBytes(50);
  const cache = new HotCache({ maxBytes: 1000 });
  cache.open(artifact('k', v1), reader(v1).read);
  await cache.settled();
  const m2 = artifact('k', v2);
  assert.equal(cache.open(m2, reader(v2).read), null, 'the old entry does not answer for the new sha256');
  await cache.settled();
  assert.deepEqual(await body(cache.open(m2, reader(v2).read)!), v2);
  assert.equal(cache.stats().bytes, 50);
});

test('delete() forgets a key, also while its fill is in flight', async () => {
  const bytes = randomBytes(50);
  const meta = artifact('z', bytes);
  const cache = new HotCache({ maxBytes: 1000 });
  cache.open(meta, reader(bytes).read);
  cache.delete(meta.key); // before the fill lands
  await cache.settled();
  assert.equal(cache.has(meta.key), false);
  assert.equal(cache.stats().bytes, 0);
  cache.open(meta, reader(bytes).read);
  await cache.settled();
  assert.equal(cache.has(meta.key), true);
  cache.delete(meta.key);
  assert.equal(cache.open(meta, reader(bytes).read), null);
});

test('a budget of 0 turns the tier off: nothing is read or held', async () => {
  const bytes = randomBytes(10);
  const r = reader(bytes);
  const cache = new HotCache({ maxBytes: 0 });
  assert.equal(cache.enabled, false);
  assert.equal(cache.open(artifact('o', bytes), r.read), null);
  await cache.settled();
  assert.equal(r.calls, 0);
});

test('failed builds and records without a checksum are never filled', async () => {
  const bytes = randomBytes(10);
  const r = reader(bytes);
  const cache = new HotCache({ maxBytes: 1000 });
  assert.equal(cache.open(artifact('f1', bytes, { status: 'failed' }), r.read), null);
  const { sha256: _, ...noSum } = artifact('f2', bytes);
  assert.equal(cache.open(noSum as HotItem, r.read), null);
  await cache.settled();
  assert.equal(r.calls, 0);
});
