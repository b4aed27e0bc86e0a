// meta.json is checked once, when it is read (src/store/types.ts parseMeta): every reader gets the
// request and the resolved spec typed, and a record whose spec is not a resolved spec is a damaged
// record (CorruptRecordError, quarantined by the service), never cast and passed on.
//   node --import tsx --test test/unit/store-meta.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BUILD_FLAGS } from '../../src/request/index.js';
import { CorruptRecordError } from '../../src/store/index.js';
import { parseMeta } from '../../src/store/types.js';

const KEY = 'a'.repeat(64);
const spec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: BUILD_FLAGS },
};
const record = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    key: KEY,
    status: 'succeeded',
    request: { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/mholt/caddy-l4' }] },
    spec,
    filename: 'caddy',
    sha256: 'b'.repeat(64),
    size: 10,
    createdAt: '2026-12-01T00:00:00.000Z',
    finishedAt: '2026-12-01T00:00:10.000Z',
    ...over,
  });

describe('parseMeta', () => {
  test('a good record: request and spec come back typed', () => {
    const m = parseMeta(KEY, record());
    assert.deepEqual(m.spec, spec);
    assert.deepEqual(m.request, { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/mholt/caddy-l4' }] });
  });

  test('a request that is not a request is replaced by the one the spec answers', () => {
    const m = parseMeta(KEY, record({ request: { evil: true, plugins: 'x' } }));
    assert.equal(m.request.caddyVersion, 'v2.11.9');
    assert.deepEqual(
      m.request.plugins.map((p) => p.module),
      ['github.com/mholt/caddy-l4'],
    );
    assert.ok(!('evil' in m.request));
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['no spec', undefined, /spec is malformed/],
    ['a spec without its toolchain', { ...spec, toolchain: undefined }, /spec is malformed: .*toolchain/],
    ['a query for a version', { ...spec, caddyVersion: 'latest' }, /spec is malformed: .*caddyVersion.*not an exact version/],
    ['a bad module path', { ...spec, plugins: [{ module: '../../etc', version: 'v1.0.0' }] }, /spec is malformed: .*plugins\[0\]\.module/],
    ['a field a spec does not have', { ...spec, extra: 1 }, /spec is malformed/],
  ];
  for (const [name, s, re] of bad) {
    test(`refuses a record with ${name}`, () => {
      assert.throws(
        () => parseMeta(KEY, record({ spec: s })),
        (err: unknown) => err instanceof CorruptRecordError && re.test(err.message),
      );
    });
  }
});
