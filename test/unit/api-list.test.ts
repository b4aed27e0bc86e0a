/**
 * GET /api/builds lists builds in flight too (inject): running first, then queued in queue order,
 * then finished ones; `?status=` keeps only some states; a malformed status is a 400.
 *   node --import tsx --test test/unit/api-list.test.ts
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cacheKey, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';
import { testApi, type TestApi } from '../helpers/api.js';

let t: TestApi;
const finishedSpec: ResolvedSpec = { caddyVersion: 'v2.11.8', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' } };

before(async () => {
  t = await testApi();
  const bin = join(t.store.root, 'caddy-done');
  await writeFile(bin, 'binary');
  const at = '2026-12-01T10:00:00.000Z';
  await t.store.put({
    meta: {
      key: cacheKey(finishedSpec),
      status: 'succeeded',
      request: {} as BuildRequest,
      spec: finishedSpec,
      filename: 'caddy_linux_amd64',
      sha256: 'a'.repeat(64),
      size: 6,
      createdAt: at,
      finishedAt: at,
    },
    binaryPath: bin,
    log: '',
  });
  await t.service.rescan();
});
after(() => t?.close());

test('queued and running builds are listed first, with their phase and place; ?status= filters; finished ones follow', async () => {
  // Two workers whose jobs block: two builds run, the third waits.
  const ids: string[] = [];
  for (const [os, arch] of [
    ['linux', 'amd64'],
    ['linux', 'arm64'],
    ['windows', 'amd64'],
  ]) {
    const r = await t.app.inject({ method: 'POST', url: '/api/builds', payload: { os, arch } });
    assert.equal(r.statusCode, 202, r.body);
    ids.push(r.json().id);
  }
  const all = await t.app.inject({ method: 'GET', url: '/api/builds' });
  assert.equal(all.statusCode, 200, all.body);
  const builds = all.json().builds as Array<{ id: string; status: string; phase?: string; position?: number }>;
  assert.deepEqual(
    builds.map((b) => b.status),
    ['running', 'running', 'queued', 'succeeded'],
  );
  assert.deepEqual(new Set(builds.slice(0, 3).map((b) => b.id)), new Set(ids));
  assert.equal(builds[2]!.id, ids[2]);
  assert.equal(builds[2]!.position, 1);
  assert.deepEqual(all.json().queue, { queued: 1, running: 2 });

  const queued = (await t.app.inject({ method: 'GET', url: '/api/builds?status=queued' })).json().builds as Array<{ id: string }>;
  assert.deepEqual(
    queued.map((b) => b.id),
    [ids[2]],
  );
  const done = (await t.app.inject({ method: 'GET', url: '/api/builds?status=succeeded,failed' })).json().builds as Array<{ status: string }>;
  assert.deepEqual(
    done.map((b) => b.status),
    ['succeeded'],
  );
  const two = (await t.app.inject({ method: 'GET', url: '/api/builds?limit=2' })).json().builds as unknown[];
  assert.equal(two.length, 2, 'the limit counts builds in flight too');
  const bad = await t.app.inject({ method: 'GET', url: '/api/builds?status=building' });
  assert.equal(bad.statusCode, 400, bad.body);
  assert.match(bad.json().error.message, /status/);
  for (const id of ids) await t.service.cancel(id);
});
