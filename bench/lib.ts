/**
 * Shared pieces of the benchmarks in bench/: flags, machine facts, statistics, interleaved
 * (ABBA) runs, starting Fairway / nginx / raw xcaddy, and appending a dated row to BENCHMARKS.md.
 *
 * Every figure is reported as a ratio against a baseline measured in the same run, because the
 * machines these run on are noisy (shared cores, other jobs): absolute seconds drift from run to
 * run, a same-run ratio of medians of interleaved runs drifts much less. See docs/benchmarks.md.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import WebSocket from 'ws';
import { binaryName, sha256File, xcaddyArgs } from '../src/runner/index.js';
import type { ResolvedSpec } from '../src/request/index.js';
import { openSandbox } from '../src/sandbox/index.js';
import { Toolchain } from '../src/toolchain/index.js';
import { CADDY_VERSION, MAIN, PLUGIN, ROOT, startFairway, XCADDY, type FairwayProcess } from '../test/helpers/fairway.js';

export { api, CADDY_VERSION, countingXcaddy, GO_CACHE, MAIN, PLUGIN, ROOT, startFairway, XCADDY, type FairwayProcess } from '../test/helpers/fairway.js';
export { getFreePort, startRedis, type RedisService } from '../test/helpers/services.js';

const execFileP = promisify(execFile);
// Each started process registers an exit hook; a scale run starts more than Node's default 10.
process.setMaxListeners(100);
export const BENCHMARKS_MD = join(ROOT, 'BENCHMARKS.md');
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = () => performance.now();

// ---------------------------------------------------------------- specs

/** A build request as POSTed to /api/builds. */
export interface BenchSpec {
  caddyVersion: string;
  os: string;
  arch: string;
  arm?: string;
  plugins: Array<{ module: string; version: string }>;
}

export const L4 = { module: PLUGIN.module, version: PLUGIN.version };

export function spec(os: string, arch: string, plugins: BenchSpec['plugins'] = [], caddyVersion: string = CADDY_VERSION): BenchSpec {
  return { caddyVersion, os, arch, plugins };
}

export function describeSpec(s: BenchSpec): string {
  return `caddy ${s.caddyVersion} ${s.os}/${s.arch}${s.arm ? `v${s.arm}` : ''}${s.plugins.length ? ` +${s.plugins.map((p) => p.module.split('/').pop()).join('+')}` : ''}`;
}

/** The `/api/download` query of a spec (caddyserver.com-compatible API). */
export function downloadPath(s: BenchSpec): string {
  const q = new URLSearchParams({ os: s.os, arch: s.arch, version: s.caddyVersion });
  if (s.arm) q.append('arm', s.arm);
  for (const p of s.plugins) q.append('p', `${p.module}@${p.version}`);
  return `/api/download?${q.toString()}`;
}

// ---------------------------------------------------------------- flags

export interface FlagDef {
  type: 'string' | 'boolean';
  default?: string | boolean;
  help: string;
}

/**
 * Parses `--name value` flags; `--help` prints them and exits. Values come back as strings or
 * booleans; use `int()` for numbers.
 */
export function flags<K extends string>(usage: string, defs: Record<K, FlagDef>): Record<K, string> & { [k: string]: string | boolean } {
  const options: Record<string, { type: 'string' | 'boolean'; default?: string | boolean }> = { help: { type: 'boolean' } };
  for (const [k, d] of Object.entries(defs) as Array<[string, FlagDef]>) options[k] = { type: d.type, ...(d.default !== undefined ? { default: d.default } : {}) };
  let values: Record<string, unknown>;
  try {
    values = parseArgs({ options, allowPositionals: false }).values as Record<string, unknown>;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  if (values.help) {
    const lines = (Object.entries(defs) as Array<[string, FlagDef]>).map(
      ([k, d]) => `  --${k}${d.type === 'string' ? ' <v>' : ''}  ${d.help}${d.default !== undefined && d.default !== false ? ` (default ${String(d.default)})` : ''}`,
    );
    process.stdout.write(`${usage}\n\n${lines.join('\n')}\n  --no-record  print only, do not append to BENCHMARKS.md\n`);
    process.exit(0);
  }
  return values as Record<K, string> & { [k: string]: string | boolean };
}

export function int(v: string | boolean | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    process.stderr.write(`--${name} must be a whole number, got ${String(v)}\n`);
    process.exit(2);
  }
  return n;
}

