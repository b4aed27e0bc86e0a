/**
 * The artifacts area of an S3 store:
 *
 *   <prefix>artifacts/<key>/binary          the executable (multipart upload; x-amz-meta-sha256)
 *   <prefix>artifacts/<key>/build.log
 *   <prefix>artifacts/<key>/buildinfo.json
 *   <prefix>artifacts/<key>/provenance.json the DSSE envelope of the build's provenance
 *   <prefix>artifacts/<key>/sbom.json       the DSSE envelope of its SBOM (docs/sbom.md; last but one)
 *   <prefix>artifacts/<key>/meta.json       written LAST: it is what makes the artifact exist
 *
 * S3 has no rename, so atomicity comes from ordering: put() uploads binary, log and build info
 * first and meta.json last; every read (getMeta, list, openBinary, getLog, getBuildInfo) only
 * considers keys whose meta.json exists; delete() removes meta.json first. A crashed agent can
 * leave parts without meta.json behind: they are invisible, and a retry overwrites them.
 * Quarantined artifacts are copied to `<prefix>quarantine/<key>-<time>/`.
 */
import type { Readable } from 'node:stream';
import { CopyObjectCommand } from '@aws-sdk/client-s3';
import { isCacheKey } from '../../request/index.js';
import { usageOf } from '../access.js';
import { hashFile } from '../blobs.js';
import { assertKey } from '../fs.js';
import type { ArtifactMeta, ArtifactUsage, ByteRange, ListOptions, PutArtifact, StoreStats, StoreUsage } from '../types.js';
import { CorruptRecordError, NotFoundError, parseBuildInfo, parseMeta } from '../types.js';
import { type S3Bucket, describeS3Error, mapLimit } from './bucket.js';

/** Names inside one artifact, in upload order (meta.json last). */
const PART_NAMES = ['binary', 'build.log', 'buildinfo.json', 'provenance.json', 'sbom.json'] as const;
type ObjectName = (typeof PART_NAMES)[number] | 'meta.json';

/** A quoted filename for Content-Disposition; anything odd becomes "_". */
function dispositionFor(filename: string): string {
  const safe = filename.replace(/[^A-Za-z0-9._+-]/g, '_').slice(0, 200) || 'caddy';
  return `attachment; filename="${safe}"`;
}

/** `<key>/<name>` (an object name below `<prefix>artifacts/`): its key and name; null for anything else. */
function splitArtifactName(rel: string): { key: string; name: string } | null {
  const slash = rel.indexOf('/');
  if (slash === -1) return null;
  const key = rel.slice(0, slash);
  return isCacheKey(key) ? { key, name: rel.slice(slash + 1) } : null;
}

/** A failed step of put(), with the SDK's error. */
class StepError extends Error {
  constructor(
    readonly step: ObjectName,
    readonly original: unknown,
  ) {
    super(describeS3Error(original));
  }
}

export class S3Artifacts {
  constructor(private readonly b: S3Bucket) {}

  private get base(): string {
    return `${this.b.prefix}artifacts/`;
  }

  private objectKey(key: string, name: ObjectName): string {
    return `${this.base}${key}/${name}`;
  }

  private readError(key: string, name: string, err: unknown): Error {
    return new Error(`S3 read of ${key}/${name} from ${this.b.where} failed: ${describeS3Error(err)}`, { cause: err });
  }

  private async exists(key: string, name: ObjectName): Promise<boolean> {
    try {
      return (await this.b.head(this.objectKey(key, name))) !== null;
    } catch (err) {
      throw this.readError(key, name, err);
    }
  }

  private async getText(key: string, name: ObjectName): Promise<string | null> {
    try {
      return await this.b.getText(this.objectKey(key, name));
    } catch (err) {
      throw this.readError(key, name, err);
    }
  }

  private async putSmall(key: string, name: ObjectName, body: string, contentType: string): Promise<void> {
    try {
      await this.b.putText(this.objectKey(key, name), body, contentType);
    } catch (err) {
      throw new StepError(name, err);
    }
  }

  private async deleteObject(key: string, name: ObjectName): Promise<void> {
    await this.b.delete(this.objectKey(key, name));
  }

