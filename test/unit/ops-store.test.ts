// Unit tests of the ops wiring's start-up spec check (createHttpOps) and of the ArtifactStore
// interface's obligations (usage, access tracking, free space).
//   node --import tsx --test test/unit/ops-store.test.ts
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { loadConfig } from '../../src/config/index.js';
import { createHttpOps } from '../../src/ops/index.js';
import { expandPrebuilds } from '../../src/ops/prebuilds.js';
import type { BuildPayload, BuildService } from '../../src/service/index.js';
import type { BuildQueue } from '../../src/queue/index.js';
import { PlatformSet, parseBuildRequest } from '../../src/request/index.js';
import { FsStore, type ArtifactStore } from '../../src/store/index.js';
import type { Toolchain } from '../../src/toolchain/index.js';

const silent = pino({ level: 'silent' });
const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const platforms = new PlatformSet([
  { os: 'linux', arch: 'amd64' },
  { os: 'linux', arch: 'arm64' },
  { os: 'linux', arch: 'arm' },
]);

/** createHttpOps with the given ops flags; returns the bodies its start-up check parsed. */
async function startOps(flags: Record<string, unknown>): Promise<unknown[]> {
  const dir = await mkdtemp(join(tmpdir(), 'fairway-ops-store-'));
  dirs.push(dir);
  const config = loadConfig({ flags: { dataDir: dir, ...flags }, env: {} });
  const parsed: unknown[] = [];
  const service = {
    parse: (body: unknown) => {
      parsed.push(body);
      return parseBuildRequest(body, { platforms, maxPlugins: 10, allowLocalReplace: false });
    },
    observe: () => undefined,
  } as unknown as BuildService;
  const queue = { depth: async () => ({ queued: 0, running: 0 }), agents: async () => [] } as unknown as BuildQueue<BuildPayload>;
  const store = await FsStore.open(join(dir, 'artifacts'));
  const ops = createHttpOps({ config, logger: silent, service, store, queue, toolchain: {} as Toolchain });
  await ops.close();
  return parsed;
}

describe('createHttpOps: the start-up check of prebuild specs', () => {
  test('a linux/arm/v7 prebuild target is checked with its GOARM (the same expansion the Prebuilder uses)', async () => {
    const parsed = await startOps({ prebuild: 'linux/amd64,linux/arm/v7' });
    assert.deepEqual(parsed, [
      { caddyVersion: 'latest', os: 'linux', arch: 'amd64', plugins: [] },
      { caddyVersion: 'latest', os: 'linux', arch: 'arm', arm: '7', plugins: [] },
    ]);
    assert.deepEqual(parsed, expandPrebuilds(loadConfig({ flags: { prebuild: 'linux/amd64,linux/arm/v7' }, env: {} }).prebuild));
  });

  test('a GOARM the parser refuses fails at start, not at the first prebuild', async () => {
    await assert.rejects(() => startOps({ prebuild: 'linux/arm/v9' }), /invalid prebuild spec .*arm.*must be one of 5, 6, 7/);
  });

  test('entries without platforms are checked as they are', async () => {
    const parsed = await startOps({ prebuild: JSON.stringify([{ caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm', arm: '6' }]) });
    assert.deepEqual(parsed, [{ caddyVersion: 'v2.10.0', os: 'linux', arch: 'arm', arm: '6' }]);
  });
});

describe('ArtifactStore: what every store kind must carry', () => {
  test('usage(), accessTracker() and freeBytes() are required members (checked by tsc -p tsconfig.test.json)', () => {
    // A store kind without one of them does not compile: these assignments must be type errors.
    // @ts-expect-error no access tracking: last-download times would silently be lost
    const noTracker: ArtifactStore = {} as Omit<ArtifactStore, 'accessTracker'>;
    // @ts-expect-error no per-artifact usage: the pruner could not measure the store
    const noUsage: ArtifactStore = {} as Omit<ArtifactStore, 'usage'>;
    // @ts-expect-error no free space answer (null is the answer for "none")
    const noFree: ArtifactStore = {} as Omit<ArtifactStore, 'freeBytes'>;
    assert.ok(noTracker && noUsage && noFree);
  });

  test('FsStore: a tracker of its own kind, usage of an empty store, free bytes as a number', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fairway-ops-store-'));
    dirs.push(dir);
    const store: ArtifactStore = await FsStore.open(join(dir, 'artifacts'));
    const t = store.accessTracker();
    assert.equal(t.kind, 'fs');
    await t.close();
    const u = await store.usage();
    assert.deepEqual([u.bytes, u.objects, u.entries.size], [0, 0, 0]);
    const free = await store.freeBytes();
    assert.ok(typeof free === 'number' && free > 0);
  });
});
