/**
 * Webhook deliveries end to end, in process: the real WebhookNotifier (Node's fetch, no stand-in)
 * POSTs to real HTTP receivers on 127.0.0.1 that this test runs, keeps its log in a real fs store,
 * counts into the real metrics, and the log is read back through the real route
 * (GET /api/webhooks/deliveries, admin, by inject()). Backoff and timeouts are shortened so the
 * file takes a few seconds. Checked: the signature verifies with the target's secret and not with
 * another; the headers; 500, 500, 200 is delivered at attempt 3 under one delivery id; 404 is
 * final; a receiver that never answers times out and is retried; 429 waits for its Retry-After;
 * a redirect is not followed; a target gets only its events; userinfo becomes Basic auth; the log
 * keeps the newest N; close() abandons what waits; and no secret reaches the logs or the API.
 *   node --import tsx --test test/integration/webhooks.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { webhooksApi } from '../../src/api/index.js';
import { TokenAuthenticator, sha256Hash } from '../../src/auth/index.js';
import { OpsMetrics } from '../../src/ops/index.js';
import { FsStore } from '../../src/store/index.js';
import { verifySignature } from '../../src/webhooks/delivery.js';
import { DELIVERIES_NS, type WebhookDelivery } from '../../src/webhooks/log.js';
import { WebhookNotifier, type WebhookPayload } from '../../src/webhooks/notifier.js';
import type { WebhookTarget } from '../../src/webhooks/targets.js';
import { testApi, type TestApi } from '../helpers/api.js';
import { api, startFairway, type FairwayProcess } from '../helpers/fairway.js';

/** The receiver's own check, written from the documented rule (not with the code under test). */
const hmac = (body: Buffer, secret: string) => `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface Received {
  path: string;
  url: string;
  at: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** One HTTP server, a behaviour per path; every request it gets is recorded (body as bytes). */
async function receivers(behave: Record<string, (n: number, req: IncomingMessage, res: ServerResponse) => void>) {
  const got: Received[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      got.push({ path, url: req.url ?? '', at: Date.now(), headers: req.headers, body: Buffer.concat(chunks) });
      const n = got.filter((g) => g.path === path).length;
      const fn = behave[path];
      if (fn) fn(n, req, res);
      else res.writeHead(418).end();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    base: `http://127.0.0.1:${port}`,
    got,
    on: (path: string) => got.filter((g) => g.path === path),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A pino logger writing into a string, at the most verbose level. */
function capturedLogger() {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { logger: pino({ level: 'trace' }, sink), text: () => text };
}

const SECRETS = { ok: 'ok-secret-0123456789', flaky: 'flaky-secret-abcdef', gone: 'gone-secret-zyxw', hang: 'hang-secret-qrst', limited: 'limited-secret-mnop', redirect: 'redirect-secret-ijkl' };
const URL_PASSWORD = 'pa55w0rd-in-url';
const URL_QUERY_TOKEN = 'query-token-in-url';

const payload = (event: WebhookPayload['event'], n = 1): WebhookPayload => ({
  event,
  recipe: 'web',
  caddyVersion: 'v2.11.9',
  plugins: [{ module: 'github.com/example/plugin', version: `v1.${n}.0` }],
  previous: { caddyVersion: 'v2.11.9', plugins: [{ module: 'github.com/example/plugin', version: 'v1.0.0' }] },
  ...(event === 'recipe.failed' ? { culprit: { module: 'github.com/example/plugin', version: `v1.${n}.0` } } : {}),
  builds: [{ platform: 'linux/amd64', id: 'a'.repeat(64), url: `/api/builds/${'a'.repeat(64)}`, log: `/api/builds/${'a'.repeat(64)}/log` }],
  links: { recipe: '/api/recipes/web' },
  at: new Date().toISOString(),
});

