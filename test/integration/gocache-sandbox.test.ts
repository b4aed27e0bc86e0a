// The shared build cache through the real sandbox: go commands of the toolchain (bubblewrap, the
// build user when root) talk to the cache server over the socket bound into build sandboxes only,
// read entries from the local tier they see read-only, and a second toolchain with fresh caches
// builds from the shared tier (the fs store's gocache/ area). A built binary, run the way the
// builder runs it (src/runner runBuilt), cannot reach the socket.
//   FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/gocache-sandbox.test.ts
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { XcaddyRunner } from '../../src/runner/index.js';
import { GoCacheServer } from '../../src/fleet/index.js';
import { GOCACHE_SOCKET } from '../../src/sandbox/bwrap.js';
import { openSandbox, SandboxRunError, type Sandbox } from '../../src/sandbox/index.js';
import type { ResolvedSpec } from '../../src/request/index.js';
import { openStore, type ArtifactStore } from '../../src/store/index.js';
import { Toolchain } from '../../src/toolchain/index.js';
import { XCADDY, tempDir } from '../helpers/fairway.js';
import { CACHEPROG, writeTinyProgram } from '../helpers/gocache.js';

/** A program that tries every way to the cache server's socket and prints what happened. */
async function writeProbe(dir: string, hostSocket: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'go.mod'), 'module example.com/probe\n\ngo 1.22\n');
  await writeFile(
    join(dir, 'main.go'),
    `package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	for _, p := range []string{${JSON.stringify(GOCACHE_SOCKET)}, ${JSON.stringify(hostSocket)}, os.Getenv("FAIRWAY_GOCACHE_SOCKET")} {
		if p == "" {
			fmt.Println("reach (no env): no")
			continue
		}
		c, err := net.Dial("unix", p)
		if err != nil {
			fmt.Println("reach " + p + ": no")
			continue
		}
		c.Close()
		fmt.Println("reach " + p + ": YES")
	}
}
`,
  );
}

