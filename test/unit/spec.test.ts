// Unit tests of request validation (src/request): everything a client sends must either be a
// well-formed Go module path / version query / platform or be refused with a SpecError naming
// the offending field. The platform list is the real `go tool dist list -json` output
// (fixtures/dist-list.json, captured from go1.26 linux/amd64).
//   node --import tsx --test test/unit/spec.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { MAX_MODULE_PATH } from '../../src/request/grammar.js';
import { CADDY_MODULE, PlatformSet, SpecError, parseBuildRequest, parsePluginArg, type BuildRequest } from '../../src/request/index.js';
import type { ParseOptions } from '../../src/request/parse.js';

const platforms = PlatformSet.fromDistListJson(readFileSync(new URL('./fixtures/dist-list.json', import.meta.url), 'utf8'));
const remote: ParseOptions = { platforms, maxPlugins: 50, allowLocalReplace: false };
const trusted: ParseOptions = { platforms, maxPlugins: 50, allowLocalReplace: true };

const base = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64' };
const withPlugin = (p: Record<string, unknown>) => ({ ...base, plugins: [{ module: 'github.com/mholt/caddy-l4', ...p }] });
const withModule = (module: unknown) => ({ ...base, plugins: [{ module }] });
const withVersion = (version: unknown) => withPlugin({ version });
const withReplace = (replace: unknown) => withPlugin({ replace });

function refused(input: unknown, field: string | RegExp, opts: ParseOptions = remote): SpecError {
  let caught: unknown;
  try {
    const out = parseBuildRequest(input, opts);
    assert.fail(`accepted: ${JSON.stringify(out)}`);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof SpecError, `expected SpecError, got ${String(caught)}`);
  assert.equal(caught.code, 'invalid_spec');
  if (typeof field === 'string') assert.equal(caught.field, field);
  else assert.match(caught.field, field);
  assert.ok(caught.message.startsWith(`${caught.field}: `), caught.message);
  assert.ok(caught.message.length > caught.field.length + 4, 'the message says why');
  return caught;
}

describe('PlatformSet from go tool dist list -json', () => {
  test('fixture is a realistic list', () => {
    const rows = JSON.parse(readFileSync(new URL('./fixtures/dist-list.json', import.meta.url), 'utf8')) as Array<{ GOOS: string; GOARCH: string }>;
    assert.ok(rows.length > 30);
    assert.ok(rows.some((r) => r.GOOS === 'linux' && r.GOARCH === 'amd64'));
  });

  test('buildable targets exclude ios, js/wasm, wasip1, plan9 and cgo-only android', () => {
    const ids = platforms.list().map((p) => `${p.os}/${p.arch}`);
    for (const id of ['linux/amd64', 'linux/arm64', 'linux/arm', 'darwin/arm64', 'windows/amd64', 'android/arm64', 'freebsd/amd64']) {
      assert.ok(ids.includes(id), id);
    }
    for (const id of ['ios/arm64', 'ios/amd64', 'js/wasm', 'wasip1/wasm', 'plan9/amd64', 'android/amd64', 'android/arm', 'android/386']) {
      assert.ok(!ids.includes(id), id);
    }
    assert.deepEqual([...ids].sort(), ids, 'sorted');
    assert.ok(!platforms.oses().includes('ios'));
    assert.ok(!platforms.oses().includes('plan9'));
    assert.ok(platforms.archesFor('linux').includes('riscv64'));
  });

  test('check() explains', () => {
    assert.equal(platforms.check('linux', 'amd64'), null);
    assert.match(platforms.check('freedos', 'amd64')!, /unknown os "freedos"/);
    assert.match(platforms.check('linux', 'foo')!, /linux\/foo.*architectures for linux: .*amd64/);
    assert.match(platforms.check('ios', 'arm64')!, /not supported/);
  });
});