describe('webhook deliveries', () => {
  let rx: Awaited<ReturnType<typeof receivers>>;
  let dir: string;
  let store: FsStore;
  let notifier: WebhookNotifier;
  let metrics: OpsMetrics;
  let api: TestApi;
  const logs = capturedLogger();
  const ADMIN = 'fw_admin_token_webhooks_0123456789';
  const READER = 'fw_reader_token_webhooks_012345678';
  let targets: WebhookTarget[];
  let promoted: WebhookPayload;
  let failed: WebhookPayload;
  let pendingRightAfterNotify: boolean;
  let notifyMs: number;

  before(async () => {
    rx = await receivers({
      '/ok': (_n, _req, res) => res.writeHead(204).end(),
      '/flaky': (n, _req, res) => res.writeHead(n <= 2 ? 500 : 200).end(n <= 2 ? 'down' : 'ok'),
      '/gone': (_n, _req, res) => res.writeHead(404).end('no such hook'),
      '/hang': () => {
        /* never answers */
      },
      '/limited': (n, _req, res) => (n === 1 ? res.writeHead(429, { 'retry-after': '1' }).end() : res.writeHead(200).end()),
      '/redirect': (_n, _req, res) => res.writeHead(302, { location: '/ok' }).end(),
    });
    dir = await mkdtemp(join(tmpdir(), 'fairway-webhooks-'));
    store = await FsStore.open(join(dir, 'artifacts'));
    metrics = new OpsMetrics({}, { processMetrics: false });
    const u = new URL(rx.base);
    targets = [
      { url: `http://hook-user:${URL_PASSWORD}@${u.host}/ok?token=${URL_QUERY_TOKEN}`, secret: SECRETS.ok },
      { url: `${rx.base}/flaky`, secret: SECRETS.flaky, events: ['recipe.promoted'] },
      { url: `${rx.base}/gone`, secret: SECRETS.gone, events: ['recipe.promoted'] },
      { url: `${rx.base}/hang`, secret: SECRETS.hang, events: ['recipe.promoted'] },
      { url: `${rx.base}/limited`, secret: SECRETS.limited, events: ['recipe.promoted', 'caddy.released'] },
      { url: `${rx.base}/redirect`, secret: SECRETS.redirect, events: ['recipe.failed'] },
    ];
    notifier = new WebhookNotifier({
      targets,
      store,
      logger: logs.logger,
      userAgent: 'Fairway-Webhooks/test',
      retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 80, retryAfterCapMs: 5000, timeoutMs: 400 },
      onResult: (event, result) => metrics.webhookDelivered(event, result),
    });
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'reader', hash: sha256Hash(READER), scopes: ['read'] },
        { name: 'admin', hash: sha256Hash(ADMIN), scopes: ['admin'] },
      ],
      anonymousScopes: [],
    });
    api = await testApi({
      logger: logs.logger,
      security: { auth, rateLimit: 0, rateLimitWindowMs: 60_000, buildRateLimit: 0 },
      plugins: [async (app) => void (await app.register(webhooksApi, { notifier }))],
    });

    promoted = payload('recipe.promoted', 2);
    failed = payload('recipe.failed', 3);
    // notify() returns without waiting for any answer: well within one attempt's timeout (400 ms), which /hang uses up three times.
    const t0 = performance.now();
    notifier.notify(promoted);
    notifier.notify(failed);
    notifyMs = performance.now() - t0;
    pendingRightAfterNotify = await until('a pending delivery in the log', async () => (await notifier.deliveries()).some((d) => d.status === 'pending'), 1000).catch(() => false);
    await until('every delivery to end', async () => {
      const list = await notifier.deliveries();
      return list.length === 7 && list.every((d) => d.status !== 'pending') && list;
    });
  });

  after(async () => {
    await notifier?.close();
    await api?.close();
    await rx?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const byTarget = async (path: string, event?: string): Promise<WebhookDelivery[]> => (await notifier.deliveries()).filter((d) => d.target.endsWith(path) && (!event || d.event === event));

  test('notify() returns at once: the deliveries run in the background', () => {
    assert.ok(notifyMs < 400, `notify() took ${notifyMs} ms, not less than one attempt's timeout`);
    assert.ok(pendingRightAfterNotify, 'the log had pending deliveries while they ran');
  });

  test('the body is the payload, signed with the target secret (and not verifying with another)', async () => {
    const got = rx.on('/ok');
    assert.equal(got.length, 2, 'one promoted, one failed');
    const [first] = got;
    const sig = first!.headers['x-fairway-signature-256'] as string;
    assert.match(sig, /^sha256=[0-9a-f]{64}$/);
    assert.equal(sig, hmac(first!.body, SECRETS.ok), 'sha256=<hex HMAC-SHA256 of the body bytes with the secret>');
    assert.notEqual(sig, hmac(first!.body, SECRETS.flaky));
    assert.ok(verifySignature(first!.body, SECRETS.ok, sig), 'verifies with the secret over the exact bytes');
    assert.ok(!verifySignature(first!.body, SECRETS.flaky, sig), 'not with another secret');
    const body = JSON.parse(first!.body.toString());
    assert.deepEqual(new Set(got.map((g) => JSON.parse(g.body.toString()).event)), new Set(['recipe.promoted', 'recipe.failed']));
    const sent = body.event === 'recipe.promoted' ? promoted : failed;
    assert.deepEqual(body, JSON.parse(JSON.stringify(sent)));
    assert.equal(first!.headers['content-type'], 'application/json');
    assert.equal(first!.headers['user-agent'], 'Fairway-Webhooks/test');
    assert.equal(first!.headers['x-fairway-event'], body.event);
    const ids = (await byTarget('/ok')).map((d) => d.id);
    assert.ok(ids.includes(first!.headers['x-fairway-delivery'] as string), 'X-Fairway-Delivery is the id in the log');
    // The URL's userinfo went into Basic auth (fetch refuses credentials in a URL); the query was kept.
    assert.equal(first!.headers.authorization, `Basic ${Buffer.from(`hook-user:${URL_PASSWORD}`).toString('base64')}`);
    assert.equal(new URL(first!.url, 'http://x').searchParams.get('token'), URL_QUERY_TOKEN);
  });

  test('a target gets only the events it lists', async () => {
    assert.equal(rx.on('/flaky').filter((g) => g.headers['x-fairway-event'] !== 'recipe.promoted').length, 0);
    assert.equal(rx.on('/redirect').length, 1);
    assert.equal(rx.on('/redirect')[0]!.headers['x-fairway-event'], 'recipe.failed');
    const events = (await notifier.deliveries()).map((d) => `${d.event} ${new URL(d.target).pathname}`).sort();
    assert.deepEqual(events, [
      'recipe.failed /ok',
      'recipe.failed /redirect',
      'recipe.promoted /flaky',
      'recipe.promoted /gone',
      'recipe.promoted /hang',
      'recipe.promoted /limited',
      'recipe.promoted /ok',
    ]);
  });

  test('500, 500, 200: retried under one delivery id, delivered at attempt 3', async () => {
    const got = rx.on('/flaky');
    assert.equal(got.length, 3);
    assert.equal(new Set(got.map((g) => g.headers['x-fairway-delivery'])).size, 1, 'the same X-Fairway-Delivery on every attempt');
    assert.equal(new Set(got.map((g) => g.body.toString())).size, 1, 'the same bytes');
    assert.ok(got.every((g) => g.headers['x-fairway-signature-256'] === hmac(g.body, SECRETS.flaky)));
    const [d] = await byTarget('/flaky');
    assert.equal(d?.status, 'delivered');
    assert.equal(d?.attempts, 3);
    assert.equal(d?.lastStatus, 200);
    assert.equal(d?.lastError, null);
    assert.equal(d?.id, got[0]!.headers['x-fairway-delivery']);
  });

  test('404 is final: one attempt, failed', async () => {
    assert.equal(rx.on('/gone').length, 1);
    const [d] = await byTarget('/gone');
    assert.equal(d?.status, 'failed');
    assert.equal(d?.attempts, 1);
    assert.equal(d?.lastStatus, 404);
    assert.match(d?.lastError ?? '', /HTTP 404: not retried/);
  });

  test('a receiver that never answers times out, is retried, and fails after the last attempt', async () => {
    assert.equal(rx.on('/hang').length, 3, 'maxAttempts: 3');
    const [d] = await byTarget('/hang');
    assert.equal(d?.status, 'failed');
    assert.equal(d?.attempts, 3);
    assert.equal(d?.lastStatus, null);
    assert.match(d?.lastError ?? '', /timed out: no answer within 400 ms; gave up after 3 attempts/);
  });

  test('429 waits for its Retry-After before the next attempt', async () => {
    const got = rx.on('/limited');
    assert.equal(got.length, 2);
    assert.ok(got[1]!.at - got[0]!.at >= 950, `waited ${got[1]!.at - got[0]!.at} ms for Retry-After: 1`);
    const [d] = await byTarget('/limited');
    assert.equal(d?.status, 'delivered');
    assert.equal(d?.attempts, 2);
  });

  test('a redirect is not followed: final, and its Location is never asked', async () => {
    const [d] = await byTarget('/redirect');
    assert.equal(d?.status, 'failed');
    assert.equal(d?.attempts, 1);
    assert.equal(d?.lastStatus, 302);
    assert.match(d?.lastError ?? '', /redirects are not followed/);
    assert.ok(rx.on('/ok').every((g) => g.headers['x-fairway-signature-256'] !== rx.on('/redirect')[0]!.headers['x-fairway-signature-256']));
  });

  test('the delivery log through GET /api/webhooks/deliveries: admin only, newest first, exact', async () => {
    assert.equal((await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries' })).statusCode, 401);
    assert.equal((await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: { authorization: `Bearer ${READER}` } })).statusCode, 403);
    const res = await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(res.statusCode, 200, res.body);
    const { deliveries } = res.json() as { deliveries: WebhookDelivery[] };
    assert.deepEqual(deliveries, await notifier.deliveries());
    assert.equal(deliveries.length, 7);
    const created = deliveries.map((d) => d.createdAt);
    assert.deepEqual(created, [...created].sort().reverse(), 'newest first');
    const flaky = deliveries.find((d) => d.target === `${rx.base}/flaky`);
    assert.deepEqual(
      { ...flaky, id: 'x', createdAt: 'x', updatedAt: 'x' },
      {
        id: 'x',
        event: 'recipe.promoted',
        recipe: 'web',
        target: `${rx.base}/flaky`,
        status: 'delivered',
        attempts: 3,
        lastStatus: 200,
        lastError: null,
        createdAt: 'x',
        updatedAt: 'x',
        nextAttemptAt: null,
      },
    );
    const ok = deliveries.find((d) => d.target.endsWith('/ok'));
    assert.equal(ok?.target, `${rx.base}/ok`, 'userinfo and query are not shown');
    const two = await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries?limit=2', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.deepEqual(
      (two.json() as { deliveries: WebhookDelivery[] }).deliveries.map((d) => d.id),
      deliveries.slice(0, 2).map((d) => d.id),
    );
    const bad = await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries?limit=0', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'bad_request');
  });

  test('metrics count the deliveries that ended, by event and result', async () => {
    const text = await metrics.metrics();
    const count = (event: string, result: string) =>
      Number(text.match(new RegExp(`^fairway_webhook_deliveries_total\\{event="${event.replace('.', '\\.')}",result="${result}"\\} (\\d+)$`, 'm'))?.[1] ?? 'NaN');
    assert.equal(count('recipe.promoted', 'delivered'), 3, text);
    assert.equal(count('recipe.promoted', 'failed'), 2);
    assert.equal(count('recipe.failed', 'delivered'), 1);
    assert.equal(count('recipe.failed', 'failed'), 1);
  });

  test('no secret reaches the logs, the log records or the API (and the logs do name the targets)', async () => {
    const text = logs.text();
    assert.match(text, /webhooks: delivered/);
    assert.ok(text.includes(`${rx.base}/flaky`), 'targets are named by origin and path');
    const api1 = (await api.app.inject({ method: 'GET', url: '/api/webhooks/deliveries', headers: { authorization: `Bearer ${ADMIN}` } })).body;
    const records = JSON.stringify(await Promise.all((await store.listRecords(DELIVERIES_NS)).map((n) => store.getRecord(DELIVERIES_NS, n))));
    const basic = Buffer.from(`hook-user:${URL_PASSWORD}`).toString('base64');
    for (const secret of [...Object.values(SECRETS), URL_PASSWORD, URL_QUERY_TOKEN, basic]) {
      assert.ok(!text.includes(secret), `the logs hold ${secret}`);
      assert.ok(!api1.includes(secret), `the API shows ${secret}`);
      assert.ok(!records.includes(secret), `a log record holds ${secret}`);
    }
  });
});

