// The OCI registry (/v2) and the recipes API in-process (inject(); test/helpers/api.ts): no Go, no
// network. Builds are stand-ins put straight into the fs store (fake ELF binaries), so a tag's
// platforms are cache hits; a platform not in the store stays queued (the helper's jobs never end).
//   node --import tsx --test test/unit/registry.test.ts
import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { HotCache } from '../../src/hottier/index.js';
import { configSchema } from '../../src/config/schema.js';
import { createKeyPair, publicKeyFromPem } from '../../src/provenance/index.js';
import { pae } from '../../src/provenance/dsse.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { publishImage } from '../../src/registry/index.js';
import { goPlatform, manifestBelongs, MAX_INDEX_CHILDREN } from '../../src/registry/oci.js';
import { cacheKey, type ResolvedSpec } from '../../src/request/index.js';
import { putSucceededBuild, testApi, type TestApi } from '../helpers/api.js';

const L4 = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

/** What the helper's resolver answers for linux/<arch> (it pins v2.11.9 and drops plugins). */
function specOf(arch: string, plugins: ResolvedSpec['plugins'] = []): ResolvedSpec {
  return { caddyVersion: 'v2.11.9', os: 'linux', arch, plugins, toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' } };
}

/** Puts a succeeded build of linux/<arch> into the store, as the job processor would. */
function putBuild(t: TestApi, arch: string, plugins: ResolvedSpec['plugins'] = []): Promise<string> {
  return putSucceededBuild(t, specOf(arch, plugins), {
    request: { caddyVersion: 'latest', os: 'linux', arch, plugins: plugins.map((p) => ({ module: p.module, ...(p.version ? { version: p.version } : {}) })) },
    seed: `caddy-${arch}-${plugins.length}`,
    at: '2026-11-30T08:15:00.000Z',
  });
}

function ociError(res: { json(): unknown }): string {
  const body = res.json() as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors.length, 1);
  assert.equal(typeof body.errors[0]!.message, 'string');
  return body.errors[0]!.code;
}