/** `--no-record` on the command line: print the figures without touching BENCHMARKS.md. */
export const NO_RECORD = process.argv.includes('--no-record');
if (NO_RECORD) process.argv.splice(process.argv.indexOf('--no-record'), 1);

// ---------------------------------------------------------------- machine

export interface Machine {
  cores: number;
  cpu: string;
  node: string;
  go: string;
  /** 1-minute load average when the bench started: how noisy the machine was. */
  load: number;
}

let machineMemo: Promise<Machine> | undefined;
export function machine(): Promise<Machine> {
  machineMemo ??= (async () => {
    let go = 'unknown';
    try {
      go = (await execFileP('go', ['env', 'GOVERSION'], { env: { ...process.env, GOTOOLCHAIN: 'local' } })).stdout.trim();
    } catch {
      /* reported as unknown */
    }
    return { cores: cpus().length, cpu: cpus()[0]?.model.trim() ?? 'unknown', node: process.version, go, load: Number(loadavg()[0]!.toFixed(1)) };
  })();
  return machineMemo;
}

export function machineLabel(m: Machine): string {
  return `${m.cores} cores, Node ${m.node}, ${m.go}, load ${m.load}`;
}

/** Fails early with the set-up step to run when the compiled CLI or xcaddy is missing. */
export function requireSetup(): void {
  if (!existsSync(MAIN)) fail(`${MAIN} is missing: run "npm run setup" (or "npm run build") first`);
  if (!existsSync(XCADDY)) fail(`${XCADDY} is missing: run "npm run setup" first`);
  // The benches start the compiled CLI (dist/) but take the raw-xcaddy baseline's arguments and
  // environment from src/: both must be the same code.
  const built = statSync(MAIN).mtimeMs;
  const newer = srcFiles(join(ROOT, 'src')).filter((f) => statSync(f).mtimeMs > built);
  if (newer.length) {
    const msg = `dist/ is older than ${newer.length} file(s) in src/ (e.g. ${newer[0]!.slice(ROOT.length + 1)}): run "npm run setup" first`;
    if (process.env.FAIRWAY_BENCH_ALLOW_STALE) log(`warning: ${msg}`);
    else fail(`${msg} (or set FAIRWAY_BENCH_ALLOW_STALE=1)`);
  }
}

function srcFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...srcFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

export function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(1);
}

export function log(message: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

// ---------------------------------------------------------------- statistics

export function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** Percentile by linear interpolation between closest ranks; p in [0, 100]. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const idx = (p / 100) * (s.length - 1);
  const lo = Math.floor(idx);
  const hi = Math.ceil(idx);
  return s[lo]! + (s[hi]! - s[lo]!) * (idx - lo);
}

export const median = (xs: number[]) => percentile(xs, 50);
export const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  if (ms >= 3600_000) return `${(ms / 3600_000).toFixed(1)} h`;
  if (ms >= 60_000) return `${(ms / 60_000).toFixed(1)} min`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
}

export function fmtRate(bytesPerSec: number): string {
  return `${(bytesPerSec / 1e6).toFixed(0)} MB/s`;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? r.toFixed(3) : String(r);
}

/**
 * Runs `a` (the baseline) and `b` (the subject) `pairs` times each, interleaved A B B A A B B A…
 * so a slow drift of the machine hits both sides alike. Returns each side's samples in order.
 */
export async function interleave<T>(pairs: number, a: (i: number) => Promise<T>, b: (i: number) => Promise<T>): Promise<{ a: T[]; b: T[] }> {
  const out = { a: [] as T[], b: [] as T[] };
  for (let i = 0; i < pairs; i++) {
    const order: Array<'a' | 'b'> = i % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
    for (const side of order) out[side].push(await (side === 'a' ? a(i) : b(i)));
  }
  return out;
}