describe('webhook notifier limits', () => {
  let rx: Awaited<ReturnType<typeof receivers>>;
  let dir: string;
  before(async () => {
    rx = await receivers({
      '/ok': (_n, _req, res) => res.writeHead(200).end(),
      '/hang': () => {},
      '/busy': (_n, _req, res) => res.writeHead(503).end(),
    });
    dir = await mkdtemp(join(tmpdir(), 'fairway-webhooks-limits-'));
  });
  after(async () => {
    await rx?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the log keeps the newest `keep` deliveries, newest first', async () => {
    const store = await FsStore.open(join(dir, 'keep'));
    const n = new WebhookNotifier({ targets: [{ url: `${rx.base}/ok`, secret: 's' }], store, logger: pino({ level: 'silent' }), userAgent: 'x', keep: 3 });
    for (let i = 1; i <= 5; i++) {
      n.notify(payload('caddy.released', i));
      await sleep(3); // distinct creation times
    }
    await until('five deliveries', async () => rx.on('/ok').length === 5);
    await n.close();
    assert.equal((await store.listRecords(DELIVERIES_NS)).length, 3);
    const list = await n.deliveries();
    assert.deepEqual(
      list.map((d) => d.status),
      ['delivered', 'delivered', 'delivered'],
    );
    const versions = rx.on('/ok').map((g) => g.headers['x-fairway-delivery']);
    assert.deepEqual(
      list.map((d) => d.id),
      versions.slice(2).reverse(),
      'the three newest, newest first',
    );
  });

  test('bounded: over maxPending a delivery is dropped; close() abandons waiting retries and aborts running attempts after the grace', { timeout: 30_000 }, async () => {
    const store = await FsStore.open(join(dir, 'close'));
    const results: string[] = [];
    const logs = capturedLogger();
    const n = new WebhookNotifier({
      targets: [
        { url: `${rx.base}/hang`, secret: 's' },
        { url: `${rx.base}/busy`, secret: 's' },
      ],
      store,
      logger: logs.logger,
      userAgent: 'x',
      maxPending: 2,
      closeGraceMs: 100,
      retry: { maxAttempts: 5, baseDelayMs: 60_000, maxDelayMs: 60_000, timeoutMs: 60_000 },
      onResult: (event, result) => results.push(`${event} ${result}`),
    });
    let closedIn = -1;
    try {
      n.notify(payload('recipe.promoted'));
      n.notify(payload('recipe.failed')); // two more: over maxPending
      await until('both first attempts', async () => rx.on('/hang').length >= 1 && rx.on('/busy').length >= 1 && (await n.deliveries()).some((d) => d.nextAttemptAt !== null));
      assert.doesNotThrow(() => n.notify({ ...payload('caddy.released'), links: { big: 10n as unknown as string } }), 'an unserialisable payload: logged, never thrown');
      const started = Date.now();
      await n.close();
      closedIn = Date.now() - started;
    } finally {
      await n.close();
    }
    assert.ok(closedIn >= 0 && closedIn < 10_000, `close() did not wait for the 60 s timeout or backoff (${closedIn} ms)`);
    n.notify(payload('recipe.promoted')); // after close: ignored, never thrown
    const list = await n.deliveries();
    const line = (d: WebhookDelivery) => `${d.event} ${new URL(d.target).pathname} ${d.status} ${d.attempts} ${d.lastError}`;
    assert.deepEqual(list.map(line).sort(), [
      'recipe.failed /busy failed 0 dropped: 2 deliveries were pending already',
      'recipe.failed /hang failed 0 dropped: 2 deliveries were pending already',
      'recipe.promoted /busy failed 1 abandoned: the server stopped before attempt 2',
      'recipe.promoted /hang failed 1 abandoned: the server stopped during the attempt',
    ]);
    assert.deepEqual(results.sort(), ['recipe.failed dropped', 'recipe.failed dropped', 'recipe.promoted abandoned', 'recipe.promoted abandoned']);
    assert.match(logs.text(), /could not start the deliveries of an event/);
    assert.match(logs.text(), /an event after shutdown began is not delivered/);
  });
});

