/**
 * Hostile-input generators (fast-check) and the safety oracle shared by the fuzz tests
 * (test/unit/fuzz-spec.test.ts over the parser, test/integration/security.test.ts over HTTP).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { xcaddyArgs } from '../../src/build/index.js';
import {
  CADDY_MODULE,
  SpecError,
  classifyVersionQuery,
  isLocalPath,
  modulePathError,
  parseBuildRequest,
  type BuildRequest,
  type ParseOptions,
  type ResolvedSpec,
} from '../../src/spec/index.js';

/** Pieces attackers like: option injection, shell syntax, traversal, CRLF, NUL, unicode look-alikes. */
export const HOSTILE_PIECES = [
  '-', '--with=evil', '-o', '--output=/tmp/x', ';', '&&', '|', '$(id)', '`id`', '${IFS}', ' ', '\t', '\n', '\r\n', '\0', '%00', '%0d%0a',
  '..', '../', '..%2f', '%2e%2e%2f', '//', '/etc/passwd', 'C:\\Windows', '\\', '@', '=', '==', '@@', '"', "'", '<', '>', '*', '?', '#',
  '\u200b', '\u202e', 'а', 'é', '\ud83d\ude00', '__proto__', 'constructor', 'prototype', 'latest', 'v1.2.3', 'v2.11.9', 'master', 'none', 'upgrade',
  'github.com/', 'github.com/x/y', 'golang.org/x/', CADDY_MODULE, 'x', 'v', '.lock', 'com1', '~1', '/v1', '/v0',
];
export const piece = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_PIECES) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 2, arbitrary: fc.stringMatching(/^[a-z0-9./@=_~-]{0,40}$/) },
);
/** A hostile string: a few pieces glued together, sometimes very long. */
export const hostileString = fc.oneof(
  { weight: 10, arbitrary: fc.array(piece, { maxLength: 5 }).map((a) => a.join('')) },
  { weight: 1, arbitrary: fc.tuple(piece, fc.integer({ min: 100, max: 3000 })).map(([p, n]) => (p || 'a').repeat(Math.ceil(n / Math.max(1, p.length)))) },
);
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined)) },
  { weight: 1, arbitrary: fc.array(hostileString, { maxLength: 3 }) },
  { weight: 1, arbitrary: fc.dictionary(hostileString, hostileString, { maxKeys: 3 }) },
);
const os = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('linux', 'windows', 'darwin', 'freebsd', 'plan9', 'ios', 'js') }, { weight: 1, arbitrary: hostileValue });
const arch = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('amd64', 'arm64', 'arm', '386', 'wasm', 'riscv64') }, { weight: 1, arbitrary: hostileValue });
const plugin = fc.record(
  { module: fc.oneof(hostileValue, fc.constantFrom('github.com/mholt/caddy-l4', 'github.com/x/y')), version: hostileValue, replace: hostileValue, extra: hostileValue },
  { requiredKeys: [] },
);
const ident = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/);
const validModule = fc.tuple(fc.constantFrom('github.com', 'golang.org', 'example.com', 'gitlab.com'), ident, ident).map(([d, a, b]) => `${d}/${a}/${b}`);
const validVersion = fc.constantFrom('v1.2.3', 'latest', 'master', 'v0.0.0-20240101000000-abcdefabcdef', '>=v1.0.0', 'v2', 'abc1234');
/** Valid requests (mostly accepted by the parser). */
export const validSpec = fc.record(
  {
    caddyVersion: fc.constantFrom('v2.11.9', 'latest', '2.10', 'v2', 'master'),
    os: fc.constantFrom('linux', 'windows', 'darwin', 'freebsd'),
    arch: fc.constantFrom('amd64', 'arm64'),
    plugins: fc.uniqueArray(fc.record({ module: validModule, version: validVersion }, { requiredKeys: ['module'] }), { selector: (p) => p.module, maxLength: 3 }),
  },
  { requiredKeys: ['os', 'arch'] },
);
/** A valid request with one hostile piece spliced into one of its strings. */
export const mutantSpec = fc.tuple(validSpec, fc.nat(), piece, fc.nat()).map(([spec, which, p, at]) => {
  const s = JSON.parse(JSON.stringify(spec)) as Record<string, any>;
  const slots: Array<[Record<string, any>, string]> = [[s, 'caddyVersion'], [s, 'os'], [s, 'arch']];
  for (const pl of s.plugins ?? []) slots.push([pl, 'module'], [pl, 'version'], [pl, 'replace']);
  const [obj, key] = slots[which % slots.length]!;
  const cur = typeof obj[key] === 'string' ? (obj[key] as string) : '';
  const i = at % (cur.length + 1);
  obj[key] = cur.slice(0, i) + p + cur.slice(i);
  return s;
});
/** Request bodies shaped like the real thing, with hostile values in any field. */
export const wildSpec = fc.record(
  {
    caddyVersion: fc.oneof(hostileValue, fc.constantFrom('v2.11.9', 'latest', '2.10', 'v3.0.0', 'master')),
    os,
    arch,
    arm: fc.oneof(hostileValue, fc.constantFrom('5', '6', '7', 7, '8')),
    plugins: fc.oneof({ weight: 5, arbitrary: fc.array(plugin, { maxLength: 4 }) }, { weight: 1, arbitrary: hostileValue }),
    __proto__: hostileValue,
    unknown: hostileValue,
  },
  { requiredKeys: [] },
);
export const hostileSpec = fc.oneof(wildSpec, mutantSpec);

