/** Last-download times in an S3 store: tiny objects `<prefix>access/<key>`, the LastModified is the time. */
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { isCacheKey } from '../../request/index.js';
import { DebouncedTracker } from '../access.js';
import type { AccessTrackerOptions } from '../types.js';
import type { S3Bucket } from './bucket.js';

/** What an S3AccessTracker needs from its store: one small object per key under one prefix. */
export interface S3AccessRecords {
  put(key: string, body: string): Promise<void>;
  /** Every record: its key and LastModified (one listing, no GET per key). */
  list(): AsyncIterable<{ key: string; time: number }>;
  delete(key: string): Promise<void>;
}

/** Last-download times as tiny objects `<prefix>access/<key>`; an object's LastModified is the time. */
export class S3AccessTracker extends DebouncedTracker {
  readonly kind = 's3';

  constructor(
    private readonly records: S3AccessRecords,
    opts?: AccessTrackerOptions,
  ) {
    super(opts);
  }

  protected async write(key: string, at: number): Promise<void> {
    await this.records.put(key, new Date(at).toISOString());
  }

  protected async readAll(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for await (const r of this.records.list()) out.set(r.key, r.time);
    return out;
  }

  protected async remove(key: string): Promise<void> {
    await this.records.delete(key);
  }
}

/** The access records of a bucket: `<prefix>access/<key>` (outside `artifacts/`). */
export function s3AccessRecords(b: S3Bucket): S3AccessRecords {
  const base = `${b.prefix}access/`;
  return {
    put: async (key, body) => {
      await b.client.send(new PutObjectCommand({ Bucket: b.bucket, Key: base + key, Body: body, ContentType: 'text/plain' }), { abortSignal: AbortSignal.timeout(15_000) });
    },
    list: async function* () {
      for await (const page of b.listPages(base)) {
        for (const o of page) {
          const key = o.Key?.slice(base.length) ?? '';
          if (isCacheKey(key) && o.LastModified) yield { key, time: o.LastModified.getTime() };
        }
      }
    },
    delete: async (key) => {
      await b.client.send(new DeleteObjectCommand({ Bucket: b.bucket, Key: base + key }), { abortSignal: AbortSignal.timeout(15_000) });
    },
  };
}
