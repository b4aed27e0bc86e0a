/** OCI image-spec v1.1 types and media types used by the image builder, and its JSON encoding. */
import { canonicalJson } from '../request/index.js';
import type { OciPlatform } from './platform.js';

export const MEDIA_TYPE = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layoutHeader: 'application/vnd.oci.layout.header.v1+json',
  /** The empty descriptor's media type (image-spec v1.1): the config of an artifact manifest, `{}`. */
  empty: 'application/vnd.oci.empty.v1+json',
} as const;

export const ANNOTATION = {
  created: 'org.opencontainers.image.created',
  version: 'org.opencontainers.image.version',
  source: 'org.opencontainers.image.source',
  title: 'org.opencontainers.image.title',
  description: 'org.opencontainers.image.description',
  url: 'org.opencontainers.image.url',
  documentation: 'org.opencontainers.image.documentation',
  licenses: 'org.opencontainers.image.licenses',
  refName: 'org.opencontainers.image.ref.name',
  fairwayKey: 'dev.fairway.key',
  fairwaySpec: 'dev.fairway.spec',
  /** On a cosign signature or attestation manifest of an image index: the index's digest (src/registry/indexsign.ts). */
  fairwayIndex: 'dev.fairway.index',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: OciPlatform;
  /** image-spec v1.1: the artifact type of the manifest described (referrers API). */
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE.manifest;
  /** image-spec v1.1: set on artifacts (e.g. a Sigstore bundle referrer). */
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  /** image-spec v1.1: the manifest this one refers to (listed by the referrers API under its digest). */
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: typeof MEDIA_TYPE.index;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  created: string;
  architecture: string;
  os: string;
  variant?: string;
  config: {
    Env: string[];
    Cmd: string[];
    WorkingDir: string;
    ExposedPorts: Record<string, Record<string, never>>;
    Labels: Record<string, string>;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: Array<{ created: string; created_by: string; comment?: string }>;
}

/**
 * JSON with object keys sorted at every level and no whitespace: the same document always
 * serialises to the same bytes, hence the same digest. (Arrays keep their order.)
 */
export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
