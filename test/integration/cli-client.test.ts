// The `fairway build/status/logs` client, run as a user runs it (node dist/main/index.js, a child
// process) against a real `fairway serve`: a real Caddy build with a plugin through a proxy that
// drops the log websocket once (the client must resume without losing or repeating lines), the
// downloaded binary checked and run, the cache, status and logs, and every exit code.
//   node --import tsx --test test/integration/cli-client.test.ts
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { hostPlatform } from '../../src/cli/client-commands.js';
import { Progress } from '../../src/cli/progress.js';
import { api, CADDY_VERSION, MAIN, PLUGIN, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';

const BUILD_TIMEOUT = 15 * 60_000;
const WITH = `${PLUGIN.module}@${PLUGIN.version}`;

let server: FairwayProcess;
let dir: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], opts: { onStderr?: (all: string) => void; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // A clean slate: no server or target from the caller's environment unless the test sets it.
    const env = { ...process.env };
    for (const k of ['FAIRWAY_SERVER', 'GOOS', 'GOARCH', 'GOARM']) delete env[k];
    const child = spawn(process.execPath, [MAIN, ...args], { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      opts.onStderr?.(stderr);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A TCP proxy in front of the server that cuts the first log websocket after `dropAfter` bytes
 * came from the server, the way a flaky network or a restarting load balancer would.
 */
async function droppingProxy(target: number, dropAfter: number): Promise<{ url: string; dropped: () => boolean; close(): Promise<void> }> {
  let dropped = false;
  const sockets = new Set<Socket>();
  const srv: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    let isWs = false;
    let fromServer = 0;
    client.once('data', (first: Buffer) => {
      isWs = /^upgrade: websocket/im.test(first.toString('latin1'));
    });
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      fromServer += chunk.length;
      client.write(chunk);
      if (isWs && !dropped && fromServer >= dropAfter) {
        dropped = true;
        client.destroy();
        upstream.destroy();
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    dropped: () => dropped,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

before(async () => {
  server = await startFairway();
  dir = await tempDir('fairway-cli-');
});

after(async () => {
  await server?.stop();
});

test('fairway build: live log survives a dropped connection, the binary is verified, executable and runs', { timeout: BUILD_TIMEOUT }, async () => {
  const proxy = await droppingProxy(server.port, 1500);
  try {
    const out = join(dir, 'caddy');
    const r = await cli(['build', '--server', proxy.url, '--caddy-version', CADDY_VERSION, '--os', 'linux', '--arch', 'amd64', '--with', WITH, '-o', out, '--verbose', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(proxy.dropped(), 'the proxy cut the log stream once');
    assert.match(r.stderr, /fairway: log connection lost .* reconnecting/);
    assert.match(r.stderr, /^fairway: (queued|resolving|building)/m, 'phases are shown');
    assert.match(r.stderr, /^fairway: downloading \d/m);
    assert.match(r.stderr, /^fairway: wrote .*caddy \(.*sha256 verified\)$/m);
    // The line before the download gives the real figures, never placeholders.
    assert.match(r.stderr, /^fairway: built caddy_linux_amd64: \d+(\.\d+)? [KMG]?B, sha256 [0-9a-f]{64}/m);
    assert.doesNotMatch(r.stderr, /undefined|: 0 B/);

    const rec = JSON.parse(r.stdout);
    assert.equal(rec.status, 'succeeded');
    assert.equal(rec.spec.caddyVersion, CADDY_VERSION);
    assert.deepEqual(
      rec.spec.plugins.map((p: { module: string; version: string }) => `${p.module}@${p.version}`),
      [WITH],
    );

    // Every log line exactly once and in order, despite the reconnect.
    const logs = await cli(['logs', rec.id, '--server', server.url]);
    assert.equal(logs.code, 0, logs.stderr);
    const expected = logs.stdout.split('\n').filter(Boolean);
    assert.ok(expected.length > 10, `the log has ${expected.length} lines`);
    const want = new Set(expected);
    const seen = r.stderr.split('\n').filter((l) => want.has(l));
    assert.deepEqual(seen, expected);

    // The file: atomic (no temp file left), executable, the right bytes, and a working Caddy.
    const bin = await readFile(out);
    assert.equal(sha256(bin), rec.sha256);
    assert.equal(bin.length, rec.size);
    assert.equal((await stat(out)).mode & 0o777, 0o755);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('fairway-part')),
      [],
    );
    const mods = spawnSync(out, ['list-modules', '--versions', '--skip-standard'], { encoding: 'utf8' });
    assert.equal(mods.status, 0, mods.stderr);
    assert.match(mods.stdout, new RegExp(`^${PLUGIN.caddyModule} ${PLUGIN.version.replace(/\./g, '\\.')}$`, 'm'));
  } finally {
    await proxy.close();
  }
});

test('fairway build: defaults to this machine, cached builds download at once, a directory gets the file name', { timeout: BUILD_TIMEOUT }, async () => {
  const outDir = await tempDir('fairway-cli-out-');
  const r = await cli(['build', CADDY_VERSION, '--server', server.url, '--with', WITH, '-o', outDir, '--json', '--quiet']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', '--quiet prints nothing on success');
  const rec = JSON.parse(r.stdout);
  const host = hostPlatform();
  assert.equal(rec.spec.os, host.os);
  assert.equal(rec.spec.arch, host.arch);
  assert.equal(rec.cached, true);
  const file = join(outDir, rec.filename);
  assert.equal(sha256(await readFile(file)), rec.sha256);

  // Plain (non-TTY) progress says it was cached and shows the download.
  const again = await cli(['build', '--server', server.url, '--caddy-version', CADDY_VERSION, '--with', WITH, '-o', join(outDir, 'again')]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /fairway: cached: no build needed/);
  assert.match(again.stderr, /fairway: downloaded 50%/);

  // --no-download only reports.
  const nod = await cli(['build', '--server', server.url, '--caddy-version', CADDY_VERSION, '--with', WITH, '--no-download', '-o', join(outDir, 'absent')]);
  assert.equal(nod.code, 0, nod.stderr);
  await assert.rejects(stat(join(outDir, 'absent')));
});

test('fairway status and logs', { timeout: BUILD_TIMEOUT }, async () => {
  const { body: list } = await api(server.url, '/api/builds');
  const rec = list.builds.find((b: { status: string }) => b.status === 'succeeded');
  assert.ok(rec, 'a finished build from the first test');

  const st = await cli(['status', rec.id.slice(0, 10), '--server', server.url]);
  assert.equal(st.code, 0, st.stderr);
  assert.match(st.stdout, /^status {4}succeeded$/m);
  assert.match(st.stdout, new RegExp(`^sha256 {4}${rec.sha256}$`, 'm'));
  assert.match(st.stdout, new RegExp(`^plugins {3}${PLUGIN.module} ${PLUGIN.version.replace(/\./g, '\\.')}$`, 'm'));
  const js = await cli(['status', rec.id, '--json'], { env: { FAIRWAY_SERVER: server.url } });
  assert.equal(js.code, 0, js.stderr);
  assert.equal(JSON.parse(js.stdout).sha256, rec.sha256);

  const lg = await cli(['logs', rec.id, '--server', server.url, '--timestamps']);
  assert.equal(lg.code, 0);
  assert.match(lg.stdout, /^\d{4}-\d\d-\d\dT\S+ system fairway: done in/m);
  const follow = await cli(['logs', rec.id, '--follow', '--server', server.url]);
  assert.equal(follow.code, 0, follow.stderr);
  assert.match(follow.stdout, /xcaddy build/);
  assert.match(follow.stderr, /build [0-9a-f]{12} succeeded/);
});

test('a canceled build ends the client with exit 1 and writes nothing', { timeout: BUILD_TIMEOUT }, async () => {
  const out = join(dir, 'never');
  const request = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'arm64', plugins: [{ module: PLUGIN.module, version: PLUGIN.version }] };
  let canceled = false;
  const r = await cli(['build', '--server', server.url, '--caddy-version', CADDY_VERSION, '--os', 'linux', '--arch', 'arm64', '--with', WITH, '-o', out], {
    onStderr: (all) => {
      if (canceled || !/fairway: build [0-9a-f]{12}:/.test(all)) return;
      canceled = true;
      // The same request names the same build (one key, one id), so the API can cancel it.
      void (async () => {
        const { body } = await api(server.url, '/api/builds', { json: request });
        await api(server.url, `/api/builds/${body.id}`, { method: 'DELETE' });
      })();
    },
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /fairway: build [0-9a-f]{12} canceled/);
  await assert.rejects(stat(out));
});

test('exit codes: 2 for usage and refused requests, 3 when the server is unreachable', async () => {
  const usage = [
    ['build', '--server', server.url, '--with', 'not_a_module'],
    ['build', '--server', server.url, '--os', 'plan9', '--arch', 'amd64'],
    ['build', '--server', server.url, '--os', 'linux', '--arch', 'amd64', '--arm', '7'],
    ['build', '--server', server.url, '--frobnicate'],
    ['build', 'v2.11.9', '--caddy-version', 'v2.11.8', '--server', server.url],
    ['build', '--server', 'ftp://example.com'],
    ['status', '0'.repeat(64), '--server', server.url],
    ['logs', 'zz', '--server', server.url],
  ];
  for (const args of usage) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /\S/, 'says why');
  }
  const plan9 = await cli(usage[1]!);
  assert.match(plan9.stderr, /plan9\/amd64 is not supported/);

  // A port nobody listens on.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const down = await cli(['build', '--server', `http://127.0.0.1:${port}`, '--os', 'linux', '--arch', 'amd64']);
  assert.equal(down.code, 3, down.stderr);
  assert.match(down.stderr, /cannot reach the Fairway server at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  assert.equal((await cli(['status', 'abcd1234', '--server', `http://127.0.0.1:${port}`])).code, 3);
});

test('progress: one redrawn line and a byte bar on a terminal, plain lines otherwise', () => {
  const capture = (tty: boolean) => {
    let text = '';
    const stream = new Writable({
      write(chunk, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    }) as unknown as NodeJS.WriteStream;
    Object.assign(stream, { isTTY: tty, columns: 80 });
    const p = new Progress({ verbose: false, quiet: false, stream });
    p.startBuild();
    p.phase('queued', 2);
    p.phase('building');
    p.line('go: downloading example.com/x v1.0.0');
    p.done();
    p.download(0, 1000);
    p.download(1000, 1000);
    p.done();
    return text;
  };
  const tty = capture(true);
  assert.match(tty, /\r\x1b\[2K⠋ queued #2 0:00/);
  assert.match(tty, /building 0:00 · 1 lines · go: downloading example\.com\/x/);
  assert.match(tty, /\[█{28}\] 100%/);
  assert.doesNotMatch(tty, /\n.*\n/, 'a single line, redrawn in place');
  const plain = capture(false);
  assert.equal(plain, 'fairway: queued (position 2)\nfairway: building\nfairway: downloading 1.0 KB\n');
});
