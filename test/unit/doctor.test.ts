// The doctor part's logic (src/doctor): running checks, the report and the exit status, and the
// checks that need no network or sandbox, each against real files, keys and sockets.
//   node --import tsx --test test/unit/doctor.test.ts
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../../src/config/index.js';
import { checkRedis, checkSigningKey, checkStore, checkWritableDir, doctorChecks, exitCode, findGo, formatReport, runChecks, runDoctor, type CheckResult } from '../../src/doctor/index.js';
import { createKeyPair } from '../../src/provenance/index.js';
import { goVersionOk } from '../../src/setup/index.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fairway-doctor-unit-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('runChecks, exitCode, formatReport', () => {
  test('checks run in order; a throwing check fails with its message; the exit status is 1 on any failure', async () => {
    const ran: string[] = [];
    const results = await runChecks([
      {
        name: 'a',
        run: async () => {
          ran.push('a');
          return { ok: true, detail: 'fine' };
        },
      },
      {
        name: 'b',
        run: async () => {
          ran.push('b');
          throw new Error('boom');
        },
      },
      {
        name: 'c',
        run: async () => {
          ran.push('c');
          return { ok: false, detail: 'broken', fix: 'repair it' };
        },
      },
    ]);
    assert.deepEqual(ran, ['a', 'b', 'c']);
    assert.deepEqual(
      results.map((r) => [r.name, r.ok]),
      [
        ['a', true],
        ['b', false],
        ['c', false],
      ],
    );
    assert.equal(results[1]!.detail, 'boom');
    assert.equal(exitCode(results), 1);
    assert.equal(exitCode(results.slice(0, 1)), 0);
    assert.equal(exitCode([results[0]!, results[2]!]), 1, 'one failure is enough');
    assert.equal(exitCode([]), 1, 'no check run is not a pass');
  });

  test('the report: one line per check, the fix under each failure only, a summary', () => {
    const results: CheckResult[] = [
      { name: 'go', ok: true, detail: 'go1.26.8', fix: 'not shown' },
      { name: 'data dir', ok: false, detail: '/x is not writable', fix: 'make /x writable' },
    ];
    const text = formatReport(results);
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0]!, /^ok {3}go {8}go1\.26\.8$/);
    assert.match(lines[1]!, /^FAIL data dir {2}\/x is not writable$/);
    assert.match(lines[2]!, /^ +fix: make \/x writable$/);
    assert.equal(lines[3], '1 of 2 checks failed');
    assert.doesNotMatch(text, /not shown/);
    assert.match(formatReport(results.slice(0, 1)), /all 1 checks passed\n$/);
  });
});

describe('Go versions', () => {
  test('the minimum is go1.22', () => {
    for (const ok of ['go1.22.0', 'go1.22', 'go1.26.8', 'go1.30rc1', 'go2.0.0']) assert.equal(goVersionOk(ok), true, ok);
    for (const bad of ['go1.21.13', 'go1.9', 'devel +abc', '', 'go']) assert.equal(goVersionOk(bad), false, bad);
  });

  test('findGo: null when no PATH dir has go', async () => {
    assert.equal(await findGo('go', { PATH: dir }), null);
    assert.equal(await findGo(join(dir, 'nope', 'go'), { PATH: '' }), null);
  });
});

describe('data and cache dirs', () => {
  test('a dir is created, written, read and cleaned; its free space is reported', async () => {
    const d = join(dir, 'data', 'nested');
    const r = await checkWritableDir(d, 1, 'the data dir');
    assert.equal(r.ok, true, r.detail);
    assert.match(r.detail, /writable, .* free/);
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(d), [], 'the probe file is deleted');
  });

  test('a dir whose parent is a regular file fails and names the fix', async () => {
    await writeFile(join(dir, 'file'), 'x');
    const r = await checkWritableDir(join(dir, 'file', 'data'), 0, 'the data dir (--data-dir)');
    assert.equal(r.ok, false);
    assert.match(r.detail, /ENOTDIR/);
    assert.match(r.fix ?? '', /--data-dir/);
  });

  test('less free space than minFreeDisk fails with the free-space fix', async () => {
    const r = await checkWritableDir(join(dir, 'data'), Number.MAX_SAFE_INTEGER, 'the data dir');
    assert.equal(r.ok, false);
    assert.match(r.detail, /less than minFreeDisk/);
    assert.match(r.fix ?? '', /--min-free-disk/);
  });
});

