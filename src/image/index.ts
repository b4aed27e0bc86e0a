/**
 * Deterministic OCI images of a Caddy binary, laid out like the official Caddy image
 * (docs/images.md): a base layer shared by every image (Caddyfile, welcome page, CA bundle,
 * mime.types, /config /data /srv /tmp) and a layer with /usr/bin/caddy.
 *
 * Same inputs → byte-identical blobs: tar entries sorted with fixed metadata (mtime 0, uid/gid 0),
 * gzip with fixed parameters and header, JSON with sorted keys, and `created` taken from the
 * input (the artifact's build time), never from the clock.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { copyFile, link, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { canonicalSpec, type ResolvedSpec } from '../request/index.js';
import { writeFileAtomic } from '../util/fs.js';
import { loadAssets, DEFAULT_ASSETS_DIR } from './assets.js';
import { blobPath, writeBlob, writeLayerBlob, type LayerBlob } from './blobs.js';
import { ANNOTATION, MEDIA_TYPE, canonicalBytes, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest } from './oci.js';
import { DEFAULT_GOARM, elfMismatch, ociPlatform, platformString, type OciPlatform, type PlatformInput } from './platform.js';
import { tarStream, type TarEntry } from './tar.js';

export { ANNOTATION, MEDIA_TYPE, canonicalBytes, type Descriptor, type ImageIndex, type ImageManifest } from './oci.js';
export { ociPlatform, platformString, type OciPlatform } from './platform.js';

/** mtime of every tar entry (seconds): fixed, so layers do not depend on when they were made. */
export const LAYER_MTIME = 0;

export const IMAGE_PATHS = {
  binary: 'usr/bin/caddy',
  workingDir: '/srv',
} as const;

export const DEFAULT_SOURCE = 'https://github.com/caddyserver/caddy';
export const IMAGE_TITLE = 'Caddy';
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const CMD = ['caddy', 'run', '--config', '/etc/caddy/Caddyfile', '--adapter', 'caddyfile'] as const;
export const EXPOSED_PORTS = ['80/tcp', '443/tcp', '443/udp', '2019/tcp'] as const;

/** Directories of the base layer besides the assets' parents (which get 0755). */
const BASE_DIRS: ReadonlyArray<{ path: string; mode: number }> = [
  { path: 'config', mode: 0o755 },
  { path: 'config/caddy', mode: 0o1777 }, // as the official image: writable by any --user
  { path: 'data', mode: 0o755 },
  { path: 'data/caddy', mode: 0o1777 },
  { path: 'etc', mode: 0o755 },
  { path: 'srv', mode: 0o755 },
  { path: 'tmp', mode: 0o1777 },
  { path: 'usr', mode: 0o755 },
  { path: 'usr/bin', mode: 0o755 },
];

export interface BuildImageOptions {
  /** The Caddy executable; streamed into the binary layer (never read whole into memory). */
  binaryPath: string;
  /** GOOS/GOARCH/GOARM of the binary (only linux). */
  platform: PlatformInput;
  /** Caddy's version, e.g. `v2.11.9` (a missing leading `v` is added). */
  caddyVersion: string;
  /** The build's cache key (64 hex digits): label/annotation `dev.fairway.key`. */
  key: string;
  /** The resolved spec: label/annotation `dev.fairway.spec` (JSON with sorted keys, plugins in the key's order). */
  spec: ResolvedSpec;
  /** When the artifact was built (RFC 3339 string, Date, or ms since the epoch): `created` everywhere. */
  created: string | Date | number;
  /** Where blobs go: `<blobDir>/sha256/<hex>` (for an OCI layout: `<layout>/blobs`). */
  blobDir: string;
  /** When given, the binary's sha256 (hex) must be this, else nothing is published for it. */
  binarySha256?: string;
  /** `org.opencontainers.image.source` (default: Caddy's repository). */
  source?: string;
  /** The assets directory (default `assets/image` of this checkout). */
  assetsDir?: string;
}

export interface ImageLayer {
  mediaType: typeof MEDIA_TYPE.layerGzip;
  /** sha256 of the gzip blob. */
  digest: string;
  /** Bytes of the gzip blob. */
  size: number;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  tarSize: number;
  /** The blob file `<blobDir>/sha256/<hex>`. */
  path: string;
}

