// The provenance check of the download commands: with a public key for the client (--public-key,
// else FAIRWAY_PUBLIC_KEY), `fairway build`, `upgrade` and `add-package` keep a downloaded binary
// only when its build's provenance is signed by that key and names the binary's sha256; without
// one they behave as before and say that provenance was not checked. Against a fake server
// (node:http) with real keys and real files; `fairway build` runs as its own process.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { runPackageCommand } from '../../src/cli/packages.js';
import { binaryProvenance, createKeyPair, type DsseEnvelope } from '../../src/provenance/index.js';
import { signerFromPem } from '../../src/provenance/keys.js';
import { BUILD_FLAGS, cacheKey, type ResolvedSpec } from '../../src/request/index.js';

const execFileP = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');

const spec: ResolvedSpec = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: BUILD_FLAGS } } as ResolvedSpec;
const KEY = cacheKey(spec);

function provenanceOf(sha256: string, signer?: ReturnType<typeof signerFromPem>): DsseEnvelope {
  return binaryProvenance(
    { key: KEY, request: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [] }, spec, builder: 'serve@test', fairwayVersion: '0.1.0', filename: 'caddy_linux_amd64', sha256 },
    signer,
  );
}

interface Served {
  /** The binary the server sends. */
  body: Buffer;
  /** The provenance it serves for the build (null: 404). */
  provenance: DsseEnvelope | null;
  /** Send X-Fairway-Build with /api/download. */
  buildHeader: boolean;
  requests: string[];
}

async function fakeServer(s: Served): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    s.requests.push(`${req.method} ${url.split('?')[0]}`);
    const sha = createHash('sha256').update(s.body).digest('hex');
    const binary = (extra: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(s.body.length), 'x-checksum-sha256': sha, ...extra });
      res.end(s.body);
    };
    if (req.method === 'POST' && url === '/api/builds') {
      req.resume();
      const at = '2026-12-01T10:00:00.000Z';
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(
        JSON.stringify({
          id: KEY,
          key: KEY,
          status: 'succeeded',
          phase: 'done',
          cached: true,
          request: {},
          spec,
          filename: 'caddy_linux_amd64',
          sha256: sha,
          size: s.body.length,
          createdAt: at,
          finishedAt: at,
          provenance: 'signed',
          links: { self: `/api/builds/${KEY}`, log: `/api/builds/${KEY}/log`, artifact: `/api/builds/${KEY}/artifact`, buildinfo: '', provenance: `/api/builds/${KEY}/provenance` },
        }),
      );
    }
    if (url === `/api/builds/${KEY}/artifact`) return binary({ 'x-fairway-build': KEY });
    if (url.startsWith('/api/download?')) return binary(s.buildHeader ? { 'x-fairway-build': KEY } : {});
    if (url === `/api/builds/${KEY}/provenance`) {
      if (!s.provenance) {
        res.writeHead(404, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: { code: 'no_provenance', message: `build ${KEY} has no provenance` } }));
      }
      res.writeHead(200, { 'content-type': 'application/json', 'x-fairway-provenance': s.provenance.signatures.length ? 'signed' : 'unsigned' });
      return res.end(JSON.stringify(s.provenance));
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: url } }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, close: () => new Promise((r) => server.close(() => r())) };
}

