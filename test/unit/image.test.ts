/**
 * src/image: deterministic OCI images of a Caddy binary. No Go, no network: the "binary" is a
 * stand-in (an ELF header and pseudo-random bytes). Tar and gzip are read back with tools that
 * do not share code with the writer: the OS's gzip and GNU tar, and the small reader in
 * test/helpers/image.ts.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { MEDIA_TYPE, buildImage, imageIndex, ociPlatform, writeOciLayout, type BuildImageOptions, type BuiltImage } from '../../src/image/index.js';
import { ASSETS, AssetChecksumError, DEFAULT_ASSETS_DIR } from '../../src/image/assets.js';
import { compareTarPaths, tarStream } from '../../src/image/tar.js';
import { CREATED, KEY, buildInChild, fakeBinary, parseTar, readBlob, sha256, sparseBinary, specFor, type ParsedEntry } from '../helpers/image.js';

const run = promisify(execFile);
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-image-unit-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function freshDir(): Promise<string> {
  return mkdtemp(join(dir, `b${n++}-`));
}

async function opts(binaryPath: string, over: Partial<BuildImageOptions> = {}): Promise<BuildImageOptions> {
  return {
    binaryPath,
    platform: { os: 'linux', arch: 'amd64' },
    caddyVersion: 'v2.11.9',
    key: KEY,
    spec: specFor('amd64'),
    created: CREATED,
    blobDir: join(await freshDir(), 'blobs'),
    ...over,
  };
}

/** The OS's gzip decompresses the blob (independent of Node's zlib). */
async function gunzipWithOs(path: string): Promise<Buffer> {
  const { stdout } = await run('gzip', ['-dc', path], { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024 });
  return stdout;
}

function digestsOf(im: BuiltImage): string[] {
  return [im.manifestDigest, im.configDescriptor.digest, ...im.layers.flatMap((l) => [l.digest, l.diffId])];
}

