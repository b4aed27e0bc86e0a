// The security layer when tokens are required: 401 without a token, 403 without the scope,
// the compat envelope for compat routes, public routes (health, UI, /openapi.json) open.
// In-process (inject(): no Go, no network; test/helpers/api.ts), milliseconds per test.
//   node --import tsx --test test/unit/api-security.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { opsTestPlugin, testApi, type TestApi } from '../helpers/api.js';

describe('security: tokens required', () => {
  let t: TestApi;
  let ops: Awaited<ReturnType<typeof opsTestPlugin>>;
  const READER = 'fw_reader_token_0123456789abcdef';
  const ADMIN = 'fw_admin_token_0123456789abcdef0';
  before(async () => {
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'reader', hash: sha256Hash(READER), scopes: ['read'] },
        { name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] },
      ],
      anonymousScopes: [],
    });
    ops = await opsTestPlugin();
    t = await testApi({ security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 }, plugins: [ops.plugin] });
  });
  after(async () => {
    await t?.close();
    await ops?.close();
  });

  test('401 without a token, with WWW-Authenticate; 403 with a token lacking the scope', async () => {
    const anon = await t.app.inject({ method: 'GET', url: '/api/builds' });
    assert.equal(anon.statusCode, 401);
    assert.equal(anon.json().error.code, 'unauthorized');
    assert.match(String(anon.headers['www-authenticate']), /^Bearer /);
    const read = await t.app.inject({ method: 'GET', url: '/api/builds', headers: { authorization: `Bearer ${READER}` } });
    assert.equal(read.statusCode, 200);
    const build = await t.app.inject({ method: 'POST', url: '/api/builds', headers: { authorization: `Bearer ${READER}` }, payload: { os: 'linux', arch: 'amd64' } });
    assert.equal(build.statusCode, 403);
    assert.equal(build.json().error.code, 'forbidden');
    assert.equal(t.calls.request, 0);
  });

  test('compat routes refuse in the envelope', async () => {
    const dl = await t.app.inject({ method: 'GET', url: '/api/download?os=linux&arch=amd64' });
    assert.equal(dl.statusCode, 401);
    assert.equal(dl.json().status_code, 401);
    assert.equal(dl.json().error.code, 'unauthorized');
    const cat = await t.app.inject({ method: 'GET', url: '/api/catalog' });
    assert.equal(cat.statusCode, 401);
    assert.equal(cat.json().status_code, 401);
  });

  test('admin routes: 403 for a read token; an admin gets the prune report; bad options keep their message', async () => {
    const url = '/api/admin/prune';
    assert.equal((await t.app.inject({ method: 'POST', url, payload: { dryRun: true } })).statusCode, 401);
    const reader = await t.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${READER}` }, payload: { dryRun: true } });
    assert.equal(reader.statusCode, 403);
    const ok = await t.app.inject({ method: 'POST', url: `${url}?dryRun=1`, headers: { authorization: `Bearer ${ADMIN}` }, payload: { maxBytes: 0 } });
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().dryRun, true);
    assert.deepEqual(ok.json().removed, []);
    const bad = await t.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${ADMIN}` }, payload: { maxBytes: 'lots' } });
    assert.equal(bad.statusCode, 400);
    assert.match(bad.json().error.message, /^invalid prune request: maxBytes: .*\(fields: dryRun, maxBytes, maxAge\)$/);
    // Not an object (a list, a JSON string), or a bad dryRun in the body behind a good ?dryRun=: 400, nothing pruned.
    const admin = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };
    for (const [u, payload] of [
      [url, '[]'],
      [url, '""'],
      [`${url}?dryRun=1`, '{"dryRun":-5}'],
    ] as const) {
      const r = await t.app.inject({ method: 'POST', url: u, headers: admin, payload });
      assert.equal(r.statusCode, 400, `${u} ${payload}: ${r.body}`);
    }
    const metrics = await t.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${READER}` } });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /^# HELP /m);
  });

  test('public routes need nothing: health, the UI page, the OpenAPI document', async () => {
    for (const url of ['/healthz', '/', '/openapi.json']) assert.equal((await t.app.inject({ method: 'GET', url })).statusCode, 200, url);
  });
});
