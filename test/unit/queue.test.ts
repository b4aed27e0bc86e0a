// Unit tests of the embedded queue (src/queue/local.ts) with a fake processor: each job's
// payload is a small script the fake processor runs, so every test controls when jobs log,
// block, fail or end.
//   node --import tsx --test test/unit/queue.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalQueue, type FinalState, type JobEvent, type Processor } from '../../src/queue/index.js';
import type { JobContext } from '../../src/queue/types.js';

type Script = (ctx: JobContext<Script>) => Promise<void>;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}
function deferred<T = void>(): Deferred<T> {
  return Promise.withResolvers<T>();
}

const tick = () => new Promise<void>((r) => setImmediate(r));

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

/** Fails clearly (instead of hanging the run) when a promise does not settle in time. */
function within<T>(what: string, p: Promise<T>, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function collect(it: AsyncIterable<JobEvent>): Promise<JobEvent[]> {
  return within(
    'the end of a follow()',
    (async () => {
      const out: JobEvent[] = [];
      for await (const e of it) out.push(e);
      return out;
    })(),
  );
}

/** Events without timestamps, for exact comparisons. */
const plain = (events: JobEvent[]) => events.map((e) => (e.type === 'line' ? { type: 'line', seq: e.line.seq, stream: e.line.stream, text: e.line.text } : e));
const texts = (events: JobEvent[]) => events.flatMap((e) => (e.type === 'line' ? [e.line.text] : []));

/** A queue whose processor records calls and runs the payload script. */
function setup(opts: { workers: number; maxLines?: number; lingerMs?: number } = { workers: 1 }) {
  const calls: string[] = [];
  const finished: Array<[string, FinalState, string | undefined]> = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const processor: Processor<Script> = async (ctx) => {
    calls.push(ctx.key);
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    try {
      await ctx.payload(ctx);
    } finally {
      concurrent--;
    }
  };
  const q = new LocalQueue<Script>(processor, { name: 'test', ...opts });
  q.onFinished((key, state, error) => finished.push([key, state, error]));
  const state = async (key: string) => (await q.get(key))?.state;
  return { q, calls, finished, state, maxConcurrent: () => maxConcurrent };
}

/** A script that blocks until released. */
function blocker() {
  const gate = deferred();
  const started = deferred<JobContext<Script>>();
  const script: Script = async (ctx) => {
    started.resolve(ctx);
    await gate.promise;
  };
  return { script, gate, started: within('a job to start', started.promise), release: () => gate.resolve() };
}

/** A script that waits for its abort signal, then throws like a killed build. */
function abortable() {
  const started = deferred<AbortSignal>();
  const script: Script = (ctx) => {
    started.resolve(ctx.signal);
    return new Promise<void>((_, reject) => {
      ctx.signal.addEventListener('abort', () => reject(new Error('the build was canceled')), { once: true });
    });
  };
  return { script, started: within('a job to start', started.promise) };
}

const noop: Script = async () => undefined;

describe('LocalQueue', () => {
  test('rejects a bad worker count', () => {
    assert.throws(() => new LocalQueue<Script>(async () => undefined, { workers: 0 }), /workers/);
    assert.throws(() => new LocalQueue<Script>(async () => undefined, { workers: 1.5 }), /workers/);
  });

  test('one job per key: a second enqueue while queued or running joins the first', async () => {
    const { q, calls, state } = setup({ workers: 2 });
    const b = blocker();
    const second: Script = async () => {
      throw new Error('the second payload must never run');
    };
    const first = await q.enqueue('k', b.script);
    assert.equal(first.created, true);
    assert.equal(first.job.key, 'k');
    assert.equal(first.job.state, 'queued');

    // Still queued (same synchronous turn) and then running: both join.
    const [whileQueued] = await Promise.all([q.enqueue('k2', noop), q.enqueue('k2', second)]);
    assert.equal(whileQueued.created, true);
    await b.started;
    const joined = await q.enqueue('k', second);
    assert.equal(joined.created, false);
    assert.equal(joined.job.state, 'running');
    assert.equal((await q.get('k'))?.payload, b.script, 'the first payload is kept');

    b.release();
    await waitFor('k done', async () => (await state('k')) === 'succeeded');
    await waitFor('k2 done', async () => (await state('k2')) === 'succeeded');
    assert.deepEqual(
      calls.filter((c) => c === 'k'),
      ['k'],
      'processor ran once for k',
    );
    assert.deepEqual(
      calls.filter((c) => c === 'k2'),
      ['k2'],
      'processor ran once for k2',
    );

    // Once finished, the key can be built again.
    const again = await q.enqueue('k', noop);
    assert.equal(again.created, true);
    await waitFor('k rebuilt', async () => calls.filter((c) => c === 'k').length === 2);
    await q.close();
  });

  test('FIFO with one worker: positions 1, 2, 3 that move up as jobs finish', async () => {
    const { q, calls, state } = setup({ workers: 1 });
    const jobs = { A: blocker(), B: blocker(), C: blocker(), D: blocker() };
    await q.enqueue('A', jobs.A.script);
    await jobs.A.started;
    const b = await q.enqueue('B', jobs.B.script);
    const c = await q.enqueue('C', jobs.C.script);
    const d = await q.enqueue('D', jobs.D.script);
    assert.deepEqual([b.job.position, c.job.position, d.job.position], [1, 2, 3]);
    assert.deepEqual([b.job.state, c.job.state, d.job.state], ['queued', 'queued', 'queued']);
    assert.deepEqual(await q.depth(), { queued: 3, running: 1 });
    const snapA = await q.get('A');
    assert.equal(snapA?.state, 'running');
    assert.equal(snapA?.position, undefined, 'a running job has no position');
    assert.equal(snapA?.agent, 'test/local-1');

    const followD = collect(q.follow('D'));

    jobs.A.release();
    await jobs.B.started;
    assert.equal(await state('B'), 'running');
    assert.equal((await q.get('C'))?.position, 1);
    assert.equal((await q.get('D'))?.position, 2);
    assert.deepEqual(await q.depth(), { queued: 2, running: 1 });
    assert.deepEqual(calls, ['A', 'B'], 'C and D wait');

    jobs.B.release();
    await jobs.C.started;
    assert.equal((await q.get('D'))?.position, 1);
    jobs.C.release();
    await jobs.D.started;
    jobs.D.release();
    await waitFor('D done', async () => (await state('D')) === 'succeeded');
    assert.deepEqual(calls, ['A', 'B', 'C', 'D']);
    assert.deepEqual(await q.depth(), { queued: 0, running: 0 });

    // D's follower saw its place move up: 3, 2, 1, then it ran.
    const events = await followD;
    const positions = events.flatMap((e) => (e.type === 'phase' && e.position !== undefined ? [e.position] : []));
    assert.deepEqual(
      positions.filter((p, i) => p !== positions[i - 1]),
      [3, 2, 1],
    );
    const phases = events.flatMap((e) => (e.type === 'phase' ? [e.phase] : []));
    assert.deepEqual(phases.slice(-2), ['resolving', 'done']);
    assert.deepEqual(events.at(-1), { type: 'end', state: 'succeeded' });
    await q.close();
  });

  test('two workers run two jobs at once, never more', async () => {
    const t = setup({ workers: 2 });
    const bs = [blocker(), blocker(), blocker(), blocker()];
    for (const [i, b] of bs.entries()) await t.q.enqueue(`j${i}`, b.script);
    await bs[0]!.started;
    await bs[1]!.started;
    await tick();
    assert.deepEqual(t.calls, ['j0', 'j1']);
    assert.deepEqual(await t.q.depth(), { queued: 2, running: 2 });
    assert.equal((await t.q.get('j3'))?.position, 2);
    for (const b of bs) b.release();
    await waitFor('all done', async () => (await t.q.depth()).running === 0 && (await t.q.depth()).queued === 0);
    assert.equal(t.maxConcurrent(), 2);
    assert.deepEqual(t.calls, ['j0', 'j1', 'j2', 'j3']);
    await t.q.close();
  });

  test('follow() replays every line from seq 0 to a late subscriber, then live lines, then end', async () => {
    const { q } = setup();
    const logged = deferred();
    const gate = deferred();
    await q.enqueue('k', async (ctx) => {
      ctx.log('stdout', 'one');
      ctx.log('stderr', 'two two');
      ctx.phase('building');
      ctx.log('stdout', '');
      logged.resolve();
      await gate.promise;
      ctx.log('stdout', 'four');
      ctx.log('system', 'five');
      // lines() is async in the queue interface; awaiting also copes with a plain array.
      assert.deepEqual(
        (await ctx.lines()).map((l) => l.seq),
        [0, 1, 2, 3, 4],
      );
    });
    await logged.promise;
    const early = collect(q.follow('k'));
    const late = collect(q.follow('k'));
    gate.resolve();
    const expected = [
      { type: 'phase', phase: 'building' },
      { type: 'line', seq: 0, stream: 'stdout', text: 'one' },
      { type: 'line', seq: 1, stream: 'stderr', text: 'two two' },
      { type: 'line', seq: 2, stream: 'stdout', text: '' },
      { type: 'line', seq: 3, stream: 'stdout', text: 'four' },
      { type: 'line', seq: 4, stream: 'system', text: 'five' },
      { type: 'phase', phase: 'done' },
      { type: 'end', state: 'succeeded' },
    ];
    assert.deepEqual(plain(await early), expected);
    assert.deepEqual(plain(await late), expected);

    // After the end, a new follower still gets everything (from memory while it lingers).
    const after = await collect(q.follow('k'));
    assert.deepEqual(plain(after), [{ type: 'phase', phase: 'done' }, ...expected.slice(1, 6), { type: 'end', state: 'succeeded' }]);
    for (const e of after) if (e.type === 'line') assert.ok(!Number.isNaN(Date.parse(e.line.ts)), 'lines carry ISO timestamps');
    const snap = await q.get('k');
    assert.equal(snap?.lines, 5);
    assert.ok(snap?.startedAt && snap.finishedAt && snap.createdAt);
    await q.close();
  });

  test('a follower that subscribes before the job starts gets the whole log', async () => {
    const { q } = setup();
    const b = blocker();
    await q.enqueue('first', b.script);
    await b.started;
    await q.enqueue('k', async (ctx) => {
      for (let i = 0; i < 100; i++) ctx.log('stdout', `line ${i}`);
    });
    const events = collect(q.follow('k'));
    b.release();
    const got = await events;
    assert.deepEqual(
      texts(got),
      Array.from({ length: 100 }, (_, i) => `line ${i}`),
    );
    assert.deepEqual(plain(got)[0], { type: 'phase', phase: 'queued', position: 1 });
    assert.deepEqual(got.at(-1), { type: 'end', state: 'succeeded' });
    await q.close();
  });

  test('fromSeq resumes: while running and after the end', async () => {
    const { q } = setup();
    const logged = deferred();
    const gate = deferred();
    await q.enqueue('k', async (ctx) => {
      for (const t of ['l0', 'l1', 'l2']) ctx.log('stdout', t);
      logged.resolve();
      await gate.promise;
      for (const t of ['l3', 'l4']) ctx.log('stdout', t);
    });
    await logged.promise;
    const from1 = collect(q.follow('k', { fromSeq: 1 }));
    const from4 = collect(q.follow('k', { fromSeq: 4 }));
    gate.resolve();
    assert.deepEqual(texts(await from1), ['l1', 'l2', 'l3', 'l4']);
    assert.deepEqual(texts(await from4), ['l4'], 'a fromSeq ahead of the log skips until it gets there');
    const lines1 = (await from1).flatMap((e) => (e.type === 'line' ? [e.line.seq] : []));
    assert.deepEqual(lines1, [1, 2, 3, 4]);

    const done3 = await collect(q.follow('k', { fromSeq: 3 }));
    assert.deepEqual(texts(done3), ['l3', 'l4']);
    assert.deepEqual(done3.at(-1), { type: 'end', state: 'succeeded' });
    const done9 = await collect(q.follow('k', { fromSeq: 9 }));
    assert.deepEqual(texts(done9), []);
    assert.deepEqual(done9.at(-1), { type: 'end', state: 'succeeded' });
    await q.close();
  });

  test('follow() of an unknown key ends at once; an abort signal stops following', async () => {
    const { q } = setup();
    assert.deepEqual(await collect(q.follow('nope')), []);
    const b = blocker();
    await q.enqueue('k', async (ctx) => {
      ctx.log('stdout', 'before');
      await b.script(ctx);
      ctx.log('stdout', 'after');
    });
    await b.started;
    const ac = new AbortController();
    const events: JobEvent[] = [];
    const following = (async () => {
      for await (const e of q.follow('k', { signal: ac.signal })) events.push(e);
    })();
    await tick();
    ac.abort();
    await following;
    assert.deepEqual(texts(events), ['before']);
    assert.ok(!events.some((e) => e.type === 'end'), 'no end event: the job is still running');
    b.release();
    await waitFor('k done', async () => (await q.get('k'))?.state === 'succeeded');
    assert.deepEqual(texts(events), ['before'], 'nothing after the abort');
    await q.close();
  });

  test('cancel of a queued job: canceled, its processor never runs, positions move up', async () => {
    const { q, calls, finished, state } = setup();
    const a = blocker();
    let bRan = false;
    await q.enqueue('A', a.script);
    await a.started;
    await q.enqueue('B', async () => {
      bRan = true;
    });
    await q.enqueue('C', noop);
    assert.equal((await q.get('C'))?.position, 2);
    const followB = collect(q.follow('B'));
    const followC = collect(q.follow('C'));

    assert.equal(await q.cancel('B'), true);
    const snap = await q.get('B');
    assert.equal(snap?.state, 'canceled');
    assert.equal(snap?.phase, 'canceled');
    assert.equal(snap?.error, 'canceled while queued');
    assert.equal((await q.get('C'))?.position, 1);
    assert.deepEqual(await q.depth(), { queued: 1, running: 1 });
    const events = await followB;
    assert.deepEqual(events.at(-1), { type: 'end', state: 'canceled', error: 'canceled while queued' });
    assert.deepEqual(texts(events), ['fairway: canceled while queued']);

    a.release();
    await waitFor('C done', async () => (await state('C')) === 'succeeded');
    assert.deepEqual(calls, ['A', 'C']);
    assert.equal(bRan, false);
    const positionsC = (await followC).flatMap((e) => (e.type === 'phase' && e.position !== undefined ? [e.position] : []));
    assert.deepEqual(
      positionsC.filter((p, i) => p !== positionsC[i - 1]),
      [2, 1],
      "C's follower is told it moved up",
    );
    assert.deepEqual(
      finished.filter(([k]) => k === 'B'),
      [['B', 'canceled', 'canceled while queued']],
    );
    assert.equal(await q.cancel('B'), false, 'already canceled');
    assert.equal(await q.cancel('C'), false, 'already done');
    assert.equal(await q.cancel('unknown'), false);
    await q.close();
  });

  test('cancel of a running job aborts its signal and ends it canceled', async () => {
    const { q, finished } = setup();
    const job = abortable();
    await q.enqueue('k', job.script);
    const signal = await job.started;
    assert.equal(signal.aborted, false);
    const events = collect(q.follow('k'));
    assert.equal(await q.cancel('k'), true);
    assert.equal(signal.aborted, true);
    const got = await events;
    assert.deepEqual(got.at(-1), { type: 'end', state: 'canceled', error: 'the build was canceled' });
    const snap = await q.get('k');
    assert.equal(snap?.state, 'canceled');
    assert.equal(snap?.error, 'the build was canceled');
    assert.deepEqual(finished, [['k', 'canceled', 'the build was canceled']]);
    await q.close();
  });

  test('a failing processor ends the job failed with its message; the next job still runs', async () => {
    const { q, finished, state } = setup();
    await q.enqueue('bad', async (ctx) => {
      ctx.log('stderr', 'go: build failed');
      throw new Error('xcaddy exited with code 1: go: build failed');
    });
    await q.enqueue('good', noop);
    const events = await collect(q.follow('bad'));
    assert.deepEqual(events.at(-1), { type: 'end', state: 'failed', error: 'xcaddy exited with code 1: go: build failed' });
    const snap = await q.get('bad');
    assert.equal(snap?.state, 'failed');
    assert.equal(snap?.phase, 'failed');
    assert.equal(snap?.error, 'xcaddy exited with code 1: go: build failed');
    await waitFor('good done', async () => (await state('good')) === 'succeeded');
    assert.deepEqual(finished, [
      ['bad', 'failed', 'xcaddy exited with code 1: go: build failed'],
      ['good', 'succeeded', undefined],
    ]);
    await q.close();
  });

  test('phases reported by the processor reach followers and snapshots', async () => {
    const { q } = setup();
    const b = blocker();
    await q.enqueue('k', async (ctx) => {
      ctx.phase('building');
      await b.script(ctx);
      ctx.phase('storing');
    });
    await b.started;
    assert.equal((await q.get('k'))?.phase, 'building');
    const events = collect(q.follow('k'));
    b.release();
    const phases = (await events).flatMap((e) => (e.type === 'phase' ? [e.phase] : []));
    assert.deepEqual(phases, ['building', 'storing', 'done']);
    await q.close();
  });

  test('onFinished is called exactly once per job', async () => {
    const { q, finished } = setup({ workers: 2 });
    const run = abortable();
    const hold = blocker();
    await q.enqueue('ok1', noop);
    await q.enqueue('ok2', noop);
    await q.enqueue('fail', async () => {
      throw new Error('nope');
    });
    await q.enqueue('running', run.script);
    await q.enqueue('hold', hold.script);
    await q.enqueue('queued', noop);
    await run.started;
    await hold.started;
    await q.cancel('queued');
    await q.cancel('running');
    hold.release();
    await waitFor('all finished', () => finished.length >= 6);
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(finished.length, 6);
    const byKey = new Map(finished.map(([k, s]) => [k, s]));
    assert.deepEqual(Object.fromEntries(byKey), {
      ok1: 'succeeded',
      ok2: 'succeeded',
      fail: 'failed',
      running: 'canceled',
      hold: 'succeeded',
      queued: 'canceled',
    });
    // A new job under a finished key is a new job: one more call.
    await q.enqueue('ok1', noop);
    await waitFor('ok1 again', () => finished.length === 7);
    assert.deepEqual(finished.at(-1), ['ok1', 'succeeded', undefined]);
    await q.close();
  });

  test('the log is capped at maxLines with one notice', async () => {
    const { q } = setup({ workers: 1, maxLines: 3 });
    await q.enqueue('k', async (ctx) => {
      for (let i = 0; i < 10; i++) ctx.log('stdout', `l${i}`);
    });
    const events = await collect(q.follow('k'));
    assert.deepEqual(texts(events), ['l0', 'l1', 'l2', 'fairway: log truncated after 3 lines']);
    assert.equal((await q.get('k'))?.lines, 4);
    await q.close();
  });

  test('close() waits for running jobs, cancels queued ones and refuses new ones', async () => {
    const { q, calls } = setup();
    const a = blocker();
    await q.enqueue('A', a.script);
    await a.started;
    await q.enqueue('B', noop);
    let closed = false;
    const closing = q.close().then(() => {
      closed = true;
    });
    for (let i = 0; i < 5; i++) await tick();
    assert.equal(closed, false, 'close() must wait for the running job');
    assert.equal((await q.get('A'))?.state, 'running');
    const b = await q.get('B');
    assert.equal(b?.state, 'canceled');
    assert.match(b?.error ?? '', /shut down/);
    await assert.rejects(q.enqueue('C', noop), /shutting down/);

    a.release();
    await closing;
    assert.equal(closed, true);
    assert.equal((await q.get('A'))?.state, 'succeeded');
    assert.deepEqual(calls, ['A'], 'B and C never ran');
  });

  test('close(graceMs) cancels jobs that outlive the grace period', async () => {
    const { q } = setup();
    const job = abortable();
    await q.enqueue('k', job.script);
    const signal = await job.started;
    const t0 = Date.now();
    await q.close(30);
    assert.ok(Date.now() - t0 >= 25, 'waited for the grace period');
    assert.equal(signal.aborted, true);
    assert.equal((await q.get('k'))?.state, 'canceled');
  });

  test('close() with nothing running returns at once', async () => {
    // Timed against a job of 2 s on the same machine: a close() that waited for anything (the
    // grace period, the finished job's linger) would take about as long, or much longer.
    const { q } = setup();
    const jobMs = 2000;
    let ranMs = 0;
    await q.enqueue('k', async () => {
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, jobMs));
      ranMs = performance.now() - t0;
    });
    await waitFor('k done', async () => (await q.get('k'))?.state === 'succeeded', 5 * jobMs);
    assert.ok(ranMs >= jobMs * 0.9, `the job took its ${jobMs} ms (${ranMs.toFixed(0)} ms)`);
    const t0 = performance.now();
    await q.close();
    const closeMs = performance.now() - t0;
    assert.ok(closeMs < ranMs / 4, `close() took ${closeMs.toFixed(0)} ms, not well under the ${ranMs.toFixed(0)} ms of a job`);
    await assert.rejects(q.enqueue('k', noop), /shutting down/);
  });
});
