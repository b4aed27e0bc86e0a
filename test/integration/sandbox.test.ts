/**
 * The attack test of the build sandbox: "Code from a build (anything inside the built binary, and
 * anything the build runs) never runs with Fairway's privileges: not its user, not its
 * environment, not its files (auth file, data dir, store credentials, other builds' work dirs,
 * the Go caches outside what the build needs), no network but what the Go command needs for
 * module downloads (and none for running the binary). Hubs never run built binaries."
 *
 * A hostile Caddy plugin is generated at run time (test/fixtures/hostile/hostile.go.tmpl, a unique
 * module path per case so no cache mixes runs) and served by a real module proxy in this process
 * (test/helpers/goproxy.ts); Caddy itself comes from proxy.golang.org. Its init() runs whenever
 * the built binary starts (xcaddy imports it with `_`): for the smoke test (`caddy version`) and
 * for module-ID learning (`list-modules`, enabled for every build here with --catalog-learn all).
 * It knows the canary secrets, paths and ports this test bakes into it, tries each attack and
 * reports every attempt on stderr, which reaches the build log:
 *
 *   FAIRWAY-HOSTILE {"run":"<run>","attempt":"<kind>:<target>","ok":<bool>,"detail":"..."}
 *   FAIRWAY-HOSTILE-DONE {"run":"<run>","uid":N,"gid":N,"euid":N,"egid":N,"pid":N,"ppid":N,"hostname":"...","args":[...],"cwd":"...","exe":"...","mark":"..."}
 *
 * ok=true means the attack worked. Attempts (the "attempt" field), in order:
 *   proc-environ, proc-cmdline     a canary in another process's /proc/<pid>/environ or cmdline
 *   proc-server-visible            a Fairway process visible in /proc (its command line readable)
 *   signal-server                  kill(<Fairway pid>, 0) allowed
 *   read-file:<target>             a host file with a canary in it read (auth file, data dir,
 *                                  Go cache dir, another build's work dir, test dir, /tmp)
 *   list-dir:<target>              a host directory listed (data dir, artifact store, Go module
 *                                  and build caches, the build tmp dir)
 *   write-file:<target>            a new file created in a host directory (the host's copy: a
 *                                  witness file next to it is visible) — data dir, test dir,
 *                                  Go cache dir, Go module cache, /tmp
 *   open-for-write:go-mod-cache-file   Caddy's source in the shared module cache opened for writing
 *   connect:<target>               a TCP connection (1 s timeout): this test's listener, the
 *                                  Fairway API, the module proxy, Redis and S3 (distributed), and
 *                                  proxy.golang.org:443 (the internet)
 *   run-as-server-user             running as uid/euid 0 or the server's uid
 *
 * For each case the test asserts: (i) the build succeeded and the hostile code ran (a DONE line of
 * this run in the build log), (ii) every attempt of this run has ok:false (and all were made),
 * (iii) the binary ran neither as root nor as the server's user, as it reports and as this test
 * sees its processes from outside (/proc/<pid>/status of every process whose executable carries
 * the run's mark), (iv) independent of the report: this test's listener saw no connection and none
 * of the files the plugin tried to create exists, and (v) distributed: the hub never ran the
 * binary (no process of it descends from the hub, the hub's output has no hostile line) while the
 * agent did.
 *
 * Run: node scripts/setup.mjs && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test --test-reporter=spec test/integration/sandbox.test.ts
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { api, CADDY_VERSION, GO_CACHE, ROOT, startFairway, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy, type SyntheticModule } from '../helpers/goproxy.js';
import { startRedis, startS3, type RedisService, type S3Service } from '../helpers/services.js';

const execFileP = promisify(execFile);
const BUILD_TIMEOUT = 25 * 60_000;
const SYNTHETIC_PREFIX = 'fairway.test';
const HOSTILE_TEMPLATE = join(ROOT, 'test', 'fixtures', 'hostile', 'hostile.go.tmpl');
const LINGER_MS = 1500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hex = (n: number) => randomBytes(n).toString('hex');
const TEST_UID = process.getuid?.() ?? -1;

// ---------------------------------------------------------------- the hostile module

interface Target {
  label: string;
  path: string;
  expect?: string;
  witness?: string;
}

interface HostileConfig {
  run: string;
  canaries: string[];
  serverPids: number[];
  serverUids: number[];
  readFiles: Target[];
  listDirs: Target[];
  writeFiles: Target[];
  openForWrite: Target[];
  connect: Array<{ label: string; addr: string }>;
  dialTimeoutMs: number;
  lingerMs: number;
}

const markOf = (run: string) => `FAIRWAY-HOSTILE-MARK-${run}`;
const modulePathOf = (run: string) => `${SYNTHETIC_PREFIX}/hostile/r${run}`;

/** The hostile plugin as a synthetic module: package `hostile` at the module root, stdlib only. */
async function hostileModule(cfg: HostileConfig): Promise<SyntheticModule> {
  const path = modulePathOf(cfg.run);
  const tmpl = await readFile(HOSTILE_TEMPLATE, 'utf8');
  // A JSON string literal is a valid Go interpreted string literal (ASCII content).
  for (const ph of ['__MARK__', '__CONFIG__']) assert.equal(tmpl.split(ph).length, 2, `${HOSTILE_TEMPLATE}: placeholder ${ph} must occur exactly once`);
  const source = tmpl.replace('__MARK__', markOf(cfg.run)).replace('__CONFIG__', JSON.stringify(JSON.stringify(cfg)));
  return { path, version: 'v1.0.0', files: { 'go.mod': `module ${path}\n\ngo 1.21\n`, 'hostile.go': source } };
}

