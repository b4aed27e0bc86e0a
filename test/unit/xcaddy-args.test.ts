// Unit tests of the xcaddy command line and binary names (src/runner). No Go here: the checks
// with the real toolchain are in test/integration/toolchain.test.ts.
//   node --import tsx --test test/unit/xcaddy-args.test.ts
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { binaryName, xcaddyArgs } from '../../src/runner/index.js';
import { PlatformSet, SpecError, cacheKey, parseBuildRequest, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';

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