let dir: string;
let keyFile: string;
let otherKeyFile: string;
let rsaKeyFile: string;
let signer: ReturnType<typeof signerFromPem>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fw-dlprov-'));
  const pair = createKeyPair();
  signer = signerFromPem(pair.privatePem);
  keyFile = join(dir, 'fairway.pub');
  await writeFile(keyFile, pair.publicPem);
  otherKeyFile = join(dir, 'other.pub');
  await writeFile(otherKeyFile, createKeyPair().publicPem);
  rsaKeyFile = join(dir, 'rsa.pub');
  await writeFile(rsaKeyFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('fairway build -o with a public key', () => {
  const body = Buffer.from('a new caddy binary');
  const sha = createHash('sha256').update(body).digest('hex');
  const served: Served = { body, provenance: null, buildHeader: true, requests: [] };
  let server: { url: string; close(): Promise<void> };
  before(async () => {
    server = await fakeServer(served);
  });
  after(() => server.close());

  async function build(out: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
    try {
      const r = await execFileP(
        process.execPath,
        ['--import', import.meta.resolve('tsx'), join(ROOT, 'src/main/index.ts'), 'build', '--server', server.url, '--os', 'linux', '--arch', 'amd64', '-o', out, ...args],
        {
          env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
          timeout: 60_000,
        },
      );
      return { code: 0, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      return { code: e.code, stderr: e.stderr ?? '' };
    }
  }

  test('signed by the pinned key (FAIRWAY_PUBLIC_KEY): written, and says so', async () => {
    served.provenance = provenanceOf(sha, signer);
    served.requests = [];
    const out = join(dir, 'build-ok', 'caddy');
    await rm(join(dir, 'build-ok'), { recursive: true, force: true });
    await mkdir(join(dir, 'build-ok'));
    const r = await build(out, [], { FAIRWAY_PUBLIC_KEY: keyFile });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(out), body);
    assert.match(r.stderr, /fairway: provenance verified: caddy_linux_amd64 sha256 [0-9a-f]{16}…, signed by key [0-9a-f]{16} \(FAIRWAY_PUBLIC_KEY\)/);
    assert.match(r.stderr, /sha256 verified, provenance verified\)/);
    assert.ok(served.requests.includes(`GET /api/builds/${KEY}/provenance`));
  });

  test('another key (--public-key) or an unsigned provenance: not written, exit 1, says why', async () => {
    const d = join(dir, 'build-bad');
    await mkdir(d);
    served.provenance = provenanceOf(sha, signer);
    const wrong = await build(join(d, 'caddy'), ['--public-key', otherKeyFile], {});
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /fairway: provenance check failed: none of the envelope's 1 signature\(s\) verifies with this key \(key [0-9a-f]{16} from --public-key\); not writing .*build-bad\/caddy/,
    );
    served.provenance = provenanceOf(sha);
    const unsigned = await build(join(d, 'caddy'), [], { FAIRWAY_PUBLIC_KEY: keyFile });
    assert.equal(unsigned.code, 1);
    assert.match(unsigned.stderr, /provenance check failed: the envelope is not signed/);
    assert.deepEqual(await readdir(d), [], 'no binary and no temp file');
  });

  test('without a key: written as before, with one line saying provenance was not checked', async () => {
    served.provenance = null;
    const d = join(dir, 'build-nokey');
    await mkdir(d);
    served.requests = [];
    const r = await build(join(d, 'caddy'), [], {});
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(join(d, 'caddy')), body);
    assert.match(r.stderr, /fairway: provenance not checked \(no public key: set FAIRWAY_PUBLIC_KEY or --public-key/);
    assert.ok(!served.requests.some((q) => q.includes('/provenance')), 'no provenance request without a key');
  });
});

