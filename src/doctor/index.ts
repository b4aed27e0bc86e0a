/**
 * `fairway doctor`: checks that this machine and this configuration can build, each check with a
 * pass/fail line and, when it fails, the fix (docs/install.md "fairway doctor"). A check is a
 * name and a function returning {ok, detail, fix}; a check that throws fails with the error as
 * its detail. Nothing here starts a server.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, realpath, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { MIN_GO_VERSION, sandboxLimitsOf, XCADDY_VERSION, type Config } from '../config/index.js';
import { loadSigner } from '../provenance/index.js';
import { openSandbox, sandboxVisibleParent, type Sandbox } from '../sandbox/index.js';
import { goVersionOk, nodeRuntimeCheck, xcaddyVersionAt } from '../setup/index.js';
import { openStore } from '../store/index.js';
import { findOnPath, goProxyEnv } from '../toolchain/index.js';
import { formatBytes } from '../util/units.js';
import { errorMessage } from '../util/errors.js';

export interface CheckOutcome {
  ok: boolean;
  detail: string;
  /** What to do when it failed (or, for a pass with a caveat, how to improve it). */
  fix?: string;
}

export interface CheckResult extends CheckOutcome {
  name: string;
}

export interface Check {
  name: string;
  run(): Promise<CheckOutcome>;
}

/** Runs the checks in order; a check that throws fails with its error message as the detail. */
export async function runChecks(checks: readonly Check[]): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of checks) {
    try {
      out.push({ name: c.name, ...(await c.run()) });
    } catch (err) {
      out.push({ name: c.name, ok: false, detail: errorMessage(err) ?? String(err), fix: 'see the detail' });
    }
  }
  return out;
}

/** 0 when every check passed, 1 otherwise. */
export function exitCode(results: readonly CheckResult[]): number {
  return results.length > 0 && results.every((r) => r.ok) ? 0 : 1;
}

/** One line per check ("ok   name: detail" / "FAIL name: detail"), its fix indented below a failure, and a summary. */
export function formatReport(results: readonly CheckResult[]): string {
  const width = Math.max(0, ...results.map((r) => r.name.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(width)}  ${r.detail}`);
    if (!r.ok && r.fix) lines.push(`     ${' '.repeat(width)}  fix: ${r.fix}`);
  }
  const failed = results.filter((r) => !r.ok).length;
  lines.push(failed === 0 ? `all ${results.length} checks passed` : `${failed} of ${results.length} checks failed`);
  return `${lines.join('\n')}\n`;
}

export interface DoctorOptions {
  config: Pick<
    Config,
    | 'goBin'
    | 'xcaddyBin'
    | 'goCacheProgBin'
    | 'goCacheShared'
    | 'sandbox'
    | 'buildUser'
    | 'goproxy'
    | 'goprivate'
    | 'gonosumdb'
    | 'gonoproxy'
    | 'gosumdb'
    | 'dataDir'
    | 'cacheDir'
    | 'minFreeDisk'
    | 'signingKey'
    | 'store'
    | 'redis'
    | 'toolsDir'
  > &
    Partial<Pick<Config, 'indexSigningKey' | 'buildMemoryMax' | 'buildTasksMax' | 'buildTmpfsSize' | 'buildFileSizeMax' | 'runMemoryMax' | 'runTasksMax' | 'runTmpfsSize' | 'sandboxLimits'>>;
  /** The command that installs the tools: `fairway setup` or `npm run setup`. */
  setupCommand: string;
  /** The environment the checks read PATH from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Module the proxy check resolves `@latest` of. */
  probeModule?: string;
  timeoutMs?: number;
  /** The Node.js version checked (default this process's `process.version`). */
  nodeVersion?: string;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string;
}
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('error', (err) => done({ code: null, stdout, stderr, error: err.message }));
    child.on('close', (code) => done({ code, stdout, stderr }));
  });
}

/** The go binary on PATH (or the configured path), resolved to its real file, and its GOROOT. */
export async function findGo(goBin: string, env: NodeJS.ProcessEnv): Promise<{ bin: string; goRoot: string } | null> {
  const found = await findOnPath(goBin, env.PATH ?? '');
  if (!found) return null;
  const real = await realpath(found).catch(() => null);
  return real ? { bin: real, goRoot: dirname(dirname(real)) } : null;
}

const firstLine = (s: string) => s.trim().split('\n').slice(-2).join(' | ').slice(0, 400);

/** Creates (when missing), writes, reads back and deletes a probe file; then free space against `minFree`. */
export async function checkWritableDir(dir: string, minFree: number, what: string): Promise<CheckOutcome> {
  const fix = `make ${dir} a directory this user (uid ${process.getuid?.() ?? '?'}) can write (no parent may be a file), e.g. mkdir -p ${dir} && chown $(id -u) ${dir}, or point ${what} elsewhere`;
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.fairway-doctor-${process.pid}-${randomBytes(4).toString('hex')}`);
    const data = randomBytes(16).toString('hex');
    await writeFile(probe, data);
    const back = await readFile(probe, 'utf8');
    await unlink(probe);
    if (back !== data) return { ok: false, detail: `${dir}: a probe file read back different bytes`, fix };
  } catch (err) {
    return { ok: false, detail: `${dir} is not writable: ${errorMessage(err)}`, fix };
  }
  const s = await statfs(dir);
  const free = s.bavail * s.bsize;
  if (minFree > 0 && free < minFree) {
    return {
      ok: false,
      detail: `${dir}: ${formatBytes(free)} free, less than minFreeDisk ${formatBytes(minFree)}`,
      fix: `free disk space on the filesystem of ${dir}, move ${what} to a larger one, or lower --min-free-disk`,
    };
  }
  return { ok: true, detail: `${dir} writable, ${formatBytes(free)} free${minFree > 0 ? ` (minFreeDisk ${formatBytes(minFree)})` : ''}` };
}

