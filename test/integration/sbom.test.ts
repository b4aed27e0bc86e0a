/**
 * The SBOM of a real build (docs/sbom.md), one build of Caddy with caddy-l4 on one `serve` with a
 * signing key (the Go cache of FAIRWAY_TEST_CACHE keeps it short):
 *  - 409 until the build succeeded; then SPDX 2.3 JSON (the default, Accept or ?format=spdx) that
 *    the SPDX tools' validator (pyspdxtools, pinned in scripts/sbom-requirements.txt) accepts and a
 *    broken copy of which it refuses; CycloneDX 1.6 with ?format=cyclonedx or its Accept, which
 *    cyclonedx-python-lib's strict JSON schema validator (pinned there too) accepts;
 *  - deterministic: the served bytes are the stored attestation's document, the same on every
 *    request, and the same as the document made again here from the build's own build info; an
 *    artifact without a stored SBOM (built before SBOMs existed) gets those bytes, made from its
 *    build info;
 *  - its attestation (GET /api/builds/{id}/sbom/attestation) verifies against the binary with
 *    `cosign verify-blob-attestation --type spdxjson`;
 *  - the image carries it: `cosign verify-attestation --type spdxjson --key` passes (cosign v2 from
 *    the `.att` tag, cosign v3 from the bundle referrers), with this document as the predicate,
 *    another key is refused, and the SLSA attestation beside it still verifies; an image the registry
 *    makes again (at a pull, its record gone) is attested with the stored SBOM once it verifies.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/sbom.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createKeyPair } from '../../src/provenance/index.js';
import { CycloneDxDocument } from '../../src/sbom/cyclonedx.js';
import { sbomBytes } from '../../src/sbom/index.js';
import { SpdxDocument, spdxDocument } from '../../src/sbom/spdx.js';
import { COSIGN, COSIGN_REGISTRY_OPTS, attestedStatements, cosign } from '../helpers/cosign.js';
import { CADDY_VERSION, PLUGIN, ROOT, api, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const run = promisify(execFile);
const PYSPDXTOOLS = join(ROOT, '.tools', 'sbom-venv', 'bin', 'pyspdxtools');
const SBOM_PYTHON = join(ROOT, '.tools', 'sbom-venv', 'bin', 'python');
/** cyclonedx-python-lib's strict JSON schema validator of CycloneDX 1.6 (the same venv, pinned). */
const CYCLONEDX_VALIDATE = `
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error:
    print(error)
    sys.exit(1)
`;
const COSIGN3 = join(ROOT, '.tools', 'bin', 'cosign3');
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;
const SPDX = 'application/spdx+json';
const CDX = 'application/vnd.cyclonedx+json';

