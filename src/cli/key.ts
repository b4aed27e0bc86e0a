/**
 * `fairway key create [--out PREFIX] [--force] [--json]`: a new ECDSA P-256 signing key pair for
 * provenance (docs/provenance.md): `<prefix>.key` (PKCS#8 PEM, mode 0600) for the builders
 * (`signingKey` on serve and agents) and `<prefix>.pub` (SPKI PEM, what `cosign verify --key`
 * reads) for hubs and clients (`publicKey`, FAIRWAY_PUBLIC_KEY). Existing files are kept unless
 * --force is given.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { createKeyPair } from '../provenance/index.js';
import { errorMessage } from '../util/errors.js';

export interface CreatedKey {
  privateKey: string;
  publicKey: string;
  fingerprint: string;
}

export class KeyCreateError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'KeyCreateError';
  }
}

async function exists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw new KeyCreateError(`cannot check ${p}: ${err.code ?? err.message}`);
    },
  );
}

/** Writes `text` to `path` with `mode`: exclusively (never over a file), or with `force` through a temp file and a rename. */
async function writeKeyFile(path: string, text: string, mode: number, force: boolean): Promise<void> {
  const target = force ? join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`) : path;
  const fh = await open(target, 'wx', mode).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') throw new KeyCreateError(`${path} exists; not overwriting it (use --force to replace it)`, 2);
    throw new KeyCreateError(`cannot write ${path}: ${err.code ?? err.message}`);
  });
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  // The umask may have taken bits away from `mode`; the mode is exactly this.
  await chmod(target, mode);
  if (target !== path) {
    try {
      await rename(target, path);
    } catch (err) {
      await unlink(target).catch(() => undefined);
      throw new KeyCreateError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    }
  }
}

/** Makes the key pair and writes `<prefix>.key` (0600) and `<prefix>.pub` (0644); refuses existing files without `force`. */
export async function createKeyFiles(prefix = 'fairway', force = false): Promise<CreatedKey> {
  if (prefix === '' || prefix.endsWith('/')) throw new KeyCreateError(`--out: give a file prefix like ./keys/fairway (got "${prefix}")`, 2);
  const privateKey = resolve(`${prefix}.key`);
  const publicKey = resolve(`${prefix}.pub`);
  if (!force) {
    for (const p of [privateKey, publicKey]) if (await exists(p)) throw new KeyCreateError(`${p} exists; not overwriting it (use --force to replace it)`, 2);
  }
  const pair = createKeyPair();
  await writeKeyFile(privateKey, pair.privatePem, 0o600, force);
  try {
    await writeKeyFile(publicKey, pair.publicPem, 0o644, force);
  } catch (err) {
    // Never leave a private key without its public half (a later run would refuse to overwrite it).
    if (!force) await unlink(privateKey).catch(() => undefined);
    throw err;
  }
  return { privateKey, publicKey, fingerprint: pair.fingerprint };
}

/** What `fairway key create` prints. */
export function keyCreatedText(k: CreatedKey): string {
  return [
    `wrote ${k.privateKey} (private signing key, PKCS#8 PEM, mode 0600: keep it secret, on the builders only)`,
    `wrote ${k.publicKey} (public key, SPKI PEM)`,
    `fingerprint ${k.fingerprint}`,
    ``,
    `on the builders (fairway serve, fairway agent), set signingKey:`,
    `  FAIRWAY_SIGNING_KEY=${k.privateKey}   or   --signing-key ${k.privateKey}`,
    `on hubs (served at /api/signing-key), set publicKey:`,
    `  FAIRWAY_PUBLIC_KEY=${k.publicKey}   or   --public-key ${k.publicKey}`,
    `on clients (fairway verify, build, upgrade, add-package), pin it:`,
    `  FAIRWAY_PUBLIC_KEY=${k.publicKey}   or   --public-key ${k.publicKey} (verify: --key ${k.publicKey})`,
    ``,
  ].join('\n');
}

export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('manage the provenance signing key (docs/provenance.md)');
  key
    .command('create')
    .description('create an ECDSA P-256 key pair: <prefix>.key (signingKey, mode 0600) and <prefix>.pub (publicKey)')
    .option('--out <prefix>', 'file prefix: writes <prefix>.key and <prefix>.pub', 'fairway')
    .option('--force', 'replace existing files')
    .option('--json', 'print one JSON object instead of text')
    .action(async (o: { out: string; force?: boolean; json?: boolean }) => {
      let k: CreatedKey;
      try {
        k = await createKeyFiles(o.out, !!o.force);
      } catch (err) {
        process.stderr.write(`fairway key create: ${errorMessage(err)}\n`);
        process.exit(err instanceof KeyCreateError ? err.exitCode : 1);
      }
      process.stdout.write(o.json ? `${JSON.stringify({ signingKey: k.privateKey, publicKey: k.publicKey, fingerprint: k.fingerprint })}\n` : keyCreatedText(k));
    });
}