describe('determinism', () => {
  test('same inputs give byte-identical layers, config and manifest: twice, and in a new process', async () => {
    const bin = join(dir, 'caddy-a');
    await fakeBinary(bin, 'a');
    const o1 = await opts(bin);
    const o2 = await opts(bin);
    const a = await buildImage(o1);
    await new Promise((r) => setTimeout(r, 1100)); // a clock-based field would now differ
    const b = await buildImage(o2);
    assert.deepEqual(digestsOf(b), digestsOf(a));
    assert.ok(a.manifestBytes.equals(b.manifestBytes));
    assert.ok(a.configBytes.equals(b.configBytes));
    for (const [x, y] of a.layers.map((l, i) => [l, b.layers[i]!] as const)) {
      assert.ok((await readFile(x.path)).equals(await readFile(y.path)), 'layer blob files are byte-identical');
    }
    const child = await buildInChild({ ...(await opts(bin)) });
    assert.equal(child.manifestDigest, a.manifestDigest);
    assert.equal(child.configDigest, a.configDescriptor.digest);
    assert.deepEqual(
      child.layers,
      a.layers.map((l) => ({ digest: l.digest, diffId: l.diffId, size: l.size })),
    );
  });

  test('every blob is named by its sha256, and the digests, diff_ids and sizes are right', async () => {
    const bin = join(dir, 'caddy-d');
    await fakeBinary(bin, 'd');
    const im = await buildImage(await opts(bin));
    const files = (await readdir(join(im.blobDir, 'sha256'))).sort();
    assert.deepEqual(files, [im.manifestDigest, im.configDescriptor.digest, ...im.layers.map((l) => l.digest)].map((d) => d.slice(7)).sort());
    assert.ok((await readBlob(im.blobDir, im.manifestDigest)).equals(im.manifestBytes));
    assert.ok((await readBlob(im.blobDir, im.configDescriptor.digest)).equals(im.configBytes));
    assert.equal(im.configDescriptor.size, im.configBytes.length);
    for (const l of im.layers) {
      const gz = await readBlob(im.blobDir, l.digest);
      assert.equal(gz.length, l.size);
      const tar = await gunzipWithOs(l.path);
      assert.equal(`sha256:${sha256(tar)}`, l.diffId);
      assert.equal(tar.length, l.tarSize);
    }
    assert.deepEqual(im.config.rootfs, { type: 'layers', diff_ids: im.layers.map((l) => l.diffId) });
  });

  test('a different binary changes only the binary layer (and so config and manifest); the base layer is shared', async () => {
    const binA = join(dir, 'caddy-e');
    const binB = join(dir, 'caddy-f');
    await fakeBinary(binA, 'e');
    await fakeBinary(binB, 'f');
    const a = await buildImage(await opts(binA));
    const b = await buildImage(await opts(binB));
    assert.equal(b.layers[0]!.digest, a.layers[0]!.digest);
    assert.equal(b.layers[0]!.diffId, a.layers[0]!.diffId);
    assert.notEqual(b.layers[1]!.digest, a.layers[1]!.digest);
    assert.notEqual(b.layers[1]!.diffId, a.layers[1]!.diffId);
    assert.notEqual(b.configDescriptor.digest, a.configDescriptor.digest);
    assert.notEqual(b.manifestDigest, a.manifestDigest);
    // Another platform, key, spec and date: still the same base layer.
    const binC = join(dir, 'caddy-g-arm64');
    await fakeBinary(binC, 'g', 4096, 'arm64');
    const c = await buildImage(await opts(binC, { platform: { os: 'linux', arch: 'arm64' }, spec: specFor('arm64'), key: 'f'.repeat(64), created: '2027-01-02T03:04:05Z', caddyVersion: '2.10.0' }));
    assert.equal(c.layers[0]!.digest, a.layers[0]!.digest);
    // Same binary bytes, other metadata: same binary layer, other config.
    const d = await buildImage(await opts(binA, { key: 'e'.repeat(64), created: '2027-01-02T03:04:05Z' }));
    assert.equal(d.layers[1]!.digest, a.layers[1]!.digest);
    assert.notEqual(d.configDescriptor.digest, a.configDescriptor.digest);
  });

  test("one key, one image: the order of the spec's plugins changes no digest", async () => {
    const bin = join(dir, 'caddy-order');
    await fakeBinary(bin, 'o');
    const a = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' };
    const b = { module: 'github.com/mholt/caddy-ratelimit', version: 'v0.1.0' };
    const one = await buildImage(await opts(bin, { spec: { ...specFor('amd64'), plugins: [b, a] } }));
    const two = await buildImage(await opts(bin, { spec: { ...specFor('amd64'), plugins: [a, b] } }));
    assert.equal(two.configDescriptor.digest, one.configDescriptor.digest);
    assert.equal(two.manifestDigest, one.manifestDigest);
  });

  test('the base layer is a known constant: its diff_id is pinned (tar bytes do not depend on host, Node or zlib)', async () => {
    const bin = join(dir, 'caddy-k');
    await fakeBinary(bin, 'k');
    const im = await buildImage(await opts(bin));
    // Changes only with the assets or the tar format; docs/images.md quotes it.
    assert.equal(im.layers[0]!.diffId, 'sha256:6668b1f599be38d0ecec5a7e40b732b7f973d4a154e2ab682f981def38b76f62');
    assert.equal(im.layers[0]!.tarSize, 321024);
    // The gzip bytes depend on the zlib inside Node: Node 20.20.2's (1.3.1) and Node 24.21.0's
    // (1.3.2.1-motley) give the same. A runtime whose zlib changes them would give two servers
    // different image digests for one spec: this line says so first.
    assert.equal(im.layers[0]!.digest, 'sha256:3d9bd59ef1494ebfaef3c7ec1bd289d813f4276c56895c0a2f53861615a2da2d', `zlib ${process.versions.zlib}`);
  });

  test('the binary streams: a 160 MB binary does not need more memory than a 4 MB one', async () => {
    const small = join(dir, 'caddy-small');
    const big = join(dir, 'caddy-big');
    await sparseBinary(small, 4 * 1024 * 1024);
    await sparseBinary(big, 160 * 1024 * 1024);
    const s = await buildInChild({ ...(await opts(small)) });
    const b = await buildInChild({ ...(await opts(big)) });
    // Holding the binary would add at least its 156 MB; streaming measured ~30 MB (GC lag of 1 MiB reads).
    const growthMb = (b.maxRssKb - s.maxRssKb) / 1024;
    assert.ok(growthMb < 96, `peak RSS grew by ${growthMb.toFixed(1)} MB for 156 MB more binary (${s.maxRssKb} → ${b.maxRssKb} KB)`);
  });
});

