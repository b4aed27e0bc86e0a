// Unit tests of small pure pieces: HTTP Range parsing, the build.log format, the xcaddy command
// line and binary names, and the allowlisted toolchain environment. No Go here: the checks with
// the real toolchain are in test/integration/toolchain.test.ts.
//   node --import tsx --test test/unit/misc.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseRange } from '../../src/api/artifact.js';
import { binaryName, xcaddyArgs, type LogLine } from '../../src/build/index.js';
import { formatLog, parseLog } from '../../src/service/logformat.js';
import { PlatformSet, SpecError, cacheKey, parseBuildRequest, type BuildRequest, type ResolvedSpec } from '../../src/spec/index.js';
import { ENV_ALLOWLIST, Toolchain } from '../../src/toolchain/index.js';
import { assertClean, restoreEnv, setHostileEnv } from '../helpers/hostile-env.js';

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

describe('xcaddyArgs and binaryName', () => {
  const spec: ResolvedSpec = {
    caddyVersion: 'v2.11.9',
    os: 'linux',
    arch: 'amd64',
    plugins: [
      { module: 'github.com/caddy-dns/cloudflare', version: 'v0.2.1' },
      { module: 'github.com/greenpau/caddy-security', version: 'v1.1.29', replace: { kind: 'module', module: 'github.com/fork/caddy-security', version: 'v1.1.30' } },
      { module: 'github.com/mholt/caddy-l4', replace: { kind: 'module', module: 'github.com/fork/caddy-l4', version: 'v0.0.0-20250102000000-abcdefabcdef' } },
      { module: 'github.com/local/plugin', replace: { kind: 'path', path: '/src/plugin' } },
      { module: 'github.com/local/rel', version: 'v1.0.0', replace: { kind: 'path', path: '../rel' } },
    ],
    toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: '' },
  };

  test('builds the exact argument array', () => {
    assert.deepEqual(xcaddyArgs(spec, '/tmp/w/caddy_linux_amd64'), [
      'build',
      'v2.11.9',
      '--output',
      '/tmp/w/caddy_linux_amd64',
      '--with',
      'github.com/caddy-dns/cloudflare@v0.2.1',
      '--with',
      'github.com/greenpau/caddy-security@v1.1.29=github.com/fork/caddy-security@v1.1.30',
      '--with',
      'github.com/local/plugin=/src/plugin',
      '--with',
      'github.com/local/rel@v1.0.0=../rel',
      '--with',
      'github.com/mholt/caddy-l4=github.com/fork/caddy-l4@v0.0.0-20250102000000-abcdefabcdef',
    ]);
  });

  test('one key, one command line: every order of the plugins gives the same arguments, in the key order', () => {
    const permutations = <T>(xs: readonly T[]): T[][] => (xs.length <= 1 ? [[...xs]] : xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest])));
    const all = permutations(spec.plugins);
    assert.equal(all.length, 120);
    const want = xcaddyArgs(spec, 'out');
    for (const plugins of all) {
      const other = { ...spec, plugins };
      assert.equal(cacheKey(other), cacheKey(spec));
      assert.deepEqual(xcaddyArgs(other, 'out'), want);
    }
    const withs = want.filter((_, i) => want[i - 1] === '--with').map((w) => w.split(/[@=]/)[0]!);
    assert.deepEqual(withs, [...withs].sort(), 'the --with flags follow the sorted module paths');
  });

  test('no plugins: just build, version and output', () => {
    assert.deepEqual(xcaddyArgs({ ...spec, plugins: [] }, 'out'), ['build', 'v2.11.9', '--output', 'out']);
  });

  const FIXED = new Set(['--output', '--with']);
  const checkArgs = (args: string[], output: string) => {
    assert.equal(args[0], 'build');
    assert.equal(args[2], '--output');
    assert.equal(args[3], output);
    for (const [i, a] of args.entries()) {
      if (FIXED.has(a)) {
        assert.ok(i === 2 || (i >= 4 && i % 2 === 0), `flag ${a} at ${i}`);
        continue;
      }
      assert.ok(!a.startsWith('-'), `argument ${i} looks like a flag: ${a}`);
      assert.ok(!/[\s\0]/.test(a), `argument ${i} has whitespace: ${JSON.stringify(a)}`);
    }
    for (let i = 4; i < args.length; i += 2) assert.equal(args[i], '--with');
    assert.equal((args.length - 4) % 2, 0);
  };

  /** A stand-in resolver: every query pins to a fixed exact version, replacements keep their form. */
  const fakeResolve = (req: BuildRequest): ResolvedSpec => ({
    caddyVersion: req.caddyVersion.startsWith('v2.') && !req.caddyVersion.includes('<') ? req.caddyVersion : 'v2.11.9',
    os: req.os,
    arch: req.arch,
    ...(req.arm ? { arm: req.arm } : {}),
    plugins: req.plugins.map((p) => {
      if (!p.replace) return { module: p.module, version: p.version?.startsWith('v1.') ? p.version : 'v1.0.0' };
      if (p.replace.startsWith('/') || p.replace.startsWith('.')) return { module: p.module, replace: { kind: 'path' as const, path: p.replace } };
      const at = p.replace.indexOf('@');
      return {
        module: p.module,
        replace: { kind: 'module' as const, module: at === -1 ? p.replace : p.replace.slice(0, at), version: at === -1 ? 'v1.0.0' : p.replace.slice(at + 1) },
      };
    }),
    toolchain: spec.toolchain,
  });

  const platforms = PlatformSet.fromDistListJson(readFileSync(new URL('./fixtures/dist-list.json', import.meta.url), 'utf8'));

  test('no argument from an accepted request starts with "-" (request -> parse -> args)', () => {
    const piece = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('-', '--output', '--with', '-o', ' ', '=', '@', 'v1.2.3', 'main', 'github.com/', 'x', '/', '.', './', '../', '/etc'));
    const field = fc.array(piece, { maxLength: 4 }).map((a) => a.join(''));
    let accepted = 0;
    fc.assert(
      fc.property(fc.array(fc.record({ module: field, version: field, replace: field }), { minLength: 1, maxLength: 3 }), fc.boolean(), (raw, trusted) => {
        let req: BuildRequest;
        try {
          req = parseBuildRequest(
            { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: raw.map((p, i) => ({ ...p, module: `github.com/x${i}/${p.module}` })) },
            { platforms, maxPlugins: 50, allowLocalReplace: trusted },
          );
        } catch (err) {
          if (!(err instanceof SpecError)) throw err;
          return;
        }
        accepted++;
        checkArgs(xcaddyArgs(fakeResolve(req), '/w/caddy_linux_amd64'), '/w/caddy_linux_amd64');
      }),
      { numRuns: 3000 },
    );
    assert.ok(accepted > 0, 'some random requests were accepted');
  });

  test('no argument starts with "-" for typical accepted requests', () => {
    const requests = [
      {
        os: 'linux',
        arch: 'amd64',
        plugins: [
          { module: 'github.com/a/b', version: 'v1.2.3' },
          { module: 'github.com/c/d', version: 'main', replace: 'github.com/e/d@v1.0.0' },
        ],
      },
      { caddyVersion: '2.10.0', os: 'windows', arch: 'arm64', plugins: [{ module: 'github.com/x/y/v2', replace: 'github.com/z/y/v2' }] },
      { caddyVersion: 'master', os: 'linux', arch: 'arm', plugins: [{ module: 'example.com/p', version: '>=v1.2.0' }] },
    ];
    for (const r of requests) {
      const req = parseBuildRequest(r, { platforms, maxPlugins: 50, allowLocalReplace: false });
      checkArgs(xcaddyArgs(fakeResolve(req), 'caddy'), 'caddy');
    }
  });

  test('binaryName', () => {
    assert.equal(binaryName('linux', 'amd64'), 'caddy_linux_amd64');
    assert.equal(binaryName('linux', 'arm'), 'caddy_linux_arm');
    assert.equal(binaryName('darwin', 'arm64'), 'caddy_darwin_arm64');
    assert.equal(binaryName('windows', 'amd64'), 'caddy_windows_amd64.exe');
    assert.equal(binaryName('windows', 'arm64'), 'caddy_windows_arm64.exe');
    assert.equal(binaryName('freebsd', '386'), 'caddy_freebsd_386');
  });
});

