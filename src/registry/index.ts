/**
 * The OCI registry (pull side of the OCI Distribution Spec v1.1, docs/registry.md): recipes (named
 * plugin sets), tag resolution, and images made on demand from the build cache. Repositories:
 * `caddy` (no plugins), `caddy/<recipe>`, and `caddy/build` (one tag per finished build id). A tag
 * answers an image index over the `imagePlatforms`; for a client with the `build` scope, platforms
 * not built yet are requested as ordinary builds (BuildService.request: the one admission, deduped,
 * cached, logged) and waited for; any other client gets what is built (BuildService.lookup: nothing
 * resolved or queued) or MANIFEST_UNKNOWN saying how to have it built.
 *
 * An image is made once per artifact (src/image buildImage, created = IMAGE_CREATED, a constant),
 * its blobs put into the store (BlobStore) and a record `images/<key>` kept (RecordStore): gzip
 * bytes depend on the Node build, so blobs are never re-encoded and digests stay the same across
 * restarts and hubs. The HTTP side is src/api/registry.ts.
 */
import type { KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { HotCache } from '../hottier/index.js';
import { ANNOTATION, canonicalBytes, MEDIA_TYPE, ociPlatform, platformString, type Descriptor, type ImageIndex, type OciPlatform } from '../image/index.js';
import type { Signer } from '../provenance/index.js';
import { putBytes, SIGNATURES_NS, type ImageRecord, type SignatureRecord } from './images.js';
import { IndexSigner } from './indexsign.js';
import { verifyingStream, verifyWhole, type BuildService, type RequestContext } from '../service/index.js';
import { isCacheKey, type ResolvedSpec } from '../request/index.js';
import type { ArtifactMeta, ArtifactStore, ByteRange } from '../store/index.js';
import { NotFoundError, errorMessage } from '../util/errors.js';
import { ImageMaker } from './maker.js';
import { builtOnly, waitAll, type WaitContext } from './waiting.js';
import { RecipeBook, type Recipe, type RecipeInput, type RecipePlugin } from './recipes.js';
import { DIGEST_RE, MAX_CHILD_MANIFEST, RegistryError, TAG_RE, caddyVersionOfTag, fairwayImageOf, goPlatform, manifestBelongs, parseJson, sha256Hex, type RepoKind } from './oci.js';

/** The spec's error codes (distribution-spec "Error codes"), plus UNAVAILABLE/UNKNOWN for 5xx as distribution answers them. */
/**
 * The `created` time of every image: the Unix epoch, as reproducible image builders (ko, apko,
 * rules_oci) use by default. Any per-server time (the artifact's finishedAt) would differ between
 * two servers that build the same spec, and with it the config, manifest and index digests; the
 * build's own times stay in the build record (/api/builds/:id).
 */
export { RegistryError, goPlatform, type OciErrorCode } from './oci.js';
export { publishImage } from './images.js';

export interface ManifestAnswer {
  mediaType: string;
  digest: string;
  size: number;
  bytes: Buffer;
}

/** The referrers API's answer: an image index of the manifests whose `subject` is the digest. */
export interface ReferrersAnswer {
  index: ImageIndex;
  /** The filters applied (`artifactType`): the `OCI-Filters-Applied` header. */
  filtersApplied: string[];
}

export interface BlobAnswer {
  digest: string;
  size: number;
  /** Opens the bytes, checked against the digest while they stream (a range: after the whole blob was checked). */
  open(range?: ByteRange): Promise<NodeJS.ReadableStream>;
  /** A presigned store URL, when the store gives one. */
  url?(): Promise<string | null>;
}

export interface RegistryOptions {
  service: BuildService;
  store: ArtifactStore;
  /** Recipes from the configuration (`recipes`); recipes put through the API are in the store. */
  recipes: Record<string, RecipeInput>;
  /** `imagePlatforms`: `linux/amd64`, `linux/arm64`, `linux/arm/v7`. */
  platforms: readonly string[];
  /** How long a manifest request waits for builds (`imageWait`). */
  waitMs: number;
  logger: Logger;
  /** The hot tier: blobs served from memory when hot (the same budget as binaries). */
  hot?: HotCache;
  /** Where images are made before their blobs go into the store; default the OS temp dir. */
  tmpDir?: string;
  /**
   * Signs the images this registry makes itself (artifacts without an image yet). Only where this
   * process is the builder (`serve`); a hub never signs, and the images its agents made at build
   * time carry their signatures already.
   */
  signer?: Signer;
  /**
   * Signs the image indexes behind tags (src/registry/indexsign.ts): `signer` is the index key
   * (`serve`: its build key; a hub: `indexSigningKey`), `trusted` the build keys every platform
   * image an index lists must verify with first. Absent: indexes are not signed.
   */
  indexSigning?: { signer: Signer; trusted: readonly KeyObject[] };
  /**
   * The set a recipe tag serves once the watcher promoted one (src/upstream, wired by src/main):
   * `latest` is the newest Caddy promoted, a version its own promoted set, while it is a set of the
   * recipe as it is now. Null (or absent): the tag is built on demand from the recipe, as without watching.
   */
  promoted?: (recipe: Recipe, caddyVersion: string) => Promise<{ caddyVersion: string; plugins: RecipePlugin[] } | null>;
}

/** The registry as the HTTP side sees it. */
export interface ImageRegistry {
  recipes(): Promise<Recipe[]>;
  putRecipe(name: string, input: unknown, ctx: RequestContext): Promise<Recipe>;
  deleteRecipe(name: string): Promise<void>;
  /** Throws NAME_UNKNOWN for a repository that does not exist. */
  tags(repo: string): Promise<string[]>;
  manifest(repo: string, reference: string, ctx: RequestContext, signal?: AbortSignal): Promise<ManifestAnswer>;
  /** OCI 1.1 referrers of a manifest of this repository (an empty index for any other digest); `artifactType` filters. */
  referrers(repo: string, digest: string, artifactType?: string): Promise<ReferrersAnswer>;
  blob(repo: string, digest: string): Promise<BlobAnswer>;
}

/** cosign's tags: the signature (`.sig`) and attestation (`.att`) of manifest `sha256:<hex>`. */
const COSIGN_TAG = /^sha256-([a-f0-9]{64})\.(sig|att)$/;
/** The largest blob read as a manifest (manifests are a few KB). */
const MAX_MANIFEST = 4 * 1024 * 1024;
const MANIFEST_TYPES: readonly string[] = [MEDIA_TYPE.manifest, MEDIA_TYPE.index];
/** How long a manifest read from the store is answered from memory. */
const MEMO_MS = 10_000;
const MEMO_ENTRIES = 512;

export class Registry implements ImageRegistry {
  private readonly log: Logger;
  /** Signatures of the indexes behind tags (indexsign.ts). */
  private readonly indexSigner: IndexSigner;
  /** Images of artifacts, made once (maker.ts). */
  private readonly maker: ImageMaker;
  /** What a tag's builds are waited for with (waiting.ts). */
  private readonly waiting: WaitContext;
  /** Manifests read in the last MEMO_MS (see recentManifest). */
  private readonly manifestMemo = new Map<string, { bytes: Buffer; at: number }>();
  private readonly platforms: Array<{ name: string; go: { os: string; arch: string; arm?: string }; oci: OciPlatform }>;
  /** The recipes: from the configuration and the API (recipes.ts). */
  private readonly book: RecipeBook;

  constructor(private readonly o: RegistryOptions) {
    this.log = o.logger.child({ part: 'registry' });
    this.platforms = o.platforms.map((name) => {
      const go = goPlatform(name);
      return { name, go, oci: ociPlatform(go) };
    });
    this.maker = new ImageMaker({ service: o.service, store: o.store, signer: o.signer, tmpDir: o.tmpDir, log: this.log });
    this.indexSigner = new IndexSigner({ store: o.store, signing: o.indexSigning, tmpDir: o.tmpDir, log: this.log, childManifest: (d: string) => this.childManifest(d) });
    this.waiting = { service: o.service, platforms: this.platforms, waitMs: o.waitMs, log: this.log };
    this.book = new RecipeBook({
      store: o.store,
      recipes: o.recipes,
      check: (input, ctx) => o.service.check(input, ctx),
      platform: this.platforms[0]!.go,
      logger: this.log,
      versions: { moduleVersions: (module, opts, ctx) => o.service.moduleVersions(module, opts, ctx), resolveModule: (module, query) => o.service.resolveModule(module, query) },
    });
  }

  // ---- recipes (recipes.ts) ----

  recipes(): Promise<Recipe[]> {
    return this.book.list();
  }

  putRecipe(name: string, input: unknown, ctx: RequestContext): Promise<Recipe> {
    return this.book.put(name, input, ctx);
  }

  deleteRecipe(name: string): Promise<void> {
    return this.book.delete(name);
  }

  /**
   * What the prebuilds keep built (src/ops Prebuilder, wired by src/main): every recipe (config and
   * API) on every image platform, at its pinned `caddyVersion` or `latest` (the prebuilder puts the
   * freshly listed release in its place). POST /api/builds bodies.
   */
  async prebuildSpecs(): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = [];
    for (const r of await this.recipes()) {
      // Version ranges pinned first (recipes.ts); a recipe whose range admits nothing is left out.
      const plugins = await this.book.pinRanges(r).catch((err: unknown) => {
        this.log.warn({ recipe: r.name, err: errorMessage(err) }, 'prebuilds: a version range of the recipe did not resolve; not prebuilt this time');
        return null;
      });
      if (plugins) for (const p of this.platforms) out.push({ caddyVersion: r.caddyVersion ?? 'latest', ...p.go, plugins });
    }
    return out;
  }

  /** A recipe's exact plugin list now (ranges → newest admitted, `latest` as Go resolves it): RecipeBook.resolve. */
  resolveRecipe(recipe: RecipeInput, opts?: { refresh?: boolean }): Promise<Array<{ module: string; version: string }>> {
    return this.book.resolve(recipe, opts);
  }

  /**
   * After a prebuild was queued: waits for the build, then makes its image, so the first pull of
   * the tag finds it made. Linux builds only; never rejects (the image is made at the first pull).
   */
  async imageWhenBuilt(key: string): Promise<void> {
    try {
      const rec = await this.o.service.waitFor(key);
      if (rec.status !== 'succeeded' || rec.spec.os !== 'linux') return;
      const meta = await this.o.service.meta(key);
      if (meta?.status === 'succeeded') await this.image(meta);
    } catch (err) {
      this.log.warn({ key, err: errorMessage(err) }, 'prebuild: could not make the image now; it is made at the first pull');
    }
  }

  // ---- repositories and tags ----

  /** The plugin set of a repository: `caddy` → none, `caddy/<recipe>` → the recipe's; `caddy/build` → 'build'. */
  private async repoOf(repo: string): Promise<RecipeInput | 'build'> {
    if (repo === 'caddy') return { plugins: [] };
    if (repo === 'caddy/build') return 'build';
    const m = /^caddy\/([^/]+)$/.exec(repo);
    const r = m ? await this.book.get(m[1]!) : null;
    if (!r) throw new RegistryError(404, 'NAME_UNKNOWN', `repository ${JSON.stringify(repo.slice(0, 200))} is not known: pull caddy, caddy/<recipe> (GET /api/recipes) or caddy/build:<build id>`);
    return r;
  }

  async tags(repo: string): Promise<string[]> {
    const kind = await this.repoOf(repo);
    if (kind === 'build') {
      const recs = await this.o.service.list(10_000);
      return recs
        .filter((r) => r.status === 'succeeded' && r.spec.os === 'linux' && !r.rebuildOf)
        .map((r) => r.id)
        .sort();
    }
    const tags = new Set<string>(['latest']);
    if (kind.caddyVersion) {
      tags.add(kind.caddyVersion);
      tags.add(kind.caddyVersion.replace(/^v/, ''));
    } else {
      const list = await this.o.service.versions();
      for (const v of list.versions) {
        tags.add(v.version);
        tags.add(v.version.replace(/^v/, ''));
      }
    }
    return [...tags].filter((t) => TAG_RE.test(t)).sort();
  }

  // ---- manifests ----

  async manifest(repo: string, reference: string, ctx: RequestContext, signal?: AbortSignal): Promise<ManifestAnswer> {
    const kind = await this.repoOf(repo);
    if (reference.startsWith('sha256:') || reference.includes(':')) {
      if (!DIGEST_RE.test(reference)) throw new RegistryError(400, 'DIGEST_INVALID', `reference ${JSON.stringify(reference.slice(0, 100))} is not a sha256 digest (sha256:<64 lowercase hex>)`);
      return this.manifestByDigest(reference, kind, repo);
    }
    if (!TAG_RE.test(reference))
      throw new RegistryError(400, 'MANIFEST_INVALID', `reference ${JSON.stringify(reference.slice(0, 100))} is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) nor a digest`);
    const cosign = COSIGN_TAG.exec(reference);
    if (cosign) return this.cosignManifest(repo, cosign[1]!, cosign[2] as 'sig' | 'att');
    if (kind === 'build') return this.buildManifest(reference);
    const version = caddyVersionOfTag(reference);
    if (!version) throw new RegistryError(404, 'MANIFEST_UNKNOWN', `tag ${reference} of ${repo} is not known: use latest or a Caddy version (2.11.9 or v2.11.9)`);
    if (kind.caddyVersion && version !== 'latest' && version !== kind.caddyVersion) {
      throw new RegistryError(404, 'MANIFEST_UNKNOWN', `${repo} is pinned to Caddy ${kind.caddyVersion}: its tags are latest and ${kind.caddyVersion}`);
    }
    const name = `${repo}:${reference}`;
    // A followed recipe serves what the watcher promoted: a failed candidate never moves its tags.
    const promoted = 'name' in kind && this.o.promoted ? await this.o.promoted(kind as Recipe, version) : null;
    if (promoted) return this.tagIndex({ plugins: promoted.plugins }, promoted.caddyVersion, ctx, signal, name);
    return this.tagIndex(kind, version === 'latest' && kind.caddyVersion ? kind.caddyVersion : version, ctx, signal, name);
  }

  // ---- referrers (OCI 1.1) ----

  /**
   * The manifests whose `subject` is `digest` (the Sigstore bundle referrers of an image, from its
   * signature record), as an image index; under the repository rules of manifests by digest: a
   * digest that is not a manifest of this repository (unknown, another repository's, an index)
   * has no referrers here, and answers an empty index, as the spec asks (never a 404). Each
   * referrer is read (and checked against its digest) and listed only when it is served in this
   * repository and its `subject` is that digest.
   */
  async referrers(repo: string, digest: string, artifactType?: string): Promise<ReferrersAnswer> {
    const kind = await this.repoOf(repo);
    if (!DIGEST_RE.test(digest)) throw new RegistryError(400, 'DIGEST_INVALID', `${JSON.stringify(digest.slice(0, 100))} is not a sha256 digest (sha256:<64 lowercase hex>)`);
    const manifests: Descriptor[] = [];
    const subject = await this.manifestByDigest(digest, kind, repo).catch((err: unknown) => {
      if (err instanceof RegistryError && err.statusCode === 404) return null;
      throw err;
    });
    const key = subject ? fairwayImageOf(parseJson(subject.bytes))?.key : undefined;
    const rec = key ? ((await this.o.store.getRecord(SIGNATURES_NS, key)) as SignatureRecord | null) : null;
    if (rec && rec.manifestDigest === digest && Array.isArray(rec.referrers)) {
      for (const r of rec.referrers) {
        const m = await this.manifestByDigest(r.digest, kind, repo).catch((err: unknown) => {
          if (err instanceof RegistryError && err.statusCode === 404) {
            this.log.warn({ key, referrer: r.digest }, 'a referrer named by a signature record is missing or not of this repository: not listed');
            return null;
          }
          throw err;
        });
        const json = m
          ? (parseJson(m.bytes) as { artifactType?: unknown; config?: { mediaType?: unknown }; subject?: { digest?: unknown }; annotations?: Record<string, string> } | undefined)
          : undefined;
        if (!m || json?.subject?.digest !== digest) continue;
        // The spec: the manifest's artifactType, else its config's media type; and its annotations.
        const type = typeof json.artifactType === 'string' ? json.artifactType : typeof json.config?.mediaType === 'string' ? json.config.mediaType : undefined;
        manifests.push({ mediaType: m.mediaType, digest: m.digest, size: m.size, ...(type ? { artifactType: type } : {}), ...(json.annotations ? { annotations: json.annotations } : {}) });
      }
    }
    const filtered = artifactType !== undefined ? manifests.filter((d) => d.artifactType === artifactType) : manifests;
    return { index: { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests: filtered }, filtersApplied: artifactType !== undefined ? ['artifactType'] : [] };
  }

  /** A manifest or index by digest, served only under a repository it belongs to (manifestBelongs). */
  private async manifestByDigest(digest: string, kind: RepoKind, repo: string): Promise<ManifestAnswer> {
    let bytes = this.recentManifest(digest);
    if (!bytes) {
      const info = await this.o.store.statBlob(digest);
      if (!info || info.size > MAX_MANIFEST) throw new RegistryError(404, 'MANIFEST_UNKNOWN', `no manifest ${digest}`);
      bytes = await this.readBlob(digest, info.size);
      this.rememberManifest(digest, bytes);
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      json = undefined;
    }
    const mediaType = json && typeof json === 'object' ? (json as { mediaType?: unknown }).mediaType : undefined;
    if (typeof mediaType !== 'string' || !MANIFEST_TYPES.includes(mediaType)) throw new RegistryError(404, 'MANIFEST_UNKNOWN', `no manifest ${digest} (that blob is not a manifest)`);
    if (!(await manifestBelongs(json, kind, (d) => this.childManifest(d)))) {
      throw new RegistryError(404, 'MANIFEST_UNKNOWN', `no manifest ${digest} in ${repo.slice(0, 200)} (it is not an image of this repository)`);
    }
    return { mediaType, digest, size: bytes.length, bytes };
  }

  /**
   * Manifests read from the store in the last MEMO_MS, verified against their digest: a pull asks
   * for the same few small documents several times in a row (HEAD, GET, by tag and by digest).
   * Content-addressed, so a remembered one is never stale; at worst it outlives its blob by
   * MEMO_MS, and the client then finds a layer gone (a 404 it retries).
   */
  private recentManifest(digest: string): Buffer | null {
    const m = this.manifestMemo.get(digest);
    if (!m || Date.now() - m.at > MEMO_MS) return null;
    return m.bytes;
  }

  private rememberManifest(digest: string, bytes: Buffer): void {
    if (this.manifestMemo.size >= MEMO_ENTRIES) this.manifestMemo.delete(this.manifestMemo.keys().next().value!);
    this.manifestMemo.set(digest, { bytes, at: Date.now() });
  }

  /** A manifest an index lists, parsed; null when absent, too large or not JSON. */
  private async childManifest(digest: string): Promise<unknown | null> {
    const info = await this.o.store.statBlob(digest);
    if (!info || info.size > MAX_CHILD_MANIFEST) return null;
    try {
      return JSON.parse((await this.readBlob(digest, info.size)).toString('utf8')) as unknown;
    } catch {
      return null;
    }
  }

  /** A whole blob into memory, verified (manifests and indexes only: small). */
  private async readBlob(digest: string, size: number): Promise<Buffer> {
    const chunks: Buffer[] = [];
    const s = verifyingStream(await this.o.store.openBlob(digest), { key: digest, size, sha256: digest.slice(7) }, (e) => this.corrupt(digest, e));
    for await (const c of s) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  private corrupt(digest: string, e: Error): void {
    this.log.error({ digest, err: e.message }, 'a stored blob does not match its digest: deleting it; images using it are made again');
    this.manifestMemo.delete(digest);
    this.o.hot?.deleteBlob(digest);
    void this.o.store.deleteBlob(digest).catch(() => undefined);
  }

  /** `caddy/build:<id>`: the image manifest of one finished linux build. */
  private async buildManifest(id: string): Promise<ManifestAnswer> {
    if (!isCacheKey(id)) throw new RegistryError(404, 'MANIFEST_UNKNOWN', `tag ${id.slice(0, 100)} of caddy/build: use a build id (64 hex digits)`);
    const meta = await this.o.service.meta(id);
    if (meta?.status !== 'succeeded') throw new RegistryError(404, 'MANIFEST_UNKNOWN', `no finished build ${id}`);
    const spec = meta.spec as ResolvedSpec;
    if (spec.os !== 'linux') throw new RegistryError(404, 'MANIFEST_UNKNOWN', `build ${id} is for ${spec.os}; images are Linux images`);
    const rec = await this.image(meta);
    return this.manifestByDigest(rec.manifestDigest, 'build', 'caddy/build');
  }

  /**
   * A tag of `caddy` or `caddy/<recipe>`: every image platform built (or waited for), then their
   * index. A caller that may build (the `build` scope) asks for the builds as POST /api/builds
   * would (BuildService.request: the one admission); any other caller gets what is built, found
   * without resolving anything (BuildService.lookup), and MANIFEST_UNKNOWN saying how to have it
   * built when a platform is not.
   */
  private async tagIndex(recipe: RecipeInput, caddyVersion: string, ctx: RequestContext, signal: AbortSignal | undefined, name: string): Promise<ManifestAnswer> {
    const plugins = await this.book.buildPlugins(recipe, ctx, this.o.service.mayBuild(ctx), name);
    const wanted = this.platforms.map((p) => ({ caddyVersion, ...p.go, plugins }));
    const done = this.o.service.mayBuild(ctx)
      ? await waitAll(this.waiting, await Promise.all(wanted.map((w) => this.o.service.request(w, ctx))), signal)
      : await builtOnly(this.waiting, wanted, ctx, name);
    const records: ImageRecord[] = [];
    for (const rec of done) {
      const meta = await this.o.service.meta(rec.key);
      if (meta?.status !== 'succeeded') throw new RegistryError(503, 'UNAVAILABLE', `build ${rec.id} is no longer in the store; retry`, 5);
      records.push(await this.image(meta));
    }
    const manifests = records
      .map((r) => r.descriptor)
      .sort((a, b) => {
        const pa = a.platform ? platformString(a.platform as OciPlatform) : '';
        const pb = b.platform ? platformString(b.platform as OciPlatform) : '';
        return pa < pb ? -1 : pa > pb ? 1 : 0;
      });
    const index: ImageIndex = { schemaVersion: 2, mediaType: MEDIA_TYPE.index, manifests };
    const bytes = canonicalBytes(index);
    const digest = `sha256:${sha256Hex(bytes)}`;
    await this.putBytes(bytes);
    return { mediaType: MEDIA_TYPE.index, digest, size: bytes.length, bytes };
  }

  /** The image of an artifact: its record when its blobs are all there, else made now (maker.ts). */
  image(meta: ArtifactMeta): Promise<ImageRecord> {
    return this.maker.image(meta);
  }

  /** `sha256-<hex>.sig` / `.att`: cosign's signature or attestation of an image manifest of this repository. */
  private async cosignManifest(repo: string, hex: string, kind: 'sig' | 'att'): Promise<ManifestAnswer> {
    const subject = await this.manifest(repo, `sha256:${hex}`, {}).catch((err: unknown) => {
      if (err instanceof RegistryError && err.statusCode === 404)
        throw new RegistryError(404, 'MANIFEST_UNKNOWN', `no manifest sha256:${hex} in ${repo}, so no ${kind === 'sig' ? 'signature' : 'attestation'} of it`);
      throw err;
    });
    if (subject.mediaType === MEDIA_TYPE.index) {
      const rec = await this.indexSigner.signature(repo, subject);
      return this.manifestByDigest(kind === 'sig' ? rec.sig.digest : rec.att.digest, await this.repoOf(repo), repo);
    }
    let key: unknown;
    try {
      key = (JSON.parse(subject.bytes.toString('utf8')) as { annotations?: Record<string, string> }).annotations?.[ANNOTATION.fairwayKey];
    } catch {
      key = undefined;
    }
    const none = () =>
      new RegistryError(
        404,
        'MANIFEST_UNKNOWN',
        `the image sha256:${hex} has no ${kind === 'sig' ? 'signature' : 'attestation'} (built without a signing key, before signing existed, or its provenance did not verify with this server's key when the image was made: see the server's log)`,
      );
    if (typeof key !== 'string' || !isCacheKey(key)) throw none();
    const rec = (await this.o.store.getRecord(SIGNATURES_NS, key)) as SignatureRecord | null;
    const ref = kind === 'sig' ? rec?.sig : rec?.att;
    if (!rec || rec.manifestDigest !== `sha256:${hex}` || !ref) throw none();
    return this.manifestByDigest(ref.digest, await this.repoOf(repo), repo);
  }

  /** Puts a tag's index into the blob area (once: a blob already there is kept), through a temp dir of its own. */
  private async putBytes(bytes: Buffer): Promise<void> {
    const base = this.o.tmpDir ?? tmpdir();
    await mkdir(base, { recursive: true });
    const dir = await mkdtemp(join(base, 'fairway-index-'));
    try {
      await putBytes(this.o.store, dir, bytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  // ---- blobs ----

  async blob(repo: string, digest: string): Promise<BlobAnswer> {
    await this.repoOf(repo);
    if (!DIGEST_RE.test(digest)) throw new RegistryError(400, 'DIGEST_INVALID', `${JSON.stringify(digest.slice(0, 100))} is not a sha256 digest (sha256:<64 lowercase hex>)`);
    const info = await this.o.store.statBlob(digest);
    if (!info) {
      this.o.hot?.deleteBlob(digest);
      throw new RegistryError(404, 'BLOB_UNKNOWN', `no blob ${digest}`);
    }
    const store = this.o.store;
    const hot = this.o.hot;
    const check = { key: digest, size: info.size, sha256: digest.slice(7) };
    const onCorrupt = (e: Error) => this.corrupt(digest, e);
    const open = async (range?: ByteRange): Promise<NodeJS.ReadableStream> => {
      const missing = (err: unknown) => {
        if (err instanceof NotFoundError) throw new RegistryError(404, 'BLOB_UNKNOWN', `no blob ${digest}`);
        throw err;
      };
      // Hot: from memory (hashed against the digest when it went in); else a fill starts in the background.
      const fromMemory = hot?.openBlob(digest, info.size, async () => verifyingStream(await store.openBlob(digest).catch(missing), check, onCorrupt), range);
      if (fromMemory) return fromMemory;
      if (!range) return verifyingStream(await store.openBlob(digest).catch(missing), check, onCorrupt);
      // A range cannot be checked alone: the whole blob is checked first.
      await verifyWhole(await store.openBlob(digest).catch(missing), check, onCorrupt);
      return store.openBlob(digest, range).catch(missing);
    };
    return { digest, size: info.size, open, ...(store.blobUrl ? { url: () => store.blobUrl!(digest) } : {}) };
  }
}