describe('signing key', () => {
  test('a valid private key, mode 0600, outside what builds see: passes with its fingerprint', async () => {
    const k = createKeyPair();
    const p = join(dir, 'signing.key');
    await writeFile(p, k.privatePem, { mode: 0o600 });
    const r = await checkSigningKey(p, join(dir, 'cache'));
    assert.equal(r.ok, true, r.detail);
    assert.ok(r.detail.includes(k.fingerprint));
  });

  test('readable by others, not a key, under the cache dir or /usr: each fails with its fix', async () => {
    const k = createKeyPair();
    const open = join(dir, 'open.key');
    await writeFile(open, k.privatePem);
    await chmod(open, 0o644);
    const loose = await checkSigningKey(open, join(dir, 'cache'));
    assert.equal(loose.ok, false);
    assert.match(loose.fix ?? '', /chmod 0600/);

    const junk = join(dir, 'junk.key');
    await writeFile(junk, 'not a key', { mode: 0o600 });
    const bad = await checkSigningKey(junk, join(dir, 'cache'));
    assert.equal(bad.ok, false);
    assert.match(bad.fix ?? '', /fairway key create/);
    assert.match(bad.fix ?? '', /set --signing-key$/);
    assert.match((await checkSigningKey(junk, join(dir, 'cache'), '--index-signing-key')).fix ?? '', /set --index-signing-key$/, 'the index key: its own flag');

    const inCache = await checkSigningKey(join(dir, 'cache', 'k.pem'), join(dir, 'cache'));
    assert.equal(inCache.ok, false);
    assert.match(inCache.detail, /sandboxed builds can read/);
    const inUsr = await checkSigningKey('/usr/share/fairway.key', join(dir, 'cache'));
    assert.equal(inUsr.ok, false);
    assert.match(inUsr.detail, /under \/usr/);
  });
});

describe('Redis and the store', () => {
  test('Redis on a closed port fails with the connection error and the fix', async () => {
    // A port that was free a moment ago: nothing listens on it.
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => r(typeof a === 'object' && a ? a.port : 1));
      });
    });
    const r = await checkRedis(`redis://127.0.0.1:${port}`, 3_000);
    assert.equal(r.ok, false);
    assert.match(r.detail, /ECONNREFUSED/);
    assert.match(r.fix ?? '', /FAIRWAY_REDIS/);
  });

  test('an fs store: a probe record is put, read and deleted; a store under a file fails', async () => {
    const ok = await checkStore(join(dir, 'store'), dir);
    assert.equal(ok.ok, true, ok.detail);
    const { readdir } = await import('node:fs/promises');
    assert.deepEqual(await readdir(join(dir, 'store', 'records', 'doctor')).catch(() => []), [], 'the probe record is gone');
    await writeFile(join(dir, 'store-file'), 'x');
    const bad = await checkStore(join(dir, 'store-file', 'artifacts'), dir);
    assert.equal(bad.ok, false);
    assert.match(bad.fix ?? '', /--store/);
  });
});

