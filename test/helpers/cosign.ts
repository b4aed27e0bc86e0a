/**
 * cosign (scripts/image-tools.sh, pinned, in .tools/bin) for the integration tests, offline: no
 * transparency log, no network but Fairway on 127.0.0.1, a HOME of the test's own.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './fairway.js';

const run = promisify(execFile);
export const COSIGN = join(ROOT, '.tools', 'bin', 'cosign');
/** What every registry check takes against a test server: no transparency log, plain HTTP. */
export const COSIGN_REGISTRY_OPTS = ['--insecure-ignore-tlog', '--allow-insecure-registry', '--allow-http-registry'] as const;

/** Runs cosign (`bin`: another one, e.g. cosign v3); never throws: ok is false when it exits non-zero, out has stdout and stderr. */
export async function cosign(args: string[], home: string, bin = COSIGN): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run(bin, args, {
      timeout: 5 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, DOCKER_CONFIG: join(home, '.docker'), SIGSTORE_NO_CACHE: '1', TUF_ROOT: join(home, 'tuf') },
    });
    return { ok: true, out: stdout + stderr };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

/** The in-toto statements of the attestations `cosign verify-attestation` printed (one DSSE envelope per line). */
export function attestedStatements<T = { subject: Array<{ name: string; digest: { sha256: string } }>; predicateType: string; predicate: any }>(out: string): T[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(Buffer.from((JSON.parse(l) as { payload: string }).payload, 'base64').toString()) as T);
}
