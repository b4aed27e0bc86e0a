/**
 * Issue 26, points 3 and 4 (logs), against a real `fairway serve` with the real bubblewrap sandbox
 * and its build user: files the build user wrote are opened, never followed.
 *  - a stand-in xcaddy leaves a symbolic link to a root-only file as its output: the build fails
 *    saying why, and the file is untouched (owner, mode, content, ctime);
 *  - it leaves a file with a second name (a hard link it keeps): the build fails;
 *  - a regular output builds; the stored binary is a copy (one link), not the build's inode;
 *  - the stand-in prints terminal escapes: the stored log and `fairway logs` have none.
 *   node --import tsx --test --test-reporter=spec test/integration/build-output.test.ts
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, MAIN, standInDir, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const TIMEOUT = 5 * 60_000;
/** Any C0 control but tab, DEL, any C1 control. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;
const ESCAPES = String.raw`plugin init: \033[31mred\033[0m \033]0;pwned-title\007 bell\007 \033[2J\033[Hcleared`;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('latin1')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('build output: opened, never followed (real serve, real sandbox)', { skip: process.getuid?.() !== 0 ? 'needs root (the sandbox drops to a build user)' : false }, () => {
  let server: FairwayProcess;
  let dir: string;
  let secret: string;
  const SECRET = `root only ${randomBytes(8).toString('hex')}\n`;

  before(async () => {
    dir = await tempDir('fairway-output-');
    // A root-only file the build user can name but not read.
    await mkdir(join(dir, 'root-only'), { mode: 0o755 });
    secret = join(dir, 'root-only', 'shadow');
    await writeFile(secret, SECRET, { mode: 0o600 });
    await chown(secret, 0, 0);
    await chmod(secret, 0o600);
    const real = await standInDir(dir);
    // linux/amd64: a regular output; arm64: a symbolic link to the root-only file; riscv64: a hard
    // link, a second name the build user keeps (within its work dir: the sandbox's other writable
    // dirs are other mounts, where link() fails with EXDEV). Every build prints terminal escapes.
    const bin = join(dir, 'xcaddy-output');
    await writeFile(
      bin,
      `#!/bin/sh
if [ "$1" = "build" ]; then
  printf '${ESCAPES}\\n'
  printf '\\033[1;31merror-looking\\033[0m on stderr\\r\\n' >&2
  out=""
  while [ "$#" -gt 0 ]; do if [ "$1" = "--output" ]; then out="$2"; fi; shift; done
  case "$GOARCH" in
    arm64) ln -s '${secret}' "$out" ;;
    riscv64) cp '${real}' "$out.keep" && chmod 0700 "$out.keep" && ln "$out.keep" "$out" ;;
    *) cp '${real}' "$out" ;;
  esac
  exit $?
fi
exec '${real}' "$@"
`,
    );
    await chmod(bin, 0o755);
    server = await startFairway({ dataDir: join(dir, 'data'), args: ['--xcaddy-bin', bin] });
  });

  after(async () => {
    await server?.stop();
  });

  const build = async (arch: string) => {
    const r = await api(server.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch } });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return waitForBuild(server.url, r.body.id, TIMEOUT);
  };

  test('a symbolic link to a root-only file: the build fails, the file is untouched', { timeout: TIMEOUT }, async () => {
    const before = await stat(secret);
    const done = await build('arm64');
    const now = await stat(secret);
    assert.equal(now.mode & 0o7777, 0o600, 'mode unchanged');
    assert.equal(now.uid, 0, 'owner unchanged');
    assert.equal(now.gid, 0, 'group unchanged');
    assert.equal(now.ctimeMs, before.ctimeMs, 'no chown/chmod went through the link (ctime unchanged)');
    assert.equal(await readFile(secret, 'utf8'), SECRET);
    assert.equal(done.status, 'failed');
    assert.match(done.error, /the build output caddy_linux_arm64 is a symbolic link \(to ".*shadow"\)/);
  });

  test('a hard link (the build user keeps another name for the file): the build fails', { timeout: TIMEOUT }, async () => {
    const done = await build('riscv64');
    assert.equal(done.status, 'failed');
    assert.match(done.error, /the build output caddy_linux_riscv64 has 2 hard links/);
    assert.ok(!CONTROL.test(done.error), `the build's error has no terminal control: ${JSON.stringify(done.error)}`);
  });

  test('a regular output builds; the stored binary is a copy; no terminal control in the stored or served log', { timeout: TIMEOUT }, async () => {
    const done = await build('amd64');
    assert.equal(done.status, 'succeeded', done.error);
    const stored = await stat(join(dir, 'data', 'artifacts', done.id, 'binary'));
    assert.equal(stored.nlink, 1, 'the store copied the binary, it shares no inode');
    assert.equal(stored.uid, 0);
    assert.equal(stored.size, done.size);

    const buildLog = await readFile(join(dir, 'data', 'artifacts', done.id, 'build.log'), 'latin1');
    assert.match(buildLog, /plugin init: red {2}bell cleared/, 'the text stays, the escapes go');
    assert.match(buildLog, /error-looking on stderr/);
    assert.ok(!/[\x00-\x08\x0b-\x1f\x7f-\x9f]/.test(buildLog), 'the stored log has no control character but newlines');

    const logs = await run(['logs', done.id, '--server', server.url]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /plugin init: red {2}bell cleared/);
    for (const line of logs.stdout.split('\n')) assert.ok(!CONTROL.test(line), `fairway logs printed ${JSON.stringify(line)}`);
    const sse = await fetch(`${server.url}/api/builds/${done.id}/log`, { headers: { accept: 'text/event-stream' } });
    const text = await sse.text();
    assert.match(text, /plugin init: red {2}bell cleared/);
    assert.ok(!text.includes('\\u001b') && !text.includes('\x1b'), 'no ESC in the SSE stream');
  });
});
