/**
 * checkRemoteJob (src/service/jobcheck.ts): every check an agent makes on a job taken from
 * Redis, in one function. The BullMQ worker calls it before anything runs
 * (test/integration/queue-contract.test.ts, distributed.test.ts).
 *   node --import tsx --test test/unit/jobcheck.test.ts
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JobRefused } from '../../src/queue/index.js';
import { remoteJobCheck } from '../../src/service/index.js';
import { checkRemoteJob } from '../../src/service/jobcheck.js';
import { BUILD_FLAGS, cacheKey, PlatformSet, rebuildKey, type ResolvedSpec } from '../../src/request/index.js';
import { LEGACY_BUILD_FLAGS } from '../../src/request/key.js';

const platforms = new PlatformSet([
  { os: 'linux', arch: 'amd64' },
  { os: 'linux', arch: 'arm' },
]);
const identity = { go: 'go1.26.8', xcaddy: 'v0.4.5' };
const spec: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }],
  toolchain: { go: identity.go, xcaddy: identity.xcaddy, flags: BUILD_FLAGS },
};
const request = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }] };
const requestedAt = '2026-12-01T00:00:00.000Z';
const key = cacheKey(spec);
const payload = { request, spec, requestedAt, requestedBy: 'ip:127.0.0.1' };
const check = (data: unknown, k = key) => checkRemoteJob({ key: k, data: JSON.parse(JSON.stringify(data ?? null)), agent: 'agent-a' }, { identity, platforms });
const refused = (data: unknown, message: RegExp, k = key) =>
  assert.throws(
    () => check(data, k),
    (e: unknown) => e instanceof JobRefused && message.test(e.message),
    JSON.stringify(data)?.slice(0, 200),
  );

test('a job a hub queued passes, its payload typed and unchanged (after a JSON round trip, as from Redis)', () => {
  assert.deepEqual(check(payload), payload);
  const { requestedBy: _, ...anonymous } = payload;
  assert.deepEqual(check(anonymous), anonymous);
  assert.deepEqual(remoteJobCheck({ identity, platforms })({ key, data: payload, agent: 'a' }), payload);
});

test("the toolchain must be this agent's", () => {
  refused(
    { ...payload, spec: { ...spec, toolchain: { ...spec.toolchain, go: 'go1.20.1' } } },
    /^agent agent-a has go1\.26\.8 and xcaddy v0\.4\.5, but this build was keyed for go1\.20\.1 and xcaddy v0\.4\.5; run the same versions on hubs and agents$/,
  );
  refused({ ...payload, spec: { ...spec, toolchain: { ...spec.toolchain, xcaddy: 'v0.4.4' } } }, /keyed for go1\.26\.8 and xcaddy v0\.4\.4/);
  refused({ ...payload, spec: { ...spec, toolchain: undefined } }, /^agent agent-a refused job [0-9a-f]{64}: its payload has no spec\.toolchain \(not queued by a Fairway hub\?\)$/);
  refused(null, /has no spec\.toolchain/);
  refused('a string', /has no spec\.toolchain/);
});

test('the spec must hold to the grammar: exact versions, no local directory, a target this machine builds', () => {
  const bad = (s: object) => ({ ...payload, spec: { ...spec, ...s } });
  refused(bad({ caddyVersion: 'latest' }), /^refused job [0-9a-f]{64}: .*caddyVersion.* \(jobs come from the hubs; check who else writes to Redis\)$/);
  refused(bad({ plugins: [{ module: 'github.com/a/b', version: 'master' }] }), /plugins\[0\]\.version/);
  refused(bad({ plugins: [{ module: 'github.com/a/b', replace: { kind: 'path', path: '/etc' } }] }), /plugins\[0\]\.replace.*local directory/);
  refused(bad({ os: 'windows' }), /spec\.os/);
  refused(bad({ extra: 1 }), /^refused job .*spec/);
});

test("the spec must hash to the job's key", () => {
  const other = cacheKey({ ...spec, plugins: [] });
  refused(payload, /^refused job [0-9a-f]{64}: its spec has the cache key [0-9a-f]{64}, not the job's \(jobs come from the hubs; check who else writes to Redis\)$/, other);
  // A spec that hashes to its key but is not the key's: a plugin added under a plain key.
  const plain = { ...spec, plugins: [] };
  refused({ ...payload, spec: { ...plain, plugins: [{ module: 'github.com/evil/caddy-backdoor', version: 'v1.0.0' }] } }, /its spec has the cache key/, cacheKey(plain));
});

test('the build flags must be the ones this agent builds with: foreign or legacy flags are refused', () => {
  for (const flags of ['-ldflags=-X main.backdoor=1', LEGACY_BUILD_FLAGS, '']) {
    const forged = { ...spec, toolchain: { ...spec.toolchain, flags } };
    refused({ ...payload, spec: forged }, /^refused job [0-9a-f]{64}: it was keyed for the build flags .* but this agent builds with xcaddy-default\+sorted-plugins/, cacheKey(forged));
  }
});

test('the request must be the one that resolved to the spec (it is signed beside it)', () => {
  const contradicts = /^refused job [0-9a-f]{64}: its request contradicts its spec: /;
  refused({ ...payload, request: { ...request, os: 'windows' } }, contradicts);
  refused({ ...payload, request: { ...request, caddyVersion: 'v2.10.0' } }, /asks for Caddy v2\.10\.0, the spec has v2\.11\.9/);
  refused({ ...payload, request: { ...request, plugins: [] } }, /plugins the request did not ask for \(github\.com\/mholt\/caddy-l4\)/);
  refused({ ...payload, request: { ...request, plugins: [{ module: 'github.com/evil/x', version: 'v1.0.0' }] } }, /plugin "github\.com\/evil\/x" is not in the spec/);
  refused({ ...payload, request: { ...request, plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.1' }] } }, /pins github\.com\/mholt\/caddy-l4@v0\.1\.1, the spec has v0\.1\.2/);
  refused(
    { ...payload, request: { ...request, plugins: [{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/evil/l4@v1.0.0' }] } },
    /replaces github\.com\/mholt\/caddy-l4, the spec does not/,
  );
  refused({ ...payload, request: { ...request, pwned: '<script>' } }, /^refused job/);
  // Queries stand for the spec's exact versions.
  assert.deepEqual(check({ ...payload, request: { ...request, caddyVersion: 'latest', plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'latest' }] } }).spec, spec);
});

test('the rest of the payload must be there', () => {
  refused({ ...payload, request: undefined }, /has no request/);
  refused({ ...payload, requestedAt: 'yesterday' }, /no valid requestedAt/);
  refused({ ...payload, requestedBy: 7 }, /requestedBy is not a string/);
});

test('a verification rebuild: under rebuildKey(original), naming the original; any other pairing is refused', () => {
  const rkey = rebuildKey(key);
  const rebuild = { ...payload, rebuildOf: key, avoidAgent: 'agent-b' };
  assert.deepEqual(check(rebuild, rkey), rebuild);
  // The original's own key with rebuildOf: a rebuild must not replace the original artifact.
  refused(rebuild, /claims to rebuild [0-9a-f]{64}, but its spec has the cache key [0-9a-f]{64} and its key is not that build's rebuild key/, key);
  // Naming another build than the spec's.
  const other = cacheKey({ ...spec, arch: 'arm', arm: '7' });
  refused({ ...rebuild, rebuildOf: other }, /claims to rebuild/, rebuildKey(other));
  // A rebuild key without rebuildOf: the spec does not hash to it.
  refused(payload, /its spec has the cache key [0-9a-f]{64}, not the job's/, rkey);
  refused({ ...rebuild, avoidAgent: 7 }, /avoidAgent is not a string/, rkey);
  assert.notEqual(rkey, key);
  assert.match(rkey, /^[0-9a-f]{64}$/);
});