export interface BuiltImage {
  platform: OciPlatform;
  manifest: ImageManifest;
  /** The exact bytes whose sha256 is `manifestDigest` (serve these, never a re-serialisation). */
  manifestBytes: Buffer;
  manifestDigest: string;
  /** Descriptor of the manifest, with platform: what an index or index.json lists. */
  descriptor: Descriptor;
  config: ImageConfig;
  configBytes: Buffer;
  configDescriptor: Descriptor;
  /** Base layer first, then the binary layer. */
  layers: ImageLayer[];
  /** sha256 (hex) of the binary as it went into the layer. */
  binarySha256: string;
  blobDir: string;
}

/** RFC 3339 in UTC, whole seconds unless the input had milliseconds. */
export function rfc3339(created: string | Date | number): string {
  const d = created instanceof Date ? created : new Date(created);
  if (typeof created === 'string' && !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(created)) {
    throw new Error(`created must be an RFC 3339 date-time (e.g. 2026-12-01T12:00:00Z), got ${JSON.stringify(created)}`);
  }
  if (!Number.isFinite(d.getTime())) throw new Error(`created is not a valid date: ${String(created)}`);
  return d.toISOString().replace(/\.000Z$/, 'Z');
}

function normalizeVersion(v: string): string {
  if (!/^v?\d+\.\d+\.\d+[0-9A-Za-z.+-]*$/.test(v)) throw new Error(`bad Caddy version ${JSON.stringify(v)}`);
  return v.startsWith('v') ? v : `v${v}`;
}

function layerOf(b: LayerBlob): ImageLayer {
  return { mediaType: MEDIA_TYPE.layerGzip, digest: b.digest, size: b.size, diffId: b.diffId, tarSize: b.tarSize, path: b.path };
}

/** The base layer: the same bytes for every image (it depends on the pinned assets only). */
export async function buildBaseLayer(blobDir: string, assetsDir: string = DEFAULT_ASSETS_DIR): Promise<ImageLayer> {
  const assets = await loadAssets(assetsDir);
  const entries: TarEntry[] = [
    ...BASE_DIRS.filter((d) => d.path !== 'usr/bin').map((d) => ({ path: d.path, type: 'dir' as const, mode: d.mode })),
    ...assets.map((a) => ({ path: a.path, type: 'file' as const, mode: 0o644, source: { kind: 'bytes' as const, data: a.data } })),
  ];
  return layerOf(await writeLayerBlob(blobDir, tarStream(entries, { mtime: LAYER_MTIME })));
}

async function readHead(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, fsConstants.O_RDONLY);
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Checks that the platform in the spec (when it has one) is the image's. */
function checkSpecPlatform(spec: ResolvedSpec, p: PlatformInput): void {
  const s = spec as Partial<ResolvedSpec>;
  if (s.os !== undefined && s.os !== p.os) throw new Error(`spec.os "${s.os}" differs from platform.os "${p.os}"`);
  if (s.arch !== undefined && s.arch !== p.arch) throw new Error(`spec.arch "${s.arch}" differs from platform.arch "${p.arch}"`);
  const arm = p.arm ?? (p.arch === 'arm' ? DEFAULT_GOARM : undefined);
  if (s.arm !== undefined && s.arm !== arm) throw new Error(`spec.arm "${s.arm}" differs from platform.arm "${arm ?? '(none)'}"`);
}

/**
 * Builds the image of one Caddy binary: writes the two layers, the config and the manifest into
 * `blobDir` and returns their descriptors and exact bytes.
 */
