// Unit tests of the allowlisted toolchain environment (src/toolchain). No Go here: the checks
// with the real toolchain are in test/integration/toolchain.test.ts.
//   node --import tsx --test test/unit/toolchain-env.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENV_ALLOWLIST, Toolchain } from '../../src/toolchain/index.js';
import { assertClean, restoreEnv, setHostileEnv } from '../helpers/hostile-env.js';

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