const BASE_LAYER: Array<[string, string, number]> = [
  ['config/', '5', 0o755],
  ['config/caddy/', '5', 0o1777],
  ['data/', '5', 0o755],
  ['data/caddy/', '5', 0o1777],
  ['etc/', '5', 0o755],
  ['etc/caddy/', '5', 0o755],
  ['etc/caddy/Caddyfile', '0', 0o644],
  ['etc/mime.types', '0', 0o644],
  ['etc/ssl/', '5', 0o755],
  ['etc/ssl/certs/', '5', 0o755],
  ['etc/ssl/certs/ca-certificates.crt', '0', 0o644],
  ['srv/', '5', 0o755],
  ['tmp/', '5', 0o1777],
  ['usr/', '5', 0o755],
  ['usr/share/', '5', 0o755],
  ['usr/share/caddy/', '5', 0o755],
  ['usr/share/caddy/index.html', '0', 0o644],
];
const BINARY_LAYER: Array<[string, string, number]> = [
  ['usr/', '5', 0o755],
  ['usr/bin/', '5', 0o755],
  ['usr/bin/caddy', '0', 0o755],
];

function checkFixedFields(entries: ParsedEntry[]): void {
  for (const e of entries) {
    assert.equal(e.mtime, 0, `${e.name}: mtime`);
    assert.equal(e.uid, 0, `${e.name}: uid`);
    assert.equal(e.gid, 0, `${e.name}: gid`);
    assert.equal(e.uname, '', `${e.name}: uname`);
    assert.equal(e.gname, '', `${e.name}: gname`);
    assert.equal(e.linkname, '', `${e.name}: linkname`);
    assert.equal(e.magic, 'ustar\0', `${e.name}: magic`);
    assert.equal(e.version, '00', `${e.name}: version`);
    assert.ok(e.checksumOk, `${e.name}: header checksum`);
    assert.deepEqual(e.pax, {}, `${e.name}: no pax records`);
  }
}

/** Sorted component by component, and every parent directory before its children. */
function checkOrder(names: string[]): void {
  const clean = names.map((x) => x.replace(/\/$/, ''));
  const sorted = [...clean].sort(compareTarPaths);
  assert.deepEqual(clean, sorted, 'entries are sorted');
  const seen = new Set<string>();
  for (const p of clean) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) assert.ok(seen.has(parts.slice(0, i).join('/')), `parent of ${p} comes first`);
    seen.add(p);
  }
}