const digestOf = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('registry: manifests, blobs, tags', () => {
  let t: TestApi;
  let amd64: string;
  before(async () => {
    t = await testApi({ registry: { recipes: { l4: { plugins: [L4] } } } });
    amd64 = await putBuild(t, 'amd64');
    await putBuild(t, 'arm64');
    t.service.versions = async () => ({
      module: 'github.com/caddyserver/caddy/v2',
      versions: ['v2.11.9', 'v2.11.8', 'v2.10.2'].map((version) => ({ version, prerelease: false })),
      latest: 'v2.11.9',
      refreshedAt: new Date().toISOString(),
    });
  });
  after(async () => t?.close());

  test('GET /v2/ answers 200 with the API version header', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v2/' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
  });

  test('caddy/build:<id>: the image manifest, its digest header, HEAD without body, its blobs', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${amd64}` });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], MANIFEST);
    assert.equal(res.headers['docker-content-digest'], digestOf(res.rawPayload));
    assert.equal(Number(res.headers['content-length']), res.rawPayload.length);
    const m = res.json() as { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number }>; annotations: Record<string, string> };
    assert.equal(m.annotations['dev.fairway.key'], amd64);
    const head = await t.app.inject({ method: 'HEAD', url: `/v2/caddy/build/manifests/${amd64}` });
    assert.equal(head.statusCode, 200);
    assert.equal(head.rawPayload.length, 0);
    assert.equal(head.headers['docker-content-digest'], res.headers['docker-content-digest']);
    assert.equal(head.headers['content-length'], res.headers['content-length']);
    assert.equal(head.headers['content-type'], MANIFEST);
    for (const d of [m.config, ...m.layers]) {
      const b = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/blobs/${d.digest}` });
      assert.equal(b.statusCode, 200);
      assert.equal(digestOf(b.rawPayload), d.digest);
      assert.equal(b.rawPayload.length, d.size);
      assert.equal(b.headers['docker-content-digest'], d.digest);
      assert.equal(b.headers['content-type'], 'application/octet-stream');
      const hb = await t.app.inject({ method: 'HEAD', url: `/v2/caddy/build/blobs/${d.digest}` });
      assert.equal(hb.statusCode, 200);
      assert.equal(hb.rawPayload.length, 0);
      assert.equal(Number(hb.headers['content-length']), d.size);
    }
    // Range: the bytes asked for, 206 with Content-Range.
    const layer = m.layers[1]!;
    const whole = (await t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${layer.digest}` })).rawPayload;
    const part = await t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${layer.digest}`, headers: { range: 'bytes=10-99' } });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers['content-range'], `bytes 10-99/${layer.size}`);
    assert.deepEqual(part.rawPayload, whole.subarray(10, 100));
    const bad = await t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${layer.digest}`, headers: { range: `bytes=${layer.size + 5}-` } });
    assert.equal(bad.statusCode, 416);
    // The manifest by digest, in a repository it belongs to (plain Caddy: caddy).
    const byDigest = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/${res.headers['docker-content-digest']}` });
    assert.equal(byDigest.statusCode, 200);
    assert.deepEqual(byDigest.rawPayload, res.rawPayload);
    // A layer is not a manifest.
    const notManifest = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/${layer.digest}` });
    assert.equal(notManifest.statusCode, 404);
    assert.equal(ociError(notManifest), 'MANIFEST_UNKNOWN');
  });

  test('a tag is an index over the image platforms; 2.11.9, v2.11.9, latest and the digest agree; made once', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/2.11.9' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], INDEX);
    const digest = res.headers['docker-content-digest'];
    assert.equal(digest, digestOf(res.rawPayload));
    const index = res.json() as { manifests: Array<{ digest: string; platform: { architecture: string; os: string; variant?: string } }> };
    assert.deepEqual(
      index.manifests.map((d) => d.platform),
      [
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8' },
      ],
    );
    const build = await t.app.inject({ method: 'HEAD', url: `/v2/caddy/build/manifests/${amd64}` });
    assert.equal(index.manifests[0]!.digest, build.headers['docker-content-digest'], 'the index names the build image');
    for (const ref of ['v2.11.9', 'latest', String(digest)]) {
      const r = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/${ref}` });
      assert.equal(r.statusCode, 200, ref);
      assert.equal(r.headers['docker-content-digest'], digest, ref);
    }
    const recipe = await t.app.inject({ method: 'GET', url: '/v2/caddy/l4/manifests/latest' });
    assert.equal(recipe.statusCode, 200, recipe.body);
    assert.equal(recipe.headers['content-type'], INDEX);
    // One image record per artifact; blobs stay what they were (never re-encoded).
    assert.deepEqual((await t.store.listRecords('images')).length, 2);
    const blobs: string[] = [];
    for await (const b of t.store.listBlobs()) blobs.push(b.digest);
    const putRecord = t.store.putRecord.bind(t.store);
    let imageWrites = 0;
    t.store.putRecord = async (ns, name, value) => {
      if (ns === 'images') imageWrites++;
      return putRecord(ns, name, value);
    };
    await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/latest' });
    await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${amd64}` });
    t.store.putRecord = putRecord;
    assert.equal(imageWrites, 0, 'images are not made again');
    const again: string[] = [];
    for await (const b of t.store.listBlobs()) again.push(b.digest);
    assert.deepEqual(again.sort(), blobs.sort());
    assert.equal(t.calls.jobs, 0, 'every platform was a cache hit');
  });

  test('a stored blob that does not match its digest is never served whole, and is dropped', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${amd64}` });
    const m = res.json() as { config: { digest: string; size: number } };
    const path = join(t.store.root, 'blobs', 'sha256', m.config.digest.slice(7));
    const good = await readFile(path);
    const bad = Buffer.from(good);
    bad[10] = bad[10]! ^ 1;
    await writeFile(path, bad);
    const got = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/blobs/${m.config.digest}` }).catch((err: Error) => err);
    if (!(got instanceof Error)) {
      assert.ok(got.statusCode >= 500 || got.rawPayload.length < m.config.size, `corrupt bytes answered ${got.statusCode} with ${got.rawPayload.length} bytes`);
      assert.notDeepEqual(got.rawPayload, bad);
    }
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await t.store.statBlob(m.config.digest), null, 'the corrupt blob was deleted');
    // The image is made again from the artifact (same bytes: same digests).
    const again = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${amd64}` });
    assert.equal(again.statusCode, 200);
    assert.equal(again.headers['docker-content-digest'], res.headers['docker-content-digest']);
    assert.deepEqual(await readFile(path), good);
  });

  test('tags/list with n/last pagination and a Link header', async () => {
    const all = await t.app.inject({ method: 'GET', url: '/v2/caddy/tags/list' });
    assert.equal(all.statusCode, 200);
    assert.deepEqual(all.json(), { name: 'caddy', tags: ['2.10.2', '2.11.8', '2.11.9', 'latest', 'v2.10.2', 'v2.11.8', 'v2.11.9'] });
    const p1 = await t.app.inject({ method: 'GET', url: '/v2/caddy/tags/list?n=3' });
    assert.deepEqual(p1.json().tags, ['2.10.2', '2.11.8', '2.11.9']);
    assert.equal(p1.headers.link, '</v2/caddy/tags/list?n=3&last=2.11.9>; rel="next"');
    const p2 = await t.app.inject({ method: 'GET', url: '/v2/caddy/tags/list?n=3&last=2.11.9' });
    assert.deepEqual(p2.json().tags, ['latest', 'v2.10.2', 'v2.11.8']);
    const p3 = await t.app.inject({ method: 'GET', url: '/v2/caddy/tags/list?n=3&last=v2.11.8' });
    assert.deepEqual(p3.json().tags, ['v2.11.9']);
    assert.equal(p3.headers.link, undefined);
    const builds = await t.app.inject({ method: 'GET', url: '/v2/caddy/build/tags/list' });
    assert.equal(builds.json().tags.length, 2);
    assert.ok(builds.json().tags.includes(amd64));
    const recipe = await t.app.inject({ method: 'GET', url: '/v2/caddy/l4/tags/list?n=1' });
    assert.deepEqual(recipe.json(), { name: 'caddy/l4', tags: ['2.10.2'] });
  });

  test('unknown names, tags and blobs; bad references and digests: the spec error bodies', async () => {
    const cases: Array<[string, string, number, string]> = [
      ['GET', '/v2/nginx/manifests/latest', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/caddy/nope/manifests/latest', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/caddy/nope/tags/list', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/caddy/a/b/manifests/latest', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/caddy/manifests/nightly', 404, 'MANIFEST_UNKNOWN'],
      ['GET', `/v2/caddy/build/manifests/${'0'.repeat(64)}`, 404, 'MANIFEST_UNKNOWN'],
      ['GET', '/v2/caddy/build/manifests/latest', 404, 'MANIFEST_UNKNOWN'],
      ['GET', '/v2/caddy/manifests/..%2F..%2Fetc%2Fpasswd', 400, 'MANIFEST_INVALID'],
      ['GET', '/v2/caddy/manifests/sha256:..%2F..%2Fx', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/caddy/manifests/sha256:ABC', 400, 'DIGEST_INVALID'],
      ['GET', `/v2/caddy/manifests/sha512:${'a'.repeat(128)}`, 400, 'DIGEST_INVALID'],
      ['GET', `/v2/caddy/blobs/sha256:${'a'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
      ['GET', '/v2/caddy/blobs/sha256:..%2F..%2F..%2Fmeta.json', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/caddy/blobs/..%2Fsecrets', 400, 'DIGEST_INVALID'],
      ['GET', `/v2/caddy/blobs/sha256:${'A'.repeat(64)}`, 400, 'DIGEST_INVALID'],
      ['PUT', '/v2/caddy/manifests/latest', 405, 'UNSUPPORTED'],
      ['POST', '/v2/caddy/blobs/uploads/', 405, 'UNSUPPORTED'],
    ];
    for (const [method, url, status, code] of cases) {
      const res = await t.app.inject({ method: method as 'GET', url });
      assert.equal(res.statusCode, status, `${method} ${url}: ${res.body}`);
      assert.equal(ociError(res), code, `${method} ${url}`);
      assert.match(String(res.headers['content-type']), /^application\/json/);
    }
    const head = await t.app.inject({ method: 'HEAD', url: '/v2/caddy/manifests/nightly' });
    assert.equal(head.statusCode, 404);
    assert.equal(head.rawPayload.length, 0, 'HEAD: no body');
  });
});

describe('registry: a manifest by digest only under a repository it belongs to', () => {
  const KEY = 'a'.repeat(64);
  const spec = (plugins: Array<{ module: string; version?: string }>, caddyVersion = 'v2.11.9') =>
    JSON.stringify({ caddyVersion, os: 'linux', arch: 'amd64', plugins, toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: 'x' } });
  const image = (plugins: Array<{ module: string; version?: string }>, extra: Record<string, unknown> = {}, caddyVersion?: string) => ({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 1 },
    layers: [],
    annotations: { 'dev.fairway.key': KEY, 'dev.fairway.spec': spec(plugins, caddyVersion) },
    ...extra,
  });
  const OTHER = { module: 'github.com/caddy-dns/cloudflare', version: 'v0.2.1' };
  const l4 = { plugins: [{ module: L4.module }] };

  test('image manifests: build takes any Fairway image, caddy the plain ones, a recipe its exact module set (and pinned version)', async () => {
    const plain = image([]);
    const withL4 = image([L4]);
    const both = image([OTHER, L4]);
    assert.equal(await manifestBelongs(plain, 'build'), true);
    assert.equal(await manifestBelongs(withL4, 'build'), true);
    assert.equal(await manifestBelongs(plain, { plugins: [] }), true);
    assert.equal(await manifestBelongs(withL4, { plugins: [] }), false, 'caddy serves no plugin build');
    assert.equal(await manifestBelongs(withL4, l4), true);
    assert.equal(await manifestBelongs(plain, l4), false);
    assert.equal(await manifestBelongs(both, l4), false, 'a superset is not the recipe');
    assert.equal(await manifestBelongs(withL4, { plugins: [{ module: L4.module }, { module: OTHER.module }] }), false, 'a subset is not the recipe');
    assert.equal(await manifestBelongs(both, { plugins: [{ module: L4.module }, { module: OTHER.module }, { module: L4.module }] }), true, 'a set: order and repeats do not matter');
    assert.equal(await manifestBelongs(withL4, { ...l4, caddyVersion: '2.11.9' }), true, 'pinned 2.11.9 = v2.11.9');
    assert.equal(await manifestBelongs(withL4, { ...l4, caddyVersion: 'v2.10.2' }), false, 'pinned to another version');
    assert.equal(await manifestBelongs(image([L4], {}, 'v2.11.10-0.20261201000000-abcdefabcdef'), { ...l4, caddyVersion: 'master' }), true, 'a branch pin: the version is not checked');
  });

  test('no Fairway annotations, or unreadable ones: nowhere, not even caddy/build; a cosign manifest belongs by the same annotations', async () => {
    const bare = { schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 1 }, layers: [] };
    for (const repo of ['build', { plugins: [] }, l4] as const) assert.equal(await manifestBelongs(bare, repo), false);
    assert.equal(await manifestBelongs({ ...bare, annotations: { 'dev.fairway.key': KEY, 'dev.fairway.spec': '{not json' } }, 'build'), false);
    assert.equal(await manifestBelongs({ ...bare, annotations: { 'dev.fairway.key': 'nope', 'dev.fairway.spec': spec([]) } }, 'build'), false);
    assert.equal(
      await manifestBelongs({ ...bare, annotations: { 'dev.fairway.key': KEY, 'dev.fairway.spec': JSON.stringify({ caddyVersion: 'v2.11.9' }) } }, 'build'),
      false,
      'a spec without plugins[]',
    );
    assert.equal(await manifestBelongs(null, 'build'), false);
    // A cosign signature of an l4 image: its config is cosign's, its annotations name the signed image.
    const sig = image([L4], { config: { mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', digest: `sha256:${'d'.repeat(64)}`, size: 2 } });
    assert.equal(await manifestBelongs(sig, l4), true);
    assert.equal(await manifestBelongs(sig, 'build'), true);
    assert.equal(await manifestBelongs(sig, { plugins: [] }), false);
  });

  test('an index belongs when every manifest it lists does (read, bounded; no nested index)', async () => {
    const children = new Map<string, unknown>([
      [`sha256:${'1'.repeat(64)}`, image([L4])],
      [`sha256:${'2'.repeat(64)}`, image([L4])],
      [`sha256:${'3'.repeat(64)}`, image([])],
    ]);
    const reads: string[] = [];
    const read = async (d: string) => {
      reads.push(d);
      return children.get(d) ?? null;
    };
    const index = (...ds: string[]) => ({ schemaVersion: 2, mediaType: INDEX, manifests: ds.map((digest) => ({ mediaType: MANIFEST, digest, size: 1 })) });
    const [a, b, c] = [...children.keys()] as [string, string, string];
    assert.equal(await manifestBelongs(index(a, b), l4, read), true);
    assert.deepEqual(reads, [a, b], 'each child read');
    assert.equal(await manifestBelongs(index(a, c), l4, read), false, 'one child of another repository');
    assert.equal(await manifestBelongs(index(a, c), 'build', read), true);
    assert.equal(await manifestBelongs(index(a, `sha256:${'9'.repeat(64)}`), l4, read), false, 'a child that is not there');
    assert.equal(await manifestBelongs(index(), l4, read), false, 'an empty index');
    assert.equal(await manifestBelongs(index(a, b), l4), false, 'children that cannot be read');
    assert.equal(await manifestBelongs(index(...Array.from({ length: MAX_INDEX_CHILDREN + 1 }, () => a)), l4, read), false, 'too many children');
    children.set(`sha256:${'4'.repeat(64)}`, index(a));
    assert.equal(await manifestBelongs(index(`sha256:${'4'.repeat(64)}`), l4, read), false, 'an index in an index is not followed');
  });

  test('over HTTP: images and indexes by digest under their repositories only (404 MANIFEST_UNKNOWN elsewhere); blobs under any', async () => {
    const t = await testApi({ registry: { recipes: { l4: { plugins: [L4] }, dns: { plugins: [OTHER] } } } });
    try {
      await putBuild(t, 'amd64');
      await putBuild(t, 'arm64');
      const withL4 = await putBuild(t, 'amd64', [L4]);
      t.service.versions = async () => ({ module: 'github.com/caddyserver/caddy/v2', versions: [{ version: 'v2.11.9', prerelease: false }], latest: 'v2.11.9', refreshedAt: new Date().toISOString() });
      const plainIndex = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/2.11.9' });
      assert.equal(plainIndex.statusCode, 200, plainIndex.body);
      const indexDigest = String(plainIndex.headers['docker-content-digest']);
      const plainImage = (plainIndex.json() as { manifests: Array<{ digest: string }> }).manifests[0]!.digest;
      const l4Image = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${withL4}` });
      assert.equal(l4Image.statusCode, 200, l4Image.body);
      const l4Digest = String(l4Image.headers['docker-content-digest']);
      const get = (repo: string, ref: string) => t.app.inject({ method: 'GET', url: `/v2/${repo}/manifests/${ref}` });
      const cases: Array<[string, string, number]> = [
        ['caddy', plainImage, 200],
        ['caddy/build', plainImage, 200],
        ['caddy/l4', plainImage, 404],
        ['caddy', indexDigest, 200],
        ['caddy/build', indexDigest, 200],
        ['caddy/l4', indexDigest, 404],
        ['caddy/l4', l4Digest, 200],
        ['caddy/build', l4Digest, 200],
        ['caddy', l4Digest, 404],
        ['caddy/dns', l4Digest, 404],
      ];
      for (const [repo, ref, status] of cases) {
        const res = await get(repo, ref);
        assert.equal(res.statusCode, status, `${repo}@${ref}: ${res.body.slice(0, 200)}`);
        if (status === 404) assert.equal(ociError(res), 'MANIFEST_UNKNOWN');
        const head = await t.app.inject({ method: 'HEAD', url: `/v2/${repo}/manifests/${ref}` });
        assert.equal(head.statusCode, status, `HEAD ${repo}@${ref}`);
      }
      // Blobs are content-addressed and shared (the base layer is every image's): served under any known repository.
      const layer = (l4Image.json() as { layers: Array<{ digest: string }> }).layers.at(-1)!.digest;
      for (const repo of ['caddy', 'caddy/dns', 'caddy/l4', 'caddy/build']) assert.equal((await t.app.inject({ method: 'GET', url: `/v2/${repo}/blobs/${layer}` })).statusCode, 200, repo);
      assert.equal((await t.app.inject({ method: 'GET', url: `/v2/nginx/blobs/${layer}` })).statusCode, 404, 'not under an unknown name');
    } finally {
      await t.close();
    }
  });
});

