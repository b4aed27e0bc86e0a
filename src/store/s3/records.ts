/**
 * The records area of an S3 store: `<prefix>records/<ns>/<name>.json`, each one PutObject (atomic:
 * readers see the old document or the new one). Outside `artifacts/`.
 */
import { assertRecordName, isRecordName, parseRecord, recordJson } from '../blobs.js';
import { type S3Bucket, describeS3Error, isNotFound } from './bucket.js';

export class S3Records {
  constructor(private readonly b: S3Bucket) {}

  private recordKey(ns: string, name: string): string {
    assertRecordName(ns, name);
    return `${this.b.prefix}records/${ns}/${name}.json`;
  }

  private recordError(op: string, ns: string, name: string, err: unknown): Error {
    return new Error(`S3 ${op} of record ${ns}/${name} in ${this.b.where} failed: ${describeS3Error(err)}`, { cause: err });
  }

  async putRecord(ns: string, name: string, value: unknown): Promise<void> {
    const Key = this.recordKey(ns, name);
    const body = recordJson(ns, name, value);
    try {
      await this.b.putText(Key, body, 'application/json');
    } catch (err) {
      throw this.recordError('write', ns, name, err);
    }
  }

  async getRecord(ns: string, name: string): Promise<unknown | null> {
    const Key = this.recordKey(ns, name);
    let text: string | null;
    try {
      text = await this.b.getText(Key);
    } catch (err) {
      throw this.recordError('read', ns, name, err);
    }
    return text === null ? null : parseRecord(ns, name, text);
  }

  async listRecords(ns: string): Promise<string[]> {
    assertRecordName(ns);
    const base = `${this.b.prefix}records/${ns}/`;
    const names: string[] = [];
    for await (const page of this.b.listPages(base)) {
      for (const o of page) {
        const rel = o.Key?.startsWith(base) ? o.Key.slice(base.length) : '';
        if (!rel.endsWith('.json')) continue;
        const name = rel.slice(0, -'.json'.length);
        if (isRecordName(name)) names.push(name);
      }
    }
    return names.sort();
  }

  async deleteRecord(ns: string, name: string): Promise<void> {
    const Key = this.recordKey(ns, name);
    try {
      await this.b.delete(Key);
    } catch (err) {
      if (!isNotFound(err)) throw this.recordError('delete', ns, name, err);
    }
  }
}
