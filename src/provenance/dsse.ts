/**
 * DSSE envelopes (github.com/secure-systems-lab/dsse, protocol v1): the signature covers the
 * pre-authentication encoding PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body,
 * lengths in ASCII decimal bytes. An envelope is `{payloadType, payload (base64), signatures[]}`.
 */
import type { KeyObject } from 'node:crypto';
import { verifySignature, type Signer } from './keys.js';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';

export interface DsseSignature {
  keyid: string;
  sig: string;
}

export interface DsseEnvelope {
  payloadType: string;
  payload: string;
  signatures: DsseSignature[];
}

export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/**
 * The envelope of `body`. Signed when a signer is given; otherwise with no signature at all, which
 * every DSSE verifier refuses (the unsigned provenance of a server without a key). The keyid is
 * empty, as cosign writes it: verifiers pick the key they were given.
 */
export function envelope(payloadType: string, body: Buffer, signer?: Signer): DsseEnvelope {
  return {
    payloadType,
    payload: body.toString('base64'),
    signatures: signer ? [{ keyid: '', sig: signer.sign(pae(payloadType, body)).toString('base64') }] : [],
  };
}

export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Checks the shape of an envelope read from outside; throws EnvelopeError. */
export function parseEnvelope(value: unknown): DsseEnvelope {
  const e = value as Partial<DsseEnvelope> | null;
  if (!e || typeof e !== 'object' || Array.isArray(e)) throw new EnvelopeError('not a DSSE envelope (not a JSON object)');
  if (typeof e.payloadType !== 'string') throw new EnvelopeError('not a DSSE envelope (no payloadType)');
  if (typeof e.payload !== 'string' || !B64.test(e.payload)) throw new EnvelopeError('not a DSSE envelope (payload is not base64)');
  if (!Array.isArray(e.signatures)) throw new EnvelopeError('not a DSSE envelope (no signatures array)');
  for (const s of e.signatures) {
    if (!s || typeof s !== 'object' || typeof s.sig !== 'string' || !B64.test(s.sig)) throw new EnvelopeError('not a DSSE envelope (a signature is not base64)');
  }
  return { payloadType: e.payloadType, payload: e.payload, signatures: e.signatures.map((s) => ({ keyid: typeof s.keyid === 'string' ? s.keyid : '', sig: s.sig })) };
}

/**
 * The payload when at least one signature verifies with `key`; throws EnvelopeError otherwise
 * (no signature, or none by this key).
 */
export function openEnvelope(env: DsseEnvelope, key: KeyObject): Buffer {
  const body = Buffer.from(env.payload, 'base64');
  if (env.signatures.length === 0) throw new EnvelopeError('the envelope is not signed (the server that built it had no signing key)');
  const msg = pae(env.payloadType, body);
  if (!env.signatures.some((s) => verifySignature(key, msg, Buffer.from(s.sig, 'base64')))) {
    throw new EnvelopeError(`none of the envelope's ${env.signatures.length} signature(s) verifies with this key`);
  }
  return body;
}
