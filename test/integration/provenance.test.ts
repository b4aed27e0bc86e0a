/**
 * Signed provenance, checked by the real verifier: a real `fairway serve` with a signing key builds
 * Caddy with a plugin; cosign (scripts/image-tools.sh, pinned) verifies offline
 *  - the binary against its provenance (`verify-blob-attestation --type slsaprovenance1`), and
 *    refuses it after one byte of the binary is flipped, or with another key;
 *  - the image of the build pulled from Fairway's registry (`verify`, `verify-attestation`),
 *    under caddy/build:<id> and, by digest, under the recipe's repository; and refuses another key.
 * A server without a key says so, writes provenance marked unsigned, and cosign refuses it.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/provenance.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createKeyPair, readStatement, type DsseEnvelope } from '../../src/provenance/index.js';
import { CADDY_VERSION, PLUGIN, ROOT, api, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const run = promisify(execFile);
const COSIGN = join(ROOT, '.tools', 'bin', 'cosign');
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;
const RECIPES = JSON.stringify({ l4: { plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });

/** cosign, offline: no transparency log, no network but Fairway on 127.0.0.1. */
async function cosign(args: string[], home: string): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(COSIGN, args, {
      timeout: 5 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, DOCKER_CONFIG: join(home, '.docker'), SIGSTORE_NO_CACHE: '1', TUF_ROOT: join(home, 'tuf') },
    });
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('signed provenance of a real build, verified by cosign', { timeout: 40 * 60_000 }, () => {
  let dir: string;
  let fw: FairwayProcess;
  let host: string;
  let pub: string;
  let otherPub: string;
  let build: { id: string; sha256: string; provenance?: string; links: { provenance: string } };
  let binary: string;
  let envelopeFile: string;
  const keys = createKeyPair();
  const other = createKeyPair();

  before(async () => {
    assert.ok(existsSync(COSIGN), 'cosign is missing: run bash scripts/image-tools.sh');
    dir = await tempDir('fairway-provenance-');
    const keyFile = join(dir, 'fairway.key');
    await writeFile(keyFile, keys.privatePem, { mode: 0o600 });
    pub = join(dir, 'fairway.pub');
    await writeFile(pub, keys.publicPem);
    otherPub = join(dir, 'other.pub');
    await writeFile(otherPub, other.publicPem);
    fw = await startFairway({ dataDir: join(dir, 'data'), args: ['--signing-key', keyFile, '--recipes', RECIPES, '--image-platforms', `linux/${ARCH}`] });
    host = `127.0.0.1:${fw.port}`;
    const res = await api(fw.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: ARCH, plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
    assert.ok(res.status === 200 || res.status === 202, JSON.stringify(res.body));
    build = await waitForBuild(fw.url, res.body.id);
    assert.equal((build as unknown as { status: string }).status, 'succeeded');
    binary = join(dir, 'caddy');
    await writeFile(binary, Buffer.from(await (await fetch(`${fw.url}/api/builds/${build.id}/artifact`)).arrayBuffer()), { mode: 0o755 });
    const prov = await fetch(`${fw.url}${build.links.provenance}`);
    assert.equal(prov.status, 200);
    assert.equal(prov.headers.get('x-fairway-provenance'), 'signed');
    envelopeFile = join(dir, 'provenance.json');
    await writeFile(envelopeFile, Buffer.from(await prov.arrayBuffer()));
  });
  after(async () => {
    await fw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the server serves its public key and marks the build signed', async () => {
    const res = await fetch(`${fw.url}/api/signing-key`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/x-pem-file/);
    assert.equal(await res.text(), keys.publicPem);
    assert.equal(build.provenance, 'signed');
  });

  test('the statement: the binary as subject, SLSA v1, Caddy and the plugin with their exact versions and go.sum hashes', async () => {
    const st = readStatement(JSON.parse(await readFile(envelopeFile, 'utf8')) as DsseEnvelope);
    assert.deepEqual(st.subject, [{ name: `caddy_linux_${ARCH}`, digest: { sha256: build.sha256 } }]);
    assert.equal(st.predicateType, 'https://slsa.dev/provenance/v1');
    assert.equal(st.predicate.runDetails.metadata.invocationId, build.id);
    const info = (await api<{ Deps: Array<{ Path: string; Version: string; Sum: string }> }>(fw.url, `/api/builds/${build.id}/buildinfo`)).body;
    for (const [path, role] of [
      ['github.com/caddyserver/caddy/v2', 'caddy'],
      [PLUGIN.module, 'plugin'],
    ] as const) {
      const dep = info.Deps.find((d) => d.Path === path)!;
      const rd = st.predicate.buildDefinition.resolvedDependencies.find((d) => d.name === path);
      assert.ok(rd, `${path} is a resolved dependency`);
      assert.equal(rd.annotations?.role, role);
      assert.equal(rd.annotations?.version, dep.Version);
      assert.equal(rd.annotations?.sum, dep.Sum);
      assert.equal(rd.digest?.dirHash, Buffer.from(dep.Sum.slice(3), 'base64').toString('hex'));
    }
    assert.equal(st.predicate.buildDefinition.resolvedDependencies.length, info.Deps.length, 'every module of the binary');
  });

  test('cosign verify-blob-attestation accepts the binary, and refuses a flipped byte or another key', async () => {
    const args = (key: string, file: string) => ['verify-blob-attestation', '--key', key, '--insecure-ignore-tlog', '--type', 'slsaprovenance1', '--signature', envelopeFile, file];
    const good = await cosign(args(pub, binary), dir);
    assert.ok(good.ok, good.out);
    assert.match(good.out, /Verified OK/);
    const flipped = join(dir, 'caddy-flipped');
    const bytes = await readFile(binary);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await writeFile(flipped, bytes);
    const bad = await cosign(args(pub, flipped), dir);
    assert.ok(!bad.ok, `a flipped byte must be refused:\n${bad.out}`);
    const wrongKey = await cosign(args(otherPub, binary), dir);
    assert.ok(!wrongKey.ok, `another key must be refused:\n${wrongKey.out}`);
  });

  test("cosign verify and verify-attestation against the build's image in Fairway's registry", async () => {
    const opts = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const image = `${host}/caddy/build:${build.id}`;
    const sig = await cosign(['verify', '--key', pub, ...opts, image], dir);
    assert.ok(sig.ok, sig.out);
    const claims = JSON.parse(sig.out.slice(sig.out.indexOf('['), sig.out.lastIndexOf(']') + 1)) as Array<{ critical: { image: { 'docker-manifest-digest': string } } }>;
    const manifest = await fetch(`http://${host}/v2/caddy/build/manifests/${build.id}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    const digest = manifest.headers.get('docker-content-digest')!;
    assert.equal(claims[0]!.critical.image['docker-manifest-digest'], digest);
    const att = await cosign(['verify-attestation', '--key', pub, '--type', 'slsaprovenance1', ...opts, image], dir);
    assert.ok(att.ok, att.out);
    // The same image by digest under the recipe's repository (its signatures are served there too).
    const byDigest = await cosign(['verify', '--key', pub, ...opts, `${host}/caddy/l4@${digest}`], dir);
    assert.ok(byDigest.ok, byDigest.out);
    const wrong = await cosign(['verify', '--key', otherPub, ...opts, image], dir);
    assert.ok(!wrong.ok, `another key must be refused:\n${wrong.out}`);
    const wrongAtt = await cosign(['verify-attestation', '--key', otherPub, '--type', 'slsaprovenance1', ...opts, image], dir);
    assert.ok(!wrongAtt.ok, `another key must be refused:\n${wrongAtt.out}`);
  });

  test('a server without a key: unsigned provenance, marked so; no signing key served; cosign refuses it', async () => {
    const plain = await startFairway({ dataDir: join(dir, 'data-unsigned') });
    try {
      const res = await api(plain.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: ARCH } });
      const b = await waitForBuild(plain.url, res.body.id);
      assert.equal(b.status, 'succeeded');
      assert.equal(b.provenance, 'unsigned');
      const prov = await fetch(`${plain.url}/api/builds/${b.id}/provenance`);
      assert.equal(prov.headers.get('x-fairway-provenance'), 'unsigned');
      const env = (await prov.json()) as DsseEnvelope;
      assert.deepEqual(env.signatures, []);
      assert.equal(readStatement(env).subject[0]!.digest.sha256, b.sha256);
      const key = await api(plain.url, '/api/signing-key');
      assert.equal(key.status, 404);
      assert.equal(key.body.error.code, 'no_signing_key');
      const file = join(dir, 'plain');
      await writeFile(file, Buffer.from(await (await fetch(`${plain.url}/api/builds/${b.id}/artifact`)).arrayBuffer()));
      const unsignedEnv = join(dir, 'unsigned.json');
      await writeFile(unsignedEnv, JSON.stringify(env));
      const r = await cosign(['verify-blob-attestation', '--key', pub, '--insecure-ignore-tlog', '--type', 'slsaprovenance1', '--signature', unsignedEnv, file], dir);
      assert.ok(!r.ok, `unsigned provenance must be refused:\n${r.out}`);
      assert.match(plain.output(), /no signing key/);
    } finally {
      await plain.stop();
    }
  });
});
