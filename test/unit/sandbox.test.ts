/**
 * The build sandbox (src/sandbox) with the real bubblewrap: what a command inside can see, write,
 * reach and who it is; the module relay's rules. Each check is made against a host resource that
 * exists and is reachable from outside, so a sandbox that leaked would turn it red.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, writeFile, chmod, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { bwrapArgs } from '../../src/sandbox/bwrap.js';
import { openSandbox, parseGoproxy, SandboxRunError, type Sandbox, type SandboxCommand } from '../../src/sandbox/index.js';
import { proxyPath, startModuleRelay } from '../../src/sandbox/modproxy.js';

describe('GOPROXY for sandboxed builds', () => {
  test("parseGoproxy keeps proxies with Go's fallback rule and drops direct/off", () => {
    assert.deepEqual(parseGoproxy('https://a.example,https://b.example|file:///srv/mods,direct'), {
      upstreams: [
        { url: 'https://a.example', fallThrough: 'not-found' },
        { url: 'https://b.example', fallThrough: 'any-error' },
        { url: 'file:///srv/mods', fallThrough: 'not-found' },
      ],
      dropped: ['direct'],
    });
    assert.deepEqual(parseGoproxy(undefined).upstreams, [{ url: 'https://proxy.golang.org', fallThrough: 'not-found' }]);
    assert.deepEqual(parseGoproxy('https://a.example,off,https://b.example'), { upstreams: [{ url: 'https://a.example', fallThrough: 'not-found' }], dropped: ['https://b.example'] });
    assert.throws(() => parseGoproxy('ftp://x.example'), /only https, http and file/);
    assert.throws(() => parseGoproxy('not a url'), /not a URL/);
  });

  test('the relay answers module and checksum-database paths only', () => {
    for (const ok of [
      '/github.com/mholt/caddy-l4/@v/list',
      '/github.com/!burnt!sushi/toml/@v/v1.3.2.zip',
      '/example.com/x/@latest',
      '/golang.org/x/net/@v/v0.1.0.info',
      '/sumdb/sum.golang.org/supported',
      '/sumdb/sum.golang.org/lookup/github.com/mholt/caddy-l4@v0.1.2',
      '/sumdb/sum.golang.org/tile/8/0/x123/456',
    ]) {
      assert.equal(proxyPath(ok), ok, ok);
    }
    // The go command percent-encodes the "!" of case-encoded paths: decoded once, forwarded decoded.
    assert.equal(proxyPath('/github.com/%21andreas%21briese/bbloom/@v/v0.0.0-20190825152654-46b345b51c96.mod'), '/github.com/!andreas!briese/bbloom/@v/v0.0.0-20190825152654-46b345b51c96.mod');
    assert.equal(proxyPath('/sumdb/sum.golang.org/lookup/github.com/%21burnt%21sushi/toml@v1.3.2'), '/sumdb/sum.golang.org/lookup/github.com/!burnt!sushi/toml@v1.3.2');
    for (const bad of [
      '/x/@v/%252e.zip',
      '/x/@v/%zz.zip',
      '/x/%2F@v/list',
      '/x/@v/v1%0a.zip',
      '/',
      '/metrics',
      '/api/builds',
      '/../etc/passwd',
      '/a/../b/@v/list',
      '/x/@v/%2e%2e.zip',
      '//evil/@v/list',
      '/Github.com/X/@v/list',
      '/x/@v/v1.zip/extra',
      '/sumdb/sum.golang.org/../../x',
      '/x/@v/list\\..',
    ]) {
      assert.equal(proxyPath(bad), null, bad);
    }
  });
});

describe('the bubblewrap sandbox', () => {
  let dir: string;
  let sandbox: Sandbox;
  let listener: Server;
  let port: number;
  let connections = 0;
  const secret = `sandbox-secret-${process.pid}-${Date.now()}`;
  let secretFile: string;
  let writable: string;
  let readonlyDir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fairway-sbx-'));
    await chmod(dir, 0o755);
    secretFile = join(dir, 'secret.txt');
    await writeFile(secretFile, secret);
    writable = join(dir, 'work');
    readonlyDir = join(dir, 'ro');
    await mkdir(readonlyDir);
    await writeFile(join(readonlyDir, 'data.txt'), 'visible\n');
    // A module "proxy" on disk, relayed to the sandbox.
    const mods = join(dir, 'mods', 'example.com', 'm', '@v');
    await mkdir(mods, { recursive: true });
    await writeFile(join(mods, 'list'), 'v1.0.0\n');
    await mkdir(join(dir, 'mods', 'example.com', '!upper', '@v'), { recursive: true });
    await writeFile(join(dir, 'mods', 'example.com', '!upper', '@v', 'list'), 'v2.0.0\n');
    process.env.FAIRWAY_SANDBOX_TEST_SECRET = secret;
    sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', goproxy: `file://${join(dir, 'mods')}` });
    await sandbox.ownedDir(writable);
    listener = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
    port = (listener.address() as { port: number }).port;
  });
  after(async () => {
    delete process.env.FAIRWAY_SANDBOX_TEST_SECRET;
    listener.close();
    await sandbox.close();
  });

  const sh = (script: string, o: Partial<SandboxCommand> = {}) => sandbox.run({ argv: ['/bin/sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, network: 'none', ...o }, { timeoutMs: 20_000 });

  test('runs as the build user, not as the server', async () => {
    const { stdout } = await sh('id -u; id -g; cat /proc/self/status | grep -E "^(CapEff|NoNewPrivs)"');
    const [uid, gid, capEff, nnp] = stdout.trim().split('\n');
    assert.equal(Number(uid), sandbox.identity!.uid);
    assert.notEqual(Number(uid), process.getuid!());
    assert.equal(Number(gid), sandbox.identity!.gid);
    assert.match(capEff!, /CapEff:\s+0+$/);
    assert.match(nnp!, /NoNewPrivs:\s+1/);
  });

  test('sees no server process and no server environment', async () => {
    // Everything readable in /proc/*/environ and cmdline is printed; the check is made out here,
    // so the script's own command line does not hold the secret.
    const { stdout } = await sh(
      `ls /proc | grep -E '^[0-9]+$' | wc -l; test -e /proc/${process.pid}/environ && echo visible || echo hidden; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n'; env`,
    );
    const [count, server] = stdout.trim().split('\n');
    assert.ok(Number(count) <= 6, `only the sandbox's own processes: ${count}`);
    assert.equal(server, 'hidden');
    assert.ok(stdout.includes('PATH=/usr/bin:/bin'), "the sandbox's own environ was readable, so a leak would show");
    assert.ok(!stdout.includes(secret), 'the server environment is not visible');
  });

  test('sees only the paths it is given, read-only unless writable', async () => {
    const { stdout } = await sh(
      [
        `cat ${secretFile} 2>/dev/null || echo no-secret`,
        `cat ${join(readonlyDir, 'data.txt')}`,
        `touch ${join(readonlyDir, 'x')} 2>/dev/null && echo ro-written || echo ro-refused`,
        `touch ${join(writable, 'made')} && echo rw-ok`,
        'touch /usr/x 2>/dev/null && echo usr-written || echo usr-refused',
        `ls ${dir} 2>/dev/null | wc -l`,
      ].join('; '),
      { readOnly: [readonlyDir], writable: [writable] },
    );
    assert.deepEqual(stdout.trim().split('\n'), ['no-secret', 'visible', 'ro-refused', 'rw-ok', 'usr-refused', '2']);
    assert.equal((await stat(join(writable, 'made'))).uid, sandbox.identity!.uid);
  });

  test('network none: no loopback service of the host, no outside', async () => {
    const before = connections;
    await assert.rejects(sh(`${`exec 3<>/dev/tcp/127.0.0.1/${port}`.replace('exec', 'bash -c "exec')}"`), SandboxRunError);
    await assert.rejects(sh('getent hosts proxy.golang.org || exit 1'), SandboxRunError);
    assert.equal(connections, before, 'the host listener saw no connection');
  });

  test('network modules: the relay answers module paths; nothing else is reachable', async () => {
    const before = connections;
    const fetchIn = (path: string) => `bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128; printf "GET ${path} HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'`;
    const ok = await sh(fetchIn('/example.com/m/@v/list'), { network: 'modules' });
    assert.match(ok.stdout, /^HTTP\/1\.1 200/);
    assert.match(ok.stdout, /v1\.0\.0/);
    // As the go command asks for a module with upper-case letters: "!" percent-encoded.
    const upper = await sh(fetchIn('/example.com/%%21upper/@v/list'), { network: 'modules' }); // %% for printf
    assert.match(upper.stdout, /^HTTP\/1\.1 200/);
    assert.match(upper.stdout, /v2\.0\.0/);
    const refused = await sh(fetchIn('/api/builds'), { network: 'modules' });
    assert.match(refused.stdout, /^HTTP\/1\.1 404/);
    await assert.rejects(sh(`bash -c "exec 3<>/dev/tcp/127.0.0.1/${port}"`, { network: 'modules' }), SandboxRunError);
    assert.equal(connections, before, 'the host listener saw no connection');
  });

  test('the environment is exactly the one given; GOPROXY is the relay for module commands', async () => {
    const { stdout } = await sandbox.run({ argv: ['/usr/bin/env'], env: { PATH: '/usr/bin:/bin', GOPROXY: 'https://evil.example', GOPRIVATE: 'corp.example', A: 'b' }, network: 'modules' });
    const env = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    assert.equal(env.GOPROXY, 'http://127.0.0.1:3128');
    assert.equal(env.GOPRIVATE, undefined);
    assert.equal(env.GONOSUMDB, 'corp.example', 'private modules still skip the checksum database');
    assert.equal(env.A, 'b');
    // Not even the shell's own PWD: the command gets the given names and the relay's, nothing else.
    assert.deepEqual(Object.keys(env).sort(), ['A', 'GONOSUMDB', 'GOPROXY', 'PATH']);
  });

  test('argument paths must be clean absolute paths', () => {
    const plan = { system: [], identity: null, setprivBin: '', socatBin: '' };
    for (const bad of ['relative', '/a/../b', '/a//b', '/a/\0']) {
      assert.throws(() => bwrapArgs({ argv: ['/bin/true'], env: {}, network: 'none', readOnly: [bad] }, plan), /clean absolute path/, bad);
    }
    const args = bwrapArgs({ argv: ['/bin/true', '--ro-bind', '/', '/'], env: {}, network: 'none' }, plan);
    assert.deepEqual(args.slice(args.indexOf('--') + 1), ['/bin/true', '--ro-bind', '/', '/'], "the command's own arguments come after --, never read as bwrap options");
  });

  test('a file:// relay never serves outside its root', async () => {
    const relay = await startModuleRelay({ upstreams: [{ url: `file://${join(dir, 'mods')}`, fallThrough: 'not-found' }] });
    try {
      const { request } = await import('node:http');
      const get = (path: string) =>
        new Promise<number>((ok, fail) =>
          request({ socketPath: relay.socketPath, path }, (res) => {
            res.resume();
            ok(res.statusCode!);
          })
            .on('error', fail)
            .end(),
        );
      assert.equal(await get('/example.com/m/@v/list'), 200);
      assert.equal(await get('/example.com/m/@v/../../../secret.txt'), 404);
      assert.equal(await get('/../secret.txt'), 404);
      assert.equal(await readFile(secretFile, 'utf8'), secret);
    } finally {
      await relay.close();
    }
  });
});