  async put(a: PutArtifact): Promise<void> {
    const key = assertKey(a.meta.key);
    let local: { sha256: string; size: number } | undefined;
    if (a.binaryPath) {
      local = await hashFile(a.binaryPath);
      if (a.meta.sha256 !== undefined && a.meta.sha256 !== local.sha256) {
        throw new Error(`integrity check failed for ${key}: meta.sha256 is ${a.meta.sha256} but ${a.binaryPath} hashes to ${local.sha256}; the artifact was not published`);
      }
      if (a.meta.size !== undefined && a.meta.size !== local.size) {
        throw new Error(`integrity check failed for ${key}: meta.size is ${a.meta.size} but ${a.binaryPath} has ${local.size} bytes; the artifact was not published`);
      }
    }

    const metaJson = JSON.stringify(a.meta, null, 2);
    // Everything this attempt may have written, in order; meta.json last.
    const attempted: ObjectName[] = [];
    try {
      if (a.binaryPath && local) {
        attempted.push('binary');
        await this.uploadBinary(key, a.binaryPath, local);
      }
      attempted.push('build.log');
      await this.putSmall(key, 'build.log', a.log, 'text/plain; charset=utf-8');
      if (a.buildInfo !== undefined) {
        attempted.push('buildinfo.json');
        await this.putSmall(key, 'buildinfo.json', JSON.stringify(a.buildInfo, null, 2), 'application/json');
      }
      if (a.provenance !== undefined) {
        attempted.push('provenance.json');
        await this.putSmall(key, 'provenance.json', JSON.stringify(a.provenance, null, 2), 'application/json');
      }
      if (a.sbom !== undefined) {
        attempted.push('sbom.json');
        await this.putSmall(key, 'sbom.json', JSON.stringify(a.sbom, null, 2), 'application/json');
      }
      attempted.push('meta.json');
      await this.putSmall(key, 'meta.json', metaJson, 'application/json');
    } catch (err) {
      const outcome = await this.cleanupFailedPut(key, attempted, metaJson);
      if (outcome !== 'published') {
        const step = err instanceof StepError ? err.step : (attempted.at(-1) ?? 'binary');
        const detail = err instanceof StepError ? err.message : describeS3Error(err);
        throw new Error(`S3 upload of ${key}/${step} to ${this.b.where} failed: ${detail}; the artifact was not published`, {
          cause: err instanceof StepError ? err.original : err,
        });
      }
      // The meta.json PUT reported a failure but landed, after every part: the artifact is complete.
    }

    // Published. Objects of an earlier record that the new one does not have are now stale.
    const stale: ObjectName[] = [];
    if (!a.binaryPath) stale.push('binary');
    if (a.buildInfo === undefined) stale.push('buildinfo.json');
    if (a.provenance === undefined) stale.push('provenance.json');
    if (a.sbom === undefined) stale.push('sbom.json');
    await Promise.all(stale.map((n) => this.deleteObject(key, n).catch(() => undefined)));
  }

  /** Integrity: what the bucket holds after the upload must be what we hashed. */
  private async uploadBinary(key: string, path: string, local: { sha256: string; size: number }): Promise<void> {
    let mismatch: string | null;
    try {
      mismatch = await this.b.upload(this.objectKey(key, 'binary'), path, local);
    } catch (err) {
      throw new StepError('binary', err);
    }
    if (mismatch) throw new StepError('binary', new Error(`integrity check failed: ${mismatch}`));
  }

  /**
   * Best effort after a failed put(): removes what it may have written, without ever breaking the
   * record that is currently published. Returns 'published' when our own meta.json turns out to
   * have landed (a lost response): every part was uploaded before it, so the artifact is complete.
   */
  private async cleanupFailedPut(key: string, attempted: ObjectName[], metaJson: string): Promise<'published' | 'cleaned' | 'left'> {
    try {
      const current = await this.getText(key, 'meta.json');
      if (current !== null && current === metaJson && attempted.includes('meta.json')) return 'published';
      let previous: ArtifactMeta | null = null;
      try {
        previous = current === null ? null : (JSON.parse(current) as ArtifactMeta);
      } catch {
        previous = null; // corrupt: invisible to readers anyway
      }
      // What the published record (if any) refers to must stay.
      const keep = new Set<ObjectName>(previous ? (previous.status === 'succeeded' ? [...PART_NAMES] : ['build.log']) : []);
      const remove = attempted.filter((n) => n !== 'meta.json' && !keep.has(n));
      await Promise.all(remove.map((n) => this.deleteObject(key, n)));
      return 'cleaned';
    } catch {
      // The store is unreachable: the parts stay, invisible without meta.json, and are
      // overwritten by the next attempt.
      return 'left';
    }
  }

  private async getMetaStrict(key: string): Promise<ArtifactMeta | null> {
    const text = await this.getText(key, 'meta.json');
    if (text === null) return null;
    return parseMeta(key, text);
  }

  async getMeta(key: string): Promise<ArtifactMeta | null> {
    if (!isCacheKey(key)) return null;
    return this.getMetaStrict(key);
  }

