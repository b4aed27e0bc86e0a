// Tokens in query strings never reach the logs (src/api/redact.ts): requests with secrets in the
// query go through the real API (test/helpers/api.ts) whose pino logger writes to memory; every
// logged line keeps the path and loses the secret values, including error lines.
//   node --import tsx --test test/unit/log-redaction.test.ts
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { redactText, redactUrl } from '../../src/api/redact.js';
import { testApi, type TestApi } from '../helpers/api.js';

let t: TestApi;
let lines: string[] = [];

before(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  // A route whose error message quotes its URL, as a library error might.
  const failing = async (app: FastifyInstance) => {
    app.get('/api/fails', { config: { scope: 'read' } }, async (req) => {
      throw new Error(`upstream refused http://upstream.example${req.url}`);
    });
  };
  t = await testApi({ logger: pino({ level: 'trace' }, sink), plugins: [failing] });
});
after(() => t?.close());

test('secret query parameters are redacted in every logged URL and error; the path stays', async () => {
  lines = [];
  const cases: Array<[string, string, string]> = [
    ['GET', '/api/builds?access_token=SECRET-A1&limit=5', '/api/builds?access_token=[REDACTED]&limit=5'],
    ['GET', '/api/nothing-here?Token=SECRET-B2', '/api/nothing-here?Token=[REDACTED]'],
    ['GET', '/api/packages?API_KEY=SECRET-C3&q=l4', '/api/packages?API_KEY=[REDACTED]&q=l4'],
    ['GET', '/api/catalog?q=x&apikey=SECRET-D4&key=SECRET-E5', '/api/catalog?q=x&apikey=[REDACTED]&key=[REDACTED]'],
    ['POST', '/api/builds?password=SECRET-F6&secret=SECRET-G7', '/api/builds?password=[REDACTED]&secret=[REDACTED]'],
    ['GET', '/api/fails?auth=SECRET-H8&access%5Ftoken=SECRET-I9', '/api/fails?auth=[REDACTED]&access%5Ftoken=[REDACTED]'],
  ];
  for (const [method, url] of cases) {
    await t.app.inject({ method: method as 'GET', url, ...(method === 'POST' ? { payload: { os: 'plan9' } } : {}) });
  }
  const out = lines.join('\n');
  assert.doesNotMatch(out, /SECRET-/, 'no secret value in any log line');
  for (const [, , logged] of cases) assert.ok(out.includes(`"url":"${logged}"`), `the request line for ${logged}`);
  const failure = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'request failed');
  assert.ok(failure, 'the error line is there');
  assert.match(failure.err.message, /upstream refused http:\/\/upstream\.example\/api\/fails\?auth=\[REDACTED\]&access%5Ftoken=\[REDACTED\]/);
  assert.match(failure.err.stack, /\?auth=\[REDACTED\]/);
  assert.ok(
    lines.some((l) => JSON.parse(l).msg === 'incoming request'),
    'request logging is on',
  );
});

test('redactUrl and redactText leave everything else alone', () => {
  assert.equal(redactUrl('/api/builds'), '/api/builds');
  assert.equal(redactUrl('/api/download?os=linux&p=github.com/x/key@v1&keys=1&tokens=2'), '/api/download?os=linux&p=github.com/x/key@v1&keys=1&tokens=2');
  assert.equal(redactUrl('/x?token'), '/x?token', 'a name without a value');
  assert.equal(redactUrl('/x?token=&a=1'), '/x?token=[REDACTED]&a=1');
  assert.equal(redactUrl('/x?a=1&ToKeN=s#frag'), '/x?a=1&ToKeN=[REDACTED]#frag');
  assert.equal(redactText('GET http://h/x?a=1&access_token=abc def "y?secret=z"'), 'GET http://h/x?a=1&access_token=[REDACTED] def "y?secret=[REDACTED]"');
  assert.equal(redactText('no url here: token=abc'), 'no url here: token=abc', 'only query parameters');
});
