/**
 * The OCI distribution-spec conformance suite (scripts/contract-tools.sh, pinned:
 * .tools/bin/oci-conformance) against a real `fairway serve` and a real build's image, in its
 * pull-only configuration: push and deletes off, referrers on, the read-only data (OCI_RO_DATA_*)
 * naming what the build made in the repository `caddy`: the tag, the tag's index and the image
 * manifest, the Sigstore bundle referrers of the image (docs/provenance.md), their blobs, and the
 * image as the subject of the referrers API. One build (plain Caddy, this machine's platform).
 * The suite runs once per top-level branch (ping, empty, read-only, missing-manifest,
 * invalid-digest-format; the blob-push branches cannot run with push off, see below); each run's
 * report (report.html, junit.xml, results.yaml, output.txt) is kept in test-output/oci-conformance/<branch>/.
 * Before it, the referrers API is checked here (what it lists, the artifactType filter, the
 * repository rules), since the suite's read-only mode only checks that it answers a valid index.
 *   node scripts/setup.mjs && bash scripts/deps.sh && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/oci-conformance.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CADDY_VERSION, PLUGIN, ROOT, api, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const run = promisify(execFile);
const SUITE = join(ROOT, '.tools', 'bin', 'oci-conformance');
const OUT = join(ROOT, 'test-output', 'oci-conformance');
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };
const ARCH = GOARCH[process.arch] ?? process.arch;
const TAG = CADDY_VERSION.replace(/^v/, '');
const INDEX = 'application/vnd.oci.image.index.v1+json';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
/** The suite's top-level branches run here (see the test for the two blob-push branches left out). */
const BRANCHES = ['ping', 'empty', 'read-only', 'missing-manifest', 'invalid-digest-format'];
const RECIPES = JSON.stringify({ l4: { plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] } });

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}
interface Manifest {
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  manifests?: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

describe('the OCI conformance suite (pull-only, referrers) against a real serve and build', { timeout: 40 * 60_000 }, () => {
  let dir: string;
  let fw: FairwayProcess;
  let base: string;
  let indexDigest: string;
  let imageDigest: string;
  let image: Manifest;

  const getJson = async <T>(path: string, accept = `${INDEX}, ${MANIFEST}`): Promise<{ status: number; body: T; headers: Headers }> => {
    const res = await fetch(`${base}${path}`, { headers: { accept } });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T, headers: res.headers };
  };

  before(async () => {
    assert.ok(existsSync(SUITE), 'the conformance suite is missing: run bash scripts/contract-tools.sh');
    dir = await tempDir('fairway-conformance-');
    fw = await startFairway({ dataDir: join(dir, 'data'), args: ['--image-platforms', `linux/${ARCH}`, '--recipes', RECIPES] });
    base = fw.url;
    const res = await api(base, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: ARCH } });
    assert.ok(res.status === 200 || res.status === 202, JSON.stringify(res.body));
    const build = await waitForBuild(base, res.body.id);
    assert.equal(build.status, 'succeeded', JSON.stringify(build));
    // The tag: the index over the one image platform (the build is its platform: a cache hit).
    const tag = await getJson<Manifest>(`/v2/caddy/manifests/${TAG}`);
    assert.equal(tag.status, 200, JSON.stringify(tag.body));
    indexDigest = tag.headers.get('docker-content-digest')!;
    assert.equal(tag.body.manifests?.length, 1);
    imageDigest = tag.body.manifests![0]!.digest;
    const m = await getJson<Manifest>(`/v2/caddy/manifests/${imageDigest}`);
    assert.equal(m.status, 200);
    image = m.body;
  });
  after(async () => {
    await fw?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("the referrers API lists the image's Sigstore bundles (signature, SLSA and SBOM attestations), filters by artifactType, and keeps to the repository rules", async () => {
    const all = await getJson<{ schemaVersion: number; mediaType: string; manifests: Descriptor[] }>(`/v2/caddy/referrers/${imageDigest}`, INDEX);
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.equal(all.headers.get('content-type'), INDEX);
    assert.equal(all.headers.get('oci-filters-applied'), null, 'no filter asked, none applied');
    assert.equal(all.body.schemaVersion, 2);
    assert.equal(all.body.mediaType, INDEX);
    assert.deepEqual(all.body.manifests.map((d) => d.annotations?.['dev.sigstore.bundle.predicateType']).sort(), [
      'https://sigstore.dev/cosign/sign/v1',
      'https://slsa.dev/provenance/v1',
      'https://spdx.dev/Document',
    ]);
    for (const d of all.body.manifests) {
      assert.equal(d.mediaType, MANIFEST);
      assert.equal(d.artifactType, BUNDLE);
      // Each is a manifest of this repository whose subject is the image, with the bundle as its one layer.
      const r = await getJson<Manifest>(`/v2/caddy/manifests/${d.digest}`);
      assert.equal(r.status, 200);
      assert.equal(Number(r.headers.get('content-length')), d.size);
      assert.equal(r.body.subject?.digest, imageDigest);
      assert.equal(r.body.artifactType, BUNDLE);
      assert.deepEqual(r.body.annotations, d.annotations, 'the descriptor carries the manifest annotations');
      assert.deepEqual(
        r.body.layers.map((l) => l.mediaType),
        [BUNDLE],
      );
      const bundle = (await (await fetch(`${base}/v2/caddy/blobs/${r.body.layers[0]!.digest}`)).json()) as { mediaType: string; dsseEnvelope: { payload: string } };
      assert.equal(bundle.mediaType, BUNDLE);
      const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString()) as { subject: Array<{ digest: { sha256: string } }> };
      assert.equal(statement.subject[0]!.digest.sha256, imageDigest.slice(7), 'the bundle is about the image');
    }
    const filtered = await getJson<{ manifests: Descriptor[] }>(`/v2/caddy/referrers/${imageDigest}?artifactType=${encodeURIComponent(BUNDLE)}`, INDEX);
    assert.equal(filtered.status, 200);
    assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
    assert.equal(filtered.body.manifests.length, 3);
    const none = await getJson<{ manifests: Descriptor[] }>(`/v2/caddy/referrers/${imageDigest}?artifactType=application%2Fexample`, INDEX);
    assert.equal(none.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(none.body.manifests, []);
    // An unknown digest, the (unsigned) index, and the image under a repository it does not belong to: an empty index, not a 404.
    for (const path of [`/v2/caddy/referrers/sha256:${'0'.repeat(64)}`, `/v2/caddy/referrers/${indexDigest}`, `/v2/caddy/l4/referrers/${imageDigest}`]) {
      const empty = await getJson<{ mediaType: string; manifests: Descriptor[] }>(path, INDEX);
      assert.equal(empty.status, 200, path);
      assert.equal(empty.body.mediaType, INDEX);
      assert.deepEqual(empty.body.manifests, [], path);
    }
    // The image's referrers are served under caddy/build too (it belongs there).
    const inBuild = await getJson<{ manifests: Descriptor[] }>(`/v2/caddy/build/referrers/${imageDigest}`, INDEX);
    assert.equal(inBuild.body.manifests.length, 3);
    const bad = await getJson<{ errors: Array<{ code: string }> }>('/v2/caddy/referrers/sha256:xyz', INDEX);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0]!.code, 'DIGEST_INVALID');
    const unknown = await getJson<{ errors: Array<{ code: string }> }>(`/v2/caddy/nosuch/referrers/${imageDigest}`, INDEX);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.errors[0]!.code, 'NAME_UNKNOWN');
  });

  test('the conformance suite passes in its pull-only configuration with referrers on; its report is kept in test-output/oci-conformance', async () => {
    // The image's referrers and their blobs are part of the read-only data (none when the API is missing: the suite then shows it).
    const listed = await getJson<{ manifests?: Descriptor[] }>(`/v2/caddy/referrers/${imageDigest}`, INDEX);
    const referrers = listed.status === 200 ? (listed.body.manifests ?? []) : [];
    const blobs = new Set<string>([image.config.digest, ...image.layers.map((l) => l.digest)]);
    for (const r of referrers) {
      const m = (await getJson<Manifest>(`/v2/caddy/manifests/${r.digest}`)).body;
      blobs.add(m.config.digest);
      for (const l of m.layers) blobs.add(l.digest);
    }
    await rm(OUT, { recursive: true, force: true });
    await mkdir(OUT, { recursive: true });
    // Only the suite's own variables (a stray OCI_* of the caller's shell would change the run); no config file (cwd: an empty dir).
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OCI_')));
    Object.assign(env, {
      OCI_VERSION: '1.1',
      OCI_REGISTRY: `127.0.0.1:${fw.port}`,
      OCI_TLS: 'disabled',
      OCI_REPO1: 'caddy',
      OCI_REPO2: 'caddy/build',
      OCI_LOG: 'warn',
      OCI_API_PULL: 'true',
      OCI_API_PUSH: 'false',
      OCI_API_BLOBS_DELETE: 'false',
      OCI_API_MANIFESTS_DELETE: 'false',
      OCI_API_TAGS_DELETE: 'false',
      OCI_API_TAGS_LIST: 'true',
      OCI_API_REFERRER: 'true',
    });
    const roData = {
      OCI_RO_DATA_TAGS: TAG,
      OCI_RO_DATA_MANIFESTS: [indexDigest, imageDigest, ...referrers.map((r) => r.digest)].join(' '),
      OCI_RO_DATA_BLOBS: [...blobs].join(' '),
      OCI_RO_DATA_REFERRERS: [imageDigest, indexDigest].join(' '),
    };
    const cwd = join(dir, 'suite');
    await mkdir(cwd, { recursive: true });
    // One run per top-level branch (OCI_FILTER_TEST), each with its own report directory. The
    // branches left out, "sha256 blobs" and "sha512 blobs", test blob pushes only (all disabled
    // here), and the pinned suite cannot run them with push off: it marks them skipped without
    // their test data, and then panics writing results.yaml (run.go ReportResultsYAML: a nil
    // State.Data entry), before junit.xml and report.html are written.
    for (const branch of BRANCHES) {
      const results = join(OUT, branch);
      let out: string;
      try {
        // The read-only data only for its own branch: in another branch's run its status stays
        // unknown, and the suite then refuses to write results.yaml ("unknown status 0").
        const data = branch === 'read-only' ? roData : {};
        const r = await run(SUITE, [], {
          env: { ...env, ...data, OCI_RESULTS_DIR: results, OCI_FILTER_TEST: `OCI Conformance Test/${branch}` },
          cwd,
          timeout: 5 * 60_000,
          maxBuffer: 32 * 1024 * 1024,
        });
        out = r.stdout + r.stderr;
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string };
        assert.fail(`the conformance suite failed on ${branch} (report: ${join(results, 'report.html')}):\n${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      }
      await writeFile(join(results, 'output.txt'), out);
      assert.match(out, /^OCI Conformance Test: Pass$/m, out);
      for (const f of ['report.html', 'junit.xml', 'results.yaml']) assert.ok(existsSync(join(results, f)), `${branch}: ${f} is written:\n${out}`);
      const junit = await readFile(join(results, 'junit.xml'), 'utf8');
      assert.doesNotMatch(junit, /<failure|<error/, `${branch}: no failures in junit.xml`);
      assert.doesNotMatch(out, /: (FAIL|Error)$/m, out);
      // The referrers tests ran and passed: on a random digest (an empty index) and on the image.
      if (branch === 'empty' || branch === 'read-only') assert.match(out, new RegExp(`^\\s*OCI Conformance Test/${branch}/referrers: Pass$`, 'm'), out);
      if (branch === 'read-only') {
        for (const t of ['tag-list', 'head', 'pull']) assert.match(out, new RegExp(`^\\s*OCI Conformance Test/read-only/${t}: Pass$`, 'm'), out);
      }
    }
  });
});