export async function buildImage(o: BuildImageOptions): Promise<BuiltImage> {
  const platform = ociPlatform(o.platform);
  checkSpecPlatform(o.spec, o.platform);
  if (!/^[0-9a-f]{64}$/.test(o.key)) throw new Error(`key must be 64 lowercase hex digits, got ${JSON.stringify(o.key)}`);
  if (o.binarySha256 !== undefined && !/^[0-9a-f]{64}$/.test(o.binarySha256)) throw new Error('binarySha256 must be 64 lowercase hex digits');
  const created = rfc3339(o.created);
  const version = normalizeVersion(o.caddyVersion);
  const source = o.source ?? DEFAULT_SOURCE;
  const blobDir = resolve(o.blobDir);

  const st = await stat(o.binaryPath);
  if (!st.isFile()) throw new Error(`${o.binaryPath} is not a regular file`);
  const why = elfMismatch(await readHead(o.binaryPath, 64), o.platform.arch);
  if (why) throw new Error(`${o.binaryPath} is ${why}: not a linux/${o.platform.arch} Caddy binary`);

  const base = await buildBaseLayer(blobDir, o.assetsDir);

  const binHash = createHash('sha256');
  const binEntries: TarEntry[] = [
    { path: 'usr', type: 'dir', mode: 0o755 },
    { path: 'usr/bin', type: 'dir', mode: 0o755 },
    { path: IMAGE_PATHS.binary, type: 'file', mode: 0o755, source: { kind: 'file', path: o.binaryPath, size: st.size, hash: binHash } },
  ];
  let binarySha256 = '';
  const binLayer = layerOf(
    await writeLayerBlob(blobDir, tarStream(binEntries, { mtime: LAYER_MTIME }), () => {
      binarySha256 = binHash.digest('hex');
      if (o.binarySha256 !== undefined && binarySha256 !== o.binarySha256) {
        throw new Error(`${o.binaryPath} has sha256 ${binarySha256}, expected ${o.binarySha256}: no image was made from it`);
      }
    }),
  );
  const layers = [base, binLayer];

  // The plugins in the key's order: the order a recipe or request listed them in changes no byte.
  const specJson = canonicalBytes(canonicalSpec(o.spec)).toString('utf8');
  const labels: Record<string, string> = {
    [ANNOTATION.created]: created,
    [ANNOTATION.version]: version,
    [ANNOTATION.source]: source,
    [ANNOTATION.title]: IMAGE_TITLE,
    [ANNOTATION.description]: 'Caddy web server (custom build by Fairway)',
    [ANNOTATION.url]: 'https://caddyserver.com',
    [ANNOTATION.documentation]: 'https://caddyserver.com/docs',
    [ANNOTATION.licenses]: 'Apache-2.0',
    [ANNOTATION.fairwayKey]: o.key,
    [ANNOTATION.fairwaySpec]: specJson,
  };
  const config: ImageConfig = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: [`PATH=${DEFAULT_PATH}`, 'XDG_CONFIG_HOME=/config', 'XDG_DATA_HOME=/data', `CADDY_VERSION=${version}`],
      Cmd: [...CMD],
      WorkingDir: IMAGE_PATHS.workingDir,
      ExposedPorts: Object.fromEntries(EXPOSED_PORTS.map((p) => [p, {}])),
      Labels: labels,
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: [
      { created, created_by: 'fairway: base files (/etc/caddy/Caddyfile, /usr/share/caddy/index.html, /etc/ssl/certs/ca-certificates.crt, /etc/mime.types, /config, /data, /srv, /tmp)' },
      { created, created_by: `fairway: /usr/bin/caddy (Caddy ${version}, build ${o.key})` },
    ],
  };
  const configBytes = canonicalBytes(config);
  const cfgBlob = await writeBlob(blobDir, configBytes);
  const configDescriptor: Descriptor = { mediaType: MEDIA_TYPE.config, digest: cfgBlob.digest, size: cfgBlob.size };

  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.manifest,
    config: configDescriptor,
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    annotations: { ...labels },
  };
  const manifestBytes = canonicalBytes(manifest);
  const mBlob = await writeBlob(blobDir, manifestBytes);
  return {
    platform,
    manifest,
    manifestBytes,
    manifestDigest: mBlob.digest,
    descriptor: { mediaType: MEDIA_TYPE.manifest, digest: mBlob.digest, size: mBlob.size, platform },
    config,
    configBytes,
    configDescriptor,
    layers,
    binarySha256,
    blobDir,
  };
}

export interface BuiltIndex {
  index: ImageIndex;
  /** The exact bytes whose sha256 is `digest`. */
  bytes: Buffer;
  digest: string;
  size: number;
  descriptor: Descriptor;
  images: BuiltImage[];
}

/**
 * The multi-arch image index of some images (one per platform), sorted by platform so that the
 * same set of images always gives the same index. Pure: `writeOciLayout` (or `writeBlob`) stores it.
 */
