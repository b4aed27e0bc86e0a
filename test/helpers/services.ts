/**
 * Real services on loopback for integration tests.
 *
 *   startRedis()  -> redis-server (Debian package, `bash scripts/deps.sh`)
 *   startS3()     -> versitygw (S3-compatible, Apache-2.0), posix backend,
 *                    pinned build in .tools/bin/versitygw (`bash scripts/deps.sh`)
 *
 * Every service listens on 127.0.0.1 on a random free port, keeps its files in
 * a fresh temp dir, and is killed when stopped and when the test process exits
 * (normal exit, uncaught error, SIGINT/SIGTERM/SIGHUP; and, through a tiny
 * watchdog shell, even when the test process is SIGKILLed). Child processes are
 * unref'd, so a forgotten service never keeps a test file from exiting.
 *
 * Lifecycle, the same for both services:
 *   stop()     graceful stop (SIGTERM, SIGKILL after a timeout). Port and data
 *              dir are kept, so start() brings the same service back.
 *   kill()     SIGKILL (crash). Port and data dir are kept; start() brings it back.
 *   start()    start again on the same port with the same data dir (no-op if running).
 *   restart()  stop() + start().
 *   pause()    SIGSTOP: the port still accepts TCP connections but nothing answers
 *              (requests hang until the client times out). resume() = SIGCONT.
 *   destroy()  stop and delete the temp dir; the service cannot be started again.
 *
 * Redis data: by default Redis runs with no persistence (`--save "" --appendonly no`),
 * so restart()/kill()+start() come back EMPTY on the same port. Pass
 * `{ persistence: true }` for an append-only file with fsync on every write,
 * which keeps data across restart() and kill().
 *
 * S3 data: objects live in the data dir and survive stop()/kill()/restart().
 *
 * Binaries missing -> a clear Error telling to run `bash scripts/deps.sh`
 * (tests must fail, never skip). Overrides: FAIRWAY_REDIS_SERVER,
 * FAIRWAY_VERSITYGW_BIN (binary paths), FAIRWAY_TEST_TMPDIR (parent of the temp
 * dirs; it must support user xattrs for versitygw, e.g. ext4/xfs/btrfs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';

export const LOOPBACK = '127.0.0.1';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPS_HINT = 'Run `bash scripts/deps.sh` from the repository root to install it.';

// ---------------------------------------------------------------- public API

export interface ServiceControl {
  readonly host: string;
  readonly port: number;
  /** Temp dir owned by this service (data, logs). Removed by destroy() and at process exit. */
  readonly dir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Start again on the same port with the same data dir; no-op if running. */
  start(): Promise<void>;
  /** Graceful stop (SIGTERM, then SIGKILL after a timeout). Keeps port + data dir. */
  stop(): Promise<void>;
  /** SIGKILL, like a crash. Keeps port + data dir. */
  kill(): Promise<void>;
  /** stop() + start() on the same port. */
  restart(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel but never answered. */
  pause(): Promise<void>;
  /** SIGCONT after pause(). */
  resume(): Promise<void>;
  /** Stop and delete the temp dir. Idempotent; the service is unusable afterwards. */
  destroy(): Promise<void>;
  /** Tail of the server's stdout+stderr, for diagnostics. */
  logs(): string;
}

export interface RedisService extends ServiceControl {
  /** redis://127.0.0.1:PORT */
  readonly url: string;
}

export interface StartRedisOptions {
  /** Fixed port; default: a random free one. */
  port?: number;
  /** Keep data across restart()/kill() (appendonly, fsync always). Default false: restart loses data. */
  persistence?: boolean;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  extraArgs?: string[];
  /** Path to redis-server; default: $FAIRWAY_REDIS_SERVER or PATH. */
  binary?: string;
  /** Readiness timeout per start, ms. Default 10000. */
  startTimeoutMs?: number;
}

export interface S3Service extends ServiceControl {
  /** http://127.0.0.1:PORT */
  readonly endpoint: string;
  readonly region: string;
  /** Bucket created at start. */
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly forcePathStyle: true;
  /** Root of the posix backend (one sub-directory per bucket). */
  readonly dataDir: string;
  /** Ready-to-use config for `new S3Client(...)`; `overrides` are merged on top. */
  clientConfig(overrides?: Partial<S3ClientConfig>): S3ClientConfig;
}

