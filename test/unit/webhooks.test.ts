// The webhooks part's pure rules: the signature (against the RFC 4231 HMAC-SHA256 vectors, an
// oracle independent of the code), which targets get an event, the backoff schedule and its
// jitter bounds, Retry-After, what an answer means, how a target is shown (redaction), and the
// `webhooks` setting's checks and messages (never quoting a secret).
//   node --import tsx --test test/unit/webhooks.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { DEFAULT_RETRY, backoffDelay, classifyStatus, parseRetryAfter, signBody, verifySignature } from '../../src/webhooks/delivery.js';
import { deliveryRecordName } from '../../src/webhooks/log.js';
import { parseWebhookTargets, redactUrl, scrubUrl, wants } from '../../src/webhooks/targets.js';

describe('signature', () => {
  test('is sha256=<hex HMAC-SHA256> of the exact bytes (RFC 4231 test cases 2 and 1)', () => {
    assert.equal(signBody('what do ya want for nothing?', 'Jefe'), 'sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
    const key = Buffer.alloc(20, 0x0b).toString('latin1');
    assert.equal(signBody(Buffer.from('Hi There'), key), 'sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7');
  });

  test('verifies with the secret, not with another secret, another body or no header', () => {
    const body = '{"event":"recipe.promoted","caddyVersion":"v2.11.9"}';
    const sig = signBody(body, 's3cret');
    assert.ok(verifySignature(body, 's3cret', sig));
    assert.ok(verifySignature(Buffer.from(body), 's3cret', `${sig}\n`), 'a trailing newline from a shell is tolerated');
    assert.ok(!verifySignature(body, 'other', sig));
    assert.ok(!verifySignature(`${body} `, 's3cret', sig), 'one more byte: another signature');
    assert.ok(!verifySignature(body, 's3cret', undefined));
    assert.ok(!verifySignature(body, 's3cret', sig.slice(0, -1)));
  });
});

describe('delivery rules', () => {
  test('a target gets the events it lists, every event when it lists none', () => {
    assert.ok(wants({}, 'recipe.failed'));
    assert.ok(wants({ events: ['recipe.failed'] }, 'recipe.failed'));
    assert.ok(!wants({ events: ['recipe.failed'] }, 'recipe.promoted'));
    assert.ok(!wants({ events: ['recipe.promoted', 'recipe.failed'] }, 'caddy.released'));
  });

  test('backoff doubles from the base up to the cap, with equal jitter (half to all of it)', () => {
    const p = { baseDelayMs: 1000, maxDelayMs: 10_000, retryAfterCapMs: 30_000 };
    const low = [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, p, () => 0));
    const high = [1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, p, () => 0.999999));
    assert.deepEqual(low, [500, 1000, 2000, 4000, 5000, 5000]);
    assert.deepEqual(high, [1000, 2000, 4000, 8000, 10_000, 10_000]);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3, p);
      assert.ok(d >= 2000 && d <= 4000, `${d} in [2000, 4000]`);
    }
    assert.equal(
      backoffDelay(60, p, () => 0.5),
      7500,
      'no overflow far out: the cap holds',
    );
  });

  test('a Retry-After is honoured (never a shorter wait) up to its cap', () => {
    const p = { baseDelayMs: 1000, maxDelayMs: 10_000, retryAfterCapMs: 30_000 };
    assert.equal(
      backoffDelay(1, p, () => 0, 20_000),
      20_000,
    );
    assert.equal(
      backoffDelay(1, p, () => 0, 3_600_000),
      30_000,
      'capped',
    );
    assert.equal(
      backoffDelay(4, p, () => 0, 100),
      4000,
      'a shorter Retry-After does not shorten the backoff',
    );
    assert.equal(parseRetryAfter('120'), 120_000);
    assert.equal(parseRetryAfter(new Date(1_000_000 + 5000).toUTCString(), 1_000_000), 5000);
    assert.equal(parseRetryAfter('soon'), null);
    assert.equal(parseRetryAfter(null), null);
  });

  test('2xx delivers; 408, 429 and 5xx are retried; other 4xx and 3xx are final', () => {
    assert.deepEqual(
      [200, 202, 204, 299, 408, 429, 500, 502, 503, 599, 400, 401, 403, 404, 410, 422, 301, 302, 307].map((s) => `${s}:${classifyStatus(s)}`),
      [
        '200:delivered',
        '202:delivered',
        '204:delivered',
        '299:delivered',
        '408:retry',
        '429:retry',
        '500:retry',
        '502:retry',
        '503:retry',
        '599:retry',
        '400:final',
        '401:final',
        '403:final',
        '404:final',
        '410:final',
        '422:final',
        '301:final',
        '302:final',
        '307:final',
      ],
    );
  });

  test('defaults: a bounded number of attempts, a per-attempt timeout, a capped wait', () => {
    assert.ok(DEFAULT_RETRY.maxAttempts > 1 && DEFAULT_RETRY.maxAttempts <= 20);
    assert.ok(DEFAULT_RETRY.timeoutMs > 0 && DEFAULT_RETRY.timeoutMs <= 60_000);
    assert.ok(DEFAULT_RETRY.maxDelayMs >= DEFAULT_RETRY.baseDelayMs);
  });

  test('record names sort by creation time and are store record names', () => {
    const a = deliveryRecordName(999, '0b0e0c6a-1d1a-4c2b-9a55-0d0e7f1a2b3c');
    const b = deliveryRecordName(1_765_000_000_000, '00000000-0000-4000-8000-000000000000');
    assert.ok(a < b);
    for (const n of [a, b]) assert.match(n, /^[a-z0-9][a-z0-9._-]{0,127}$/);
  });
});

