/**
 * The bwrap argument builder: what a sandboxed command sees (the OS's read-only system paths, the
 * named binds, the module relay's and the Go cache server's sockets) and the identity it drops to.
 */
import { lstat, readlink } from 'node:fs/promises';
import { dirname, isAbsolute, posix, resolve as resolvePath } from 'node:path';
import { isUnder, realPathOf } from '../util/realpath.js';
import type { LimitProfile } from './limits.js';
import { SandboxError, type SandboxCommand } from './types.js';

/** Where the relay socket and its bridge appear inside the sandbox. */
const RELAY_SOCKET = '/run/fairway/goproxy.sock';
const RELAY_PORT = 3128;
/** Where the Go cache server's socket appears inside a build sandbox (shared build cache). */
export const GOCACHE_SOCKET = '/run/fairway/gocache.sock';
export const GOCACHE_SOCKET_ENV = 'FAIRWAY_GOCACHE_SOCKET';
export const SANDBOX_GOPROXY = `http://127.0.0.1:${RELAY_PORT}`;

/**
 * Inside a `modules` sandbox: start socat (as the build user), wait until it listens (read from
 * this namespace's /proc/net/tcp, so no probe connection), then become the command.
 */
const BRIDGE_SCRIPT = [
  `"$FAIRWAY_SOCAT" -lf /dev/null TCP-LISTEN:${RELAY_PORT},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${RELAY_SOCKET} &`,
  'i=0',
  `while ! grep -q ':${RELAY_PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do`,
  '  i=$((i+1)); if [ $i -gt 500 ]; then echo "fairway sandbox: the module relay bridge did not start" >&2; exit 97; fi; sleep 0.01',
  'done',
  'unset FAIRWAY_SOCAT PWD OLDPWD',
  'exec "$@"',
].join('\n');

/** /etc/ssl/certs only: /etc/ssl/private holds the host's TLS keys. */
const SYSTEM_RO = ['/usr', '/etc/ssl/certs', '/etc/ca-certificates', '/etc/alternatives'];
/** The host directories every sandboxed command sees (read-only): no secret may live under them. */
export const SANDBOX_VISIBLE_PATHS: readonly string[] = SYSTEM_RO;
/**
 * The directory of SANDBOX_VISIBLE_PATHS (or of `extra`: the Go cache dir builds write, GOROOT,
 * the xcaddy binary) that a path lies under, or null: a secret (the signing key, the config or
 * auth file) must never be readable by a build. Compared as written and by real path (every
 * symlink resolved, as bubblewrap resolves a bind's source), so a key that is a symlink into a
 * bound directory, or a bound directory that is a symlink to the key's, counts as visible. A path
 * that does not exist yet is compared by the real path of its deepest existing ancestor.
 */
export function sandboxVisibleParent(path: string, extra: readonly string[] = []): string | null {
  const written = resolvePath(path);
  const real = realPathOf(path);
  for (const dir of [...SANDBOX_VISIBLE_PATHS, ...extra]) {
    if (isUnder(written, resolvePath(dir)) || isUnder(real, realPathOf(dir))) return dir;
  }
  return null;
}
const SYSTEM_LINKS = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

export type SystemMount = { kind: 'ro'; path: string } | { kind: 'link'; path: string; target: string };

export async function systemMounts(): Promise<SystemMount[]> {
  const out: SystemMount[] = [];
  for (const p of [...SYSTEM_RO, ...SYSTEM_LINKS]) {
    const st = await lstat(p).catch(() => null);
    if (!st) continue;
    if (st.isSymbolicLink()) out.push({ kind: 'link', path: p, target: await readlink(p) });
    else if (st.isDirectory()) out.push({ kind: 'ro', path: p });
  }
  return out;
}

const under = (path: string, root: string) => path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);

export interface BwrapPlan {
  system: SystemMount[];
  identity: { uid: number; gid: number } | null;
  setprivBin: string;
  socatBin: string;
  relaySocket?: string;
  /** tmpfs sizes (/tmp, /dev/shm) per profile; absent: bwrap's default (half the RAM). */
  tmpfs?: Record<LimitProfile, number>;
  /** The fd bwrap reads the seccomp filter from (absent: no filter). */
  seccompFd?: number;
}

