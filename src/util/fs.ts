/** File helpers shared by the parts: small state files (catalog, queue journal), copies through a descriptor (build, fs store). */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Writes `data` to `file` so that readers see the old content or the new, never a part: a
 * temporary `.tmp-<random>` file in the same directory, fsynced, then renamed over `file`.
 * (Callers that need the rename itself to survive a crash fsync the directory afterwards.)
 */
export async function writeFileAtomic(file: string, data: string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(file), `.tmp-${randomBytes(6).toString('hex')}`);
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * Copies everything readable from the open file `src` into a new file `dest` (created with
 * `createMode`, refused if it exists), in 1 MiB reads (half the time of 64 KiB on a 50 MB binary),
 * handing each chunk to `onChunk` (to hash it on the way), then sets `mode`. Returns the bytes
 * copied: callers compare them with the size they checked, since the source may have changed.
 */
export async function copyFromHandle(src: FileHandle, dest: string, o: { createMode: number; mode: number; onChunk?: (chunk: Buffer) => void }): Promise<number> {
  const out = await open(dest, 'wx', o.createMode);
  let pos = 0;
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const { bytesRead } = await src.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      o.onChunk?.(buf.subarray(0, bytesRead));
      await out.write(buf, 0, bytesRead);
      pos += bytesRead;
    }
    await out.chmod(o.mode);
  } finally {
    await out.close();
  }
  return pos;
}