export interface StartS3Options {
  port?: number;
  /** Default 'fairway-test'. */
  bucket?: string;
  /** More buckets to create at start. */
  extraBuckets?: string[];
  /** Default 'us-east-1'. */
  region?: string;
  /** Default 'fairwaytestkey'. */
  accessKeyId?: string;
  /** Default 'fairwaytestsecret0123456789'. */
  secretAccessKey?: string;
  /** Path to versitygw; default: $FAIRWAY_VERSITYGW_BIN or .tools/bin/versitygw. */
  binary?: string;
  /** Extra global versitygw args (before the `posix` sub-command). */
  extraArgs?: string[];
  /** Readiness timeout per start, ms. Default 15000. */
  startTimeoutMs?: number;
}

// ---------------------------------------------------------------- cleanup registry

const liveChildren = new Set<ChildProcess>();
const liveWatchdogs = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let hooksInstalled = false;

function cleanupSync(): void {
  for (const c of liveChildren) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveChildren.clear();
  for (const w of liveWatchdogs) {
    try {
      w.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  liveWatchdogs.clear();
  for (const d of ownedDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  ownedDirs.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      cleanupSync();
      process.removeListener(sig, handler);
      // Nobody else handles it: die by the same signal, as without us.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, handler);
  }
}

/**
 * A detached shell that, if this (test) process dies without cleaning up (e.g.
 * it is SIGKILLed), SIGKILLs `childPid` and removes the service's temp dir.
 * It exits on its own once the child is gone, and is killed when the child exits.
 */
function spawnWatchdog(childPid: number, dir: string): ChildProcess | undefined {
  const script =
    'p=$1; c=$2; d=$3; ' +
    'while kill -0 "$p" 2>/dev/null && kill -0 "$c" 2>/dev/null; do sleep 1; done; ' +
    'if ! kill -0 "$p" 2>/dev/null; then kill -9 "$c" 2>/dev/null; sleep 0.3; ' +
    'case "$d" in */fairway-*) rm -rf -- "$d";; esac; fi; exit 0';
  try {
    const w = spawn('/bin/sh', ['-c', script, 'fairway-test-watchdog', String(process.pid), String(childPid), dir], { stdio: 'ignore', detached: true });
    w.on('error', () => liveWatchdogs.delete(w));
    w.on('exit', () => liveWatchdogs.delete(w));
    w.unref();
    liveWatchdogs.add(w);
    return w;
  } catch {
    return undefined; // no /bin/sh: the exit hooks still cover normal exits
  }
}

// ---------------------------------------------------------------- utilities

/**
 * Holds the event loop open while `p` is pending. The service's child process is unref'd (a
 * forgotten service must not keep a test file alive), so awaiting only its exit would let Node
 * end the test file with "Promise resolution is still pending".
 */
async function keepAlive<T>(p: Promise<T>): Promise<T> {
  const t = setInterval(() => undefined, 1000);
  try {
    return await p;
  } finally {
    clearInterval(t);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function getFreePort(host: string = LOOPBACK): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not get a free port'))));
    });
  });
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findInPath(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...extraDirs];
  for (const d of dirs) {
    const p = path.join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}

function makeTempDir(prefix: string): string {
  const base = process.env.FAIRWAY_TEST_TMPDIR || os.tmpdir();
  mkdirSync(base, { recursive: true });
  const dir = mkdtempSync(path.join(base, prefix));
  ownedDirs.add(dir);
  return dir;
}

/** Keeps the last `max` characters of a process' output. */
class OutputTail {
  private buf = '';
  constructor(private readonly max = 32 * 1024) {}
  push(chunk: Buffer | string): void {
    this.buf += chunk.toString();
    if (this.buf.length > this.max) this.buf = this.buf.slice(this.buf.length - this.max);
  }
  mark(line: string): void {
    this.push(`\n--- ${line} ---\n`);
  }
  toString(): string {
    return this.buf;
  }
}

// ---------------------------------------------------------------- managed process

