/**
 * The client commands: `fairway build` (flags like `xcaddy build`), `fairway status ID` and
 * `fairway logs ID [--follow]`. They talk to a running server over its HTTP API only.
 * Exit codes: 0 ok, 1 build failed (or a bad download), 2 usage or request refused (4xx),
 * 3 server unreachable.
 */
import { endianness } from 'node:os';
import { join } from 'node:path';
import { type Command, type CommanderError, Option } from 'commander';
import { classifyVersionQuery, modulePathError, parsePluginArg } from '../request/index.js';
import { stripControl } from '../util/text.js';
import { formatBytes } from '../util/units.js';
import { ClientError, EXIT, FairwayClient, isActive, isDirectory, type BuildInput, type BuildRecord, type LogMessage, type PluginSpec } from './client.js';
import { Progress } from './progress.js';
import { PROVENANCE_NOT_CHECKED, ProvenanceCheckError, checkBinaryProvenance, clientPublicKey, type ClientKey } from './provenance-check.js';

export const DEFAULT_SERVER = 'http://127.0.0.1:8080';

const GOOS: Record<string, string> = { win32: 'windows', darwin: 'darwin', linux: 'linux', freebsd: 'freebsd', openbsd: 'openbsd', netbsd: 'netbsd', aix: 'aix', sunos: 'solaris', android: 'android' };
const GOARCH: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64', mips: 'mips', mipsel: 'mipsle', ppc: 'ppc' };

/** This machine as GOOS/GOARCH/GOARM. */
export function hostPlatform(): { os: string; arch: string; arm?: string } {
  const os = GOOS[process.platform] ?? process.platform;
  const arch = process.arch === 'ppc64' ? (endianness() === 'LE' ? 'ppc64le' : 'ppc64') : (GOARCH[process.arch] ?? process.arch);
  const armVersion = (process.config.variables as { arm_version?: string }).arm_version;
  return { os, arch, ...(arch === 'arm' && armVersion && /^[567]$/.test(armVersion) ? { arm: armVersion } : {}) };
}

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

const serverOption = () => new Option('-s, --server <url>', 'Fairway server URL').env('FAIRWAY_SERVER').default(DEFAULT_SERVER);

/** Commander usage errors exit 2 (not commander's default 1); --help and --version exit 0. */
function usageExit(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? 0 : EXIT.usage);
}

async function finish(code: number): Promise<never> {
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  process.exit(code);
}

