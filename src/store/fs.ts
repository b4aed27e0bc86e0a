/**
 * Local-disk store: `<root>/<key>/{binary, meta.json, build.log, buildinfo.json, provenance.json, sbom.json}`.
 * An artifact is assembled in `<root>/.tmp-*` and renamed into place in one step, so a crash
 * never leaves a half artifact visible; leftovers are swept at start.
 *
 * Outside the artifacts (only 64-hex directory names are artifacts, so list(), stats() and
 * usage() never see these): blobs `<root>/blobs/sha256/<hex>` and records
 * `<root>/records/<ns>/<name>.json`, each written to a `.tmp-*` file in its directory, fsynced
 * and renamed into place.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readFile, readdir, rename, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { isCacheKey } from '../request/index.js';
import { copyFromHandle, writeFileAtomic } from '../util/fs.js';
import { FsAccessTracker, usageOf } from './access.js';
import { BlobDigestMismatchError, assertRecordName, digestHex, isRecordName, parseRecord, recordJson, verifyBlobFile } from './blobs.js';
import type { AccessTracker, AccessTrackerOptions, ArtifactMeta, ArtifactStore, ArtifactUsage, BlobInfo, ByteRange, ListedBlob, ListOptions, PutArtifact, StoreStats, StoreUsage } from './types.js';
import { CorruptRecordError, NotFoundError, parseBuildInfo, parseMeta } from './types.js';

export function assertKey(key: string): string {
  if (!isCacheKey(key)) throw new NotFoundError(`artifact "${key.slice(0, 80)}"`);
  return key;
}

/**
 * Copies the binary into the store through one descriptor: opened without following a symbolic
 * link (O_NOFOLLOW; O_NONBLOCK so a FIFO cannot hang the server), checked to be a regular file
 * through that descriptor, and copied from it. Never a hard link: the store's file shares no
 * inode with whatever path it was given (the build's own copy is hashed as it is made, src/runner).
 */
async function copyNoFollow(from: string, to: string): Promise<void> {
  let src: FileHandle;
  try {
    src = await open(from, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new Error(`${from} is a symbolic link: the store copies regular files only; the artifact was not stored`);
    throw err;
  }
  try {
    const st = await src.stat();
    if (!st.isFile()) throw new Error(`${from} is not a regular file: the artifact was not stored`);
    const pos = await copyFromHandle(src, to, { createMode: 0o644, mode: 0o755 });
    if (pos !== st.size) throw new Error(`${from} changed while it was copied (${pos} bytes read, ${st.size} expected): the artifact was not stored`);
  } finally {
    await src.close();
  }
}

const isMissing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
};

