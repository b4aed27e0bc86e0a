/**
 * The sandbox's kernel limits, without a sandbox: the seccomp program (run by a classic-BPF
 * interpreter written here from the kernel's semantics, and its numbers checked against the
 * kernel headers when installed), and the cgroup code paths (v2 delegated, v1, rlimits) against
 * fake cgroup trees. test/unit/sandbox-limits.test.ts proves the same in the real sandbox.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BUILDS_GROUP, classifyHits, DEFAULT_LIMITS, detectLimits, formatBytes, JOIN_SCRIPT, limitedArgv, limitsFor, SERVER_GROUP } from '../../src/sandbox/limits.js';
import { AUDIT_ARCH, type BpfInsn, SECCOMP_RULES, seccompBytes, seccompProgram } from '../../src/sandbox/seccomp.js';

// ---------------------------------------------------------------- a classic-BPF interpreter (seccomp subset)

interface SeccompData {
  nr: number;
  arch: number;
  args?: number[];
}

/** Runs a seccomp program the way the kernel does (A register, absolute word loads of seccomp_data, forward jumps). */
function runFilter(prog: readonly BpfInsn[], d: SeccompData): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(d.nr, 0);
  data.writeUInt32LE(d.arch >>> 0, 4);
  (d.args ?? []).forEach((a, i) => {
    data.writeUInt32LE(a >>> 0, 16 + 8 * i);
    data.writeUInt32LE(Math.floor(a / 2 ** 32) >>> 0, 20 + 8 * i);
  });
  let A = 0;
  for (let pc = 0, steps = 0; pc < prog.length && steps < 10_000; pc++, steps++) {
    const ins = prog[pc]!;
    switch (ins.code) {
      case 0x20: // ld [k]
        assert.ok(ins.k % 4 === 0 && ins.k < 64, `load at ${ins.k}`);
        A = data.readUInt32LE(ins.k);
        break;
      case 0x15: // jeq
        pc += A === ins.k ? ins.jt : ins.jf;
        break;
      case 0x35: // jge
        pc += A >>> 0 >= ins.k >>> 0 ? ins.jt : ins.jf;
        break;
      case 0x45: // jset
        pc += (A & ins.k) !== 0 ? ins.jt : ins.jf;
        break;
      case 0x05: // ja
        pc += ins.k;
        break;
      case 0x06: // ret
        return ins.k >>> 0;
      default:
        assert.fail(`unexpected BPF opcode 0x${ins.code.toString(16)} at ${pc}`);
    }
  }
  return assert.fail('the program ran off its end (the kernel refuses such a program)');
}

const ALLOW = 0x7fff0000;
const EPERM = 0x00050001;
const ENOSYS = 0x00050026;
const X86 = AUDIT_ARCH.x86_64;
const ARM = AUDIT_ARCH.aarch64;

/** The kernel header's number of a system call, when the headers are installed. */
function headerNr(file: string, name: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const m = new RegExp(`#define __NR(?:3264)?_${name}\\s+([0-9]+)`).exec(readFileSync(file, 'utf8'));
  return m ? Number(m[1]) : undefined;
}