describe('registry: OCI 1.1 referrers (the Sigstore bundles of a signed image)', () => {
  const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
  let t: TestApi;
  let imageDigest: string;
  let keys: ReturnType<typeof createKeyPair>;
  before(async () => {
    t = await testApi({ registry: { recipes: { l4: { plugins: [L4] } } } });
    const key = await putBuild(t, 'amd64');
    const meta = (await t.service.meta(key))!;
    const binaryPath = join(t.store.root, 'referrers-test-binary');
    await pipeline((await (await t.service.artifact(key)).open()) as Readable, createWriteStream(binaryPath));
    keys = createKeyPair();
    const rec = await publishImage({ store: t.store, binaryPath, meta, tmpDir: join(t.store.root, 'referrers-tmp'), signer: signerFromPem(keys.privatePem) });
    imageDigest = rec.manifestDigest;
  });
  after(async () => t?.close());

  const referrers = async (url: string) => {
    const res = await t.app.inject({ method: 'GET', url });
    return {
      res,
      index:
        res.statusCode === 200
          ? (res.json() as {
              schemaVersion: number;
              mediaType: string;
              manifests: Array<{ mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }>;
            })
          : undefined,
    };
  };

  test("an image's referrers: its signature bundle (cosign v3), with artifactType and annotations; the bundle's DSSE verifies with the key and is about the image", async () => {
    const { res, index } = await referrers(`/v2/caddy/referrers/${imageDigest}`);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['content-type'], INDEX);
    assert.equal(res.headers['oci-filters-applied'], undefined);
    assert.equal(index!.schemaVersion, 2);
    assert.equal(index!.mediaType, INDEX);
    assert.equal(index!.manifests.length, 1, 'no predicate given: the signature only');
    const d = index!.manifests[0]!;
    assert.equal(d.mediaType, MANIFEST);
    assert.equal(d.artifactType, BUNDLE);
    assert.equal(d.annotations?.['dev.sigstore.bundle.predicateType'], 'https://sigstore.dev/cosign/sign/v1');
    const m = await t.app.inject({ method: 'GET', url: `/v2/caddy/manifests/${d.digest}` });
    assert.equal(m.statusCode, 200);
    assert.equal(m.rawPayload.length, d.size);
    assert.equal(digestOf(m.rawPayload), d.digest);
    const manifest = m.json() as {
      subject: { digest: string; mediaType: string };
      artifactType: string;
      config: { mediaType: string; digest: string };
      layers: Array<{ mediaType: string; digest: string }>;
    };
    assert.equal(manifest.subject.digest, imageDigest);
    assert.equal(manifest.subject.mediaType, MANIFEST);
    assert.equal(manifest.config.mediaType, 'application/vnd.oci.empty.v1+json');
    assert.equal((await t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${manifest.config.digest}` })).body, '{}');
    const bundle = (await t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${manifest.layers[0]!.digest}` })).json() as {
      mediaType: string;
      verificationMaterial: { publicKey: { hint: string } };
      dsseEnvelope: { payloadType: string; payload: string; signatures: Array<{ sig: string }> };
    };
    assert.equal(bundle.mediaType, BUNDLE);
    assert.ok(bundle.verificationMaterial.publicKey, 'a key-signed bundle: public key material, no certificate');
    const body = Buffer.from(bundle.dsseEnvelope.payload, 'base64');
    assert.ok(
      verify('sha256', pae(bundle.dsseEnvelope.payloadType, body), publicKeyFromPem(keys.publicPem), Buffer.from(bundle.dsseEnvelope.signatures[0]!.sig, 'base64')),
      'the DSSE signature verifies',
    );
    const st = JSON.parse(body.toString()) as { _type: string; predicateType: string; subject: Array<{ digest: { sha256: string } }> };
    assert.equal(st._type, 'https://in-toto.io/Statement/v1');
    assert.equal(st.predicateType, 'https://sigstore.dev/cosign/sign/v1');
    assert.equal(st.subject[0]!.digest.sha256, imageDigest.slice(7));
  });

  test('artifactType filters (OCI-Filters-Applied); unknown digests, indexes and other repositories answer an empty index; bad digest 400, unknown name 404', async () => {
    const hit = await referrers(`/v2/caddy/referrers/${imageDigest}?artifactType=${encodeURIComponent(BUNDLE)}`);
    assert.equal(hit.res.headers['oci-filters-applied'], 'artifactType');
    assert.equal(hit.index!.manifests.length, 1);
    const miss = await referrers(`/v2/caddy/referrers/${imageDigest}?artifactType=application%2Fexample`);
    assert.equal(miss.res.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual(miss.index!.manifests, []);
    assert.equal((await referrers(`/v2/caddy/build/referrers/${imageDigest}`)).index!.manifests.length, 1, 'caddy/build serves every image');
    for (const url of [`/v2/caddy/referrers/sha256:${'0'.repeat(64)}`, `/v2/caddy/l4/referrers/${imageDigest}`]) {
      const { res, index } = await referrers(url);
      assert.equal(res.statusCode, 200, url);
      assert.deepEqual(index!.manifests, [], url);
    }
    const bad = await t.app.inject({ method: 'GET', url: '/v2/caddy/referrers/sha256:abc' });
    assert.equal(bad.statusCode, 400);
    assert.equal(ociError(bad), 'DIGEST_INVALID');
    const unknown = await t.app.inject({ method: 'GET', url: `/v2/nginx/referrers/${imageDigest}` });
    assert.equal(unknown.statusCode, 404);
    assert.equal(ociError(unknown), 'NAME_UNKNOWN');
  });

  test('a referrer the record names whose subject is another manifest is not listed', async () => {
    const recs = await t.store.listRecords('signatures');
    const key = recs[0]!;
    const rec = (await t.store.getRecord('signatures', key)) as { referrers: Array<{ digest: string }>; sig: { digest: string; size: number } };
    // The .sig manifest has no subject: named as a referrer (a tampered record), it is not listed.
    await t.store.putRecord('signatures', key, { ...rec, referrers: [...rec.referrers, { ...rec.sig, artifactType: BUNDLE }] });
    assert.equal((await referrers(`/v2/caddy/referrers/${imageDigest}`)).index!.manifests.length, 1);
  });
});