interface ManagedSpec {
  name: string;
  binary: string;
  /** argv for a given port */
  args(port: number): string[];
  env?: NodeJS.ProcessEnv;
  cwd: string;
  /** Resolves when the service answers; rejects/returns false to keep polling. */
  probe(port: number): Promise<boolean>;
  /** Runs once per successful start, after the probe. */
  afterReady?(port: number): Promise<void>;
  startTimeoutMs: number;
  stopTimeoutMs: number;
}

const ADDR_IN_USE = /address already in use|EADDRINUSE|bind: address/i;

class ManagedProcess {
  private child: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private paused = false;
  private destroyed = false;
  readonly output = new OutputTail();
  port = 0;

  constructor(private readonly spec: ManagedSpec) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** First start: picks a random port (retrying on a lost race) unless `fixedPort`. */
  async firstStart(fixedPort: number | undefined): Promise<void> {
    const attempts = fixedPort ? 1 : 5;
    let lastErr: unknown;
    for (let i = 0; i < attempts; i++) {
      this.port = fixedPort ?? (await getFreePort());
      try {
        await this.startOnce();
        return;
      } catch (err) {
        lastErr = err;
        if (!ADDR_IN_USE.test(String((err as Error).message))) throw err;
      }
    }
    throw lastErr;
  }

  async start(): Promise<void> {
    return keepAlive(this.startGuarded());
  }

  private async startGuarded(): Promise<void> {
    if (this.destroyed) throw new Error(`${this.spec.name}: start() after destroy()`);
    if (this.child) return;
    // The port may linger briefly after a stop: retry a few times on EADDRINUSE.
    let lastErr: unknown;
    for (let i = 0; i < 10; i++) {
      try {
        await this.startOnce();
        return;
      } catch (err) {
        lastErr = err;
        if (!ADDR_IN_USE.test(String((err as Error).message))) throw err;
        await sleep(300);
      }
    }
    throw lastErr;
  }

  private spawnCount = 0;

