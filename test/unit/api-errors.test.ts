// The HTTP layer's error shapes: zod validation (400 naming the parameter), the spec parser's
// messages on POST /api/builds, 404 for unknown routes and builds, 413, 414, 415.
// In-process (inject(): no Go, no network; test/helpers/api.ts), milliseconds per test.
//   node --import tsx --test test/unit/api-errors.test.ts
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyPluginAsync } from 'fastify';
import pino from 'pino';
import { z } from 'zod';
import { testApi, type TestApi } from '../helpers/api.js';

const LONG_ID = 'a'.repeat(150); // not a build id (64 hex digits), under the router's 200

describe('error shapes', () => {
  let t: TestApi;
  before(async () => {
    t = await testApi();
  });
  after(() => t?.close());

  test('a path parameter failing its schema: 400 naming the parameter', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/api/builds/${LONG_ID}` });
    assert.equal(res.statusCode, 400);
    const body = res.json();
    assert.equal(body.error.code, 'bad_request');
    assert.equal(body.error.field, 'id');
    assert.match(body.error.message, /^path parameter "id": a build id is 64 lowercase hex digits/);
  });

  test('a path segment over the router limit (routerOptions.maxParamLength): 414', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/api/builds/${'a'.repeat(250)}` });
    assert.equal(res.statusCode, 414);
    assert.equal(res.json().error.code, 'uri_too_long');
  });

  test('the UI asset name too: 400 naming it, not a 404', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/ui/${'x'.repeat(101)}.js` });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.field, 'name');
    assert.equal((await t.app.inject({ method: 'GET', url: '/ui/app.js' })).statusCode, 200);
  });

  test('a query parameter failing its schema: 400 naming the parameter', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/builds?limit=5&limit=6' });
    assert.equal(res.statusCode, 400);
    const body = res.json();
    assert.equal(body.error.field, 'limit');
    assert.match(body.error.message, /^query parameter "limit": /);
    // Lenient values keep their old meaning (anything unusable means the default).
    assert.equal((await t.app.inject({ method: 'GET', url: '/api/builds?limit=abc' })).statusCode, 200);
  });

  test('the build request body is checked by the spec parser, with its own messages', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/builds', payload: { os: 'linux', arch: 'amd64', plugins: [{ module: '--with=evil' }] } });
    assert.equal(res.statusCode, 400);
    const body = res.json();
    assert.equal(body.error.code, 'invalid_spec');
    assert.equal(body.error.field, 'plugins[0].module');
    assert.match(body.error.message, /^plugins\[0\]\.module: module path/);
    const unknown = await t.app.inject({ method: 'POST', url: '/api/builds', payload: { os: 'linux', arch: 'amd64', unknown: 1 } });
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.json().error.code, 'invalid_spec');
    const bad = await t.app.inject({ method: 'POST', url: '/api/builds', headers: { 'content-type': 'application/json' }, payload: '{nope' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'bad_request');
    assert.equal(t.calls.resolve, 0, 'nothing was resolved');
  });

  test('an unknown route: 404 JSON', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/nothing-here?x=1' });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: { code: 'not_found', message: 'no route GET /api/nothing-here' } });
  });

  test('an unknown build: 404 not_found from the service (NotFoundError)', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/api/builds/${'0'.repeat(64)}` });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'not_found');
    assert.match(res.json().error.message, / not found$/);
  });

  test('a body over the limit: 413 body_too_large', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/builds', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ os: 'x'.repeat(70 * 1024) }) });
    assert.equal(res.statusCode, 413);
    assert.equal(res.json().error.code, 'body_too_large');
  });

  test('a body of another media type: 415 unsupported_media_type', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/builds', headers: { 'content-type': 'application/xml' }, payload: '<build/>' });
    assert.equal(res.statusCode, 415);
    assert.equal(res.json().error.code, 'unsupported_media_type');
  });
});

