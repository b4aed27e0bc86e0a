/**
 * The embedded queue's durable journal: one small JSON file per queued or running job in
 * `<dataDir>/queue/`, so jobs survive a crash (kill -9, power loss, OOM) or a shutdown and are
 * re-queued at the next start. Each file is written atomically (temp file, fsync, rename, fsync
 * of the directory) and removed when the job has ended. The payload is opaque: stored as the
 * JSON it serializes to. Writes for one key are applied in the order they were asked for.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import { errorMessage } from '../util/errors.js';

export type JournalState = 'queued' | 'running';

export interface JournalEntry<P = unknown> {
  version: 1;
  key: string;
  /** Order of enqueueing: jobs are re-queued in ascending order. */
  seq: number;
  state: JournalState;
  createdAt: string;
  startedAt?: string;
  payload: P;
}

export interface JournalLoad<P> {
  /** Valid entries, oldest first. */
  entries: JournalEntry<P>[];
  /** Files that could not be read as an entry; moved aside to `<file>.corrupt`. */
  corrupt: Array<{ file: string; error: string }>;
}

const SAFE_NAME = /^[A-Za-z0-9_-]{1,128}$/;

export class QueueJournal<P = unknown> {
  private nextSeq = 1;
  private readonly entries = new Map<string, JournalEntry<P>>();
  private readonly chains = new Map<string, Promise<void>>();

  private constructor(readonly dir: string) {}

  static async open<P>(dir: string): Promise<QueueJournal<P>> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new QueueJournal<P>(dir);
  }

  /** Reads every entry (removing leftover temp files); corrupt ones are moved aside and reported. */
  async load(): Promise<JournalLoad<P>> {
    const entries: JournalEntry<P>[] = [];
    const corrupt: JournalLoad<P>['corrupt'] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const file = join(this.dir, name);
      if (name.startsWith('.tmp-')) {
        // A write that a crash interrupted; gone already (another load) is as good as removed.
        await unlink(file).catch(() => undefined);
        continue;
      }
      if (!name.endsWith('.json')) continue;
      try {
        const entry = parseEntry<P>(await readFile(file, 'utf8'));
        if (this.fileOf(entry.key) !== file) throw new Error(`the file name does not match its key ${JSON.stringify(entry.key.slice(0, 80))}`);
        entries.push(entry);
      } catch (err) {
        corrupt.push({ file, error: errorMessage(err) });
        // Best effort: the entry is reported as corrupt (and skipped) either way.
        await rename(file, `${file}.corrupt`).catch(() => undefined);
      }
    }
    entries.sort((a, b) => a.seq - b.seq);
    for (const e of entries) {
      this.entries.set(e.key, e);
      this.nextSeq = Math.max(this.nextSeq, e.seq + 1);
    }
    return { entries, corrupt };
  }

  /** Records a new job (queued); resolves once it is on disk. */
  add(key: string, payload: P, createdAt: string): Promise<void> {
    const entry: JournalEntry<P> = { version: 1, key, seq: this.nextSeq++, state: 'queued', createdAt, payload };
    this.entries.set(key, entry);
    return this.chain(key, () => this.writeEntry(entry));
  }

  /** Updates a recorded job's state (running when it starts; queued when re-queued). */
  mark(key: string, state: JournalState, startedAt?: string): Promise<void> {
    const cur = this.entries.get(key);
    if (!cur) return Promise.resolve();
    const entry: JournalEntry<P> = { ...cur, state };
    if (startedAt) entry.startedAt = startedAt;
    else delete entry.startedAt;
    this.entries.set(key, entry);
    return this.chain(key, () => this.writeEntry(entry));
  }

  /** Forgets a job (it ended, or its result is in the store). */
  remove(key: string): Promise<void> {
    this.entries.delete(key);
    return this.chain(key, async () => {
      try {
        await unlink(this.fileOf(key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      await this.syncDir();
    });
  }

  /** Resolves when every write asked for so far is done. */
  async flush(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  fileOf(key: string): string {
    const name = SAFE_NAME.test(key) ? key : `h-${createHash('sha256').update(key).digest('hex')}`;
    return join(this.dir, `${name}.json`);
  }

  private chain(key: string, op: () => Promise<void>): Promise<void> {
    const prev = this.chains.get(key) ?? Promise.resolve();
    // The previous write's error belongs to its caller (who got `next`); it does not stop this one.
    const next = prev.catch(() => undefined).then(op);
    const tail = next.catch(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => {
      if (this.chains.get(key) === tail) this.chains.delete(key);
    });
    return next;
  }

  private async writeEntry(entry: JournalEntry<P>): Promise<void> {
    await writeFileAtomic(this.fileOf(entry.key), `${JSON.stringify(entry)}\n`, 0o600);
    await this.syncDir();
  }

  private async syncDir(): Promise<void> {
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}

function parseEntry<P>(text: string): JournalEntry<P> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${errorMessage(err)}`);
  }
  const e = v as Partial<JournalEntry<P>> | null;
  if (!e || typeof e !== 'object' || Array.isArray(e)) throw new Error('not a JSON object');
  if (e.version !== 1) throw new Error(`unknown version ${JSON.stringify(e.version)}`);
  if (typeof e.key !== 'string' || e.key === '') throw new Error('no key');
  if (typeof e.seq !== 'number' || !Number.isSafeInteger(e.seq) || e.seq < 0) throw new Error('no valid seq');
  if (e.state !== 'queued' && e.state !== 'running') throw new Error(`unknown state ${JSON.stringify(e.state)}`);
  if (typeof e.createdAt !== 'string' || Number.isNaN(Date.parse(e.createdAt))) throw new Error('no valid createdAt');
  if (e.startedAt !== undefined && typeof e.startedAt !== 'string') throw new Error('startedAt is not a string');
  if (!('payload' in e) || e.payload === undefined) throw new Error('no payload');
  return e as JournalEntry<P>;
}
