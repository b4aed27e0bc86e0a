/**
 * XcaddyRunner's process handling with a stand-in xcaddy (a shell script) in the real build
 * sandbox: timeout and cancel kill everything the build started, output lines are streamed,
 * failures carry the tail of the log, and the built binary is run (sandboxed) for its version.
 * An integration test: it needs the real Go toolchain (Toolchain.detect, gofmt, a Go binary with
 * build info) and the real bwrap sandbox, so it is not a unit test.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { BuildFailed, XcaddyRunner } from '../../src/runner/index.js';
import { openSandbox, type Sandbox } from '../../src/sandbox/index.js';
import type { ResolvedSpec } from '../../src/request/index.js';
import { Toolchain } from '../../src/toolchain/index.js';
import { XCADDY } from '../helpers/fairway.js';

const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'xcaddy-default+sorted-plugins' },
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

/** Every live process on this machine (any namespace: the host /proc sees them all): pid, process group, session, argv. */
function processes(): Array<{ pid: number; pgid: number; sid: number; argv: string[] }> {
  if (!statSync('/proc/self/stat', { throwIfNoEntry: false })) throw new Error('/proc is not mounted: the survivor checks cannot count processes');
  const out: Array<{ pid: number; pgid: number; sid: number; argv: string[] }> = [];
  for (const pid of readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name "(...)": state ppid pgrp session ...
      const [state, , pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // A zombie (exited, not yet reaped by its parent) runs nothing: not a survivor.
      if (state === 'Z' || state === 'X') continue;
      out.push({ pid: Number(pid), pgid: Number(pgrp), sid: Number(session), argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') });
    } catch {
      /* exited meanwhile */
    }
  }
  if (!out.some((p) => p.pid === process.pid)) throw new Error('this process is missing from /proc: the survivor checks cannot count processes');
  return out;
}

/** Processes whose argv holds the marker. */
const running = () => processes().filter((p) => p.argv.includes(marker)).length;

/** The process groups (and sessions) of the build's marker processes, taken while the build runs. */
const buildGroups = () => {
  const mine = processes().filter((p) => p.argv.includes(marker));
  return { pgids: new Set(mine.map((p) => p.pgid)), sids: new Set(mine.map((p) => p.sid)), count: mine.length };
};

/** Processes still in one of those groups or sessions (the group's processes, whatever their argv). */
const survivors = (g: { pgids: Set<number>; sids: Set<number> }) => processes().filter((p) => g.pgids.has(p.pgid) || g.sids.has(p.sid));

/** Waits up to `ms` for the build to end; if it has not, the survivors are what keeps it open: fail naming them, not by the test's timeout. */
async function endsWithin(p: Promise<unknown>, groups: { pgids: Set<number>; sids: Set<number> }, ms: number): Promise<void> {
  const ended = await Promise.race([
    p.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((r) => setTimeout(() => r(false), ms)),
  ]);
  if (!ended) assert.deepEqual(survivors(groups), [], `the build has not ended ${ms} ms after it was stopped; its processes survive`);
  assert.ok(ended, `the build has not ended ${ms} ms after it was stopped`);
}

/** Polls until `f` is true (the build's processes are up), failing after `ms`. */
async function until(f: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-runner-'));
  sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
  await mkdir(join(dir, 'cache', 'gopath'), { recursive: true });
  await copyFile(XCADDY, goBinary());
});
after(() => sandbox.close());
// A new marker for each test, so a survivor of one test cannot confuse the next one's counts.
let markers = 0;
beforeEach(() => {
  marker = `300.${process.pid}${++markers}`;
});

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
  const p = runner.run(spec, { onLine: (_s, text) => lines.push(text) });
  p.catch(() => undefined);
  // While it runs, the count sees both sleeps (the sandboxed build user's processes, in their own group).
  await until(() => running() === 2, 'the two marker sleeps of the build');
  const groups = buildGroups();
  assert.equal(groups.count, 2);
  assert.ok(!groups.pgids.has(process.pid) && !groups.sids.has(process.pid), 'the build runs in its own process group and session');
  assert.ok(survivors(groups).length >= 3, 'the group holds the stand-in shell and both sleeps');
  await endsWithin(p, groups, 8_000);
  await assert.rejects(p, (err: unknown) => err instanceof BuildFailed && err.reason === 'timeout' && /timeout of 2s|timeout of 1s/.test(err.message));
  assert.ok(Date.now() - t0 < 10_000);
  assert.ok(lines.includes('starting'), 'output was streamed');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(survivors(groups), [], "no process of the build's process group or session survives");
  assert.equal(running(), 0, 'no process of the build survives');
});

test('cancel through the AbortSignal stops the build with reason "canceled"', { timeout: 30_000 }, async () => {
  const tc = await fakeXcaddy(`echo working; sleep ${marker}`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000, killGraceMs: 500 });
  const ac = new AbortController();
  const p = runner.run(spec, { onLine: () => undefined, signal: ac.signal });
  p.catch(() => undefined);
  await until(() => running() === 1, 'the marker sleep of the build');
  const groups = buildGroups();
  assert.ok(survivors(groups).length >= 2, 'the group holds the stand-in shell and its sleep');
  ac.abort();
  await endsWithin(p, groups, 5_000);
  await assert.rejects(p, (err: unknown) => err instanceof BuildFailed && err.reason === 'canceled');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(survivors(groups), [], "no process of the build's process group or session survives");
  assert.equal(running(), 0);
});

test('a failing xcaddy gives reason "failed" with the last output lines in the message', async () => {
  const tc = await fakeXcaddy(`echo "go: module example.com/x@v9: not found" >&2; exit 1`);
  const runner = new XcaddyRunner(tc, { timeoutMs: 60_000 });
  const streams: string[] = [];
  await assert.rejects(runner.run(spec, { onLine: (s) => streams.push(s) }), (err: unknown) => err instanceof BuildFailed && err.reason === 'failed' && /code 1: .*not found/.test(err.message));
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
    assert.match(lines[at + 1]![1], /^v0\.4\.\d+ h1:/, "the binary's own version output follows");
    assert.ok(
      lines.some(([, t]) => /could not list the binary's modules/.test(t)),
      'xcaddy has no list-modules: logged, not fatal',
    );
    assert.equal(out.listModules, undefined);
  } finally {
    await out.cleanup();
  }
});

test('a built binary that does not run fails the build', async () => {
  // gofmt has Go build info but takes "version" for a file name and exits 2.
  const tc = await fakeXcaddy(`cp "$(dirname "$XCADDY_WHICH_GO")/gofmt" "$4"`);
  await assert.rejects(
    new XcaddyRunner(tc, { timeoutMs: 60_000 }).run(spec, { onLine: () => undefined }),
    (err: unknown) => err instanceof BuildFailed && /the built binary does not run: .*exited with code 2/.test(err.message),
  );
});