describe('fairway upgrade / add-package with a public key', () => {
  // The binary the server sends is a runnable stand-in for caddy that notes each run, so a test
  // sees whether it ran before its provenance was checked.
  const newScript = (ranLog: string) => `#!/bin/sh\necho "$1" >> ${ranLog}\ncase "$1" in\n  version) echo v2.11.10;;\n  *) ;;\nesac\n`;
  const oldScript = '#!/bin/sh\ncase "$1" in\n  version) echo v2.11.9;;\n  build-info) printf "build\\tGOOS=linux\\nbuild\\tGOARCH=amd64\\n";;\n  *) ;;\nesac\n';

  async function setup(name: string) {
    const d = join(dir, name);
    await mkdir(d);
    const caddy = join(d, 'caddy');
    await writeFile(caddy, oldScript);
    await chmod(caddy, 0o755);
    const ranLog = join(dir, `${name}.ran`);
    const body = Buffer.from(newScript(ranLog));
    const sha = createHash('sha256').update(body).digest('hex');
    const served: Served = { body, provenance: provenanceOf(sha, signer), buildHeader: true, requests: [] };
    const server = await fakeServer(served);
    let log = '';
    const run = (cmd: 'upgrade' | 'add-package', o: { publicKey?: string; env?: NodeJS.ProcessEnv }) =>
      runPackageCommand(cmd, cmd === 'upgrade' ? [] : ['github.com/example/plugin'], {
        server: server.url,
        caddy,
        stdout: () => undefined,
        stderr: (s) => (log += s),
        env: o.env ?? {},
        ...(o.publicKey ? { publicKey: o.publicKey } : {}),
      });
    const ran = () => readFile(ranLog, 'utf8').catch(() => '');
    const untouched = async () => {
      assert.equal(await readFile(caddy, 'utf8'), oldScript, 'the target is untouched');
      assert.deepEqual(await readdir(d), ['caddy'], 'no temp or backup file is left');
      assert.equal(await ran(), '', 'the downloaded binary never ran');
    };
    return { d, caddy, sha, served, server, run, ran, untouched, log: () => log, body };
  }

  for (const cmd of ['upgrade', 'add-package'] as const) {
    test(`${cmd}: signed by the pinned key: installed, after the check`, async () => {
      const s = await setup(`${cmd}-ok`);
      try {
        const r = await s.run(cmd, { publicKey: keyFile });
        assert.equal(r.replaced, true);
        assert.deepEqual(await readFile(s.caddy), s.body);
        assert.match(s.log(), new RegExp(`fairway: provenance verified: caddy_linux_amd64 sha256 ${s.sha.slice(0, 16)}…, build ${KEY.slice(0, 12)}, signed by key [0-9a-f]{16} \\(--public-key\\)`));
        const order = s.log().indexOf('provenance verified');
        assert.ok(order >= 0 && order < s.log().indexOf('backed up the current executable'));
        assert.ok(s.served.requests.includes(`GET /api/builds/${KEY}/provenance`));
      } finally {
        await s.server.close();
      }
    });

    test(`${cmd}: another key (FAIRWAY_PUBLIC_KEY): not installed, never run, says why`, async () => {
      const s = await setup(`${cmd}-wrong`);
      try {
        await assert.rejects(
          s.run(cmd, { env: { FAIRWAY_PUBLIC_KEY: otherKeyFile } }),
          /provenance check failed: none of the envelope's 1 signature\(s\) verifies with this key \(key [0-9a-f]{16} from FAIRWAY_PUBLIC_KEY\); not installing it/,
        );
        await s.untouched();
      } finally {
        await s.server.close();
      }
    });
  }

  test('upgrade: unsigned provenance, a provenance about other bytes, no provenance, no build header: each refused', async () => {
    const s = await setup('upgrade-refusals');
    try {
      s.served.provenance = provenanceOf(s.sha);
      await assert.rejects(s.run('upgrade', { publicKey: keyFile }), /provenance check failed: the envelope is not signed/);
      await s.untouched();
      s.served.provenance = provenanceOf('e'.repeat(64), signer);
      await assert.rejects(s.run('upgrade', { publicKey: keyFile }), /provenance check failed: the provenance is about caddy_linux_amd64 \(sha256 e{64}\), not a file with sha256 [0-9a-f]{64}/);
      await s.untouched();
      s.served.provenance = null;
      await assert.rejects(s.run('upgrade', { publicKey: keyFile }), /provenance check failed: GET \/api\/builds\/[0-9a-f]{64}\/provenance: HTTP 404: build [0-9a-f]{64} has no provenance/);
      await s.untouched();
      s.served.provenance = provenanceOf(s.sha, signer);
      s.served.buildHeader = false;
      await assert.rejects(s.run('upgrade', { publicKey: keyFile }), /provenance check failed: the server named no build for the download \(no X-Fairway-Build header\)/);
      await s.untouched();
    } finally {
      await s.server.close();
    }
  });

  test('upgrade: a key that is not P-256 is a usage error (exit 2) before anything is asked', async () => {
    const s = await setup('upgrade-rsa');
    try {
      await assert.rejects(s.run('upgrade', { publicKey: rsaKeyFile }), (e: Error & { exitCode?: number }) => e.exitCode === 2 && /--public-key: the key .*rsa\.pub is a rsa key/.test(e.message));
      assert.deepEqual(s.served.requests, []);
      await s.untouched();
    } finally {
      await s.server.close();
    }
  });

  test('upgrade without a key: installed as before, one line saying provenance was not checked', async () => {
    const s = await setup('upgrade-nokey');
    try {
      s.served.provenance = null;
      const r = await s.run('upgrade', {});
      assert.equal(r.replaced, true);
      assert.deepEqual(await readFile(s.caddy), s.body);
      assert.match(s.log(), /fairway: provenance not checked \(no public key/);
      assert.ok(!s.served.requests.some((q) => q.includes('/provenance')));
    } finally {
      await s.server.close();
    }
  });
});
