/**
 * The provenance check of the download commands (`fairway build -o`, `upgrade`, `add-package`,
 * `remove-package`): with a public key configured for the client (`--public-key FILE`, else
 * FAIRWAY_PUBLIC_KEY), a downloaded binary is kept only when the build's provenance is signed by
 * that key and names the binary's sha256 as its subject. Without a key nothing changes.
 */
import type { KeyObject } from 'node:crypto';
import { EnvelopeError, KeyError, fingerprintOf, loadPublicKey, verifyProvenance, type VerifiedProvenance } from '../provenance/index.js';

export interface ClientKey {
  key: KeyObject;
  /** The PEM file it was read from. */
  path: string;
  /** Where the path came from: `--public-key` or `FAIRWAY_PUBLIC_KEY`. */
  source: '--public-key' | 'FAIRWAY_PUBLIC_KEY';
  fingerprint: string;
}

export class ProvenanceCheckError extends Error {
  constructor(
    message: string,
    /** 2: the key given is unusable (a usage error); 1: the provenance did not verify. */
    readonly exitCode: number,
  ) {
    super(message);
    this.name = 'ProvenanceCheckError';
  }
}

/** The client's pinned public key: `option`, else FAIRWAY_PUBLIC_KEY (a PEM file's path); null when neither is set. */
export async function clientPublicKey(option: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<ClientKey | null> {
  const fromOption = option !== undefined && option !== '';
  const path = fromOption ? option : env.FAIRWAY_PUBLIC_KEY || undefined;
  if (!path) return null;
  const source = fromOption ? '--public-key' : 'FAIRWAY_PUBLIC_KEY';
  try {
    const key = await loadPublicKey(path);
    return { key, path, source, fingerprint: fingerprintOf(key) };
  } catch (err) {
    if (err instanceof KeyError) throw new ProvenanceCheckError(`${source}: ${err.message}`, 2);
    throw err;
  }
}

/**
 * Checks a downloaded binary's provenance: signed by `key`, about a file with `sha256`. Throws
 * ProvenanceCheckError (exit 1) saying what failed.
 */
export function checkBinaryProvenance(envelope: unknown, key: ClientKey, sha256: string): VerifiedProvenance {
  try {
    return verifyProvenance(envelope, key.key, sha256);
  } catch (err) {
    if (err instanceof EnvelopeError || err instanceof KeyError) throw new ProvenanceCheckError(`provenance check failed: ${err.message} (key ${key.fingerprint.slice(0, 16)} from ${key.source})`, 1);
    throw err;
  }
}

/** The info line when no key is configured. */
export const PROVENANCE_NOT_CHECKED = 'provenance not checked (no public key: set FAIRWAY_PUBLIC_KEY or --public-key to the PEM your builders sign with)';
