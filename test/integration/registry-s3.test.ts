/**
 * The OCI registry of a hub on an S3 store with presigned redirects: `fairway hub --store s3://…
 * ?presign=… --download-redirect` and one `fairway agent` on real Redis and the real S3 server
 * (versitygw), images for linux/amd64 only. crane pulls caddy:<version>; blob GETs are answered
 * with a 307 to the S3 server's presigned URL, and the pulled layers hash to their digests. A blob
 * corrupted in S3: through the redirect the client gets S3's bytes and its own digest check refuses
 * them (crane fails the pull); a hub without redirects never serves it as good bytes (the transfer
 * is cut, the blob deleted, the image made again from the binary with the same digests). The agent
 * signs with a build key and the hubs verify with its public half (`publicKey`): each hub signs the
 * tag's index with the index key it made at first start, and cosign (`verify`, `verify-attestation
 * --type slsaprovenance1`) accepts the tag with that key, not with the build key, and not another
 * hub's index with it.
 *
 * The agent builds with a stand-in xcaddy that copies a real Go binary (xcaddy's own) to --output:
 * the test is about the registry on S3, not about compiling Caddy, and a build takes a second.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/registry-s3.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { createKeyPair, fingerprintOf, publicKeyFromPem } from '../../src/provenance/index.js';
import { COSIGN, COSIGN_REGISTRY_OPTS, attestedStatements, cosign } from '../helpers/cosign.js';
import { CADDY_VERSION, instantXcaddy, ROOT, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';

const run = promisify(execFile);
const CRANE = join(ROOT, '.tools', 'bin', 'crane');
const TAG = CADDY_VERSION.replace(/^v/, '');
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Runs crane; a failure names the server's last log lines too. */
async function crane(args: string[], server?: FairwayProcess): Promise<string> {
  try {
    return (await run(CRANE, args, { maxBuffer: 64 * 1024 * 1024, timeout: 10 * 60_000 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`crane ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}\nserver log (tail):\n${server?.output().slice(-4000) ?? ''}`);
  }
}

interface Manifest {
  config: { digest: string; size: number };
  layers: Array<{ digest: string; size: number }>;
}

describe('registry on a hub with the S3 store and presigned redirects', { timeout: 20 * 60_000 }, () => {
  let redis: RedisService;
  let s3: S3Service;
  let s3client: S3Client;
  let dir: string;
  let storeUrl: string;
  let env: NodeJS.ProcessEnv;
  let hub: FairwayProcess;
  let agent: FairwayProcess;
  let plainHub: FairwayProcess | undefined;
  let bin: string;
  let host: string;
  let manifest: Manifest;
  let manifestDigest: string;
  const args = () => ['--redis', redis.url, '--store', storeUrl, '--xcaddy-bin', bin, '--image-platforms', 'linux/amd64'];
  /** The agent signs with the build key; hubs verify with its public half (and sign indexes with their own index key). */
  const build = createKeyPair();
  let buildKeyFile: string;
  let buildPub: string;
  const hubArgs = () => [...args(), '--public-key', buildPub];
  const objectKey = (digest: string) => `fw/blobs/sha256/${digest.slice(7)}`;

  /** crane pull to an OCI layout; checks every blob of the pulled image against its digest. */
  const pullAndCheck = async (into: string): Promise<Manifest> => {
    await crane(['pull', '--insecure', '--platform', 'linux/amd64', '--format', 'oci', `${host}/caddy:${TAG}`, into], hub);
    const index = JSON.parse(await readFile(join(into, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const blob = (d: string) => readFile(join(into, 'blobs', 'sha256', d.slice(7)));
    const m = JSON.parse((await blob(index.manifests[0]!.digest)).toString()) as Manifest;
    for (const d of [m.config, ...m.layers]) {
      const bytes = await blob(d.digest);
      assert.equal(sha256(bytes), d.digest, 'the pulled blob hashes to its digest');
      assert.equal(bytes.length, d.size);
    }
    return m;
  };

  before(async () => {
    assert.ok(existsSync(CRANE), 'crane is missing: run bash scripts/image-tools.sh');
    [redis, s3] = await Promise.all([startRedis(), startS3()]);
    dir = await tempDir('fairway-registry-s3-');
    bin = await instantXcaddy(dir);
    storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true&presign=600`;
    env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    s3client = new S3Client(s3.clientConfig());
    buildKeyFile = join(dir, 'build.key');
    buildPub = join(dir, 'build.pub');
    await writeFile(buildKeyFile, build.privatePem, { mode: 0o600 });
    await writeFile(buildPub, build.publicPem);
    [hub, agent] = await Promise.all([
      startFairway({ command: 'hub', args: [...hubArgs(), '--download-redirect'], env, dataDir: join(dir, 'hub') }),
      startFairway({ command: 'agent', args: [...args(), '--signing-key', buildKeyFile, '--agent-id', 'agent-r', '--concurrency', '1'], env, dataDir: join(dir, 'agent') }),
    ]);
    host = `127.0.0.1:${hub.port}`;
  });

  after(async () => {
    await Promise.all([hub, agent, plainHub].map((p) => p?.stop('SIGKILL')));
    s3client?.destroy();
    await Promise.all([redis?.destroy(), s3?.destroy()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('crane pulls caddy:<version> (linux/amd64); every blob GET is a 307 to the presigned S3 URL; the layers match their digests', async () => {
    manifest = await pullAndCheck(join(dir, 'pull1'));
    manifestDigest = (await crane(['digest', '--insecure', '--platform', 'linux/amd64', `${host}/caddy:${TAG}`])).trim();
    assert.match(manifestDigest, /^sha256:[0-9a-f]{64}$/);
    for (const d of [manifest.config, ...manifest.layers]) {
      const res = await fetch(`http://${host}/v2/caddy/blobs/${d.digest}`, { redirect: 'manual' });
      assert.equal(res.status, 307, `blob ${d.digest}`);
      const location = res.headers.get('location') ?? '';
      const url = new URL(location);
      assert.equal(url.origin, new URL(s3.endpoint).origin, 'redirected to the S3 server');
      assert.equal(url.pathname, `/${s3.bucket}/${objectKey(d.digest)}`);
      assert.ok(url.searchParams.get('X-Amz-Signature'), 'a presigned URL');
      const direct = Buffer.from(await (await fetch(location)).arrayBuffer());
      assert.equal(sha256(direct), d.digest, 'the presigned URL serves the blob');
    }
  });

  test('a blob corrupted in S3: via the redirect the client refuses it; a hub without redirects cuts the transfer and deletes it; the image is made again', async () => {
    const layer = manifest.layers.at(-1)!;
    const Key = objectKey(layer.digest);
    const got = await s3client.send(new GetObjectCommand({ Bucket: s3.bucket, Key }));
    const good = Buffer.from(await got.Body!.transformToByteArray());
    const bad = Buffer.from(good);
    bad[bad.length >> 1]! ^= 0xff; // same size, other bytes
    await s3client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: bad, ContentType: 'application/octet-stream', Metadata: got.Metadata ?? {} }));

    // Redirect path: S3 serves what it holds; the client's digest check is what refuses it.
    await assert.rejects(crane(['pull', '--insecure', '--platform', 'linux/amd64', '--format', 'oci', `${host}/caddy:${TAG}`, join(dir, 'pull-bad')]), /digest|sha256|mismatch/i);

    // Without redirects the hub streams the blob itself, checked against the digest on the way.
    plainHub = await startFairway({ command: 'hub', args: hubArgs(), env, dataDir: join(dir, 'hub2') });
    const plain = `http://127.0.0.1:${plainHub.port}`;
    const res = await fetch(`${plain}/v2/caddy/blobs/${layer.digest}`);
    let body: Buffer | null = null;
    if (res.status === 200)
      body = await res.arrayBuffer().then(
        (b) => Buffer.from(b),
        () => null,
      );
    assert.ok(res.status !== 200 || body === null || sha256(body) !== layer.digest, 'never the whole corrupt blob as good bytes');
    assert.ok(res.status !== 200 || body === null || body.length < layer.size, `not a complete 200 (status ${res.status}, ${body?.length} of ${layer.size} bytes)`);
    // The corrupt object was deleted; the next manifest pull makes the image again from the binary.
    const deadline = Date.now() + 30_000;
    while ((await fetch(`${plain}/v2/caddy/blobs/${layer.digest}`, { method: 'HEAD' })).status !== 404) {
      assert.ok(Date.now() < deadline, 'the corrupt blob is deleted');
      await new Promise((r) => setTimeout(r, 200));
    }
    const again = await pullAndCheck(join(dir, 'pull2'));
    assert.deepEqual(again, manifest, 'the same image, digests unchanged');
    assert.equal((await crane(['digest', '--insecure', '--platform', 'linux/amd64', `${host}/caddy:${TAG}`])).trim(), manifestDigest);
    const fixed = await s3client.send(new GetObjectCommand({ Bucket: s3.bucket, Key }));
    assert.equal(sha256(Buffer.from(await fixed.Body!.transformToByteArray())), layer.digest, 'the store holds the good blob again');
  });

  test("the tag's index is signed by the hub's own index key (made at first start) once its image verified under the agent's key: cosign passes with it, fails with the build key and for another hub's index", async () => {
    assert.ok(existsSync(COSIGN), 'cosign is missing: run bash scripts/image-tools.sh');
    const keyFile = join(dir, 'hub', 'index-signing.key');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600, 'the index key file is mode 0600');
    const pem = await (await fetch(`http://${host}/api/index-signing-key`)).text();
    const fp = fingerprintOf(publicKeyFromPem(pem));
    assert.equal(fingerprintOf(createPublicKey(await readFile(keyFile, 'utf8'))), fp, '/api/index-signing-key serves the public half of the key file');
    assert.match(hub.output(), new RegExp(`created an index signing key \\(no indexSigningKey set\\): fingerprint ${fp}`));
    const indexPub = join(dir, 'index.pub');
    await writeFile(indexPub, pem);
    const tag = `${host}/caddy:${TAG}`;
    const indexDigest = (await crane(['digest', '--insecure', tag])).trim();
    const sig = await cosign(['verify', '--key', indexPub, ...COSIGN_REGISTRY_OPTS, tag], dir);
    assert.ok(sig.ok, sig.out);
    assert.match(sig.out, new RegExp(`"docker-manifest-digest":"${indexDigest}"`));
    const att = await cosign(['verify-attestation', '--key', indexPub, '--type', 'slsaprovenance1', ...COSIGN_REGISTRY_OPTS, tag], dir);
    assert.ok(att.ok, att.out);
    const statements = attestedStatements(att.out);
    assert.equal(statements.length, 1);
    assert.deepEqual(
      statements[0]!.subject.map((x) => `sha256:${x.digest.sha256}`),
      [indexDigest, manifestDigest],
    );
    // The build key signs images, not indexes; another hub (its own index key) signs the same index, but not with this key.
    const byBuildKey = await cosign(['verify', '--key', buildPub, ...COSIGN_REGISTRY_OPTS, tag], dir);
    assert.ok(!byBuildKey.ok, `the build key must not verify an index:\n${byBuildKey.out}`);
    const other = `127.0.0.1:${plainHub!.port}/caddy:${TAG}`;
    for (const a of [['verify'], ['verify-attestation', '--type', 'slsaprovenance1']]) {
      const foreign = await cosign([...a, '--key', indexPub, ...COSIGN_REGISTRY_OPTS, other], dir);
      assert.ok(!foreign.ok, `an index signed without this key must be refused:\n${foreign.out}`);
    }
    const otherPub = join(dir, 'index2.pub');
    await writeFile(otherPub, await (await fetch(`http://127.0.0.1:${plainHub!.port}/api/index-signing-key`)).text());
    const own = await cosign(['verify', '--key', otherPub, ...COSIGN_REGISTRY_OPTS, other], dir);
    assert.ok(own.ok, own.out);
  });
});