/** Runs an action; a ClientError ends with its own exit code and message. */
function run<A extends unknown[]>(fn: (...args: A) => Promise<number>) {
  return async (...args: A) => {
    let code: number;
    try {
      code = await fn(...args);
    } catch (err) {
      if (err instanceof ClientError) {
        process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[2K' : ''}fairway: ${err.message}\n`);
        code = err.exitCode;
      } else {
        process.stderr.write(`fairway: ${(err as Error).stack ?? String(err)}\n`);
        code = EXIT.failed;
      }
    }
    await finish(code);
  };
}

interface BuildOpts {
  server: string;
  caddyVersion?: string;
  os?: string;
  arch?: string;
  arm?: string;
  with?: string[];
  output?: string;
  download: boolean;
  json?: boolean;
  verbose?: boolean;
  quiet?: boolean;
  /** PEM file of the key builds must be signed with (else FAIRWAY_PUBLIC_KEY); none: provenance is not checked. */
  publicKey?: string;
}

/** Turns flags into the request body; mistakes that need no server are exit 2 here. */
export function buildInput(version: string | undefined, o: BuildOpts, env: NodeJS.ProcessEnv = process.env): BuildInput {
  if (version && o.caddyVersion && version !== o.caddyVersion) {
    throw new ClientError(`two Caddy versions given: "${version}" and --caddy-version "${o.caddyVersion}"`, EXIT.usage);
  }
  const caddyVersion = o.caddyVersion ?? version;
  if (caddyVersion !== undefined && caddyVersion !== 'latest') {
    const q = classifyVersionQuery(/^2\.[0-9]/.test(caddyVersion) ? `v${caddyVersion}` : caddyVersion);
    if ('error' in q) throw new ClientError(`--caddy-version: ${q.error}`, EXIT.usage);
  }
  const host = hostPlatform();
  const os = o.os ?? (env.GOOS || undefined) ?? host.os;
  const arch = o.arch ?? (env.GOARCH || undefined) ?? host.arch;
  const armDefault = arch === 'arm' ? ((env.GOARM || undefined) ?? (o.arch === undefined && !env.GOARCH ? host.arm : undefined)) : undefined;
  const arm = o.arm ?? armDefault;
  if (o.arm !== undefined && arch !== 'arm') throw new ClientError(`--arm is only valid with --arch arm (the target arch is ${arch})`, EXIT.usage);
  const seen = new Set<string>();
  const plugins: PluginSpec[] = (o.with ?? []).map((w) => {
    const p = parsePluginArg(w.trim());
    const err = modulePathError(p.module);
    if (err) throw new ClientError(`--with ${w}: module path ${err}`, EXIT.usage);
    if (p.version !== undefined) {
      const q = classifyVersionQuery(p.version);
      if ('error' in q) throw new ClientError(`--with ${w}: version ${q.error}`, EXIT.usage);
    }
    if (seen.has(p.module)) throw new ClientError(`--with ${p.module} is given twice`, EXIT.usage);
    seen.add(p.module);
    return p;
  });
  return { ...(caddyVersion ? { caddyVersion } : {}), os, arch, ...(arm ? { arm } : {}), plugins };
}

function describe(b: BuildRecord): string {
  const s = b.spec;
  const plugins = s.plugins.map((p) => `${p.module}${p.version ? `@${p.version}` : ''}`);
  return `Caddy ${s.caddyVersion} for ${s.os}/${s.arch}${s.arm ? `/v${s.arm}` : ''}${plugins.length ? ` with ${plugins.join(', ')}` : ' (no plugins)'}`;
}

/** Follows a build's log until it ends; returns the final record. */
async function watch(
  client: FairwayClient,
  b: BuildRecord,
  progress: Progress,
  tail: string[],
  signal: AbortSignal,
  onLine?: (m: Extract<LogMessage, { type: 'line' }>) => void,
): Promise<BuildRecord> {
  let record = b;
  let final: BuildRecord | null = null;
  let endStatus: BuildRecord['status'] | null = null;
  let endError: string | undefined;
  progress.startBuild(b.startedAt ?? b.createdAt);
  progress.phase(b.phase, b.position);
  for await (const m of client.follow(b.id, {
    signal,
    onReconnect: (n, wait, reason) => progress.info(`fairway: log connection lost (${reason}); reconnecting in ${Math.ceil(wait / 1000)}s (attempt ${n})`),
  })) {
    switch (m.type) {
      case 'status':
        record = m.build;
        progress.phase(m.build.phase, m.build.position);
        break;
      case 'phase':
        progress.phase(m.phase, m.position);
        break;
      case 'line':
        tail.push(m.text);
        if (tail.length > 20) tail.shift();
        progress.line(m.text);
        onLine?.(m);
        break;
      case 'end':
        endStatus = m.status;
        endError = m.error;
        final = m.build;
        break;
    }
  }
  if (signal.aborted) return record;
  if (!final) final = await client.getBuild(b.id);
  if (endStatus && final.status !== endStatus && isActive(final.status)) final = { ...final, status: endStatus, ...(endError ? { error: endError } : {}) };
  return final;
}

/** Ctrl-C stops following (the build itself goes on) and exits 130. */
function interruptible(progress: Progress, what: () => string): { signal: AbortSignal; dispose(): void } {
  const ac = new AbortController();
  const onSig = () => {
    ac.abort();
    progress.done();
    process.stderr.write(`\nfairway: interrupted. ${what()}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSig);
  return { signal: ac.signal, dispose: () => process.off('SIGINT', onSig) };
}

async function buildCommand(version: string | undefined, o: BuildOpts): Promise<number> {
  const input = buildInput(version, o);
  const pinned = o.download ? await pinnedKey(o.publicKey) : null;
  const client = new FairwayClient(o.server);
  const progress = new Progress({ verbose: !!o.verbose, quiet: !!o.quiet });
  const out = o.output ?? (input.os === 'windows' ? 'caddy.exe' : 'caddy');

  let b = await client.createBuild(input);
  const short = b.id.slice(0, 12);
  progress.info(`fairway: build ${short}: ${describe(b)}`);
  const ctl = interruptible(progress, () => `The build goes on on the server: fairway status ${short} --server ${client.base}`);
  const tail: string[] = [];
  try {
    if (b.status === 'succeeded') {
      progress.info(`fairway: ${b.cached ? 'cached' : 'already built'}: no build needed`);
    } else {
      b = await watch(client, b, progress, tail, ctl.signal);
      progress.done();
    }
    if (b.status !== 'succeeded') {
      if (!o.verbose && !o.quiet && tail.length) progress.error(`fairway: last log lines:\n${tail.map((l) => `  ${l}`).join('\n')}`);
      progress.error(`fairway: build ${short} ${b.status}${b.error ? `: ${b.error}` : ''}`);
      progress.error(`fairway: full log: fairway logs ${short} --server ${client.base}`);
      if (o.json) process.stdout.write(`${JSON.stringify(b, null, 2)}\n`);
      return EXIT.failed;
    }
    // The record an end event carries may lack the artifact's figures (a hub learns them from the
    // store after the agent uploads): ask for the record, and print only figures that are known.
    if (b.sha256 === undefined || b.size === undefined) b = await client.getBuild(b.id).catch(() => b);
    if (!o.quiet) progress.info(`fairway: built ${b.filename}${builtFigures(b)}`);
    if (o.download) {
      const dest = (await isDirectory(out)) ? join(out, b.filename) : out;
      const built = b;
      const check = pinned ? (d: { sha256: string }) => checkProvenance(client, built, pinned, d.sha256, dest, progress) : undefined;
      const r = await client.download(b, dest, (p) => progress.download(p.received, p.total), ctl.signal, check);
      progress.done();
      progress.info(`fairway: wrote ${r.path} (${formatBytes(r.size)}, sha256 verified${pinned ? ', provenance verified' : ''})`);
      if (!pinned && !o.quiet) progress.info(`fairway: ${PROVENANCE_NOT_CHECKED}`);
    }
  } finally {
    ctl.dispose();
    progress.done();
  }
  if (o.json) process.stdout.write(`${JSON.stringify(b, null, 2)}\n`);
  return EXIT.ok;
}

/** `: 41.2 MB, sha256 …, in 12.3s` with what the record knows; nothing for an unknown figure. */
export function builtFigures(b: Pick<BuildRecord, 'size' | 'sha256' | 'durationMs' | 'cached'>): string {
  const parts = [
    ...(b.size !== undefined ? [formatBytes(b.size)] : []),
    ...(b.sha256 !== undefined ? [`sha256 ${b.sha256}`] : []),
    ...(b.durationMs !== undefined && !b.cached ? [`in ${(b.durationMs / 1000).toFixed(1)}s`] : []),
  ];
  return parts.length ? `: ${parts.join(', ')}` : '';
}

/** The pinned key, its errors as usage errors (exit 2), before anything is requested. */
async function pinnedKey(option: string | undefined): Promise<ClientKey | null> {
  try {
    return await clientPublicKey(option);
  } catch (err) {
    if (err instanceof ProvenanceCheckError) throw new ClientError(err.message, err.exitCode);
    throw err;
  }
}

/** Before the downloaded binary is renamed into place: its provenance, signed by the pinned key, names its sha256. */
async function checkProvenance(client: FairwayClient, b: BuildRecord, pinned: ClientKey, sha256: string, dest: string, progress: Progress): Promise<void> {
  let envelope: unknown;
  try {
    envelope = (await client.provenance(b)).envelope;
  } catch (err) {
    if (err instanceof ClientError) throw new ClientError(`provenance check failed: ${err.message}; not writing ${dest}`, err.exitCode === EXIT.unreachable ? EXIT.unreachable : EXIT.failed);
    throw err;
  }
  try {
    const v = checkBinaryProvenance(envelope, pinned, sha256);
    progress.done();
    progress.info(`fairway: provenance verified: ${v.subject.name} sha256 ${sha256.slice(0, 16)}…, signed by key ${pinned.fingerprint.slice(0, 16)} (${pinned.source})`);
  } catch (err) {
    if (err instanceof ProvenanceCheckError) throw new ClientError(`${err.message}; not writing ${dest}`, err.exitCode);
    throw err;
  }
}

function statusText(b: BuildRecord, base: string): string {
  const rows: Array<[string, string | undefined]> = [
    ['build', b.id],
    ['status', `${b.status}${b.phase && b.phase !== b.status && b.phase !== 'done' ? ` (${b.phase}${b.position ? `, position ${b.position}` : ''})` : ''}${b.cached ? ' (cached)' : ''}`],
    ['target', `${b.spec.os}/${b.spec.arch}${b.spec.arm ? ` GOARM=${b.spec.arm}` : ''}`],
    ['caddy', `${b.spec.caddyVersion}${b.request?.caddyVersion && b.request.caddyVersion !== b.spec.caddyVersion ? ` (requested ${b.request.caddyVersion})` : ''}`],
    ['plugins', b.spec.plugins.length ? b.spec.plugins.map((p) => `${p.module}${p.version ? ` ${p.version}` : ''}`).join('\n          ') : '(none)'],
    ['go', b.goVersion ?? b.spec.toolchain?.go],
    ['file', b.filename],
    ['size', b.size !== undefined ? `${formatBytes(b.size)} (${b.size} bytes)` : undefined],
    ['sha256', b.sha256],
    ['created', b.createdAt],
    ['started', b.startedAt],
    ['finished', b.finishedAt],
    ['duration', b.durationMs !== undefined ? `${(b.durationMs / 1000).toFixed(1)}s` : undefined],
    ['agent', b.agent],
    ['error', b.error],
    ['download', b.status === 'succeeded' ? base + b.links.artifact : undefined],
  ];
  return rows
    .filter(([, v]) => v !== undefined && v !== '')
    .map(([k, v]) => `${k.padEnd(9)} ${v}`)
    .join('\n');
}

async function statusCommand(id: string, o: { server: string; json?: boolean }): Promise<number> {
  const client = new FairwayClient(o.server);
  const b = await client.getBuild(await client.resolveId(id));
  process.stdout.write(o.json ? `${JSON.stringify(b, null, 2)}\n` : `${statusText(b, client.base)}\n`);
  return b.status === 'failed' || b.status === 'canceled' ? EXIT.failed : EXIT.ok;
}

const LOG_LINE = /^(\S+) (stdout|stderr|system) (.*)$/;

async function logsCommand(id: string, o: { server: string; follow?: boolean; timestamps?: boolean }): Promise<number> {
  const client = new FairwayClient(o.server);
  const full = await client.resolveId(id);
  if (!o.follow) {
    const text = await client.logText(full);
    for (const raw of text.split('\n')) {
      if (raw === '') continue;
      const m = LOG_LINE.exec(raw);
      // No terminal control reaches the terminal, whatever the server sent.
      process.stdout.write(`${stripControl(o.timestamps || !m ? raw : m[3]!)}\n`);
    }
    return EXIT.ok;
  }
  const progress = new Progress({ verbose: true, quiet: false, tty: false });
  const b = await client.getBuild(full);
  const ctl = interruptible(progress, () => 'The build goes on on the server.');
  try {
    // Log lines go to stdout (pipe-friendly); phases and the result to stderr.
    const quietProgress = new Progress({ verbose: false, quiet: false, tty: false });
    const final = await watch(client, b, quietProgress, [], ctl.signal, (m) => process.stdout.write(`${o.timestamps ? `${m.ts} ${m.stream} ` : ''}${m.text}\n`));
    progress.error(`fairway: build ${final.id.slice(0, 12)} ${final.status}${final.error ? `: ${final.error}` : ''}`);
    return final.status === 'succeeded' ? EXIT.ok : EXIT.failed;
  } finally {
    ctl.dispose();
  }
}

export function registerClientCommands(program: Command): void {
  program
    .command('build')
    .description('build a custom Caddy on a Fairway server and download it (flags like `xcaddy build`)')
    .argument('[caddy-version]', 'Caddy version, as xcaddy takes it (same as --caddy-version)')
    .addOption(serverOption())
    .option('--caddy-version <version>', 'latest (default), v2.x.y, a prefix like v2.10, a branch or a commit')
    .option('--os <os>', 'target GOOS (default: $GOOS, else this machine)')
    .option('--arch <arch>', 'target GOARCH (default: $GOARCH, else this machine)')
    .option('--arm <n>', 'GOARM for --arch arm: 5, 6 or 7 (default: $GOARM, else 7)')
    .addOption(new Option('--with <module[@version][=replacement]>', 'add a plugin; repeat for more').argParser(collect))
    .option('-o, --output <file>', "where to write the binary (default ./caddy, caddy.exe for windows); a directory gets the server's file name")
    .option('--no-download', 'build (or find in the cache) without downloading')
    .option('--public-key <file>', 'keep the binary only if its provenance is signed by this key (PEM) and names its sha256 (env FAIRWAY_PUBLIC_KEY)')
    .option('--json', 'print the build record as JSON on stdout')
    .option('-v, --verbose', 'print the live build log on stderr')
    .option('-q, --quiet', 'print only errors')
    .exitOverride(usageExit)
    .action(run(buildCommand));

  program
    .command('status')
    .description('show a build: status, phase, versions, sha256 and size (exit 1 when it failed)')
    .argument('<id>', 'build id (or a unique prefix of a recent one)')
    .addOption(serverOption())
    .option('--json', 'print the build record as JSON')
    .exitOverride(usageExit)
    .action(run(statusCommand));

  program
    .command('logs')
    .description('print a build log; --follow streams it live until the build ends')
    .argument('<id>', 'build id (or a unique prefix of a recent one)')
    .addOption(serverOption())
    .option('-f, --follow', 'follow the log live; exit 0 when the build succeeds, 1 when it fails')
    .option('-t, --timestamps', "show each line's timestamp and stream")
    .exitOverride(usageExit)
    .action(run(logsCommand));
}
