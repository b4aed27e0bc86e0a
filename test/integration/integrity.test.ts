/**
 * "Never serve a bad byte": a stored binary corrupted behind the server's back (16 bytes flipped,
 * or truncated), against the real `fairway serve` process with an fs store and with the S3 server
 * (versitygw). Builds use a stand-in xcaddy that copies a Go binary to --output (no real Caddy build).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { open, stat, truncate } from 'node:fs/promises';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, instantXcaddy, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startS3, type S3Service } from '../helpers/services.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let diag: (() => Promise<string>) | null = null;

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${diag ? await diag() : ''}`);
    await sleep(200);
  }
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Every byte of the announced Content-Length arrived and the message ended normally. */
  complete: boolean;
}

/** One GET that also reports an aborted transfer (fetch would only throw). */
function get(base: string, path: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.get(base + path, { headers }, (res) => {
      const chunks: Buffer[] = [];
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        const body = Buffer.concat(chunks);
        const len = res.headers['content-length'];
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: res.complete && (len === undefined || Number(len) === body.length) });
      };
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', finish);
      res.on('error', finish);
      res.on('aborted', finish);
      res.on('close', finish);
    });
    req.on('error', reject);
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The invariant: a response that claims a sha256 and completes has exactly those bytes; a bad binary is never a complete 2xx. */
function assertNotServedAsGood(r: Got, what: string): void {
  const claimed = r.headers['x-checksum-sha256'];
  if (r.complete && r.status >= 200 && r.status < 300 && r.body.length > 0) {
    assert.fail(`${what}: a corrupt binary was served as a complete ${r.status} (${r.body.length} bytes, claims ${claimed}, body ${sha(r.body)})`);
  }
  if (r.complete && claimed) assert.equal(sha(r.body), claimed, `${what}: body and checksum header differ`);
  if (r.complete && r.status >= 400) {
    assert.equal(r.headers['x-checksum-sha256'], undefined, `${what}: an error answer carries the checksum header`);
    assert.doesNotMatch(String(r.headers['cache-control'] ?? ''), /immutable/, `${what}: an error answer is marked immutable`);
  }
}

function assertServedGood(r: Got, what: string): void {
  assert.equal(r.status, 200, `${what}: ${r.body.toString().slice(0, 300)}`);
  assert.ok(r.complete, `${what}: transfer incomplete`);
  assert.equal(sha(r.body), r.headers['x-checksum-sha256'], `${what}: body and checksum header differ`);
}

async function metricValue(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${esc} ([0-9.e+-]+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function flip16(path: string): Promise<void> {
  const { size } = await stat(path);
  const fh = await open(path, 'r+');
  try {
    const at = Math.floor(size / 2);
    const buf = Buffer.alloc(16);
    await fh.read(buf, 0, 16, at);
    for (let i = 0; i < 16; i++) buf[i] = buf[i]! ^ 0xff;
    await fh.write(buf, 0, 16, at);
  } finally {
    await fh.close();
  }
}

const SPEC_A = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64' }; // flipped, native artifact route
const SPEC_B = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'arm64' }; // truncated, Range request
const SPEC_C = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'riscv64' }; // flipped, /api/download
const SPEC_D = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'ppc64le' }; // truncated, /api/download
const SPEC_E = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 's390x' }; // truncated to less than one chunk: an error before any byte

async function build(base: string, spec: object): Promise<any> {
  const r = await api(base, '/api/builds', { json: spec });
  assert.ok(r.status === 200 || r.status === 202, JSON.stringify(r.body));
  const done = await waitForBuild(base, r.body.id, 120_000);
  assert.equal(done.status, 'succeeded', done.error);
  return { ...done, cachedAtRequest: r.body.cached };
}

function compatPath(spec: { os: string; arch: string }): string {
  return `/api/download?os=${spec.os}&arch=${spec.arch}&version=${CADDY_VERSION}`;
}

