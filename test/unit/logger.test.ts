// Logs: readable lines on a terminal, JSON lines otherwise (src/util/logger.ts).
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { createLogger, type LoggerOptions } from '../../src/util/logger.js';

function capture(o: Omit<LoggerOptions, 'destination'>): { lines: () => string; log: ReturnType<typeof createLogger> } {
  const s = new PassThrough();
  let out = '';
  s.on('data', (d: Buffer) => (out += d.toString()));
  return { log: createLogger('info', { ...o, destination: s }), lines: () => out };
}

describe('createLogger', () => {
  test('not a terminal: one JSON object per line, with the fields given', async () => {
    const c = capture({ isTTY: false });
    c.log.info({ build: 'abc' }, 'build queued');
    await new Promise((r) => setImmediate(r));
    const lines = c.lines().trim().split('\n');
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec.msg, 'build queued');
    assert.equal(rec.build, 'abc');
    assert.equal(rec.level, 30);
    assert.match(String(rec.time), /^\d{4}-\d\d-\d\dT/);
  });

  test('a terminal: readable lines (level word, message, fields), not JSON', async () => {
    const c = capture({ isTTY: true });
    c.log.warn({ build: 'abc' }, 'low disk space');
    await new Promise((r) => setImmediate(r));
    const text = c.lines().replace(/\u001b\[[0-9;]*m/g, '');
    assert.throws(() => JSON.parse(text.trim()), 'a terminal gets no JSON');
    assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN \(fairway\): low disk space\n\s+build: "abc"\n$/);
  });

  test('format forces either way', async () => {
    const json = capture({ isTTY: true, format: 'json' });
    json.log.info('x');
    const pretty = capture({ isTTY: false, format: 'pretty' });
    pretty.log.info('y');
    await new Promise((r) => setImmediate(r));
    assert.equal((JSON.parse(json.lines()) as { msg: string }).msg, 'x');
    assert.match(pretty.lines(), /INFO \(fairway\): y/);
    assert.doesNotMatch(pretty.lines(), /\u001b\[/, 'no colour codes when the output is not a terminal');
  });
});
