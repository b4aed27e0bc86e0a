// The compat plugin's own error handler: caddyserver.com's envelope on every compat route
// (including /api/catalog), the native shape elsewhere.
// In-process (inject(): no Go, no network; test/helpers/api.ts), milliseconds per test.
//   node --import tsx --test test/unit/api-compat.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { testApi, type TestApi } from '../helpers/api.js';

const LONG_ID = 'a'.repeat(150); // over the schema's 128, under the router's 200

describe("the compat envelope on every compat route (caddyserver.com's shape)", () => {
  let t: TestApi;
  before(async () => {
    t = await testApi();
  });
  after(() => t?.close());

  const envelope = (res: { statusCode: number; json(): unknown }, status: number, code: string) => {
    assert.equal(res.statusCode, status);
    const body = res.json() as { status_code: number; error: { message: string; id: string; code: string } };
    assert.equal(body.status_code, status);
    assert.equal(body.error.code, code);
    assert.equal(typeof body.error.message, 'string');
    assert.match(body.error.id, /^[0-9a-f-]{36}$/);
  };

  test('GET /api/download', async () => {
    envelope(await t.app.inject({ method: 'GET', url: '/api/download?os=plan9&arch=amd64' }), 400, 'invalid_spec');
    envelope(await t.app.inject({ method: 'GET', url: '/api/download?os=linux&os=windows&arch=amd64' }), 400, 'invalid_spec');
  });

  test('HEAD /api/download', async () => {
    const res = await t.app.inject({ method: 'HEAD', url: '/api/download?os=plan9&arch=amd64' });
    assert.equal(res.statusCode, 400);
    assert.match(String(res.headers['content-type']), /^application\/json/);
  });

  test('GET /api/packages', async () => {
    envelope(await t.app.inject({ method: 'GET', url: '/api/packages?q=a&q=b' }), 400, 'invalid_spec');
    const ok = await t.app.inject({ method: 'GET', url: '/api/packages' });
    assert.equal(ok.statusCode, 200);
    assert.equal(ok.json().status_code, 200);
  });

  test('GET /api/catalog (Fairway shape, Caddy error envelope)', async () => {
    envelope(await t.app.inject({ method: 'GET', url: '/api/catalog?path=github.com/nobody/nothing' }), 404, 'not_found');
    envelope(await t.app.inject({ method: 'GET', url: '/api/catalog?q=a&q=b' }), 400, 'invalid_spec');
    const ok = await t.app.inject({ method: 'GET', url: '/api/catalog' });
    assert.equal(ok.statusCode, 200);
    assert.equal(typeof ok.json().total, 'number');
  });

  test('native routes keep the native shape', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/api/builds/${LONG_ID}` });
    assert.equal(res.json().status_code, undefined);
    assert.equal(res.json().error.code, 'bad_request');
  });
});