function faultSuite(name: string, setup: () => Promise<{ server: FairwayProcess; binaryPath: (key: string) => string; stop(): Promise<void> }>, hotCheck: boolean): void {
  describe(`a corrupt stored binary is never served as good (${name} store)`, () => {
    let ctx: Awaited<ReturnType<typeof setup>>;
    let base: string;
    const built: Record<string, any> = {};
    before(async () => {
      ctx = await setup();
      base = ctx.server.url;
      diag = async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        return `${text
          .split('\n')
          .filter((l) => l.startsWith('fairway_artifact_corrupt'))
          .join(' | ')}\n${ctx.server
          .output()
          .split('\n')
          .filter((l) => /corrupt|quarantin|error/i.test(l))
          .slice(-8)
          .join('\n')}`;
      };
      for (const [k, spec] of Object.entries({ A: SPEC_A, B: SPEC_B, C: SPEC_C, D: SPEC_D, E: SPEC_E })) built[k] = await build(base, spec);
    });
    after(async () => ctx?.stop());

    test('flipped and truncated binaries: aborted or refused, counted, quarantined, rebuilt on the next request', { timeout: 300_000 }, async () => {
      const { A, B, C, D, E } = built;
      await flip16(ctx.binaryPath(A.id));
      await truncate(ctx.binaryPath(B.id), Math.floor(B.size / 2));
      await flip16(ctx.binaryPath(C.id));
      await truncate(ctx.binaryPath(D.id), Math.floor(D.size / 2));
      await truncate(ctx.binaryPath(E.id), 100);

      assertNotServedAsGood(await get(base, `/api/builds/${A.id}/artifact`), 'flipped, native');
      const ranged = await get(base, `/api/builds/${B.id}/artifact`, { range: 'bytes=0-99' });
      assertNotServedAsGood(ranged, 'truncated, range');
      assert.ok(ranged.status >= 500, `a range of a truncated binary is refused (got ${ranged.status})`);
      assert.equal(ranged.headers['x-checksum-sha256'], undefined);
      assertNotServedAsGood(await get(base, compatPath(SPEC_C)), 'flipped, /api/download');
      assertNotServedAsGood(await get(base, compatPath(SPEC_D)), 'truncated, /api/download');
      const tiny = await get(base, `/api/builds/${E.id}/artifact`);
      assertNotServedAsGood(tiny, 'truncated to 100 bytes, native');
      if (tiny.complete) assert.equal(tiny.status, 500, 'nothing was sent yet: a clean error answer');

      await until(
        `the corrupt metric (${name})`,
        async () =>
          // fs: 2 checksum + 3 truncated; s3: the SDK's own CRC check may see a truncation first (reason checksum).
          (await metricValue(base, 'fairway_artifact_corrupt_total{reason="checksum"}')) + (await metricValue(base, 'fairway_artifact_corrupt_total{reason="truncated"}')) >= 5 &&
          (name === 's3' || (await metricValue(base, 'fairway_artifact_corrupt_total{reason="truncated"}')) >= 3),
      );
      for (const [k, spec] of Object.entries({ A: SPEC_A, B: SPEC_B, C: SPEC_C, D: SPEC_D, E: SPEC_E })) {
        const r = await api(base, '/api/builds', { json: spec });
        assert.equal(r.status, 202, `${k}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.cached, false, `${k}: the next request is a new build`);
        const done = await waitForBuild(base, r.body.id, 120_000);
        assert.equal(done.status, 'succeeded', done.error);
        assertServedGood(await get(base, `/api/builds/${done.id}/artifact`), `${k} rebuilt, native`);
        assertServedGood(await get(base, compatPath(spec)), `${k} rebuilt, /api/download`);
      }
    });

    if (hotCheck) {
      test('good bytes in the hot tier do not hide a corrupt store copy for long', { timeout: 120_000 }, async () => {
        const { A } = built;
        const before = await metricValue(base, 'fairway_artifact_corrupt_total{reason="checksum"}');
        // Served twice: the second one fills nothing new, the hot tier holds it after the first.
        assertServedGood(await get(base, `/api/builds/${A.id}/artifact`), 'hot warm-up');
        await sleep(500);
        assertServedGood(await get(base, `/api/builds/${A.id}/artifact`), 'hot warm-up 2');
        await flip16(ctx.binaryPath(A.id));
        await until('the corrupt store copy is found', async () => {
          const r = await get(base, `/api/builds/${A.id}/artifact`);
          if (r.complete && r.status === 200) assert.equal(sha(r.body), r.headers['x-checksum-sha256'], 'hot bytes are good');
          return (await metricValue(base, 'fairway_artifact_corrupt_total{reason="checksum"}')) > before;
        });
        const r = await api(base, '/api/builds', { json: SPEC_A });
        assert.equal(r.body.cached, false, 'rebuilt after the hidden corruption was found');
        const done = await waitForBuild(base, r.body.id, 120_000);
        assert.equal(done.status, 'succeeded', done.error);
        assertServedGood(await get(base, `/api/builds/${done.id}/artifact`), 'rebuilt after hot');
      });
    }
  });
}

faultSuite(
  'fs',
  async () => {
    const dir = await tempDir();
    const bin = await instantXcaddy(dir);
    const dataDir = join(dir, 'data');
    const server = await startFairway({ dataDir, args: ['--xcaddy-bin', bin] });
    return { server, binaryPath: (key) => join(dataDir, 'artifacts', key, 'binary'), stop: async () => void (await server.stop('SIGKILL')) };
  },
  true,
);

faultSuite(
  's3',
  async () => {
    const s3: S3Service = await startS3();
    const dir = await tempDir();
    const bin = await instantXcaddy(dir);
    const storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    const env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region };
    const server = await startFairway({ dataDir: join(dir, 'data'), args: ['--xcaddy-bin', bin, '--store', storeUrl], env });
    return {
      server,
      binaryPath: (key) => join(s3.dataDir, s3.bucket, 'fw', 'artifacts', key, 'binary'),
      stop: async () => {
        await server.stop('SIGKILL');
        await s3.destroy();
      },
    };
  },
  false,
);
