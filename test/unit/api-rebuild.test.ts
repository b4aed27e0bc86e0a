/**
 * POST /api/builds/:id/rebuild (inject): a verification rebuild of a finished build is queued
 * under rebuildKey(id), names the original and avoids its agent; the original is untouched;
 * unknown builds are 404, a rebuild of a rebuild 409.
 *   node --import tsx --test test/unit/api-rebuild.test.ts
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BUILD_FLAGS, cacheKey, rebuildKey, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';
import { LEGACY_BUILD_FLAGS } from '../../src/request/key.js';
import { testApi, type TestApi } from '../helpers/api.js';

const spec: ResolvedSpec = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: BUILD_FLAGS } };
const key = cacheKey(spec);
let t: TestApi;

before(async () => {
  t = await testApi();
  const bin = join(t.store.root, 'caddy-test');
  await writeFile(bin, 'binary');
  const at = '2026-12-01T10:00:00.000Z';
  await t.store.put({
    meta: {
      key,
      status: 'succeeded',
      request: { caddyVersion: spec.caddyVersion, os: 'linux', arch: 'amd64', plugins: [] },
      spec,
      filename: 'caddy_linux_amd64',
      sha256: '6a8e9ca7f2d8e8e1b7a0fbe9f7b35cb5c0ab3ab28c4d7b7cbd4e0c7c4e4a5f4a',
      size: 6,
      createdAt: at,
      finishedAt: at,
      agent: 'agent-a',
    },
    binaryPath: bin,
    log: '',
  });
  await t.service.rescan();
});
after(async () => {
  await t.close();
});

test('a finished build: 202, queued under its rebuild key, naming the original; joined when asked again', async () => {
  const r = await t.app.inject({ method: 'POST', url: `/api/builds/${key}/rebuild` });
  assert.equal(r.statusCode, 202, r.body);
  const b = r.json();
  assert.equal(b.id, rebuildKey(key));
  assert.equal(b.rebuildOf, key);
  assert.equal(b.status === 'queued' || b.status === 'running', true, b.status);
  assert.deepEqual(b.spec, spec);
  const job = await t.service.get(b.id);
  assert.equal(job.rebuildOf, key);
  const again = await t.app.inject({ method: 'POST', url: `/api/builds/${key}/rebuild` });
  assert.equal(again.json().id, b.id, 'one rebuild in flight per build');
  const original = (await t.app.inject({ method: 'GET', url: `/api/builds/${key}` })).json();
  assert.equal(original.status, 'succeeded');
  assert.equal(original.rebuildOf, undefined);
  await t.service.cancel(b.id);
});

test('unknown builds are 404; a rebuild of a rebuild is 409; a malformed id is 400 or 404', async () => {
  const unknown = await t.app.inject({ method: 'POST', url: `/api/builds/${'0'.repeat(64)}/rebuild` });
  assert.equal(unknown.statusCode, 404);
  const rkey = rebuildKey(key);
  const bin = join(t.store.root, 'caddy-test2');
  await writeFile(bin, 'binary');
  const at = '2026-12-01T11:00:00.000Z';
  await t.store.put({
    meta: {
      key: rkey,
      status: 'succeeded',
      request: {} as BuildRequest,
      spec,
      filename: 'caddy_linux_amd64',
      sha256: '6a8e9ca7f2d8e8e1b7a0fbe9f7b35cb5c0ab3ab28c4d7b7cbd4e0c7c4e4a5f4a',
      size: 6,
      createdAt: at,
      finishedAt: at,
      rebuildOf: key,
    },
    binaryPath: bin,
    log: '',
  });
  await t.service.rescan();
  const nested = await t.app.inject({ method: 'POST', url: `/api/builds/${rkey}/rebuild` });
  assert.equal(nested.statusCode, 409);
  assert.equal(nested.json().error.code, 'is_rebuild');
  // And now the finished rebuild answers a new request for it (200, cached).
  const done = await t.app.inject({ method: 'POST', url: `/api/builds/${key}/rebuild` });
  assert.equal(done.statusCode, 200, done.body);
  assert.equal(done.json().id, rkey);
  const bad = await t.app.inject({ method: 'POST', url: '/api/builds/..%2Fetc/rebuild' });
  assert.ok(bad.statusCode === 400 || bad.statusCode === 404, String(bad.statusCode));
});

test('a build from before the canonical plugin order (legacy flags) is not rebuildable: 409 naming both flags and what to do', async () => {
  const legacy: ResolvedSpec = { ...spec, toolchain: { ...spec.toolchain, flags: LEGACY_BUILD_FLAGS } };
  const lkey = cacheKey(legacy);
  assert.notEqual(lkey, key, 'the flags are part of the key');
  const bin = join(t.store.root, 'caddy-legacy');
  await writeFile(bin, 'binary');
  const at = '2026-11-01T10:00:00.000Z';
  await t.store.put({
    meta: { key: lkey, status: 'succeeded', request: {} as BuildRequest, spec: legacy, filename: 'caddy_linux_amd64', sha256: 'a'.repeat(64), size: 6, createdAt: at, finishedAt: at },
    binaryPath: bin,
    log: '',
  });
  await t.service.rescan();
  const r = await t.app.inject({ method: 'POST', url: `/api/builds/${lkey}/rebuild` });
  assert.equal(r.statusCode, 409, r.body);
  assert.equal(r.json().error.code, 'not_rebuildable');
  assert.match(r.json().error.message, /xcaddy-default\b.*order.*xcaddy-default\+sorted-plugins.*request the build again/);
  // Still served as it is: its record and binary stay.
  assert.equal((await t.app.inject({ method: 'GET', url: `/api/builds/${lkey}` })).json().status, 'succeeded');
});
