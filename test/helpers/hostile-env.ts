/**
 * A server environment full of secrets and hostile Go settings, and the check that a child
 * environment the toolchain made holds none of them (the allowlist; src/toolchain).
 */
import assert from 'node:assert/strict';
import { ENV_ALLOWLIST } from '../../src/toolchain/index.js';

export const HOSTILE: Record<string, string> = {
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
export const setHostileEnv = () => {
  saved = Object.fromEntries(Object.keys(HOSTILE).map((k) => [k, process.env[k]]));
  Object.assign(process.env, HOSTILE);
};
export const restoreEnv = () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
};

export const assertClean = (env: NodeJS.ProcessEnv) => {
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
