/**
 * Helpers for the image tests: stand-in binaries, fixed inputs, a small tar reader written
 * independently of src/image/tar.ts (straight from the ustar/pax definitions), and a way to
 * build an image in a fresh Node process (test/helpers/image-build.ts).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResolvedSpec } from '../../src/request/index.js';

export const ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
export const KEY = '3c5b3f6c0b0a2f1d9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f';
export const CREATED = '2026-11-30T08:15:00Z';

export function specFor(arch = 'amd64', arm?: string): ResolvedSpec {
  return {
    caddyVersion: 'v2.11.9',
    os: 'linux',
    arch,
    ...(arm !== undefined ? { arm } : {}),
    plugins: [{ module: 'github.com/mholt/caddy-l4', version: 'v0.1.2' }],
    toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.7', flags: 'xcaddy-default+sorted-plugins' },
  };
}

const ELF_MACHINE: Record<string, { machine: number; class: 1 | 2 }> = {
  amd64: { machine: 62, class: 2 },
  arm64: { machine: 183, class: 2 },
  arm: { machine: 40, class: 1 },
};

/** A 64-byte little-endian ELF header for `arch` (enough for the builder's sanity check). */
export function elfHeader(arch = 'amd64'): Buffer {
  const m = ELF_MACHINE[arch];
  if (!m) throw new Error(`no test ELF header for ${arch}`);
  const h = Buffer.alloc(64, 0);
  h.write('\x7fELF', 0, 'latin1');
  h[4] = m.class;
  h[5] = 1; // little endian
  h[6] = 1; // version
  h.writeUInt16LE(2, 16); // ET_EXEC
  h.writeUInt16LE(m.machine, 18);
  return h;
}

/** A stand-in "binary": an ELF header, then `size` pseudo-random bytes derived from `seed`. */
export async function fakeBinary(path: string, seed: string, size = 256 * 1024, arch = 'amd64'): Promise<Buffer> {
  const parts: Buffer[] = [elfHeader(arch)];
  let have = 0;
  let block = createHash('sha256').update(seed).digest();
  while (have < size) {
    block = createHash('sha512').update(block).update(seed).digest();
    parts.push(block);
    have += block.length;
  }
  const data = Buffer.concat(parts).subarray(0, 64 + size);
  await writeFile(path, data, { mode: 0o755 });
  return data;
}

/** A big stand-in binary without writing its bytes: an ELF header, then a hole of zeros. */
export async function sparseBinary(path: string, size: number, arch = 'amd64'): Promise<void> {
  const fh = await open(path, 'w', 0o755);
  try {
    await fh.write(elfHeader(arch), 0, 64, 0);
    await fh.truncate(size);
  } finally {
    await fh.close();
  }
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface ParsedEntry {
  /** Full name, pax `path` applied. */
  name: string;
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname: string;
  gname: string;
  linkname: string;
  magic: string;
  version: string;
  checksumOk: boolean;
  /** pax records that applied to this entry (empty when none). */
  pax: Record<string, string>;
  data: Buffer;
}

function cstr(b: Buffer): string {
  const i = b.indexOf(0);
  return b.subarray(0, i === -1 ? b.length : i).toString('utf8');
}

function num(b: Buffer): number {
  const s = cstr(b).trim();
  return s === '' ? 0 : Number.parseInt(s, 8);
}

/**
 * Reads a whole (uncompressed) tar archive. Knows ustar headers and pax `x` headers; `g`
 * (global pax) headers are reported as an error, as is any trailing garbage or a bad checksum.
 */
export function parseTar(tar: Buffer): { entries: ParsedEntry[]; paxHeaders: Array<Record<string, string>>; endBlocks: number } {
  const entries: ParsedEntry[] = [];
  const paxHeaders: Array<Record<string, string>> = [];
  let off = 0;
  let pending: Record<string, string> = {};
  let endBlocks = 0;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) {
      endBlocks++;
      off += 512;
      continue;
    }
    if (endBlocks > 0) throw new Error(`data after an end-of-archive block at ${off}`);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    const size = num(h.subarray(124, 136));
    const typeflag = String.fromCharCode(h[156] as number);
    const dataStart = off + 512;
    const data = tar.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / 512) * 512;
    if (typeflag === 'x') {
      const recs: Record<string, string> = {};
      let p = 0;
      while (p < data.length) {
        const sp = data.indexOf(0x20, p);
        const len = Number(data.subarray(p, sp).toString('ascii'));
        const rec = data.subarray(sp + 1, p + len - 1).toString('utf8');
        const eq = rec.indexOf('=');
        recs[rec.slice(0, eq)] = rec.slice(eq + 1);
        p += len;
      }
      paxHeaders.push(recs);
      pending = { ...pending, ...recs };
      continue;
    }
    if (typeflag === 'g') throw new Error('unexpected global pax header');
    const prefix = cstr(h.subarray(345, 500));
    const base = cstr(h.subarray(0, 100));
    entries.push({
      name: pending.path ?? (prefix ? `${prefix}/${base}` : base),
      typeflag,
      mode: num(h.subarray(100, 108)),
      uid: num(h.subarray(108, 116)),
      gid: num(h.subarray(116, 124)),
      size,
      mtime: num(h.subarray(136, 148)),
      uname: cstr(h.subarray(265, 297)),
      gname: cstr(h.subarray(297, 329)),
      linkname: cstr(h.subarray(157, 257)),
      magic: h.subarray(257, 263).toString('latin1'),
      version: h.subarray(263, 265).toString('latin1'),
      checksumOk: num(h.subarray(148, 156)) === sum,
      pax: pending,
      data: Buffer.from(data),
    });
    pending = {};
  }
  if (off !== tar.length) throw new Error(`tar length ${tar.length} is not a whole number of blocks`);
  return { entries, paxHeaders, endBlocks };
}

export interface ChildBuildResult {
  manifestDigest: string;
  configDigest: string;
  layers: Array<{ digest: string; diffId: string; size: number }>;
  maxRssKb: number;
}

/** Builds an image in a new Node process (tsx), with the same options as buildImage. */
export async function buildInChild(opts: Record<string, unknown>): Promise<ChildBuildResult> {
  const script = join(ROOT, 'test', 'helpers', 'image-build.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(opts)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  if (code !== 0) throw new Error(`image-build child failed (${code}): ${err}`);
  return JSON.parse(out) as ChildBuildResult;
}

/** The bytes of a blob of a blob dir, checked against its name. */
export async function readBlob(blobDir: string, digest: string): Promise<Buffer> {
  const hex = digest.replace(/^sha256:/, '');
  const data = await readFile(join(blobDir, 'sha256', hex));
  if (sha256(data) !== hex) throw new Error(`blob ${digest} does not match its name`);
  return data;
}

/** bwrap arguments that run a program of an unpacked rootfs with that rootfs as `/`: no host files, no network unless `net`. */
export function inRootfs(rootfs: string, env: string[], args: string[], opts: { net?: boolean } = {}): string[] {
  return [
    '--bind',
    rootfs,
    '/',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    '--unshare-all',
    ...(opts.net ? ['--share-net'] : []),
    '--die-with-parent',
    '--clearenv',
    ...env.flatMap((kv) => {
      const i = kv.indexOf('=');
      return ['--setenv', kv.slice(0, i), kv.slice(i + 1)];
    }),
    '--chdir',
    '/srv',
    ...args,
  ];
}