/** The checks of `fairway doctor` for a configuration, in the order they are shown. */
export function doctorChecks(o: DoctorOptions): { checks: Check[]; close(): Promise<void> } {
  const c = o.config;
  const env = o.env ?? process.env;
  const timeoutMs = o.timeoutMs ?? 60_000;
  const setup = o.setupCommand;
  let go: { bin: string; goRoot: string } | null = null;
  let sandbox: Sandbox | null = null;
  const goFix = `install Go ${MIN_GO_VERSION} or newer (https://go.dev/dl/) and put it on PATH, or set --go-bin / FAIRWAY_GO_BIN`;

  const checks: Check[] = [
    { name: 'node', run: async () => nodeRuntimeCheck(o.nodeVersion) },
    {
      name: 'go',
      run: async () => {
        go = await findGo(c.goBin, env);
        if (!go) return { ok: false, detail: `${c.goBin} not found on PATH (${env.PATH ?? ''})`, fix: goFix };
        const r = await run(go.bin, ['env', 'GOVERSION'], { PATH: env.PATH ?? '', HOME: env.HOME ?? tmpdir(), GOTOOLCHAIN: 'local', GOENV: 'off', GOTELEMETRY: 'off' }, timeoutMs);
        const version = r.stdout.trim();
        if (r.code !== 0 || !version) {
          go = null;
          return { ok: false, detail: `${c.goBin} does not run: ${r.error ?? firstLine(r.stderr)}`, fix: goFix };
        }
        if (!goVersionOk(version)) return { ok: false, detail: `${version} at ${go.bin} is older than go${MIN_GO_VERSION}`, fix: goFix };
        return { ok: true, detail: `${version} at ${go.bin} (need go${MIN_GO_VERSION} or newer)` };
      },
    },
    {
      name: 'xcaddy',
      run: async () => {
        const have = await xcaddyVersionAt(c.xcaddyBin, { PATH: env.PATH ?? '', HOME: env.HOME ?? tmpdir() });
        if (have === XCADDY_VERSION) return { ok: true, detail: `${XCADDY_VERSION} at ${c.xcaddyBin}` };
        return {
          ok: false,
          detail: have ? `${c.xcaddyBin} is ${have}, not the pinned ${XCADDY_VERSION}` : `${c.xcaddyBin} is missing or does not run`,
          fix: `run \`${setup}\` (it installs xcaddy ${XCADDY_VERSION} into ${join(c.toolsDir, 'bin')}), or set --xcaddy-bin`,
        };
      },
    },
    {
      name: 'cacheprog',
      run: async () => {
        const ok = await access(c.goCacheProgBin, constants.X_OK).then(
          () => true,
          () => false,
        );
        if (ok) return { ok: true, detail: `fairway-cacheprog at ${c.goCacheProgBin}` };
        if (!c.goCacheShared) return { ok: true, detail: `fairway-cacheprog not installed at ${c.goCacheProgBin}; only agents with goCacheShared need it` };
        return { ok: false, detail: `goCacheShared is on but ${c.goCacheProgBin} is missing or not executable`, fix: `run \`${setup}\` (it builds tools/cacheprog), or set --go-cache-prog-bin` };
      },
    },
    {
      name: 'sandbox',
      run: async () => {
        try {
          sandbox = await openSandbox({
            kind: c.sandbox,
            buildUser: c.buildUser,
            setupCommand: setup,
            ...(c.goproxy !== undefined ? { goproxy: c.goproxy } : {}),
            ...(limitSettings(c) ? { limits: sandboxLimitsOf(limitSettings(c)!) } : {}),
            ...(c.sandboxLimits ? { limitsMechanism: c.sandboxLimits } : {}),
          });
        } catch (err) {
          return { ok: false, detail: errorMessage(err), fix: `run \`${setup}\` (bubblewrap, socat and, as root, the build user ${c.buildUser})` };
        }
        const argv = go ? [go.bin, 'version'] : ['/usr/bin/true'];
        try {
          const r = await sandbox.run(
            { argv, env: { PATH: '/usr/bin:/bin', HOME: '/tmp', GOTOOLCHAIN: 'local', GOENV: 'off', GOTELEMETRY: 'off' }, readOnly: go ? [go.goRoot] : [], network: 'none' },
            { timeoutMs },
          );
          const who = sandbox.identity ? `as ${sandbox.identity.user} (uid ${sandbox.identity.uid})` : `as uid ${process.getuid?.() ?? '?'} in a user namespace`;
          if (sandbox.kind === 'none') {
            return { ok: true, detail: `sandbox none: builds run unsandboxed (unsafe); ran ${argv.join(' ')}`, fix: `run \`${setup}\` and start without --sandbox none` };
          }
          return { ok: true, detail: `bwrap ran \`${argv.map((a) => a.split('/').pop()).join(' ')}\` ${who}: ${firstLine(r.stdout) || 'exit 0'}` };
        } catch (err) {
          return {
            ok: false,
            detail: `a sandboxed command failed: ${errorMessage(err)}`,
            fix: `run \`${setup}\`; bubblewrap needs user, mount, PID and network namespaces (docs/install.md "Hardening")`,
          };
        }
      },
    },
    {
      name: 'limits',
      run: async () => {
        if (!sandbox) return { ok: false, detail: 'not checked: the sandbox does not start (see the sandbox check)', fix: `run \`${setup}\`` };
        const d = (sandbox as Sandbox).describe();
        if (d.sandbox === 'none') return { ok: true, detail: 'sandbox none: no seccomp filter, no resource limits (unsafe)' };
        const how =
          d.limits === 'rlimits' ? `rlimits only (${String(d.limitsDetail)}; a cgroup per command needs root with cgroup v1, or a delegated cgroup v2: systemd Delegate=yes)` : String(d.limitsDetail);
        return {
          ok: true,
          detail: `${String(d.limits)}: ${how}; go commands: ${String(d.goCommandLimits)}; built binaries: ${String(d.binaryRunLimits)}; priority: ${String(d.priority)}; seccomp ${String(d.seccomp)}; nested user namespaces ${String(d.nestedUserNamespaces)}`,
        };
      },
    },
    {
      name: 'module proxy',
      run: async () => {
        const mod = o.probeModule ?? 'github.com/caddyserver/caddy/v2';
        const fix = 'check GOPROXY (--goproxy / FAIRWAY_GOPROXY; default https://proxy.golang.org) and that this machine reaches it';
        if (!go) return { ok: false, detail: 'not checked: Go is missing (see the go check)', fix: goFix };
        if (!sandbox) return { ok: false, detail: 'not checked: the sandbox does not start (see the sandbox check)', fix: `run \`${setup}\`` };
        const g = go as { bin: string; goRoot: string };
        const sb = sandbox as Sandbox;
        const dir = await mkdtemp(join(tmpdir(), 'fairway-doctor-'));
        try {
          await sb.ownedDir(dir);
          const goEnv: Record<string, string> = {
            PATH: `${dirname(g.bin)}:/usr/bin:/bin`,
            HOME: dir,
            GOPATH: join(dir, 'gopath'),
            GOMODCACHE: join(dir, 'mod'),
            GOCACHE: join(dir, 'build'),
            GOFLAGS: '-modcacherw',
            GOTOOLCHAIN: 'local',
            GOENV: 'off',
            GOTELEMETRY: 'off',
            GO111MODULE: 'on',
            ...goProxyEnv(c),
          };
          const r = await sb.run({ argv: [g.bin, 'list', '-m', '-json', `${mod}@latest`], cwd: dir, env: goEnv, readOnly: [g.goRoot], writable: [dir], network: 'modules' }, { timeoutMs });
          const info = JSON.parse(r.stdout) as { Version?: string };
          if (!info.Version) return { ok: false, detail: `go list -m ${mod}@latest printed no version`, fix };
          return { ok: true, detail: `${mod}@latest resolves to ${info.Version} through ${sb.kind === 'bwrap' ? 'the sandbox module relay' : 'GOPROXY'} (${c.goproxy ?? 'Go default'})` };
        } catch (err) {
          return { ok: false, detail: `go list -m ${mod}@latest failed: ${errorMessage(err)}`, fix };
        } finally {
          await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        }
      },
    },
    { name: 'data dir', run: () => checkWritableDir(c.dataDir, c.minFreeDisk, 'the data dir (--data-dir / FAIRWAY_DATA_DIR)') },
    { name: 'cache dir', run: () => checkWritableDir(c.cacheDir, c.minFreeDisk, 'the cache dir (--cache-dir / FAIRWAY_CACHE_DIR)') },
  ];

  if (c.redis) {
    const url = c.redis;
    checks.push({ name: 'redis', run: () => checkRedis(url, timeoutMs) });
  }
  if (c.store) {
    const spec = c.store;
    checks.push({ name: 'store', run: () => checkStore(spec, c.dataDir) });
  }
  if (c.signingKey) {
    const key = c.signingKey;
    checks.push({ name: 'signing key', run: () => checkSigningKey(key, c.cacheDir) });
  }
  if (c.indexSigningKey) {
    const key = c.indexSigningKey;
    checks.push({ name: 'index signing key', run: () => checkSigningKey(key, c.cacheDir, '--index-signing-key') });
  }
  return { checks, close: async () => (sandbox as Sandbox | null)?.close() };
}

