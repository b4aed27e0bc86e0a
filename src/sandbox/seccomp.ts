/**
 * The sandbox's seccomp filter, assembled here as a classic-BPF program and handed to bubblewrap
 * with `--seccomp <fd>` (bwrap loads it, with no_new_privs, right before it executes the command).
 *
 * In the spirit of Docker's default profile, but as a deny list of what a Go build or a built
 * Caddy never needs: new namespaces (unshare/clone with CLONE_NEW* flags, setns; clone3 answers
 * ENOSYS, as in Docker, so glibc falls back to clone whose flags can be checked), mounting
 * (mount, umount2, pivot_root, chroot, the new mount API), other processes' memory (ptrace,
 * process_vm_*, kcmp, pidfd_getfd), the kernel keyring, bpf, perf_event_open, userfaultfd,
 * io_uring, kexec, module loading, reboot, swap, accounting, quotas, file handles, the kernel log,
 * the clock, raw I/O ports and any personality but the default ones. Denied calls return EPERM.
 *
 * Architectures: x86_64 and aarch64 each get their own table; x32 system calls on x86_64 and any
 * other architecture (i386 through int 0x80 on an x86_64 kernel, arm32 compat) get ENOSYS, so
 * a foreign ABI cannot slip past the table.
 */

export type SeccompArch = 'x86_64' | 'aarch64';

/** AUDIT_ARCH_* values, as the kernel puts them in seccomp_data.arch. */
export const AUDIT_ARCH: Record<SeccompArch, number> = { x86_64: 0xc000003e, aarch64: 0xc00000b7 };
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const EPERM = 1;
export const ENOSYS = 38;
/** x32 system calls carry this bit in their number (x86_64 kernels). */
export const X32_SYSCALL_BIT = 0x40000000;

/** Every namespace flag of clone() (CLONE_NEWTIME shares its bit with clone()'s exit signal, so it is checked for unshare only). */
export const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
export const CLONE_NEWTIME = 0x00000080;
/** The personalities Docker allows: PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE (and with UNAME26), and the query 0xffffffff. */
export const ALLOWED_PERSONALITIES: readonly number[] = [0x0, 0x0008, 0x20000, 0x20008, 0xffffffff];

export interface SeccompRule {
  /** The system call's name (for tests and docs). */
  name: string;
  /** Its number per architecture; absent where the call does not exist. */
  nr: Partial<Record<SeccompArch, number>>;
  /** What the filter does with it. */
  when:
    | { kind: 'always'; errno: number }
    /** Denied when the first argument (low 32 bits) has any of these bits. */
    | { kind: 'flags'; mask: number; errno: number }
    /** Denied unless the first argument (low 32 bits) is one of these values. */
    | { kind: 'allow-values'; values: readonly number[]; errno: number };
}

const deny = (name: string, x86_64: number | undefined, aarch64: number | undefined, errno = EPERM): SeccompRule => ({
  name,
  nr: { ...(x86_64 !== undefined ? { x86_64 } : {}), ...(aarch64 !== undefined ? { aarch64 } : {}) },
  when: { kind: 'always', errno },
});
/** System calls numbered alike on every architecture (424 and later). */
const denyCommon = (name: string, nr: number, errno = EPERM) => deny(name, nr, nr, errno);

