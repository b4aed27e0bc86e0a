// The shared build cache's socket in the real bubblewrap sandbox (like test/unit/sandbox.test.ts,
// tiny commands in milliseconds): a command that names `goCacheSocket` sees it at
// /run/fairway/gocache.sock with FAIRWAY_GOCACHE_SOCKET pointing there; any other command sees
// neither. bwrapArgs refuses an unclean socket path.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bwrapArgs, GOCACHE_SOCKET } from '../../src/sandbox/bwrap.js';
import { openSandbox, type Sandbox } from '../../src/sandbox/index.js';

const PROBE = `if [ -S ${GOCACHE_SOCKET} ]; then echo socket; else echo none; fi; echo "env=\${FAIRWAY_GOCACHE_SOCKET:-}"`;

describe('the Go cache socket in the sandbox', () => {
  let dir: string;
  let server: Server;
  let sandbox: Sandbox;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fairway-gcsock-'));
    server = createServer((c) => c.end());
    await new Promise<void>((ok) => server.listen(join(dir, 'gocache.sock'), ok));
    sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
  });
  after(async () => {
    await sandbox.close();
    await new Promise<void>((ok) => server.close(() => ok()));
    await rm(dir, { recursive: true, force: true });
  });

  test('bound, and named, only for a command that carries it', async () => {
    const withIt = await sandbox.run({ argv: ['/bin/sh', '-c', PROBE], env: { PATH: '/usr/bin:/bin' }, network: 'none', goCacheSocket: join(dir, 'gocache.sock') });
    assert.deepEqual(withIt.stdout.trim().split('\n'), ['socket', `env=${GOCACHE_SOCKET}`]);
    const without = await sandbox.run({ argv: ['/bin/sh', '-c', PROBE], env: { PATH: '/usr/bin:/bin', FAIRWAY_GOCACHE_SOCKET: join(dir, 'gocache.sock') }, network: 'none' });
    // The caller's own variable passes (it is the caller's environment), but nothing is bound there.
    assert.equal(without.stdout.trim().split('\n')[0], 'none');
    const host = await sandbox.run({ argv: ['/bin/sh', '-c', `[ -e ${join(dir, 'gocache.sock')} ] && echo visible || echo hidden`], env: { PATH: '/usr/bin:/bin' }, network: 'none' });
    assert.equal(host.stdout.trim(), 'hidden');
  });

  test('the socket path must be clean', () => {
    const plan = { system: [], identity: null, setprivBin: '', socatBin: '' };
    for (const bad of ['relative.sock', '/a/../b.sock', '/a//b.sock']) {
      assert.throws(() => bwrapArgs({ argv: ['/bin/true'], env: {}, network: 'none', goCacheSocket: bad }, plan), /clean absolute path/, bad);
    }
    const args = bwrapArgs({ argv: ['/bin/true'], env: {}, network: 'none', goCacheSocket: '/x/gocache.sock' }, plan);
    const i = args.indexOf('/x/gocache.sock');
    assert.deepEqual(args.slice(i - 1, i + 2), ['--ro-bind', '/x/gocache.sock', GOCACHE_SOCKET]);
    assert.equal(bwrapArgs({ argv: ['/bin/true'], env: {}, network: 'none' }, plan).includes(GOCACHE_SOCKET), false);
  });
});
