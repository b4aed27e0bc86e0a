// The toolchain with the real Go and xcaddy in the real sandbox (moved from test/unit/misc.test.ts:
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
import { ENV_ALLOWLIST, Toolchain } from '../../src/toolchain/index.js';

const HOSTILE: Record<string, string> = {
  AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
  FAIRWAY_REDIS_URL: 'redis://:secret@redis:6379',
  GITHUB_TOKEN: 'ghp_secret',
  NODE_OPTIONS: '--require /tmp/evil.js',
  GOFLAGS: '-toolexec=/tmp/evil',
  GOPROXY: 'https://evil.example',
  GONOSUMCHECK: '1',
  GOINSECURE: '*',
  HTTP_PROXY: 'http://evil.example:3128',
};
let saved: Record<string, string | undefined> = {};
const setHostileEnv = () => {
  saved = Object.fromEntries(Object.keys(HOSTILE).map((k) => [k, process.env[k]]));
  Object.assign(process.env, HOSTILE);
};
const restoreEnv = () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
};

const assertClean = (env: NodeJS.ProcessEnv) => {
  const allowed = new Set<string>(ENV_ALLOWLIST);
  for (const name of Object.keys(env)) assert.ok(allowed.has(name), `${name} is not allowlisted`);
  for (const name of ['AWS_SECRET_ACCESS_KEY', 'AWS_ACCESS_KEY_ID', 'FAIRWAY_REDIS_URL', 'GITHUB_TOKEN', 'NODE_OPTIONS', 'HTTP_PROXY', 'LD_PRELOAD']) {
    assert.equal(env[name], undefined, name);
  }
  for (const v of Object.values(env)) {
    assert.equal(typeof v, 'string');
    // Values too short to be distinctive ("1", "*") would match any path or version by chance.
    for (const secret of Object.values(HOSTILE).filter((x) => x.length > 3)) assert.ok(!v!.includes(secret), `a value leaks ${secret}`);
  }
  assert.equal(env.GOFLAGS, '-mod=mod -buildvcs=false');
  assert.equal(env.CGO_ENABLED, '0');
  assert.equal(env.GOTOOLCHAIN, 'local');
  assert.equal(env.GOENV, 'off');
  assert.equal(env.GOTELEMETRY, 'off');
  assert.equal(env.GO111MODULE, 'on');
  assert.equal(env.LANG, 'C');
  assert.equal(env.GOINSECURE, undefined, 'GOINSECURE is never inherited');
};

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
