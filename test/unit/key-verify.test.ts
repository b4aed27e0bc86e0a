// `fairway key create` and `fairway verify` (src/cli/key.ts, src/cli/verify.ts), and the API's
// lookup of builds by sha256 (`GET /api/builds?sha256=`) that verify uses. verify runs against a
// fake server (node:http, below), against the real API (createApi + BuildService + FsStore on a
// loopback port), and with --provenance FILE; with real keys and a real file.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createKeyFiles, keyCreatedText } from '../../src/cli/key.js';
import { runVerify, type VerifyOptions } from '../../src/cli/verify.js';
import { binaryProvenance, createKeyPair, fingerprintOf, publicKeyFromPem, type DsseEnvelope } from '../../src/provenance/index.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { BUILD_FLAGS, cacheKey, type ResolvedSpec } from '../../src/request/index.js';
import { testApi, type TestApi } from '../helpers/api.js';

const execFileP = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');

/** The real CLI, as its own process (node + tsx, like `npm test` runs the sources). */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/main/index.ts'), ...args], {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('fairway key create', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-key-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('writes <prefix>.key (PKCS#8, 0600) and <prefix>.pub (SPKI, 0644), a working pair', async () => {
    const k = await createKeyFiles(join(dir, 'a'));
    assert.equal(k.privateKey, join(dir, 'a.key'));
    assert.equal(k.publicKey, join(dir, 'a.pub'));
    assert.equal((await stat(k.privateKey)).mode & 0o777, 0o600);
    assert.equal((await stat(k.publicKey)).mode & 0o777, 0o644);
    const priv = await readFile(k.privateKey, 'utf8');
    const pub = await readFile(k.publicKey, 'utf8');
    assert.match(priv, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(pub, /^-----BEGIN PUBLIC KEY-----\n/);
    const signer = signerFromPem(priv);
    assert.equal(signer.fingerprint, k.fingerprint);
    assert.equal(fingerprintOf(publicKeyFromPem(pub)), k.fingerprint);
    const text = keyCreatedText(k);
    assert.match(text, new RegExp(`fingerprint ${k.fingerprint}`));
    assert.match(text, /on the builders \(fairway serve, fairway agent\), set signingKey:\n {2}FAIRWAY_SIGNING_KEY=.*a\.key {3}or {3}--signing-key .*a\.key/);
    assert.match(text, /on hubs .*set publicKey:\n {2}FAIRWAY_PUBLIC_KEY=.*a\.pub/);
  });

  test('refuses to overwrite either file without --force; --force replaces both', async () => {
    const first = await createKeyFiles(join(dir, 'b'));
    const before = await readFile(first.privateKey, 'utf8');
    await assert.rejects(createKeyFiles(join(dir, 'b')), (e: Error & { exitCode?: number }) => e.exitCode === 2 && /b\.key exists; not overwriting it \(use --force/.test(e.message));
    assert.equal(await readFile(first.privateKey, 'utf8'), before);
    // Only the .pub there: still refused, and no .key is left behind.
    await writeFile(join(dir, 'c.pub'), 'mine');
    await assert.rejects(createKeyFiles(join(dir, 'c')), /c\.pub exists; not overwriting it/);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.startsWith('c.')),
      ['c.pub'],
    );
    assert.equal(await readFile(join(dir, 'c.pub'), 'utf8'), 'mine');
    const second = await createKeyFiles(join(dir, 'b'), true);
    assert.notEqual(second.fingerprint, first.fingerprint);
    assert.equal(signerFromPem(await readFile(second.privateKey, 'utf8')).fingerprint, second.fingerprint);
    assert.equal(fingerprintOf(publicKeyFromPem(await readFile(second.publicKey, 'utf8'))), second.fingerprint);
    assert.equal((await stat(second.privateKey)).mode & 0o777, 0o600);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('.tmp')),
      [],
      'no temp file left',
    );
  });

  test('the command: default prefix ./fairway in the current directory, its output, exit 2 on refusal', async () => {
    const cwd = await mkdtemp(join(tmpdir(), 'fw-keycli-'));
    try {
      const r = await cli(['key', 'create'], {}, cwd);
      assert.equal(r.code, 0, r.stderr);
      const fp = signerFromPem(await readFile(join(cwd, 'fairway.key'), 'utf8')).fingerprint;
      assert.match(r.stdout, new RegExp(`^wrote ${join(cwd, 'fairway.key')} \\(private signing key, PKCS#8 PEM, mode 0600`));
      assert.match(r.stdout, new RegExp(`\nwrote ${join(cwd, 'fairway.pub')} \\(public key, SPKI PEM\\)\nfingerprint ${fp}\n`));
      assert.equal((await stat(join(cwd, 'fairway.key'))).mode & 0o777, 0o600);
      const again = await cli(['key', 'create'], {}, cwd);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /fairway key create: .*fairway\.key exists; not overwriting it \(use --force to replace it\)/);
      assert.equal(signerFromPem(await readFile(join(cwd, 'fairway.key'), 'utf8')).fingerprint, fp);
    } finally {
      await rm(cwd, { recursive: true, force: true });
    }
  });
});