describe('fairway serve: the webhooks setting and the route', () => {
  const TOKEN = 'fw_admin_token_serve_webhooks_0123';
  const SECRET = 'serve-webhook-secret-0123456789';
  const env = { FAIRWAY_TOKENS: `hooks-test:admin:${createHash('sha256').update(TOKEN).digest('hex')}` };
  let fw: FairwayProcess | undefined;
  after(async () => {
    await fw?.stop();
  });

  test('an invalid setting stops the start with a message naming the entry, never the secret', async () => {
    await assert.rejects(startFairway({ env: { ...env, FAIRWAY_WEBHOOKS: JSON.stringify([{ url: 'ftp://hooks.example.com/x', secret: SECRET }]) } }), (err: Error) => {
      assert.match(err.message, /exited with 2 before listening[\s\S]*webhooks\.0\.url: ftp:\/\/hooks\.example\.com\/x: only http:\/\/ and https:\/\/ URLs are allowed/);
      assert.ok(!err.message.includes(SECRET), err.message);
      return true;
    });
  });

  test('a valid one is wired: logged by origin and path, the log served to admins only', async () => {
    fw = await startFairway({
      args: ['--anonymous-scopes', 'read'],
      env: { ...env, FAIRWAY_WEBHOOKS: JSON.stringify([{ url: `http://127.0.0.1:9/hook?token=${URL_QUERY_TOKEN}`, secret: SECRET, events: ['recipe.failed'] }]) },
    });
    assert.match(fw.output(), /webhooks: 1 target\(s\)/);
    assert.ok(fw.output().includes('http://127.0.0.1:9/hook'));
    const anon = await api(fw.url, '/api/webhooks/deliveries');
    assert.equal(anon.status, 401, 'anonymous clients may read, but this route needs admin');
    const admin = await api(fw.url, '/api/webhooks/deliveries', { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(admin.status, 200);
    assert.deepEqual(admin.body, { deliveries: [] });
    const doc = await api(fw.url, '/openapi.json');
    assert.ok(doc.body.paths['/api/webhooks/deliveries']?.get, 'in the OpenAPI document');
    assert.equal(await fw.stop(), 0, 'a clean shutdown with the notifier closed');
    for (const s of [SECRET, URL_QUERY_TOKEN]) assert.ok(!fw.output().includes(s), `the server's log holds ${s}`);
  });
});
