/**
 * `fairway verify FILE [--key PEM | --server URL] [--provenance FILE] [--rebuild] [--token T] [--json]`: checks
 * a local binary against its provenance (docs/provenance.md) and prints one line per check:
 *
 *   ok    file: sha256 of ./caddy is <hex> (<n> bytes)
 *   ok    provenance: build <id> on <server> (<url>; the server says: signed)   | read from <path>
 *   ok    key: pinned with --key <path>: fingerprint <hex>                    | FAIRWAY_PUBLIC_KEY | the server's
 *   ok    envelope / signature / statement / predicate / subject / invocation
 *   info  builder, build type, times, caddy, plugins
 *   ok    rebuild: (--rebuild) the server built the spec again, on another agent when it has one: same sha256
 *
 * Exit 0 only when every check passed; 1 when one failed (its line says FAIL and why), 2 for a
 * usage error (a key file that is not a P-256 public key), 3 when the server cannot be reached.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { EnvelopeError, KeyError, fingerprintOf, loadPublicKey, publicKeyFromPem, summarizeProvenance, verifyProvenance, type ProvenanceSummary } from '../provenance/index.js';
import { ClientError, EXIT, FairwayClient, type BuildRecord } from './client.js';
import { errorMessage } from '../util/errors.js';

export interface VerifyOptions {
  /** A pinned public key (PEM file). */
  key?: string;
  /** The server to find the build on (and, without a pinned key, to take the key from). */
  server?: string;
  /** Read the provenance (the DSSE envelope JSON) from this file instead of the server. */
  provenance?: string;
  token?: string;
  json?: boolean;
  /** Ask the server to build the spec again (on another agent) and compare the bytes. */
  rebuild?: boolean;
  /** How long to wait for the rebuild (ms); default 30 min. */
  rebuildTimeoutMs?: number;
  /** Poll interval while waiting for the rebuild (ms); default 2 s. */
  pollMs?: number;
}

export interface VerifyCheck {
  check: string;
  ok: boolean;
  detail: string;
}

export interface VerifyReport {
  ok: boolean;
  file: string;
  sha256?: string;
  /** Every check made, in order; the first failed one ends the run. */
  checks: VerifyCheck[];
  /** What the provenance says (after the checks passed). */
  info: Array<{ what: string; detail: string }>;
  warnings: string[];
  build?: string;
  keyFingerprint?: string;
  provenance?: ProvenanceSummary;
  error?: string;
  exitCode: number;
}

export interface VerifyIo {
  stdout(s: string): void;
  stderr(s: string): void;
  env?: NodeJS.ProcessEnv;
}

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

/** A failed check: ends the run with its exit code. */
class CheckFailed extends Error {
  constructor(
    readonly check: string,
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
  }
}

async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Runs the checks and prints them (text lines, or one JSON object with --json); returns the exit code. */
export async function runVerify(file: string, o: VerifyOptions, io: VerifyIo): Promise<number> {
  const report = await verifyFile(
    file,
    o,
    io.env ?? process.env,
    (c) => {
      if (!o.json) io.stdout(`${c.ok ? 'ok  ' : 'FAIL'}  ${c.check}: ${c.detail}\n`);
    },
    (w) => {
      // Loud: on stderr too, where it is seen when stdout goes to a file.
      if (!o.json) io.stdout(`WARN  ${w}\n`);
      io.stderr(`fairway verify: WARNING: ${w}\n`);
    },
  );
  if (o.json) io.stdout(`${JSON.stringify(report, null, 2)}\n`);
  else for (const i of report.info) io.stdout(`info  ${i.what}: ${i.detail}\n`);
  if (report.ok) {
    if (!o.json) io.stdout(`verified: ${report.file} (every check above passed${report.warnings.length ? '; see the warning' : ''})\n`);
  } else {
    io.stderr(`fairway verify: NOT VERIFIED: ${report.error}\n`);
  }
  return report.exitCode;
}