describe('parseBuildRequest: accepted inputs', () => {
  const accepted: Array<[string, unknown, Partial<BuildRequest>, ParseOptions?]> = [
    ['caddyVersion defaults to latest', { os: 'linux', arch: 'amd64' }, { caddyVersion: 'latest', plugins: [] }],
    ['empty caddyVersion is latest', { ...base, caddyVersion: '' }, { caddyVersion: 'latest' }],
    ['explicit latest', { ...base, caddyVersion: 'latest' }, { caddyVersion: 'latest' }],
    ['v2.11.9', base, { caddyVersion: 'v2.11.9' }],
    ['"2.11.9" gets its v', { ...base, caddyVersion: '2.11.9' }, { caddyVersion: 'v2.11.9' }],
    ['"2.11" prefix gets its v', { ...base, caddyVersion: '2.11' }, { caddyVersion: 'v2.11' }],
    ['"2.10.0-beta.1" prerelease', { ...base, caddyVersion: '2.10.0-beta.1' }, { caddyVersion: 'v2.10.0-beta.1' }],
    ['v2 prefix', { ...base, caddyVersion: 'v2' }, { caddyVersion: 'v2' }],
    ['comparison >=v2.10.0', { ...base, caddyVersion: '>=v2.10.0' }, { caddyVersion: '>=v2.10.0' }],
    ['comparison <v2.9', { ...base, caddyVersion: '<v2.9' }, { caddyVersion: '<v2.9' }],
    ['caddy branch', { ...base, caddyVersion: 'master' }, { caddyVersion: 'master' }],
    ['caddy commit', { ...base, caddyVersion: '4b6b1d8a2c3e' }, { caddyVersion: '4b6b1d8a2c3e' }],
    ['caddy pseudo-version', { ...base, caddyVersion: 'v2.11.0-beta.2.0.20250101120000-abcdef123456' }, { caddyVersion: 'v2.11.0-beta.2.0.20250101120000-abcdef123456' }],
    ['arm defaults to 7', { ...base, arch: 'arm' }, { arch: 'arm', arm: '7' }],
    ['arm "" defaults to 7', { ...base, arch: 'arm', arm: '' }, { arm: '7' }],
    ['arm "5"', { ...base, arch: 'arm', arm: '5' }, { arm: '5' }],
    ['arm 6 as a number', { ...base, arch: 'arm', arm: 6 }, { arm: '6' }],
    ['freebsd/arm', { ...base, os: 'freebsd', arch: 'arm', arm: '6' }, { os: 'freebsd', arch: 'arm', arm: '6' }],
    ['empty arm for amd64 is ignored', { ...base, arm: '' }, { arch: 'amd64' }],
    ['windows/amd64', { ...base, os: 'windows' }, { os: 'windows', arch: 'amd64' }],
    ['darwin/arm64', { ...base, os: 'darwin', arch: 'arm64' }, { os: 'darwin', arch: 'arm64' }],
    ['android/arm64', { ...base, os: 'android', arch: 'arm64' }, { os: 'android', arch: 'arm64' }],
    ['linux/riscv64', { ...base, arch: 'riscv64' }, { arch: 'riscv64' }],
    ['plugin without version', withModule('github.com/mholt/caddy-l4'), { plugins: [{ module: 'github.com/mholt/caddy-l4' }] }],
    ['plugin exact version', withVersion('v0.0.0-20250102000000-abcdefabcdef'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.0.0-20250102000000-abcdefabcdef' }] }],
    ['plugin semver', withVersion('v1.2.3'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v1.2.3' }] }],
    ['plugin prerelease pseudo-version', withVersion('v1.2.4-0.20240101120000-abcdef123456'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v1.2.4-0.20240101120000-abcdef123456' }] }],
    ['plugin +incompatible', withVersion('v2.0.0+incompatible'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v2.0.0+incompatible' }] }],
    ['plugin prerelease with build', withVersion('v1.0.0-rc.1+meta'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v1.0.0-rc.1+meta' }] }],
    ['plugin branch', withVersion('main'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'main' }] }],
    ['plugin branch with slash', withVersion('feature/new-thing'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'feature/new-thing' }] }],
    ['plugin commit hash', withVersion('0123456789abcdef0123'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: '0123456789abcdef0123' }] }],
    ['plugin latest', withVersion('latest'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'latest' }] }],
    ['plugin prefix v1.2', withVersion('v1.2'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v1.2' }] }],
    ['plugin comparison >=v1.2.0', withVersion('>=v1.2.0'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: '>=v1.2.0' }] }],
    ['plugin comparison <=v1.2.3-rc.1', withVersion('<=v1.2.3-rc.1'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: '<=v1.2.3-rc.1' }] }],
    ['plugin comparison >v1.0.0', withVersion('>v1.0.0'), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: '>v1.0.0' }] }],
    ['empty version is dropped', withVersion(''), { plugins: [{ module: 'github.com/mholt/caddy-l4' }] }],
    ['empty replace is dropped', withReplace(''), { plugins: [{ module: 'github.com/mholt/caddy-l4' }] }],
    [
      'replacement module@version',
      withPlugin({ version: 'v1.0.0', replace: 'github.com/fork/caddy-l4@v1.0.1' }),
      { plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v1.0.0', replace: 'github.com/fork/caddy-l4@v1.0.1' }] },
    ],
    ['replacement module@branch', withReplace('github.com/fork/caddy-l4@fix/bug-1'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/fork/caddy-l4@fix/bug-1' }] }],
    [
      'replacement module@pseudo',
      withReplace('github.com/fork/caddy-l4@v0.0.0-20240101120000-abcdef123456'),
      { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/fork/caddy-l4@v0.0.0-20240101120000-abcdef123456' }] },
    ],
    ['replacement module without version', withReplace('github.com/fork/caddy-l4'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/fork/caddy-l4' }] }],
    ['module with /v2', withModule('github.com/x/y/v2'), { plugins: [{ module: 'github.com/x/y/v2' }] }],
    ['module with /v10', withModule('github.com/x/y/v10'), { plugins: [{ module: 'github.com/x/y/v10' }] }],
    ['gopkg.in style', withModule('gopkg.in/yaml.v3'), { plugins: [{ module: 'gopkg.in/yaml.v3' }] }],
    ['uppercase below the domain', withModule('github.com/Azure/azure-sdk'), { plugins: [{ module: 'github.com/Azure/azure-sdk' }] }],
    ['"_" and "~" in elements', withModule('example.com/a_b/c~d'), { plugins: [{ module: 'example.com/a_b/c~d' }] }],
    ['"v1x" is not a major suffix', withModule('example.com/x/v1x'), { plugins: [{ module: 'example.com/x/v1x' }] }],
    ['"console" is not "con"', withModule('github.com/x/console'), { plugins: [{ module: 'github.com/x/console' }] }],
    ['module path of exactly 255 characters', withModule(`example.com/${'a'.repeat(243)}`), { plugins: [{ module: `example.com/${'a'.repeat(243)}` }] }],
    ['version of exactly 128 characters', withVersion(`v1.0.0-${'a'.repeat(121)}`), { plugins: [{ module: 'github.com/mholt/caddy-l4', version: `v1.0.0-${'a'.repeat(121)}` }] }],
    ['local replace "/etc" for trusted callers', withReplace('/etc'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: '/etc' }] }, trusted],
    ['local replace "../../x" for trusted callers', withReplace('../../x'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: '../../x' }] }, trusted],
    ['local replace "./x" for trusted callers', withReplace('./x'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: './x' }] }, trusted],
    ['local replace "." for trusted callers', withReplace('.'), { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: '.' }] }, trusted],
    [
      'module replace for trusted callers still fine',
      withReplace('github.com/fork/caddy-l4@v1.0.1'),
      { plugins: [{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/fork/caddy-l4@v1.0.1' }] },
      trusted,
    ],
    [
      'several plugins keep their order',
      { ...base, plugins: [{ module: 'github.com/b/b' }, { module: 'github.com/a/a', version: 'v1.0.0' }, { module: 'github.com/A/a' }] },
      { plugins: [{ module: 'github.com/b/b' }, { module: 'github.com/a/a', version: 'v1.0.0' }, { module: 'github.com/A/a' }] },
    ],
  ];

  for (const [name, input, expected, opts] of accepted) {
    test(name, () => {
      const out = parseBuildRequest(input, opts ?? remote);
      for (const [k, v] of Object.entries(expected)) assert.deepEqual(out[k as keyof BuildRequest], v, k);
      // Only the documented keys come out; arm only with arch arm.
      for (const k of Object.keys(out)) assert.ok(['caddyVersion', 'os', 'arch', 'arm', 'plugins'].includes(k), k);
      assert.equal('arm' in out, out.arch === 'arm');
      for (const p of out.plugins) for (const k of Object.keys(p)) assert.ok(['module', 'version', 'replace'].includes(k), k);
    });
  }

  test('full result for a typical request', () => {
    const out = parseBuildRequest({ caddyVersion: '2.11.9', os: 'linux', arch: 'arm', plugins: [{ module: 'github.com/caddy-dns/cloudflare', version: 'v0.2.1' }] }, remote);
    assert.deepEqual(out, {
      caddyVersion: 'v2.11.9',
      os: 'linux',
      arch: 'arm',
      arm: '7',
      plugins: [{ module: 'github.com/caddy-dns/cloudflare', version: 'v0.2.1' }],
    });
  });

  test('maxPlugins plugins are fine, one more is not', () => {
    const plugins = (n: number) => Array.from({ length: n }, (_, i) => ({ module: `example.com/p${i}` }));
    assert.equal(parseBuildRequest({ ...base, plugins: plugins(50) }, remote).plugins.length, 50);
    refused({ ...base, plugins: plugins(51) }, 'plugins');
  });

  test('the input object is not modified', () => {
    const input = { caddyVersion: '2.11.9', os: 'linux', arch: 'arm', plugins: [{ module: 'github.com/a/b', version: '' }] };
    const copy = structuredClone(input);
    parseBuildRequest(input, remote);
    assert.deepEqual(input, copy);
  });
});

