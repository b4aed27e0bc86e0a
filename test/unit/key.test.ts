// Unit tests of the cache key (src/request/key.ts): equal specs give equal keys whatever the order of
// plugins or object keys; any change that can change the binary changes the key.
//   node --import tsx --test test/unit/key.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { cacheKey, canonicalJson, canonicalSpec, isCacheKey, type ResolvedSpec } from '../../src/request/index.js';

const spec = (): ResolvedSpec => ({
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [
    { module: 'github.com/caddy-dns/cloudflare', version: 'v0.2.1' },
    { module: 'github.com/mholt/caddy-l4', version: 'v0.0.0-20250102000000-abcdefabcdef' },
    { module: 'github.com/greenpau/caddy-security', version: 'v1.1.29', replace: { kind: 'module', module: 'github.com/fork/caddy-security', version: 'v1.1.30' } },
    { module: 'github.com/local/plugin', replace: { kind: 'path', path: '/src/plugin' } },
  ],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: '-trimpath -ldflags=-s -w' },
});

/** The same spec, every object built with its keys in reverse insertion order. */
function reverseKeys<T>(v: T): T {
  if (Array.isArray(v)) return v.map(reverseKeys) as T;
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).reverse()) {
      Object.defineProperty(out, k, { value: reverseKeys((v as Record<string, unknown>)[k]), enumerable: true, writable: true, configurable: true });
    }
    return out as T;
  }
  return v;
}

