/**
 * The sandbox's kernel limits with the real bubblewrap (docs/SECURITY.md "Resource limits"): the
 * seccomp filter is in force and refuses what it lists (where the same call works outside), no
 * nested user namespace, sized tmpfs, a read-only root, no /etc/ssl/private, no supplementary
 * group; memory, tasks and file size held to their limits and named when hit, under each
 * mechanism this host has (a cgroup per command here as root, and rlimits).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { openSandbox, SandboxRunError, type Sandbox, type SandboxCommand } from '../../src/sandbox/index.js';
import { DEFAULT_LIMITS } from '../../src/sandbox/limits.js';

const execFileP = promisify(execFile);
const sh = (script: string, limits: SandboxCommand['limits'] = 'binary'): SandboxCommand => ({ argv: ['/bin/sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, network: 'none', limits });
/** perl's syscall(): the raw call, so the answer is the kernel's (seccomp's), not a tool's own check. x86_64 numbers. */
const perlSyscall = (nr: number, ...args: number[]) => `perl -e '$r = syscall(${[nr, ...args].join(', ')}); print "$r $!\\n"'`;
const x86 = process.arch === 'x64';

for (const mechanism of ['auto', 'rlimits'] as const) {
  describe(`sandbox limits (${mechanism})`, () => {
    let sandbox: Sandbox;
    before(async () => {
      const limits = { ...DEFAULT_LIMITS, toolchain: { ...DEFAULT_LIMITS.toolchain, tasks: mechanism === 'rlimits' ? 200 : 1024 } };
      sandbox = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', limitsMechanism: mechanism, limits });
    });
    after(async () => sandbox?.close());

    if (mechanism === 'auto') {
      test('the seccomp filter is in force and refuses namespaces, mounts, ptrace, keyctl (which work outside it)', async (t) => {
        const r = await sandbox.run(sh('grep -E "^(Seccomp|NoNewPrivs|Groups):" /proc/self/status; unshare -U true 2>&1; echo "unshare=$?"'));
        assert.match(r.stdout, /^Seccomp:\s+2$/m);
        assert.match(r.stdout, /^NoNewPrivs:\s+1$/m);
        assert.match(r.stdout, /^Groups:\s*$/m, 'no supplementary group');
        assert.match(r.stdout, /unshare: unshare failed: (Operation not permitted|No space left on device)\nunshare=1/);
        if (!x86) return t.skip('raw system call numbers below are x86_64');
        // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING), ptrace(PTRACE_TRACEME), mount(0,"/tmp",0,0,0) via raw numbers.
        const calls = {
          keyctl: perlSyscall(250, 0, -3, 0),
          ptrace: perlSyscall(101, 0, 0, 0, 0),
          unshareNewuser: perlSyscall(272, 0x10000000),
          mount: `perl -e '$p = "/tmp"; $r = syscall(165, 0, $p, 0, 0, 0); print "$r $!\\n"'`,
        };
        for (const [name, script] of Object.entries(calls)) {
          const inside = (await sandbox.run(sh(script))).stdout.trim();
          assert.equal(inside, '-1 Operation not permitted', `${name} inside`);
        }
        // Outside the sandbox (this test's own user), keyctl and ptrace(TRACEME) work: the filter is what refuses them.
        for (const name of ['keyctl', 'ptrace'] as const) {
          const outside = (await execFileP('/bin/sh', ['-c', calls[name]])).stdout.trim();
          assert.doesNotMatch(outside, /^-1 /, `${name} outside: ${outside}`);
        }
      });

      test('sized tmpfs for /tmp and /dev/shm (64 MiB for a built binary, 1 GiB for go commands), root and /dev read-only, /etc/ssl/certs only', async () => {
        const r = await sandbox.run(sh('df -k /tmp /dev/shm | tail -2; touch /x 2>&1; touch /dev/x 2>&1; ls /etc/ssl; test -e /etc/ssl/certs/ca-certificates.crt && echo certs'));
        const sizes = [...r.stdout.matchAll(/^\S+\s+([0-9]+)\s/gm)].map((m) => Number(m[1]));
        assert.deepEqual(sizes, [65536, 65536], r.stdout);
        assert.match(r.stdout, /touch: cannot touch '\/x': Read-only file system/);
        assert.match(r.stdout, /touch: cannot touch '\/dev\/x': Read-only file system/);
        assert.match(r.stdout, /^certs$/m);
        assert.doesNotMatch(r.stdout, /private/);
        const g = await sandbox.run(sh('df -k /tmp | tail -1', 'toolchain'));
        assert.match(g.stdout, /^\S+\s+1048576\s/);
      });
    }

    test('memory over the limit: the command is ended and the limit named (runMemoryMax)', async () => {
      const err = await sandbox.run(sh(`perl -e '$x = "a" x (700*1024*1024); print length($x), "\\n"'`)).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof SandboxRunError, 'the command failed');
      assert.deepEqual(
        err.limits.map((h) => h.setting),
        ['runMemoryMax'],
        err.message,
      );
      assert.match(err.message, /the run of the built binary ran out of memory: the sandbox's limit is 512 MiB \(runMemoryMax/);
      assert.doesNotMatch(err.stdout, /734003200/);
    });

    // Under rlimits RLIMIT_NPROC counts the whole build uid, so every command gets buildTasksMax (set low here).
    test(`more tasks than the limit: forks refused, the limit named (${mechanism === 'rlimits' ? 'buildTasksMax' : 'runTasksMax'})`, async () => {
      const err = await sandbox.run(sh('n=0; while [ $n -lt 300 ]; do sleep 30 & n=$((n+1)); done; echo started $n')).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof SandboxRunError, 'the command failed');
      assert.deepEqual(
        err.limits.map((h) => h.setting),
        [mechanism === 'rlimits' ? 'buildTasksMax' : 'runTasksMax'],
        err.message,
      );
    });

    test('a file over the size limit: the write stops there, the limit named; tmpfs fills up to its size only', async () => {
      const err = await sandbox.run(sh('dd if=/dev/zero of=/tmp/big bs=1M count=100')).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(err instanceof SandboxRunError);
      assert.deepEqual(
        err.limits.map((h) => h.setting),
        ['runTmpfsSize'],
        err.message,
      );
      // Many files, each under the file limit: the tmpfs size holds them (ENOSPC), the command may go on.
      const r = await sandbox.run(sh('for i in 1 2 3 4 5 6 7 8; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=10 2>/dev/null || break; done; du -sk /dev/shm | cut -f1'));
      assert.ok(Number(r.stdout.trim()) <= 65536, r.stdout);
    });
  });
}