describe('shared build cache in the build sandbox', () => {
  let root: string;
  let sandbox: Sandbox;
  let shared: ArtifactStore;
  const servers: GoCacheServer[] = [];

  /** A toolchain with its own Go caches and local tier, hooked to a fresh cache server. */
  async function toolchain(name: string): Promise<{ tc: Toolchain; cache: GoCacheServer }> {
    const cacheDir = join(root, `cache-${name}`);
    const tc = await Toolchain.detect({ goBin: 'go', xcaddyBin: XCADDY, cacheDir, sandbox });
    const cache = await GoCacheServer.start({ localDir: join(cacheDir, 'gocacheprog'), shared });
    servers.push(cache);
    tc.useGoCache({ prog: CACHEPROG, socket: cache.socketPath, localDir: cache.localDir });
    return { tc, cache };
  }

  /** `go build` of a program in a work dir of the build identity, the way src/runner runs xcaddy (cwd and TMPDIR the work dir). */
  async function build(tc: Toolchain, program: (d: string) => Promise<void>): Promise<string> {
    const work = join(tc.tmpDir, `work-${Math.random().toString(16).slice(2)}`);
    await sandbox.ownedDir(work);
    await program(join(work, 'src'));
    const env = tc.env({ TMPDIR: work }, work);
    await sandbox.run(tc.command([tc.goBin, 'build', '-C', join(work, 'src'), '-o', join(work, 'out'), '.'], { cwd: work, network: 'none', env }), { timeoutMs: 300_000 });
    return join(work, 'out');
  }

  before(async () => {
    assert.ok(existsSync(CACHEPROG), `${CACHEPROG} is missing: run node scripts/setup.mjs`);
    root = await tempDir('fairway-gocache-sb-');
    sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
    shared = await openStore(join(root, 'store'), { area: 'gocache' });
  });
  after(async () => {
    for (const s of servers) await s.close();
    await sandbox?.close();
    await rm(root, { recursive: true, force: true });
  });

  test('a sandboxed go build fills the shared tier; a fresh toolchain builds from it', async () => {
    const a = await toolchain('a');
    const out = await build(a.tc, (d) => writeTinyProgram(d, 'hi'));
    await a.cache.flush();
    const sa = a.cache.stats();
    assert.ok(sa.puts > 10 && sa.sharedBytesWritten > 100_000, JSON.stringify(sa));
    const ran = await sandbox.run({ argv: [out], env: { PATH: '/usr/bin:/bin' }, readOnly: [out], network: 'none' });
    assert.equal(ran.stdout.trim(), 'HI, fleet');
    assert.ok((await readdir(join(root, 'store', 'gocache', 'blobs', 'sha256'))).length > 10);

    const b = await toolchain('b');
    const outB = await build(b.tc, (d) => writeTinyProgram(d, 'hi'));
    await b.cache.flush();
    const sb = b.cache.stats();
    assert.ok(sb.sharedHits > 10, JSON.stringify(sb));
    assert.ok(sb.misses < sa.misses / 4, `${sb.misses} misses, the cold build had ${sa.misses}`);
    assert.equal((await sandbox.run({ argv: [outB], env: { PATH: '/usr/bin:/bin' }, readOnly: [outB], network: 'none' })).stdout.trim(), 'HI, fleet');
  });

  test('the build sandbox reaches the socket and reads the local tier, but cannot write it', async () => {
    const { tc, cache } = await toolchain('c');
    const probe = await build(tc, (d) => writeProbe(d, cache.socketPath));
    // A toolchain command (what a build runs) has the socket: the probe can see it when it is there.
    const inBuild = await sandbox.run(tc.command([probe], { network: 'none', readOnly: [probe] }));
    assert.match(inBuild.stdout, new RegExp(`reach ${GOCACHE_SOCKET}: YES`));
    const entries = await readdir(join(cache.localDir, 'o'));
    assert.ok(entries.length > 0);
    const write = tc.command(['/bin/sh', '-c', `echo x > ${join(cache.localDir, 'o', entries[0]!, 'planted')}`], { network: 'none' });
    await assert.rejects(sandbox.run(write), (err: unknown) => err instanceof SandboxRunError && /Read-only file system|Permission denied/.test(err.stderr));
    assert.equal(existsSync(join(cache.localDir, 'o', entries[0]!, 'planted')), false);
  });

  test('through the builder (XcaddyRunner): the build uses the cache, the built binary cannot reach it', async () => {
    // A stand-in xcaddy (the part under test is the cache plumbing, not xcaddy): it writes the
    // probe and runs the real go build in the real build sandbox, as xcaddy would.
    const cacheDir = join(root, 'cache-e');
    const cache = await GoCacheServer.start({ localDir: join(cacheDir, 'gocacheprog'), shared });
    servers.push(cache);
    const probeDir = join(root, 'probe-template');
    await writeProbe(probeDir, cache.socketPath);
    const files = await Promise.all(['go.mod', 'main.go'].map(async (f) => ({ f, text: await readFile(join(probeDir, f), 'utf8') })));
    const xcaddy = join(root, 'xcaddy-standin');
    await writeFile(
      xcaddy,
      [
        '#!/bin/sh',
        'if [ "$1" = "version" ]; then echo "v0.4.7 h1:standin"; exit 0; fi',
        'set -e',
        'mkdir -p src',
        ...files.map(({ f, text }) => `cat > src/${f} <<'FAIRWAY_EOF'\n${text}FAIRWAY_EOF`),
        'cd src && "$XCADDY_WHICH_GO" build -o "$4" .',
        'echo "[INFO] Build complete: $4"',
      ].join('\n'),
    );
    await chmod(xcaddy, 0o755);
    const tc = await Toolchain.detect({ goBin: 'go', xcaddyBin: xcaddy, cacheDir, sandbox });
    tc.useGoCache({ prog: CACHEPROG, socket: cache.socketPath, localDir: cache.localDir });
    const lines: string[] = [];
    const spec: ResolvedSpec = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: tc.identity.go, xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' } };
    const out = await new XcaddyRunner(tc, { timeoutMs: 300_000 }).run(spec, { onLine: (_s, t) => lines.push(t) });
    await out.cleanup();
    await cache.flush();
    const st = cache.stats();
    // The build went through the cache.
    assert.ok(st.hits + st.puts > 10, JSON.stringify(st));
    // The binary ran (its `version` run, sandboxed without network): it reached no socket.
    const reach = lines.filter((l) => l.startsWith('reach '));
    assert.equal(reach.length, 3, lines.join('\n'));
    assert.deepEqual(
      reach.filter((l) => l.endsWith('YES')),
      [],
      lines.join('\n'),
    );
  });
});