// ---------------------------------------------------------------- BENCHMARKS.md

export interface Row {
  bench: string;
  figure: string;
  /** The subject's figure, with its unit. */
  value: string;
  /** The same-run baseline, with its unit. */
  baseline: string;
  ratio: number;
  /** e.g. "≤ 1.03", "≥ 0.9", "= 1", or "—" for a figure without a target. */
  target: string;
  /** true/false against the target; undefined when there is none. */
  pass?: boolean;
  notes?: string;
}

const TABLE_HEAD = '| date (UTC) | bench | figure | value | baseline (same run) | ratio | target | result | machine | notes |\n|---|---|---|---|---|---|---|---|---|---|\n';

export function passMark(r: Row): string {
  return r.pass === undefined ? 'info' : r.pass ? 'pass' : '**FAIL**';
}

/** Prints the rows and appends them, dated, to BENCHMARKS.md (unless --no-record). */
export async function report(rows: Row[]): Promise<void> {
  const m = await machine();
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  process.stdout.write('\n');
  for (const r of rows) {
    process.stdout.write(`${r.bench}: ${r.figure}: ${r.value} vs ${r.baseline} → ratio ${fmtRatio(r.ratio)} (target ${r.target}) ${passMark(r)}${r.notes ? `  [${r.notes}]` : ''}\n`);
  }
  process.stdout.write(`machine: ${machineLabel(m)}; ${m.cpu}\n`);
  if (NO_RECORD) return;
  if (!existsSync(BENCHMARKS_MD)) {
    await writeFile(BENCHMARKS_MD, `# Benchmarks\n\nRows appended by \`bench/*.ts\`; method in docs/benchmarks.md.\n\n## Results\n\n${TABLE_HEAD}`);
  }
  const text = await readFile(BENCHMARKS_MD, 'utf8');
  const lines = rows.map(
    (r) =>
      `| ${date} | ${esc(r.bench)} | ${esc(r.figure)} | ${esc(r.value)} | ${esc(r.baseline)} | ${fmtRatio(r.ratio)} | ${esc(r.target)} | ${passMark(r)} | ${esc(machineLabel(m))} | ${esc(r.notes ?? '')} |\n`,
  );
  await appendFile(BENCHMARKS_MD, (text.endsWith('\n') ? '' : '\n') + lines.join(''));
  log(`appended ${rows.length} row(s) to BENCHMARKS.md`);
}

// ---------------------------------------------------------------- temp dirs

const owned: string[] = [];
export async function benchDir(prefix = 'fairway-bench-'): Promise<string> {
  const d = await mkdtemp(join(process.env.FAIRWAY_BENCH_TMPDIR ?? tmpdir(), prefix));
  owned.push(d);
  return d;
}

export async function cleanup(): Promise<void> {
  if (process.env.FAIRWAY_BENCH_KEEP) return log(`kept temp dirs: ${owned.join(' ')}`);
  await Promise.all(owned.splice(0).map((d) => removeTree(d)));
}

