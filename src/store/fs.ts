/**
 * Local-disk store: `<root>/<key>/{binary, meta.json, build.log, buildinfo.json}`.
 * An artifact is assembled in `<root>/.tmp-*` and renamed into place in one step, so a crash
 * never leaves a half artifact visible; leftovers are swept at start.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, readdir, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isCacheKey } from '../spec/index.js';
import { FsAccessTracker, usageOf } from './access.js';
import type { AccessTracker, AccessTrackerOptions, ArtifactMeta, ArtifactStore, ArtifactUsage, ByteRange, ListOptions, PutArtifact, StoreStats, StoreUsage } from './types.js';
import { CorruptRecordError, NotFoundError, parseBuildInfo, parseMeta } from './types.js';

export function assertKey(key: string): string {
  if (!isCacheKey(key)) throw new NotFoundError(`artifact "${key.slice(0, 80)}"`);
  return key;
}

/** Hard-links when source and store share a filesystem (instant; the caller's file stays), else copies. */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EMLINK') throw err;
    await copyFile(from, to);
  }
}

export class FsStore implements ArtifactStore {
  readonly kind = 'fs';

  private constructor(readonly root: string) {}

  static async open(root: string): Promise<FsStore> {
    await mkdir(root, { recursive: true });
    for (const name of await readdir(root)) {
      if (name.startsWith('.tmp-') || name.startsWith('.old-')) await rm(join(root, name), { recursive: true, force: true });
    }
    return new FsStore(root);
  }

  private dir(key: string): string {
    return join(this.root, assertKey(key));
  }

  async put(a: PutArtifact): Promise<void> {
    const key = assertKey(a.meta.key);
    const tmp = join(this.root, `.tmp-${randomBytes(8).toString('hex')}`);
    await mkdir(tmp);
    try {
      if (a.binaryPath) await linkOrCopy(a.binaryPath, join(tmp, 'binary'));
      await writeFile(join(tmp, 'build.log'), a.log);
      if (a.buildInfo !== undefined) await writeFile(join(tmp, 'buildinfo.json'), JSON.stringify(a.buildInfo, null, 2));
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(a.meta, null, 2));
      const dest = join(this.root, key);
      const existing = await stat(dest).catch(() => null);
      if (existing) {
        // Replacing an earlier record (a failed build being retried): move it aside first.
        const old = join(this.root, `.old-${randomBytes(8).toString('hex')}`);
        await rename(dest, old);
        await rename(tmp, dest);
        await rm(old, { recursive: true, force: true });
      } else {
        await rename(tmp, dest);
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  async getMeta(key: string): Promise<ArtifactMeta | null> {
    if (!isCacheKey(key)) return null;
    let text: string;
    try {
      text = await readFile(join(this.dir(key), 'meta.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      // A directory named meta.json, or an unreadable file: damage to this record, not an outage.
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new CorruptRecordError(key, 'meta.json', 'not a file');
      throw err;
    }
    return parseMeta(key, text);
  }

  async *list(opts: ListOptions = {}): AsyncIterable<ArtifactMeta> {
    for (const name of await readdir(this.root)) {
      if (!isCacheKey(name)) continue;
      const meta = await this.getMeta(name).catch((err: unknown) => {
        if (err instanceof CorruptRecordError) opts.onCorrupt?.(name, err);
        return null;
      });
      if (meta) yield meta;
    }
  }

  async hasBinary(key: string): Promise<boolean> {
    try {
      return (await stat(join(this.dir(key), 'binary'))).isFile();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw err;
    }
  }

  async openBinary(key: string, range?: ByteRange): Promise<Readable> {
    const path = join(this.dir(key), 'binary');
    await stat(path).catch(() => {
      throw new NotFoundError(`binary of ${key}`);
    });
    // 256 KiB reads: 64 KiB chunks cap one download at a fraction of what disk and socket can do;
    // 1 MiB chunks hold libuv's few threads too long when many clients download at once (bench/cachehit.ts).
    return createReadStream(path, { highWaterMark: 256 * 1024, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  async getLog(key: string): Promise<string | null> {
    return readFile(join(this.dir(key), 'build.log'), 'utf8').catch(() => null);
  }

  async getBuildInfo(key: string): Promise<unknown | null> {
    const text = await readFile(join(this.dir(key), 'buildinfo.json'), 'utf8').catch(() => null);
    return text === null ? null : parseBuildInfo(key, text);
  }

  async delete(key: string): Promise<void> {
    const dest = this.dir(key);
    const old = join(this.root, `.old-${randomBytes(8).toString('hex')}`);
    await rename(dest, old).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rm(old, { recursive: true, force: true });
  }

  async binaryVersion(key: string): Promise<string | null> {
    const s = await stat(join(this.dir(key), 'binary'), { bigint: true }).catch(() => null);
    return s ? `${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.ino}:${s.dev}` : null;
  }

  /** Renames `<root>/<key>` to `<root>/.quarantine/<key>-<time>-<random>` (kept for inspection). */
  async quarantine(key: string): Promise<void> {
    const dest = this.dir(key);
    const qdir = join(this.root, '.quarantine');
    await mkdir(qdir, { recursive: true });
    await rename(dest, join(qdir, `${key}-${Date.now()}-${randomBytes(4).toString('hex')}`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async stats(): Promise<StoreStats> {
    let objects = 0;
    let bytes = 0;
    for (const name of await readdir(this.root)) {
      if (!isCacheKey(name)) continue;
      objects++;
      for (const f of await readdir(join(this.root, name)).catch(() => [] as string[])) {
        bytes += (await stat(join(this.root, name, f)).catch(() => ({ size: 0 }))).size;
      }
    }
    return { objects, bytes };
  }

  /** A directory walk: the bytes of every file in each `<root>/<key>/`. */
  async usage(): Promise<StoreUsage> {
    const entries = new Map<string, ArtifactUsage>();
    for (const name of await readdir(this.root)) {
      if (!isCacheKey(name)) continue;
      let bytes = 0;
      let published = false;
      for (const f of await readdir(join(this.root, name)).catch(() => [] as string[])) {
        const s = await stat(join(this.root, name, f)).catch(() => null);
        if (!s) continue;
        bytes += s.size;
        if (f === 'meta.json') published = true;
      }
      entries.set(name, { bytes, published });
    }
    return usageOf(entries);
  }

  /** Records in `<root>/.access/<key>` (outside every artifact folder). */
  accessTracker(opts?: AccessTrackerOptions): AccessTracker {
    return new FsAccessTracker(this.root, opts);
  }

  async ping(): Promise<void> {
    await stat(this.root);
  }

  /** Free bytes on the store's filesystem. */
  async freeBytes(): Promise<number> {
    const s = await statfs(this.root);
    return s.bavail * s.bsize;
  }

  /** Nothing to release (the same close() as other stores, so callers need not know the kind). */
  async close(): Promise<void> {}
}