/** pyspdxtools -i <file>: ok when it validates (exit 0, no "invalid" report). */
async function validate(file: string): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(PYSPDXTOOLS, ['-i', file], { timeout: 120_000 });
    return { ok: !/invalid|error/i.test(stdout + stderr), out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function validateCycloneDx(file: string): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(SBOM_PYTHON, ['-c', CYCLONEDX_VALIDATE, file], { timeout: 120_000 });
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('the SBOM of a real build: validated, deterministic, attested on its image', { timeout: 30 * 60_000 }, () => {
  let dir: string;
  let fw: FairwayProcess;
  let pub: string;
  let otherPub: string;
  let build: { id: string; sha256: string; filename: string };
  let spdx: Buffer;
  const keys = createKeyPair();

  before(async () => {
    assert.ok(existsSync(PYSPDXTOOLS), 'pyspdxtools is missing: run bash scripts/contract-tools.sh');
    assert.ok(existsSync(COSIGN), 'cosign is missing: run bash scripts/image-tools.sh');
    assert.ok(existsSync(COSIGN3), 'cosign3 is missing: run bash scripts/image-tools.sh');
    dir = await tempDir('fairway-sbom-');
    const keyFile = join(dir, 'fairway.key');
    await writeFile(keyFile, keys.privatePem, { mode: 0o600 });
    pub = join(dir, 'fairway.pub');
    await writeFile(pub, keys.publicPem);
    otherPub = join(dir, 'other.pub');
    await writeFile(otherPub, createKeyPair().publicPem);
    fw = await startFairway({ dataDir: join(dir, 'data'), args: ['--signing-key', keyFile, '--image-platforms', `linux/${ARCH}`] });
    const res = await api(fw.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: ARCH, plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    // Queued or running: no SBOM yet.
    const early = await api(fw.url, `/api/builds/${res.body.id}/sbom`);
    assert.equal(early.status, 409, JSON.stringify(early.body));
    assert.equal(early.body.error.code, 'not_ready');
    build = await waitForBuild(fw.url, res.body.id);
    assert.equal((build as unknown as { status: string }).status, 'succeeded');
  });
  after(async () => {
    await fw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('SPDX 2.3 by default, signed and stored; the SPDX validator accepts it and refuses a broken copy', async () => {
    const r = await fetch(`${fw.url}/api/builds/${build.id}/sbom`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), SPDX);
    assert.equal(r.headers.get('x-fairway-sbom'), 'signed');
    spdx = Buffer.from(await r.arrayBuffer());
    const doc = SpdxDocument.parse(JSON.parse(spdx.toString('utf8')));
    assert.equal(doc.documentNamespace, `https://fairway.dev/spdx/builds/${build.id}/${build.sha256}`);
    assert.deepEqual(doc.packages[0]!.checksums, [{ algorithm: 'SHA256', checksumValue: build.sha256 }]);
    const log = await (await fetch(`${fw.url}/api/builds/${build.id}/log`)).text();
    assert.match(log, new RegExp(`fairway: SBOM written \\(SPDX 2\\.3, ${doc.packages.length} packages\\), signed`));
    const file = join(dir, 'caddy.spdx.json');
    await writeFile(file, spdx);
    const good = await validate(file);
    assert.ok(good.ok, `pyspdxtools refused the SBOM:\n${good.out}`);
    // The validator can fail: a package without its required downloadLocation, an SPDXID twice.
    const broken = JSON.parse(spdx.toString('utf8'));
    delete broken.packages[1].downloadLocation;
    broken.packages[2].SPDXID = broken.packages[3].SPDXID;
    await writeFile(file, JSON.stringify(broken));
    const bad = await validate(file);
    assert.ok(!bad.ok, `pyspdxtools accepted a broken document:\n${bad.out}`);
  });

  test("every module of the binary's build info, with its version and h1: sum; the same bytes as the document made again from the build info", async () => {
    const info = (await api<{ GoVersion: string; Deps: Array<{ Path: string; Version: string; Sum?: string }> }>(fw.url, `/api/builds/${build.id}/buildinfo`)).body;
    const doc = SpdxDocument.parse(JSON.parse(spdx.toString('utf8')));
    const byName = new Map(doc.packages.map((p) => [p.name, p]));
    assert.ok(info.Deps.length > 20);
    for (const d of info.Deps) {
      const p = byName.get(d.Path);
      assert.ok(p, `${d.Path} is in the SBOM`);
      assert.equal(p.versionInfo, d.Version);
      assert.equal(p.comment, `go.sum ${d.Sum}`);
      assert.equal(p.externalRefs?.[0]?.referenceLocator, `pkg:golang/${d.Path}@${d.Version}`);
    }
    assert.equal(byName.get('github.com/caddyserver/caddy/v2')!.versionInfo, CADDY_VERSION);
    assert.equal(byName.get(PLUGIN.module)!.versionInfo, PLUGIN.version);
    assert.equal(byName.get('stdlib')!.versionInfo, info.GoVersion);
    const again = sbomBytes(spdxDocument({ key: build.id, filename: build.filename, sha256: build.sha256, caddyVersion: CADDY_VERSION, buildInfo: info }));
    assert.ok(again.equals(spdx), 'the stored document is the one the build info gives');
    const second = Buffer.from(await (await fetch(`${fw.url}/api/builds/${build.id}/sbom?format=spdx`)).arrayBuffer());
    assert.ok(second.equals(spdx), 'the same bytes on every request');
  });

  test('CycloneDX 1.6 with ?format=cyclonedx or its Accept, valid by its JSON schema (cyclonedx-python-lib, strict); Accept picks SPDX when it names it first; an unknown format is a 400', async () => {
    const q = await fetch(`${fw.url}/api/builds/${build.id}/sbom?format=cyclonedx`);
    assert.equal(q.status, 200);
    assert.equal(q.headers.get('content-type'), CDX);
    assert.equal(q.headers.get('x-fairway-sbom'), 'generated');
    const bytes = Buffer.from(await q.arrayBuffer());
    const cdx = CycloneDxDocument.parse(JSON.parse(bytes.toString('utf8')));
    assert.equal(cdx.specVersion, '1.6');
    assert.ok(cdx.components.some((c) => c.name === PLUGIN.module && c.version === PLUGIN.version && c.purl === `pkg:golang/${PLUGIN.module}@${PLUGIN.version}`));
    const file = join(dir, 'caddy.cdx.json');
    await writeFile(file, bytes);
    const good = await validateCycloneDx(file);
    assert.ok(good.ok, `the CycloneDX 1.6 schema refused the SBOM:\n${good.out}`);
    const broken = JSON.parse(bytes.toString('utf8'));
    broken.components[0].hashes = [{ alg: 'SHA-256', content: 'not hex' }];
    await writeFile(file, JSON.stringify(broken));
    const bad = await validateCycloneDx(file);
    assert.ok(!bad.ok, `the CycloneDX validator accepted a broken document:\n${bad.out}`);
    const a = await fetch(`${fw.url}/api/builds/${build.id}/sbom`, { headers: { accept: CDX } });
    assert.equal(a.headers.get('content-type'), CDX);
    assert.ok(Buffer.from(await a.arrayBuffer()).equals(bytes));
    const both = await fetch(`${fw.url}/api/builds/${build.id}/sbom`, { headers: { accept: `${SPDX}, ${CDX}` } });
    assert.equal(both.headers.get('content-type'), SPDX);
    await both.arrayBuffer();
    const wrong = await api(fw.url, `/api/builds/${build.id}/sbom?format=xml`);
    assert.equal(wrong.status, 400);
  });

  test("cosign verify-attestation --type spdxjson passes on the build's image (v2: .att; v3: the bundle referrer); another key is refused; the SLSA attestation still verifies", async () => {
    const image = `127.0.0.1:${fw.port}/caddy/build:${build.id}`;
    const doc = JSON.parse(spdx.toString('utf8'));
    for (const bin of [COSIGN, COSIGN3]) {
      const att = await cosign(['verify-attestation', '--key', pub, '--type', 'spdxjson', ...COSIGN_REGISTRY_OPTS, image], dir, bin);
      assert.ok(att.ok, `${bin}:\n${att.out}`);
      const sts = attestedStatements(att.out).filter((s) => s.predicateType === 'https://spdx.dev/Document');
      assert.ok(sts.length >= 1, att.out);
      for (const s of sts) assert.deepEqual(s.predicate, doc, 'the attested predicate is the served document');
      const wrong = await cosign(['verify-attestation', '--key', otherPub, '--type', 'spdxjson', ...COSIGN_REGISTRY_OPTS, image], dir, bin);
      assert.ok(!wrong.ok, `another key must be refused (${bin}):\n${wrong.out}`);
      const slsa = await cosign(['verify-attestation', '--key', pub, '--type', 'slsaprovenance1', ...COSIGN_REGISTRY_OPTS, image], dir, bin);
      assert.ok(slsa.ok, `the SLSA attestation beside the SBOM (${bin}):\n${slsa.out}`);
    }
  });

  test('the SBOM attestation of the binary: cosign verify-blob-attestation --type spdxjson accepts the binary, refuses a flipped byte or another key', async () => {
    const r = await fetch(`${fw.url}/api/builds/${build.id}/sbom/attestation`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-fairway-sbom'), 'signed');
    const envFile = join(dir, 'sbom.att.json');
    await writeFile(envFile, Buffer.from(await r.arrayBuffer()));
    const binary = join(dir, 'caddy');
    const bytes = Buffer.from(await (await fetch(`${fw.url}/api/builds/${build.id}/artifact`)).arrayBuffer());
    await writeFile(binary, bytes);
    const flipped = join(dir, 'caddy-flipped');
    bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
    await writeFile(flipped, bytes);
    const args = (key: string, file: string) => ['verify-blob-attestation', '--key', key, '--insecure-ignore-tlog', '--type', 'spdxjson', '--signature', envFile, file];
    const good = await cosign(args(pub, binary), dir);
    assert.ok(good.ok, good.out);
    assert.match(good.out, /Verified OK/);
    const bad = await cosign(args(pub, flipped), dir);
    assert.ok(!bad.ok, `a flipped byte must be refused:\n${bad.out}`);
    const wrongKey = await cosign(args(otherPub, binary), dir);
    assert.ok(!wrongKey.ok, `another key must be refused:\n${wrongKey.out}`);
  });

  test("an image made again by the registry (its record gone): the SBOM attested again, from the stored attestation, verified with the server's key", async () => {
    await unlink(join(dir, 'data', 'artifacts', 'records', 'images', `${build.id}.json`));
    const image = `127.0.0.1:${fw.port}/caddy/build:${build.id}`;
    const att = await cosign(['verify-attestation', '--key', pub, '--type', 'spdxjson', ...COSIGN_REGISTRY_OPTS, image], dir);
    assert.ok(att.ok, att.out);
    const sts = attestedStatements(att.out).filter((s) => s.predicateType === 'https://spdx.dev/Document');
    assert.deepEqual(sts.at(-1)!.predicate, JSON.parse(spdx.toString('utf8')));
  });

  test('an artifact without a stored SBOM (built before SBOMs existed): the same document, made from its build info', async () => {
    await unlink(join(dir, 'data', 'artifacts', build.id, 'sbom.json'));
    const r = await fetch(`${fw.url}/api/builds/${build.id}/sbom`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-fairway-sbom'), 'generated');
    assert.ok(Buffer.from(await r.arrayBuffer()).equals(spdx));
    const att = await api(fw.url, `/api/builds/${build.id}/sbom/attestation`);
    assert.equal(att.status, 404);
    assert.match(att.body.error.message, /built before Fairway attested SBOMs/);
  });
});
