/**
 * What an agent accepts from Redis: checkResolvedSpec holds a job's spec to the request grammar
 * (every version exact, no local directories, a buildable target), and the agent's job check
 * (checkRemoteJob, before the processor) refuses a spec whose cache key is not the job's, writing
 * nothing to the store.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BuildRunner } from '../../src/runner/index.js';
import { JobRefused } from '../../src/queue/index.js';
import type { JobContext } from '../../src/queue/types.js';
import { buildProcessor, type BuildPayload } from '../../src/service/index.js';
import { checkRemoteJob } from '../../src/service/jobcheck.js';
import { cacheKey, checkResolvedSpec, PlatformSet, SpecError, type ResolvedSpec } from '../../src/request/index.js';
import { FsStore } from '../../src/store/index.js';

const platforms = new PlatformSet([
  { os: 'linux', arch: 'amd64' },
  { os: 'linux', arch: 'arm' },
  { os: 'windows', arch: 'amd64' },
]);
const good: ResolvedSpec = {
  caddyVersion: 'v2.11.9',
  os: 'linux',
  arch: 'amd64',
  plugins: [
    { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' },
    { module: 'github.com/example/fork', replace: { kind: 'module', module: 'github.com/me/fork', version: 'v0.0.0-20260101000000-abcdefabcdef' } },
  ],
  toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'xcaddy-default+sorted-plugins' },
};
const check = (spec: unknown, allowLocalPaths = false) => checkResolvedSpec(spec, { platforms, allowLocalPaths });
const refused = (spec: unknown, field: RegExp, allowLocalPaths = false) =>
  assert.throws(
    () => check(spec, allowLocalPaths),
    (e: unknown) => e instanceof SpecError && field.test(e.field),
    JSON.stringify(spec).slice(0, 200),
  );

test('a spec a hub resolved passes unchanged, and survives a JSON round trip (Redis)', () => {
  assert.deepEqual(check(JSON.parse(JSON.stringify(good))), good);
  assert.deepEqual(check({ ...good, arch: 'arm', arm: '7' }), { ...good, arch: 'arm', arm: '7' });
});

test('moving versions, bad module paths and flag-like values are refused', () => {
  refused({ ...good, caddyVersion: 'latest' }, /^spec\.caddyVersion$/);
  refused({ ...good, caddyVersion: '-v2.11.9' }, /^spec\.caddyVersion$/);
  refused({ ...good, plugins: [{ module: 'github.com/a/b', version: 'master' }] }, /plugins\[0\]\.version/);
  refused({ ...good, plugins: [{ module: '-modfile=/etc/passwd', version: 'v1.0.0' }] }, /plugins\[0\]\.module/);
  refused({ ...good, plugins: [{ module: 'github.com/a/b' }] }, /plugins\[0\]\.version/);
  refused({ ...good, plugins: [{ module: 'github.com/a/b', version: 'v1.0.0', replace: { kind: 'module', module: 'github.com/c/d', version: 'latest' } }] }, /replace\.version/);
  refused({ ...good, plugins: [good.plugins[0], good.plugins[0]] }, /plugins\[1\]\.module/);
});

test('local directory replacements are refused unless allowed (in-process only)', () => {
  const local = { ...good, plugins: [{ module: 'github.com/a/b', replace: { kind: 'path', path: '/etc' } }] };
  refused(local, /plugins\[0\]\.replace/);
  assert.equal(check(local, true).plugins[0]!.replace?.kind, 'path');
  refused({ ...good, plugins: [{ module: 'github.com/a/b', replace: { kind: 'path', path: 'etc' } }] }, /replace\.path/, true);
});

test('unknown targets, GOARM outside arm, unknown fields and wrong types are refused', () => {
  refused({ ...good, os: 'plan10' }, /^spec\.os$/);
  refused({ ...good, arm: '7' }, /^spec\.arm$/);
  refused({ ...good, arch: 'arm' }, /^spec\.arm$/);
  refused({ ...good, arch: 'arm', arm: '8' }, /^spec\.arm$/);
  refused({ ...good, extra: 1 }, /^spec/);
  refused({ ...good, toolchain: { ...good.toolchain, env: 'CGO_ENABLED=1' } }, /^spec\.toolchain/);
  refused({ ...good, plugins: 'github.com/a/b' }, /^spec\.plugins/);
  refused(null, /^spec/);
});

test('a remote job whose spec does not hash to its key is refused before anything runs or is stored', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fairway-refuse-'));
  try {
    const store = await FsStore.open(join(dir, 'artifacts'));
    let ran = 0;
    const runner: BuildRunner = {
      run: async () => {
        ran++;
        throw new Error('must not run');
      },
    };
    // As an agent runs a job from Redis: the job check, then (only when it passes) the processor.
    const processor = buildProcessor(runner, store);
    const identity = { go: good.toolchain.go, xcaddy: good.toolchain.xcaddy };
    const process = async (c: JobContext<BuildPayload>) => processor({ ...c, payload: checkRemoteJob({ key: c.key, data: c.payload, agent: c.agent }, { identity, platforms }) });
    const ctx = (key: string, spec: unknown) => ({
      key,
      payload: { request: { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [] }, spec, requestedAt: new Date().toISOString() } as BuildPayload,
      agent: 'a1',
      signal: new AbortController().signal,
      finalAttempt: true,
      log: () => undefined,
      phase: () => undefined,
      lines: async () => [],
    });
    const otherKey = cacheKey({ ...good, plugins: [] });
    await assert.rejects(process(ctx(otherKey, good)), (e: unknown) => e instanceof JobRefused && /cache key/.test((e as Error).message));
    await assert.rejects(process(ctx(cacheKey(good), { ...good, caddyVersion: 'latest' })), (e: unknown) => e instanceof JobRefused && /caddyVersion/.test((e as Error).message));
    assert.equal(ran, 0);
    assert.deepEqual(
      (await readdir(join(dir, 'artifacts'))).filter((n) => !n.startsWith('.')),
      [],
      'nothing stored',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
