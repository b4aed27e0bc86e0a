// Unit tests of the build.log format (src/service/logformat.ts): formatLog and parseLog.
//   node --import tsx --test test/unit/logformat.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { LogLine } from '../../src/queue/types.js';
import { formatLog, parseLog } from '../../src/service/logformat.js';

describe('build.log format', () => {
  const lines: LogLine[] = [
    { seq: 0, ts: '2025-01-01T00:00:00.000Z', stream: 'system', text: 'fairway: linux/amd64 caddy v2.11.9' },
    { seq: 1, ts: '2025-01-01T00:00:00.001Z', stream: 'stderr', text: '2025/01/01 00:00:00 [INFO] exec (timeout=0s): /usr/local/go/bin/go build -o caddy' },
    { seq: 2, ts: '2025-01-01T00:00:00.002Z', stream: 'stdout', text: '' },
    { seq: 3, ts: '2025-01-01T00:00:00.003Z', stream: 'stdout', text: '  indented  with  double  spaces  ' },
    { seq: 4, ts: '2025-01-01T00:00:00.004Z', stream: 'stderr', text: 'tab\there, unicode ✓ ü 🚀, carriage\rreturn' },
    { seq: 5, ts: '2025-01-01T00:00:00.005Z', stream: 'system', text: 'fairway: done in 61.2s' },
  ];

  test('format is one "<ts> <stream> <text>" line per log line', () => {
    const text = formatLog(lines);
    assert.equal(text.split('\n').length, lines.length + 1);
    assert.ok(text.endsWith('\n'));
    assert.equal(text.split('\n')[0], '2025-01-01T00:00:00.000Z system fairway: linux/amd64 caddy v2.11.9');
    assert.equal(text.split('\n')[2], '2025-01-01T00:00:00.002Z stdout ');
    assert.equal(formatLog([]), '');
  });

  test('parseLog(formatLog(lines)) round-trips', () => {
    assert.deepEqual(parseLog(formatLog(lines)), lines);
  });

  test('seq is renumbered from 0, blank lines and a missing final newline are tolerated', () => {
    const text = '2025-01-01T00:00:00Z stdout a\n\n2025-01-01T00:00:01Z stderr b c\n2025-01-01T00:00:02Z system';
    assert.deepEqual(parseLog(text), [
      { seq: 0, ts: '2025-01-01T00:00:00Z', stream: 'stdout', text: 'a' },
      { seq: 1, ts: '2025-01-01T00:00:01Z', stream: 'stderr', text: 'b c' },
      { seq: 2, ts: '2025-01-01T00:00:02Z', stream: 'system', text: '' },
    ]);
    assert.deepEqual(parseLog(''), []);
  });

  test('round-trips random single-line texts', () => {
    const line = fc.record({
      ts: fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
      stream: fc.constantFrom('stdout' as const, 'stderr' as const, 'system' as const),
      text: fc.string({ unit: 'grapheme', maxLength: 80 }).filter((t) => !t.includes('\n')),
    });
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (raw) => {
        const ls: LogLine[] = raw.map((l, seq) => ({ seq, ...l }));
        assert.deepEqual(parseLog(formatLog(ls)), ls);
      }),
      { numRuns: 300 },
    );
  });
});