/** The rules, numbers from the kernel's tables (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h). */
export const SECCOMP_RULES: readonly SeccompRule[] = [
  // new namespaces
  { name: 'clone', nr: { x86_64: 56, aarch64: 220 }, when: { kind: 'flags', mask: CLONE_NAMESPACE_FLAGS, errno: EPERM } },
  { name: 'unshare', nr: { x86_64: 272, aarch64: 97 }, when: { kind: 'flags', mask: CLONE_NAMESPACE_FLAGS | CLONE_NEWTIME, errno: EPERM } },
  denyCommon('clone3', 435, ENOSYS),
  deny('setns', 308, 268),
  // mounts
  deny('mount', 165, 40),
  deny('umount2', 166, 39),
  deny('pivot_root', 155, 41),
  deny('chroot', 161, 51),
  denyCommon('open_tree', 428),
  denyCommon('move_mount', 429),
  denyCommon('fsopen', 430),
  denyCommon('fsconfig', 431),
  denyCommon('fsmount', 432),
  denyCommon('fspick', 433),
  denyCommon('mount_setattr', 442),
  denyCommon('statmount', 457),
  denyCommon('listmount', 458),
  denyCommon('open_tree_attr', 467),
  // other processes
  deny('ptrace', 101, 117),
  deny('process_vm_readv', 310, 270),
  deny('process_vm_writev', 311, 271),
  deny('kcmp', 312, 272),
  denyCommon('pidfd_getfd', 438),
  // keys, bpf, perf, userfaultfd, io_uring
  deny('add_key', 248, 217),
  deny('request_key', 249, 218),
  deny('keyctl', 250, 219),
  deny('bpf', 321, 280),
  deny('perf_event_open', 298, 241),
  deny('userfaultfd', 323, 282),
  denyCommon('io_uring_setup', 425),
  denyCommon('io_uring_enter', 426),
  denyCommon('io_uring_register', 427),
  deny('fanotify_init', 300, 262),
  // the kernel itself
  deny('kexec_load', 246, 104),
  deny('kexec_file_load', 320, 294),
  deny('init_module', 175, 105),
  deny('finit_module', 313, 273),
  deny('delete_module', 176, 106),
  deny('create_module', 174, undefined),
  deny('get_kernel_syms', 177, undefined),
  deny('query_module', 178, undefined),
  deny('reboot', 169, 142),
  deny('swapon', 167, 224),
  deny('swapoff', 168, 225),
  deny('acct', 163, 89),
  deny('quotactl', 179, 60),
  denyCommon('quotactl_fd', 443),
  deny('open_by_handle_at', 304, 265),
  deny('lookup_dcookie', 212, 18),
  deny('syslog', 103, 116),
  deny('settimeofday', 164, 170),
  deny('clock_settime', 227, 112),
  deny('clock_adjtime', 305, 266),
  deny('vhangup', 153, 58),
  deny('nfsservctl', 180, 42),
  deny('uselib', 134, undefined),
  deny('_sysctl', 156, undefined),
  deny('sysfs', 139, undefined),
  deny('ustat', 136, undefined),
  deny('iopl', 172, undefined),
  deny('ioperm', 173, undefined),
  { name: 'personality', nr: { x86_64: 135, aarch64: 92 }, when: { kind: 'allow-values', values: ALLOWED_PERSONALITIES, errno: EPERM } },
];

// ---- classic BPF ----
const BPF_LD_W_ABS = 0x20;
const BPF_JMP_JA = 0x05;
const BPF_JMP_JEQ_K = 0x15;
const BPF_JMP_JGE_K = 0x35;
const BPF_JMP_JSET_K = 0x45;
const BPF_RET_K = 0x06;
/** Offsets in struct seccomp_data: nr, arch, then the 64-bit args (little-endian: low word first). */
const OFF_NR = 0;
const OFF_ARCH = 4;
const OFF_ARG0_LO = 16;

export interface BpfInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

type Target = number | string; // relative count, or a label
interface Pending {
  code: number;
  jt: Target;
  jf: Target;
  k: number | string; // a label for `ja`
}

