/**
 * The one download-and-verify step of the CLI (`fairway build -o`, `upgrade`, `add-package`,
 * `remove-package`): a binary is accepted only with a sha256 the server announced (or the build
 * record names), all of its announced bytes, and a body that hashes to that sha256. Anything else is
 * refused before the file is used; the caller removes its temp file.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

export class DownloadVerifyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadVerifyError';
  }
}

const SHA_RE = /^[0-9a-f]{64}$/;

/**
 * The sha256 a download must match: the `X-Checksum-Sha256` header, else the build record's.
 * Refuses none at all (an unverified binary), a malformed one, and two that disagree.
 */
export function expectedSha256(header: string | string[] | null | undefined, record?: string | null): string {
  const h = (Array.isArray(header) ? header[0] : header)?.trim().toLowerCase() || null;
  const r = record?.trim().toLowerCase() || null;
  if (h && r && h !== r) throw new DownloadVerifyError(`the server sent two different checksums (header ${h}, record ${r}); not writing the file`);
  const expected = h ?? r;
  if (!expected) throw new DownloadVerifyError('the server sent no sha256 for the artifact (no X-Checksum-Sha256 header); refusing an unverified binary');
  if (!SHA_RE.test(expected)) throw new DownloadVerifyError(`the server sent a malformed sha256 (${expected.slice(0, 80)}); refusing an unverified binary`);
  return expected;
}

export interface VerifyOptions {
  /** From expectedSha256(). */
  sha256: string;
  /** Announced length (Content-Length), if any. */
  length?: number | null;
  /** Length the build record names, if any. */
  recordSize?: number;
  /** False when the connection closed before the end of the body (node:http `res.complete`). */
  complete?: () => boolean;
  onProgress?: (received: number) => void;
}

/** Writes `body` to `fh` (synced), hashing it, then checks completeness, length and sha256. */
export async function receiveVerified(body: AsyncIterable<Uint8Array>, fh: FileHandle, o: VerifyOptions): Promise<{ sha256: string; size: number }> {
  if (!SHA_RE.test(o.sha256)) throw new DownloadVerifyError('no valid sha256 to check the download against; refusing an unverified binary');
  const hash = createHash('sha256');
  let received = 0;
  o.onProgress?.(received);
  for await (const chunk of body) {
    hash.update(chunk);
    await fh.write(chunk);
    received += chunk.length;
    o.onProgress?.(received);
  }
  await fh.sync();
  if (o.complete && !o.complete()) throw new DownloadVerifyError(`download incomplete: the connection closed after ${received} bytes, before the end of the binary`);
  const length = o.length ?? null;
  if (length !== null && Number.isFinite(length) && received !== length) throw new DownloadVerifyError(`download incomplete: got ${received} of ${length} bytes`);
  if (o.recordSize !== undefined && received !== o.recordSize) throw new DownloadVerifyError(`download has ${received} bytes but the build record says ${o.recordSize}`);
  const sha256 = hash.digest('hex');
  if (sha256 !== o.sha256) throw new DownloadVerifyError(`checksum mismatch: downloaded sha256 ${sha256}, server says ${o.sha256}; the file was not used`);
  return { sha256, size: received };
}
