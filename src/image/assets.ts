/**
 * The files of the base layer, shipped in `assets/image/` (provenance: assets/image/README.md)
 * and pinned here by sha256: the builder reads each file once, checks its hash against the value
 * compiled into this module and only then uses those bytes (never re-reads the file).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../util/errors.js';

/** `assets/image` of this checkout: two levels up from src/image (and from dist/image). */
export const DEFAULT_ASSETS_DIR = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'assets', 'image');

export interface AssetSpec {
  /** File name in the assets directory. */
  file: string;
  /** Where it goes in the image (relative path). */
  path: string;
  sha256: string;
}

/** Pinned assets; `assets/image/SHA256SUMS` lists the same hashes (a unit test keeps them equal). */
export const ASSETS: readonly AssetSpec[] = [
  // caddyserver/dist @ 33ae08ff08d168572df2956ed14fbc4949880d94 config/Caddyfile (the commit the
  // official caddy-docker image pins)
  { file: 'Caddyfile', path: 'etc/caddy/Caddyfile', sha256: '66177d46fa761acb07208065db9b0274cb1b12c02ac43b9bfc9857b698b1ccfe' },
  // caddyserver/dist @ 33ae08ff08d168572df2956ed14fbc4949880d94 welcome/index.html
  { file: 'index.html', path: 'usr/share/caddy/index.html', sha256: '70a45d667679109cd6b25502554597f21536ee995ada0549251167bd171533b9' },
  // Debian 12 ca-certificates 20230311+deb12u1: the bundle update-ca-certificates makes from the package's certificates only
  { file: 'ca-certificates.crt', path: 'etc/ssl/certs/ca-certificates.crt', sha256: 'a3413a37a8e09cc21b2c11c9ffb23d92d2fc9d1933c9e7617f5c4fba4f72d37d' },
  // Debian 12 media-types 10.0.0 /etc/mime.types
  { file: 'mime.types', path: 'etc/mime.types', sha256: 'c78c959dda2bea01af7f1ceab76e50a540dc168459b4d3d9df547f7a24cc386f' },
];

export class AssetChecksumError extends Error {
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`image asset ${file} has sha256 ${actual}, expected ${expected}: refusing to build an image with it (restore it from the repository; see assets/image/README.md)`);
    this.name = 'AssetChecksumError';
  }
}

export interface LoadedAsset extends AssetSpec {
  data: Buffer;
}

/** Reads and verifies every asset; throws `AssetChecksumError` (or the read error, named) on the first bad one. */
export async function loadAssets(dir: string = DEFAULT_ASSETS_DIR, assets: readonly AssetSpec[] = ASSETS): Promise<LoadedAsset[]> {
  const out: LoadedAsset[] = [];
  for (const a of assets) {
    const file = join(dir, a.file);
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch (err) {
      throw new Error(`image asset ${file} cannot be read: ${errorMessage(err)}`);
    }
    const actual = createHash('sha256').update(data).digest('hex');
    if (actual !== a.sha256) throw new AssetChecksumError(file, a.sha256, actual);
    out.push({ ...a, data });
  }
  return out;
}
