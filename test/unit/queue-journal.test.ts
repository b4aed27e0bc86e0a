// Unit tests of the embedded queue's durable journal (src/queue/journal.ts) and of LocalQueue
// re-queueing from it (restore(), close()): a "crash" is a queue that is dropped without close().
//   node --import tsx --test test/unit/queue-journal.test.ts
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalQueue, QueueJournal } from '../../src/queue/index.js';
import { requeuedLine } from '../../src/queue/local.js';
import type { JobContext } from '../../src/queue/types.js';

interface Payload {
  n: number;
  note: string;
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'fairway-journal-'));
  dirs.push(d);
  return d;
}

const tick = () => new Promise<void>((r) => setImmediate(r));
async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

/** A queue on a journal in `dir` whose jobs block until released (or aborted). */
async function setup(dir: string, workers = 1) {
  const journal = await QueueJournal.open<Payload>(dir);
  const calls: Array<{ key: string; payload: Payload }> = [];
  const release = new Map<string, () => void>();
  const contexts = new Map<string, JobContext<Payload>>();
  const q = new LocalQueue<Payload>(
    async (ctx) => {
      calls.push({ key: ctx.key, payload: ctx.payload });
      contexts.set(ctx.key, ctx);
      await new Promise<void>((resolve, reject) => {
        release.set(ctx.key, resolve);
        ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    },
    { workers, name: 'test', journal, lingerMs: 50 },
  );
  return { q, journal, calls, release, contexts };
}

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir)).sort();
}
async function entry(dir: string, key: string): Promise<any> {
  return JSON.parse(await readFile(join(dir, `${key}.json`), 'utf8'));
}
async function lineTexts(q: LocalQueue<Payload>, key: string): Promise<string[]> {
  const out: string[] = [];
  const ac = new AbortController();
  ac.abort();
  for await (const ev of q.follow(key, { signal: ac.signal })) if (ev.type === 'line') out.push(ev.line.text);
  return out;
}