describe('without a working sandbox, nothing builds', () => {
  test('a missing bwrap or socat: refused with the fix named', async () => {
    for (const o of [{ bwrapBin: '/nonexistent/bwrap' }, { socatBin: '/nonexistent/socat' }]) {
      await assert.rejects(openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', ...o }), (err: Error) => {
        assert.match(err.message, /builds cannot start: sandbox: (bwrap|socat) not found/);
        assert.match(err.message, /apt-get install bubblewrap socat/);
        assert.match(err.message, /run `npm run setup`/, 'a checkout names npm run setup');
        assert.match(err.message, /--sandbox none/);
        return true;
      });
    }
    // The npm package names its own set-up command (docs/install.md).
    await assert.rejects(openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', bwrapBin: '/nonexistent/bwrap', setupCommand: 'fairway setup' }), /To fix: run `fairway setup`/);
  });

  test('a missing build user (as root): refused with the useradd line; not root: no build user is needed', async () => {
    if (process.getuid?.() !== 0) {
      const sb = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-no-such-user' });
      assert.equal(sb.identity, null);
      return sb.close();
    }
    await assert.rejects(openSandbox({ kind: 'bwrap', buildUser: 'fairway-no-such-user' }), /the build user "fairway-no-such-user" does not exist\. Create it with `useradd --system/);
    await assert.rejects(openSandbox({ kind: 'bwrap', buildUser: '0:0' }), /is root; builds must run as an unprivileged user/);
  });

  test('a bwrap that cannot sandbox: refused, the probe says why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fairway-badbwrap-'));
    const fake = join(dir, 'bwrap');
    await writeFile(fake, '#!/bin/sh\necho "bwrap: No permissions to creating new namespace" >&2\nexit 1\n');
    await chmod(fake, 0o755);
    await assert.rejects(
      openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', bwrapBin: fake }),
      /builds cannot start: the bubblewrap sandbox does not work here \(bwrap: No permissions to creating new namespace\)/,
    );
  });

  test('--sandbox none is the explicit opt-out, and says so loudly', async () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = { warn: (_o: unknown, msg: string) => lines.push({ level: 'warn', msg }), info: () => undefined } as unknown as import('pino').Logger;
    const none = await openSandbox({ kind: 'none', buildUser: 'fairway-build', logger });
    assert.equal(none.kind, 'none');
    assert.ok(lines.some((l) => l.level === 'warn' && /SANDBOX OFF/.test(l.msg)));
  });
});

describe('nothing outlives a sandboxed command', () => {
  test('a background process the command leaves behind dies with it, and run() returns at once', async () => {
    const sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build' });
    const marker = `300.${process.pid}9`;
    const { readdir, readFile } = await import('node:fs/promises');
    const left = async () => {
      let n = 0;
      for (const pid of (await readdir('/proc')).filter((p) => /^[0-9]+$/.test(p))) {
        if ((await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').includes(marker)) n++;
      }
      return n;
    };
    try {
      for (const network of ['none', 'modules'] as const) {
        const t0 = Date.now();
        // A plugin's init() could start a daemon the same way; with network "modules", socat is one too.
        await sandbox.run({ argv: ['/bin/sh', '-c', `sleep ${marker} & echo started`], env: { PATH: '/usr/bin:/bin' }, network }, { timeoutMs: 20_000 });
        assert.ok(Date.now() - t0 < 5000, `${network}: returned after ${Date.now() - t0} ms`);
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(await left(), 0, `${network}: the background process was killed with the sandbox`);
      }
    } finally {
      await sandbox.close();
    }
  });
});