describe('parseBuildRequest: hostile inputs are refused', () => {
  const M = 'plugins[0].module';
  const V = 'plugins[0].version';
  const R = 'plugins[0].replace';
  const hostile: Array<[string, unknown, string | RegExp, ParseOptions?]> = [
    // Module paths
    ['module "-o"', withModule('-o'), M],
    ['module "--with"', withModule('--with'), M],
    ['module "-github.com/x/y"', withModule('-github.com/x/y'), M],
    ['module with ";"', withModule('github.com/x/y;id'), M],
    ['module with "; rm -rf /"', withModule('github.com/x/y; rm -rf /'), M],
    ['module with "&&"', withModule('github.com/x/y&&id'), M],
    ['module with "|"', withModule('github.com/x/y|id'), M],
    ['module with "$(…)"', withModule('github.com/x/$(id)'), M],
    ['module with backticks', withModule('github.com/x/`id`'), M],
    ['module with a space', withModule('github.com/x/y z'), M],
    ['module with a newline', withModule('github.com/x/y\nid'), M],
    ['module with a tab', withModule('github.com/x/y\tz'), M],
    ['module with NUL', withModule('github.com/x/y\0'), M],
    ['module with ".."', withModule('github.com/x/../y'), M],
    ['module with "."', withModule('github.com/./y'), M],
    ['module with "//"', withModule('github.com//x'), M],
    ['module with a trailing "/"', withModule('github.com/x/y/'), M],
    ['module with a leading "/"', withModule('/github.com/x/y'), M],
    ['module https URL', withModule('https://github.com/x/y'), M],
    ['module scp-style git URL', withModule('git@github.com:x/y'), M],
    ['module file URL', withModule('file:///etc'), M],
    ['module with Cyrillic "а" in the domain', withModule('exаmple.com/x/y'), M],
    ['module with Cyrillic "а" in a path element', withModule('github.com/cаddy/x'), M],
    ['module with fullwidth letters', withModule('ｇｉｔｈｕｂ.com/x/y'), M],
    ['module with fullwidth solidus', withModule('github.com／x／y'), M],
    ['module with zero-width space', withModule('github.com/x/\u200by'), M],
    ['module with RTL override', withModule('github.com/x/\u202Ey'), M],
    ['module with BOM', withModule('\uFEFFgithub.com/x/y'), M],
    ['empty module', withModule(''), M],
    ['module of 300 characters', withModule(`github.com/x/${'a'.repeat(287)}`), M],
    ['module of 256 characters', withModule(`example.com/${'a'.repeat(244)}`), M],
    ['module of 1,200 characters', withModule(`github.com/x/${'a'.repeat(1187)}`), /^plugins.*0.*module$/],
    ['module element "con" (Windows reserved)', withModule('github.com/x/con'), M],
    ['module element "NUL.txt" (Windows reserved)', withModule('github.com/x/NUL.txt'), M],
    ['module element "lpt1"', withModule('example.com/lpt1/x'), M],
    ['module element Windows short name "abc~1"', withModule('github.com/x/abc~1'), M],
    ['major suffix /v0', withModule('github.com/x/y/v0'), M],
    ['major suffix /v1', withModule('github.com/x/y/v1'), M],
    ['major suffix /v01', withModule('github.com/x/y/v01'), M],
    ['uppercase domain', withModule('GitHub.com/x/y'), M],
    ['domain without a dot', withModule('localhost/x/y'), M],
    ['domain with "_"', withModule('my_host.com/x'), M],
    ['domain with a port', withModule('example.com:8080/x'), M],
    ['element starting with "."', withModule('github.com/x/.git'), M],
    ['element ending with "."', withModule('github.com/x/y.'), M],
    ['"@" inside the module', withModule('github.com/x/y@v1.0.0'), M],
    ['"=" inside the module', withModule('github.com/x/y=example.com/z'), M],
    ['backslash inside the module', withModule('github.com\\x\\y'), M],
    ['quote inside the module', withModule("github.com/x/y'z"), M],
    ['glob inside the module', withModule('github.com/x/*'), M],
    ['the caddy module itself as a plugin', withModule(CADDY_MODULE), M],
    // Versions
    ['version "-o"', withVersion('-o'), V],
    ['version "--with=x"', withVersion('--with=x'), V],
    ['version "-v1.0.0"', withVersion('-v1.0.0'), V],
    ['version with ";"', withVersion('v1.0.0;id'), V],
    ['version with "&&"', withVersion('main&&id'), V],
    ['version with "|"', withVersion('main|id'), V],
    ['version "$(id)"', withVersion('$(id)'), V],
    ['version with backticks', withVersion('`id`'), V],
    ['version with a space', withVersion('v1.0.0 x'), V],
    ['version comparison with a space', withVersion('>=v1.0.0 <v2'), V],
    ['version with a newline', withVersion('v1.0.0\n'), V],
    ['version with NUL', withVersion('main\0'), V],
    ['version with ".."', withVersion('main..evil'), V],
    ['version "../x"', withVersion('../x'), V],
    ['version with "//"', withVersion('feature//x'), V],
    ['version with a trailing "/"', withVersion('feature/'), V],
    ['version ending in ".lock"', withVersion('main.lock'), V],
    ['version ending in "."', withVersion('main.'), V],
    ['version that is a URL', withVersion('https://evil.example/x'), V],
    ['version with "@"', withVersion('v1.0.0@v2'), V],
    ['version with "="', withVersion('v1.0.0=x'), V],
    ['version "upgrade"', withVersion('upgrade'), V],
    ['version "patch"', withVersion('patch'), V],
    ['version "none"', withVersion('none'), V],
    ['version with four numbers', withVersion('v1.2.3.4'), V],
    ['version with a leading zero', withVersion('v01.2.3'), V],
    ['prerelease with a leading zero', withVersion('v1.0.0-01'), V],
    ['version with Cyrillic "а"', withVersion('v1.0.0-аlpha'), V],
    ['version with fullwidth "ｖ"', withVersion('ｖ1.0.0'), V],
    ['version with zero-width space', withVersion('v1.0.0\u200b'), V],
    ['version of 200 characters', withVersion(`v1.0.0-${'a'.repeat(193)}`), V],
    ['version of 129 characters', withVersion(`v1.0.0-${'a'.repeat(122)}`), V],
    ['version of 600 characters', withVersion(`v1.0.0-${'a'.repeat(593)}`), /^plugins.*0.*version$/],
    ['version as a number', withVersion(1), /^plugins.*0.*version$/],
    ['version as null', withVersion(null), /^plugins.*0.*version$/],
    // Replacements
    ['replace "-o"', withReplace('-o'), R],
    ['replace "--replace"', withReplace('--replace'), R],
    ['replace with ";"', withReplace('github.com/a/b;id'), R],
    ['replace version with ";"', withReplace('github.com/a/b@v1.0.0;id'), R],
    ['replace version "$(id)"', withReplace('github.com/a/b@$(id)'), R],
    ['replace with backticks', withReplace('github.com/a/`id`'), R],
    ['replace with "&&"', withReplace('github.com/a/b&&id'), R],
    ['replace with a space', withReplace('github.com/a/b c'), R],
    ['replace with a newline', withReplace('github.com/a/b\n'), R],
    ['replace with NUL', withReplace('github.com/a/b\0'), R],
    ['replace version "-x"', withReplace('github.com/a/b@-x'), R],
    ['replace with empty version', withReplace('github.com/a/b@'), R],
    ['replace with empty module', withReplace('@v1.0.0'), R],
    ['replace with two "@"', withReplace('github.com/a/b@v1.0.0@v2'), R],
    ['replace https URL', withReplace('https://github.com/x/y'), R],
    ['replace scp-style git URL', withReplace('git@github.com:x/y'), R],
    ['replace file URL', withReplace('file:///etc'), R],
    ['replace "~/x"', withReplace('~/x'), R],
    ['replace with "//"', withReplace('github.com//b'), R],
    ['replace with Cyrillic "а"', withReplace('github.com/а/b'), R],
    ['replace with zero-width space', withReplace('github.com/a/b\u200b'), R],
    ['replace local "/etc" over HTTP', withReplace('/etc'), R],
    ['replace local "../../x" over HTTP', withReplace('../../x'), R],
    ['replace local "./x" over HTTP', withReplace('./x'), R],
    ['replace local "." over HTTP', withReplace('.'), R],
    ['replace local ".." over HTTP', withReplace('..'), R],
    ['replace local "C:\\x" over HTTP', withReplace('C:\\x'), R],
    ['replace local "C:/Windows" over HTTP', withReplace('C:/Windows'), R],
    ['replace "..\\x" (backslash)', withReplace('..\\x'), R],
    ['local replace with a space even for trusted callers', withReplace('./my dir'), R, trusted],
    ['local replace with a newline even for trusted callers', withReplace('./x\n--with'), R, trusted],
    ['local replace with unicode even for trusted callers', withReplace('/tmp/\u202Ex'), R, trusted],
    ['replace as a number', withReplace(5), /^plugins.*0.*replace$/],
    // caddyVersion
    ['caddyVersion "-o"', { ...base, caddyVersion: '-o' }, 'caddyVersion'],
    ['caddyVersion "--version"', { ...base, caddyVersion: '--version' }, 'caddyVersion'],
    ['caddyVersion with ";"', { ...base, caddyVersion: 'v2.11.9;id' }, 'caddyVersion'],
    ['caddyVersion "$(id)"', { ...base, caddyVersion: '$(id)' }, 'caddyVersion'],
    ['caddyVersion with backticks', { ...base, caddyVersion: '`id`' }, 'caddyVersion'],
    ['caddyVersion with a trailing space', { ...base, caddyVersion: '2.11.9 ' }, 'caddyVersion'],
    ['caddyVersion with a newline', { ...base, caddyVersion: 'v2.11.9\n' }, 'caddyVersion'],
    ['caddyVersion v1', { ...base, caddyVersion: 'v1.0.4' }, 'caddyVersion'],
    ['caddyVersion v3', { ...base, caddyVersion: 'v3.0.0' }, 'caddyVersion'],
    ['caddyVersion prefix v3', { ...base, caddyVersion: 'v3' }, 'caddyVersion'],
    ['caddyVersion "upgrade"', { ...base, caddyVersion: 'upgrade' }, 'caddyVersion'],
    ['caddyVersion "2.11.9.1"', { ...base, caddyVersion: '2.11.9.1' }, 'caddyVersion'],
    ['caddyVersion of 200 characters', { ...base, caddyVersion: `v2.0.0-${'a'.repeat(193)}` }, 'caddyVersion'],
    ['caddyVersion as a number', { ...base, caddyVersion: 2.11 }, 'caddyVersion'],
    // Platform
    ['missing os', { arch: 'amd64' }, 'os'],
    ['empty os', { ...base, os: '' }, 'os'],
    ['missing arch', { os: 'linux' }, 'arch'],
    ['os "Linux"', { ...base, os: 'Linux' }, 'os'],
    ['os with ";"', { ...base, os: 'linux;id' }, 'os'],
    ['os "-o"', { ...base, os: '-o' }, 'os'],
    ['os with "/"', { ...base, os: 'linux/amd64' }, 'os'],
    ['arch with a space', { ...base, arch: 'amd64 ' }, 'arch'],
    ['arch with NUL', { ...base, arch: 'amd64\0' }, 'arch'],
    ['os as a number', { ...base, os: 1 }, 'os'],
    ['unknown os', { ...base, os: 'freedos' }, 'os/arch'],
    ['linux/foo', { ...base, arch: 'foo' }, 'os/arch'],
    ['linux/arm5', { ...base, arch: 'arm5' }, 'os/arch'],
    ['windows/arm (not in this Go)', { ...base, os: 'windows', arch: 'arm' }, 'os/arch'],
    ['darwin/386', { ...base, os: 'darwin', arch: '386' }, 'os/arch'],
    ['ios/arm64', { ...base, os: 'ios', arch: 'arm64' }, 'os/arch'],
    ['js/wasm', { ...base, os: 'js', arch: 'wasm' }, 'os/arch'],
    ['wasip1/wasm', { ...base, os: 'wasip1', arch: 'wasm' }, 'os/arch'],
    ['plan9/amd64', { ...base, os: 'plan9', arch: 'amd64' }, 'os/arch'],
    ['android/amd64 (needs cgo)', { ...base, os: 'android', arch: 'amd64' }, 'os/arch'],
    ['arm given for amd64', { ...base, arm: '7' }, 'arm'],
    ['arm given for arm64', { ...base, arch: 'arm64', arm: 7 }, 'arm'],
    ['arm "8"', { ...base, arch: 'arm', arm: '8' }, 'arm'],
    ['arm 4', { ...base, arch: 'arm', arm: 4 }, 'arm'],
    ['arm "v7"', { ...base, arch: 'arm', arm: 'v7' }, 'arm'],
    ['arm "07"', { ...base, arch: 'arm', arm: '07' }, 'arm'],
    ['arm "7;id"', { ...base, arch: 'arm', arm: '7;id' }, 'arm'],
    ['arm 7.5', { ...base, arch: 'arm', arm: 7.5 }, 'arm'],
    ['arm as a boolean', { ...base, arch: 'arm', arm: true }, 'arm'],
    // Shape
    ['null body', null, 'body'],
    ['string body', 'linux/amd64', 'body'],
    ['array body', [base], 'body'],
    ['number body', 42, 'body'],
    ['unknown top-level field', { ...base, debug: true }, 'body'],
    ['unknown top-level field "goflags"', { ...base, goflags: '-toolexec=/bin/sh' }, 'body'],
    ['__proto__ key', JSON.parse('{"os":"linux","arch":"amd64","__proto__":{"polluted":1}}'), 'body'],
    ['unknown plugin field', withPlugin({ path: '/etc' }), /^plugins.*0$/],
    ['plugins as a string', { ...base, plugins: 'github.com/x/y' }, 'plugins'],
    ['plugins as an object', { ...base, plugins: { module: 'github.com/x/y' } }, 'plugins'],
    ['plugin as a string', { ...base, plugins: ['github.com/x/y'] }, /^plugins.*0$/],
    ['plugin null', { ...base, plugins: [null] }, /^plugins.*0$/],
    ['plugin without module', { ...base, plugins: [{ version: 'v1.0.0' }] }, /^plugins.*0.*module$/],
    ['module as a number', withModule(42), /^plugins.*0.*module$/],
    ['1,000 plugins', { ...base, plugins: Array.from({ length: 1000 }, (_, i) => ({ module: `example.com/p${i}` })) }, 'plugins'],
    ['10,001 plugins', { ...base, plugins: Array.from({ length: 10_001 }, (_, i) => ({ module: `example.com/p${i}` })) }, 'plugins'],
    ['duplicate module', { ...base, plugins: [{ module: 'github.com/x/y' }, { module: 'github.com/x/y', version: 'v1.0.0' }] }, 'plugins[1].module'],
    ['duplicate module later in the list', { ...base, plugins: [{ module: 'github.com/a/a' }, { module: 'github.com/b/b' }, { module: 'github.com/a/a' }] }, 'plugins[2].module'],
    ['hostile second plugin', { ...base, plugins: [{ module: 'github.com/a/a' }, { module: 'github.com/b/b', version: '$(id)' }] }, 'plugins[1].version'],
  ];

  test('there are plenty of cases', () => {
    assert.ok(hostile.length >= 60, String(hostile.length));
  });

  for (const [name, input, field, opts] of hostile) {
    test(name, () => {
      refused(input, field, opts);
    });
  }

  test('__proto__ in a body does not pollute Object.prototype', () => {
    try {
      parseBuildRequest(JSON.parse('{"os":"linux","arch":"amd64","__proto__":{"polluted":1}}'), remote);
    } catch {
      /* refused above */
    }
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  test('the error names the bad plugin and what is wrong', () => {
    const e = refused(withModule('github.com/x/y/v1'), M);
    assert.match(e.message, /major version/);
    const e2 = refused(withModule('GitHub.com/x'), M);
    assert.match(e2.message, /lowercase/);
    const e3 = refused(withReplace('/etc'), R);
    assert.match(e3.message, /local path/);
    const e4 = refused({ ...base, os: 'ios', arch: 'arm64' }, 'os/arch');
    assert.match(e4.message, /not supported/);
    const e5 = refused({ ...base, plugins: Array.from({ length: 1000 }, (_, i) => ({ module: `example.com/p${i}` })) }, 'plugins');
    assert.match(e5.message, /at most 50/);
  });

  test('maxPlugins 0 refuses any plugin', () => {
    refused(withModule('github.com/x/y'), 'plugins', { ...remote, maxPlugins: 0 });
    assert.deepEqual(parseBuildRequest(base, { ...remote, maxPlugins: 0 }).plugins, []);
  });
});

describe('parseBuildRequest: properties over arbitrary strings', () => {
  const accepts = (input: unknown, opts = remote): boolean => {
    try {
      parseBuildRequest(input, opts);
      return true;
    } catch (err) {
      if (!(err instanceof SpecError)) throw err;
      return false;
    }
  };
  const printableAscii = /^[\x21-\x7e]+$/;
  const shellish = /[;&|$`'"<>(){}\\*?!#\s]/;

  test('whatever is accepted is printable ASCII, never a flag, never shell syntax', () => {
    const piece = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.string({ unit: 'binary', maxLength: 20 }),
      fc.constantFrom('-', '--', ';', '&&', '|', '$(', '`', ' ', '\n', '\0', '..', '//', '@', '=', '\u200b', 'а', 'v1.2.3', 'github.com/', 'x'),
    );
    const field = fc.array(piece, { maxLength: 5 }).map((a) => a.join(''));
    // Valid values are mixed in, and version and replace may be absent, so that the accepting side
    // runs: at least 10% of the 2,000 inputs are accepted (seeded, so the count is the same every run).
    const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,8}$/);
    const moduleField = fc.oneof(field, name);
    const versionField = fc.option(fc.oneof(field, fc.constantFrom('v1.2.3', 'latest', 'master', 'v0.0.0-20240101000000-abcdefabcdef')), { nil: undefined });
    const replaceField = fc.option(
      fc.oneof(
        field,
        name.map((n) => `github.com/fork/${n}`),
        name.map((n) => `github.com/fork/${n}@v1.0.0`),
      ),
      { nil: undefined },
    );
    let accepted = 0;
    fc.assert(
      fc.property(moduleField, versionField, replaceField, (module, version, replace) => {
        const plugin = { module: `github.com/x/${module}`, version, replace };
        let out: BuildRequest;
        try {
          out = parseBuildRequest({ ...base, plugins: [plugin] }, remote);
        } catch (err) {
          if (!(err instanceof SpecError)) throw err;
          return;
        }
        accepted++;
        for (const p of out.plugins) {
          for (const v of [p.module, p.version, p.replace]) {
            if (v === undefined) continue;
            assert.match(v, printableAscii);
            assert.ok(!v.startsWith('-'), v);
            assert.ok(!shellish.test(v), v);
            assert.ok(!/(^|\/)\.\.?(\/|$)/.test(v), `no "." or ".." path element: ${v}`);
            assert.ok(!v.includes('='), v);
          }
          assert.ok(!p.module.includes('@') && !p.version?.includes('@'), 'no "@" in module or version');
          assert.ok((p.replace?.split('@').length ?? 1) <= 2, 'at most one "@" in a replacement');
          assert.ok(!p.replace?.startsWith('/') && !p.replace?.startsWith('.'), 'no local replace over HTTP');
        }
      }),
      { numRuns: 2000, seed: Number(process.env.FAIRWAY_FUZZ_SEED ?? 20260712) },
    );
    assert.ok(accepted >= 200, `only ${accepted} of 2000 inputs accepted: the accepting side (the checks above) barely ran`);
  });

  test('a leading "-" is refused in every field', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (s) => {
        const v = `-${s}`;
        assert.equal(accepts(withModule(v)), false);
        assert.equal(accepts(withVersion(v)), false);
        assert.equal(accepts(withReplace(v), trusted), false);
        assert.equal(accepts({ ...base, caddyVersion: v }), false);
      }),
      { numRuns: 300 },
    );
  });

  test('any non-ASCII or control character is refused in every field', () => {
    const bad = fc
      .oneof(
        fc.integer({ min: 0, max: 0x20 }),
        fc.integer({ min: 0x7f, max: 0x10ffff }).filter((c) => c < 0xd800 || c > 0xdfff),
      )
      .map((c) => String.fromCodePoint(c));
    fc.assert(
      fc.property(bad, fc.nat(8), (ch, at) => {
        const ins = (s: string) => s.slice(0, Math.min(at, s.length)) + ch + s.slice(Math.min(at, s.length));
        assert.equal(accepts(withModule(ins('github.com/x/y'))), false);
        assert.equal(accepts(withVersion(ins('v1.2.3'))), false);
        assert.equal(accepts(withReplace(ins('github.com/a/b@v1.0.0'))), false);
        assert.equal(accepts(withReplace(ins('./local/dir')), trusted), false);
        assert.equal(accepts({ ...base, caddyVersion: ins('v2.11.9') }), false);
      }),
      { numRuns: 500 },
    );
  });

  test('the module length limit is exact', () => {
    assert.equal(MAX_MODULE_PATH, 255);
    for (let n = 250; n <= 260; n++) {
      const m = `example.com/${'a'.repeat(n - 12)}`;
      assert.equal(m.length, n);
      assert.equal(accepts(withModule(m)), n <= 255, String(n));
    }
  });
});