/** rm -rf that also works on a Go module cache (Go makes it read-only) when not run as root. */
export async function removeTree(dir: string): Promise<void> {
  await execFileP('chmod', ['-R', 'u+w', dir]).catch(() => undefined);
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

// ---------------------------------------------------------------- Fairway

/**
 * Arguments for a Fairway process with the Go caches in `cacheDir` (later flags win over the
 * helper's own `--cache-dir`). The log level stays `info`: the helper waits for "listening".
 */
export function fairwayArgs(cacheDir: string, more: string[] = []): string[] {
  return ['--cache-dir', cacheDir, ...more];
}

/**
 * Per-client request limits off: a bench is one client on loopback sending far more requests than
 * any real client may (the limits are measured by their own tests, not here).
 */
export const BENCH_ENV: NodeJS.ProcessEnv = { FAIRWAY_RATE_LIMIT: '0', FAIRWAY_BUILD_RATE_LIMIT: '0', FAIRWAY_MAX_ACTIVE_BUILDS: '0' };

/** A `fairway serve|hub|agent` process for a bench: Go caches in `cacheDir`, limits off. */
export function startBench(o: { command?: 'serve' | 'hub' | 'agent'; dataDir: string; cacheDir: string; args?: string[]; env?: NodeJS.ProcessEnv; port?: number }): Promise<FairwayProcess> {
  return startFairway({
    command: o.command ?? 'serve',
    dataDir: o.dataDir,
    args: fairwayArgs(o.cacheDir, o.args),
    env: { ...BENCH_ENV, ...o.env },
    ...(o.port ? { port: o.port } : {}),
  });
}

export interface BuildEnd {
  status: string;
  /** performance.now() when the `end` message arrived. */
  at: number;
  build: any;
}

/**
 * Follows a build's websocket log until its `end` message: the moment Fairway declares the build
 * finished and stored, without the latency a polling loop would add.
 */
export function waitForEnd(base: string, id: string, timeoutMs = 30 * 60_000): Promise<BuildEnd> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/api/builds/${id}/log`);
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`build ${id} did not end within ${fmtMs(timeoutMs)}`));
    }, timeoutMs);
    let done = false;
    ws.on('message', (d) => {
      const at = now();
      const m = JSON.parse(d.toString()) as { type: string; status?: string; build?: any };
      if (m.type === 'end') {
        done = true;
        clearTimeout(timer);
        ws.close();
        resolve({ status: m.status ?? 'unknown', at, build: m.build });
      } else if (m.type === 'error') {
        done = true;
        clearTimeout(timer);
        reject(new Error(`log of ${id}: ${JSON.stringify(m)}`));
      }
    });
    ws.on('close', () => {
      if (done) return;
      clearTimeout(timer);
      // Closed without an end message: ask for the status once.
      void fetch(`${base}/api/builds/${id}`)
        .then((r) => r.json() as Promise<any>)
        .then(
          (b) => (b.status === 'succeeded' || b.status === 'failed' ? resolve({ status: b.status, at: now(), build: b }) : reject(new Error(`log of ${id} closed early: ${JSON.stringify(b)}`))),
          reject,
        );
    });
    ws.on('error', (e) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(e);
      }
    });
  });
}

/**
 * Waits until a freshly started server is idle: no child processes (its start-up version refresh
 * runs `go list -m -versions`) and no CPU used by it or its children for 1 s. Then a timed build
 * measures the per-build path of a running server, not its start-up work. Linux (/proc); elsewhere
 * a fixed 3 s pause. Returns the time waited.
 */
export async function quiesce(pid: number | undefined, maxMs = 30_000): Promise<number> {
  const t0 = now();
  if (!pid || !existsSync(`/proc/${pid}/stat`)) {
    await sleep(3000);
    return now() - t0;
  }
  const ticks = async () => {
    const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
    // fields 14-17 of stat (utime stime cutime cstime) are 12-15 after "pid (comm) ".
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  };
  const children = async () => {
    try {
      return (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().length > 0;
    } catch {
      return false;
    }
  };
  let last = await ticks();
  let quiet = 0;
  while (now() - t0 < maxMs) {
    await sleep(250);
    const t = await ticks();
    quiet = t - last <= 1 && !(await children()) ? quiet + 1 : 0;
    last = t;
    if (quiet >= 4) break;
  }
  return now() - t0;
}

/** POST /api/builds, then wait for the end. Returns the wall time POST→end and the record. */
export async function timedBuild(base: string, s: BenchSpec, timeoutMs?: number): Promise<{ ms: number; build: any; cached: boolean }> {
  const t0 = now();
  const res = await fetch(`${base}/api/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(s) });
  const body = (await res.json()) as any;
  if (res.status === 200 && body.status === 'succeeded') return { ms: now() - t0, build: body, cached: true };
  if (res.status !== 202) throw new Error(`POST /api/builds answered ${res.status}: ${JSON.stringify(body)}`);
  const end = await waitForEnd(base, body.id, timeoutMs);
  if (end.status !== 'succeeded') throw new Error(`build ${body.id} ${end.status}: ${JSON.stringify(end.build?.error ?? end.build)}`);
  return { ms: end.at - t0, build: end.build, cached: false };
}

