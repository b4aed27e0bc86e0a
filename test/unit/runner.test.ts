/**
 * XcaddyRunner's process handling with a stand-in xcaddy (a shell script) in the real build
 * sandbox: timeout and cancel kill everything the build started, output lines are streamed,
 * failures carry the tail of the log, and the built binary is run (sandboxed) for its version.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BuildFailed, XcaddyRunner } from '../../src/build/index.js';
import { openSandbox, type Sandbox } from '../../src/sandbox/index.js';
import type { ResolvedSpec } from '../../src/spec/index.js';
import { Toolchain } from '../../src/toolchain/index.js';
import { XCADDY } from '../helpers/fairway.js';

const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'xcaddy-default' },
};

let dir: string;
let sandbox: Sandbox;
/** A sleep duration no other process on the machine has in its argv: `sleep 300.<pid><n>`. */
let marker: string;

async function fakeXcaddy(body: string): Promise<Toolchain> {
  const bin = join(dir, `xcaddy-${Math.random().toString(36).slice(2)}`);
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "version" ]; then echo "v0.4.5 h1:fake"; exit 0; fi\n${body}\n`);
  await chmod(bin, 0o755);
  return Toolchain.detect({ xcaddyBin: bin, cacheDir: join(dir, 'cache'), sandbox });
}

/** Processes on this machine (any namespace: the host /proc sees them all) whose argv holds the marker. */
const running = () => {
  let n = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(marker)) n++;
    } catch {
      /* exited meanwhile */
    }
  }
  return n;
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-runner-'));
  marker = `300.${process.pid}1`;
  sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
  await mkdir(join(dir, 'cache', 'gopath'), { recursive: true });
  await copyFile(XCADDY, goBinary());
});
after(() => sandbox.close());

test('the marker count sees a running marker process (the survivor checks below can fail)', async () => {
  const { spawn } = await import('node:child_process');
  const p = spawn('sleep', [marker], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 200));
  try {
    assert.equal(running(), 1);
  } finally {
    p.kill('SIGKILL');
  }
});

test('a build over its timeout fails with reason "timeout" and its whole process group is killed', { timeout: 30_000 }, async () => {
  // The stand-in starts a grandchild (like go build's compiler processes) and waits.
  const tc = await fakeXcaddy(`echo starting; sh -c 'exec sleep ${marker}' & sleep ${marker}\nwait`);
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
  assert.equal(running(), 0, 'no process of the build survives');
});

test('cancel through the AbortSignal stops the build with reason "canceled"', { timeout: 30_000 }, async () => {
  const tc = await fakeXcaddy(`echo working; sleep ${marker}`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000, killGraceMs: 500 });
  const ac = new AbortController();
  const p = runner.run(spec, { onLine: (_s, text) => text === 'working' && setTimeout(() => ac.abort(), 200), signal: ac.signal });
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
// up); what it reports must still be the file as xcaddy left it. The "built binary" is a copy of
// xcaddy: a Go binary with build info that answers `version` (as Caddy does, run in the sandbox).
// The stand-in sees only the sandbox, so the copy waits in GOPATH (one of the dirs a build sees).
const sha256Of = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const goBinary = () => join(dir, 'cache', 'gopath', 'fake-caddy');

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

test('the built binary runs only inside the sandbox: its version is logged, a failed list-modules is not fatal', async () => {
  const tc = await fakeXcaddy(`cp "${goBinary()}" "$4"`);
  const lines: Array<[string, string]> = [];
  const out = await new XcaddyRunner(tc, { timeoutMs: 60_000 }).run({ ...spec, plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }] }, { onLine: (s, t) => lines.push([s, t]) });
  try {
    const at = lines.findIndex(([, t]) => /caddy_linux_amd64 version \(sandboxed: no network, read-only binary\)/.test(t));
    assert.ok(at >= 0, lines.map((l) => l.join(' ')).join('\n'));
    assert.match(lines[at + 1]![1], /^v0\.4\.\d+ h1:/, 'the binary\'s own version output follows');
    assert.ok(lines.some(([, t]) => /could not list the binary's modules/.test(t)), 'xcaddy has no list-modules: logged, not fatal');
    assert.equal(out.listModules, undefined);
  } finally {
    await out.cleanup();
  }
});

test('a built binary that does not run fails the build', async () => {
  // gofmt has Go build info but takes "version" for a file name and exits 2.
  const tc = await fakeXcaddy(`cp "$(dirname "$XCADDY_WHICH_GO")/gofmt" "$4"`);
  await assert.rejects(new XcaddyRunner(tc, { timeoutMs: 60_000 }).run(spec, { onLine: () => undefined }), (err: unknown) => err instanceof BuildFailed && /the built binary does not run: .*exited with code 2/.test(err.message));
});
