/**
 * Signing keys: ECDSA P-256, the private key as PKCS#8 PEM (the key type cosign uses), the public
 * key as SubjectPublicKeyInfo PEM (what `cosign verify --key` reads). Signatures are ECDSA with
 * SHA-256 in ASN.1 DER, as cosign writes and checks them.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, lstat, mkdir, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AppError, errorMessage } from '../util/errors.js';

/** A key that is not an ECDSA P-256 key in PEM, or a file that cannot be read as one. */
export class KeyError extends AppError {
  constructor(message: string) {
    super('bad_key', message);
    this.name = 'KeyError';
  }
}

export interface Signer {
  /** sha256 of the public key's DER (hex): how docs, logs and the UI name the key. */
  readonly fingerprint: string;
  readonly publicKeyPem: string;
  /** ECDSA-SHA256 over `data`, ASN.1 DER. */
  sign(data: Buffer): Buffer;
}

function checkEc(key: KeyObject, what: string): void {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType !== 'ec' || d?.namedCurve !== 'prime256v1') {
    throw new KeyError(`${what} is a ${key.asymmetricKeyType ?? 'unknown'} key${d?.namedCurve ? ` on ${d.namedCurve}` : ''}; Fairway signs with ECDSA P-256 (make one with \`fairway key create\`)`);
  }
}

export function fingerprintOf(pub: KeyObject): string {
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

export function publicKeyFromPem(pem: string, what = 'the public key'): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new KeyError(`${what} is not a PEM public key (${errorMessage(err)})`);
  }
  checkEc(key, what);
  return key;
}

export function signerFromPem(pem: string, what = 'the signing key'): Signer {
  if (/ENCRYPTED/.test(pem)) throw new KeyError(`${what} is encrypted; Fairway needs an unencrypted PKCS#8 key (\`fairway key create\`), kept readable only by its user`);
  let priv: KeyObject;
  try {
    priv = createPrivateKey(pem);
  } catch (err) {
    throw new KeyError(`${what} is not a PEM private key (${errorMessage(err)})`);
  }
  checkEc(priv, what);
  const pub = createPublicKey(priv);
  return {
    fingerprint: fingerprintOf(pub),
    publicKeyPem: pub.export({ type: 'spki', format: 'pem' }).toString(),
    sign: (data) => sign('sha256', data, priv),
  };
}

/** Reads the `signingKey` file. */
export async function loadSigner(path: string): Promise<Signer> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new KeyError(`cannot read the signing key ${path}: ${errorMessage(err)}`);
  }
  return signerFromPem(pem, `the signing key ${path}`);
}

/** Reads a public key file (or the public part of a private key file). */
export async function loadPublicKey(path: string): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (err) {
    throw new KeyError(`cannot read the public key ${path}: ${errorMessage(err)}`);
  }
  return publicKeyFromPem(pem, `the key ${path}`);
}

/**
 * The signing key at `path`, created on first use (`serve` without `signingKey`: its key in the
 * data dir). A new key is written to a temporary file with mode 0600 in the same directory and
 * linked to `path`, which fails when the file exists: two processes starting together end up with
 * the same key, and a file is never seen half-written. An existing file must be a regular file
 * (not a symlink: lstat) of this user's; it is then read as any signing key.
 */
export async function loadOrCreateSigner(path: string): Promise<{ signer: Signer; created: boolean }> {
  const existing = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new KeyError(`cannot read the signing key ${path}: ${err.message}`);
  });
  if (!existing) {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const tmp = join(dirname(path), `.signing-key-${randomBytes(6).toString('hex')}.tmp`);
    const pair = createKeyPair();
    const fh = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(pair.privatePem);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, path);
      return { signer: signerFromPem(pair.privatePem, `the signing key ${path}`), created: true };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new KeyError(`cannot create the signing key ${path}: ${errorMessage(err)}`);
      // Another process made it first: use that one.
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
  }
  const st = await lstat(path);
  if (!st.isFile()) throw new KeyError(`the signing key ${path} is not a regular file (a symlink or something else): remove it, and Fairway makes a new key at the next start`);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new KeyError(`the signing key ${path} belongs to uid ${st.uid}, not to this user (${uid}): chown it, or remove it to have a new key made`);
  return { signer: await loadSigner(path), created: false };
}

/** A new key pair: `{privatePem (PKCS#8), publicPem (SPKI)}`. */
export function createKeyPair(): { privatePem: string; publicPem: string; fingerprint: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    fingerprint: fingerprintOf(publicKey),
  };
}

/** ECDSA-SHA256 (DER) check. False for any malformed signature. */
export function verifySignature(pub: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    return verify('sha256', data, pub, sig);
  } catch {
    return false;
  }
}