describe('parsePluginArg', () => {
  const cases: Array<[string, ReturnType<typeof parsePluginArg>]> = [
    ['github.com/x/y', { module: 'github.com/x/y' }],
    ['github.com/x/y@v1.2.3', { module: 'github.com/x/y', version: 'v1.2.3' }],
    ['github.com/x/y@v1.2.3=github.com/z/y@v2.0.0', { module: 'github.com/x/y', version: 'v1.2.3', replace: 'github.com/z/y@v2.0.0' }],
    ['github.com/x/y=../local', { module: 'github.com/x/y', replace: '../local' }],
    ['github.com/x/y=/abs/dir', { module: 'github.com/x/y', replace: '/abs/dir' }],
    ['github.com/x/y@main=github.com/z/y', { module: 'github.com/x/y', version: 'main', replace: 'github.com/z/y' }],
    ['mod', { module: 'mod' }],
    ['mod@v1', { module: 'mod', version: 'v1' }],
    ['mod@v1=other@v2', { module: 'mod', version: 'v1', replace: 'other@v2' }],
    ['mod=../local', { module: 'mod', replace: '../local' }],
    ['mod@', { module: 'mod', version: '' }],
    ['mod=', { module: 'mod', replace: '' }],
    ['=x', { module: '', replace: 'x' }],
    ['', { module: '' }],
    ['a=b=c', { module: 'a', replace: 'b=c' }],
    ['a@b@c', { module: 'a', version: 'b@c' }],
  ];
  for (const [arg, expected] of cases) {
    test(JSON.stringify(arg), () => {
      assert.deepEqual(parsePluginArg(arg), expected);
    });
  }

  test('feeds parseBuildRequest, which still refuses hostile parts', () => {
    const ok = parseBuildRequest({ ...base, plugins: [parsePluginArg('github.com/x/y@v1.2.3=github.com/z/y@v2.0.0')] }, remote);
    assert.deepEqual(ok.plugins, [{ module: 'github.com/x/y', version: 'v1.2.3', replace: 'github.com/z/y@v2.0.0' }]);
    const local = parseBuildRequest({ ...base, plugins: [parsePluginArg('github.com/x/y=../local')] }, trusted);
    assert.deepEqual(local.plugins, [{ module: 'github.com/x/y', replace: '../local' }]);
    refused({ ...base, plugins: [parsePluginArg('github.com/x/y=../local')] }, 'plugins[0].replace');
    refused({ ...base, plugins: [parsePluginArg('github.com/x/y@v1=--output=/etc/passwd')] }, 'plugins[0].replace');
    refused({ ...base, plugins: [parsePluginArg('github.com/x/y@--output=github.com/z/y')] }, 'plugins[0].version');
    refused({ ...base, plugins: [parsePluginArg('github.com/x/y@v1.0.0=--output')] }, 'plugins[0].replace');
    refused({ ...base, plugins: [parsePluginArg('--with=github.com/x/y')] }, 'plugins[0].module');
  });
});