  private async startOnce(): Promise<void> {
    installExitHooks();
    const { spec } = this;
    const port = this.port;
    this.spawnCount++;
    this.output.mark(`start #${this.spawnCount} on ${LOOPBACK}:${port}`);
    const child = spawn(spec.binary, spec.args(port), {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let spawnError: Error | undefined;
    let exitInfo: string | undefined;
    const exited = new Promise<void>((resolve) => {
      child.once('error', (err) => {
        spawnError = err;
        resolve();
      });
      child.once('exit', (code, signal) => {
        exitInfo = signal ? `signal ${signal}` : `exit code ${code}`;
        resolve();
      });
    }).then(() => {
      liveChildren.delete(child);
      if (this.child === child) {
        this.child = undefined;
        this.paused = false;
      }
      const w = this.watchdog;
      if (w && this.child === undefined) {
        try {
          w.kill('SIGKILL');
        } catch {
          /* gone */
        }
        liveWatchdogs.delete(w);
        this.watchdog = undefined;
      }
    });
    child.stdout?.on('data', (d: Buffer) => this.output.push(d));
    child.stderr?.on('data', (d: Buffer) => this.output.push(d));
    // Never keep the test process alive just because a service still runs.
    child.unref();
    (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

    this.child = child;
    this.exited = exited;
    this.paused = false;
    liveChildren.add(child);
    if (child.pid !== undefined) this.watchdog = spawnWatchdog(child.pid, spec.cwd);

    const deadline = Date.now() + spec.startTimeoutMs;
    let lastProbeErr: unknown;
    for (;;) {
      if (spawnError) {
        const e = spawnError as NodeJS.ErrnoException;
        throw new Error(`${spec.name}: cannot run ${spec.binary}: ${e.code ?? ''} ${e.message}. ${DEPS_HINT}`);
      }
      if (exitInfo !== undefined || this.child !== child) {
        throw new Error(
          `${spec.name} exited during startup on ${LOOPBACK}:${port} (${exitInfo ?? 'stopped'}).\n` + `Command: ${spec.binary} ${spec.args(port).join(' ')}\nOutput:\n${this.output.toString()}`,
        );
      }
      try {
        if (await spec.probe(port)) break;
      } catch (err) {
        lastProbeErr = err;
      }
      if (Date.now() > deadline) {
        await this.killChild('SIGKILL');
        throw new Error(
          `${spec.name} not ready on ${LOOPBACK}:${port} after ${spec.startTimeoutMs} ms` +
            (lastProbeErr ? ` (last probe error: ${String(lastProbeErr)})` : '') +
            `\nOutput:\n${this.output.toString()}`,
        );
      }
      await sleep(50);
    }
    if (spec.afterReady) {
      try {
        await spec.afterReady(port);
      } catch (err) {
        await this.killChild('SIGKILL');
        throw new Error(`${spec.name}: setup after start failed: ${String(err)}\nOutput:\n${this.output.toString()}`);
      }
    }
  }

  private killChild(signal: NodeJS.Signals): Promise<void> {
    return keepAlive(this.killChildGuarded(signal));
  }

  private async killChildGuarded(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (this.paused && signal !== 'SIGKILL') {
      child.kill('SIGCONT');
      this.paused = false;
    }
    child.kill(signal);
    if (signal === 'SIGKILL') {
      await this.exited;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), this.spec.stopTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut && this.child === child) {
      this.output.mark(`no exit ${this.spec.stopTimeoutMs} ms after ${signal}; sending SIGKILL`);
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  async stop(): Promise<void> {
    await this.killChild('SIGTERM');
  }

  async kill(): Promise<void> {
    await this.killChild('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async pause(): Promise<void> {
    if (!this.child) throw new Error(`${this.spec.name}: pause() while not running`);
    this.child.kill('SIGSTOP');
    this.paused = true;
  }

  async resume(): Promise<void> {
    if (!this.child) throw new Error(`${this.spec.name}: resume() while not running`);
    this.child.kill('SIGCONT');
    this.paused = false;
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await this.stop();
    this.destroyed = true;
    ownedDirs.delete(this.spec.cwd);
    await rm(this.spec.cwd, { recursive: true, force: true });
  }
}

function controlFacade(mp: ManagedProcess, dir: string): ServiceControl {
  return {
    host: LOOPBACK,
    get port() {
      return mp.port;
    },
    dir,
    get pid() {
      return mp.pid;
    },
    get running() {
      return mp.running;
    },
    start: () => mp.start(),
    stop: () => mp.stop(),
    kill: () => mp.kill(),
    restart: () => mp.restart(),
    pause: () => mp.pause(),
    resume: () => mp.resume(),
    destroy: () => mp.destroy(),
    logs: () => mp.output.toString(),
  };
}

// ---------------------------------------------------------------- Redis

function resolveRedisBinary(explicit?: string): string {
  const candidate = explicit ?? process.env.FAIRWAY_REDIS_SERVER;
  if (candidate) {
    if (!isExecutable(candidate)) {
      throw new Error(`redis-server not found or not executable at ${candidate}. ${DEPS_HINT}`);
    }
    return candidate;
  }
  const found = findInPath('redis-server', ['/usr/bin', '/usr/sbin', '/usr/local/bin']);
  if (!found) {
    throw new Error(`redis-server not found in PATH (needed by integration tests). ${DEPS_HINT}`);
  }
  return found;
}

/** Sends PING over a raw socket; true on +PONG. */
function redisPing(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: LOOPBACK, port });
    let data = '';
    const done = (err: Error | undefined, ok = false): void => {
      sock.destroy();
      if (err) reject(err);
      else resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(new Error('PING timed out')));
    sock.on('error', (e) => done(e));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) {
        // "-LOADING ..." while the AOF is replayed: not ready yet.
        done(undefined, data.startsWith('+PONG'));
      }
    });
  });
}

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisService> {
  const binary = resolveRedisBinary(opts.binary);
  const dir = makeTempDir('fairway-redis-');
  const persistence = opts.persistence ?? false;
  const mp = new ManagedProcess({
    name: 'redis-server',
    binary,
    cwd: dir,
    args: (port) => [
      '--port',
      String(port),
      '--bind',
      LOOPBACK,
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--logfile',
      '',
      '--loglevel',
      'warning',
      '--save',
      '',
      '--unixsocket',
      '',
      ...(persistence ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
      ...(opts.extraArgs ?? []),
    ],
    probe: (port) => redisPing(port),
    startTimeoutMs: opts.startTimeoutMs ?? 10_000,
    stopTimeoutMs: 5_000,
  });
  try {
    await mp.firstStart(opts.port);
  } catch (err) {
    await mp.destroy().catch(() => undefined);
    throw err;
  }
  const base = controlFacade(mp, dir);
  return Object.defineProperties(base, {
    url: { get: () => `redis://${LOOPBACK}:${mp.port}`, enumerable: true },
  }) as RedisService;
}

// ---------------------------------------------------------------- S3 (versitygw)

function resolveVersitygwBinary(explicit?: string): string {
  const candidate = explicit ?? process.env.FAIRWAY_VERSITYGW_BIN ?? path.join(REPO_ROOT, '.tools', 'bin', 'versitygw');
  if (!isExecutable(candidate)) {
    throw new Error(`S3 server binary (versitygw) not found at ${candidate}. ${DEPS_HINT} It builds the pinned version into .tools/bin/ (see docs/s3-server.md).`);
  }
  return candidate;
}

/** Any HTTP answer (the unsigned request gets 403 AccessDenied) means it is listening. */
async function httpAnswers(port: number): Promise<boolean> {
  const res = await fetch(`http://${LOOPBACK}:${port}/`, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer().catch(() => undefined);
  return res.status > 0;
}

export async function startS3(opts: StartS3Options = {}): Promise<S3Service> {
  const binary = resolveVersitygwBinary(opts.binary);
  const dir = makeTempDir('fairway-s3-');
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const region = opts.region ?? 'us-east-1';
  const accessKeyId = opts.accessKeyId ?? 'fairwaytestkey';
  const secretAccessKey = opts.secretAccessKey ?? 'fairwaytestsecret0123456789';
  const bucket = opts.bucket ?? 'fairway-test';
  const buckets = [bucket, ...(opts.extraBuckets ?? [])];

  // versitygw reads many VGW_* / ROOT_* variables; keep the caller's env from leaking in.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(VGW_|ROOT_ACCESS|ROOT_SECRET|LOGFILE$|WEBHOOK$)/.test(k)) env[k] = v;
  }

  const clientConfig = (port: number, overrides: Partial<S3ClientConfig> = {}): S3ClientConfig => ({
    endpoint: `http://${LOOPBACK}:${port}`,
    region,
    credentials: { accessKeyId, secretAccessKey },
    forcePathStyle: true,
    ...overrides,
  });

  const mp = new ManagedProcess({
    name: 'versitygw',
    binary,
    cwd: dir,
    env,
    args: (port) => ['--access', accessKeyId, '--secret', secretAccessKey, '--region', region, '--port', `${LOOPBACK}:${port}`, '--quiet', ...(opts.extraArgs ?? []), 'posix', dataDir],
    probe: (port) => httpAnswers(port),
    afterReady: async (port) => {
      const client = new S3Client(clientConfig(port, { maxAttempts: 3 }));
      try {
        for (const b of buckets) {
          try {
            await client.send(new CreateBucketCommand({ Bucket: b }));
          } catch (err) {
            const name = (err as { name?: string }).name;
            // Restarted on the same data dir: the bucket is already there.
            if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw err;
          }
        }
      } finally {
        client.destroy();
      }
    },
    startTimeoutMs: opts.startTimeoutMs ?? 15_000,
    stopTimeoutMs: 5_000,
  });
  try {
    await mp.firstStart(opts.port);
  } catch (err) {
    await mp.destroy().catch(() => undefined);
    throw err;
  }
  const base = controlFacade(mp, dir);
  return Object.defineProperties(base, {
    endpoint: { get: () => `http://${LOOPBACK}:${mp.port}`, enumerable: true },
    region: { value: region, enumerable: true },
    bucket: { value: bucket, enumerable: true },
    accessKeyId: { value: accessKeyId, enumerable: true },
    secretAccessKey: { value: secretAccessKey, enumerable: true },
    forcePathStyle: { value: true, enumerable: true },
    dataDir: { value: dataDir, enumerable: true },
    clientConfig: {
      value: (overrides?: Partial<S3ClientConfig>) => clientConfig(mp.port, overrides),
      enumerable: false,
    },
  }) as S3Service;
}
