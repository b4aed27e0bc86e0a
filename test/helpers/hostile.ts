/**
 * Hostile-input generators (fast-check) and the safety oracle shared by the fuzz tests
 * (test/unit/fuzz-spec.test.ts over the parser, test/integration/security.test.ts over HTTP).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { xcaddyArgs } from '../../src/runner/index.js';
import { readFileSync } from 'node:fs';
import { CADDY_MODULE, SpecError, parseBuildRequest, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';
import type { ParseOptions } from '../../src/request/parse.js';

/** Pieces attackers like: option injection, shell syntax, traversal, CRLF, NUL, unicode look-alikes. */
export const HOSTILE_PIECES = [
  '-',
  '--with=evil',
  '-o',
  '--output=/tmp/x',
  ';',
  '&&',
  '|',
  '$(id)',
  '`id`',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion, as an attacker would send it
  '${IFS}',
  ' ',
  '\t',
  '\n',
  '\r\n',
  '\0',
  '%00',
  '%0d%0a',
  '..',
  '../',
  '..%2f',
  '%2e%2e%2f',
  '//',
  '/etc/passwd',
  'C:\\Windows',
  '\\',
  '@',
  '=',
  '==',
  '@@',
  '"',
  "'",
  '<',
  '>',
  '*',
  '?',
  '#',
  '\u200b',
  '\u202e',
  'а',
  'é',
  '\ud83d\ude00',
  '__proto__',
  'constructor',
  'prototype',
  'latest',
  'v1.2.3',
  'v2.11.9',
  'master',
  'none',
  'upgrade',
  'github.com/',
  'github.com/x/y',
  'golang.org/x/',
  CADDY_MODULE,
  'x',
  'v',
  '.lock',
  'com1',
  '~1',
  '/v1',
  '/v0',
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
  const slots: Array<[Record<string, any>, string]> = [
    [s, 'caddyVersion'],
    [s, 'os'],
    [s, 'arch'],
  ];
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

/**
 * The oracle: what a request that passed the parser must satisfy before it may reach xcaddy.
 * Written from Go's rules (golang.org/ref/mod: module paths, version queries), not with the
 * project's grammar (no classifyVersionQuery / modulePathError / isLocalPath here), so a bug in
 * that grammar cannot also hide in the check. It is a safety check, stricter where in doubt.
 */
const PRINTABLE = /^[\x21-\x7e]+$/;
/** A module path: a lower-case first element with a dot (not at its ends), then path elements of Go's allowed characters, none starting or ending with ".". */
const ORACLE_MODULE = /^(?=[^/]*\.)[a-z0-9-](?:[a-z0-9.-]*[a-z0-9-])?(?:\/[A-Za-z0-9_~-](?:[A-Za-z0-9._~-]*[A-Za-z0-9_~-])?)*$/;
/** An exact semantic version (vMAJOR.MINOR.PATCH, a pre-release and build tag allowed): what a resolved build pins. */
const ORACLE_EXACT = /^v(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
/** A version query Go accepts after "@": a keyword, a (prefix of a) version with an optional comparison, or a revision (branch, tag, commit). */
const ORACLE_QUERY = /^(?:latest|upgrade|patch|(?:<|<=|>|>=)?v[0-9]+(?:\.[0-9]+){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?|[A-Za-z0-9][A-Za-z0-9._/-]*)$/;
export const ORACLE_CADDY_MODULE = 'github.com/caddyserver/caddy/v2';
/** The GOOS/GOARCH pairs of `go tool dist list -json` (the fixture), read here rather than through PlatformSet. */
const DIST_PAIRS: ReadonlySet<string> = new Set(
  (JSON.parse(readFileSync(new URL('../unit/fixtures/dist-list.json', import.meta.url), 'utf8')) as Array<{ GOOS: string; GOARCH: string }>).map((p) => `${p.GOOS}/${p.GOARCH}`),
);
/** Pairs Go lists but Caddy cannot be built for with CGO_ENABLED=0 (Caddy's own install docs): never accepted. */
const NOT_FOR_CADDY = /^(?:plan9\/|ios\/|js\/|wasip1\/|android\/(?:386|amd64|arm)$)/;

function oracleModule(m: string, what: string): void {
  assert.equal(typeof m, 'string', what);
  assert.match(m, ORACLE_MODULE, `${what}: not a module path: ${JSON.stringify(m)}`);
  assert.ok(m.length <= 500, `${what}: too long`);
  assert.ok(!m.startsWith('-'), `${what}: starts with "-": ${m}`);
  for (const el of m.split('/')) {
    assert.ok(el !== '.' && el !== '..', `${what}: traversal in ${m}`);
    // Go refuses names Windows reserves (con, nul, com1, ..., with any extension) and short names (x~1).
    assert.doesNotMatch(el.split('.')[0]!, /^(?:con|prn|aux|nul|com[1-9]|lpt[1-9])$|~[0-9]+$/i, `${what}: a Windows reserved name in ${m}`);
  }
}

function oracleQuery(v: string, what: string): void {
  assert.equal(typeof v, 'string', what);
  assert.match(v, PRINTABLE, `${what}: not printable ASCII: ${JSON.stringify(v)}`);
  assert.ok(!v.startsWith('-'), `${what}: starts with "-": ${v}`);
  assert.match(v, ORACLE_QUERY, `${what}: not a version query: ${JSON.stringify(v)}`);
  assert.notEqual(v, 'none', `${what}: "none" removes a module, it builds nothing`);
  // Git's rules for a ref name (a branch or tag given as a revision).
  assert.ok(!v.includes('..') && !v.includes('@') && !v.endsWith('/') && !v.endsWith('.lock') && !v.includes('//'), `${what}: ${v}`);
  assert.ok(v.length <= 200, `${what}: too long`);
}

/** True for what Go and the server's file system would take as a local directory. */
function looksLocal(s: string): boolean {
  return /^(?:\/|\.|~|[A-Za-z]:|\\)/.test(s) || s.includes('\\');
}

export function assertSafeRequest(r: BuildRequest, opts: ParseOptions): void {
  if (r.caddyVersion !== 'latest') oracleQuery(r.caddyVersion, 'caddyVersion');
  assert.ok(DIST_PAIRS.has(`${r.os}/${r.arch}`), `not a Go platform: ${r.os}/${r.arch}`);
  assert.doesNotMatch(`${r.os}/${r.arch}`, NOT_FOR_CADDY, 'a platform Caddy cannot be built for');
  if (r.arm !== undefined) assert.ok(r.arch === 'arm' && /^[5-7]$/.test(String(r.arm)), `GOARM ${String(r.arm)} for ${r.arch}`);
  assert.ok(r.plugins.length <= opts.maxPlugins);
  assert.equal(new Set(r.plugins.map((p) => p.module)).size, r.plugins.length, 'no duplicate modules');
  for (const p of r.plugins) {
    oracleModule(p.module, 'module');
    assert.notEqual(p.module, ORACLE_CADDY_MODULE);
    if (p.version !== undefined) oracleQuery(p.version, `version of ${p.module}`);
    if (p.replace !== undefined) {
      assert.match(p.replace, PRINTABLE, `replacement ${JSON.stringify(p.replace)}`);
      assert.ok(!p.replace.startsWith('-'), `replacement starts with "-": ${p.replace}`);
      if (looksLocal(p.replace)) assert.ok(opts.allowLocalReplace, `local replacement over HTTP: ${p.replace}`);
      else {
        const [mod, ver, ...rest] = p.replace.split('@');
        assert.equal(rest.length, 0, `replacement ${p.replace}`);
        oracleModule(mod!, 'replacement');
        if (ver !== undefined) oracleQuery(ver, `replacement version ${p.replace}`);
      }
    }
  }
  // As the runner would call xcaddy once the resolver has pinned every version: an exact version
  // in the request is used as it is; a query (latest, a branch, >=v1) is pinned to an exact one.
  // No argument an option parser or a shell could misread.
  const pin = (v: string | undefined) => (v !== undefined && ORACLE_EXACT.test(v) ? v : 'v1.0.0');
  const resolved: ResolvedSpec = {
    caddyVersion: ORACLE_EXACT.test(r.caddyVersion) ? r.caddyVersion : 'v2.11.9',
    os: r.os,
    arch: r.arch,
    ...(r.arm ? { arm: r.arm } : {}),
    plugins: r.plugins.map((p) => {
      const [rmod, rver] = (p.replace ?? '').split('@');
      return { module: p.module, version: pin(p.version), ...(p.replace ? { replace: { kind: 'module' as const, module: rmod!, version: pin(rver) } } : {}) };
    }),
    toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'x' },
  };
  const args = xcaddyArgs(resolved, '/tmp/out');
  args.forEach((a, i) => {
    assert.match(a, PRINTABLE, `argument ${i} ${JSON.stringify(a)}`);
    const isFlag = a === '--with' || a === '--output';
    if (!isFlag) assert.ok(!a.startsWith('-'), `argument ${i} starts with "-": ${a}`);
    assert.doesNotMatch(a, /[;&|`$<>"'\\*?\s]/, `shell metacharacter in ${a}`);
  });
  // Every plugin reaches xcaddy as exactly one "--with" and its own argument.
  assert.equal(args.filter((a) => a === '--with').length, r.plugins.length, 'one --with per plugin');
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

/** Valid compat query parameters (mostly accepted): a platform, maybe a version, plugins as `p=module[@version][=replacement]`. */
export const validQuery = fc.record(
  {
    os: fc.constantFrom('linux', 'windows', 'darwin', 'freebsd'),
    arch: fc.constantFrom('amd64', 'arm64'),
    version: fc.constantFrom('v2.11.9', 'latest', 'v2.10.0'),
    p: fc.uniqueArray(
      fc.tuple(fc.constantFrom('github.com/mholt/caddy-l4', 'github.com/x/y', 'example.com/a/b', 'gitlab.com/c/d'), fc.constantFrom('', '@v0.1.2', '@latest', '@master')).map(([m, v]) => m + v),
      { selector: (s) => s.split('@')[0], maxLength: 3 },
    ),
  },
  { requiredKeys: ['os', 'arch'] },
);

/**
 * Requests aimed at a policy (allow "catalog" and github.com/myorg/*, deny github.com/myorg/evil):
 * valid specs whose plugins are allowed, denied or unknown, some with module replacements, so that
 * requests the policy lets through (with plugins, with replacements) are a stated share.
 */
export const policySpec = fc.record({
  caddyVersion: fc.constantFrom('v2.11.9', 'v2.8.4', 'v2.7.6', 'latest'),
  os: fc.constant('linux'),
  arch: fc.constantFrom('amd64', 'arm64'),
  plugins: fc.uniqueArray(
    fc.record(
      {
        module: fc.constantFrom('github.com/mholt/caddy-l4', 'github.com/myorg/a', 'github.com/myorg/b', 'github.com/myorg/evil', 'github.com/other/x'),
        version: fc.constantFrom('v0.1.2', 'v1.0.0', 'latest'),
        replace: fc.constantFrom('github.com/myorg/fork@v1.0.0', 'github.com/myorg/fork'),
      },
      { requiredKeys: ['module'] },
    ),
    { selector: (p) => p.module, minLength: 1, maxLength: 3 },
  ),
});

/** True when `f` throws (an oracle check failed). */
const fails = (f: () => void): boolean => {
  try {
    f();
    return false;
  } catch {
    return true;
  }
};
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;

/**
 * The HTTP fuzz's oracle for a request body (docs/API: a JSON object with caddyVersion, os, arch,
 * arm and plugins [{module, version, replace}], unknown fields refused), independent of the
 * project's parser: true when the body must be refused (4xx, nothing resolved). False means it
 * cannot rule the body out (it may be valid): such inputs are not sent.
 */
export function oracleMustRefuseSpec(v: unknown, opts: { maxPlugins: number } = { maxPlugins: 50 }): boolean {
  if (!isPlainObject(v)) return true;
  if (Object.keys(v).some((k) => !['caddyVersion', 'os', 'arch', 'arm', 'plugins'].includes(k))) return true;
  if (typeof v.os !== 'string' || typeof v.arch !== 'string') return true;
  const pair = `${v.os}/${v.arch}`;
  if (!DIST_PAIRS.has(pair) || NOT_FOR_CADDY.test(pair)) return true;
  if (v.caddyVersion !== undefined) {
    if (typeof v.caddyVersion !== 'string') return true;
    const cv = /^[0-9]/.test(v.caddyVersion) ? `v${v.caddyVersion}` : v.caddyVersion;
    if (cv !== '' && cv !== 'latest' && fails(() => oracleQuery(cv, 'caddyVersion'))) return true;
  }
  if (v.arm !== undefined) {
    if (v.arch !== 'arm') return true;
    if (!['5', '6', '7', 5, 6, 7].includes(v.arm as string | number)) return true;
  }
  if (v.plugins === undefined) return false;
  if (!Array.isArray(v.plugins) || v.plugins.length > opts.maxPlugins) return true;
  const seen = new Set<string>();
  for (const p of v.plugins as unknown[]) {
    if (!isPlainObject(p)) return true;
    if (Object.keys(p).some((k) => !['module', 'version', 'replace'].includes(k))) return true;
    if (typeof p.module !== 'string' || fails(() => oracleModule(p.module as string, 'module'))) return true;
    if (p.module === ORACLE_CADDY_MODULE || seen.has(p.module)) return true;
    seen.add(p.module);
    // An empty version or replacement may be read as none given: cannot rule out.
    if (p.version !== undefined && p.version !== '' && (typeof p.version !== 'string' || fails(() => oracleQuery(p.version as string, 'version')))) return true;
    if (p.replace !== undefined && p.replace !== '') {
      if (typeof p.replace !== 'string' || looksLocal(p.replace)) return true;
      const [mod, ver, ...rest] = p.replace.split('@');
      if (rest.length > 0 || fails(() => oracleModule(mod!, 'replacement'))) return true;
      if (ver !== undefined && fails(() => oracleQuery(ver, 'replacement version'))) return true;
    }
  }
  return false;
}

/** The same for a POST body as it arrives: text that is not JSON must be refused; JSON goes to the spec oracle. */
export function oracleMustRefuseBody(_contentType: string, text: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return true;
  }
  return oracleMustRefuseSpec(v);
}

/**
 * The same for the compat download query (caddyserver.com's API: os, arch, arm, version, and
 * repeated p=module[@version][=replacement[@version]]), read independently of downloadInput.
 */
export function oracleMustRefuseQuery(q: Record<string, string | string[]>): boolean {
  const one = (k: string): string | undefined | null => {
    const v = q[k];
    if (v === undefined) return undefined;
    if (Array.isArray(v)) return v.length === 1 ? v[0]! : null; // null: repeated, cannot rule out
    return v;
  };
  const os = one('os');
  const arch = one('arch');
  const arm = one('arm');
  const version = one('version');
  if (os === null || arch === null || arm === null || version === null) return false;
  const spec: Record<string, unknown> = { ...(os !== undefined ? { os } : {}), ...(arch !== undefined ? { arch } : {}), ...(arm ? { arm } : {}), ...(version ? { caddyVersion: version } : {}) };
  const plugins: Array<Record<string, string>> = [];
  const seen = new Map<string, string>();
  const ps = q.p === undefined ? [] : Array.isArray(q.p) ? q.p : [q.p];
  for (const raw of ps) {
    const s = raw.trim();
    if (s === '') continue;
    const eq = s.indexOf('=');
    const left = eq < 0 ? s : s.slice(0, eq);
    const right = eq < 0 ? undefined : s.slice(eq + 1);
    const [module, ver, ...rest] = left.split('@');
    if (rest.length > 0) return true;
    if (module === ORACLE_CADDY_MODULE) return false; // Caddy's own version given as p: cannot rule out
    const p: Record<string, string> = { module: module! };
    if (ver !== undefined) p.version = ver;
    if (right !== undefined) p.replace = right;
    const canon = JSON.stringify(p);
    if (seen.has(module!)) {
      if (seen.get(module!) !== canon) return true;
      continue;
    }
    seen.set(module!, canon);
    plugins.push(p);
  }
  return oracleMustRefuseSpec({ ...spec, plugins });
}