/** Every attempt name the plugin reports for a config, in its order. */
function expectedAttempts(cfg: HostileConfig): string[] {
  return [
    'proc-environ',
    'proc-cmdline',
    'proc-server-visible',
    'signal-server',
    ...cfg.readFiles.map((t) => `read-file:${t.label}`),
    ...cfg.listDirs.map((t) => `list-dir:${t.label}`),
    ...cfg.writeFiles.map((t) => `write-file:${t.label}`),
    ...cfg.openForWrite.map((t) => `open-for-write:${t.label}`),
    ...cfg.connect.map((c) => `connect:${c.label}`),
    'run-as-server-user',
  ];
}

// ---------------------------------------------------------------- build log parsing

interface Attempt {
  run: string;
  attempt: string;
  ok: boolean;
  detail: string;
}
interface Done {
  run: string;
  uid: number;
  gid: number;
  euid: number;
  egid: number;
  pid: number;
  ppid: number;
  hostname: string;
  args: string[];
  cwd: string;
  exe: string;
  mark: string;
}

/** The text of each line of the plain-text log (`<ts> <stream> <text>`). */
function logTexts(log: string): string[] {
  return log
    .split('\n')
    .filter(Boolean)
    .map((l) => /^\S+ \S+ (.*)$/.exec(l)?.[1] ?? l);
}

function hostileLines(log: string, run: string): { attempts: Attempt[]; done: Done[]; broken: string[]; raw: string[] } {
  const attempts: Attempt[] = [];
  const done: Done[] = [];
  const broken: string[] = [];
  const raw: string[] = [];
  for (const text of logTexts(log)) {
    const attempt = /^FAIRWAY-HOSTILE (\{.*\})$/.exec(text);
    const end = attempt ? null : /^FAIRWAY-HOSTILE-DONE (\{.*\})$/.exec(text);
    if (attempt) {
      const a = JSON.parse(attempt[1]!) as Attempt;
      if (a.run === run) {
        attempts.push(a);
        raw.push(text);
      }
    } else if (end) {
      const d = JSON.parse(end[1]!) as Done;
      if (d.run === run) {
        done.push(d);
        raw.push(text);
      }
    } else if (text.startsWith('FAIRWAY-HOSTILE-BROKEN')) broken.push(text);
  }
  return { attempts, done, broken, raw };
}

// ---------------------------------------------------------------- a loopback listener nobody may reach

interface Listener {
  port: number;
  addr: string;
  connections: Array<{ from: string; data: string }>;
  close(): Promise<void>;
}

async function startListener(): Promise<Listener> {
  const connections: Listener['connections'] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    const c = { from: `${s.remoteAddress}:${s.remotePort}`, data: '' };
    connections.push(c);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      if (c.data.length < 4096) c.data += d;
    });
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  return {
    port,
    addr: `127.0.0.1:${port}`,
    connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

// ---------------------------------------------------------------- watching the host's processes

interface ProcHit {
  mark: string;
  pid: number;
  /** Real, effective, saved, filesystem uid as the host sees them. */
  uids: number[];
  gids: number[];
  nspid: string;
  capEff: string;
  cmdline: string[];
  ancestors: Array<{ pid: number; comm: string }>;
}

async function ppidAndComm(pid: number): Promise<{ ppid: number; comm: string } | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!text) return null;
  const close = text.lastIndexOf(')');
  return { comm: text.slice(text.indexOf('(') + 1, close), ppid: Number(text.slice(close + 2).split(' ')[1]) };
}