/** The limit settings, when the configuration has them all (a full Config does). */
function limitSettings(c: DoctorOptions['config']): Parameters<typeof sandboxLimitsOf>[0] | null {
  const { buildMemoryMax, buildTasksMax, buildTmpfsSize, buildFileSizeMax, runMemoryMax, runTasksMax, runTmpfsSize } = c;
  if (buildMemoryMax === undefined || buildTasksMax === undefined || buildTmpfsSize === undefined || buildFileSizeMax === undefined) return null;
  if (runMemoryMax === undefined || runTasksMax === undefined || runTmpfsSize === undefined) return null;
  return { buildMemoryMax, buildTasksMax, buildTmpfsSize, buildFileSizeMax, runMemoryMax, runTasksMax, runTmpfsSize };
}

/** Runs every check of doctorChecks() and closes what they opened (the sandbox's module relay). */
export async function runDoctor(o: DoctorOptions): Promise<CheckResult[]> {
  const { checks, close } = doctorChecks(o);
  try {
    return await runChecks(checks);
  } finally {
    await close();
  }
}

/** Redis: connects, then SET/GET/DEL of a probe key with a one-minute expiry. */
export async function checkRedis(url: string, timeoutMs = 10_000): Promise<CheckOutcome> {
  const where = url.replace(/\/\/[^@/]*@/, '//***@');
  const fix = `start Redis at ${where} or correct --redis / FAIRWAY_REDIS (a password goes in the URL: redis://:password@host:6379)`;
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: Math.min(timeoutMs, 5_000), maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
  let lastError: Error | null = null;
  redis.on('error', (err: Error) => {
    lastError = err;
  });
  try {
    await redis.connect();
    const key = `fairway:doctor:${randomBytes(8).toString('hex')}`;
    const value = randomBytes(8).toString('hex');
    await redis.set(key, value, 'EX', 60);
    const back = await redis.get(key);
    await redis.del(key);
    if (back !== value) return { ok: false, detail: `${where}: a probe key read back ${JSON.stringify(back)}`, fix };
    const info = await redis.info('server');
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    return { ok: true, detail: `${where} reachable and writable (Redis ${version})` };
  } catch (err) {
    const cause = (lastError as Error | null)?.message;
    return { ok: false, detail: `${where}: ${cause ?? errorMessage(err)}`, fix };
  } finally {
    redis.disconnect();
  }
}