describe('Toolchain environment allowlist', () => {
  test('the allowlist names no secrets or loader variables', () => {
    for (const name of ENV_ALLOWLIST) assert.doesNotMatch(name, /SECRET|TOKEN|KEY|PASS|AWS|REDIS|FAIRWAY|NODE|^LD_|^DYLD_|^(HTTPS?|ALL|NO)_PROXY$|^SSH_|^GIT_/i, name);
    assert.equal(new Set(ENV_ALLOWLIST).size, ENV_ALLOWLIST.length);
    // Names that make xcaddy escalate (setcap, sudo) or build something else than the key says.
    for (const name of [
      'XCADDY_SETCAP',
      'XCADDY_SUDO',
      'XCADDY_SKIP_BUILD',
      'XCADDY_SKIP_CLEANUP',
      'XCADDY_DEBUG',
      'XCADDY_RACE_DETECTOR',
      'XCADDY_GO_BUILD_FLAGS',
      'XCADDY_GO_MOD_FLAGS',
      'CADDY_VERSION',
    ]) {
      assert.ok(!(ENV_ALLOWLIST as readonly string[]).includes(name), name);
    }
  });

  test('env() on a stand-in toolchain: only allowlisted names, nothing from process.env', () => {
    const fake = Object.assign(Object.create(Toolchain.prototype) as object, {
      goBin: '/opt/go/bin/go',
      xcaddyBin: '/opt/xcaddy',
      cacheDir: '/var/cache/fairway',
      identity: { go: 'go1.26.8', xcaddy: 'v0.4.5' },
      opts: { xcaddyBin: '/opt/xcaddy', cacheDir: '/var/cache/fairway' },
    }) as unknown as Toolchain;
    setHostileEnv();
    try {
      const env = Toolchain.prototype.env.call(fake);
      assertClean(env);
      assert.equal(env.GOPROXY, undefined, 'GOPROXY only when configured');
      assert.equal(env.PATH, '/opt/go/bin:/usr/local/bin:/usr/bin:/bin');
      assert.equal(env.XCADDY_WHICH_GO, '/opt/go/bin/go');
      // The build identity's own empty dir (the sandbox binds it; tmp/ itself is the server's).
      assert.equal(env.HOME, '/var/cache/fairway/tmp/run');
      assert.equal(env.TMPDIR, '/var/cache/fairway/tmp/run');
      assert.equal(env.XCADDY_PRINT_VERSION, '0', 'xcaddy never runs the binary itself');
      assert.equal(env.GOPATH, '/var/cache/fairway/gopath');
      assert.equal(env.GOMODCACHE, '/var/cache/fairway/mod');
      assert.equal(env.GOCACHE, '/var/cache/fairway/build');

      // Extra values are filtered through the allowlist too.
      const extra = { GOOS: 'windows', GOARCH: 'arm', GOARM: '7', TMPDIR: '/w', AWS_SECRET_ACCESS_KEY: 'x', LD_PRELOAD: '/tmp/evil.so' };
      const env2 = Toolchain.prototype.env.call(fake, extra as Parameters<Toolchain['env']>[0], '/w');
      assertClean(env2);
      assert.equal(env2.GOOS, 'windows');
      assert.equal(env2.GOARCH, 'arm');
      assert.equal(env2.GOARM, '7');
      assert.equal(env2.TMPDIR, '/w');
      assert.equal(env2.HOME, '/w');
    } finally {
      restoreEnv();
    }
  });

  test('configured module settings are passed, and only those', () => {
    const fake = Object.assign(Object.create(Toolchain.prototype) as object, {
      goBin: '/opt/go/bin/go',
      cacheDir: '/c',
      opts: { xcaddyBin: '/x', cacheDir: '/c', goproxy: 'https://proxy.example,direct', goprivate: 'corp.example', gosumdb: 'off' },
    }) as unknown as Toolchain;
    setHostileEnv();
    try {
      const env = Toolchain.prototype.env.call(fake);
      assertClean(env);
      assert.equal(env.GOPROXY, 'https://proxy.example,direct');
      assert.equal(env.GOPRIVATE, 'corp.example');
      assert.equal(env.GOSUMDB, 'off');
      assert.equal(env.GONOSUMDB, undefined);
      assert.equal(env.GONOPROXY, undefined);
    } finally {
      restoreEnv();
    }
  });
});
