// Unit tests of HTTP Range parsing (src/api/artifact.ts parseRange).
//   node --import tsx --test test/unit/range.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseRange } from '../../src/api/artifact.js';

describe('parseRange', () => {
  const size = 1000;
  const cases: Array<[string | undefined, number, ReturnType<typeof parseRange>]> = [
    [undefined, size, null],
    ['', size, null],
    ['bytes=0-99', size, { start: 0, end: 99 }],
    ['bytes=0-0', size, { start: 0, end: 0 }],
    ['bytes=100-', size, { start: 100, end: 999 }],
    ['bytes=999-', size, { start: 999, end: 999 }],
    ['bytes=-500', size, { start: 500, end: 999 }],
    ['bytes=-1', size, { start: 999, end: 999 }],
    ['bytes=-1000', size, { start: 0, end: 999 }],
    ['bytes=-5000', size, { start: 0, end: 999 }],
    ['bytes=0-5000', size, { start: 0, end: 999 }],
    ['bytes=500-999', size, { start: 500, end: 999 }],
    [' bytes=0-1 ', size, { start: 0, end: 1 }],
    ['bytes=1000-', size, 'unsatisfiable'],
    ['bytes=1000-2000', size, 'unsatisfiable'],
    ['bytes=5000-', size, 'unsatisfiable'],
    ['bytes=-0', size, 'unsatisfiable'],
    ['bytes=0-', 0, 'unsatisfiable'],
    ['bytes=-1', 0, 'unsatisfiable'],
    ['bytes=99999999999999999999-', size, 'unsatisfiable'],
    ['bytes=', size, null],
    ['bytes=-', size, null],
    ['bytes=a-b', size, null],
    ['bytes=0-99,200-299', size, null],
    ['bytes=0-99, 200-299', size, null],
    ['items=0-99', size, null],
    ['bytes 0-99', size, null],
    ['bytes=0--1', size, null],
    ['bytes=+1-2', size, null],
    ['bytes=1.5-2', size, null],
    ['bytes=0x10-', size, null],
    ['bytes=0-99\nX-Injected: 1', size, null],
  ];
  for (const [header, n, expected] of cases) {
    test(`${JSON.stringify(header)} of ${n} bytes -> ${JSON.stringify(expected)}`, () => {
      assert.deepEqual(parseRange(header, n), expected);
    });
  }

  test('an inverted range is never served as a range', () => {
    const r = parseRange('bytes=500-100', size);
    assert.ok(r === null || r === 'unsatisfiable', JSON.stringify(r));
  });

  test('any range returned lies inside the file', () => {
    fc.assert(
      fc.property(fc.option(fc.nat(3000), { nil: undefined }), fc.option(fc.nat(3000), { nil: undefined }), fc.nat(2000), (a, b, n) => {
        const r = parseRange(`bytes=${a ?? ''}-${b ?? ''}`, n);
        if (r === null) {
          assert.ok(a === undefined && b === undefined);
          return;
        }
        if (r === 'unsatisfiable') return;
        assert.ok(Number.isInteger(r.start) && Number.isInteger(r.end));
        assert.ok(r.start >= 0 && r.start <= r.end && r.end < n, JSON.stringify({ a, b, n, r }));
        if (a !== undefined) assert.equal(r.start, a);
        else assert.equal(r.end - r.start + 1, Math.min(b!, n), 'suffix length');
      }),
      { numRuns: 1000 },
    );
  });
});