/** fsyncs a directory so that a rename into it survives a crash (best effort: not every filesystem allows it). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r').catch(() => null);
  if (!fh) return;
  try {
    await fh.sync();
  } catch {
    // EINVAL/EISDIR on some filesystems: nothing more to do.
  } finally {
    await fh.close();
  }
}

/** Removes `.tmp-*` leftovers of interrupted writes in `dir` (absent: nothing to do). */
async function sweepTmp(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith('.tmp-')) await rm(join(dir, name), { recursive: true, force: true });
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
    await sweepTmp(join(root, 'blobs', 'sha256'));
    for (const ns of await readdir(join(root, 'records')).catch(() => [] as string[])) await sweepTmp(join(root, 'records', ns));
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
      if (a.binaryPath) await copyNoFollow(a.binaryPath, join(tmp, 'binary'));
      await writeFile(join(tmp, 'build.log'), a.log);
      if (a.buildInfo !== undefined) await writeFile(join(tmp, 'buildinfo.json'), JSON.stringify(a.buildInfo, null, 2));
      if (a.provenance !== undefined) await writeFile(join(tmp, 'provenance.json'), JSON.stringify(a.provenance, null, 2));
      if (a.sbom !== undefined) await writeFile(join(tmp, 'sbom.json'), JSON.stringify(a.sbom, null, 2));
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

  async getProvenance(key: string): Promise<unknown | null> {
    const text = await readFile(join(this.dir(key), 'provenance.json'), 'utf8').catch(() => null);
    return text === null ? null : parseBuildInfo(key, text, 'provenance.json');
  }

  async getSbom(key: string): Promise<unknown | null> {
    const text = await readFile(join(this.dir(key), 'sbom.json'), 'utf8').catch(() => null);
    return text === null ? null : parseBuildInfo(key, text, 'sbom.json');
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

  // --- blobs: <root>/blobs/sha256/<hex> ---

  private get blobDir(): string {
    return join(this.root, 'blobs', 'sha256');
  }

  /** The path of a blob; throws an InvalidDigestError for anything but `sha256:<64 hex>`. */
  private blobPath(digest: string): string {
    return join(this.blobDir, digestHex(digest));
  }

  async putBlob(digest: string, path: string): Promise<BlobInfo> {
    const hex = digestHex(digest);
    const dest = join(this.blobDir, hex);
    const existing = await this.statBlob(digest);
    if (existing) {
      // Immutable: nothing to write, but a file that is not this blob is still the caller's error.
      await verifyBlobFile(digest, path);
      return existing;
    }
    await mkdir(this.blobDir, { recursive: true });
    // Copy and hash in one pass, so what is published is exactly what was hashed.
    const tmp = join(this.blobDir, `.tmp-${randomBytes(8).toString('hex')}`);
    const h = createHash('sha256');
    let size = 0;
    try {
      const fh = await open(tmp, 'wx', 0o644);
      try {
        for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
          const buf = chunk as Buffer;
          h.update(buf);
          size += buf.length;
          await fh.write(buf);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      const got = h.digest('hex');
      if (got !== hex) throw new BlobDigestMismatchError(digest, `sha256:${got}`, path);
      await rename(tmp, dest);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await syncDir(this.blobDir);
    return { digest, size };
  }

  async statBlob(digest: string): Promise<BlobInfo | null> {
    const path = this.blobPath(digest);
    try {
      const s = await stat(path);
      return s.isFile() ? { digest, size: s.size } : null;
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async openBlob(digest: string, range?: ByteRange): Promise<Readable> {
    const path = this.blobPath(digest);
    const s = await stat(path).catch((err: unknown) => {
      if (isMissing(err)) return null;
      throw err;
    });
    if (!s?.isFile()) throw new NotFoundError(`blob ${digest}`);
    return createReadStream(path, { highWaterMark: 256 * 1024, ...(range ? { start: range.start, end: range.end } : {}) });
  }

  /** The fs store has no URL to offer: blobs are served through the API. */
  async blobUrl(digest: string): Promise<null> {
    digestHex(digest);
    return null;
  }

  async deleteBlob(digest: string): Promise<void> {
    await unlink(this.blobPath(digest)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  }

  async *listBlobs(): AsyncIterable<ListedBlob> {
    for (const name of await readdir(this.blobDir).catch(() => [] as string[])) {
      if (!/^[0-9a-f]{64}$/.test(name)) continue;
      const s = await stat(join(this.blobDir, name)).catch(() => null);
      if (s?.isFile()) yield { digest: `sha256:${name}`, size: s.size, modifiedAt: Math.floor(s.mtimeMs) };
    }
  }

  // --- records: <root>/records/<ns>/<name>.json ---

  private recordPath(ns: string, name: string): string {
    assertRecordName(ns, name);
    return join(this.root, 'records', ns, `${name}.json`);
  }

  async putRecord(ns: string, name: string, value: unknown): Promise<void> {
    const path = this.recordPath(ns, name);
    const text = recordJson(ns, name, value);
    const dir = join(this.root, 'records', ns);
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(path, text);
    await syncDir(dir);
  }

  async getRecord(ns: string, name: string): Promise<unknown | null> {
    const path = this.recordPath(ns, name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isMissing(err)) return null;
      if ((err as NodeJS.ErrnoException).code === 'EISDIR') throw new CorruptRecordError(`${ns}/${name}`, 'record', 'not a file');
      throw err;
    }
    return parseRecord(ns, name, text);
  }

  async listRecords(ns: string): Promise<string[]> {
    assertRecordName(ns);
    const names: string[] = [];
    for (const f of await readdir(join(this.root, 'records', ns)).catch(() => [] as string[])) {
      if (!f.endsWith('.json')) continue;
      const name = f.slice(0, -'.json'.length);
      if (isRecordName(name)) names.push(name);
    }
    return names.sort();
  }

  async deleteRecord(ns: string, name: string): Promise<void> {
    await unlink(this.recordPath(ns, name)).catch((err: unknown) => {
      if (!isMissing(err)) throw err;
    });
  }

  /** Nothing to release (the same close() as other stores, so callers need not know the kind). */
  async close(): Promise<void> {}
}