describe('the seccomp filter (src/sandbox/seccomp.ts)', () => {
  const prog = seccompProgram();
  const nrOf = (name: string, arch: 'x86_64' | 'aarch64') => SECCOMP_RULES.find((r) => r.name === name)!.nr[arch]!;

  test('every denied system call is refused on both architectures: EPERM (clone3: ENOSYS)', () => {
    let checked = 0;
    for (const r of SECCOMP_RULES) {
      for (const [arch, audit] of [
        ['x86_64', X86],
        ['aarch64', ARM],
      ] as const) {
        const nr = r.nr[arch];
        if (nr === undefined) continue;
        const args = r.when.kind === 'flags' ? [0x10000000] : r.when.kind === 'allow-values' ? [0x0400000] : [];
        const want = r.name === 'clone3' ? ENOSYS : EPERM;
        assert.equal(runFilter(prog, { nr, arch: audit, args }), want, `${r.name} on ${arch}`);
        checked++;
      }
    }
    assert.ok(checked > 100, `${checked} rules checked`);
    for (const name of [
      'unshare',
      'setns',
      'mount',
      'umount2',
      'pivot_root',
      'ptrace',
      'process_vm_readv',
      'keyctl',
      'add_key',
      'bpf',
      'perf_event_open',
      'userfaultfd',
      'kexec_load',
      'init_module',
      'finit_module',
      'reboot',
      'swapon',
      'acct',
      'iopl',
      'open_by_handle_at',
      'syslog',
      'io_uring_setup',
      'fsopen',
      'move_mount',
    ]) {
      assert.ok(
        SECCOMP_RULES.some((r) => r.name === name),
        `${name} is in the rules`,
      );
    }
  });

  test('what builds need is allowed: ordinary calls, threads and forks (clone without namespace flags), harmless unshare, default personalities', () => {
    for (const [arch, audit] of [
      ['x86_64', X86],
      ['aarch64', ARM],
    ] as const) {
      for (const nr of [0, 1, 3, 9, 57, 59, 61, 63, 202, 231, 39]) {
        // read, write, close, mmap, fork/exec numbers of x86_64 (and, on aarch64, whatever these are there): none is in the table unless a rule names it
        const rule = SECCOMP_RULES.find((r) => r.nr[arch] === nr);
        if (rule) continue;
        assert.equal(runFilter(prog, { nr, arch: audit }), ALLOW, `nr ${nr} on ${arch}`);
      }
      // Go's threads: CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_SYSVSEM|CLONE_THREAD; fork: SIGCHLD; vfork: CLONE_VM|CLONE_VFORK|SIGCHLD.
      for (const flags of [0x50f00, 0x11, 0x4111, 0x1000 | 0x11])
        assert.equal(runFilter(prog, { nr: nrOf('clone', arch), arch: audit, args: [flags] }), ALLOW, `clone 0x${flags.toString(16)} ${arch}`);
      for (const ns of [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]) {
        assert.equal(runFilter(prog, { nr: nrOf('clone', arch), arch: audit, args: [0x11 | ns] }), EPERM, `clone with 0x${ns.toString(16)} on ${arch}`);
        assert.equal(runFilter(prog, { nr: nrOf('unshare', arch), arch: audit, args: [ns] }), EPERM, `unshare 0x${ns.toString(16)} on ${arch}`);
      }
      assert.equal(runFilter(prog, { nr: nrOf('unshare', arch), arch: audit, args: [0x80] }), EPERM, 'unshare CLONE_NEWTIME');
      assert.equal(runFilter(prog, { nr: nrOf('unshare', arch), arch: audit, args: [0x200 | 0x400] }), ALLOW, 'unshare CLONE_FS|CLONE_FILES');
      for (const p of [0, 8, 0x20000, 0x20008, 0xffffffff]) assert.equal(runFilter(prog, { nr: nrOf('personality', arch), arch: audit, args: [p] }), ALLOW, `personality 0x${p.toString(16)}`);
      for (const p of [0x0400000 /* READ_IMPLIES_EXEC */, 0x0040000 /* MMAP_PAGE_ZERO */, 1])
        assert.equal(runFilter(prog, { nr: nrOf('personality', arch), arch: audit, args: [p] }), EPERM, `personality 0x${p.toString(16)}`);
      assert.equal(runFilter(prog, { nr: 435, arch: audit }), ENOSYS, 'clone3: ENOSYS so glibc falls back to clone');
    }
  });

  test('x32 system calls and foreign architectures (i386, arm32) get ENOSYS', () => {
    assert.equal(runFilter(prog, { nr: 0x40000000 + 1, arch: X86 }), ENOSYS, 'x32 write');
    assert.equal(runFilter(prog, { nr: 0x40000000 + 272, arch: X86 }), ENOSYS, 'x32 unshare');
    assert.equal(runFilter(prog, { nr: 1, arch: 0x40000003 /* AUDIT_ARCH_I386 */ }), ENOSYS, 'i386');
    assert.equal(runFilter(prog, { nr: 1, arch: 0x40000028 /* AUDIT_ARCH_ARM */ }), ENOSYS, 'arm32');
  });

  test("the numbers are the kernel's (checked against the installed headers)", (t) => {
    const x86h = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h';
    const generic = '/usr/include/asm-generic/unistd.h';
    if (!existsSync(x86h) || !existsSync(generic)) return t.skip('no kernel headers installed');
    let compared = 0;
    for (const r of SECCOMP_RULES) {
      const x = headerNr(x86h, r.name);
      if (x !== undefined && r.nr.x86_64 !== undefined) {
        assert.equal(r.nr.x86_64, x, `${r.name} x86_64`);
        compared++;
      }
      const a = headerNr(generic, r.name);
      if (a !== undefined && r.nr.aarch64 !== undefined) {
        assert.equal(r.nr.aarch64, a, `${r.name} aarch64`);
        compared++;
      }
      // A call the x86_64 header knows but the rule leaves out there would be a gap.
      if (x !== undefined) assert.notEqual(r.nr.x86_64, undefined, `${r.name} has no x86_64 number`);
    }
    assert.ok(compared > 90, `${compared} numbers compared`);
  });

  test('the bytes are struct sock_filter[] (little-endian), the program within the kernel limit', () => {
    const bytes = seccompBytes(prog);
    assert.equal(bytes.length, prog.length * 8);
    assert.ok(prog.length < 4096);
    for (let i = 0; i < prog.length; i++) {
      assert.deepEqual({ code: bytes.readUInt16LE(i * 8), jt: bytes[i * 8 + 2], jf: bytes[i * 8 + 3], k: bytes.readUInt32LE(i * 8 + 4) }, prog[i]);
    }
    // The program ends in a return on every path (the last instruction is one).
    assert.equal(prog.at(-1)!.code, 0x06);
  });
});

