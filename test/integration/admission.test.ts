/**
 * Issue 26, point 1, end to end: a real `fairway serve` with tokens (real Go and module proxy for
 * resolution, the real sandbox; xcaddy a stand-in that builds in a second). Resolutions are counted
 * twice: at a recording module proxy the server asks first (GOPROXY=<it>,https://proxy.golang.org:
 * every go command of a 2.99.<n> query reaches it, nothing is cached for a version that does not
 * exist), and from the server's log line for every go command ("resolution: go list ran"):
 *  - anonymous and `read` clients, asking for 2.99.<n> through every route (tag and manifest pulls,
 *    /api/download, POST /api/builds, ?refresh=1), run no go command and queue nothing;
 *  - a `build` client repeating one failing query runs go once (the memory of failed resolutions);
 *  - a tag a `read` client pulls before it is built is MANIFEST_UNKNOWN saying how to have it built;
 *    once a `build` client pulled it (built on demand), the `read` client gets the same index,
 *    without any go command.
 *   npm run build && node --import tsx --test test/integration/admission.test.ts
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { recordingProxy } from '../helpers/goproxy.js';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sha256Hash } from '../../src/auth/index.js';
import { api, CADDY_VERSION, instantXcaddy, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';

const READ = `fw_${randomBytes(24).toString('hex')}`;
const BUILD = `fw_${randomBytes(24).toString('hex')}`;
const hex = (t: string) => sha256Hash(t).slice('sha256:'.length);
const TAG = CADDY_VERSION.replace(/^v/, '');

describe('a real fairway serve with tokens: only the build scope starts builds and resolutions', { timeout: 10 * 60_000 }, () => {
  let dir: string;
  let fw: FairwayProcess;
  let proxy: Awaited<ReturnType<typeof recordingProxy>>;
  /** Requests for 2.99.<n> versions the module proxy saw. */
  const asked = () => proxy.hits.filter((h) => h.includes('/@v/v2.99.')).length;
  const goRuns = () =>
    fw
      .output()
      .split('\n')
      .filter((l) => l.includes('resolution: go list ran')).length;
  const as = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

  before(async () => {
    dir = await tempDir('fairway-admission-');
    const bin = await instantXcaddy(dir);
    proxy = await recordingProxy();
    fw = await startFairway({
      dataDir: join(dir, 'data'),
      args: ['--xcaddy-bin', bin, '--image-platforms', 'linux/amd64', '--goproxy', `${proxy.url},https://proxy.golang.org`],
      env: { FAIRWAY_TOKENS: `reader:read:${hex(READ)},builder:build:${hex(BUILD)}` },
    });
    // The version list is read at start (one go command): wait for it, so counts below start after it.
    const v = await api(fw.url, '/api/versions', { headers: as(READ) });
    assert.equal(v.status, 200, JSON.stringify(v.body));
  });
  after(async () => {
    await fw?.stop();
    await proxy?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('anonymous and read clients: 2.99.<n> through every route runs no go command and queues nothing', async () => {
    const start = goRuns();
    const statuses = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const h = as(i % 2 ? READ : undefined);
      const who = i % 2 ? 'read' : 'anonymous';
      const answers = await Promise.all([
        fetch(`${fw.url}/v2/caddy/manifests/2.99.${i}`, { headers: h }),
        fetch(`${fw.url}/v2/caddy/manifests/v2.99.${i}`, { method: 'HEAD', headers: h }),
        fetch(`${fw.url}/api/download?os=linux&arch=amd64&version=2.99.${i}`, { headers: h }),
        fetch(`${fw.url}/api/builds`, { method: 'POST', headers: { ...h, 'content-type': 'application/json' }, body: JSON.stringify({ caddyVersion: `v2.99.${i}`, os: 'linux', arch: 'amd64' }) }),
        fetch(`${fw.url}/api/versions?refresh=1`, { headers: h }),
      ]);
      for (const a of answers) {
        statuses.add(`${who} ${a.status}`);
        await a.arrayBuffer();
      }
      assert.equal(answers[0]!.status, 404);
      const body = (await (await fetch(`${fw.url}/v2/caddy/manifests/2.99.${i}`, { headers: h })).json()) as { errors: Array<{ code: string; message: string }> };
      assert.equal(body.errors[0]!.code, 'MANIFEST_UNKNOWN');
      assert.match(body.errors[0]!.message, /not built yet.*build scope.*POST \/api\/builds/);
    }
    assert.deepEqual([...statuses].sort(), ['anonymous 401', 'anonymous 404', 'read 403', 'read 404']);
    assert.equal(asked(), 0, `the module proxy was asked nothing: ${proxy.hits.join(' ')}`);
    assert.equal(
      goRuns(),
      start,
      `no go command ran:\n${fw
        .output()
        .split('\n')
        .filter((l) => l.includes('go list ran'))
        .slice(-5)
        .join('\n')}`,
    );
    const { body } = await api(fw.url, '/api/builds', { headers: as(READ) });
    assert.equal(body.builds.length, 0);
    assert.equal(body.queue.queued + body.queue.running, 0, 'nothing queued');
  });

  test('a build client repeating a failing query: one go command, the same 4xx every time', async () => {
    const start = goRuns();
    const pull = async () => {
      const res = await fetch(`${fw.url}/v2/caddy/manifests/2.99.1`, { headers: as(BUILD) });
      assert.equal(res.status, 404);
      assert.equal(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_UNKNOWN');
    };
    await pull();
    const once = asked();
    assert.ok(once >= 1, 'the module proxy was asked for v2.99.1');
    for (let i = 0; i < 3; i++) {
      await pull();
      const dl = await api(fw.url, '/api/download?os=linux&arch=amd64&version=v2.99.1', { headers: as(BUILD) });
      assert.equal(dl.status, 422, JSON.stringify(dl.body));
      assert.equal(dl.body.error.code, 'unknown_version');
    }
    assert.equal(asked(), once, `asked again: answered from memory (${proxy.hits.join(' ')})`);
    assert.equal(goRuns() - start, 1, 'go ran once for the query');
  });

  test('a tag: MANIFEST_UNKNOWN for read until a build client pulls it (built on demand); then read gets the same index, no go command', async () => {
    const before = await fetch(`${fw.url}/v2/caddy/manifests/${TAG}`, { headers: as(READ) });
    assert.equal(before.status, 404);
    assert.match(((await before.json()) as { errors: Array<{ message: string }> }).errors[0]!.message, /not built yet/);
    const built = await fetch(`${fw.url}/v2/caddy/manifests/${TAG}`, { headers: as(BUILD) });
    assert.equal(built.status, 200, await built.clone().text());
    const digest = built.headers.get('docker-content-digest');
    const bytes = await built.text();
    const start = goRuns();
    for (const h of [as(READ), as()]) {
      const res = await fetch(`${fw.url}/v2/caddy/manifests/${TAG}`, { headers: h });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('docker-content-digest'), digest);
      assert.equal(await res.text(), bytes);
    }
    assert.equal(goRuns(), start, 'served from what is built');
  });
});
