// Integration test of the loopback test services themselves (real redis-server
// and real versitygw). Needs `bash scripts/deps.sh` first; fails (never skips)
// when a binary is missing.
//   node --import tsx --test test/services.test.ts
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { startRedis, startS3, type S3Service } from '../helpers/services.js';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

async function withRedis<T>(url: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = new Redis(url, { maxRetriesPerRequest: 20, lazyConnect: true, retryStrategy: () => null });
  r.on('error', () => undefined); // surfaced through the rejected command instead
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

test('redis: PING, SET/GET, restart keeps the port (and loses data)', async () => {
  const redis = await startRedis();
  try {
    assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(redis.url, `redis://127.0.0.1:${redis.port}`);
    const client = new Redis(redis.url, { maxRetriesPerRequest: 50, retryStrategy: () => 50 });
    client.on('error', () => undefined); // expected while restarting
    try {
      assert.equal(await client.ping(), 'PONG');
      await client.set('fairway:k', 'v1');
      assert.equal(await client.get('fairway:k'), 'v1');

      const port = redis.port;
      const pid = redis.pid;
      await redis.restart();
      assert.equal(redis.port, port, 'same port after restart');
      assert.notEqual(redis.pid, pid, 'a new process');
      assert.equal(redis.running, true);
      // The same client reconnects on its own; no persistence -> data is gone.
      assert.equal(await client.ping(), 'PONG');
      assert.equal(await client.get('fairway:k'), null);
      await client.set('fairway:k', 'v2');
      assert.equal(await client.get('fairway:k'), 'v2');
    } finally {
      client.disconnect();
    }

    // stop() -> unreachable; start() -> back on the same port.
    await redis.stop();
    assert.equal(redis.running, false);
    await assert.rejects(() => withRedis(redis.url, (r) => r.ping()).then(() => undefined), /ECONNREFUSED|Connection is closed|connect/i);
    await redis.start();
    assert.equal(await withRedis(redis.url, (r) => r.ping()), 'PONG');
  } finally {
    await redis.destroy();
  }
});

test('redis: persistence option keeps data across kill() + start()', async () => {
  const redis = await startRedis({ persistence: true });
  try {
    await withRedis(redis.url, (r) => r.set('durable', 'yes'));
    await redis.kill();
    assert.equal(redis.running, false);
    await redis.start();
    assert.equal(await withRedis(redis.url, (r) => r.get('durable')), 'yes');
    await redis.restart();
    assert.equal(await withRedis(redis.url, (r) => r.get('durable')), 'yes');
  } finally {
    await redis.destroy();
  }
});

let s3: S3Service;
let client: S3Client;

before(async () => {
  s3 = await startS3();
  client = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    forcePathStyle: s3.forcePathStyle,
  });
});

after(async () => {
  client?.destroy();
  await s3?.destroy();
});

test('s3: service shape', () => {
  assert.match(s3.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s3.forcePathStyle, true);
  assert.equal(s3.region, 'us-east-1');
  assert.ok(s3.bucket.length > 0);
  const cfg = s3.clientConfig();
  assert.equal(cfg.endpoint, s3.endpoint);
  assert.equal(cfg.forcePathStyle, true);
});

test('s3: PutObject, GetObject, HeadObject, ListObjectsV2 with prefix, DeleteObject', async () => {
  const Bucket = s3.bucket;
  await client.send(new PutObjectCommand({ Bucket, Key: 'a/one.txt', Body: 'one', ContentType: 'text/plain' }));
  await client.send(new PutObjectCommand({ Bucket, Key: 'a/two.txt', Body: 'two' }));
  await client.send(new PutObjectCommand({ Bucket, Key: 'b/three.txt', Body: 'three' }));

  const got = await client.send(new GetObjectCommand({ Bucket, Key: 'a/one.txt' }));
  assert.equal(await got.Body?.transformToString(), 'one');
  assert.equal(got.ContentType, 'text/plain');

  const head = await client.send(new HeadObjectCommand({ Bucket, Key: 'a/two.txt' }));
  assert.equal(head.ContentLength, 3);
  assert.ok(head.ETag);

  const listA = await client.send(new ListObjectsV2Command({ Bucket, Prefix: 'a/' }));
  assert.deepEqual(listA.Contents?.map((o) => o.Key).sort(), ['a/one.txt', 'a/two.txt']);
  assert.equal(listA.KeyCount, 2);

  const listRoot = await client.send(new ListObjectsV2Command({ Bucket, Delimiter: '/' }));
  assert.deepEqual(listRoot.CommonPrefixes?.map((p) => p.Prefix).sort(), ['a/', 'b/']);

  await client.send(new DeleteObjectCommand({ Bucket, Key: 'a/one.txt' }));
  await assert.rejects(
    () => client.send(new HeadObjectCommand({ Bucket, Key: 'a/one.txt' })),
    (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
      assert.equal(err.$metadata?.httpStatusCode, 404);
      return true;
    },
  );
  await assert.rejects(
    () => client.send(new GetObjectCommand({ Bucket, Key: 'a/one.txt' })),
    (err: Error) => err.name === 'NoSuchKey',
  );
  const after = await client.send(new ListObjectsV2Command({ Bucket, Prefix: 'a/' }));
  assert.deepEqual(
    after.Contents?.map((o) => o.Key),
    ['a/two.txt'],
  );
});