describe('queue journal', () => {
  test('enqueue writes the entry before answering; start marks it running; the end removes it', async () => {
    const dir = await tempDir();
    const { q, release, calls } = await setup(dir);
    await q.enqueue('a1', { n: 1, note: 'first' });
    // On disk when enqueue() resolves, with the payload as given.
    const e = await entry(dir, 'a1');
    assert.equal(e.key, 'a1');
    assert.deepEqual(e.payload, { n: 1, note: 'first' });
    assert.ok(e.state === 'queued' || e.state === 'running');
    await q.enqueue('b2', { n: 2, note: 'second' });
    assert.equal((await entry(dir, 'b2')).state, 'queued');
    await waitFor('a1 running', () => calls.length === 1);
    await waitFor('a1 marked running', async () => (await entry(dir, 'a1')).state === 'running');
    assert.ok((await entry(dir, 'a1')).startedAt);
    assert.ok((await entry(dir, 'b2')).seq > (await entry(dir, 'a1')).seq);
    release.get('a1')!();
    await waitFor('a1 removed', async () => !(await files(dir)).includes('a1.json'));
    await waitFor('b2 running', () => calls.length === 2);
    release.get('b2')!();
    await waitFor('journal empty', async () => (await files(dir)).length === 0);
    await q.close();
  });

  test('a new queue on the journal re-queues running and queued jobs in order, says so first in their log, and joins later requests', async () => {
    const dir = await tempDir();
    const first = await setup(dir);
    await first.q.enqueue('zz1', { n: 1, note: 'one' });
    await first.q.enqueue('mm2', { n: 2, note: 'two' });
    await first.q.enqueue('aa3', { n: 3, note: 'three' });
    await waitFor('zz1 marked running', async () => (await entry(dir, 'zz1')).state === 'running');
    // Crash: the first queue is dropped without close(); its journal stays as it is.
    const second = await setup(dir);
    const report = await second.q.restore();
    assert.deepEqual(report.requeued, [
      { key: 'zz1', was: 'running' },
      { key: 'mm2', was: 'queued' },
      { key: 'aa3', was: 'queued' },
    ]);
    assert.deepEqual(report.corrupt, []);
    assert.deepEqual(report.dropped, []);
    const job = await second.q.get('zz1');
    assert.ok(job && (job.state === 'queued' || job.state === 'running'));
    assert.deepEqual(job.payload, { n: 1, note: 'one' });
    assert.deepEqual((await lineTexts(second.q, 'zz1'))[0], requeuedLine('running'));
    assert.equal(requeuedLine('running'), 'fairway: re-queued after the server restarted (it was running when the process stopped)');
    assert.deepEqual((await lineTexts(second.q, 'mm2'))[0], requeuedLine('queued'));
    // Dedupe across the restart: the same key joins the re-queued job.
    const joined = await second.q.enqueue('mm2', { n: 99, note: 'again' });
    assert.equal(joined.created, false);
    // They run by themselves, in their original order, with their payloads.
    for (const k of ['zz1', 'mm2', 'aa3']) {
      await waitFor(`${k} running`, () => second.calls.some((c) => c.key === k));
      second.release.get(k)!();
    }
    assert.deepEqual(
      second.calls.map((c) => [c.key, c.payload.n]),
      [
        ['zz1', 1],
        ['mm2', 2],
        ['aa3', 3],
      ],
    );
    await waitFor('journal empty', async () => (await files(dir)).length === 0);
    await second.q.close();
    await first.q.close(0);
  });

  test('a corrupt entry is reported and skipped (moved aside), never fatal; leftover temp files go', async () => {
    const dir = await tempDir();
    const first = await setup(dir);
    await first.q.enqueue('good', { n: 1, note: 'ok' });
    await first.q.close(0);
    await writeFile(join(dir, 'garbage.json'), '{"version":1,"key":"gar');
    await writeFile(join(dir, 'shape.json'), JSON.stringify({ version: 1, key: 'shape', seq: 'x', state: 'queued', createdAt: 'now', payload: {} }));
    await writeFile(join(dir, 'other.json'), JSON.stringify({ version: 1, key: 'notother', seq: 5, state: 'queued', createdAt: new Date().toISOString(), payload: {} }));
    await writeFile(join(dir, '.tmp-abc123'), '{"half": ');
    const second = await setup(dir);
    const report = await second.q.restore();
    assert.deepEqual(report.requeued, [{ key: 'good', was: 'running' }]);
    assert.deepEqual(report.corrupt.map((c) => c.file.split('/').pop()).sort(), ['garbage.json', 'other.json', 'shape.json']);
    assert.match(report.corrupt.find((c) => c.file.endsWith('garbage.json'))!.error, /not JSON/);
    const left = await files(dir);
    assert.ok(!left.includes('.tmp-abc123'), 'temp file removed');
    assert.ok(left.includes('garbage.json.corrupt'), 'moved aside');
    await waitFor('good running', () => second.calls.length === 1);
    second.release.get('good')!();
    await waitFor('good removed', async () => !(await files(dir)).includes('good.json'));
    // A third start does not report the corrupt files again.
    const third = await setup(dir);
    assert.deepEqual((await third.q.restore()).corrupt, []);
    await second.q.close();
    await third.q.close();
  });

  test('jobs whose result is already in the store are dropped from the journal, not run', async () => {
    const dir = await tempDir();
    const first = await setup(dir);
    await first.q.enqueue('done1', { n: 1, note: 'stored' });
    await first.q.enqueue('todo2', { n: 2, note: 'not stored' });
    await waitFor('done1 marked running', async () => (await entry(dir, 'done1')).state === 'running');
    const seen: string[] = [];
    const second = await setup(dir);
    const report = await second.q.restore({
      isDone: async (e) => {
        seen.push(`${e.key}:${e.payload.n}:${e.state}`);
        return e.key === 'done1';
      },
    });
    assert.deepEqual(seen, ['done1:1:running', 'todo2:2:queued']);
    assert.deepEqual(report.dropped, ['done1']);
    assert.deepEqual(report.requeued, [{ key: 'todo2', was: 'queued' }]);
    assert.equal(await second.q.get('done1'), null);
    assert.deepEqual(await files(dir), ['todo2.json']);
    await waitFor('todo2 running', () => second.calls.length === 1);
    assert.deepEqual(
      second.calls.map((c) => c.key),
      ['todo2'],
    );
    second.release.get('todo2')!();
    await waitFor('journal empty', async () => (await files(dir)).length === 0);
    await second.q.close();
    await first.q.close(0);
  });

  test('close() stops running and queued jobs but keeps them in the journal; a canceled job leaves it', async () => {
    const dir = await tempDir();
    const first = await setup(dir);
    await first.q.enqueue('run1', { n: 1, note: 'running' });
    await first.q.enqueue('wait2', { n: 2, note: 'queued' });
    await first.q.enqueue('gone3', { n: 3, note: 'canceled' });
    await waitFor('run1 running', () => first.calls.length === 1);
    assert.equal(await first.q.cancel('gone3'), true);
    await waitFor('gone3 removed', async () => !(await files(dir)).includes('gone3.json'));
    await first.q.close(0);
    assert.equal((await first.q.get('run1'))?.state, 'canceled');
    assert.match((await lineTexts(first.q, 'run1')).join('\n'), /shutting down: stopping the build; it is re-queued/);
    assert.deepEqual(await files(dir), ['run1.json', 'wait2.json']);
    const second = await setup(dir);
    const report = await second.q.restore();
    assert.deepEqual(report.requeued, [
      { key: 'run1', was: 'running' },
      { key: 'wait2', was: 'queued' },
    ]);
    await second.q.close(0);
  });

  test('keys that are not safe file names are stored under a hash', async () => {
    const dir = await tempDir();
    const first = await setup(dir);
    await first.q.enqueue('../x y', { n: 1, note: 'odd' });
    const names = await files(dir);
    assert.equal(names.length, 1);
    assert.match(names[0]!, /^h-[0-9a-f]{64}\.json$/);
    await first.q.close(0);
    const second = await setup(dir);
    assert.deepEqual((await second.q.restore()).requeued, [{ key: '../x y', was: 'running' }]);
    await second.q.close(0);
  });
});
