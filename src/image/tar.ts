/**
 * A small deterministic tar writer for image layers (POSIX ustar, plus a pax extended header
 * only for a path that does not fit ustar's name/prefix fields).
 *
 * Every header field is fixed except the entry's path, type, mode and size: mtime is the given
 * epoch (default 0), uid/gid 0, uname/gname empty, no atime/ctime, no devices, no links, and
 * the archive ends with exactly two zero blocks. Entries are written in `compareTarPaths` order
 * with every parent directory present, so the same entries always give the same bytes.
 */
import { createReadStream } from 'node:fs';
import type { Hash } from 'node:crypto';

const BLOCK = 512;
/** Largest size an 11-digit octal ustar size field holds (8 GiB - 1). */
const MAX_USTAR_SIZE = 0o77777777777;

export type TarSource =
  | { kind: 'bytes'; data: Buffer }
  /** A file streamed from disk: exactly `size` bytes are read; a file that changed size is an error. */
  | { kind: 'file'; path: string; size: number; hash?: Hash };

export interface TarEntry {
  /** Relative path without leading or trailing slash, e.g. `usr/bin/caddy`. */
  path: string;
  type: 'dir' | 'file';
  /** Permission bits including setuid/setgid/sticky (e.g. 0o1777); nothing else. */
  mode: number;
  /** Content of a file; none for a directory. */
  source?: TarSource;
}

export interface TarOptions {
  /** mtime of every entry, seconds since the epoch (default 0). */
  mtime?: number;
}

/**
 * Orders paths component by component, each compared by its UTF-8 bytes: a directory comes
 * right before its own subtree (`a`, `a/b`, `a-c`; never `a`, `a-c`, `a/b`).
 */
export function compareTarPaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i] as string, 'utf8'), Buffer.from(pb[i] as string, 'utf8'));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

function checkPath(p: string): void {
  if (p === '' || p.startsWith('/') || p.endsWith('/') || p.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    throw new Error(`tar: bad entry path ${JSON.stringify(p)} (want a relative path like "usr/bin/caddy")`);
  }
  if (/[\0]/.test(p)) throw new Error(`tar: NUL in entry path ${JSON.stringify(p)}`);
}

/**
 * The entries to write: validated, missing parent directories added (mode 0755), sorted.
 * A path given twice, or a file used as a parent directory, is refused.
 */
export function normalizeEntries(entries: readonly TarEntry[]): TarEntry[] {
  const byPath = new Map<string, TarEntry>();
  for (const e of entries) {
    checkPath(e.path);
    if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > 0o7777) throw new Error(`tar: bad mode for ${e.path}`);
    if (e.type === 'file' && !e.source) throw new Error(`tar: file ${e.path} has no content`);
    if (e.type === 'dir' && e.source) throw new Error(`tar: directory ${e.path} has content`);
    if (byPath.has(e.path)) throw new Error(`tar: duplicate entry ${e.path}`);
    byPath.set(e.path, e);
  }
  for (const e of [...byPath.values()]) {
    const parts = e.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      const have = byPath.get(dir);
      if (!have) byPath.set(dir, { path: dir, type: 'dir', mode: 0o755 });
      else if (have.type !== 'dir') throw new Error(`tar: ${dir} is a file but ${e.path} is inside it`);
    }
  }
  return [...byPath.values()].sort((a, b) => compareTarPaths(a.path, b.path));
}

function octal(value: number, width: number): string {
  // width - 1 digits, then NUL.
  const s = value.toString(8);
  if (s.length > width - 1) throw new Error(`tar: ${value} does not fit a ${width}-byte field`);
  return `${s.padStart(width - 1, '0')}\0`;
}

function put(buf: Buffer, offset: number, width: number, s: string | Buffer): void {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  if (b.length > width) throw new Error('tar: header field overflow');
  b.copy(buf, offset);
}

/** Splits a ustar name into prefix (≤155 bytes) and name (≤100 bytes), or null when impossible. */
function splitUstarName(name: string): { prefix: string; name: string } | null {
  // Non-ASCII goes through pax, which is defined as UTF-8.
  if (!/^[\x20-\x7e]*$/.test(name)) return null;
  if (name.length <= 100) return { prefix: '', name };
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (prefix.length <= 155 && rest.length <= 100 && rest.length > 0) return { prefix, name: rest };
  }
  return null;
}

