/**
 * Who may cancel a build (BuildService.cancel): builds are shared by key, so only the client that
 * started one, or an admin, may stop it; builds the server started itself (prebuilds, no client)
 * need an admin. Real LocalQueue and FsStore; the resolver is a stand-in that pins versions
 * without Go (resolution has its own tests), and the job blocks until it is canceled.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { BuildFailed } from '../../src/runner/index.js';
import { LocalQueue } from '../../src/queue/index.js';
import type { Resolver } from '../../src/resolve/index.js';
import { BuildService, type BuildPayload } from '../../src/service/index.js';
import { PlatformSet, type BuildRequest, type ResolvedSpec } from '../../src/request/index.js';
import { FsStore } from '../../src/store/index.js';
import { AppError } from '../../src/util/errors.js';

let dir: string;
let service: BuildService;

const resolver: Resolver = {
  resolve: async (req: BuildRequest): Promise<ResolvedSpec> => ({
    caddyVersion: 'v2.11.9',
    os: req.os,
    arch: req.arch,
    plugins: [],
    toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'test' },
  }),
  resolveModule: async () => {
    throw new Error('not used');
  },
  caddyVersions: async () => ({ versions: [], latest: null, refreshedAt: null }) as never,
  moduleVersions: async () => {
    throw new Error('not used');
  },
};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-cancel-'));
  // Every job waits until it is canceled.
  const queue = new LocalQueue<BuildPayload>(
    (ctx) =>
      new Promise((_, reject) => {
        ctx.signal.addEventListener('abort', () => reject(new BuildFailed('the build was canceled', 'canceled')), { once: true });
      }),
    { workers: 4 },
  );
  service = new BuildService({
    resolver,
    queue,
    store: await FsStore.open(join(dir, 'artifacts')),
    platforms: new PlatformSet([
      { os: 'linux', arch: 'amd64' },
      { os: 'linux', arch: 'arm64' },
      { os: 'windows', arch: 'amd64' },
    ]),
    maxPlugins: 5,
    logger: pino({ level: 'silent' }),
  });
});
after(() => rm(dir, { recursive: true, force: true }));

const alice = { client: 'token:alice', scopes: ['build' as const] };
const bob = { client: 'token:bob', scopes: ['build' as const] };
const admin = { client: 'token:ops', scopes: ['admin' as const] };
const refused = (err: unknown) => err instanceof AppError && err.statusCode === 403 && err.code === 'not_your_build';

test('another client may not cancel a build; the client that started it may, and a client that joined may not', async () => {
  const b = await service.request({ os: 'linux', arch: 'amd64' }, alice);
  assert.equal(b.status, 'queued');
  const joined = await service.request({ os: 'linux', arch: 'amd64' }, bob);
  assert.equal(joined.id, b.id, "bob joined alice's build");
  await assert.rejects(service.cancel(b.id, bob), refused);
  assert.ok(['queued', 'running'].includes((await service.get(b.id)).status), 'still active');
  assert.equal((await service.cancel(b.id, alice)).id, b.id);
  await ended(b.id);
});

/** The build is no longer active, its failure says it was canceled, and a second cancel is refused (409, nothing to stop). */
async function ended(id: string): Promise<void> {
  const end = Date.now() + 5000;
  let st = await service.get(id);
  while (['queued', 'running'].includes(st.status) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 20));
    st = await service.get(id);
  }
  assert.ok(!['queued', 'running'].includes(st.status), `the build stopped (status ${st.status})`);
  assert.notEqual(st.status, 'succeeded');
  assert.match(JSON.stringify(st), /cancel/i, 'the record says it was canceled');
  await assert.rejects(service.cancel(id, admin), (err: unknown) => err instanceof AppError && err.statusCode === 409 && err.code === 'not_active');
}

test('an admin may cancel any build', async () => {
  const b = await service.request({ os: 'linux', arch: 'arm64' }, alice);
  const r = await service.cancel(b.id, admin);
  assert.equal(r.id, b.id);
  await ended(b.id);
});

test('a build the server started (no client) needs an admin; in-process callers may cancel it', async () => {
  const p = await service.request({ os: 'windows', arch: 'amd64' });
  await assert.rejects(service.cancel(p.id, alice), (err: unknown) => refused(err) && /the server \(a prebuild\)/.test((err as Error).message));
  assert.ok(['queued', 'running'].includes((await service.get(p.id)).status), 'the refused cancel left it running');
  const r = await service.cancel(p.id);
  assert.equal(r.id, p.id);
  await ended(p.id);
});