/** A tiny assembler: instructions with labels, resolved to the relative offsets classic BPF uses. */
class Assembler {
  private readonly code: Pending[] = [];
  private readonly labels = new Map<string, number>();
  label(name: string): void {
    this.labels.set(name, this.code.length);
  }
  ld(offset: number): void {
    this.code.push({ code: BPF_LD_W_ABS, jt: 0, jf: 0, k: offset });
  }
  jeq(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP_JEQ_K, jt, jf, k: k >>> 0 });
  }
  jge(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP_JGE_K, jt, jf, k: k >>> 0 });
  }
  jset(k: number, jt: Target, jf: Target): void {
    this.code.push({ code: BPF_JMP_JSET_K, jt, jf, k: k >>> 0 });
  }
  ja(label: string): void {
    this.code.push({ code: BPF_JMP_JA, jt: 0, jf: 0, k: label });
  }
  ret(k: number): void {
    this.code.push({ code: BPF_RET_K, jt: 0, jf: 0, k: k >>> 0 });
  }
  assemble(): BpfInsn[] {
    const at = (i: number, t: Target): number => {
      const n = typeof t === 'number' ? t : this.resolve(t) - i - 1;
      if (n < 0 || n > 255) throw new Error(`seccomp: conditional jump out of range at ${i} (${n})`);
      return n;
    };
    return this.code.map((p, i) => ({
      code: p.code,
      jt: at(i, p.jt),
      jf: at(i, p.jf),
      k: typeof p.k === 'string' ? this.resolve(p.k) - i - 1 : p.k,
    }));
  }
  private resolve(label: string): number {
    const n = this.labels.get(label);
    if (n === undefined) throw new Error(`seccomp: no label ${label}`);
    return n;
  }
}

const errno = (e: number) => (SECCOMP_RET_ERRNO | (e & 0xffff)) >>> 0;

/** The filter program for these rules (default: SECCOMP_RULES) as instructions. */
export function seccompProgram(rules: readonly SeccompRule[] = SECCOMP_RULES): BpfInsn[] {
  const a = new Assembler();
  a.ld(OFF_ARCH);
  a.jeq(AUDIT_ARCH.x86_64, 0, 1);
  a.ja('x86_64');
  a.jeq(AUDIT_ARCH.aarch64, 0, 1);
  a.ja('aarch64');
  a.ret(errno(ENOSYS)); // any other ABI
  for (const arch of ['x86_64', 'aarch64'] as const) {
    a.label(arch);
    a.ld(OFF_NR);
    if (arch === 'x86_64') {
      a.jge(X32_SYSCALL_BIT, 0, 1);
      a.ret(errno(ENOSYS));
    }
    for (const r of rules) {
      const nr = r.nr[arch];
      if (nr === undefined) continue;
      const w = r.when;
      if (w.kind === 'always') {
        a.jeq(nr, 0, 1);
        a.ret(errno(w.errno));
      } else if (w.kind === 'flags') {
        // nr matches: load the flags, deny if any bit is set, else allow (A no longer holds nr).
        a.jeq(nr, 0, 4);
        a.ld(OFF_ARG0_LO);
        a.jset(w.mask, 0, 1);
        a.ret(errno(w.errno));
        a.ret(SECCOMP_RET_ALLOW);
      } else {
        const n = w.values.length;
        a.jeq(nr, 0, n + 3);
        a.ld(OFF_ARG0_LO);
        for (const [i, v] of w.values.entries()) a.jeq(v, n - i, 0);
        a.ret(errno(w.errno));
        a.ret(SECCOMP_RET_ALLOW);
      }
    }
    a.ret(SECCOMP_RET_ALLOW);
  }
  return a.assemble();
}

/** The program as the bytes `struct sock_filter[]` (what bwrap reads from its --seccomp fd), little-endian. */
export function seccompBytes(program: readonly BpfInsn[] = seccompProgram()): Buffer {
  const buf = Buffer.alloc(program.length * 8);
  program.forEach((ins, i) => {
    buf.writeUInt16LE(ins.code, i * 8);
    buf.writeUInt8(ins.jt, i * 8 + 2);
    buf.writeUInt8(ins.jf, i * 8 + 3);
    buf.writeUInt32LE(ins.k >>> 0, i * 8 + 4);
  });
  return buf;
}

/** Whether this host can use the filter: the kernel's own architecture has a table here. */
export function seccompArchOf(nodeArch: string = process.arch): SeccompArch | null {
  return nodeArch === 'x64' ? 'x86_64' : nodeArch === 'arm64' ? 'aarch64' : null;
}