/** The store: ping, then a probe record put/get/delete, and (S3) a probe blob through the upload path artifacts take. */
export async function checkStore(spec: string, dataDir: string): Promise<CheckOutcome> {
  const fix = 'correct --store / FAIRWAY_STORE (docs/storage.md); for S3 also the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a role) and the bucket policy (put, get, delete, list)';
  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    store = await openStore(spec, { dataDir, ping: true });
  } catch (err) {
    return { ok: false, detail: `${spec}: ${errorMessage(err)}`, fix };
  }
  const name = `probe-${randomBytes(8).toString('hex')}`;
  const value = { probe: name, at: new Date().toISOString() };
  // The AWS SDK's request checksums (x-amz-checksum-*): the default, unless the operator changed it.
  const checksums = process.env.AWS_REQUEST_CHECKSUM_CALCULATION ?? 'WHEN_SUPPORTED';
  try {
    await store.putRecord('doctor', name, value);
    const back = await store.getRecord('doctor', name);
    await store.deleteRecord('doctor', name);
    if (JSON.stringify(back) !== JSON.stringify(value)) return { ok: false, detail: `${spec}: a probe record read back different content`, fix };
    if (store.kind === 's3') {
      const dir = await mkdtemp(join(tmpdir(), 'fairway-doctor-blob-'));
      try {
        const bytes = randomBytes(64);
        const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        await writeFile(join(dir, 'blob'), bytes);
        await store.putBlob(digest, join(dir, 'blob'));
        const st = await store.statBlob(digest);
        await store.deleteBlob(digest);
        if (st?.size !== bytes.length) return { ok: false, detail: `${spec}: a probe blob was not stored whole`, fix };
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      return { ok: true, detail: `${spec} reachable and writable (record and blob put/get/delete; request checksums ${checksums}, sha256 metadata checked)` };
    }
    return { ok: true, detail: `${spec} reachable and writable (record put/get/delete)` };
  } catch (err) {
    const msg = errorMessage(err);
    const checksumHint = /checksum|crc|content-?sha|XAmz|NotImplemented|InvalidRequest|InvalidArgument/i.test(msg)
      ? `; the S3 server may not accept the AWS SDK's request checksums (${checksums}): upgrade it, or set AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED`
      : '';
    return { ok: false, detail: `${spec}: ${msg}`, fix: `${fix}${checksumHint}` };
  } finally {
    await store.close?.();
  }
}

/** The signing key: not where builds can read it, a valid ECDSA P-256 private key, mode 0600. */
export async function checkSigningKey(path: string, cacheDir: string, flag = '--signing-key'): Promise<CheckOutcome> {
  const keyPath = resolve(path);
  const visible = sandboxVisibleParent(keyPath, [cacheDir]);
  if (visible)
    return {
      ok: false,
      detail: `${keyPath} is under ${visible}, which sandboxed builds can read`,
      fix: `move it elsewhere, e.g. /etc/fairway/${flag === '--signing-key' ? 'signing.key' : 'index-signing.key'}, mode 0600, and set ${flag}`,
    };
  try {
    const signer = await loadSigner(keyPath);
    const st = await stat(keyPath);
    if ((st.mode & 0o077) !== 0) return { ok: false, detail: `${keyPath} (${signer.fingerprint}) is readable by other users (mode ${(st.mode & 0o777).toString(8)})`, fix: `chmod 0600 ${keyPath}` };
    return { ok: true, detail: `${keyPath}: ECDSA P-256, ${signer.fingerprint}` };
  } catch (err) {
    return { ok: false, detail: errorMessage(err), fix: `create one with \`fairway key create\` (docs/provenance.md) and set ${flag}` };
  }
}