// ---------------------------------------------------------------- raw xcaddy

const toolchains = new Map<string, Promise<Toolchain>>();
/** The toolchain Fairway itself would use for `cacheDir` (same binary paths, same clean env). */
export function toolchainFor(cacheDir: string): Promise<Toolchain> {
  let t = toolchains.get(cacheDir);
  if (!t) {
    const goproxy = process.env.GOPROXY ? { goproxy: process.env.GOPROXY } : {};
    t = openSandbox({ kind: 'bwrap', buildUser: process.env.FAIRWAY_BUILD_USER ?? 'fairway-build', ...goproxy }).then((sandbox) =>
      Toolchain.detect({ xcaddyBin: XCADDY, cacheDir, sandbox, ...goproxy }),
    );
    toolchains.set(cacheDir, t);
  }
  return t;
}

export function resolvedSpec(s: BenchSpec, tc: Toolchain): ResolvedSpec {
  return {
    caddyVersion: s.caddyVersion,
    os: s.os,
    arch: s.arch,
    ...(s.arm ? { arm: s.arm } : {}),
    plugins: s.plugins.map((p) => ({ module: p.module, version: p.version })),
    toolchain: { go: tc.identity.go, xcaddy: tc.identity.xcaddy, flags: 'xcaddy-default' },
  };
}

/**
 * `xcaddy build` of a spec run directly (no sandbox): the same xcaddy binary, the same argument
 * list (`xcaddyArgs` from src/runner) and the same environment (`Toolchain.env`: GOMODCACHE,
 * GOCACHE, GOPATH under `cacheDir`, CGO_ENABLED=0, GOTOOLCHAIN=local, GOFLAGS=-mod=mod) as
 * Fairway's runner. Run as root, it runs as the build user (setpriv only, no namespaces), so the
 * Go caches it shares with Fairway keep one owner.
 */
export async function rawXcaddy(s: BenchSpec, cacheDir: string): Promise<{ ms: number; sha256: string; path: string; dir: string }> {
  const tc = await toolchainFor(cacheDir);
  const dir = await mkdtemp(join(tc.tmpDir, 'bench-xcaddy-'));
  await tc.sandbox.ownedDir(dir);
  const output = join(dir, binaryName(s.os, s.arch));
  const args = xcaddyArgs(resolvedSpec(s, tc), output);
  const env = tc.env({ GOOS: s.os, GOARCH: s.arch, ...(s.arm ? { GOARM: s.arm } : {}), TMPDIR: dir }, dir);
  const t0 = now();
  const tail: string[] = [];
  const code = await new Promise<number | null>((resolve, reject) => {
    const argv = asBuildUser(tc, [tc.xcaddyBin, ...args]);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (d: Buffer) => {
      tail.push(d.toString());
      if (tail.length > 40) tail.shift();
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', reject);
    child.on('close', resolve);
  });
  const ms = now() - t0;
  if (code !== 0) throw new Error(`xcaddy ${args.join(' ')} exited ${code}:\n${tail.join('').slice(-3000)}`);
  return { ms, sha256: await sha256File(output), path: output, dir };
}

/** argv run as the sandbox's build user when this process is root (setpriv, no namespaces); else as is. */
export function asBuildUser(tc: Toolchain, argv: string[]): string[] {
  const id = tc.sandbox.identity;
  return id ? ['setpriv', `--reuid=${id.uid}`, `--regid=${id.gid}`, '--clear-groups', '--', ...argv] : argv;
}

// ---------------------------------------------------------------- static file servers

export interface StaticServer {
  name: string;
  url: string;
  stop(): Promise<void>;
}

export function findNginx(): string | undefined {
  return [process.env.FAIRWAY_NGINX_BIN, '/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].find((p): p is string => !!p && existsSync(p));
}

async function waitHttp(url: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      return;
    } catch (err) {
      if (Date.now() > end) throw new Error(`${url} did not answer: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

function managed(name: string, bin: string, args: string[], cwd: string, url: string, probe: string): Promise<StaticServer> {
  const child = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  process.once('exit', () => child.kill('SIGKILL'));
  return waitHttp(probe).then(
    () => ({
      name,
      url,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
    }),
    (err: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start: ${err.message}\n${out}`);
    },
  );
}

