// Unit tests of the caddyserver.com compatibility pieces that need no server: the query Caddy's
// upgradeBuild builds (Go's url.Values encoding), Caddy's add/remove-package checks, the error
// text Caddy prints, and how /api/download maps its query to a build request.
//   node --import tsx --test test/unit/packages.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { downloadFilename, downloadInput, pinnedDownloadUrl } from '../../src/api/compat.js';
import { downloadErrorMessage, downloadQuery, goEncodeQuery, goQueryEscape, planPackages, platformFromBuildInfo, splitModule } from '../../src/cli/packages.js';
import type { PluginPackage } from '../../src/catalog/index.js';

const have = (...p: Array<[string, string]>) => new Map<string, PluginPackage>(p.map(([path, version]) => [path, { path, version }]));

describe('the query Caddy sends', () => {
  test("Go's QueryEscape and Values.Encode", () => {
    assert.equal(goQueryEscape('github.com/mholt/caddy-l4@v0.1.2'), 'github.com%2Fmholt%2Fcaddy-l4%40v0.1.2');
    assert.equal(goQueryEscape('example.com/x@v2.0.0+incompatible'), 'example.com%2Fx%40v2.0.0%2Bincompatible');
    assert.equal(goQueryEscape('a~b_c-d.e f*'), 'a~b_c-d.e+f%2A');
    assert.equal(goEncodeQuery({ p: ['b', 'a'], os: ['linux'], arch: ['amd64'] }), 'arch=amd64&os=linux&p=b&p=a');
  });

  test('upgrade/add-package on linux/amd64: the literal URL query of docs/compat.md', () => {
    assert.equal(downloadQuery({ os: 'linux', arch: 'amd64' }, [{ path: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }]), 'arch=amd64&os=linux&p=github.com%2Fmholt%2Fcaddy-l4%40v0.1.2');
    assert.equal(downloadQuery({ os: 'linux', arch: 'amd64' }, [{ path: 'github.com/caddy-dns/cloudflare', version: '' }]), 'arch=amd64&os=linux&p=github.com%2Fcaddy-dns%2Fcloudflare');
    assert.equal(downloadQuery({ os: 'linux', arch: 'arm' }, []), 'arch=arm&os=linux');
    // Fairway's CLI adds what it knows and Caddy does not send: GOARM, and a pinned version on request.
    assert.equal(downloadQuery({ os: 'linux', arch: 'arm', arm: '6' }, [], 'v2.11.9'), 'arch=arm&arm=6&os=linux&version=v2.11.9');
    assert.equal(downloadQuery({ os: 'linux', arch: 'amd64', arm: '7' }, []), 'arch=amd64&os=linux', 'arm only for arch=arm');
  });

  test('platform from `caddy build-info`', () => {
    const bi = 'go\tgo1.26.8\npath\tcaddy\nbuild\t-trimpath=true\nbuild\tCGO_ENABLED=0\nbuild\tGOARCH=arm\nbuild\tGOOS=linux\nbuild\tGOARM=7,softfloat\n';
    assert.deepEqual(platformFromBuildInfo(bi), { os: 'linux', arch: 'arm', arm: '7' });
    assert.deepEqual(platformFromBuildInfo('build\tGOARCH=amd64\nbuild\tGOOS=windows\nbuild\tGOAMD64=v1\n'), { os: 'windows', arch: 'amd64' });
    assert.equal(platformFromBuildInfo('path: caddy\nmain: caddy (devel)\ndependencies:\n'), null, 'old build-info format');
  });
});

describe("Caddy's package edits", () => {
  test('splitModule (v2.11: at most one @)', () => {
    assert.deepEqual(splitModule('github.com/a/b'), { module: 'github.com/a/b', version: '' });
    assert.deepEqual(splitModule('github.com/a/b@v1.2.3'), { module: 'github.com/a/b', version: 'v1.2.3' });
    assert.throws(() => splitModule('github.com/a/b@'), /version is required after '@'/);
    assert.throws(() => splitModule('a@b@c'), /must not contain '@'/);
    assert.throws(() => splitModule('@v1'), /module name is required/);
  });

  test('upgrade keeps every plugin pinned', () => {
    assert.deepEqual(planPackages('upgrade', have(['github.com/b/b', 'v1.0.0'], ['github.com/a/a', 'v0.2.0']), []), [
      { path: 'github.com/a/a', version: 'v0.2.0' },
      { path: 'github.com/b/b', version: 'v1.0.0' },
    ]);
    assert.throws(() => planPackages('upgrade', have(), ['x']), /no package arguments/);
  });

  test('add-package: new, new version, already added', () => {
    const cur = have(['github.com/mholt/caddy-l4', 'v0.1.1']);
    assert.deepEqual(
      planPackages('add-package', cur, ['github.com/caddy-dns/cloudflare']).map((p) => `${p.path}@${p.version}`),
      ['github.com/caddy-dns/cloudflare@', 'github.com/mholt/caddy-l4@v0.1.1'],
    );
    assert.deepEqual(planPackages('add-package', cur, ['github.com/mholt/caddy-l4@v0.1.2']), [{ path: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }]);
    assert.throws(() => planPackages('add-package', cur, ['github.com/mholt/caddy-l4']), /package is already added/);
    assert.throws(() => planPackages('add-package', cur, ['github.com/mholt/caddy-l4@v0.1.1']), /package is already added/);
    assert.throws(() => planPackages('add-package', cur, []), /at least one package name must be specified/);
  });

  test('remove-package (also with @version, where Caddy deletes nothing)', () => {
    const cur = have(['github.com/mholt/caddy-l4', 'v0.1.2'], ['github.com/caddy-dns/cloudflare', 'v0.2.1']);
    assert.deepEqual(
      planPackages('remove-package', cur, ['github.com/mholt/caddy-l4']).map((p) => p.path),
      ['github.com/caddy-dns/cloudflare'],
    );
    assert.deepEqual(
      planPackages('remove-package', cur, ['github.com/mholt/caddy-l4@v0.1.2']).map((p) => p.path),
      ['github.com/caddy-dns/cloudflare'],
    );
    assert.throws(() => planPackages('remove-package', cur, ['github.com/x/y']), /package is not added/);
  });

  test("errors print like Caddy's downloadBuild", () => {
    assert.equal(
      downloadErrorMessage(400, '{"status_code":400,"error":{"message":"unable to fulfill download request","id":"a0ad9487"}}'),
      'download failed: HTTP 400: unable to fulfill download request (id=a0ad9487)',
    );
    assert.match(downloadErrorMessage(502, '<html>Bad gateway</html>'), /^download and error decoding failed: HTTP 502: <html>Bad gateway/);
  });
});