function header(fields: { name: string; prefix: string; mode: number; size: number; mtime: number; typeflag: string }): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  put(h, 0, 100, fields.name);
  put(h, 100, 8, octal(fields.mode, 8));
  put(h, 108, 8, octal(0, 8)); // uid
  put(h, 116, 8, octal(0, 8)); // gid
  put(h, 124, 12, octal(fields.size, 12));
  put(h, 136, 12, octal(fields.mtime, 12));
  h.fill(0x20, 148, 156); // checksum counted as spaces
  put(h, 156, 1, fields.typeflag);
  // linkname (157..256) empty
  put(h, 257, 6, 'ustar\0');
  put(h, 263, 2, '00');
  // uname (265..296), gname (297..328) empty: uid/gid decide (OCI layer.md)
  put(h, 329, 8, octal(0, 8)); // devmajor
  put(h, 337, 8, octal(0, 8)); // devminor
  put(h, 345, 155, fields.prefix);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

function paxRecord(key: string, value: string): Buffer {
  // "<len> <key>=<value>\n" where len counts the whole record, its own digits included.
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body, 'utf8');
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return Buffer.from(`${len}${body}`, 'utf8');
}

function padding(size: number): Buffer {
  const rem = size % BLOCK;
  return Buffer.alloc(rem === 0 ? 0 : BLOCK - rem, 0);
}

/** The header block(s) of one entry: a pax `x` header first when the path needs it. */
export function entryHeader(e: TarEntry, size: number, mtime: number): Buffer[] {
  const tarName = e.type === 'dir' ? `${e.path}/` : e.path;
  const typeflag = e.type === 'dir' ? '5' : '0';
  if (size > MAX_USTAR_SIZE) throw new Error(`tar: ${e.path} is larger than 8 GiB`);
  const split = splitUstarName(tarName);
  if (split) return [header({ ...split, mode: e.mode, size, mtime, typeflag })];
  const records = paxRecord('path', tarName);
  const leaf = e.path.split('/').pop() as string;
  const paxName = `PaxHeaders.0/${Buffer.from(leaf, 'utf8')
    .subarray(0, 80)
    .toString('latin1')
    .replace(/[^\x20-\x7e]/g, '_')}`;
  const fallback = splitUstarName(tarName.replace(/[^\x20-\x7e]/g, '_').slice(-100)) ?? { prefix: '', name: '_' };
  return [
    header({ name: paxName, prefix: '', mode: 0o644, size: records.length, mtime, typeflag: 'x' }),
    records,
    padding(records.length),
    header({ ...fallback, mode: e.mode, size, mtime, typeflag }),
  ];
}

/**
 * The tar stream of `entries` (normalised first), as chunks: headers, file contents streamed
 * from disk in 1 MiB reads, padding, and the two zero blocks at the end.
 */
export async function* tarStream(entries: readonly TarEntry[], opts: TarOptions = {}): AsyncGenerator<Buffer> {
  const mtime = opts.mtime ?? 0;
  if (!Number.isInteger(mtime) || mtime < 0) throw new Error(`tar: bad mtime ${mtime}`);
  for (const e of normalizeEntries(entries)) {
    const src = e.source;
    const size = !src ? 0 : src.kind === 'bytes' ? src.data.length : src.size;
    for (const b of entryHeader(e, size, mtime)) if (b.length > 0) yield b;
    if (!src) continue;
    if (src.kind === 'bytes') {
      yield src.data;
    } else {
      let read = 0;
      if (size > 0) {
        for await (const chunk of createReadStream(src.path, { start: 0, end: size - 1, highWaterMark: 1 << 20 })) {
          const b = chunk as Buffer;
          read += b.length;
          src.hash?.update(b);
          yield b;
        }
      }
      if (read !== size) throw new Error(`tar: ${src.path} changed while it was read (${read} bytes, expected ${size})`);
    }
    const pad = padding(size);
    if (pad.length > 0) yield pad;
  }
  yield Buffer.alloc(BLOCK * 2, 0);
}
