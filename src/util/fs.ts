/** File helpers shared by the parts that keep small state files (catalog, queue journal). */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
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