describe('doctorChecks for a configuration', () => {
  test('optional checks appear only when configured', () => {
    const base = loadConfig({ env: {}, flags: { dataDir: join(dir, 'd') } });
    const names = (c: typeof base) => doctorChecks({ config: c, setupCommand: 'fairway setup' }).checks.map((x) => x.name);
    assert.deepEqual(names(base), ['node', 'go', 'xcaddy', 'cacheprog', 'sandbox', 'limits', 'module proxy', 'data dir', 'cache dir']);
    assert.deepEqual(names({ ...base, redis: 'redis://127.0.0.1:6379', store: '/tmp/s', signingKey: '/etc/k' }).slice(9), ['redis', 'store', 'signing key']);
    assert.deepEqual(names({ ...base, indexSigningKey: '/etc/i' }).slice(9), ['index signing key']);
  });

  test('node: maintained lines pass (22.12+, 24, 26), end-of-life ones fail with the fix', async () => {
    const config = loadConfig({ env: {}, flags: { dataDir: join(dir, 'dn') } });
    const nodeCheck = async (v: string) => doctorChecks({ config, setupCommand: 'fairway setup', nodeVersion: v }).checks[0]!.run();
    for (const v of ['v22.12.0', 'v22.20.1', 'v24.0.0', 'v24.21.0', 'v26.1.0']) assert.equal((await nodeCheck(v)).ok, true, v);
    for (const v of ['v18.20.8', 'v20.20.2', 'v22.11.0', 'v23.11.1', 'v25.2.0', 'garbage']) {
      const r = await nodeCheck(v);
      assert.equal(r.ok, false, v);
      assert.match(r.detail, /past its end of life/);
      assert.match(r.fix ?? '', /install Node\.js 24 LTS/);
    }
    // This test process itself runs on the pinned Node 24 (npm test puts node_modules/.bin first on PATH).
    assert.equal((await nodeCheck(process.version)).ok, true, `the tests run on ${process.version}`);
    assert.equal(process.versions.node.split('.')[0], '24', 'npm test runs the tests on Node 24 (the node devDependency)');
  });

  test('the limits check says which mechanism is in force, with the settings (the real sandbox)', async () => {
    for (const [mode, want] of [
      ['auto', process.getuid?.() === 0 ? /^cgroup[12]: cgroup v[12] at / : /^(cgroup2|rlimits)/],
      ['rlimits', /^rlimits: rlimits only \(rlimits chosen \(sandboxLimits=rlimits\)/],
    ] as const) {
      const config = loadConfig({ env: {}, flags: { dataDir: join(dir, `lim-${mode}`), minFreeDisk: '0', sandboxLimits: mode, runMemoryMax: '300MiB' } });
      const { checks, close } = doctorChecks({ config, setupCommand: 'fairway setup', env: { PATH: process.env.PATH ?? '', HOME: dir } });
      try {
        const sandbox = await checks.find((c) => c.name === 'sandbox')!.run();
        assert.equal(sandbox.ok, true, sandbox.detail);
        const limits = await checks.find((c) => c.name === 'limits')!.run();
        assert.equal(limits.ok, true, limits.detail);
        assert.match(limits.detail, want);
        assert.match(limits.detail, /go commands: memory 4 GiB, 1024 tasks, tmpfs 1 GiB, files up to 2 GiB; built binaries: memory 300 MiB, 128 tasks/);
        assert.match(limits.detail, /seccomp on/);
      } finally {
        await close();
      }
    }
  });

  test('Go missing and xcaddy missing: both fail, naming the fix; the proxy check is not run; exit 1', async () => {
    const config = { ...loadConfig({ env: {}, flags: { dataDir: join(dir, 'd2'), sandbox: 'none', minFreeDisk: '0' } }), xcaddyBin: join(dir, 'no-xcaddy') };
    const results = await runDoctor({ config, setupCommand: 'fairway setup --tools-dir /opt/t', env: { PATH: dir, HOME: dir } });
    const by = Object.fromEntries(results.map((r) => [r.name, r]));
    assert.equal(by.go!.ok, false);
    assert.match(by.go!.fix ?? '', /install Go 1\.22 or newer/);
    assert.equal(by.xcaddy!.ok, false);
    assert.equal(by.xcaddy!.fix, `run \`fairway setup --tools-dir /opt/t\` (it installs xcaddy v0.4.7 into ${join(config.toolsDir, 'bin')}), or set --xcaddy-bin`);
    assert.equal(by['module proxy']!.ok, false);
    assert.match(by['module proxy']!.detail, /not checked: Go is missing/);
    assert.equal(by.sandbox!.ok, true, 'sandbox none is a warning, not a failure');
    assert.match(by.sandbox!.detail, /unsafe/);
    assert.equal(by['data dir']!.ok, true);
    assert.equal(exitCode(results), 1);
  });
});