describe('targets', () => {
  test('are shown by origin and path: userinfo, query and fragment left out', () => {
    assert.equal(redactUrl('https://user:pa55@hooks.example.com:8443/a/b?token=XYZ#frag'), 'https://hooks.example.com:8443/a/b');
    assert.equal(redactUrl('http://127.0.0.1:9/'), 'http://127.0.0.1:9/');
    assert.equal(redactUrl('not a url ?secret=1'), '<invalid URL>');
  });

  test('a message naming the URL shows it redacted (userinfo and query out)', () => {
    const url = 'https://hook-user:pa55@hooks.example.com/a?token=Q1Q2Q3';
    const msg = `Failed to parse URL from ${url}; also ${new URL(url).href} and token=Q1Q2Q3 with pa55`;
    const out = scrubUrl(msg, url);
    for (const s of ['pa55', 'Q1Q2Q3', 'hook-user']) assert.ok(!out.includes(s), `${s} left in ${out}`);
    assert.match(out, /^Failed to parse URL from https:\/\/hooks\.example\.com\/a; also https:\/\/hooks\.example\.com\/a and <redacted> with <redacted>$/);
    assert.equal(scrubUrl('connect ECONNREFUSED 127.0.0.1:9', 'http://127.0.0.1:9/x'), 'connect ECONNREFUSED 127.0.0.1:9');
  });

  const SECRET = 'Sup3r-S3cret-Value';
  const load = (webhooks: unknown) => loadConfig({ env: { FAIRWAY_WEBHOOKS: typeof webhooks === 'string' ? webhooks : JSON.stringify(webhooks) } }).webhooks;
  const refused = (webhooks: unknown, message: RegExp) => {
    assert.throws(
      () => load(webhooks),
      (err: Error) => {
        assert.match(err.message, message);
        assert.ok(!err.message.includes(SECRET), `the secret is not in the message: ${err.message}`);
        assert.ok(!err.message.includes('pa55'), `nor the URL's password: ${err.message}`);
        return true;
      },
    );
  };

  test('the setting: a JSON list from FAIRWAY_WEBHOOKS or a list in the config file; default none', () => {
    assert.deepEqual(loadConfig({ env: {} }).webhooks, []);
    assert.deepEqual(load(''), []);
    assert.deepEqual(load([{ url: 'https://ci.example.com/hook', secret: SECRET }]), [{ url: 'https://ci.example.com/hook', secret: SECRET }]);
    assert.deepEqual(load([{ url: 'http://10.0.0.5:8080/x?k=1', secret: SECRET, events: ['recipe.failed', 'recipe.failed', 'caddy.released'] }])[0]?.events, ['recipe.failed', 'caddy.released']);
    assert.deepEqual(parseWebhookTargets([{ url: 'https://a.example/', secret: 'x', events: ['recipe.promoted'] }]), [{ url: 'https://a.example/', secret: 'x', events: ['recipe.promoted'] }]);
  });

  test('refused with a message naming the entry and the field, never the secret', () => {
    refused([{ url: 'ftp://files.example.com/hook', secret: SECRET }], /webhooks\.0\.url: .*only http:\/\/ and https:\/\/ URLs/);
    refused([{ url: 'file:///etc/passwd', secret: SECRET }], /webhooks\.0\.url: .*only http/);
    refused(
      [
        { url: 'https://a.example/ok', secret: SECRET },
        { url: '/relative/path', secret: SECRET },
      ],
      /webhooks\.1\.url: is not a URL/,
    );
    refused([{ url: 'https://u:pa55@a.example/h#frag', secret: SECRET }], /webhooks\.0\.url: https:\/\/a\.example\/h: a URL without a #fragment/);
    refused([{ url: 'https://a.example/h', secret: '' }], /webhooks\.0\.secret: must not be empty/);
    refused([{ url: 'https://a.example/h', secret: '   ' }], /webhooks\.0\.secret: must not be empty/);
    refused([{ url: 'https://a.example/h' }], /webhooks\.0\.secret: a non-empty string/);
    refused([{ url: 'https://a.example/h', secret: SECRET, events: ['recipe.built'] }], /webhooks\.0\.events\.0: each one of recipe\.promoted, recipe\.failed, caddy\.released/);
    refused([{ url: 'https://a.example/h', secret: SECRET, events: [] }], /webhooks\.0\.events: leave it out/);
    refused([{ url: 'https://a.example/h', secret: SECRET, secrt: SECRET }], /webhooks\.0: unknown field\(s\) secrt/);
    refused([`https://a.example/h ${SECRET}`], /webhooks\.0: a target is an object/);
    refused({ url: 'https://a.example/h', secret: SECRET }, /webhooks: a JSON list/);
    refused(`[{"url": "https://a.example/h", "secret": "${SECRET}"`, /webhooks: not a JSON list/);
    assert.throws(() => parseWebhookTargets([{ url: 'gopher://x', secret: SECRET }]), /^Error: invalid webhooks: webhooks\.0\.url: gopher:\/\/x.*only http/);
  });
});