describe('cacheKey', () => {
  test('is 64 lowercase hex characters and passes isCacheKey', () => {
    const k = cacheKey(spec());
    assert.match(k, /^[0-9a-f]{64}$/);
    assert.ok(isCacheKey(k));
  });

  test('is deterministic', () => {
    assert.equal(cacheKey(spec()), cacheKey(spec()));
  });

  test('pinned value: the key format does not change by accident (that would orphan every cached build)', () => {
    assert.equal(cacheKey(spec()), PINNED_KEY);
    assert.equal(canonicalJson(canonicalSpec(spec())), PINNED_CANONICAL);
    assert.equal(createHash('sha256').update(`fairway-key-v1\n${PINNED_CANONICAL}`).digest('hex'), PINNED_KEY);
  });

  test('is stable across plugin order', () => {
    const s = spec();
    const k = cacheKey(s);
    fc.assert(
      fc.property(fc.shuffledSubarray(s.plugins, { minLength: s.plugins.length, maxLength: s.plugins.length }), (plugins) => {
        assert.equal(cacheKey({ ...s, plugins }), k);
      }),
      { numRuns: 50 },
    );
    assert.equal(cacheKey({ ...s, plugins: [...s.plugins].reverse() }), k);
  });

  test('is stable across object key order, at every level', () => {
    const s = spec();
    const r = reverseKeys(s);
    assert.notEqual(JSON.stringify(r), JSON.stringify(s), 'the reordering really reorders');
    assert.equal(cacheKey(r), cacheKey(s));
  });

  test('absent and undefined optional fields are the same', () => {
    const s = spec();
    assert.equal(cacheKey({ ...s, arm: undefined }), cacheKey(s));
    const plugins = s.plugins.map((p) => ({ ...p, version: p.version, replace: p.replace }));
    assert.equal(cacheKey({ ...s, plugins }), cacheKey(s));
  });

  test('does not modify its input', () => {
    const s = spec();
    const before = JSON.stringify(s);
    cacheKey({ ...s, plugins: [...s.plugins].reverse() });
    cacheKey(s);
    assert.equal(JSON.stringify(s), before);
  });

  const changes: Array<[string, (s: ResolvedSpec) => ResolvedSpec]> = [
    ['caddy version', (s) => ({ ...s, caddyVersion: 'v2.11.8' })],
    ['caddy pseudo-version', (s) => ({ ...s, caddyVersion: 'v2.11.9-0.20250101000000-abcdefabcdef' })],
    ['os', (s) => ({ ...s, os: 'freebsd' })],
    ['arch', (s) => ({ ...s, arch: 'arm64' })],
    ['arm added', (s) => ({ ...s, arch: 'arm', arm: '7' })],
    ['arm 6 instead of 7', (s) => ({ ...s, arch: 'arm', arm: '6' })],
    ['a plugin version', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 0 ? { ...p, version: 'v0.2.2' } : p)) })],
    ['a plugin version dropped', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 2 ? { module: p.module, ...(p.replace ? { replace: p.replace } : {}) } : p)) })],
    ['a plugin added', (s) => ({ ...s, plugins: [...s.plugins, { module: 'github.com/x/y', version: 'v1.0.0' }] })],
    ['a plugin removed', (s) => ({ ...s, plugins: s.plugins.slice(1) })],
    ['no plugins', (s) => ({ ...s, plugins: [] })],
    ['a plugin module path', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 0 ? { ...p, module: 'github.com/caddy-dns/route53' } : p)) })],
    [
      'replacement version',
      (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 2 ? { ...p, replace: { kind: 'module' as const, module: 'github.com/fork/caddy-security', version: 'v1.1.31' } } : p)) }),
    ],
    [
      'replacement module',
      (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 2 ? { ...p, replace: { kind: 'module' as const, module: 'github.com/other/caddy-security', version: 'v1.1.30' } } : p)) }),
    ],
    ['replacement removed', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 2 ? { module: p.module, version: p.version! } : p)) })],
    ['replacement added', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 0 ? { ...p, replace: { kind: 'module' as const, module: 'github.com/fork/cloudflare', version: 'v0.2.1' } } : p)) })],
    ['replacement path', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 3 ? { ...p, replace: { kind: 'path' as const, path: '/src/plugin2' } } : p)) })],
    ['replacement path vs module', (s) => ({ ...s, plugins: s.plugins.map((p, i) => (i === 3 ? { ...p, replace: { kind: 'module' as const, module: '/src/plugin', version: '' } } : p)) })],
    ['go version', (s) => ({ ...s, toolchain: { ...s.toolchain, go: 'go1.26.7' } })],
    ['xcaddy version', (s) => ({ ...s, toolchain: { ...s.toolchain, xcaddy: 'v0.4.4' } })],
    ['build flags', (s) => ({ ...s, toolchain: { ...s.toolchain, flags: '-trimpath' } })],
    ['empty build flags', (s) => ({ ...s, toolchain: { ...s.toolchain, flags: '' } })],
  ];

  for (const [name, change] of changes) {
    test(`changes with the ${name}`, () => {
      const s = spec();
      const changed = change(s);
      assert.notDeepEqual(changed, s, 'the change really changes something');
      assert.notEqual(cacheKey(changed), cacheKey(s));
      assert.ok(isCacheKey(cacheKey(changed)));
    });
  }

  test('all the changed specs have distinct keys', () => {
    const keys = new Set([cacheKey(spec()), ...changes.map(([, c]) => cacheKey(c(spec())))]);
    assert.equal(keys.size, changes.length + 1);
  });

  test('moving a version between plugins changes the key', () => {
    const base = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', toolchain: spec().toolchain };
    const a: ResolvedSpec = { ...base, plugins: [{ module: 'example.com/a', version: 'v1.0.0' }, { module: 'example.com/b' }] };
    const b: ResolvedSpec = { ...base, plugins: [{ module: 'example.com/a' }, { module: 'example.com/b', version: 'v1.0.0' }] };
    assert.notEqual(cacheKey(a), cacheKey(b));
  });

  test('no two different random specs share a key', () => {
    const arb = fc.record({
      caddyVersion: fc.constantFrom('v2.10.0', 'v2.11.9'),
      os: fc.constantFrom('linux', 'darwin'),
      arch: fc.constantFrom('amd64', 'arm64'),
      plugins: fc.uniqueArray(fc.record({ module: fc.constantFrom('example.com/a', 'example.com/b', 'example.com/c'), version: fc.constantFrom('v1.0.0', 'v1.0.1') }), {
        selector: (p) => p.module,
        maxLength: 3,
      }),
      toolchain: fc.record({ go: fc.constantFrom('go1.26.7', 'go1.26.8'), xcaddy: fc.constant('v0.4.5'), flags: fc.constant('') }),
    });
    fc.assert(
      fc.property(arb, arb, (a, b) => {
        // Semantic equality, computed independently of canonicalJson.
        const set = (x: typeof a) =>
          x.plugins
            .map((p) => `${p.module}@${p.version}`)
            .sort()
            .join(',');
        const same = a.caddyVersion === b.caddyVersion && a.os === b.os && a.arch === b.arch && a.toolchain.go === b.toolchain.go && set(a) === set(b);
        assert.equal(cacheKey(a) === cacheKey(b), same);
      }),
      { numRuns: 500 },
    );
  });
});