// ---- verify ---------------------------------------------------------------------------------------

const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: BUILD_FLAGS },
} as ResolvedSpec;
const KEY = cacheKey(spec);
const buildInfo = {
  Deps: [
    { Path: 'github.com/caddyserver/caddy/v2', Version: 'v2.11.9', Sum: 'h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=' },
    { Path: 'github.com/mholt/caddy-l4', Version: 'v0.1.2', Sum: 'h1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=' },
    { Path: 'golang.org/x/net', Version: 'v0.40.0' },
  ],
};

function provenanceOf(sha256: string, signer?: ReturnType<typeof signerFromPem>, key = KEY): DsseEnvelope {
  return binaryProvenance(
    {
      key,
      request: { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/mholt/caddy-l4' }] },
      spec,
      buildInfo,
      builder: 'serve@buildhost',
      fairwayVersion: '0.1.0',
      startedAt: '2026-12-01T10:00:00.000Z',
      finishedAt: '2026-12-01T10:01:00.000Z',
      filename: 'caddy_linux_amd64',
      sha256,
    },
    signer,
  );
}

function record(id: string, sha256: string) {
  const at = '2026-12-01T10:01:00.000Z';
  return {
    id,
    key: id,
    status: 'succeeded',
    phase: 'done',
    cached: false,
    request: {},
    spec,
    filename: 'caddy_linux_amd64',
    sha256,
    size: 1,
    createdAt: at,
    finishedAt: at,
    provenance: 'signed',
    links: { self: `/api/builds/${id}`, log: '', artifact: '', buildinfo: '', provenance: `/api/builds/${id}/provenance` },
  };
}

/** A stand-in Fairway server: the three routes verify reads, answering from `state`. */
interface FakeState {
  builds: ReturnType<typeof record>[];
  provenance: Map<string, DsseEnvelope>;
  signingKey: string | null;
  requests: Array<{ url: string; auth?: string }>;
}

async function fakeServer(state: FakeState): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    state.requests.push({ url: req.url ?? '', ...(req.headers.authorization ? { auth: req.headers.authorization } : {}) });
    const u = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (u.pathname === '/api/builds') {
      const sha = u.searchParams.get('sha256');
      return json(200, { builds: state.builds.filter((b) => b.sha256 === sha), queue: { queued: 0, running: 0 } });
    }
    const m = /^\/api\/builds\/([0-9a-f]{64})\/provenance$/.exec(u.pathname);
    if (m) {
      const env = state.provenance.get(m[1]!);
      if (!env) return json(404, { error: { code: 'no_provenance', message: `build ${m[1]} has no provenance: it was built before this Fairway recorded provenance` } });
      return json(200, env, { 'x-fairway-provenance': env.signatures.length ? 'signed' : 'unsigned' });
    }
    if (u.pathname === '/api/signing-key') {
      if (!state.signingKey) return json(404, { error: { code: 'no_signing_key', message: 'this server has no signing key' } });
      res.writeHead(200, { 'content-type': 'application/x-pem-file' });
      return res.end(state.signingKey);
    }
    json(404, { error: { code: 'not_found', message: 'no route' } });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) };
}