export function imageIndex(images: readonly BuiltImage[], annotations?: Record<string, string>): BuiltIndex {
  if (images.length === 0) throw new Error('an image index needs at least one image');
  const sorted = [...images].sort((a, b) => {
    const pa = platformString(a.platform);
    const pb = platformString(b.platform);
    return pa < pb ? -1 : pa > pb ? 1 : 0;
  });
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1] as BuiltImage;
    const b = sorted[i] as BuiltImage;
    if (platformString(a.platform) === platformString(b.platform)) throw new Error(`two images for ${platformString(a.platform)} in one index`);
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPE.index,
    manifests: sorted.map((im) => im.descriptor),
    ...(annotations && Object.keys(annotations).length > 0 ? { annotations } : {}),
  };
  const bytes = canonicalBytes(index);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  return { index, bytes, digest, size: bytes.length, descriptor: { mediaType: MEDIA_TYPE.index, digest, size: bytes.length }, images: sorted };
}

export type LayoutRef = { tag: string; image: BuiltImage } | { tag: string; index: BuiltIndex };

/** OCI Distribution tag grammar. */
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Puts a blob from another blob dir into the layout (hard link, else copy), atomically. */
async function importBlob(fromDir: string, layoutBlobs: string, digest: string): Promise<void> {
  const src = blobPath(fromDir, digest);
  const dst = blobPath(layoutBlobs, digest);
  if (src === dst) return;
  const have = await stat(dst).catch(() => null);
  const want = await stat(src);
  if (have?.isFile() && have.size === want.size) return;
  await mkdir(join(layoutBlobs, 'sha256'), { recursive: true });
  const tmp = join(layoutBlobs, 'sha256', `.tmp-${randomBytes(8).toString('hex')}`);
  try {
    await link(src, tmp).catch(() => copyFile(src, tmp));
    await rename(tmp, dst);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

async function importImage(layoutBlobs: string, im: BuiltImage): Promise<void> {
  for (const d of [im.descriptor, im.configDescriptor, ...im.layers]) await importBlob(im.blobDir, layoutBlobs, d.digest);
}

/**
 * Writes (or updates) an OCI image layout in `dir`: `oci-layout`, `blobs/sha256/…` (the refs'
 * blobs, linked or copied from their blob dirs unless built straight into `<dir>/blobs`) and
 * `index.json` naming each ref by `org.opencontainers.image.ref.name` (entries of other tags
 * already in index.json stay; entries are sorted by tag).
 */
export async function writeOciLayout(dir: string, refs: readonly LayoutRef[]): Promise<{ indexJson: ImageIndex }> {
  const layout = resolve(dir);
  const blobs = join(layout, 'blobs');
  await mkdir(join(blobs, 'sha256'), { recursive: true });
  const seen = new Set<string>();
  const entries: Descriptor[] = [];
  for (const r of refs) {
    if (!TAG_RE.test(r.tag)) throw new Error(`bad tag ${JSON.stringify(r.tag)} (OCI tag grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127})`);
    if (seen.has(r.tag)) throw new Error(`tag ${r.tag} given twice`);
    seen.add(r.tag);
    if ('image' in r) {
      await importImage(blobs, r.image);
      entries.push({ ...r.image.descriptor, annotations: { [ANNOTATION.refName]: r.tag } });
    } else {
      for (const im of r.index.images) await importImage(blobs, im);
      await writeBlob(blobs, r.index.bytes);
      entries.push({ ...r.index.descriptor, annotations: { [ANNOTATION.refName]: r.tag } });
    }
  }
  let kept: Descriptor[] = [];
  const existing = await readFile(join(layout, 'index.json'), 'utf8').catch(() => null);
  if (existing !== null) {
    const old = JSON.parse(existing) as Partial<ImageIndex>;
    kept = (old.manifests ?? []).filter((d) => !seen.has(d.annotations?.[ANNOTATION.refName] ?? ''));
  }
  const all = [...kept, ...entries].sort((a, b) => {
    const ta = a.annotations?.[ANNOTATION.refName] ?? '';
    const tb = b.annotations?.[ANNOTATION.refName] ?? '';
    return ta < tb ? -1 : ta > tb ? 1 : 0;
  });
  const indexJson: ImageIndex = { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: all };
  await writeFileAtomic(join(layout, 'oci-layout'), canonicalBytes({ imageLayoutVersion: '1.0.0' }).toString('utf8'));
  await writeFileAtomic(join(layout, 'index.json'), canonicalBytes(indexJson).toString('utf8'));
  return { indexJson };
}
