/**
 * Signed provenance, checked by the real verifier: a real `fairway serve` with a signing key builds
 * Caddy with a plugin; cosign (scripts/image-tools.sh, pinned) verifies offline
 *  - the binary against its provenance (`verify-blob-attestation --type slsaprovenance1`), and
 *    refuses it after one byte of the binary is flipped, or with another key;
 *  - the image of the build pulled from Fairway's registry (`verify`, `verify-attestation`),
 *    under caddy/build:<id> and, by digest, under the recipe's repository; and refuses another key;
 *  - the tag caddy/l4:<version> (`verify`, `verify-attestation --type slsaprovenance1`): its image
 *    index, signed with serve's key once its platform image verified, attested with that image's
 *    provenance; refused with another key, and another server's tag refused with this key.
 *  - the same with cosign v3 (.tools/bin/cosign3), which reads the signature and the attestation
 *    as Sigstore bundles found through the OCI 1.1 referrers API; a tampered bundle (or a tampered
 *    .sig for cosign v2) and a foreign image (another server's, another key) are refused by both.
 * Signed by default: a `serve` without signingKey makes its own key at first start (mode 0600,
 * logged), serves it at /api/signing-key, and its build's provenance verifies with cosign against
 * that key; after a restart the key is the same. A provenance forged in the store (signed by another
 * key, or altered) is not re-signed by the registry: the image is made unsigned and the log says why,
 * and the tag's index over it is not signed either.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/provenance.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createHash, createPublicKey } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IN_TOTO_PAYLOAD_TYPE, createKeyPair, envelope, fingerprintOf, publicKeyFromPem, readStatement, statementBytes, type DsseEnvelope } from '../../src/provenance/index.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { COSIGN, attestedStatements, cosign } from '../helpers/cosign.js';
import { CADDY_VERSION, PLUGIN, ROOT, api, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const COSIGN3 = join(ROOT, '.tools', 'bin', 'cosign3');
const OFFLINE = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;
const RECIPES = JSON.stringify({ l4: { plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });

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
    assert.ok(existsSync(COSIGN3), 'cosign3 (cosign v3) is missing: run bash scripts/image-tools.sh');
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
    await plain?.stop();
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

  test("cosign verify and verify-attestation of the tag caddy/l4:<version>: its index, signed by serve's key once its image verified; another key is refused", async () => {
    const opts = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const tag = `${host}/caddy/l4:${CADDY_VERSION}`;
    const idx = await fetch(`http://${host}/v2/caddy/l4/manifests/${CADDY_VERSION}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } });
    assert.equal(idx.status, 200);
    const indexDigest = idx.headers.get('docker-content-digest')!;
    const platform = ((await idx.json()) as { manifests: Array<{ digest: string }> }).manifests[0]!.digest;
    assert.equal(await (await fetch(`${fw.url}/api/index-signing-key`)).text(), keys.publicPem, 'serve signs indexes with its build key');
    const sig = await cosign(['verify', '--key', pub, ...opts, tag], dir);
    assert.ok(sig.ok, sig.out);
    const claims = JSON.parse(sig.out.slice(sig.out.indexOf('['), sig.out.lastIndexOf(']') + 1)) as Array<{ critical: { image: { 'docker-manifest-digest': string } } }>;
    assert.equal(claims[0]!.critical.image['docker-manifest-digest'], indexDigest, 'the signature is about the index the tag names');
    const att = await cosign(['verify-attestation', '--key', pub, '--type', 'slsaprovenance1', ...opts, tag], dir);
    assert.ok(att.ok, att.out);
    // Each attestation cosign prints: the platform image's provenance, about the index and that image.
    const statements = attestedStatements(att.out);
    assert.equal(statements.length, 1, att.out);
    assert.deepEqual(
      statements[0]!.subject.map((x) => x.digest.sha256),
      [indexDigest.slice(7), platform.slice(7)],
    );
    assert.equal(statements[0]!.predicate.runDetails.metadata.invocationId, build.id);
    for (const args of [['verify'], ['verify-attestation', '--type', 'slsaprovenance1']]) {
      const wrong = await cosign([...args, '--key', otherPub, ...opts, tag], dir);
      assert.ok(!wrong.ok, `another key must be refused:\n${wrong.out}`);
    }
    // cosign v3 finds no bundle referrers for the index and reads the same .sig/.att tags.
    for (const args of [['verify'], ['verify-attestation', '--type', 'slsaprovenance1']]) {
      const v3 = await cosign([...args, '--key', pub, ...opts, tag], dir, COSIGN3);
      assert.ok(v3.ok, `cosign v3 ${args[0]} of the tag:\n${v3.out}`);
      const wrong = await cosign([...args, '--key', otherPub, ...opts, tag], dir, COSIGN3);
      assert.ok(!wrong.ok, `another key must be refused by cosign v3:\n${wrong.out}`);
    }
  });

  test('cosign v3 verifies the same image through its Sigstore bundles (OCI 1.1 referrers); a tampered bundle or .sig is refused by v3 and v2', async () => {
    const image = `${host}/caddy/build:${build.id}`;
    const digest = (await fetch(`http://${host}/v2/caddy/build/manifests/${build.id}`, { method: 'HEAD' })).headers.get('docker-content-digest')!;
    const sig = await cosign(['verify', '--key', pub, ...OFFLINE, image], dir, COSIGN3);
    assert.ok(sig.ok, sig.out);
    // cosign v3 reports what it verified: the bundle's in-toto statement (cosign's sign predicate), about this digest.
    assert.match(sig.out, /"type":"https:\/\/sigstore\.dev\/cosign\/sign\/v1"/, `v3 verified the bundle, not the .sig:\n${sig.out}`);
    assert.ok(sig.out.includes(`"docker-manifest-digest":"${digest}"`), sig.out);
    const att = await cosign(['verify-attestation', '--key', pub, '--type', 'slsaprovenance1', ...OFFLINE, image], dir, COSIGN3);
    assert.ok(att.ok, att.out);
    const byDigest = await cosign(['verify', '--key', pub, ...OFFLINE, `${host}/caddy/l4@${digest}`], dir, COSIGN3);
    assert.ok(byDigest.ok, byDigest.out);
    for (const args of [
      ['verify', '--key', otherPub, ...OFFLINE, image],
      ['verify-attestation', '--key', otherPub, '--type', 'slsaprovenance1', ...OFFLINE, image],
    ]) {
      const wrong = await cosign(args, dir, COSIGN3);
      assert.ok(!wrong.ok, `another key must be refused by cosign v3 (${args[0]}):\n${wrong.out}`);
    }

    // Tampering, as whoever can write to the store could: the record then names a signature bundle
    // (and a .sig) whose statement was altered after it was signed. Both cosigns refuse the image.
    const root = join(dir, 'data', 'artifacts');
    const recFile = join(root, 'records', 'signatures', `${build.id}.json`);
    const genuine = await readFile(recFile, 'utf8');
    const rec = JSON.parse(genuine) as { sig: { digest: string; size: number }; referrers: Array<{ digest: string; size: number; artifactType: string }> };
    const blob = (d: string) => readFile(join(root, 'blobs', 'sha256', d.slice(7)));
    const put = async (bytes: Buffer) => {
      const d = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      await writeFile(join(root, 'blobs', 'sha256', d.slice(7)), bytes);
      return { digest: d, size: bytes.length };
    };
    const manifests = await Promise.all(
      rec.referrers.map(async (r) => ({ r, m: JSON.parse((await blob(r.digest)).toString()) as { layers: Array<{ digest: string; size: number }>; annotations: Record<string, string> } })),
    );
    const signRef = manifests.find((x) => x.m.annotations['dev.sigstore.bundle.predicateType'] === 'https://sigstore.dev/cosign/sign/v1')!;
    const bundle = JSON.parse((await blob(signRef.m.layers[0]!.digest)).toString()) as { dsseEnvelope: { payload: string } };
    const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) as Record<string, unknown>;
    bundle.dsseEnvelope.payload = Buffer.from(JSON.stringify({ ...statement, predicate: { tampered: true } })).toString('base64');
    const forgedLayer = await put(Buffer.from(JSON.stringify(bundle)));
    const forgedRef = await put(Buffer.from(JSON.stringify({ ...signRef.m, layers: [{ ...signRef.m.layers[0], ...forgedLayer }] })));
    const sigManifest = JSON.parse((await blob(rec.sig.digest)).toString()) as { layers: Array<{ digest: string; size: number }> };
    const payload = JSON.parse((await blob(sigManifest.layers[0]!.digest)).toString()) as { optional: unknown };
    const forgedPayload = await put(Buffer.from(JSON.stringify({ ...payload, optional: { tampered: 'yes' } })));
    const forgedSig = await put(Buffer.from(JSON.stringify({ ...sigManifest, layers: [{ ...sigManifest.layers[0], ...forgedPayload }] })));
    await writeFile(recFile, JSON.stringify({ ...rec, sig: forgedSig, referrers: [{ ...forgedRef, artifactType: BUNDLE }] }));
    try {
      const listed = (await (await fetch(`http://${host}/v2/caddy/build/referrers/${digest}`)).json()) as { manifests: Array<{ digest: string }> };
      assert.deepEqual(
        listed.manifests.map((m) => m.digest),
        [forgedRef.digest],
        'the tampered bundle is what the registry lists',
      );
      const v3 = await cosign(['verify', '--key', pub, ...OFFLINE, image], dir, COSIGN3);
      assert.ok(!v3.ok, `a tampered bundle must be refused by cosign v3:\n${v3.out}`);
      const v2 = await cosign(['verify', '--key', pub, ...OFFLINE, image], dir);
      assert.ok(!v2.ok, `a tampered .sig must be refused by cosign v2:\n${v2.out}`);
    } finally {
      await writeFile(recFile, genuine);
    }
    const back = await cosign(['verify', '--key', pub, ...OFFLINE, image], dir, COSIGN3);
    assert.ok(back.ok, `the genuine record back: verified again\n${back.out}`);
  });

  // ---- signed by default (issue 26): a `serve` with no signingKey, one build, one restart ----
  let plain: FairwayProcess | undefined;
  let plainData: string;
  let plainBuild: { id: string; sha256: string; provenance?: string; links: { provenance: string } };
  let plainPub: string;

  test('a default serve (no signingKey): its own key, made at first start (0600); its build verifies with cosign against /api/signing-key', async () => {
    plainData = join(dir, 'data-default');
    plain = await startFairway({ dataDir: plainData, args: ['--image-platforms', `linux/${ARCH}`] });
    const keyFile = join(plainData, 'signing.key');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600, 'the key file is mode 0600');
    const served = await fetch(`${plain.url}/api/signing-key`);
    assert.equal(served.status, 200);
    const pem = await served.text();
    const fp = fingerprintOf(publicKeyFromPem(pem));
    assert.equal(fingerprintOf(createPublicKey(await readFile(keyFile, 'utf8'))), fp, '/api/signing-key serves the public half of the key file');
    assert.match(plain.output(), new RegExp(`created a signing key \\(no signingKey set\\).*fingerprint ${fp}`), 'the start log names the new key');
    plainPub = join(dir, 'default.pub');
    await writeFile(plainPub, pem);
    const res = await api(plain.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: ARCH } });
    assert.ok(res.status === 200 || res.status === 202, JSON.stringify(res.body));
    plainBuild = await waitForBuild(plain.url, res.body.id);
    assert.equal((plainBuild as unknown as { status: string }).status, 'succeeded');
    assert.equal(plainBuild.provenance, 'signed');
    const prov = await fetch(`${plain.url}${plainBuild.links.provenance}`);
    assert.equal(prov.headers.get('x-fairway-provenance'), 'signed');
    const envFile = join(dir, 'default-provenance.json');
    await writeFile(envFile, Buffer.from(await prov.arrayBuffer()));
    const file = join(dir, 'caddy-default');
    await writeFile(file, Buffer.from(await (await fetch(`${plain.url}/api/builds/${plainBuild.id}/artifact`)).arrayBuffer()));
    const args = (key: string) => ['verify-blob-attestation', '--key', key, '--insecure-ignore-tlog', '--type', 'slsaprovenance1', '--signature', envFile, file];
    const ok = await cosign(args(plainPub), dir);
    assert.ok(ok.ok, ok.out);
    assert.match(ok.out, /Verified OK/);
    const wrong = await cosign(args(otherPub), dir);
    assert.ok(!wrong.ok, `another key must be refused:\n${wrong.out}`);
  });

  test('after a restart: the same key (file unchanged, mode 0600), served and logged', async () => {
    assert.ok(plain, 'the default serve started');
    const keyFile = join(plainData, 'signing.key');
    const before = await readFile(keyFile);
    await plain.stop();
    plain = await startFairway({ dataDir: plainData, args: ['--image-platforms', `linux/${ARCH}`] });
    assert.deepEqual(await readFile(keyFile), before, 'the key file is the same');
    assert.equal((await stat(keyFile)).mode & 0o777, 0o600);
    assert.equal(await (await fetch(`${plain.url}/api/signing-key`)).text(), await readFile(plainPub, 'utf8'));
    const fp = fingerprintOf(publicKeyFromPem(await readFile(plainPub, 'utf8')));
    assert.match(plain.output(), new RegExp(`signed with this server's key \\(fingerprint ${fp}\\), made at its first start`));
    assert.doesNotMatch(plain.output(), /created a signing key/);
  });

  test("a tag of another server (its own key): verifies with that server's key, never with this one's", async () => {
    assert.ok(plain, 'the default serve started');
    const opts = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const tag = `127.0.0.1:${plain.port}/caddy:${CADDY_VERSION}`;
    const own = await cosign(['verify', '--key', plainPub, ...opts, tag], dir);
    assert.ok(own.ok, own.out);
    for (const args of [['verify'], ['verify-attestation', '--type', 'slsaprovenance1']]) {
      const foreign = await cosign([...args, '--key', pub, ...opts, tag], dir);
      assert.ok(!foreign.ok, `an index assembled and signed without this key must be refused:\n${foreign.out}`);
    }
  });

  test("a forged provenance in the store (another key's signature, or an altered payload) is not re-signed: the image is made unsigned, the log says why", async () => {
    assert.ok(plain, 'the default serve started');
    const root = join(plainData, 'artifacts');
    const key = plainBuild.id;
    const provFile = join(root, key, 'provenance.json');
    const genuine = await readFile(provFile, 'utf8');
    const env = JSON.parse(genuine) as DsseEnvelope;
    const st = readStatement(env);
    const anotherKey = envelope(IN_TOTO_PAYLOAD_TYPE, statementBytes(st), signerFromPem(other.privatePem));
    const altered = { ...env, payload: Buffer.from(Buffer.from(env.payload, 'base64').toString().replace(`urn:fairway:builder:`, 'urn:fairway:builder:evil-')).toString('base64') };
    /** Drops the image and its signatures (as for a build whose image was never made), pulls it; the image's .sig and .att answers. */
    const remake = async () => {
      for (const ns of ['images', 'signatures']) await rm(join(root, 'records', ns, `${key}.json`), { force: true });
      const m = await fetch(`${plain!.url}/v2/caddy/build/manifests/${key}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
      assert.equal(m.status, 200, await m.text());
      const hex = m.headers.get('docker-content-digest')!.slice('sha256:'.length);
      const status = async (kind: string) => (await fetch(`${plain!.url}/v2/caddy/build/manifests/sha256-${hex}.${kind}`)).status;
      return { sig: await status('sig'), att: await status('att') };
    };
    const refusals = () =>
      plain!
        .output()
        .split('\n')
        .filter((l) => l.includes(`not signing the image of build ${key}`));
    for (const [what, forged, reason] of [
      ['signed by another key', anotherKey, /does not verify with this server's key [0-9a-f]{16}: none of the envelope's 1 signature\(s\) verifies with this key/],
      ['an altered payload', altered, /does not verify with this server's key [0-9a-f]{16}: none of the envelope's 1 signature\(s\) verifies with this key/],
    ] as const) {
      await writeFile(provFile, JSON.stringify(forged));
      const seen = refusals().length;
      assert.deepEqual(await remake(), { sig: 404, att: 404 }, `${what}: neither signed nor attested`);
      const lines = refusals();
      assert.equal(lines.length, seen + 1, `${what}: one log line says why`);
      assert.match(lines.at(-1)!, reason, what);
    }
    // The tag's index over that (now unsigned) image is not signed either, once its kept signature is gone.
    const opts = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'];
    const tag = `127.0.0.1:${plain.port}/caddy:${CADDY_VERSION}`;
    await rm(join(root, 'records', 'index-signatures'), { recursive: true, force: true });
    const unsignedTag = await cosign(['verify', '--key', plainPub, ...opts, tag], dir);
    assert.ok(!unsignedTag.ok, `an index over an image that does not verify must not be signed:\n${unsignedTag.out}`);
    assert.match(plain.output(), /not signing the image index sha256:[0-9a-f]{64} of caddy: the linux\/[a-z0-9/]+ image sha256:[0-9a-f]{64} \(build [0-9a-f]{64}\) does not verify: it is not signed/);
    // The genuine provenance back: the image is signed and attested again, and cosign accepts it (and its tag).
    await writeFile(provFile, genuine);
    assert.deepEqual(await remake(), { sig: 200, att: 200 });
    const image = `127.0.0.1:${plain.port}/caddy/build:${key}`;
    const att = await cosign(['verify-attestation', '--key', plainPub, '--type', 'slsaprovenance1', ...opts, image], dir);
    assert.ok(att.ok, att.out);
    const signedTag = await cosign(['verify-attestation', '--key', plainPub, '--type', 'slsaprovenance1', ...opts, tag], dir);
    assert.ok(signedTag.ok, signedTag.out);
    const att3 = await cosign(['verify-attestation', '--key', plainPub, '--type', 'slsaprovenance1', ...opts, image], dir, COSIGN3);
    assert.ok(att3.ok, att3.out);
    // A foreign image (this other server's, signed with its own key) against the first server's key: refused by both.
    for (const bin of [COSIGN, COSIGN3]) {
      const foreign = await cosign(['verify', '--key', pub, ...opts, image], dir, bin);
      assert.ok(!foreign.ok, `a foreign image must be refused (${bin}):\n${foreign.out}`);
    }
    await plain.stop();
    plain = undefined;
  });
});