async function verify(file: string, o: VerifyOptions, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string; lines: string[] }> {
  let out = '';
  let err = '';
  const code = await runVerify(file, o, { stdout: (s) => (out += s), stderr: (s) => (err += s), env });
  return { code, out, err, lines: out.split('\n').filter(Boolean) };
}

describe('fairway verify', () => {
  let dir: string;
  let bin: string;
  let sha: string;
  let keyFile: string;
  let otherKeyFile: string;
  let rsaKeyFile: string;
  let fp: string;
  let signer: ReturnType<typeof signerFromPem>;
  let state: FakeState;
  let server: { url: string; close(): Promise<void> };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-verify-'));
    bin = join(dir, 'caddy');
    const bytes = Buffer.concat([Buffer.from('\x7fELF a caddy binary '), createHash('sha512').update('caddy').digest()]);
    await writeFile(bin, bytes, { mode: 0o755 });
    sha = createHash('sha256').update(bytes).digest('hex');
    const pair = createKeyPair();
    signer = signerFromPem(pair.privatePem);
    fp = pair.fingerprint;
    keyFile = join(dir, 'fairway.pub');
    await writeFile(keyFile, pair.publicPem);
    otherKeyFile = join(dir, 'other.pub');
    await writeFile(otherKeyFile, createKeyPair().publicPem);
    rsaKeyFile = join(dir, 'rsa.pub');
    await writeFile(rsaKeyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }));
    state = { builds: [record(KEY, sha)], provenance: new Map([[KEY, provenanceOf(sha, signer)]]), signingKey: pair.publicPem, requests: [] };
    server = await fakeServer(state);
  });
  after(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  const reset = (s: Partial<FakeState>) => {
    Object.assign(state, { builds: [record(KEY, sha)], provenance: new Map([[KEY, provenanceOf(sha, signer)]]), requests: [] }, s);
  };

  test('passes with a pinned key: one line per check, in order, then what the provenance says; exit 0', async () => {
    reset({});
    const r = await verify(bin, { server: server.url, key: keyFile, token: 't0ken' });
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.err, '');
    assert.deepEqual(
      r.lines.map((l) => l.split(':')[0]),
      [
        'ok    file',
        'ok    provenance',
        'ok    key',
        'ok    envelope',
        'ok    signature',
        'ok    statement',
        'ok    predicate',
        'ok    subject',
        'ok    invocation',
        'info  builder',
        'info  build type',
        'info  built',
        'info  caddy',
        'info  plugins',
        `verified`,
      ],
    );
    assert.equal(r.lines[0], `ok    file: sha256 of ${bin} is ${sha} (${(await stat(bin)).size} bytes)`);
    assert.equal(r.lines[1], `ok    provenance: build ${KEY} on ${server.url}: fetched ${server.url}/api/builds/${KEY}/provenance (the server says: signed)`);
    assert.equal(r.lines[2], `ok    key: pinned with --key ${keyFile}: fingerprint ${fp}`);
    assert.equal(r.lines[4], `ok    signature: the DSSE signature verifies with key ${fp}`);
    assert.equal(r.lines[7], `ok    subject: the subject caddy_linux_amd64 has sha256 ${sha}, the file's`);
    assert.equal(r.lines[8], `ok    invocation: invocation id (build key) ${KEY} is the build found on the server`);
    assert.equal(r.lines[9], 'info  builder: urn:fairway:builder:serve@buildhost');
    assert.equal(r.lines[12], 'info  caddy: v2.11.9 (from resolvedDependencies)');
    assert.equal(r.lines[13], 'info  plugins: github.com/mholt/caddy-l4@v0.1.2 (from resolvedDependencies, 3 modules in all)');
    // The build was found by the file's sha256, with the token.
    assert.deepEqual(state.requests[0], { url: `/api/builds?sha256=${sha}&limit=500`, auth: 'Bearer t0ken' });
    assert.ok(!state.requests.some((q) => q.url === '/api/signing-key'), 'a pinned key is not fetched');
  });

  test('FAIRWAY_PUBLIC_KEY pins the key when --key is not given', async () => {
    reset({});
    const r = await verify(bin, { server: server.url }, { FAIRWAY_PUBLIC_KEY: keyFile });
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.lines[2], `ok    key: pinned by FAIRWAY_PUBLIC_KEY=${keyFile}: fingerprint ${fp}`);
    const wrong = await verify(bin, { server: server.url }, { FAIRWAY_PUBLIC_KEY: otherKeyFile });
    assert.equal(wrong.code, 1);
  });

  test("without a pinned key: the server's key, with a loud warning that it proves only the server signed", async () => {
    reset({});
    const r = await verify(bin, { server: server.url });
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.lines[2], `ok    key: fetched from ${server.url}/api/signing-key (not pinned): fingerprint ${fp}`);
    assert.match(
      r.lines[3]!,
      /^WARN {2}the key was fetched from http:\/\/127\.0\.0\.1:\d+, the same server that served the provenance, not pinned: this proves only that that server \(or whoever controls it\) signed the provenance/,
    );
    assert.match(r.err, /fairway verify: WARNING: the key was fetched from/);
  });

  test('fails: the wrong key (exit 1, FAIL signature)', async () => {
    reset({});
    const r = await verify(bin, { server: server.url, key: otherKeyFile });
    assert.equal(r.code, 1);
    assert.equal(r.lines.at(-1), "FAIL  signature: none of the envelope's 1 signature(s) verifies with this key");
    assert.match(r.err, /^fairway verify: NOT VERIFIED: signature: none of the envelope's 1 signature\(s\) verifies with this key\n$/);
    assert.ok(!r.out.includes('verified:'));
  });

  test('fails: a flipped byte in the file (no build of these bytes; with --provenance, the subject)', async () => {
    reset({});
    const flipped = join(dir, 'caddy-flipped');
    const bytes = await readFile(bin);
    bytes[5] = bytes[5]! ^ 0x01;
    await writeFile(flipped, bytes);
    const r = await verify(flipped, { server: server.url, key: keyFile });
    assert.equal(r.code, 1);
    assert.match(r.lines.at(-1)!, /^FAIL {2}provenance: no build on http:\/\/127\.0\.0\.1:\d+ has a binary with sha256 [0-9a-f]{64} \(GET \/api\/builds\?sha256=\)/);
    const envFile = join(dir, 'prov.json');
    await writeFile(envFile, JSON.stringify(provenanceOf(sha, signer)));
    const p = await verify(flipped, { provenance: envFile, key: keyFile });
    assert.equal(p.code, 1);
    assert.match(p.lines.at(-1)!, /^FAIL {2}subject: the provenance is about caddy_linux_amd64 \(sha256 [0-9a-f]{64}\), not a file with sha256 [0-9a-f]{64}$/);
    assert.ok(p.lines.includes(`ok    signature: the DSSE signature verifies with key ${fp}`), 'the signature itself was fine');
  });

  test('fails: a flipped byte in the provenance (--provenance FILE)', async () => {
    const env = provenanceOf(sha, signer);
    const payload = Buffer.from(env.payload, 'base64');
    payload[payload.indexOf('serve@buildhost')] = 'S'.charCodeAt(0);
    const envFile = join(dir, 'prov-flipped.json');
    await writeFile(envFile, JSON.stringify({ ...env, payload: payload.toString('base64') }));
    const r = await verify(bin, { provenance: envFile, key: keyFile });
    assert.equal(r.code, 1);
    assert.equal(r.lines.at(-1), "FAIL  signature: none of the envelope's 1 signature(s) verifies with this key");
    // The untouched one passes the same way.
    await writeFile(envFile, JSON.stringify(env));
    const ok = await verify(bin, { provenance: envFile, key: keyFile });
    assert.equal(ok.code, 0, ok.out);
    assert.equal(ok.lines[1], `ok    provenance: read from ${envFile} (--provenance)`);
    assert.ok(ok.lines.includes(`info  invocation: invocation id (build key) ${KEY}`));
  });

  test('fails: unsigned provenance', async () => {
    reset({ provenance: new Map([[KEY, provenanceOf(sha)]]) });
    const r = await verify(bin, { server: server.url, key: keyFile });
    assert.equal(r.code, 1);
    assert.match(r.lines[1]!, /\(the server says: unsigned\)$/);
    assert.equal(r.lines.at(-1), 'FAIL  signature: the envelope is not signed (the server that built it had no signing key)');
  });

  test('fails: no provenance (404 from the server)', async () => {
    reset({ provenance: new Map() });
    const r = await verify(bin, { server: server.url, key: keyFile });
    assert.equal(r.code, 1);
    assert.match(r.lines.at(-1)!, /^FAIL {2}server: no provenance for build [0-9a-f]{12}: build [0-9a-f]{64} has no provenance/);
  });

  test('fails: no pinned key and the server has none (404 /api/signing-key)', async () => {
    reset({ signingKey: null });
    const r = await verify(bin, { server: server.url });
    assert.equal(r.code, 1);
    assert.match(r.lines.at(-1)!, /^FAIL {2}key: http:\/\/127\.0\.0\.1:\d+ has no signing key \(GET \/api\/signing-key: 404\)/);
    state.signingKey = createKeyPair().publicPem;
  });

  test('fails: the provenance names another build than the one the server served it as', async () => {
    const otherKey = 'b'.repeat(64);
    reset({ provenance: new Map([[KEY, provenanceOf(sha, signer, otherKey)]]) });
    const r = await verify(bin, { server: server.url, key: keyFile });
    assert.equal(r.code, 1);
    assert.equal(r.lines.at(-1), `FAIL  invocation: the provenance names build ${otherKey}, but ${KEY} was served with it`);
  });

  test('usage errors exit 2: a key that is not P-256, no key at all with --provenance, a missing file', async () => {
    reset({});
    const rsa = await verify(bin, { server: server.url, key: rsaKeyFile });
    assert.equal(rsa.code, 2);
    assert.match(rsa.lines[0]!, /^FAIL {2}key: pinned with --key .*rsa\.pub: the key .*rsa\.pub is a rsa key; Fairway signs with ECDSA P-256/);
    assert.equal(state.requests.length, 0, 'nothing asked of the server');
    const nokey = await verify(bin, { provenance: join(dir, 'prov.json') });
    assert.equal(nokey.code, 2);
    assert.match(nokey.err, /no key to verify the signature with: pin one with --key FILE or FAIRWAY_PUBLIC_KEY/);
    const missing = await verify(join(dir, 'nope'), { server: server.url, key: keyFile });
    assert.equal(missing.code, 2);
    assert.match(missing.lines[0]!, /^FAIL {2}file: cannot read .*nope: ENOENT/);
  });

  test('--json: one report with every check', async () => {
    reset({});
    const r = await verify(bin, { server: server.url, key: keyFile, json: true });
    assert.equal(r.code, 0);
    const rep = JSON.parse(r.out) as { ok: boolean; sha256: string; build: string; keyFingerprint: string; checks: Array<{ check: string; ok: boolean }>; provenance: { caddy: { version: string } } };
    assert.equal(rep.ok, true);
    assert.equal(rep.sha256, sha);
    assert.equal(rep.build, KEY);
    assert.equal(rep.keyFingerprint, fp);
    assert.deepEqual(
      rep.checks.map((c) => `${c.check}:${c.ok}`),
      ['file', 'provenance', 'key', 'envelope', 'signature', 'statement', 'predicate', 'subject', 'invocation'].map((c) => `${c}:true`),
    );
    assert.equal(rep.provenance.caddy.version, 'v2.11.9');
    const bad = await verify(bin, { server: server.url, key: otherKeyFile, json: true });
    assert.equal(bad.code, 1);
    const badRep = JSON.parse(bad.out) as { ok: boolean; error: string; checks: Array<{ check: string; ok: boolean }> };
    assert.equal(badRep.ok, false);
    assert.deepEqual(badRep.checks.at(-1), { check: 'signature', ok: false, detail: "none of the envelope's 1 signature(s) verifies with this key" });
  });

  test('the command is registered and exits with the check result', async () => {
    reset({});
    const good = await cli(['verify', bin, '--server', server.url, '--key', keyFile]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /\nverified: /);
    const bad = await cli(['verify', bin, '--server', server.url], { FAIRWAY_PUBLIC_KEY: otherKeyFile });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /NOT VERIFIED: signature: none of the envelope's 1 signature\(s\) verifies with this key/);
  });
});