/**
 * Unprivileged mode (how the systemd units run Fairway: its own user, bwrap in a user namespace):
 * tried as the build user with a supplementary group, from this root test. bwrap's
 * --disable-userns/--assert-userns-disabled are in force with the filter; the group is kept in
 * the sandbox (the kernel denies setgroups in an unprivileged user namespace) and start-up warns.
 */
describe('sandbox limits, unprivileged mode', () => {
  test('no nested user namespace (bwrap --disable-userns and seccomp); supplementary groups kept and warned about', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to start a process as another user');
    const script = [
      "import { openSandbox } from './src/sandbox/index.ts';",
      'const warnings = [];',
      'const logger = { warn: (o, m) => warnings.push({ ...o, msg: m }), info: () => {} };',
      "const sb = await openSandbox({ kind: 'bwrap', buildUser: 'fairway-build', logger });",
      "const r = await sb.run({ argv: ['/bin/sh', '-c', 'grep -E \"^(Uid|Groups|Seccomp|NoNewPrivs):\" /proc/self/status; unshare -U true 2>&1; echo unshare=$?'], env: { PATH: '/usr/bin:/bin' }, network: 'none', limits: 'binary' });",
      'console.log(JSON.stringify({ describe: sb.describe(), warnings, out: r.stdout }));',
      'await sb.close();',
    ].join('\n');
    const { stdout } = await execFileP('setpriv', ['--reuid=fairway-build', '--regid=fairway-build', '--groups=100', '--', process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('../..', import.meta.url).pathname,
      env: { PATH: process.env.PATH ?? '', HOME: '/tmp' },
      timeout: 60_000,
    });
    const res = JSON.parse(stdout.trim().split('\n').at(-1)!) as { describe: Record<string, unknown>; warnings: Array<Record<string, unknown>>; out: string };
    assert.equal(res.describe.nestedUserNamespaces, 'denied (bwrap --disable-userns, seccomp)');
    assert.match(res.out, /^Seccomp:\s+2$/m);
    assert.match(res.out, /unshare: unshare failed: Operation not permitted\nunshare=1/);
    assert.match(res.out, /^Groups:\s+.*\b(100|65534)\b/m, 'the supplementary group is still there (as overflow gid or itself)');
    assert.deepEqual(res.describe.supplementaryGroups, [100]);
    assert.ok(
      res.warnings.some((w) => /supplementary groups, which sandboxed commands keep/.test(String(w.msg))),
      JSON.stringify(res.warnings),
    );
  });
});
