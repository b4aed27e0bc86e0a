/** The programs a sandbox needs (bwrap, socat, setpriv, prlimit…) and the build user it drops to. */
import { execFile } from 'node:child_process';
import { lstat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { SandboxError } from './types.js';

const execFileP = promisify(execFile);

export async function which(name: string, given?: string): Promise<string> {
  if (given) {
    if (
      await lstat(given).then(
        () => true,
        () => false,
      )
    )
      return given;
    throw new SandboxError(`sandbox: ${name} not found at ${given}`);
  }
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/usr/local/bin']) {
    const p = `${dir}/${name}`;
    if (
      await lstat(p).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  throw new SandboxError(`sandbox: ${name} not found`);
}

export async function lookupUser(spec: string, setup: string): Promise<{ uid: number; gid: number; user: string }> {
  const m = /^([0-9]+):([0-9]+)$/.exec(spec);
  if (m) return { uid: Number(m[1]), gid: Number(m[2]), user: spec };
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(spec)) throw new SandboxError(`buildUser "${spec}" is not a user name or uid:gid`);
  try {
    const [u, g] = await Promise.all([execFileP('id', ['-u', spec]), execFileP('id', ['-g', spec])]);
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()), user: spec };
  } catch {
    throw new SandboxError(
      `the build user "${spec}" does not exist. Create it with \`useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ${spec}\` (\`${setup}\` does this), or set buildUser`,
    );
  }
}