describe('layers', () => {
  let im: BuiltImage;
  let binary: Buffer;
  before(async () => {
    const bin = join(dir, 'caddy-t');
    binary = await fakeBinary(bin, 't', 300_001);
    im = await buildImage(await opts(bin));
  });

  test('base layer: sorted entries, parents present, fixed fields, the pinned assets', async () => {
    const tar = await gunzipWithOs(im.layers[0]!.path);
    const { entries, paxHeaders, endBlocks } = parseTar(tar);
    assert.deepEqual(
      entries.map((e) => [e.name, e.typeflag, e.mode]),
      BASE_LAYER,
    );
    checkOrder(entries.map((e) => e.name));
    checkFixedFields(entries);
    assert.deepEqual(paxHeaders, []);
    assert.equal(endBlocks, 2);
    for (const a of ASSETS) {
      const e = entries.find((x) => x.name === a.path);
      assert.ok(e, a.path);
      assert.equal(sha256(e.data), a.sha256);
    }
  });

  test("binary layer: usr/, usr/bin/, usr/bin/caddy 0755 with the binary's bytes", async () => {
    const tar = await gunzipWithOs(im.layers[1]!.path);
    const { entries } = parseTar(tar);
    assert.deepEqual(
      entries.map((e) => [e.name, e.typeflag, e.mode]),
      BINARY_LAYER,
    );
    checkFixedFields(entries);
    assert.ok(entries[2]!.data.equals(binary));
    assert.equal(im.binarySha256, sha256(binary));
  });

  test('GNU tar reads both layers the same way (numeric owner 0/0, 1970-01-01 00:00)', async () => {
    for (const [layer, want] of [
      [im.layers[0]!, BASE_LAYER],
      [im.layers[1]!, BINARY_LAYER],
    ] as const) {
      const tarFile = join(dir, `l-${layer.digest.slice(7, 19)}.tar`);
      await writeFile(tarFile, await gunzipWithOs(layer.path));
      const { stdout } = await run('tar', ['--numeric-owner', '--full-time', '--utc', '-tvf', tarFile], { env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } });
      const lines = stdout.trim().split('\n');
      assert.deepEqual(
        lines.map((l) => l.split(/\s+/).slice(5).join(' ')),
        want.map(([p]) => p),
      );
      for (const l of lines) {
        const [perm, owner, , date, time] = l.split(/\s+/);
        assert.equal(owner, '0/0', l);
        assert.equal(`${date} ${time}`, '1970-01-01 00:00:00', l);
        assert.match(perm!, /^[d-][rwxstT-]{9}$/, l);
      }
      const perms = lines.map((l) => l.split(/\s+/)[0]);
      if (want === BASE_LAYER) assert.equal(perms[1], 'drwxrwxrwt', 'config/caddy is 1777');
      else assert.equal(perms[2], '-rwxr-xr-x', 'usr/bin/caddy is 0755');
    }
  });

  test('gzip header: no mtime, no name, no extra fields, fixed XFL and OS bytes', async () => {
    for (const l of im.layers) {
      const h = (await readFile(l.path)).subarray(0, 10);
      assert.equal(h[0], 0x1f);
      assert.equal(h[1], 0x8b);
      assert.equal(h[2], 8, 'deflate');
      assert.equal(h[3], 0, 'FLG: no FTEXT/FHCRC/FEXTRA/FNAME/FCOMMENT');
      assert.equal(h.readUInt32LE(4), 0, 'MTIME 0');
      assert.equal(h[8], 0, 'XFL 0 (zlib writes 2 only for level 9, 4 for levels 0-1)');
      assert.equal(h[9], 0xff, "OS unknown (not the host's)");
    }
  });

  test('long or non-ASCII paths go into a pax path record, never atime/ctime', async () => {
    const long = `${'d'.repeat(120)}/${'e'.repeat(120)}/f.txt`;
    const chunks: Buffer[] = [];
    for await (const c of tarStream([
      { path: long, type: 'file', mode: 0o644, source: { kind: 'bytes', data: Buffer.from('x') } },
      { path: 'ü/ß', type: 'file', mode: 0o600, source: { kind: 'bytes', data: Buffer.from('yz') } },
    ]))
      chunks.push(c);
    const { entries, paxHeaders } = parseTar(Buffer.concat(chunks));
    assert.deepEqual(
      entries.map((e) => e.name),
      [`${'d'.repeat(120)}/`, `${'d'.repeat(120)}/${'e'.repeat(120)}/`, long, 'ü/', 'ü/ß'],
    );
    for (const h of paxHeaders) assert.deepEqual(Object.keys(h), ['path']);
    assert.equal(entries[2]!.data.toString(), 'x');
    assert.equal(entries[4]!.data.toString(), 'yz');
  });

  test('the tar writer refuses bad input', async () => {
    const drain = async (e: Parameters<typeof tarStream>[0]) => {
      for await (const _ of tarStream(e)) void _;
    };
    await assert.rejects(drain([{ path: '/abs', type: 'dir', mode: 0o755 }]), /bad entry path/);
    await assert.rejects(drain([{ path: 'a/../b', type: 'dir', mode: 0o755 }]), /bad entry path/);
    await assert.rejects(
      drain([
        { path: 'a', type: 'dir', mode: 0o755 },
        { path: 'a', type: 'dir', mode: 0o755 },
      ]),
      /duplicate/,
    );
    await assert.rejects(
      drain([
        { path: 'a', type: 'file', mode: 0o644, source: { kind: 'bytes', data: Buffer.alloc(0) } },
        { path: 'a/b', type: 'dir', mode: 0o755 },
      ]),
      /is a file/,
    );
  });
});

