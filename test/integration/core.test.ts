/**
 * The core promise, end to end against a real `fairway serve` process, the real Go toolchain and
 * real xcaddy: builds that run, a cache that answers, one build per key, a live log with replay,
 * clear refusals, cross-compilation, and a store that survives a restart.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import WebSocket from 'ws';
import { api, CADDY_VERSION, countingXcaddy, PLUGIN, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';

const run = promisify(execFile);
const BUILD_TIMEOUT = 20 * 60_000;

describe('fairway serve: real builds', { timeout: 60 * 60_000 }, () => {
  let dir: string;
  let dataDir: string;
  let server: FairwayProcess;
  let xcaddy: Awaited<ReturnType<typeof countingXcaddy>>;
  const start = () => startFairway({ dataDir, args: ['--xcaddy-bin', xcaddy.bin, '--workers', '2'] });

  before(async () => {
    dir = await tempDir();
    dataDir = join(dir, 'data');
    xcaddy = await countingXcaddy(dir);
    server = await start();
  });
  after(async () => {
    await server?.stop();
  });

  const pluginSpec = {
    caddyVersion: CADDY_VERSION,
    os: 'linux',
    arch: 'amd64',
    plugins: [{ module: PLUGIN.module, version: PLUGIN.version }],
  };
  let first: any;

  test('linux/amd64 with a real plugin: the binary runs and lists the plugin module', { timeout: BUILD_TIMEOUT }, async () => {
    const res = await api(server.url, '/api/builds', { json: pluginSpec });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.match(res.body.id, /^[0-9a-f]{64}$/);
    assert.equal(res.body.spec.caddyVersion, CADDY_VERSION);
    assert.equal(res.body.spec.plugins[0].version, PLUGIN.version);
    first = await waitForBuild(server.url, res.body.id, BUILD_TIMEOUT);
    assert.equal(first.status, 'succeeded', first.error);
    assert.match(first.sha256, /^[0-9a-f]{64}$/);

    const dl = await fetch(`${server.url}/api/builds/${first.id}/artifact`);
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-disposition'), 'attachment; filename="caddy_linux_amd64"');
    assert.equal(dl.headers.get('x-checksum-sha256'), first.sha256);
    assert.equal(dl.headers.get('etag'), `"${first.sha256}"`);
    const bin = Buffer.from(await dl.arrayBuffer());
    assert.equal(bin.length, first.size);
    assert.equal(createHash('sha256').update(bin).digest('hex'), first.sha256);
    const path = join(dir, 'caddy');
    await writeFile(path, bin);
    await chmod(path, 0o755);
    const version = await run(path, ['version']);
    assert.match(version.stdout, new RegExp(`^${CADDY_VERSION.replace(/\./g, '\\.')}`));
    const modules = await run(path, ['list-modules']);
    assert.match(modules.stdout, new RegExp(`^${PLUGIN.caddyModule}$`, 'm'), 'plugin module listed');
    assert.equal(await xcaddy.count(), 1);

    const info = await api(server.url, `/api/builds/${first.id}/buildinfo`);
    assert.equal(info.status, 200);
    assert.ok(
      info.body.Deps.some((d: any) => d.Path === PLUGIN.module && d.Version === PLUGIN.version),
      'build info lists the plugin',
    );
  });

  test('the same request again is a cache hit: no second xcaddy, same sha256', async () => {
    const res = await api(server.url, '/api/builds', { json: { ...pluginSpec, plugins: [...pluginSpec.plugins] } });
    assert.equal(res.status, 200);
    assert.equal(res.body.cached, true);
    assert.equal(res.body.status, 'succeeded');
    assert.equal(res.body.id, first.id);
    assert.equal(res.body.sha256, first.sha256);
    assert.equal(await xcaddy.count(), 1, 'no second build');
  });

  test('artifact supports Range and conditional requests', async () => {
    const part = await fetch(`${server.url}/api/builds/${first.id}/artifact`, { headers: { range: 'bytes=0-3' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 0-3/${first.size}`);
    assert.deepEqual([...new Uint8Array(await part.arrayBuffer())], [0x7f, 0x45, 0x4c, 0x46]);
    const tail = await fetch(`${server.url}/api/builds/${first.id}/artifact`, { headers: { range: 'bytes=-10' } });
    assert.equal(tail.status, 206);
    assert.equal((await tail.arrayBuffer()).byteLength, 10);
    const bad = await fetch(`${server.url}/api/builds/${first.id}/artifact`, { headers: { range: `bytes=${first.size + 5}-` } });
    assert.equal(bad.status, 416);
    await bad.arrayBuffer();
    const cond = await fetch(`${server.url}/api/builds/${first.id}/artifact`, { headers: { 'if-none-match': `"${first.sha256}"` } });
    assert.equal(cond.status, 304);
  });

  test('downloads after the first are served from the hot tier: the same bytes, ranges as slices', async () => {
    const metric = async (name: string) => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
      assert.ok(m, `${name} in /metrics`);
      return Number(m[1]);
    };
    const url = `${server.url}/api/builds/${first.id}/artifact`;
    // Earlier tests downloaded it: the fill has run (or runs now); wait until it is held.
    for (let i = 0; i < 50 && (await metric('fairway_hot_cache_bytes')) !== first.size; i++) {
      await (await fetch(url)).arrayBuffer();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(await metric('fairway_hot_cache_bytes'), first.size, 'the binary is held in memory');
    const hits = await metric('fairway_hot_cache_hits_total');
    const full = Buffer.from(await (await fetch(url)).arrayBuffer());
    assert.equal(createHash('sha256').update(full).digest('hex'), first.sha256);
    const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), full.subarray(1000, 2000));
    assert.equal(await metric('fairway_hot_cache_hits_total'), hits + 2, 'both answered from memory');
    assert.equal(await metric('fairway_hot_cache_failed_fills_total'), 0);
  });

  test('unknown module version: a clear 4xx before any build', async () => {
    const before = await xcaddy.count();
    const res = await api(server.url, '/api/builds', {
      json: { ...pluginSpec, plugins: [{ module: PLUGIN.module, version: 'v9.99.999' }] },
    });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.equal(res.body.error.code, 'unknown_version');
    assert.match(res.body.error.message, /caddy-l4@v9\.99\.999/);
    const missing = await api(server.url, '/api/builds', {
      json: { ...pluginSpec, plugins: [{ module: 'github.com/fairway-test/does-not-exist-anywhere', version: 'v1.0.0' }] },
    });
    assert.equal(missing.status, 422, JSON.stringify(missing.body));
    assert.equal(await xcaddy.count(), before, 'no build was started');
  });

  test('hostile input is refused with a JSON 4xx', async () => {
    for (const body of [
      { os: 'linux', arch: 'amd64', plugins: [{ module: '--with=evil' }] },
      { os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/x/y;rm -rf /' }] },
      { os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/x/y', replace: '/etc' }] },
      { os: 'linux', arch: 'amd64', caddyVersion: '-o/tmp/x' },
      { os: 'plan9', arch: 'amd64' },
      { os: 'linux', arch: 'amd64', unknown: 1 },
    ]) {
      const res = await api(server.url, '/api/builds', { json: body });
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error.code, 'invalid_spec');
      assert.ok(res.body.error.message.length > 5);
    }
    const bad = await fetch(`${server.url}/api/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as any).error.code, 'bad_request');
    // A build id is 64 lowercase hex digits: anything else is refused at the edge (400), a
    // well-formed id that names no build is 404.
    for (const id of ['..%2F..%2Fetc%2Fpasswd', '0'.repeat(63), 'A'.repeat(64)]) {
      const res = await api(server.url, `/api/builds/${id}`);
      assert.equal(res.status, 400, id);
      assert.equal(res.body.error.code, 'bad_request');
    }
    const unknown = await api(server.url, `/api/builds/${'a'.repeat(64)}`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'not_found');
  });

  test('5 concurrent identical cold requests share one build; a late websocket client gets every line', { timeout: BUILD_TIMEOUT }, async () => {
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'arm64' };
    const before = await xcaddy.count();
    const answers = await Promise.all(Array.from({ length: 5 }, () => api(server.url, '/api/builds', { json: spec })));
    const ids = new Set(answers.map((a) => a.body.id));
    assert.equal(ids.size, 1, 'same key, same id');
    for (const a of answers) assert.equal(a.status, 202);
    const id = answers[0]!.body.id as string;

    // Connect only once the build has produced output, then expect the full log from line 0.
    for (let i = 0; i < 600; i++) {
      const text = await (await fetch(`${server.url}/api/builds/${id}/log`)).text();
      if (text.split('\n').length > 3) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const messages: any[] = [];
    await new Promise<void>((resolve, reject) => {
      const ws = new WebSocket(`${server.url.replace('http', 'ws')}/api/builds/${id}/log`);
      ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    assert.equal(messages[0].type, 'status');
    assert.ok(['running', 'queued'].includes(messages[0].build.status), 'connected while the build was in progress');
    const lines = messages.filter((m) => m.type === 'line');
    assert.ok(lines.length > 10);
    assert.deepEqual(
      lines.map((l) => l.seq),
      lines.map((_, i) => i),
      'every line from the first, in order, once',
    );
    assert.match(lines[0].text, /^fairway: linux\/arm64/);
    const end = messages[messages.length - 1];
    assert.equal(end.type, 'end');
    assert.equal(end.status, 'succeeded', end.error);
    assert.equal(end.build.status, 'succeeded');
    assert.equal(await xcaddy.count(), before + 1, 'exactly one xcaddy run');

    const stored = await (await fetch(`${server.url}/api/builds/${id}/log`)).text();
    assert.equal(stored.trim().split('\n').length, lines.length, 'stored log has the same lines');

    const bin = Buffer.from(await (await fetch(`${server.url}/api/builds/${id}/artifact`)).arrayBuffer());
    assert.deepEqual([...bin.subarray(0, 4)], [0x7f, 0x45, 0x4c, 0x46], 'ELF');
    assert.equal(bin.readUInt16LE(18), 183, 'e_machine is EM_AARCH64');
  });

  test('windows/amd64 gives caddy_windows_amd64.exe starting with MZ; SSE follows it to the end', { timeout: BUILD_TIMEOUT }, async () => {
    const res = await api(server.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'windows', arch: 'amd64' } });
    assert.ok([200, 202].includes(res.status));
    const sse = await fetch(`${server.url}/api/builds/${res.body.id}/log`, { headers: { accept: 'text/event-stream' } });
    assert.equal(sse.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const text = await sse.text();
    assert.match(text, /^event: status\n/);
    assert.match(text, /event: end\ndata: \{"type":"end","status":"succeeded"/);
    const dl = await fetch(`${server.url}/api/builds/${res.body.id}/artifact`);
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('content-disposition'), 'attachment; filename="caddy_windows_amd64.exe"');
    const bin = Buffer.from(await dl.arrayBuffer());
    assert.equal(bin.subarray(0, 2).toString('latin1'), 'MZ');
  });

  test('after a restart the earlier builds are still listed and served', { timeout: 120_000 }, async () => {
    const listed = await api(server.url, '/api/builds');
    const before = listed.body.builds.map((b: any) => b.id).sort();
    assert.ok(before.length >= 3);
    assert.equal(await server.stop(), 0, 'clean exit on SIGTERM');
    server = await start();
    const after = await api(server.url, '/api/builds');
    assert.deepEqual(after.body.builds.map((b: any) => b.id).sort(), before);
    const rec = await api(server.url, `/api/builds/${first.id}`);
    assert.equal(rec.body.status, 'succeeded');
    assert.equal(rec.body.sha256, first.sha256);
    const bin = Buffer.from(await (await fetch(`${server.url}/api/builds/${first.id}/artifact`)).arrayBuffer());
    assert.equal(createHash('sha256').update(bin).digest('hex'), first.sha256);
    const again = await api(server.url, '/api/builds', { json: pluginSpec });
    assert.equal(again.status, 200);
    assert.equal(again.body.cached, true);
    assert.equal(await xcaddy.count(), 3, 'three builds in all: plugin, arm64, windows');
    const meta = JSON.parse(await readFile(join(dataDir, 'artifacts', first.id, 'meta.json'), 'utf8'));
    assert.equal(meta.sha256, first.sha256);
  });
});