/**
 * nginx (Debian's, `apt-get install nginx-light`) serving `root` on a loopback port, as a
 * foreground process with its own config and temp paths; sendfile on, access log off.
 */
export async function startNginx(root: string, port: number, workers = 1): Promise<StaticServer> {
  const bin = findNginx();
  if (!bin) throw new Error('nginx not found (apt-get install -y nginx-light)');
  const dir = await benchDir('fairway-nginx-');
  for (const d of ['client', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, d), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `daemon off;\nmaster_process on;\nworker_processes ${workers};\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
      `events { worker_connections 1024; }\n` +
      `http {\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n` +
      `  client_body_temp_path ${dir}/client; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;\n` +
      `  default_type application/octet-stream;\n  server { listen 127.0.0.1:${port}; root ${root}; }\n}\n`,
  );
  const url = `http://127.0.0.1:${port}`;
  return managed('nginx', bin, ['-e', `${dir}/error.log`, '-c', conf, '-p', dir], dir, url, `${url}/`);
}

/** The built caddy's own `file-server` as the baseline (when nginx is not installed). */
export async function startCaddyFileServer(caddyBin: string, root: string, port: number): Promise<StaticServer> {
  const url = `http://127.0.0.1:${port}`;
  const dir = await benchDir('fairway-caddyfs-');
  const s = await managed('caddy file-server', caddyBin, ['file-server', '--root', root, '--listen', `127.0.0.1:${port}`], dir, url, `${url}/`);
  return s;
}

// ---------------------------------------------------------------- downloads

/** One download with curl (C client: the client is not the bottleneck); bytes, TTFB and total. */
export async function curlDownload(url: string): Promise<{ status: number; bytes: number; ttfbMs: number; totalMs: number; rate: number }> {
  const { stdout } = await execFileP('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{time_starttransfer} %{time_total}', url], { maxBuffer: 1 << 20 });
  const [code, size, ttfb, total] = stdout.trim().split(' ').map(Number) as [number, number, number, number];
  if (code !== 200) throw new Error(`${url} answered ${code}`);
  return { status: code, bytes: size, ttfbMs: ttfb * 1000, totalMs: total * 1000, rate: size / total };
}

/**
 * `clients` curl processes at once, each downloading `url` `each` times over one keep-alive
 * connection. Aggregate throughput = all bytes / wall time. Native clients, so the client side
 * costs little CPU next to the server (a Node client saturates first on 2 cores).
 */
export async function curlConcurrent(url: string, clients: number, each: number): Promise<{ rate: number; bytes: number; wallMs: number; responses: number }> {
  const args = ['-s', '-w', '%{http_code} %{size_download}\\n'];
  for (let i = 0; i < each; i++) args.push('-o', '/dev/null', url);
  const t0 = now();
  const outs = await Promise.all(Array.from({ length: clients }, () => execFileP('curl', args, { maxBuffer: 1 << 20 })));
  const wallMs = now() - t0;
  let bytes = 0;
  let responses = 0;
  for (const { stdout } of outs) {
    for (const line of stdout.trim().split('\n')) {
      const [code, size] = line.split(' ').map(Number) as [number, number];
      if (code !== 200) throw new Error(`${url} answered ${code}`);
      bytes += size;
      responses++;
    }
  }
  return { rate: bytes / (wallMs / 1000), bytes, wallMs, responses };
}

/** Ends the process with `code` after cleaning up; for `main().then(...)` at the end of a bench. */
export function finish(p: Promise<unknown>): void {
  p.then(
    async () => {
      await cleanup();
      process.exit(0);
    },
    async (err: unknown) => {
      process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
      await cleanup();
      process.exit(1);
    },
  );
}