describe('isCacheKey', () => {
  test('accepts exactly 64 lowercase hex', () => {
    assert.ok(isCacheKey('0'.repeat(64)));
    assert.ok(isCacheKey('abcdef0123456789'.repeat(4)));
    assert.ok(!isCacheKey('0'.repeat(63)));
    assert.ok(!isCacheKey('0'.repeat(65)));
    assert.ok(!isCacheKey('A'.repeat(64)));
    assert.ok(!isCacheKey('g'.repeat(64)));
    assert.ok(!isCacheKey(`${'0'.repeat(63)}\n`));
    assert.ok(!isCacheKey(`../${'0'.repeat(61)}`));
    assert.ok(!isCacheKey(''));
  });
});

describe('canonicalJson', () => {
  test('sorts keys recursively, keeps array order, drops undefined, keeps null', () => {
    const v = { b: 1, a: { d: [{ z: 1, y: 2 }, 3, 'x'], c: null, e: undefined }, '0': true };
    assert.equal(canonicalJson(v), '{"0":true,"a":{"c":null,"d":[{"y":2,"z":1},3,"x"]},"b":1}');
  });

  test('equal for objects that differ only in key order', () => {
    assert.equal(canonicalJson({ x: { q: 1, p: [{ n: 1, m: 2 }] }, w: 2 }), canonicalJson({ w: 2, x: { p: [{ m: 2, n: 1 }], q: 1 } }));
    assert.notEqual(canonicalJson({ a: [1, 2] }), canonicalJson({ a: [2, 1] }));
  });

  test('an own "__proto__" key is kept as data, not turned into a prototype', () => {
    const v = JSON.parse('{"b":1,"__proto__":{"x":1}}') as unknown;
    assert.equal(canonicalJson(v), '{"__proto__":{"x":1},"b":1}');
    assert.notEqual(canonicalJson(v), canonicalJson({ b: 1 }));
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });

  test('scalars and strings print as JSON', () => {
    assert.equal(canonicalJson('a"b'), '"a\\"b"');
    assert.equal(canonicalJson(1.5), '1.5');
    assert.equal(canonicalJson(null), 'null');
    assert.equal(canonicalJson([]), '[]');
    assert.equal(canonicalJson({}), '{}');
  });

  test('matches JSON.parse round trip and sorted order for random values', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const out = canonicalJson(v);
        // Same data.
        assert.deepEqual(JSON.parse(out), JSON.parse(JSON.stringify(v)));
        // Every object's keys are sorted (JS always puts integer-like keys first, ascending;
        // that order is deterministic too, so canonical output stays canonical).
        const check = (x: unknown): void => {
          if (Array.isArray(x)) x.forEach(check);
          else if (x && typeof x === 'object') {
            const keys = Object.keys(x).filter((k) => !/^(0|[1-9][0-9]*)$/.test(k) || Number(k) >= 2 ** 32 - 1);
            assert.deepEqual(keys, [...keys].sort());
            Object.values(x).forEach(check);
          }
        };
        check(JSON.parse(out));
        // Idempotent, and independent of insertion order.
        assert.equal(canonicalJson(JSON.parse(out)), out);
        assert.equal(canonicalJson(reverseKeys(v)), out);
      }),
      { numRuns: 300 },
    );
  });
});

describe('canonicalSpec', () => {
  test('sorts plugins by module path (code-point order) and keeps everything else', () => {
    const s = spec();
    const c = canonicalSpec({ ...s, plugins: [{ module: 'github.com/b/x' }, { module: 'github.com/B/x' }, { module: 'github.com/a/x' }] });
    assert.deepEqual(
      c.plugins.map((p) => p.module),
      ['github.com/B/x', 'github.com/a/x', 'github.com/b/x'],
    );
    assert.equal(c.caddyVersion, s.caddyVersion);
    assert.deepEqual(c.toolchain, s.toolchain);
  });
});

const PINNED_KEY = 'bf79dfd4c8803e00bdf7709d4b76c3f974ec601e378d9e44865accb93acd80ff';
/** spec() written out by hand in canonical form: sorted keys, plugins sorted by module. */
const PINNED_CANONICAL =
  '{"arch":"amd64","caddyVersion":"v2.11.9","os":"linux","plugins":[' +
  '{"module":"github.com/caddy-dns/cloudflare","version":"v0.2.1"},' +
  '{"module":"github.com/greenpau/caddy-security","replace":{"kind":"module","module":"github.com/fork/caddy-security","version":"v1.1.30"},"version":"v1.1.29"},' +
  '{"module":"github.com/local/plugin","replace":{"kind":"path","path":"/src/plugin"}},' +
  '{"module":"github.com/mholt/caddy-l4","version":"v0.0.0-20250102000000-abcdefabcdef"}],' +
  '"toolchain":{"flags":"-trimpath -ldflags=-s -w","go":"go1.26.8","xcaddy":"v0.4.5"}}';