/** The checks a request that passed the parser must satisfy before it may reach xcaddy. */
export function assertSafeRequest(r: BuildRequest, opts: ParseOptions): void {
  const printable = /^[\x21-\x7e]+$/;
  assert.ok(r.caddyVersion === 'latest' || !('error' in classifyVersionQuery(r.caddyVersion)), r.caddyVersion);
  assert.equal(opts.platforms.check(r.os, r.arch), null);
  assert.ok(r.plugins.length <= opts.maxPlugins);
  assert.equal(new Set(r.plugins.map((p) => p.module)).size, r.plugins.length, 'no duplicate modules');
  for (const p of r.plugins) {
    assert.equal(modulePathError(p.module), null, p.module);
    assert.notEqual(p.module, CADDY_MODULE);
    if (p.version !== undefined) assert.ok(!('error' in classifyVersionQuery(p.version)), p.version);
    if (p.replace !== undefined) {
      assert.ok(opts.allowLocalReplace || !isLocalPath(p.replace), `local replacement over HTTP: ${p.replace}`);
      assert.match(p.replace, printable);
    }
  }
  // As the runner would call xcaddy once versions are pinned: no argument an option parser or a
  // shell could misread.
  const resolved: ResolvedSpec = {
    caddyVersion: r.caddyVersion === 'latest' ? 'v2.11.9' : r.caddyVersion,
    os: r.os,
    arch: r.arch,
    ...(r.arm ? { arm: r.arm } : {}),
    plugins: r.plugins.map((p) => ({ module: p.module, version: 'v1.0.0', ...(p.replace ? { replace: { kind: 'module' as const, module: p.replace.split('@')[0]!, version: 'v1.0.0' } } : {}) })),
    toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'x' },
  };
  const args = xcaddyArgs(resolved, '/tmp/out');
  args.forEach((a, i) => {
    assert.match(a, printable, `argument ${i} ${JSON.stringify(a)}`);
    const isFlag = a === '--with' || a === '--output';
    if (!isFlag) assert.ok(!a.startsWith('-'), `argument ${i} starts with "-": ${a}`);
    assert.doesNotMatch(a, /[;&|`$<>"'\\*?\s]/, `shell metacharacter in ${a}`);
  });
}

/** Runs the parser; returns the request, or null when refused with a SpecError (any other error fails). */
export function parseOrRefuse(input: unknown, opts: ParseOptions): BuildRequest | null {
  try {
    return parseBuildRequest(input, opts);
  } catch (err) {
    if (!(err instanceof SpecError)) throw new Error(`not a SpecError: ${String(err)} for ${JSON.stringify(input)?.slice(0, 300)}`);
    assert.equal(err.code, 'invalid_spec');
    assert.ok(err.message.length > err.field.length + 2);
    return null;
  }
}

/** Query parameters of the compat download API with hostile values. */
export const hostileQuery = fc.dictionary(
  fc.constantFrom('os', 'arch', 'arm', 'version', 'p', 'idempotency', '__proto__', 'x'),
  fc.oneof(hostileString, fc.array(fc.oneof(hostileString, fc.constantFrom('github.com/mholt/caddy-l4@v0.1.2', `${CADDY_MODULE}@v2.11.9`, 'github.com/x/y=github.com/z/y@v1.0.0')), { maxLength: 4 })),
  { maxKeys: 6 },
);