/** The checks of `fairway verify`; `onCheck` hears each one as it is made. */
export async function verifyFile(
  file: string,
  o: VerifyOptions,
  env: NodeJS.ProcessEnv,
  onCheck: (c: VerifyCheck) => void = () => undefined,
  onWarning: (w: string) => void = () => undefined,
): Promise<VerifyReport> {
  const path = resolve(file);
  const report: VerifyReport = { ok: false, file: path, checks: [], info: [], warnings: [], exitCode: EXIT.failed };
  const pass = (check: string, detail: string) => {
    const c = { check, ok: true, detail };
    report.checks.push(c);
    onCheck(c);
  };
  const info = (what: string, detail: string) => report.info.push({ what, detail });
  const warn = (w: string) => {
    report.warnings.push(w);
    onWarning(w);
  };
  try {
    // The key first when it is pinned: a wrong key file is a usage error, found before any request.
    let pinned: { key: KeyObject; how: string } | null = null;
    const keyPath = o.key ?? (env.FAIRWAY_PUBLIC_KEY || undefined);
    if (keyPath) {
      const how = o.key !== undefined ? `pinned with --key ${o.key}` : `pinned by FAIRWAY_PUBLIC_KEY=${keyPath}`;
      try {
        pinned = { key: await loadPublicKey(keyPath), how };
      } catch (err) {
        if (err instanceof KeyError) throw new CheckFailed('key', `${how}: ${err.message}`, EXIT.usage);
        throw err;
      }
    }
    const serverGiven = o.server ?? (env.FAIRWAY_SERVER || undefined);
    const needServer = !o.provenance || !pinned;
    if (o.provenance && !pinned && !serverGiven) {
      throw new CheckFailed('key', 'no key to verify the signature with: pin one with --key FILE or FAIRWAY_PUBLIC_KEY (or name the server with --server to take its key)', EXIT.usage);
    }
    let client: FairwayClient | null = null;
    if (needServer) {
      try {
        client = new FairwayClient(serverGiven ?? DEFAULT_SERVER, o.token ?? (env.FAIRWAY_TOKEN || undefined));
      } catch (err) {
        if (err instanceof ClientError) throw new CheckFailed('server', err.message, err.exitCode);
        throw err;
      }
    }

    // 1. The file.
    let digest: { sha256: string; size: number };
    try {
      if (!(await stat(path)).isFile()) throw new Error('not a regular file');
      digest = await sha256File(path);
    } catch (err) {
      throw new CheckFailed('file', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, EXIT.usage);
    }
    report.sha256 = digest.sha256;
    pass('file', `sha256 of ${path} is ${digest.sha256} (${digest.size} bytes)`);

    // 2. Its provenance: a file, or the server's build of these bytes.
    let envelope: unknown;
    let build: BuildRecord | null = null;
    if (o.provenance) {
      const p = resolve(o.provenance);
      let text: string;
      try {
        text = await readFile(p, 'utf8');
      } catch (err) {
        throw new CheckFailed('provenance', `cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, EXIT.usage);
      }
      try {
        envelope = JSON.parse(text);
      } catch {
        throw new CheckFailed('provenance', `${p} is not JSON (a DSSE envelope, as GET /api/builds/<id>/provenance serves it)`);
      }
      pass('provenance', `read from ${p} (--provenance)`);
    } else {
      const c = client!;
      const found = (await clientCall(() => c.buildsBySha256(digest.sha256))).filter((b) => b.sha256 === digest.sha256 && b.status === 'succeeded');
      if (found.length === 0) {
        throw new CheckFailed(
          'provenance',
          `no build on ${c.base} has a binary with sha256 ${digest.sha256} (GET /api/builds?sha256=): not built there, changed since, or pruned; give its provenance with --provenance FILE`,
        );
      }
      build = found[0]!;
      report.build = build.id;
      const got = await clientCall(() => c.provenance(build!));
      envelope = got.envelope;
      pass(
        'provenance',
        `build ${build.id} on ${c.base}${found.length > 1 ? ` (newest of ${found.length} builds of these bytes)` : ''}: fetched ${got.url} (the server says: ${got.header ?? 'nothing'})`,
      );
    }

    // 3. The key.
    let key: KeyObject;
    if (pinned) {
      key = pinned.key;
      pass('key', `${pinned.how}: fingerprint ${fingerprintOf(key)}`);
    } else {
      const c = client!;
      const pem = await clientCall(() => c.signingKeyPem());
      if (pem === null) {
        throw new CheckFailed(
          'key',
          `${c.base} has no signing key (GET /api/signing-key: 404), so its builds carry unsigned provenance; pin the key the builders sign with: --key FILE or FAIRWAY_PUBLIC_KEY`,
        );
      }
      try {
        key = publicKeyFromPem(pem, `the key of ${c.base}/api/signing-key`);
      } catch (err) {
        throw new CheckFailed('key', errorMessage(err));
      }
      pass('key', `fetched from ${c.base}/api/signing-key (not pinned): fingerprint ${fingerprintOf(key)}`);
      warn(
        `the key was fetched from ${c.base}${o.provenance ? '' : ', the same server that served the provenance'}, not pinned: this proves only that that server (or whoever controls it) signed the provenance, not that a builder you trust built the binary; pin the key with --key FILE or FAIRWAY_PUBLIC_KEY`,
      );
    }
    report.keyFingerprint = fingerprintOf(key);

    // 4. Envelope, signature, statement, predicate, subject (src/provenance verifyProvenance).
    let last = 'envelope';
    const order = ['envelope', 'signature', 'statement', 'predicate', 'subject'];
    let verified: ReturnType<typeof verifyProvenance>;
    try {
      verified = verifyProvenance(envelope, key, digest.sha256, (check, detail) => {
        pass(check, detail);
        last = order[order.indexOf(check) + 1] ?? check;
      });
    } catch (err) {
      if (err instanceof EnvelopeError) throw new CheckFailed(last, err.message);
      throw err;
    }

    // 5. What it says: the invocation is the build that was asked for.
    const s = summarizeProvenance(verified.statement);
    report.provenance = s;
    if (build) {
      if (s.invocationId !== build.id) throw new CheckFailed('invocation', `the provenance names build ${s.invocationId || '(none)'}, but ${build.id} was served with it`);
      pass('invocation', `invocation id (build key) ${s.invocationId} is the build found on the server`);
    } else {
      info('invocation', `invocation id (build key) ${s.invocationId || '(none)'}`);
    }
    info('builder', s.builderId || '(none)');
    info('build type', s.buildType || '(none)');
    if (s.startedOn || s.finishedOn) info('built', `${s.startedOn ?? '?'} .. ${s.finishedOn ?? '?'}`);
    info('caddy', s.caddy ? `${s.caddy.version} (from ${s.caddy.from})` : '(not named)');
    const from = s.dependencies ? `resolvedDependencies, ${s.dependencies} modules in all` : 'the spec: the provenance lists no resolvedDependencies';
    info('plugins', s.plugins.length ? `${s.plugins.map((p) => `${p.module}@${p.version}${p.replacedBy ? ` => ${p.replacedBy}` : ''}`).join(', ')} (from ${from})` : `none (from ${from})`);
    // 6. With --rebuild: the server builds the same spec again and the bytes must be the same.
    if (o.rebuild) await checkRebuild(client, build, s.invocationId, digest.sha256, o, pass, warn);
    report.ok = true;
    report.exitCode = EXIT.ok;
  } catch (err) {
    if (err instanceof CheckFailed) {
      const c = { check: err.check, ok: false, detail: err.message };
      report.checks.push(c);
      onCheck(c);
      report.error = `${err.check}: ${err.message}`;
      report.exitCode = err.exitCode;
    } else {
      throw err;
    }
  }
  return report;
}

/**
 * `--rebuild`: asks the server for a verification rebuild of the build (POST /api/builds/:id/rebuild),
 * waits for it, and passes only when it ended with the file's sha256. Which agent built each is
 * reported; the same agent (no other one was available) is a warning, not independence.
 */
async function checkRebuild(
  client: FairwayClient | null,
  build: BuildRecord | null,
  invocationId: string,
  sha256: string,
  o: VerifyOptions,
  pass: (check: string, detail: string) => void,
  warn: (w: string) => void,
): Promise<void> {
  if (!client) throw new CheckFailed('rebuild', '--rebuild needs the server that built it: give --server URL', EXIT.usage);
  const id = build?.id ?? invocationId;
  if (!/^[0-9a-f]{64}$/.test(id)) throw new CheckFailed('rebuild', 'the provenance names no build id (invocation id) to rebuild');
  const original = build ?? (await clientCall(() => client.getBuild(id)));
  let r = await clientCall(() => client.rebuild(id));
  const deadline = Date.now() + (o.rebuildTimeoutMs ?? 30 * 60_000);
  while (r.status === 'queued' || r.status === 'running') {
    if (Date.now() > deadline) throw new CheckFailed('rebuild', `the rebuild ${r.id} did not finish in time (still ${r.status}); look at ${client.base}/api/builds/${r.id}`);
    await new Promise((res) => setTimeout(res, o.pollMs ?? 2000));
    r = await clientCall(() => client.getBuild(r.id));
  }
  if (r.status !== 'succeeded') throw new CheckFailed('rebuild', `the rebuild ${r.id} ${r.status}: ${r.error ?? 'no error given'} (log: ${client.base}/api/builds/${r.id}/log)`);
  if (r.sha256 !== sha256) {
    throw new CheckFailed(
      'rebuild',
      `the rebuild ${r.id}${r.agent ? ` on ${r.agent}` : ''} has sha256 ${r.sha256 ?? '?'}, not the file's ${sha256}: the build is not reproducible, or the file is not what was built`,
    );
  }
  const where = r.agent && original.agent ? ` on ${r.agent} (the original on ${original.agent})` : r.agent ? ` on ${r.agent}` : '';
  pass('rebuild', `build ${r.id}${where}${r.cached ? ', an earlier rebuild,' : ''} has the same sha256 ${sha256}`);
  if (r.agent && original.agent && r.agent === original.agent) {
    warn(`the rebuild ran on the same agent as the original (${r.agent}): no other agent was available, so this shows the build repeats on that builder, not that an independent one agrees`);
  }
}

/** A client call whose ClientError becomes a failed check (with its exit code). */
async function clientCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ClientError) throw new CheckFailed('server', err.message, err.exitCode === EXIT.usage ? EXIT.failed : err.exitCode);
    throw err;
  }
}

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('check a local binary against its signed provenance: sha256, signature, statement, subject, build (docs/provenance.md)')
    .argument('<file>', 'the binary to check')
    .option('--key <file>', "the public key (PEM) the provenance must be signed with (default: env FAIRWAY_PUBLIC_KEY, else the server's /api/signing-key)")
    .addOption(new Option('-s, --server <url>', `Fairway server to find the build on by sha256 (env FAIRWAY_SERVER, default ${DEFAULT_SERVER})`))
    .option('--provenance <file>', 'read the provenance (DSSE envelope JSON) from this file instead of the server')
    .option('--token <token>', 'bearer token for the server (default: env FAIRWAY_TOKEN)')
    .option('--json', 'print one JSON report instead of lines')
    .option('--rebuild', 'also ask the server to build the spec again (on another agent when it has one) and compare the bytes')
    .action(async (file: string, o: VerifyOptions) => {
      let code: number;
      try {
        code = await runVerify(file, o, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
      } catch (err) {
        process.stderr.write(`fairway verify: ${(err as Error).stack ?? String(err)}\n`);
        code = EXIT.failed;
      }
      await new Promise<void>((r) => process.stdout.write('', () => r()));
      process.exit(code);
    });
}