/**
 * Finds, from outside, every process whose executable contains a watched mark (the hostile
 * binary: whatever sandbox or user it runs under, the host's /proc shows its real identity and
 * its parents). Polls /proc every 100 ms; the plugin lingers 1.5 s, so no run is missed.
 */
class ProcWatch {
  readonly hits: ProcHit[] = [];
  private readonly marks = new Set<string>();
  /** dev:ino:size:mtime of an executable → the mark it contains, or null. */
  private readonly exeMark = new Map<string, string | null>();
  private readonly seen = new Set<string>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  errors = 0;

  watch(mark: string): void {
    this.marks.add(mark);
  }

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          await this.scan();
        } catch {
          this.errors++;
        }
        await sleep(100);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  hitsFor(mark: string): ProcHit[] {
    return this.hits.filter((h) => h.mark === mark);
  }

  private async scan(): Promise<void> {
    if (this.marks.size === 0) return;
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
      const st = await stat(`/proc/${name}/exe`).catch(() => null);
      if (!st) continue;
      const key = `${name}:${st.dev}:${st.ino}`;
      if (this.seen.has(key)) continue;
      const ik = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
      let mark = this.exeMark.get(ik);
      if (mark === undefined) {
        if (st.size < 1 << 20) mark = null;
        else {
          const buf = await readFile(`/proc/${name}/exe`).catch(() => null);
          if (!buf) continue; // gone meanwhile: look again next time
          mark = [...this.marks].find((m) => buf.includes(m)) ?? null;
        }
        this.exeMark.set(ik, mark);
      }
      this.seen.add(key);
      if (mark) await this.record(Number(name), mark);
    }
  }

  private async record(pid: number, mark: string): Promise<void> {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const field = (n: string) => new RegExp(`^${n}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter(Boolean);
    const ancestors: ProcHit['ancestors'] = [];
    let p = pid;
    for (let i = 0; i < 64 && p > 1 && p !== process.pid; i++) {
      const s = await ppidAndComm(p);
      if (!s) break;
      ancestors.push({ pid: p, comm: s.comm });
      p = s.ppid;
    }
    this.hits.push({
      mark,
      pid,
      uids: field('Uid').split(/\s+/).filter(Boolean).map(Number),
      gids: field('Gid').split(/\s+/).filter(Boolean).map(Number),
      nspid: field('NSpid'),
      capEff: field('CapEff'),
      cmdline,
      ancestors,
    });
  }
}

// ---------------------------------------------------------------- files and cleanup

/** Removes a tree even when the Go module cache made it read-only. */
async function rmForce(path: string): Promise<void> {
  const walk = async (p: string) => {
    const st = await lstat(p).catch(() => null);
    if (!st?.isDirectory()) return;
    await chmod(p, 0o755).catch(() => undefined);
    for (const e of await readdir(p).catch(() => [] as string[])) await walk(join(p, e));
  };
  await walk(path);
  await rm(path, { recursive: true, force: true });
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

interface Case {
  name: string;
  run: string;
  /** The canary in every Fairway process's environment and in the files to protect. */
  canary: string;
  /** Every secret the plugin looks for. */
  secrets: string[];
  root: string;
  testDir: string;
  token: string;
  authFile: string;
  /** Paths this test created outside `root`, removed in after(). */
  outside: string[];
  /** Paths the plugin tries to create: none may exist afterwards. */
  writeTargets: string[];
}

async function newCase(name: string): Promise<Case> {
  const run = hex(6);
  const canary = `fwcanary${hex(12)}`;
  const root = await mkdtemp(join(tmpdir(), `fairway-sandbox-${run}-`));
  const testDir = join(root, 'test-owned');
  await mkdir(testDir);
  const token = `fw_${randomBytes(32).toString('base64url')}`;
  const authFile = join(root, 'auth.json');
  // The token's name carries the canary: reading the auth file shows it.
  await writeFile(authFile, JSON.stringify([{ name: `tester-${canary}`, hash: `sha256:${createHash('sha256').update(token).digest('hex')}`, scopes: ['build'] }]));
  return { name, run, canary, secrets: [canary], root, testDir, token, authFile, outside: [], writeTargets: [] };
}

/** Env of every Fairway process: the canary itself and in a FAIRWAY_TOKENS entry's name. */
function canaryEnv(c: Case): NodeJS.ProcessEnv {
  return {
    FAIRWAY_TEST_CANARY: c.canary,
    FAIRWAY_TOKENS: `env-${c.canary}:read:${createHash('sha256').update(hex(16)).digest('hex')}`,
  };
}

const canaryName = (c: Case) => `fairway-canary-${c.run}.txt`;
const hostileName = (c: Case) => `fairway-hostile-${c.run}.txt`;

/**
 * The targets shared by both cases: canary files in the data dirs, the test dir, the Go cache dir,
 * a decoy "other build" work dir and /tmp; the Go caches; Caddy's source in the module cache.
 */
async function commonTargets(c: Case, dataDirs: Array<{ label: string; dir: string }>): Promise<Pick<HostileConfig, 'readFiles' | 'listDirs' | 'writeFiles' | 'openForWrite'>> {
  const put = async (path: string) => {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, `secret of the Fairway host: ${c.canary}\n`);
    return path;
  };
  const decoyDir = join(GO_CACHE, 'tmp', `build-fairwaytest-${c.run}`);
  const goCanary = join(GO_CACHE, canaryName(c));
  const tmpCanary = join('/tmp', canaryName(c));
  c.outside.push(decoyDir, goCanary, tmpCanary);
  const readFiles: Target[] = [{ label: 'auth-file', path: c.authFile }];
  const listDirs: Target[] = [];
  const writeFiles: Target[] = [];
  for (const { label, dir } of dataDirs) {
    const canaryFile = await put(join(dir, canaryName(c)));
    readFiles.push({ label, path: canaryFile });
    listDirs.push({ label, path: dir, expect: canaryName(c) });
    writeFiles.push({ label, path: join(dir, hostileName(c)), witness: canaryFile });
  }
  const testCanary = await put(join(c.testDir, canaryName(c)));
  await put(goCanary);
  await put(join(decoyDir, 'work', 'fairway-canary.txt'));
  await put(tmpCanary);
  readFiles.push(
    { label: 'test-dir', path: testCanary },
    { label: 'go-cache-dir', path: goCanary },
    { label: 'other-build-workdir', path: join(decoyDir, 'work', 'fairway-canary.txt') },
    { label: 'tmp', path: tmpCanary },
  );
  listDirs.push(
    { label: 'test-dir', path: c.testDir, expect: canaryName(c) },
    { label: 'go-mod-cache', path: join(GO_CACHE, 'mod'), expect: 'cache' },
    { label: 'go-build-cache', path: join(GO_CACHE, 'build') },
    { label: 'go-build-tmp', path: join(GO_CACHE, 'tmp'), expect: `build-fairwaytest-${c.run}` },
  );
  writeFiles.push(
    { label: 'test-dir', path: join(c.testDir, hostileName(c)), witness: testCanary },
    { label: 'go-cache-dir', path: join(GO_CACHE, hostileName(c)), witness: goCanary },
    { label: 'go-mod-cache', path: join(GO_CACHE, 'mod', hostileName(c)), witness: join(GO_CACHE, 'mod', 'cache') },
    { label: 'tmp', path: join('/tmp', hostileName(c)), witness: tmpCanary },
  );
  for (const w of writeFiles) c.writeTargets.push(w.path);
  c.outside.push(...writeFiles.map((w) => w.path).filter((p) => !p.startsWith(c.root)));
  const openForWrite: Target[] = [{ label: 'go-mod-cache-file', path: join(GO_CACHE, 'mod', 'github.com', 'caddyserver', 'caddy', `v2@${CADDY_VERSION}`, 'caddy.go') }];
  return { readFiles, listDirs, writeFiles, openForWrite };
}

// ---------------------------------------------------------------- one attack: build, observe

interface Outcome {
  c: Case;
  cfg: HostileConfig;
  /** This case's own loopback listener, which no one may reach. */
  listener: Listener;
  build: any;
  log: string;
  /** Output of the server(s), for failure messages. */
  outputs: Record<string, string>;
}

const tail = (s: string, n = 60) => s.split('\n').slice(-n).join('\n');

function describeOutcome(o: Outcome): string {
  const h = hostileLines(o.log, o.c.run);
  return `build ${o.build?.id} ${o.build?.status}${o.build?.error ? `: ${o.build.error}` : ''}\n--- hostile lines of the build log (run ${o.c.run}) ---\n${h.raw.join('\n') || '(none)'}${h.broken.length ? `\n${h.broken.join('\n')}` : ''}`;
}

// ---------------------------------------------------------------- the test

describe("sandbox: code from a build never runs with Fairway's privileges (attack test)", { timeout: 30 * 60_000 }, () => {
  let proxy: GoProxy;
  const listeners: Listener[] = [];
  const watch = new ProcWatch();
  const procs: FairwayProcess[] = [];
  const services: Array<RedisService | S3Service> = [];
  const cases: Case[] = [];
  const goproxyArgs = () => ['--goproxy', `${proxy.url},https://proxy.golang.org`, '--gonosumdb', SYNTHETIC_PREFIX];

  before(async () => {
    proxy = await startGoProxy();
    watch.start();
  });

  after(async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await Promise.all(services.map((s) => s.destroy()));
    await watch.stop();
    await Promise.all(listeners.map((l) => l.close()));
    await proxy?.close();
    for (const c of cases) {
      for (const p of c.outside) await rmForce(p);
      await rmForce(c.root);
      // The synthetic module in the shared module cache (read-only dirs there).
      await rmForce(join(GO_CACHE, 'mod', `${modulePathOf(c.run)}@v1.0.0`));
      await rmForce(join(GO_CACHE, 'mod', 'cache', 'download', modulePathOf(c.run)));
    }
  });

  /** Bakes the config into the plugin, serves it, builds Caddy with it, waits for the end and any learning. */
  async function attack(c: Case, o: { api: FairwayProcess; learner: FairwayProcess; listener: Listener; cfg: HostileConfig; outputs: () => Record<string, string> }): Promise<Outcome> {
    watch.watch(markOf(c.run));
    proxy.add(await hostileModule(o.cfg));
    const auth = { authorization: `Bearer ${c.token}` };
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [{ module: modulePathOf(c.run), version: 'v1.0.0' }] };
    const res = await api(o.api.url, '/api/builds', { json: spec, headers: auth });
    assert.ok(res.status === 202 || res.status === 200, `POST /api/builds: ${res.status} ${JSON.stringify(res.body)}\n${tail(o.api.output())}`);
    const build = await waitForBuild(o.api.url, res.body.id, BUILD_TIMEOUT);
    const log = await (await fetch(`${o.api.url}/api/builds/${res.body.id}/log`, { headers: auth })).text();
    // Module-ID learning (if the server does it) runs the binary after the build: wait for it,
    // and for any run of the binary to be over.
    const end = Date.now() + 20_000;
    while (Date.now() < end && !/learned module IDs from build|could not learn module IDs/.test(o.learner.output())) await sleep(250);
    await sleep(LINGER_MS + 1000);
    return { c, cfg: o.cfg, listener: o.listener, build, log, outputs: o.outputs() };
  }

  /** The assertions (i)-(iv), one subtest each; (v) is added by the distributed case. */
  async function check(t: TestContext, o: Outcome): Promise<void> {
    const { c, cfg } = o;
    const h = hostileLines(o.log, c.run);
    const hits = watch.hitsFor(markOf(c.run));
    const hitText = () =>
      hits.length
        ? hits
            .map(
              (x) =>
                `pid ${x.pid} uids ${x.uids.join('/')} gids ${x.gids.join('/')} NSpid ${x.nspid} CapEff ${x.capEff} argv ${JSON.stringify(x.cmdline)} parents ${x.ancestors.map((a) => `${a.pid}(${a.comm})`).join(' < ')}`,
            )
            .join('\n')
        : '(none seen)';

    // The evidence, also when everything passes: what each attempt met, and who ran the binary.
    for (const name of new Set(h.attempts.map((a) => a.attempt))) {
      const runs = h.attempts.filter((a) => a.attempt === name);
      const won = runs.filter((a) => a.ok).length;
      t.diagnostic(`${won ? `SUCCEEDED in ${won} of ${runs.length} runs` : `blocked in all ${runs.length} runs`} ${name}: ${(runs.find((a) => a.ok) ?? runs[0]!).detail.slice(0, 160)}`);
    }
    for (const d of h.done) t.diagnostic(`ran: pid ${d.pid} uid ${d.uid} gid ${d.gid} hostname ${d.hostname} args ${JSON.stringify(d.args)}`);
    for (const x of hits)
      t.diagnostic(`seen from the host: pid ${x.pid} uids ${x.uids.join('/')} gids ${x.gids.join('/')} CapEff ${x.capEff} parents ${x.ancestors.map((a) => `${a.pid}(${a.comm})`).join(' < ')}`);

    await t.test('(i) the build succeeded and the hostile code ran (a FAIRWAY-HOSTILE-DONE line in the build log)', () => {
      assert.equal(
        o.build.status,
        'succeeded',
        `the build did not succeed, so nothing was proven:\n${describeOutcome(o)}\n--- build log (tail) ---\n${tail(o.log, 80)}${Object.entries(o.outputs)
          .map(([k, v]) => `\n--- ${k} output (tail) ---\n${tail(v, 30)}`)
          .join('')}`,
      );
      assert.deepEqual(h.broken, [], `the plugin could not read its config:\n${h.broken.join('\n')}`);
      assert.ok(
        h.done.length >= 1,
        `no FAIRWAY-HOSTILE-DONE line of run ${c.run} in the build log: the binary was never run where its output reaches the log\n--- build log (tail) ---\n${tail(o.log, 80)}`,
      );
    });

    await t.test('(ii) every attack attempt failed (ok:false), and every one was made', () => {
      const succeeded = h.attempts.filter((a) => a.ok);
      assert.ok(h.attempts.length > 0, 'no FAIRWAY-HOSTILE attempt line in the build log (see (i))');
      const made = new Set(h.attempts.map((a) => a.attempt));
      const missing = expectedAttempts(cfg).filter((a) => !made.has(a));
      assert.deepEqual(
        succeeded.map((a) => `${a.attempt}: ${a.detail}`),
        [],
        `${succeeded.length} of ${h.attempts.length} attempts succeeded (${[...new Set(succeeded.map((a) => a.attempt))].join(', ')}) in the runs:\n${h.raw.filter((l) => l.startsWith('FAIRWAY-HOSTILE-DONE')).join('\n')}`,
      );
      assert.deepEqual(missing, [], `attempts not reported: ${missing.join(', ')}\n${describeOutcome(o)}`);
    });

    await t.test("(iii) the binary ran neither as root nor as the server's user (its own report, and its processes seen from the host)", () => {
      const bad = [0, TEST_UID];
      const violations = [
        ...h.done.filter((d) => bad.includes(d.uid) || bad.includes(d.euid)).map((d) => `reported: pid ${d.pid} uid ${d.uid} euid ${d.euid} gid ${d.gid} args ${JSON.stringify(d.args)}`),
        ...(hits.length ? [] : [`no process of the hostile binary was seen from the host (the process watch found none; scan errors: ${watch.errors})`]),
        ...hits
          .filter((x) => x.uids.length === 0 || x.uids.some((u) => bad.includes(u)))
          .map((x) => `seen from the host: pid ${x.pid} uids ${x.uids.join('/') || '?'} argv ${JSON.stringify(x.cmdline)}`),
      ];
      assert.deepEqual(
        violations,
        [],
        `uid 0 and the server's uid ${TEST_UID} are forbidden.\n--- FAIRWAY-HOSTILE-DONE lines ---\n${h.raw.filter((l) => l.startsWith('FAIRWAY-HOSTILE-DONE')).join('\n') || '(none)'}\n--- hostile processes seen from the host ---\n${hitText()}`,
      );
    });

    await t.test("(iv) host-side: nothing reached this test's listener, no file the plugin tried to create exists", async () => {
      const violations = o.listener.connections.map(
        (x) => `the loopback listener ${o.listener.addr}, which only the plugin knows of, got a connection from ${x.from}: ${JSON.stringify(x.data.trim())}`,
      );
      for (const p of c.writeTargets) if (await exists(p)) violations.push(`created outside its work dir: ${p}: ${(await readFile(p, 'utf8').catch(() => '')).trim()}`);
      assert.deepEqual(violations, []);
    });
  }

  test('helpers: the module proxy serves a zip, list and @latest the go command accepts (case escaping too); the hostile plugin compiles and reports', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fairway-goproxy-check-'));
    const own = await startGoProxy();
    try {
      const upper = `${SYNTHETIC_PREFIX}/Check/R${hex(4)}`;
      own.add({ path: upper, version: 'v1.2.3', files: { 'go.mod': `module ${upper}\n\ngo 1.21\n`, 'x.go': 'package r\n\nconst X = 1\n', 'sub/dir/y.go': 'package dir\n' } });
      own.add({ path: upper, version: 'v1.10.0', files: { 'go.mod': `module ${upper}\n\ngo 1.21\n`, 'x.go': 'package r\n' } });
      const run = hex(6);
      const cfg: HostileConfig = {
        run,
        canaries: ['no-such-canary'],
        serverPids: [],
        serverUids: [],
        readFiles: [],
        listDirs: [],
        writeFiles: [],
        openForWrite: [],
        connect: [],
        dialTimeoutMs: 1000,
        lingerMs: 0,
      };
      own.add(await hostileModule(cfg));
      const main = join(dir, 'main');
      await mkdir(main);
      await writeFile(join(main, 'go.mod'), 'module example.com/check\n\ngo 1.21\n');
      await writeFile(join(main, 'main.go'), `package main\n\nimport _ "${modulePathOf(run)}"\n\nfunc main() { println("main ran") }\n`);
      const env = {
        PATH: process.env.PATH,
        HOME: dir,
        GOMODCACHE: join(dir, 'mod'),
        GOPATH: join(dir, 'gopath'),
        // Compiled packages only (content-addressed): a cache of this test's own, kept between runs.
        GOCACHE: join(dirname(GO_CACHE), 'go-sandbox-test-build'),
        GOFLAGS: '-mod=mod',
        GOPROXY: own.url,
        GONOSUMDB: SYNTHETIC_PREFIX,
        GOTOOLCHAIN: 'local',
        GOENV: 'off',
        GOTELEMETRY: 'off',
        CGO_ENABLED: '0',
      };
      const go = (args: string[]) => execFileP('go', args, { cwd: main, env, timeout: 5 * 60_000 }).catch((e) => assert.fail(`go ${args.join(' ')}: ${e.stderr || e.message}`));
      const dl = JSON.parse((await go(['mod', 'download', '-json', `${upper}@v1.2.3`])).stdout);
      assert.equal(dl.Error, undefined);
      assert.match(dl.Sum, /^h1:/);
      assert.deepEqual((await readdir(dl.Dir, { recursive: true })).sort(), ['go.mod', 'sub', 'sub/dir', 'sub/dir/y.go', 'x.go']);
      assert.equal(JSON.parse((await go(['list', '-m', '-json', `${upper}@latest`])).stdout).Version, 'v1.10.0');
      assert.equal((await go(['list', '-m', '-versions', upper])).stdout.trim(), `${upper} v1.2.3 v1.10.0`);
      assert.ok(own.requests.map((r) => decodeURIComponent(r)).includes(`/${SYNTHETIC_PREFIX}/!check/!r${upper.slice(-8)}/@v/v1.2.3.zip`), own.requests.join('\n'));
      // The plugin: fetched through the proxy, built into a program, run: every attempt line and the DONE line.
      await go(['get', `${modulePathOf(run)}@v1.0.0`]);
      await go(['build', '-o', join(dir, 'prog'), '.']);
      const r = await execFileP(join(dir, 'prog'), [], { cwd: dir, env: { PATH: '/usr/bin:/bin' } });
      const h = hostileLines(
        r.stderr
          .split('\n')
          .map((l) => `ts stderr ${l}`)
          .join('\n'),
        run,
      );
      assert.deepEqual(h.broken, []);
      assert.deepEqual(
        h.attempts.map((a) => a.attempt),
        expectedAttempts(cfg),
        r.stderr,
      );
      assert.equal(h.done.length, 1, r.stderr);
      assert.equal(h.done[0]!.mark, markOf(run));
      assert.equal(h.done[0]!.uid, TEST_UID);
      assert.ok((await readFile(join(dir, 'prog'))).includes(markOf(run)), 'the mark the process watch looks for is in the binary');
      assert.match(r.stderr, /main ran/, 'init returned and main went on');
    } finally {
      await own.close();
      await rmForce(dir);
    }
  });

  test("fairway serve: the hostile plugin's code gets none of the server's privileges", async (t) => {
    const c = await newCase('serve');
    cases.push(c);
    const dataDir = join(c.root, 'data');
    const serve = await startFairway({
      dataDir,
      args: ['--auth-file', c.authFile, '--anonymous-scopes', 'read', ...goproxyArgs(), '--catalog-learn', 'all'],
      env: canaryEnv(c),
    });
    procs.push(serve);
    const listener = await startListener();
    listeners.push(listener);
    const common = await commonTargets(c, [{ label: 'data-dir', dir: dataDir }]);
    const cfg: HostileConfig = {
      run: c.run,
      canaries: c.secrets,
      serverPids: [serve.proc.pid!],
      serverUids: [TEST_UID],
      ...common,
      listDirs: [...common.listDirs, { label: 'artifact-store', path: join(dataDir, 'artifacts') }],
      connect: [
        { label: 'test-listener', addr: listener.addr },
        { label: 'fairway-api', addr: `127.0.0.1:${serve.port}` },
        { label: 'goproxy', addr: `127.0.0.1:${proxy.port}` },
        { label: 'internet', addr: 'proxy.golang.org:443' },
      ],
      dialTimeoutMs: 1000,
      lingerMs: LINGER_MS,
    };
    const o = await attack(c, { api: serve, learner: serve, listener, cfg, outputs: () => ({ serve: serve.output() }) });
    await check(t, o);
  });

  test("fairway hub + agent (Redis with a password, S3 store): the agent's builds get none of their privileges, the hub never runs the binary", async (t) => {
    const c = await newCase('distributed');
    cases.push(c);
    const redisPassword = `fwredis${hex(12)}`;
    const s3Secret = `fws3secret${hex(12)}`;
    c.secrets.push(redisPassword, s3Secret);
    // PING stays open for the helper's readiness probe; everything else needs the password.
    const redis = await startRedis({ extraArgs: ['--user', 'default', 'on', 'nopass', '-@all', '+ping', '--user', 'fairway', 'on', `>${redisPassword}`, '~*', '&*', '+@all'] });
    services.push(redis);
    const s3 = await startS3({ secretAccessKey: s3Secret });
    services.push(s3);
    const redisUrl = `redis://fairway:${redisPassword}@127.0.0.1:${redis.port}`;
    const storeUrl = `s3://${s3.bucket}/fw?endpoint=${encodeURIComponent(s3.endpoint)}&region=${s3.region}&forcePathStyle=true`;
    const env = { ...canaryEnv(c), AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3Secret, AWS_REGION: s3.region };
    const hubData = join(c.root, 'hub-data');
    const agentData = join(c.root, 'agent-data');
    const hub = await startFairway({
      command: 'hub',
      dataDir: hubData,
      args: ['--redis', redisUrl, '--store', storeUrl, '--auth-file', c.authFile, '--anonymous-scopes', 'read', ...goproxyArgs(), '--catalog-learn', 'all'],
      env,
    });
    procs.push(hub);
    const agent = await startFairway({
      command: 'agent',
      dataDir: agentData,
      args: ['--redis', redisUrl, '--store', storeUrl, ...goproxyArgs(), '--agent-id', `agent-${c.run}`, '--concurrency', '1'],
      env,
    });
    procs.push(agent);
    const listener = await startListener();
    listeners.push(listener);
    const common = await commonTargets(c, [
      { label: 'hub-data-dir', dir: hubData },
      { label: 'agent-data-dir', dir: agentData },
    ]);
    const cfg: HostileConfig = {
      run: c.run,
      canaries: c.secrets,
      serverPids: [hub.proc.pid!, agent.proc.pid!],
      serverUids: [TEST_UID],
      ...common,
      listDirs: [...common.listDirs, { label: 'artifact-store', path: s3.dataDir, expect: s3.bucket }],
      connect: [
        { label: 'test-listener', addr: listener.addr },
        { label: 'fairway-api', addr: `127.0.0.1:${hub.port}` },
        { label: 'goproxy', addr: `127.0.0.1:${proxy.port}` },
        { label: 'redis', addr: `127.0.0.1:${redis.port}` },
        { label: 's3', addr: `127.0.0.1:${s3.port}` },
        { label: 'internet', addr: 'proxy.golang.org:443' },
      ],
      dialTimeoutMs: 1000,
      lingerMs: LINGER_MS,
    };
    const o = await attack(c, { api: hub, learner: hub, listener, cfg, outputs: () => ({ hub: hub.output(), agent: agent.output() }) });
    await check(t, o);

    await t.test('(v) the hub never ran the binary; the agent did', () => {
      const hits = watch.hitsFor(markOf(c.run));
      const chain = (x: ProcHit) => x.ancestors.map((a) => `${a.pid}(${a.comm})`).join(' < ');
      const violations = [
        ...hits
          .filter((x) => x.ancestors.some((a) => a.pid === hub.proc.pid))
          .map((x) => `the hub (pid ${hub.proc.pid}) ran the binary: pid ${x.pid} argv ${JSON.stringify(x.cmdline)} parents ${chain(x)}`),
        ...hub
          .output()
          .split('\n')
          .filter((l) => l.includes('FAIRWAY-HOSTILE'))
          .map((l) => `hostile output in the hub's own output: ${l.slice(0, 500)}`),
        ...(hits.some((x) => x.ancestors.some((a) => a.pid === agent.proc.pid))
          ? []
          : [`no run of the binary under the agent (pid ${agent.proc.pid}) was seen; seen: ${hits.map(chain).join('; ') || 'none'}`]),
      ];
      assert.deepEqual(violations, []);
    });
  });
});