describe('assets', () => {
  test('assets/image/SHA256SUMS lists exactly the pinned hashes', async () => {
    const sums = (await readFile(join(DEFAULT_ASSETS_DIR, 'SHA256SUMS'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/))
      .map(([h, f]) => [f, h])
      .sort();
    assert.deepEqual(sums, ASSETS.map((a) => [a.file, a.sha256]).sort());
  });

  test('an asset with a wrong checksum is refused, and no layer is written', async () => {
    const bad = join(await freshDir(), 'assets');
    await cp(DEFAULT_ASSETS_DIR, bad, { recursive: true });
    const caddyfile = join(bad, 'Caddyfile');
    await writeFile(caddyfile, `${await readFile(caddyfile, 'utf8')}\n:8080 { respond "injected" }\n`);
    const bin = join(dir, 'caddy-c');
    await fakeBinary(bin, 'c');
    const o = await opts(bin, { assetsDir: bad });
    await assert.rejects(buildImage(o), (err: unknown) => {
      assert.ok(err instanceof AssetChecksumError);
      assert.match(err.message, /image asset .*Caddyfile has sha256 [0-9a-f]{64}, expected 66177d46/);
      return true;
    });
    assert.deepEqual(await readdir(join(o.blobDir, 'sha256')).catch(() => []), []);
    // A missing asset is named too.
    await rm(join(bad, 'mime.types'));
    await cp(join(DEFAULT_ASSETS_DIR, 'Caddyfile'), caddyfile);
    await assert.rejects(buildImage(await opts(bin, { assetsDir: bad })), /image asset .*mime\.types cannot be read/);
  });
});

describe('config and manifest', () => {
  let im: BuiltImage;
  before(async () => {
    const bin = join(dir, 'caddy-cfg');
    await fakeBinary(bin, 'cfg');
    im = await buildImage(await opts(bin));
  });

  test('config: Env, ports, WorkingDir, Cmd, labels, created from the input, platform', () => {
    const c = im.config;
    assert.equal(c.created, CREATED);
    assert.equal(c.os, 'linux');
    assert.equal(c.architecture, 'amd64');
    assert.equal(c.variant, undefined);
    assert.deepEqual(c.config.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'XDG_CONFIG_HOME=/config', 'XDG_DATA_HOME=/data', 'CADDY_VERSION=v2.11.9']);
    assert.deepEqual(c.config.ExposedPorts, { '80/tcp': {}, '443/tcp': {}, '443/udp': {}, '2019/tcp': {} });
    assert.equal(c.config.WorkingDir, '/srv');
    assert.deepEqual(c.config.Cmd, ['caddy', 'run', '--config', '/etc/caddy/Caddyfile', '--adapter', 'caddyfile']);
    const L = c.config.Labels;
    assert.equal(L['org.opencontainers.image.version'], 'v2.11.9');
    assert.equal(L['org.opencontainers.image.source'], 'https://github.com/caddyserver/caddy');
    assert.equal(L['org.opencontainers.image.title'], 'Caddy');
    assert.equal(L['org.opencontainers.image.created'], CREATED);
    assert.equal(L['dev.fairway.key'], KEY);
    assert.deepEqual(JSON.parse(L['dev.fairway.spec']!), specFor('amd64'));
    assert.equal(c.history.length, 2);
    for (const h of c.history) assert.equal(h.created, CREATED);
    // The bytes are the config (sorted keys, no whitespace).
    assert.deepEqual(JSON.parse(im.configBytes.toString()), c);
    assert.ok(!/\s"|":\s/.test(im.configBytes.toString()));
  });

  test('manifest: media types, config and layer descriptors, annotations', () => {
    const m = JSON.parse(im.manifestBytes.toString()) as Record<string, unknown>;
    assert.deepEqual(m, im.manifest);
    assert.equal(im.manifest.schemaVersion, 2);
    assert.equal(im.manifest.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    assert.deepEqual(im.manifest.config, { mediaType: 'application/vnd.oci.image.config.v1+json', digest: im.configDescriptor.digest, size: im.configBytes.length });
    assert.deepEqual(
      im.manifest.layers,
      im.layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size })),
    );
    const a = im.manifest.annotations!;
    assert.equal(a['org.opencontainers.image.created'], CREATED);
    assert.equal(a['org.opencontainers.image.version'], 'v2.11.9');
    assert.equal(a['dev.fairway.key'], KEY);
    assert.ok(a['dev.fairway.spec']);
    assert.deepEqual(im.descriptor, { mediaType: MEDIA_TYPE.manifest, digest: im.manifestDigest, size: im.manifestBytes.length, platform: { architecture: 'amd64', os: 'linux' } });
  });

  test('created accepts a Date or ms, normalised to RFC 3339 UTC; garbage is refused', async () => {
    const bin = join(dir, 'caddy-cfg');
    const fromDate = await buildImage(await opts(bin, { created: new Date(CREATED) }));
    assert.equal(fromDate.manifestDigest, im.manifestDigest);
    const fromMs = await buildImage(await opts(bin, { created: Date.parse(CREATED) }));
    assert.equal(fromMs.manifestDigest, im.manifestDigest);
    await assert.rejects(buildImage(await opts(bin, { created: 'yesterday' })), /RFC 3339/);
    await assert.rejects(buildImage(await opts(bin, { key: 'nothex' })), /key must be 64/);
  });

  test('platform variants: arm+GOARM → arm/v5..v7, arm64 → arm64/v8, others none; non-linux refused', () => {
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'arm', arm: '7' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'arm', arm: '6' }), { os: 'linux', architecture: 'arm', variant: 'v6' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'arm', arm: '5' }), { os: 'linux', architecture: 'arm', variant: 'v5' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'arm' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'arm64' }), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'amd64' }), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(ociPlatform({ os: 'linux', arch: 'riscv64' }), { os: 'linux', architecture: 'riscv64' });
    assert.throws(() => ociPlatform({ os: 'windows', arch: 'amd64' }), /Linux images/);
    assert.throws(() => ociPlatform({ os: 'linux', arch: 'arm', arm: '8' }), /GOARM/);
    assert.throws(() => ociPlatform({ os: 'linux', arch: 'amd64', arm: '7' }), /only for arch arm/);
  });

  test('arm/v7 image: config and descriptor carry the variant', async () => {
    const bin = join(dir, 'caddy-arm');
    await fakeBinary(bin, 'arm', 1000, 'arm');
    const a = await buildImage(await opts(bin, { platform: { os: 'linux', arch: 'arm', arm: '7' }, spec: specFor('arm', '7') }));
    assert.equal(a.config.architecture, 'arm');
    assert.equal(a.config.variant, 'v7');
    assert.deepEqual(a.descriptor.platform, { os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  test('a binary for another architecture, a non-ELF file, a spec for another platform, a wrong sha256 are refused', async () => {
    const arm64 = join(dir, 'caddy-arm64');
    await fakeBinary(arm64, 'x', 1000, 'arm64');
    await assert.rejects(buildImage(await opts(arm64)), /another architecture.*not a linux\/amd64 Caddy binary/);
    const text = join(dir, 'not-elf');
    await writeFile(text, 'build log, not a binary\n'.repeat(10));
    await assert.rejects(buildImage(await opts(text)), /not an ELF executable/);
    const bin = join(dir, 'caddy-cfg');
    await assert.rejects(buildImage(await opts(bin, { spec: specFor('arm64') })), /spec\.arch "arm64" differs/);
    const o = await opts(bin, { binarySha256: '0'.repeat(64) });
    await assert.rejects(buildImage(o), /has sha256 [0-9a-f]{64}, expected 0{64}: no image was made/);
    const left = await readdir(join(o.blobDir, 'sha256'));
    assert.equal(left.length, 1, `only the base layer was published: ${left.join(', ')}`);
    assert.ok(!left.some((f) => f.startsWith('.tmp-')));
    const ok = await buildImage(await opts(bin, { binarySha256: sha256(await readFile(bin)) }));
    assert.equal(ok.manifestDigest, im.manifestDigest);
  });
});

describe('image index and OCI layout', () => {
  test('imageIndex sorts by platform (any input order gives the same index) and refuses duplicates', async () => {
    const blobDir = join(await freshDir(), 'blobs');
    const arm64 = join(dir, 'i-arm64');
    const amd64 = join(dir, 'i-amd64');
    await fakeBinary(arm64, 'i1', 1000, 'arm64');
    await fakeBinary(amd64, 'i2', 1000, 'amd64');
    const a = await buildImage(await opts(amd64, { blobDir }));
    const b = await buildImage(await opts(arm64, { blobDir, platform: { os: 'linux', arch: 'arm64' }, spec: specFor('arm64') }));
    const i1 = imageIndex([a, b]);
    const i2 = imageIndex([b, a]);
    assert.equal(i1.digest, i2.digest);
    assert.ok(i1.bytes.equals(i2.bytes));
    assert.equal(i1.digest, `sha256:${sha256(i1.bytes)}`);
    assert.equal(i1.index.mediaType, 'application/vnd.oci.image.index.v1+json');
    assert.deepEqual(
      i1.index.manifests.map((m) => m.platform),
      [
        { architecture: 'amd64', os: 'linux' },
        { architecture: 'arm64', os: 'linux', variant: 'v8' },
      ],
    );
    assert.throws(() => imageIndex([a, a]), /two images for linux\/amd64/);
    assert.throws(() => imageIndex([]), /at least one/);
  });

  test('writeOciLayout: oci-layout, index.json with ref names, every blob present and named by its hash', async () => {
    const src = join(await freshDir(), 'blobs');
    const bin = join(dir, 'caddy-l');
    await fakeBinary(bin, 'l');
    const im = await buildImage(await opts(bin, { blobDir: src }));
    const idx = imageIndex([im]);
    const layout = join(await freshDir(), 'layout');
    await writeOciLayout(layout, [
      { tag: '2.11.9', image: im },
      { tag: 'multi', index: idx },
    ]);
    assert.deepEqual(JSON.parse(await readFile(join(layout, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as {
      schemaVersion: number;
      manifests: Array<{ digest: string; mediaType: string; annotations: Record<string, string> }>;
    };
    assert.equal(index.schemaVersion, 2);
    assert.deepEqual(
      index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.mediaType, m.digest]),
      [
        ['2.11.9', MEDIA_TYPE.manifest, im.manifestDigest],
        ['multi', MEDIA_TYPE.index, idx.digest],
      ],
    );
    const blobs = join(layout, 'blobs');
    for (const d of [im.manifestDigest, im.configDescriptor.digest, ...im.layers.map((l) => l.digest), idx.digest]) await readBlob(blobs, d);
    assert.ok(!(await readdir(join(blobs, 'sha256'))).some((f) => f.startsWith('.tmp-')));
    // Adding a tag keeps the others; re-tagging replaces.
    await writeOciLayout(layout, [{ tag: 'latest', image: im }]);
    const again = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as typeof index;
    assert.deepEqual(
      again.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']),
      ['2.11.9', 'latest', 'multi'],
    );
    await assert.rejects(writeOciLayout(layout, [{ tag: 'bad tag', image: im }]), /bad tag/);
  });
});