// ---------------------------------------------------------------- cgroups against fake trees

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});
async function fakeRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'fairway-cgroupfs-'));
  roots.push(r);
  return r;
}
const mountLine = (id: number, point: string, fstype: string, opts: string) => `${id} 1 0:${id} / ${point} rw,nosuid,nodev,noexec,relatime shared:${id} - ${fstype} ${fstype} ${opts}`;

describe('resource limits: cgroup v2, cgroup v1, rlimits (src/sandbox/limits.ts)', () => {
  test('cgroup v2, a delegated cgroup holding only this process: it moves into a leaf, delegates memory+pids+cpu, builds weigh 10', async () => {
    const root = await fakeRoot();
    const own = join(root, 'system.slice', 'fairway.service');
    await mkdir(own, { recursive: true });
    await writeFile(join(own, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    await writeFile(join(own, 'cgroup.subtree_control'), '\n');
    await writeFile(join(own, 'cgroup.procs'), '4242\n');
    const host = detectLimits({ root, env: { procSelfCgroup: '0::/system.slice/fairway.service\n', mountinfo: `${mountLine(30, root, 'cgroup2', 'rw,nsdelegate')}\n`, pid: 4242, alive: () => true } });
    assert.equal(host.mechanism, 'cgroup2', host.detail);
    assert.equal(await readFile(join(own, SERVER_GROUP, 'cgroup.procs'), 'utf8'), '4242');
    assert.equal(await readFile(join(own, 'cgroup.subtree_control'), 'utf8'), '+memory +pids +cpu');
    assert.equal(await readFile(join(own, BUILDS_GROUP, 'cgroup.subtree_control'), 'utf8'), '+memory +pids +cpu');
    assert.equal(await readFile(join(own, BUILDS_GROUP, 'cpu.weight'), 'utf8'), '10');
    assert.match(host.priority, /cpu\.weight 10/);

    const cg = host.create(DEFAULT_LIMITS.binary);
    assert.equal(cg.procs.length, 1);
    const dir = join(cg.procs[0]!, '..');
    assert.ok(dir.startsWith(join(own, BUILDS_GROUP)));
    assert.equal(await readFile(join(dir, 'memory.max'), 'utf8'), String(512 * 1024 * 1024));
    assert.equal(await readFile(join(dir, 'pids.max'), 'utf8'), '128');
    assert.deepEqual(await cg.events(), { oomKills: 0, pidsMax: 0 });
    await writeFile(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 17\noom 2\noom_kill 1\noom_group_kill 1\n');
    await writeFile(join(dir, 'pids.events'), 'max 3\n');
    assert.deepEqual(await cg.events(), { oomKills: 1, pidsMax: 3 });
  });

  test('cgroup v2 without a delegated memory controller, or shared with other processes: not used, the reason given', async () => {
    const root = await fakeRoot();
    const own = join(root, 'user.slice', 'session-1.scope');
    await mkdir(own, { recursive: true });
    await writeFile(join(own, 'cgroup.controllers'), 'cpu pids\n');
    await writeFile(join(own, 'cgroup.subtree_control'), '');
    await writeFile(join(own, 'cgroup.procs'), '1\n');
    const env = { procSelfCgroup: '0::/user.slice/session-1.scope\n', mountinfo: mountLine(30, root, 'cgroup2', 'rw'), pid: 4242 };
    let host = detectLimits({ root, env });
    assert.equal(host.mechanism, 'rlimits');
    assert.match(host.detail, /has no memory controller \(delegate them: systemd Delegate=yes\)/);
    await writeFile(join(own, 'cgroup.controllers'), 'cpu memory pids\n');
    await writeFile(join(own, 'cgroup.procs'), '4242\n1717\n');
    host = detectLimits({ root, env });
    assert.equal(host.mechanism, 'rlimits');
    assert.match(host.detail, /holds other processes \(1717\)/);
    assert.equal(existsSync(join(own, SERVER_GROUP)), false, 'did not move itself');
  });

  test("cgroup v1 (this machine's kind): memory and pids hierarchies, memory+swap and tasks per command, cpu.shares 102 for builds", async () => {
    const root = await fakeRoot();
    for (const c of ['memory', 'pids', 'cpu,cpuacct']) await mkdir(join(root, c, 'docker', 'abc'), { recursive: true });
    await writeFile(join(root, 'cpu,cpuacct', 'docker', 'abc', 'cpu.shares'), '1024');
    const mountinfo = [
      mountLine(31, join(root, 'memory'), 'cgroup', 'rw,memory'),
      mountLine(32, join(root, 'pids'), 'cgroup', 'rw,pids'),
      mountLine(33, join(root, 'cpu,cpuacct'), 'cgroup', 'rw,cpu,cpuacct'),
      mountLine(34, join(root, 'unified'), 'cgroup2', 'rw'),
    ].join('\n');
    const procSelfCgroup = '5:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n';
    const host = detectLimits({ root, env: { procSelfCgroup, mountinfo, pid: 777, alive: () => true } });
    assert.equal(host.mechanism, 'cgroup1', host.detail);
    assert.match(host.detail, /no cgroup v2|cgroup v1/);
    assert.equal(await readFile(join(root, 'cpu,cpuacct', 'docker', 'abc', BUILDS_GROUP, 'cpu.shares'), 'utf8'), '102');
    const cg = host.create(DEFAULT_LIMITS.toolchain);
    assert.equal(cg.procs.length, 3, 'memory, pids and cpu');
    const name = cg.procs[0]!.split('/').at(-2)!;
    assert.match(name, /^777-[0-9]+$/);
    const mem = join(root, 'memory', 'docker', 'abc', BUILDS_GROUP, name);
    assert.equal(await readFile(join(mem, 'memory.limit_in_bytes'), 'utf8'), String(4 * 1024 ** 3));
    assert.equal(await readFile(join(root, 'pids', 'docker', 'abc', BUILDS_GROUP, name, 'pids.max'), 'utf8'), '1024');
    await writeFile(join(mem, 'memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    await writeFile(join(root, 'pids', 'docker', 'abc', BUILDS_GROUP, name, 'pids.events'), 'max 0\n');
    assert.deepEqual(await cg.events(), { oomKills: 2, pidsMax: 0 });
    await cg.remove();
  });

  test('cgroup v1: stale command cgroups of a Fairway process that died are removed at start', async () => {
    const root = await fakeRoot();
    for (const c of ['memory', 'pids']) await mkdir(join(root, c, BUILDS_GROUP, '99999-4'), { recursive: true });
    await mkdir(join(root, 'memory', BUILDS_GROUP, '1-1'), { recursive: true });
    const mountinfo = [mountLine(31, join(root, 'memory'), 'cgroup', 'rw,memory'), mountLine(32, join(root, 'pids'), 'cgroup', 'rw,pids')].join('\n');
    detectLimits({ root, env: { procSelfCgroup: '5:pids:/\n4:memory:/\n', mountinfo, pid: 778, alive: (p) => p === 1 } });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(existsSync(join(root, 'memory', BUILDS_GROUP, '99999-4')), false);
    assert.equal(existsSync(join(root, 'pids', BUILDS_GROUP, '99999-4')), false);
    assert.equal(existsSync(join(root, 'memory', BUILDS_GROUP, '1-1')), true, "a live process's cgroup stays");
  });

  test('no cgroup hierarchy, or sandboxLimits=rlimits: rlimits, with the reason', async () => {
    const root = await fakeRoot();
    let host = detectLimits({ root, env: { procSelfCgroup: '0::/\n', mountinfo: '', pid: 1 } });
    assert.equal(host.mechanism, 'rlimits');
    assert.match(host.detail, /no cgroup v2 mount; no cgroup v1 memory hierarchy/);
    assert.match(host.priority, /nice 10, idle I\/O class/);
    host = detectLimits({ prefer: 'rlimits' });
    assert.equal(host.mechanism, 'rlimits');
    assert.match(host.detail, /sandboxLimits=rlimits/);
  });

  test('the command line: join the cgroups, then prlimit (file size, no core; memory and tasks when rlimits), then bwrap', () => {
    const tools = { sh: '/bin/sh', prlimit: '/usr/bin/prlimit', nice: '/usr/bin/nice', ionice: '/usr/bin/ionice' };
    const inner = ['/usr/bin/bwrap', '--', '/x'];
    const cgroup = { procs: ['/cg/memory/a/cgroup.procs', '/cg/pids/a/cgroup.procs'], events: async () => ({ oomKills: 0, pidsMax: 0 }), remove: async () => undefined };
    assert.deepEqual(limitedArgv(inner, { mechanism: 'cgroup1', cpuWeighted: true, limits: DEFAULT_LIMITS.binary, tools, cgroup }), [
      '/bin/sh',
      '-c',
      JOIN_SCRIPT,
      'fairway-limits',
      ...cgroup.procs,
      '--',
      '/usr/bin/prlimit',
      `--fsize=${64 * 1024 * 1024}`,
      '--core=0',
      '--',
      ...inner,
    ]);
    assert.deepEqual(limitedArgv(inner, { mechanism: 'rlimits', cpuWeighted: false, limits: DEFAULT_LIMITS.toolchain, tools }), [
      '/usr/bin/nice',
      '-n',
      '10',
      '/usr/bin/ionice',
      '-c',
      '3',
      '/usr/bin/prlimit',
      `--fsize=${2 * 1024 ** 3}`,
      '--core=0',
      `--as=${4 * 1024 ** 3}`,
      '--nproc=1024',
      '--',
      ...inner,
    ]);
  });

  test('a limit that was hit is named with its setting: cgroup counters, or exit and output under rlimits', () => {
    const base = { limits: DEFAULT_LIMITS.toolchain, code: 1, signal: null, output: '' } as const;
    assert.deepEqual(
      classifyHits({ ...base, profile: 'toolchain', mechanism: 'cgroup2', events: { oomKills: 1, pidsMax: 0 } }).map((h) => h.message),
      ["the build ran out of memory: the sandbox's limit is 4 GiB (buildMemoryMax; cgroup v2)"],
    );
    assert.deepEqual(
      classifyHits({ ...base, profile: 'binary', limits: DEFAULT_LIMITS.binary, mechanism: 'cgroup1', events: { oomKills: 0, pidsMax: 5 } }).map((h) => h.setting),
      ['runTasksMax'],
    );
    assert.deepEqual(classifyHits({ ...base, profile: 'toolchain', mechanism: 'cgroup1', events: { oomKills: 0, pidsMax: 0 }, output: 'out of memory (a log line, not the kernel)' }), []);
    assert.deepEqual(
      classifyHits({ ...base, profile: 'binary', limits: DEFAULT_LIMITS.binary, mechanism: 'rlimits', output: 'fatal error: runtime: out of memory' }).map((h) => h.message),
      ["the run of the built binary ran out of memory: the sandbox's limit is 512 MiB (runMemoryMax; rlimit)"],
    );
    assert.deepEqual(
      classifyHits({ ...base, profile: 'toolchain', mechanism: 'rlimits', output: 'fork/exec /usr/local/go/pkg/tool/linux_amd64/compile: resource temporarily unavailable' }).map((h) => h.setting),
      ['buildTasksMax'],
    );
    // Under rlimits every command gets buildTasksMax (RLIMIT_NPROC is per uid), and a hit names it.
    assert.deepEqual(limitsFor('binary', DEFAULT_LIMITS, 'rlimits'), { ...DEFAULT_LIMITS.binary, tasks: 1024 });
    assert.deepEqual(limitsFor('binary', DEFAULT_LIMITS, 'cgroup1'), DEFAULT_LIMITS.binary);
    assert.deepEqual(
      classifyHits({ ...base, profile: 'binary', limits: limitsFor('binary', DEFAULT_LIMITS, 'rlimits'), mechanism: 'rlimits', output: 'sh: Cannot fork' }).map((h) => h.message),
      ['the run of the built binary reached the task limit of 1024 processes and threads of the build uid, shared by all sandboxed commands (buildTasksMax; rlimit)'],
    );
    assert.deepEqual(classifyHits({ ...base, profile: 'toolchain', mechanism: 'rlimits', code: 0, output: 'out of memory' }), [], 'a command that succeeded under rlimits hit nothing');
    assert.deepEqual(
      classifyHits({ ...base, profile: 'toolchain', mechanism: 'cgroup2', code: 153, events: { oomKills: 0, pidsMax: 0 } }).map((h) => h.message),
      ["the build wrote a file over the sandbox's file-size limit of 2 GiB (buildFileSizeMax; rlimit)"],
    );
    assert.equal(formatBytes(1536 * 1024 * 1024), '1.5 GiB');
  });
});
