/**
 * Starts the real `fairway` CLI (compiled dist/) as a separate OS process on a random loopback
 * port, the way a user runs it, and waits for its "listening" log line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
export const MAIN = join(ROOT, 'dist', 'main', 'index.js');
export const XCADDY = join(ROOT, '.tools', 'bin', 'xcaddy');
/** Go caches shared by the tests and kept between runs (second runs are fast). */
export const GO_CACHE = process.env.FAIRWAY_TEST_CACHE ?? join(ROOT, '.cache', 'go');

/** A small real plugin the module proxy serves here (with its checksum in the sum database). */
export const PLUGIN = { module: 'github.com/mholt/caddy-l4', version: 'v0.1.2', caddyModule: 'layer4' } as const;
export const CADDY_VERSION = 'v2.11.9';

export interface FairwayProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface StartOptions {
  command?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  dataDir?: string;
  port?: number;
  timeoutMs?: number;
  /** Run the server with `ulimit -n` set to this (open file descriptors). */
  maxOpenFiles?: number;
}

export async function tempDir(prefix = 'fairway-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function startFairway(opts: StartOptions = {}): Promise<FairwayProcess> {
  const dataDir = opts.dataDir ?? (await tempDir());
  const agent = opts.command === 'agent';
  const args = [MAIN, opts.command ?? 'serve', ...(agent ? [] : ['--port', String(opts.port ?? 0)]), '--data-dir', dataDir, '--cache-dir', GO_CACHE, ...(opts.args ?? [])];
  const [cmd, argv] = opts.maxOpenFiles ? ['/bin/sh', ['-c', `ulimit -n ${Math.floor(opts.maxOpenFiles)} && exec "$0" "$@"`, process.execPath, ...args]] : [process.execPath, args];
  const proc = spawn(cmd, argv, {
    env: { ...process.env, FAIRWAY_LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const port = await new Promise<number>((resolvePort, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`fairway did not start within ${opts.timeoutMs ?? 60_000} ms:\n${out}`));
    }, opts.timeoutMs ?? 60_000);
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      const m = agent ? /fairway agent \S+ ready/.exec(out) : /"port":(\d+)[^\n]*fairway listening/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolvePort(agent ? 0 : Number(m[1]));
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fairway exited with ${code} before listening:\n${out}`));
    });
  });
  process.once('exit', () => proc.kill('SIGKILL'));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/**
 * Builds run in the sandbox: a stand-in xcaddy sees its own file (read-only), GOROOT, the Go
 * caches and its work dir, nothing else. Its records go to `$GOPATH/fairway-test/<tag>` (GOPATH
 * under the server's cache dir is one of the few dirs a build may write), read from here.
 */
export function recordPath(tag: string, cacheDir = GO_CACHE): { inside: string; outside: string } {
  return { inside: `"$GOPATH/fairway-test/${tag}"`, outside: join(cacheDir, 'gopath', 'fairway-test', tag) };
}

/**
 * The real xcaddy where a stand-in inside the sandbox can exec it: a copy in
 * `<cache>/gopath/fairway-test/` (world-writable, so the build user may also record there).
 */
export function standInDir(_dir?: string, cacheDir = GO_CACHE): Promise<string> {
  // Copied once per test process: copying over a copy that a running build executes fails (ETXTBSY).
  let p = realCopies.get(cacheDir);
  if (!p) {
    p = (async () => {
      const dir = join(cacheDir, 'gopath', 'fairway-test');
      await mkdir(dir, { recursive: true });
      await chmod(dir, 0o1777);
      const real = join(dir, `xcaddy-real-${process.pid}-${randomBytes(4).toString('hex')}`);
      await copyFile(XCADDY, real);
      await chmod(real, 0o755);
      return real;
    })();
    realCopies.set(cacheDir, p);
  }
  return p;
}
const realCopies = new Map<string, Promise<string>>();

/**
 * An xcaddy whose `build` only copies a real Go binary (xcaddy's own) to --output: a build in a
 * second, inside the real sandbox. Other commands go to the real xcaddy.
 */
export async function instantXcaddy(dir: string): Promise<string> {
  const sub = join(dir, 'instant');
  await mkdir(sub, { recursive: true });
  const real = await standInDir(sub);
  const bin = join(sub, 'xcaddy-instant');
  await writeFile(
    bin,
    `#!/bin/sh\nif [ "$1" = "build" ]; then\n  while [ "$#" -gt 0 ]; do if [ "$1" = "--output" ]; then cp '${real}' "$2"; exit 0; fi; shift; done\n  exit 1\nfi\nexec '${real}' "$@"\n`,
  );
  await chmod(bin, 0o755);
  return bin;
}

/**
 * Kills every process on this machine whose argv holds `marker` as one argument (sandboxed builds
 * run in their own PID namespace; the host's /proc still sees them). Returns how many.
 */
export async function killByArgv(marker: string): Promise<number> {
  let n = 0;
  for (const pid of (await readdir('/proc')).filter((p) => /^[0-9]+$/.test(p))) {
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!argv.split('\0').includes(marker)) continue;
    try {
      process.kill(Number(pid), 'SIGKILL');
      n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

/**
 * A wrapper around the real xcaddy that records each invocation in a file, so a test can prove
 * how many builds really ran. The record path is baked in because builds get a clean environment.
 */
export async function countingXcaddy(dir: string, cacheDir = GO_CACHE): Promise<{ bin: string; count(): Promise<number> }> {
  const real = await standInDir(dir, cacheDir);
  const bin = join(dir, 'xcaddy-counting');
  const log = recordPath(`xcaddy-invocations-${randomBytes(6).toString('hex')}.log`, cacheDir);
  await writeFile(bin, `#!/bin/sh\nif [ "$1" = "build" ]; then echo "$$ $*" >> ${log.inside}; fi\nexec '${real}' "$@"\n`);
  await chmod(bin, 0o755);
  return {
    bin,
    count: async () => (await readFile(log.outside, 'utf8').catch(() => '')).split('\n').filter(Boolean).length,
  };
}

export async function api<T = any>(base: string, path: string, init?: RequestInit & { json?: unknown }): Promise<{ status: number; body: T; headers: Headers }> {
  const { json, ...rest } = init ?? {};
  const res = await fetch(base + path, {
    ...rest,
    ...(json !== undefined ? { method: rest.method ?? 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json', ...(rest.headers ?? {}) } } : {}),
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: body as T, headers: res.headers };
}

/** Polls a build until it ends. */
export async function waitForBuild(base: string, id: string, timeoutMs = 20 * 60_000): Promise<any> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const { body } = await api(base, `/api/builds/${id}`);
    if (body.status === 'succeeded' || body.status === 'failed' || body.status === 'canceled') return body;
    if (Date.now() > end) throw new Error(`build ${id} did not finish in time: ${JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
