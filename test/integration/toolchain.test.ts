// The toolchain with the real Go and xcaddy in the real sandbox (moved from the unit tests (test/unit/toolchain-env.test.ts):
// a unit test runs no Go): detect() finds the versions, env() and go commands run in the clean,
// allowlisted environment, whatever secrets the server's own environment holds.
//   node --import tsx --test test/integration/toolchain.test.ts
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { openSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { Toolchain } from '../../src/toolchain/index.js';
import { assertClean, restoreEnv, setHostileEnv } from '../helpers/hostile-env.js';

describe('with the real toolchain', () => {
  let cacheDir: string;
  let tc: Toolchain;
  let sandbox: Sandbox;
  before(async () => {
    cacheDir = mkdtempSync(join(tmpdir(), 'fairway-tc-'));
    sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
    tc = await Toolchain.detect({ goBin: 'go', xcaddyBin: fileURLToPath(new URL('../../.tools/bin/xcaddy', import.meta.url)), cacheDir, sandbox });
  });
  after(async () => {
    await sandbox.close();
    rmSync(cacheDir, { recursive: true, force: true });
  });

  test('detect() finds go and xcaddy versions', () => {
    assert.match(tc.identity.go, /^go1\.\d+/);
    assert.match(tc.identity.xcaddy, /^v\d+\.\d+\.\d+/);
    assert.ok(tc.goBin.endsWith('/bin/go'));
    assert.equal(tc.tmpDir, join(cacheDir, 'tmp'));
  });

  test('env() is clean even with secrets in process.env', () => {
    setHostileEnv();
    try {
      const env = tc.env({ GOOS: 'linux', GOARCH: 'arm64' });
      assertClean(env);
      assert.equal(env.GOMODCACHE, join(cacheDir, 'mod'));
      assert.equal(env.GOOS, 'linux');
    } finally {
      restoreEnv();
    }
  });

  test("go commands run in the clean environment, not the server's", async () => {
    setHostileEnv();
    try {
      const { stdout } = await tc.go(['env', '-json', 'GOFLAGS', 'GOPROXY', 'CGO_ENABLED', 'GOTOOLCHAIN', 'GOMODCACHE', 'GOINSECURE']);
      const env = JSON.parse(stdout) as Record<string, string>;
      assert.equal(env.GOFLAGS, '-mod=mod -buildvcs=false');
      assert.notEqual(env.GOPROXY, 'https://evil.example');
      assert.equal(env.CGO_ENABLED, '0');
      assert.equal(env.GOTOOLCHAIN, 'local');
      assert.equal(env.GOMODCACHE, join(cacheDir, 'mod'));
      assert.equal(env.GOINSECURE, '');
    } finally {
      restoreEnv();
    }
  });
});