describe('responses that break their schema', () => {
  let t: TestApi;
  // A route whose answer does not match its response schema (the default type provider lets it compile).
  const broken: FastifyPluginAsync = async (app) => {
    app.get('/api/broken', { config: { scope: 'read' }, schema: { response: { 200: z.object({ n: z.number() }) } } }, async () => ({ n: 'not a number' }));
  };
  before(async () => {
    t = await testApi({ plugins: [broken] });
  });
  after(() => t?.close());

  test('are a 500 that shows nothing of them', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/broken' });
    assert.equal(res.statusCode, 500);
    assert.deepEqual(res.json(), { error: { code: 'internal', message: 'internal server error; the server log has the details' } });
  });
});

describe('log lines of refused requests', () => {
  test('each key once: the refusal reason is `reason`, the message `msg` (native, compat and registry envelopes)', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    const t = await testApi({ logger });
    try {
      for (const url of [`/api/builds/${'0'.repeat(64)}`, '/api/download?os=plan9&arch=amd64', '/v2/caddy/manifests/not%20a%20tag']) {
        const r = await t.app.inject({ method: 'GET', url });
        assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${url}: ${r.statusCode}`);
      }
      const refused = lines.filter((l) => /refused/.test(l));
      assert.equal(refused.length, 3, lines.join(''));
      for (const l of refused) {
        assert.equal(l.match(/"msg":/g)?.length, 1, `one msg key: ${l}`);
        const keys = [...l.matchAll(/"([a-zA-Z_]+)":/g)].map((m) => m[1]!);
        // Top-level keys only appear once; nested ones (err.*) are not in these lines.
        assert.deepEqual(keys, [...new Set(keys)], `a key twice: ${l}`);
        assert.match(JSON.parse(l).reason, /\S/);
      }
    } finally {
      await t.close();
    }
  });
});

describe('undeclared methods', () => {
  let t: TestApi;
  before(async () => {
    t = await testApi();
  });
  after(() => t?.close());

  test('a path some route has, with another method: 405 with Allow (native JSON error; OCI error under /v2); an unknown path stays 404', async () => {
    for (const [method, url, allow] of [
      ['TRACE', '/healthz', 'GET, HEAD'],
      ['DELETE', '/api/stats', 'GET, HEAD'],
      ['PUT', `/api/builds/${'a'.repeat(64)}/log`, 'GET, HEAD'],
      ['POST', '/api/versions', 'GET, HEAD'],
    ] as const) {
      const r = await t.app.inject({ method, url });
      assert.equal(r.statusCode, 405, `${method} ${url}: ${r.body}`);
      assert.equal(r.headers.allow, allow, `${method} ${url}`);
      assert.equal(r.json().error.code, 'method_not_allowed');
      assert.match(r.json().error.message, new RegExp(`^${method} is not a method of `));
    }
    const oci = await t.app.inject({ method: 'DELETE', url: '/v2/caddy/tags/list' });
    assert.equal(oci.statusCode, 405, oci.body);
    assert.equal(oci.headers.allow, 'GET, HEAD');
    assert.equal(oci.json().errors[0].code, 'UNSUPPORTED');
    // A body method that fails body parsing (no or an unknown content type) is still a 405, not a 400/415.
    for (const [method, url, headers] of [
      ['QUERY', '/api/stats', {}],
      ['POST', '/api/versions', { 'content-type': 'application/x-nope' }],
      ['QUERY', '/v2/caddy/tags/list', {}],
    ] as const) {
      const r = await t.app.inject({ method: method as 'POST', url, headers, payload: 'x' });
      assert.equal(r.statusCode, 405, `${method} ${url}: ${r.body}`);
      assert.equal(r.headers.allow, 'GET, HEAD');
    }
    const none = await t.app.inject({ method: 'GET', url: '/api/no-such-thing' });
    assert.equal(none.statusCode, 404);
    assert.equal(none.headers.allow, undefined);
    const post = await t.app.inject({ method: 'POST', url: '/api/builds', payload: {} });
    assert.notEqual(post.statusCode, 405, 'a declared method is routed');
  });
});
