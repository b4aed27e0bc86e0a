/**
 * "Never lose a build", end to end against real `fairway serve` processes (test/helpers/fairway.ts):
 *  - kill -9 in the middle of a build, with a second build queued (--workers 1): after a restart on
 *    the same data dir both are re-queued (the log says so), finish by themselves, download and
 *    verify; a request for the same spec after the restart joins the re-queued build;
 *  - graceful shutdown (SIGTERM): clients blocked on GET and HEAD /api/download get a 503 with
 *    Retry-After in the compatible envelope; the running build stays queued and finishes after
 *    the next start.
 * No real Caddy build: a stand-in xcaddy sleeps, then copies a Go binary (xcaddy itself) to
 * --output. Targets are not the host's, so the server never runs the binary.
 *   node scripts/setup.mjs && FAIRWAY_TEST_CACHE=/work/main/.cache/go node --import tsx --test test/integration/restart.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { arch } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { api, CADDY_VERSION, recordPath, standInDir, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const TIMEOUT = 3 * 60_000;
/** Two targets that are not this machine's (the server runs a built binary only for its own). */
const [T1, T2] = arch() === 'arm64' ? (['amd64', 'riscv64'] as const) : (['arm64', 'riscv64'] as const);
const SPEC_A = { caddyVersion: CADDY_VERSION, os: 'linux', arch: T1 };
const SPEC_B = { caddyVersion: CADDY_VERSION, os: 'linux', arch: T2 };