test('s3: multipart upload (lib-storage Upload, ~12 MB in 5 MB parts)', async () => {
  const Bucket = s3.bucket;
  const Key = 'artifacts/big.bin';
  const body = randomBytes(12 * 1024 * 1024 + 12345);
  const partsSeen = new Set<number>();
  const upload = new Upload({
    client,
    params: { Bucket, Key, Body: body, ContentType: 'application/octet-stream' },
    partSize: 5 * 1024 * 1024,
    queueSize: 2,
    leavePartsOnError: false,
  });
  upload.on('httpUploadProgress', (p) => {
    if (p.part !== undefined) partsSeen.add(p.part);
  });
  const res = await upload.done();
  assert.equal(res.Key, Key);
  assert.deepEqual([...partsSeen].sort(), [1, 2, 3], 'three parts were uploaded');
  assert.match(res.ETag ?? '', /-3"?$/, 'multipart ETag has the part-count suffix');

  const head = await client.send(new HeadObjectCommand({ Bucket, Key }));
  assert.equal(head.ContentLength, body.length);

  const got = await client.send(new GetObjectCommand({ Bucket, Key }));
  const bytes = await got.Body!.transformToByteArray();
  assert.equal(bytes.length, body.length);
  assert.equal(sha256(bytes), sha256(body));

  // Ranged GET works too (resumable downloads).
  const ranged = await client.send(new GetObjectCommand({ Bucket, Key, Range: 'bytes=5242880-5242889' }));
  const slice = await ranged.Body!.transformToByteArray();
  assert.deepEqual(Buffer.from(slice), body.subarray(5242880, 5242890));
});

test('s3: presigned GET (and PUT) URLs work with global fetch', async () => {
  const Bucket = s3.bucket;
  const Key = 'presigned/hello world+ünïcode.txt';
  await client.send(new PutObjectCommand({ Bucket, Key, Body: 'presigned-body' }));

  const url = await getSignedUrl(client, new GetObjectCommand({ Bucket, Key }), { expiresIn: 60 });
  assert.ok(url.startsWith(`${s3.endpoint}/${Bucket}/`), url);
  assert.match(url, /X-Amz-Signature=/);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'presigned-body');

  // Tampering breaks the signature.
  const bad = await fetch(url.replace(/X-Amz-Signature=[0-9a-f]{4}/, 'X-Amz-Signature=0000'));
  assert.equal(bad.status, 403);
  await bad.arrayBuffer();

  const putUrl = await getSignedUrl(client, new PutObjectCommand({ Bucket, Key: 'presigned/put.txt' }), {
    expiresIn: 60,
  });
  const put = await fetch(putUrl, { method: 'PUT', body: 'via-presigned-put' });
  assert.equal(put.status, 200, await put.text());
  const got = await client.send(new GetObjectCommand({ Bucket, Key: 'presigned/put.txt' }));
  assert.equal(await got.Body?.transformToString(), 'via-presigned-put');
});

test('s3: stop() makes it unreachable, start() brings it back with its data', async () => {
  const Bucket = s3.bucket;
  await client.send(new PutObjectCommand({ Bucket, Key: 'fault/keep.txt', Body: 'still here' }));
  // One attempt, no SDK retries: the failure is immediate.
  const once = new S3Client(s3.clientConfig({ maxAttempts: 1 }));
  try {
    const port = s3.port;
    await s3.stop();
    assert.equal(s3.running, false);
    await assert.rejects(
      () => once.send(new GetObjectCommand({ Bucket, Key: 'fault/keep.txt' })),
      (err: Error & { code?: string }) => {
        assert.match(`${err.name} ${err.code ?? ''} ${err.message}`, /ECONNREFUSED/);
        return true;
      },
    );
    await s3.start();
    assert.equal(s3.port, port);
    const got = await once.send(new GetObjectCommand({ Bucket, Key: 'fault/keep.txt' }));
    assert.equal(await got.Body?.transformToString(), 'still here');

    // kill() (crash) + start(): same.
    await s3.kill();
    await assert.rejects(() => once.send(new HeadObjectCommand({ Bucket, Key: 'fault/keep.txt' })));
    await s3.start();
    const head = await once.send(new HeadObjectCommand({ Bucket, Key: 'fault/keep.txt' }));
    assert.equal(head.ContentLength, 'still here'.length);

    // restart(): same port, same data.
    await s3.restart();
    assert.equal(s3.port, port);
    const again = await client.send(new GetObjectCommand({ Bucket, Key: 'fault/keep.txt' }));
    assert.equal(await again.Body?.transformToString(), 'still here');
  } finally {
    once.destroy();
  }
});

test('s3: pause() makes requests hang (timeout), resume() answers again', async () => {
  const Bucket = s3.bucket;
  const once = new S3Client(s3.clientConfig({ maxAttempts: 1 }));
  try {
    await s3.pause();
    const t0 = Date.now();
    await assert.rejects(() =>
      once.send(new HeadObjectCommand({ Bucket, Key: 'fault/keep.txt' }), {
        abortSignal: AbortSignal.timeout(500),
      }),
    );
    assert.ok(Date.now() - t0 >= 450, 'failed by timeout, not by refusal');
    await s3.resume();
    const head = await once.send(new HeadObjectCommand({ Bucket, Key: 'fault/keep.txt' }));
    assert.equal(head.ContentLength, 'still here'.length);
  } finally {
    once.destroy();
  }
});

test('helpers fail loudly (no skip) when a binary is missing', async () => {
  await assert.rejects(() => startS3({ binary: '/nonexistent/versitygw' }), /scripts\/deps\.sh/);
  await assert.rejects(() => startRedis({ binary: '/nonexistent/redis-server' }), /scripts\/deps\.sh/);
});