// ---- the API: GET /api/builds?sha256= -------------------------------------------------------------

describe('GET /api/builds?sha256= (the real API), and verify against it', () => {
  let t: TestApi;
  let dir: string;
  let bin: string;
  let sha: string;
  let keyFile: string;
  let base: string;
  const specB = { ...spec, arch: 'arm64' } as ResolvedSpec;

  before(async () => {
    t = await testApi();
    dir = await mkdtemp(join(tmpdir(), 'fw-api-sha-'));
    const pair = createKeyPair();
    const signer = signerFromPem(pair.privatePem);
    keyFile = join(dir, 'k.pub');
    await writeFile(keyFile, pair.publicPem);
    const at = '2026-12-01T10:01:00.000Z';
    for (const [s, text] of [
      [spec, 'binary one'],
      [specB, 'binary two'],
    ] as const) {
      const path = join(dir, `caddy-${s.arch}`);
      await writeFile(path, text);
      const sum = createHash('sha256').update(text).digest('hex');
      const key = cacheKey(s);
      await t.store.put({
        meta: {
          key,
          status: 'succeeded',
          request: { caddyVersion: s.caddyVersion, os: s.os, arch: s.arch, plugins: [] },
          spec: s,
          filename: 'caddy',
          sha256: sum,
          size: text.length,
          createdAt: at,
          finishedAt: at,
          provenance: 'signed',
        },
        binaryPath: path,
        log: '',
        provenance: provenanceOf(sum, signer, key),
      });
      if (s === spec) {
        bin = path;
        sha = sum;
      }
    }
    await t.service.rescan();
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('answers only the builds of that binary; refuses a malformed sha256 with 400', async () => {
    const all = await t.app.inject({ method: 'GET', url: '/api/builds' });
    assert.equal(all.json().builds.length, 2);
    const one = await t.app.inject({ method: 'GET', url: `/api/builds?sha256=${sha}` });
    assert.equal(one.statusCode, 200);
    assert.deepEqual(
      one.json().builds.map((b: { id: string; sha256: string }) => [b.id, b.sha256]),
      [[cacheKey(spec), sha]],
    );
    const none = await t.app.inject({ method: 'GET', url: `/api/builds?sha256=${'0'.repeat(64)}` });
    assert.deepEqual(none.json().builds, []);
    for (const bad of ['abc', sha.toUpperCase(), `${sha}0`, `${sha.slice(0, 63)}g`, '']) {
      const r = await t.app.inject({ method: 'GET', url: `/api/builds?sha256=${encodeURIComponent(bad)}` });
      assert.equal(r.statusCode, 400, bad);
      assert.match(r.json().error.message, /sha256/, bad);
    }
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.ok(doc.paths['/api/builds'].get.parameters.some((p: { name: string; in: string }) => p.name === 'sha256' && p.in === 'query'));
  });

  test('fairway verify finds the build by sha256 and checks it', async () => {
    const r = await verify(bin, { server: base, key: keyFile });
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.lines[1], `ok    provenance: build ${cacheKey(spec)} on ${base}: fetched ${base}/api/builds/${cacheKey(spec)}/provenance (the server says: signed)`);
    assert.ok(r.lines.includes(`ok    invocation: invocation id (build key) ${cacheKey(spec)} is the build found on the server`));
    // testApi's server has no signing key: without a pinned key, verify says so and fails.
    const nokey = await verify(bin, { server: base });
    assert.equal(nokey.code, 1);
    assert.match(nokey.lines.at(-1)!, /FAIL {2}key: .* has no signing key \(GET \/api\/signing-key: 404\)/);
  });
});

describe('fairway verify --rebuild', () => {
  let dir: string;
  let bin: string;
  let sha: string;
  let keyFile: string;
  let signer: ReturnType<typeof signerFromPem>;
  const RKEY = 'e'.repeat(64);

  /** A server whose rebuild ends with `rebuilt` (sha256 and agent), after one poll as running. */
  async function rebuildServer(rebuilt: { sha256: string; agent: string; status?: string }) {
    const original = { ...record(KEY, sha), agent: 'agent-a' };
    let polls = 0;
    const asked: string[] = [];
    const server = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      if (u.pathname === '/api/builds') return json(200, { builds: [original], queue: { queued: 0, running: 0 } });
      if (u.pathname === `/api/builds/${KEY}/provenance`) return json(200, provenanceOf(sha, signer), { 'x-fairway-provenance': 'signed' });
      if (req.method === 'POST' && u.pathname === `/api/builds/${KEY}/rebuild`) {
        asked.push(KEY);
        return json(202, { ...record(RKEY, ''), status: 'queued', phase: 'queued', sha256: undefined, rebuildOf: KEY });
      }
      if (u.pathname === `/api/builds/${RKEY}`) {
        polls++;
        if (polls < 2) return json(200, { ...record(RKEY, ''), status: 'running', phase: 'building', sha256: undefined, agent: rebuilt.agent, rebuildOf: KEY });
        return json(200, { ...record(RKEY, rebuilt.sha256), status: rebuilt.status ?? 'succeeded', agent: rebuilt.agent, rebuildOf: KEY, error: rebuilt.status ? 'xcaddy failed' : undefined });
      }
      json(404, { error: { code: 'not_found', message: 'no route' } });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return { url: `http://127.0.0.1:${port}`, asked, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fw-verify-rebuild-'));
    bin = join(dir, 'caddy');
    await writeFile(bin, 'a caddy binary, rebuilt');
    sha = createHash('sha256').update('a caddy binary, rebuilt').digest('hex');
    const pair = createKeyPair();
    signer = signerFromPem(pair.privatePem);
    keyFile = join(dir, 'k.pub');
    await writeFile(keyFile, pair.publicPem);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('same bytes from another agent: passes and says which agents', async () => {
    const s = await rebuildServer({ sha256: sha, agent: 'agent-b' });
    try {
      const r = await verify(bin, { server: s.url, key: keyFile, rebuild: true, pollMs: 10 });
      assert.equal(r.code, 0, r.out + r.err);
      assert.deepEqual(s.asked, [KEY]);
      assert.ok(r.lines.includes(`ok    rebuild: build ${RKEY} on agent-b (the original on agent-a) has the same sha256 ${sha}`), r.out);
      assert.ok(!r.out.includes('WARN'), r.out);
    } finally {
      await s.close();
    }
  });

  test('other bytes: fails with both digests; the same agent: passes with a warning; a failed rebuild fails', async () => {
    const other = await rebuildServer({ sha256: 'f'.repeat(64), agent: 'agent-b' });
    try {
      const r = await verify(bin, { server: other.url, key: keyFile, rebuild: true, pollMs: 10 });
      assert.equal(r.code, 1);
      assert.match(r.lines.find((l) => l.startsWith('FAIL'))!, new RegExp(`^FAIL {2}rebuild: the rebuild ${RKEY} on agent-b has sha256 f{64}, not the file's ${sha}`));
      assert.match(r.err, /NOT VERIFIED: rebuild:/);
    } finally {
      await other.close();
    }
    const same = await rebuildServer({ sha256: sha, agent: 'agent-a' });
    try {
      const r = await verify(bin, { server: same.url, key: keyFile, rebuild: true, pollMs: 10 });
      assert.equal(r.code, 0, r.out + r.err);
      assert.match(r.out, /WARN {2}the rebuild ran on the same agent as the original \(agent-a\)/);
    } finally {
      await same.close();
    }
    const failed = await rebuildServer({ sha256: '', agent: 'agent-b', status: 'failed' });
    try {
      const r = await verify(bin, { server: failed.url, key: keyFile, rebuild: true, pollMs: 10 });
      assert.equal(r.code, 1);
      assert.match(r.lines.find((l) => l.startsWith('FAIL'))!, /^FAIL {2}rebuild: the rebuild e{64} failed: xcaddy failed/);
    } finally {
      await failed.close();
    }
  });
});