describe('/api/download query → build request', () => {
  test('os, arch, arm, repeated p, versions in p', () => {
    assert.deepEqual(downloadInput({ os: 'linux', arch: 'amd64', p: 'github.com/mholt/caddy-l4@v0.1.2' }), {
      os: 'linux',
      arch: 'amd64',
      plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }],
    });
    assert.deepEqual(downloadInput({ os: 'linux', arch: 'arm', arm: '7', p: ['github.com/b/b', 'github.com/a/a@v1.0.0'], idempotency: '49780288454034' }), {
      os: 'linux',
      arch: 'arm',
      arm: '7',
      plugins: [{ module: 'github.com/b/b' }, { module: 'github.com/a/a', version: 'v1.0.0' }],
    });
  });

  test('identical repeats collapse; conflicting ones are refused', () => {
    assert.equal(downloadInput({ os: 'linux', arch: 'amd64', p: ['github.com/a/a@v1', 'github.com/a/a@v1', ''] }).plugins.length, 1);
    assert.throws(() => downloadInput({ os: 'linux', arch: 'amd64', p: ['github.com/a/a@v1.0.0', 'github.com/a/a@v1.0.1'] }), /given twice with different versions/);
    assert.throws(() => downloadInput({ os: ['linux', 'darwin'], arch: 'amd64' }), /os: given more than once/);
    assert.deepEqual(downloadInput({ os: ['linux', 'linux'], arch: 'amd64' }).os, 'linux');
    assert.throws(() => downloadInput({ os: 'linux', arch: 'amd64', p: 'a@b@c' }), /must not contain '@'/);
  });

  test('Caddy itself is pinned with version= or p=github.com/caddyserver/caddy/v2@v', () => {
    assert.equal(downloadInput({ os: 'linux', arch: 'amd64', version: 'v2.11.9' }).caddyVersion, 'v2.11.9');
    const viaP = downloadInput({ os: 'linux', arch: 'amd64', p: ['github.com/caddyserver/caddy/v2@v2.11.9', 'github.com/a/a'] });
    assert.equal(viaP.caddyVersion, 'v2.11.9');
    assert.deepEqual(viaP.plugins, [{ module: 'github.com/a/a' }]);
    assert.throws(() => downloadInput({ os: 'linux', arch: 'amd64', version: 'v2.10.0', p: 'github.com/caddyserver/caddy/v2@v2.11.9' }), /conflicts/);
    assert.equal(downloadInput({ os: 'linux', arch: 'amd64' }).caddyVersion, undefined, 'latest is the service default');
  });

  test('file name and pinned URL', () => {
    assert.equal(downloadFilename('linux', 'amd64'), 'caddy_linux_amd64_custom');
    assert.equal(downloadFilename('windows', 'arm64'), 'caddy_windows_arm64_custom.exe');
    const url = pinnedDownloadUrl({
      caddyVersion: 'v2.11.9',
      os: 'linux',
      arch: 'arm',
      arm: '7',
      plugins: [{ module: 'github.com/a/a', version: 'v1.0.0', replace: { kind: 'module', module: 'github.com/fork/a', version: 'v1.0.1' } }],
    });
    assert.equal(url, '/api/download?os=linux&arch=arm&arm=7&version=v2.11.9&p=github.com%2Fa%2Fa%40v1.0.0%3Dgithub.com%2Ffork%2Fa%40v1.0.1');
    const back = downloadInput(Object.fromEntries(new URL(url, 'http://x').searchParams));
    assert.deepEqual(back.plugins, [{ module: 'github.com/a/a', version: 'v1.0.0', replace: 'github.com/fork/a@v1.0.1' }]);
  });
});