describe('registry: on-demand builds past imageWait', () => {
  let t: TestApi;
  before(async () => {
    t = await testApi({ registry: { waitMs: 300 } });
    await putBuild(t, 'amd64');
  });
  after(async () => t?.close());

  test('a missing platform is built through the service; past the wait 503 UNAVAILABLE with Retry-After', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/latest' });
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(ociError(res), 'UNAVAILABLE');
    assert.ok(Number(res.headers['retry-after']) > 0);
    assert.equal(t.calls.jobs, 1, 'one build (arm64) started, an ordinary build');
    const builds = (await t.app.inject({ method: 'GET', url: `/api/builds/${cacheKey(specOf('arm64'))}` })).json();
    assert.equal(builds.status, 'running');
    // Asked again: the same build is joined, not a new one.
    const again = await t.app.inject({ method: 'GET', url: '/v2/caddy/manifests/latest' });
    assert.equal(again.statusCode, 503);
    assert.equal(t.calls.jobs, 1);
    await t.app.inject({ method: 'DELETE', url: `/api/builds/${cacheKey(specOf('arm64'))}` });
  });
});

describe('registry: Basic and bearer auth, the challenge; recipes API', () => {
  let t: TestApi;
  const READER = 'fw_reader_token_0123456789abcdef';
  const ADMIN = 'fw_admin_token_0123456789abcdef0';
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  before(async () => {
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'reader', hash: sha256Hash(READER), scopes: ['read'] },
        { name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] },
      ],
      anonymousScopes: [],
    });
    t = await testApi({ security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 }, registry: { recipes: { l4: { plugins: [L4] } } } });
  });
  after(async () => t?.close());

  test('no credential: 401 UNAUTHORIZED with a Basic challenge; Basic (any user, token as password) and bearer pass', async () => {
    for (const url of ['/v2/', '/v2/caddy/tags/list', '/v2/caddy/manifests/latest', `/v2/caddy/blobs/sha256:${'a'.repeat(64)}`]) {
      const res = await t.app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 401, url);
      assert.equal(res.headers['www-authenticate'], 'Basic realm="fairway"', url);
      assert.equal(ociError(res), 'UNAUTHORIZED');
    }
    for (const authorization of [basic('x', READER), basic('someone', ADMIN), `Bearer ${READER}`]) {
      const res = await t.app.inject({ method: 'GET', url: '/v2/', headers: { authorization } });
      assert.equal(res.statusCode, 200, authorization);
    }
    for (const authorization of [basic('x', 'fw_wrong_token_0123456789abcdef00'), basic('x', ''), 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`]) {
      const res = await t.app.inject({ method: 'GET', url: '/v2/', headers: { authorization } });
      assert.equal(res.statusCode, 401, authorization);
      assert.equal(res.headers['www-authenticate'], 'Basic realm="fairway"');
    }
    // The rest of the API keeps its bearer-only behaviour.
    const api = await t.app.inject({ method: 'GET', url: '/api/builds', headers: { authorization: basic('x', READER) } });
    assert.equal(api.statusCode, 401);
    assert.match(String(api.headers['www-authenticate']), /^Bearer /);
  });

  test('recipes: read lists them; writes need admin; names and plugins are validated', async () => {
    const list = await t.app.inject({ method: 'GET', url: '/api/recipes', headers: { authorization: `Bearer ${READER}` } });
    assert.equal(list.statusCode, 200);
    assert.deepEqual(list.json(), { recipes: [{ name: 'l4', plugins: [L4], source: 'config' }] });
    const put = (name: string, body: unknown, token = ADMIN) => t.app.inject({ method: 'PUT', url: `/api/recipes/${name}`, payload: body as object, headers: { authorization: `Bearer ${token}` } });
    const denied = await put('web', { plugins: [L4] }, READER);
    assert.equal(denied.statusCode, 403);
    assert.equal((await t.app.inject({ method: 'PUT', url: '/api/recipes/web', payload: { plugins: [] } })).statusCode, 401);
    for (const [name, body, code] of [
      ['Bad_Name', { plugins: [] }, 'invalid_recipe'],
      ['build', { plugins: [] }, 'invalid_recipe'],
      ['tags', { plugins: [] }, 'invalid_recipe'],
      ['x'.repeat(65), { plugins: [] }, 'invalid_recipe'],
      ['web', { plugins: [{ module: '../../etc' }] }, 'invalid_spec'],
      ['web', { plugins: [{ module: 'github.com/a/b', version: 'v1; rm -rf' }] }, 'invalid_spec'],
      ['web', { nope: 1 }, 'invalid_recipe'],
    ] as const) {
      const res = await put(name, body);
      assert.equal(res.statusCode, 400, `${name} ${JSON.stringify(body)}: ${res.body}`);
      assert.equal(res.json().error.code, code, name);
    }
    const ok = await put('web', { plugins: [L4], caddyVersion: 'v2.11.9' });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.deepEqual(ok.json(), { name: 'web', plugins: [L4], caddyVersion: 'v2.11.9', source: 'api' });
    assert.deepEqual(await t.store.listRecords('recipes'), ['web']);
    const names = (await t.app.inject({ method: 'GET', url: '/api/recipes', headers: { authorization: `Bearer ${READER}` } })).json().recipes.map((r: { name: string }) => r.name);
    assert.deepEqual(names, ['l4', 'web']);
    // The new recipe is a repository at once; pinned to its Caddy version.
    const tags = await t.app.inject({ method: 'GET', url: '/v2/caddy/web/tags/list', headers: { authorization: basic('x', READER) } });
    assert.deepEqual(tags.json(), { name: 'caddy/web', tags: ['2.11.9', 'latest', 'v2.11.9'] });
    const other = await t.app.inject({ method: 'GET', url: '/v2/caddy/web/manifests/2.10.0', headers: { authorization: basic('x', READER) } });
    assert.equal(other.statusCode, 404);
    assert.equal(ociError(other), 'MANIFEST_UNKNOWN');
    // Delete: admin only; a config recipe cannot be deleted through the API.
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/api/recipes/web', headers: { authorization: `Bearer ${READER}` } })).statusCode, 403);
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/api/recipes/web', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 204);
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/api/recipes/web', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 404);
    assert.equal((await t.app.inject({ method: 'DELETE', url: '/api/recipes/l4', headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 409);
    const gone = await t.app.inject({ method: 'GET', url: '/v2/caddy/web/tags/list', headers: { authorization: basic('x', READER) } });
    assert.equal(ociError(gone), 'NAME_UNKNOWN');
  });

  test('a recipe another hub puts in the store is a repository here within a second', async () => {
    const tags = () => t.app.inject({ method: 'GET', url: '/v2/caddy/edge/tags/list', headers: { authorization: basic('x', READER) } });
    assert.equal(ociError(await tags()), 'NAME_UNKNOWN');
    await t.store.putRecord('recipes', 'edge', { plugins: [], caddyVersion: 'v2.11.9' }); // as another hub's PUT /api/recipes does
    await new Promise((r) => setTimeout(r, 1_100));
    const seen = await tags();
    assert.equal(seen.statusCode, 200, seen.body);
    assert.deepEqual(seen.json().tags, ['2.11.9', 'latest', 'v2.11.9']);
    await t.store.deleteRecord('recipes', 'edge');
    await new Promise((r) => setTimeout(r, 1_100));
    assert.equal(ociError(await tags()), 'NAME_UNKNOWN');
  });
});

describe('registry settings', () => {
  test('recipes from JSON (env/flag) or an object; imagePlatforms as a list; linux/arm/v7 is GOARM 7', () => {
    const c = configSchema.parse({ recipes: JSON.stringify({ l4: { plugins: [L4] } }), imagePlatforms: 'linux/amd64, linux/arm/v7' });
    assert.deepEqual(c.recipes, { l4: { plugins: [L4] } });
    assert.deepEqual(c.imagePlatforms, ['linux/amd64', 'linux/arm/v7']);
    assert.equal(c.imageWait, 10 * 60_000);
    assert.deepEqual(configSchema.parse({}).imagePlatforms, ['linux/amd64', 'linux/arm64']);
    assert.deepEqual(configSchema.parse({ recipes: { web: { plugins: [], caddyVersion: 'v2.11.9' } } }).recipes, { web: { plugins: [], caddyVersion: 'v2.11.9' } });
    for (const bad of [
      { recipes: '{not json' },
      { recipes: { Bad: { plugins: [] } } },
      { recipes: { ok: { plugins: [{ modul: 'x' }] } } },
      { imagePlatforms: 'windows/amd64' },
      { imagePlatforms: '' },
    ]) {
      assert.equal(configSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.deepEqual(goPlatform('linux/arm/v7'), { os: 'linux', arch: 'arm', arm: '7' });
    assert.deepEqual(goPlatform('linux/arm64'), { os: 'linux', arch: 'arm64' });
  });
});

describe('registry: blobs through the hot tier', () => {
  let t: TestApi;
  let hot: HotCache;
  let amd64: string;
  let opened = 0;
  let m: { config: { digest: string; size: number }; layers: Array<{ digest: string; size: number }> };
  let big: { digest: string; size: number };
  let other: { digest: string; size: number };
  before(async () => {
    // Sized below, once the blob sizes are known: one large layer and the other do not fit together.
    hot = new HotCache({ maxBytes: 64 * 1024 * 1024 });
    t = await testApi({ hot });
    amd64 = await putBuild(t, 'amd64');
    const res = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${amd64}` });
    assert.equal(res.statusCode, 200, res.body);
    m = res.json() as typeof m;
    const layers = [...m.layers].sort((a, b) => b.size - a.size);
    big = layers[0]!;
    other = layers[1]!;
    await t.service.rescan();
    const budget = big.size + other.size - 1;
    hot = new HotCache({ maxBytes: budget, maxEntryBytes: budget });
    (t.registry as unknown as { o: { hot: HotCache } }).o.hot = hot;
    const openBlob = t.store.openBlob.bind(t.store);
    t.store.openBlob = (...a) => {
      opened++;
      return openBlob(...a);
    };
  });
  after(async () => t?.close());

  const get = (digest: string, range?: string) => t.app.inject({ method: 'GET', url: `/v2/caddy/blobs/${digest}`, ...(range ? { headers: { range } } : {}) });

  test('a second GET (and a range of it) is served from memory without reading the store', async () => {
    const first = await get(big.digest);
    assert.equal(first.statusCode, 200);
    assert.equal(digestOf(first.rawPayload), big.digest);
    await hot.settled();
    assert.ok(hot.has(`blob:${big.digest}`), 'filled after the first GET');
    const before = opened;
    const second = await get(big.digest);
    assert.equal(second.statusCode, 200);
    assert.deepEqual(second.rawPayload, first.rawPayload);
    const part = await get(big.digest, 'bytes=10-99');
    assert.equal(part.statusCode, 206);
    assert.deepEqual(part.rawPayload, first.rawPayload.subarray(10, 100));
    assert.equal(opened, before, 'the store was not read');
    assert.ok(hot.stats().hits >= 2);
  });

  test('after an eviction, a blob changed in the store is read from the store (cut, dropped), never the old bytes from memory', async () => {
    assert.equal((await get(other.digest)).statusCode, 200);
    await hot.settled();
    assert.ok(hot.has(`blob:${other.digest}`));
    assert.ok(!hot.has(`blob:${big.digest}`), 'the budget holds one of them: the large layer was evicted');
    const path = join(t.store.root, 'blobs', 'sha256', big.digest.slice(7));
    const good = await readFile(path);
    const bad = Buffer.from(good);
    bad[20] = bad[20]! ^ 1;
    await writeFile(path, bad);
    const before = opened;
    const got = await get(big.digest).catch((err: Error) => err);
    if (!(got instanceof Error)) assert.ok(got.statusCode >= 500 || got.rawPayload.length < big.size, `answered ${got.statusCode} with ${got.rawPayload.length} bytes`);
    assert.ok(opened > before, 'read from the store');
    await hot.settled();
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(!hot.has(`blob:${big.digest}`), 'the changed bytes were not taken into memory');
    assert.equal(await t.store.statBlob(big.digest), null, 'the corrupt blob was deleted');
    assert.equal((await get(big.digest)).statusCode, 404);
  });

  test('a fill whose bytes do not hash to the digest is refused (verification on the way in)', async () => {
    const c = new HotCache({ maxBytes: 1024 });
    const good = Buffer.from('good bytes');
    const digest = digestOf(good);
    assert.equal(
      c.openBlob(digest, good.length, async () => Readable.from([Buffer.from('evil bytes')])),
      null,
    );
    await c.settled();
    assert.ok(!c.has(`blob:${digest}`));
    assert.equal(c.stats().failedFills, 1);
    assert.equal(
      c.openBlob(digest, good.length, async () => Readable.from([good])),
      null,
    );
    await c.settled();
    const hit = c.openBlob(digest, good.length, async () => {
      throw new Error('not read');
    });
    assert.ok(hit);
    const chunks: Buffer[] = [];
    for await (const chunk of hit) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), good);
  });

  test('a prebuilt recipe build: its image is made once the build is there (imageWhenBuilt), not at the first pull', async () => {
    const arm64 = await putBuild(t, 'arm64');
    assert.ok(!(await t.store.listRecords('images')).includes(arm64));
    await t.registry.imageWhenBuilt(arm64);
    assert.ok((await t.store.listRecords('images')).includes(arm64), 'the image record was made');
    const putRecord = t.store.putRecord.bind(t.store);
    let imageWrites = 0;
    t.store.putRecord = async (ns, name, value) => {
      if (ns === 'images') imageWrites++;
      return putRecord(ns, name, value);
    };
    try {
      const res = await t.app.inject({ method: 'GET', url: `/v2/caddy/build/manifests/${arm64}` });
      assert.equal(res.statusCode, 200);
    } finally {
      t.store.putRecord = putRecord;
    }
    assert.equal(imageWrites, 0, 'the pull found the image made');
    // A key with no build: nothing made, no rejection.
    await t.registry.imageWhenBuilt('0'.repeat(64));
  });

  test('a hot blob whose store copy changed size is dropped from memory and read from the store', async () => {
    // The miss above made room for its fill: fill this one again.
    assert.equal((await get(other.digest)).statusCode, 200);
    await hot.settled();
    assert.ok(hot.has(`blob:${other.digest}`));
    const path = join(t.store.root, 'blobs', 'sha256', other.digest.slice(7));
    const good = await readFile(path);
    await writeFile(path, Buffer.concat([good, Buffer.from('more')]));
    const before = opened;
    const got = await get(other.digest).catch((err: Error) => err);
    if (!(got instanceof Error)) assert.ok(got.statusCode >= 500 || !got.rawPayload.equals(good), `the old bytes were served from memory (${got.statusCode})`);
    assert.ok(opened > before, 'read from the store');
    assert.ok(!hot.has(`blob:${other.digest}`));
  });
});