const servers: FairwayProcess[] = [];
const dirs: string[] = [];
after(async () => {
  for (const s of servers) await s.stop('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A stand-in xcaddy that records each build's start, sleeps `seconds`, then writes a real Go binary to --output. */
async function slowXcaddy(dir: string, seconds: number): Promise<{ bin: string; real: string; starts(): Promise<number> }> {
  const sub = join(dir, 'slow');
  await mkdir(sub, { recursive: true });
  const real = await standInDir(sub);
  const rec = recordPath(`restart-starts-${randomBytes(6).toString('hex')}.log`);
  const bin = join(sub, 'xcaddy-slow');
  await writeFile(
    bin,
    `#!/bin/sh\nif [ "$1" = "build" ]; then\n  echo "$$ $*" >> ${rec.inside}\n  sleep ${seconds}\n  while [ "$#" -gt 0 ]; do if [ "$1" = "--output" ]; then cp '${real}' "$2"; exit 0; fi; shift; done\n  exit 1\nfi\nexec '${real}' "$@"\n`,
  );
  await chmod(bin, 0o755);
  return { bin, real, starts: async () => (await readFile(rec.outside, 'utf8').catch(() => '')).split('\n').filter(Boolean).length };
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sha256 = (b: Buffer | Uint8Array) => createHash('sha256').update(b).digest('hex');

async function logText(base: string, id: string): Promise<string> {
  const res = await fetch(`${base}/api/builds/${id}/log`);
  assert.equal(res.status, 200);
  return res.text();
}

/** Follows the log over SSE until its end event; resolves with the end's data. */
async function followToEnd(base: string, id: string): Promise<{ state: string; text: string }> {
  const res = await fetch(`${base}/api/builds/${id}/log`, { headers: { accept: 'text/event-stream' } });
  assert.equal(res.status, 200);
  let text = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    text += dec.decode(chunk, { stream: true });
    const m = /event: end\ndata: (.*)\n/.exec(text);
    if (m) return { state: JSON.parse(m[1]!).status, text };
  }
  throw new Error(`the log stream ended without an end event:\n${text}`);
}

async function verifiedDownload(base: string, build: any, realSha: string): Promise<void> {
  const res = await fetch(`${base}/api/builds/${build.id}/artifact`);
  assert.equal(res.status, 200);
  const body = Buffer.from(await res.arrayBuffer());
  assert.equal(body.length, build.size);
  assert.equal(sha256(body), build.sha256, 'downloaded bytes match the record');
  assert.equal(build.sha256, realSha, 'the stand-in output (a copy of a Go binary) is what was stored');
}

describe('restarts and crashes (fairway serve)', () => {
  test('kill -9 mid-build: the running and the queued build are re-queued at start and finish by themselves', { timeout: TIMEOUT }, async () => {
    const dir = await tempDir('fairway-restart-');
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    const x = await slowXcaddy(dir, 4);
    const realSha = sha256(await readFile(x.real));
    const args = ['--workers', '1', '--xcaddy-bin', x.bin];
    const s1 = await startFairway({ dataDir, args });
    servers.push(s1);
    const a = await api(s1.url, '/api/builds', { json: SPEC_A });
    assert.equal(a.status, 202, JSON.stringify(a.body));
    const b = await api(s1.url, '/api/builds', { json: SPEC_B });
    assert.equal(b.status, 202, JSON.stringify(b.body));
    assert.notEqual(a.body.id, b.body.id);
    assert.equal(b.body.status, 'queued');
    await until('the first build to be in xcaddy', async () => (await x.starts()) === 1);
    assert.equal((await api(s1.url, `/api/builds/${a.body.id}`)).body.status, 'running');
    assert.equal(await s1.stop('SIGKILL'), null, 'killed');
    // Both are on disk in the journal.
    assert.deepEqual((await readdir(join(dataDir, 'queue'))).sort(), [`${a.body.id}.json`, `${b.body.id}.json`].sort());

    const s2 = await startFairway({ dataDir, args });
    servers.push(s2);
    assert.match(s2.output(), /re-queued 2 build\(s\) that were queued or running when the process stopped/);
    // Pollers see the re-queued builds (not a 404), then their end.
    const ra = await api(s2.url, `/api/builds/${a.body.id}`);
    assert.equal(ra.status, 200, JSON.stringify(ra.body));
    assert.ok(['queued', 'running'].includes(ra.body.status), ra.body.status);
    const rb = await api(s2.url, `/api/builds/${b.body.id}`);
    assert.equal(rb.status, 200, JSON.stringify(rb.body));
    assert.ok(['queued', 'running'].includes(rb.body.status), rb.body.status);
    // The same spec after the restart joins the re-queued build.
    const again = await api(s2.url, '/api/builds', { json: SPEC_B });
    assert.equal(again.status, 202, JSON.stringify(again.body));
    assert.equal(again.body.id, b.body.id);
    assert.ok(['queued', 'running'].includes(again.body.status));
    // A log follower sees the second build to its end.
    const followed = followToEnd(s2.url, b.body.id);
    const doneA = await waitForBuild(s2.url, a.body.id, 60_000);
    assert.equal(doneA.status, 'succeeded', doneA.error);
    const end = await followed;
    assert.equal(end.state, 'succeeded');
    assert.match(end.text, /re-queued after the server restarted \(it was queued when the process stopped\)/);
    const doneB = await waitForBuild(s2.url, b.body.id, 60_000);
    assert.equal(doneB.status, 'succeeded', doneB.error);
    // The first build's log starts with the re-queued line.
    const logA = (await logText(s2.url, a.body.id)).split('\n');
    assert.match(logA[0]!, /system fairway: re-queued after the server restarted \(it was running when the process stopped\)$/);
    await verifiedDownload(s2.url, doneA, realSha);
    await verifiedDownload(s2.url, doneB, realSha);
    // One build of A before the crash, one of each after: the joined request did not add one.
    assert.equal(await x.starts(), 3);
    await until('the journal to be empty', async () => (await readdir(join(dataDir, 'queue'))).length === 0, 5000);
    assert.equal(await s2.stop('SIGTERM'), 0);
  });

  test('SIGTERM: clients blocked on /api/download get 503 with Retry-After; the build resumes after the next start', { timeout: TIMEOUT }, async () => {
    const dir = await tempDir('fairway-restart-');
    dirs.push(dir);
    const dataDir = join(dir, 'data');
    const x = await slowXcaddy(dir, 6);
    const realSha = sha256(await readFile(x.real));
    const args = ['--workers', '1', '--xcaddy-bin', x.bin];
    const s1 = await startFairway({ dataDir, args });
    servers.push(s1);
    const query = `/api/download?os=linux&arch=${T1}&version=${CADDY_VERSION}`;
    const get = fetch(s1.url + query);
    const head = fetch(s1.url + query, { method: 'HEAD' });
    await until('the build to be in xcaddy', async () => (await x.starts()) === 1);
    const id0 = (await api(s1.url, '/api/builds', { json: SPEC_A })).body.id as string;
    const followed = followToEnd(s1.url, id0);
    await new Promise((r) => setTimeout(r, 300)); // all three requests are waiting by now
    const t0 = Date.now();
    const exited = s1.stop('SIGTERM');
    const res = await get;
    assert.equal(res.status, 503);
    assert.match(res.headers.get('retry-after') ?? '', /^\d+$/);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const body = await res.json();
    assert.equal(body.status_code, 503);
    assert.match(body.error.message, /shutting down.*re-queued when the server starts again/);
    assert.equal(typeof body.error.id, 'string');
    const h = await head;
    assert.equal(h.status, 503);
    assert.match(h.headers.get('retry-after') ?? '', /^\d+$/);
    // A log follower gets the end of the stream (the build stops now, and is kept).
    const end = await followed;
    assert.equal(end.state, 'canceled');
    assert.match(end.text, /stopping the build; it is re-queued when the server starts again/);
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 4000, `the server stopped without waiting for the build (${Date.now() - t0} ms)`);
    assert.match(s1.output(), /stay in the queue journal and are re-queued when the server starts again/);
    assert.equal((await readdir(join(dataDir, 'queue'))).length, 1, 'the stopped build stays in the journal');

    const s2 = await startFairway({ dataDir, args });
    servers.push(s2);
    // The download asked for again joins the re-queued build and gets the binary.
    const again = await fetch(s2.url + query);
    assert.equal(again.status, 200);
    const bin = Buffer.from(await again.arrayBuffer());
    assert.equal(sha256(bin), realSha);
    assert.equal(again.headers.get('x-checksum-sha256'), realSha);
    const id = again.headers.get('x-fairway-build')!;
    const log = (await logText(s2.url, id)).split('\n');
    assert.match(log[0]!, /fairway: re-queued after the server restarted \(it was running when the process stopped\)$/);
    assert.equal(await x.starts(), 2, 'one build before the shutdown, one after');
    assert.equal(await s2.stop('SIGTERM'), 0);
  });
});
