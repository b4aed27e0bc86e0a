/**
 * XcaddyRunner's process handling with a stand-in xcaddy (a shell script): timeout and cancel
 * kill the whole process group, output lines are streamed, failures carry the tail of the log.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { BuildFailed, XcaddyRunner } from '../../src/build/index.js';
import type { ResolvedSpec } from '../../src/spec/index.js';
import { Toolchain } from '../../src/toolchain/index.js';

const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'xcaddy-default' },
};

let dir: string;
let marker: string;

async function fakeXcaddy(body: string): Promise<Toolchain> {
  const bin = join(dir, `xcaddy-${Math.random().toString(36).slice(2)}`);
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "version" ]; then echo "v0.4.5 h1:fake"; exit 0; fi\n${body}\n`);
  await chmod(bin, 0o755);
  return Toolchain.detect({ xcaddyBin: bin, cacheDir: join(dir, 'cache') });
}

const running = () => {
  try {
    return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-runner-'));
  marker = `fairway-runner-marker-${process.pid}`;
});

test('a build over its timeout fails with reason "timeout" and its whole process group is killed', async () => {
  // The stand-in starts a grandchild (like go build's compiler processes) and waits.
  const tc = await fakeXcaddy(`echo starting; sh -c 'exec sleep 300 # ${marker}' & sleep 300 # ${marker}\nwait`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 1500, killGraceMs: 500 });
  const lines: string[] = [];
  const t0 = Date.now();
  await assert.rejects(
    runner.run(spec, { onLine: (_s, text) => lines.push(text) }),
    (err: unknown) => err instanceof BuildFailed && err.reason === 'timeout' && /timeout of 2s|timeout of 1s/.test(err.message),
  );
  assert.ok(Date.now() - t0 < 10_000);
  assert.ok(lines.includes('starting'), 'output was streamed');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(running(), 0, 'no process of the build group survives');
});

test('cancel through the AbortSignal stops the build with reason "canceled"', async () => {
  const tc = await fakeXcaddy(`echo working; sleep 300 # ${marker}`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000, killGraceMs: 500 });
  const ac = new AbortController();
  const p = runner.run(spec, { onLine: (_s, text) => text === 'working' && ac.abort(), signal: ac.signal });
  await assert.rejects(p, (err: unknown) => err instanceof BuildFailed && err.reason === 'canceled');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(running(), 0);
});

test('a failing xcaddy gives reason "failed" with the last output lines in the message', async () => {
  const tc = await fakeXcaddy(`echo "go: module example.com/x@v9: not found" >&2; exit 1`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000 });
  const streams: string[] = [];
  await assert.rejects(
    runner.run(spec, { onLine: (s) => streams.push(s) }),
    (err: unknown) => err instanceof BuildFailed && err.reason === 'failed' && /code 1: .*not found/.test(err.message),
  );
  assert.ok(streams.includes('stderr'));
});

test('xcaddy exiting 0 without a binary is a failure, not a success', async () => {
  const tc = await fakeXcaddy('exit 0');
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000 });
  await assert.rejects(runner.run(spec, { onLine: () => undefined }), /produced no binary/);
});

// The runner hashes the binary as soon as xcaddy logs "Build complete" (while xcaddy still cleans
// up and runs `caddy version`); what it reports must still be the file as xcaddy left it.
const sha256Of = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const goBinary = () => join(execFileSync('go', ['env', 'GOROOT'], { encoding: 'utf8' }).trim(), 'bin', 'gofmt');

test('the sha256 and build info of a binary left unchanged after "Build complete" are the final file\'s', async () => {
  const tc = await fakeXcaddy(`cp "${goBinary()}" "$4"; echo "2026/11/28 21:08:14 [INFO] Build complete: $4" >&2; sleep 0.3; echo v2.11.9`);
  const out = await new XcaddyRunner(tc, { timeoutMs: 60_000 }).run(spec, { onLine: () => undefined });
  try {
    assert.equal(out.sha256, sha256Of(goBinary()));
    assert.equal(out.size, statSync(goBinary()).size);
    assert.match(out.goVersion, /^go1\./);
  } finally {
    await out.cleanup();
  }
});

test('a binary changed after "Build complete" is hashed again: the reported sha256 is the final file\'s', async () => {
  const tc = await fakeXcaddy(`cp "${goBinary()}" "$4"; echo "[INFO] Build complete: $4" >&2; sleep 0.3; printf 'changed' >> "$4"; sleep 0.2`);
  const out = await new XcaddyRunner(tc, { timeoutMs: 60_000 }).run(spec, { onLine: () => undefined });
  try {
    assert.equal(out.sha256, sha256Of(out.binaryPath));
    assert.notEqual(out.sha256, sha256Of(goBinary()));
    assert.equal(out.size, statSync(goBinary()).size + 'changed'.length);
  } finally {
    await out.cleanup();
  }
});