  async *list(opts: ListOptions = {}): AsyncIterable<ArtifactMeta> {
    const base = this.base;
    for await (const objects of this.b.listPages(base)) {
      const keys: string[] = [];
      for (const obj of objects) {
        const part = obj.Key?.startsWith(base) ? splitArtifactName(obj.Key.slice(base.length)) : null;
        if (part?.name === 'meta.json') keys.push(part.key);
      }
      const metas = await mapLimit(keys, this.b.listConcurrency, (k) =>
        this.getMetaStrict(k).catch((err: unknown) => {
          if (err instanceof CorruptRecordError) {
            opts.onCorrupt?.(k, err);
            return null;
          }
          throw err;
        }),
      );
      for (const meta of metas) if (meta) yield meta;
    }
  }

  /** Throws NotFoundError unless the artifact is published (meta.json exists). */
  private async assertPublished(key: string, what: string): Promise<void> {
    if (!(await this.exists(key, 'meta.json'))) throw new NotFoundError(what);
  }

  async hasBinary(key: string): Promise<boolean> {
    assertKey(key);
    return this.exists(key, 'binary');
  }

  async openBinary(key: string, range?: ByteRange): Promise<Readable> {
    assertKey(key);
    await this.assertPublished(key, `binary of ${key}`);
    let body: Readable | null;
    try {
      body = await this.b.open(this.objectKey(key, 'binary'), range);
    } catch (err) {
      throw this.readError(key, 'binary', err);
    }
    if (!body) throw new NotFoundError(`binary of ${key}`);
    return body;
  }

  async binaryUrl(key: string, filename: string): Promise<string | null> {
    assertKey(key);
    return this.b.presignedGet(this.objectKey(key, 'binary'), dispositionFor(filename));
  }

  private async readPublished(key: string, name: ObjectName): Promise<string | null> {
    assertKey(key);
    const [published, text] = await Promise.all([this.exists(key, 'meta.json'), this.getText(key, name)]);
    return published ? text : null;
  }

  async getLog(key: string): Promise<string | null> {
    return this.readPublished(key, 'build.log');
  }

  async getBuildInfo(key: string): Promise<unknown | null> {
    const text = await this.readPublished(key, 'buildinfo.json');
    return text === null ? null : parseBuildInfo(key, text);
  }

  async getProvenance(key: string): Promise<unknown | null> {
    const text = await this.readPublished(key, 'provenance.json');
    return text === null ? null : parseBuildInfo(key, text, 'provenance.json');
  }

  async getSbom(key: string): Promise<unknown | null> {
    const text = await this.readPublished(key, 'sbom.json');
    return text === null ? null : parseBuildInfo(key, text, 'sbom.json');
  }

  async delete(key: string): Promise<void> {
    assertKey(key);
    try {
      // meta.json first: the artifact disappears for readers in one step.
      await this.deleteObject(key, 'meta.json');
      await Promise.all(PART_NAMES.map((n) => this.deleteObject(key, n)));
    } catch (err) {
      throw new Error(`S3 delete of ${key} in ${this.b.where} failed: ${describeS3Error(err)}`, { cause: err });
    }
  }

  /**
   * Copies the parts that are there to `<prefix>quarantine/<key>-<time>/<name>` (best effort: kept
   * for inspection; a missing binary is simply not copied), then deletes the artifact (meta.json
   * first, as delete()).
   */
  async quarantine(key: string): Promise<void> {
    assertKey(key);
    const base = `${this.b.prefix}quarantine/${key}-${Date.now()}/`;
    const { client, bucket } = this.b;
    await Promise.all(
      (['meta.json', ...PART_NAMES] as ObjectName[]).map((name) =>
        this.b.small((o) => client.send(new CopyObjectCommand({ Bucket: bucket, Key: base + name, CopySource: encodeURI(`${bucket}/${this.objectKey(key, name)}`) }), o)).catch(() => undefined),
      ),
    );
    await this.delete(key);
  }

  /** bytes: every object under `<prefix>artifacts/` (also orphaned parts); objects: published artifacts. */
  async stats(): Promise<StoreStats> {
    let objects = 0;
    let bytes = 0;
    const base = this.base;
    for await (const page of this.b.listPages(base)) {
      for (const obj of page) {
        bytes += obj.Size ?? 0;
        if (obj.Key && splitArtifactName(obj.Key.slice(base.length))?.name === 'meta.json') objects++;
      }
    }
    return { objects, bytes };
  }

  /** One listing of `<prefix>artifacts/`: the sizes of each key's objects. */
  async usage(): Promise<StoreUsage> {
    const entries = new Map<string, ArtifactUsage>();
    const base = this.base;
    for await (const page of this.b.listPages(base)) {
      for (const o of page) {
        const part = splitArtifactName(o.Key?.slice(base.length) ?? '');
        if (!part) continue;
        const e = entries.get(part.key) ?? { bytes: 0, published: false };
        e.bytes += o.Size ?? 0;
        if (part.name === 'meta.json') e.published = true;
        entries.set(part.key, e);
      }
    }
    return usageOf(entries);
  }
}