/** The bwrap argument vector for one command (exported for tests). */
export function bwrapArgs(cmd: SandboxCommand, plan: BwrapPlan): string[] {
  for (const p of [cmd.argv[0] ?? '', ...(cmd.readOnly ?? []), ...(cmd.writable ?? []), ...(cmd.cwd ? [cmd.cwd] : [])]) {
    if (!isAbsolute(p) || posix.normalize(p) !== p || p.includes('\0')) throw new SandboxError(`sandbox: "${p}" is not a clean absolute path`);
  }
  const args = ['--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  // No nested user namespaces: bwrap caps them in the sandbox's own user namespace (unprivileged
  // mode) and checks it did; as root (no user namespace of its own, the build user has no
  // capabilities) the seccomp filter refuses CLONE_NEWUSER in both modes.
  if (!plan.identity) args.push('--unshare-user', '--disable-userns', '--assert-userns-disabled');
  if (plan.seccompFd !== undefined) args.push('--seccomp', String(plan.seccompFd));
  // --as-pid-1: the command itself is the namespace's init, so when it exits the kernel kills
  // everything it left behind (socat, a plugin's daemon). bwrap's own reaper would wait for them.
  args.push('--as-pid-1', '--die-with-parent', '--new-session', '--hostname', 'fairway-sandbox');
  const roots: string[] = [];
  const created = new Set<string>(['/']);
  for (const m of plan.system) {
    if (m.kind === 'link') args.push('--symlink', m.target, m.path);
    else {
      // Parents made 0755 (/etc for /etc/ssl/certs), so the build user can walk to it.
      for (const d of ancestors(m.path)) {
        if (created.has(d)) continue;
        args.push('--perms', '0755', '--dir', d);
        created.add(d);
      }
      args.push('--ro-bind', m.path, m.path);
      roots.push(m.path);
    }
  }
  // /tmp and /dev/shm: tmpfs of a fixed size (bwrap's default is half the RAM). Binds under /tmp
  // need their parent dirs made (0755, or bwrap makes them 0700).
  const tmpfs = plan.tmpfs?.[cmd.limits ?? 'toolchain'];
  const sized = tmpfs ? ['--size', String(tmpfs)] : [];
  args.push('--proc', '/proc', '--dev', '/dev', '--perms', '01777', ...sized, '--tmpfs', '/dev/shm', '--perms', '01777', ...sized, '--tmpfs', '/tmp');
  const ensureParents = (target: string) => {
    const chain: string[] = [];
    for (let d = dirname(target); !created.has(d); d = dirname(d)) {
      if (roots.some((r) => under(d, r))) break;
      chain.unshift(d);
    }
    for (const d of chain) {
      args.push('--perms', '0755', '--dir', d);
      created.add(d);
    }
  };
  const binds: Array<{ path: string; rw: boolean }> = [
    ...(cmd.readOnly ?? []).map((path) => ({ path, rw: false })),
    ...[...(cmd.writable ?? []), ...(cmd.cwd ? [cmd.cwd] : [])].map((path) => ({ path, rw: true })),
  ];
  // Parents before children; a path already covered by a system mount is not bound again.
  binds.sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  const bound = new Set<string>();
  for (const b of binds) {
    if (bound.has(b.path) || (!b.rw && roots.some((r) => under(b.path, r) && SYSTEM_RO.includes(r)))) continue;
    ensureParents(b.path);
    args.push(b.rw ? '--bind' : '--ro-bind', b.path, b.path);
    bound.add(b.path);
    roots.push(b.path);
  }
  if (cmd.network === 'modules') {
    if (!plan.relaySocket) throw new SandboxError('sandbox: no module relay for a command that downloads modules');
    ensureParents(RELAY_SOCKET);
    args.push('--ro-bind', plan.relaySocket, RELAY_SOCKET);
  }
  // shared build cache: the cache server's socket, for toolchain commands that name it.
  if (cmd.goCacheSocket) {
    if (!isAbsolute(cmd.goCacheSocket) || posix.normalize(cmd.goCacheSocket) !== cmd.goCacheSocket) throw new SandboxError(`sandbox: "${cmd.goCacheSocket}" is not a clean absolute path`);
    ensureParents(GOCACHE_SOCKET);
    args.push('--ro-bind', cmd.goCacheSocket, GOCACHE_SOCKET);
  }
  // The sandbox's own root and /dev (tmpfs of bwrap's default size) read-only: only /tmp,
  // /dev/shm and the named binds are writable.
  args.push('--remount-ro', '/dev', '--remount-ro', '/');
  args.push('--chdir', cmd.cwd ?? '/tmp');
  args.push('--');
  if (plan.identity) {
    const { uid, gid } = plan.identity;
    args.push(plan.setprivBin, `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--');
  }
  if (cmd.network === 'modules') args.push('/bin/sh', '-c', BRIDGE_SCRIPT, 'fairway-sandbox');
  args.push(...cmd.argv);
  return args;
}

function ancestors(path: string): string[] {
  const out: string[] = [];
  for (let d = dirname(path); d !== '/'; d = dirname(d)) out.unshift(d);
  return out;
}
