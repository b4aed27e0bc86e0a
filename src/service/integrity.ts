/**
 * Never serve a bad byte: a stored binary is checked against its record (size and sha256) while
 * it streams. The last chunk is held back until the whole object hashed right, so a mismatch
 * aborts the transfer before the client has every byte it was promised (Content-Length): it never
 * sees a complete response with a wrong body. See docs/storage.md ("Integrity").
 */
import { createHash } from 'node:crypto';
import { Transform, pipeline } from 'node:stream';
import type { ArtifactMeta } from '../store/index.js';
import { AppError } from '../util/errors.js';

/**
 * checksum: the bytes hash to another sha256; truncated / oversized: fewer / more bytes than recorded;
 * missing: a succeeded record without its binary; bad_meta / bad_buildinfo / bad_provenance / bad_sbom: an unreadable
 * meta.json / buildinfo.json / provenance.json / sbom.json. Every one is quarantined the same way (BuildService), so the next request rebuilds.
 */
export type CorruptReason = 'checksum' | 'truncated' | 'oversized' | 'missing' | 'bad_meta' | 'bad_buildinfo' | 'bad_provenance' | 'bad_sbom';

export class IntegrityError extends AppError {
  constructor(
    readonly key: string,
    readonly reason: CorruptReason,
    readonly detail: string,
  ) {
    super('artifact_corrupt', `the stored binary of build ${key} is corrupt (${detail}); it was quarantined and will not be served; request the build again to rebuild it`);
    this.name = 'IntegrityError';
  }
}

/**
 * `source` (the whole binary) piped through a check against `meta.size` / `meta.sha256`. On a
 * mismatch `onCorrupt` is called once and the stream fails with an IntegrityError *before* its last
 * chunk is passed on. Errors of the source (and a consumer going away) pass through unchanged.
 */
export function verifyingStream(source: NodeJS.ReadableStream, meta: Pick<ArtifactMeta, 'key' | 'size' | 'sha256'>, onCorrupt: (e: IntegrityError) => void): Transform {
  const size = meta.size!;
  const expected = meta.sha256!;
  const hash = createHash('sha256');
  let seen = 0;
  let held: Buffer | null = null;
  let reported = false;
  const fail = (reason: CorruptReason, detail: string): IntegrityError => {
    const e = new IntegrityError(meta.key, reason, detail);
    if (!reported) onCorrupt(e);
    reported = true;
    return e;
  };
  const check = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > size) return cb(fail('oversized', `more than the recorded ${size} bytes`));
      hash.update(chunk);
      const prev = held;
      held = chunk;
      cb(null, prev ?? undefined);
    },
    flush(cb) {
      if (seen !== size) return cb(fail('truncated', `${seen} bytes, the record says ${size}`));
      const sum = hash.digest('hex');
      if (sum !== expected) return cb(fail('checksum', `its bytes hash to sha256 ${sum}, the record says ${expected}`));
      cb(null, held ?? undefined);
    },
  });
  pipeline(source, check, (err) => {
    // The S3 SDK checks the object's stored checksum (x-amz-checksum-*) itself and fails the body
    // at its end: the same corruption, found one step earlier.
    if (err && /checksum mismatch/i.test(err.message)) fail('checksum', `the store's own checksum check failed: ${err.message}`);
  });
  return check;
}

/** Reads `source` to its end through the check; resolves when it matched, rejects otherwise. */
export async function verifyWhole(source: NodeJS.ReadableStream, meta: Pick<ArtifactMeta, 'key' | 'size' | 'sha256'>, onCorrupt: (e: IntegrityError) => void): Promise<void> {
  const s = verifyingStream(source, meta, onCorrupt);
  for await (const _ of s) {
    /* discard */
  }
}
