/**
 * The BuildQueue contract: what every queue must do, whatever runs it. Run against LocalQueue
 * (test/unit/queue-contract.test.ts) and against BullMqQueue + BullMqWorker on a real Redis
 * (test/integration/queue-contract.test.ts). No Go: each job's payload names a script of this
 * process (both queues run their workers in the test process), so every test decides when a job
 * logs, blocks, fails or ends.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { JobRefused, type BuildQueue, type FinalState, type JobEvent, type Processor } from '../../src/queue/index.js';
import type { JobContext } from '../../src/queue/types.js';

/** A job's payload: JSON (it goes through Redis), naming a script registered in this process. */
export interface ContractJob {
  script: string;
}

export interface QueueUnderTest {
  queue: BuildQueue<ContractJob>;
  /** Stops everything: the queue, and its workers (letting running jobs finish up to `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

export interface QueueImplementation {
  name: string;
  /** A fresh, empty queue whose workers (`workers` at once) run `processor`; `attempts` per job where the queue retries. */
  open(processor: Processor<ContractJob>, opts: { workers: number; attempts: number }): Promise<QueueUnderTest>;
  /** How long anything may take to happen (a job picked up, a cancel seen, an end event delivered). */
  patienceMs: number;
}

type Script = (ctx: JobContext<ContractJob>) => Promise<void>;

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
}
function deferred<T = void>(): Deferred<T> {
  return Promise.withResolvers<T>();
}

/** After each test, jobs still running (a test that failed half-way) are stopped this soon: one failure stays one. */
const CLEANUP_GRACE_MS = 1000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits for `gate`, or for the job's signal (so that a test failing half-way never leaves a job hanging). */
const passGate = (gate: Promise<void>, ctx: JobContext<ContractJob>) =>
  Promise.race([gate, new Promise<void>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted at the gate')), { once: true }))]);

/** Lines a queue writes about a job itself ("fairway: attempt 1 of 3 on agent ..."), as opposed to the job's own. */
const isQueueLine = (text: string) => text.startsWith('fairway: ');
const jobTexts = (events: JobEvent[]) => events.flatMap((e) => (e.type === 'line' && !isQueueLine(e.line.text) ? [e.line.text] : []));
const allTexts = (events: JobEvent[]) => events.flatMap((e) => (e.type === 'line' ? [e.line.text] : []));
const seqs = (events: JobEvent[]) => events.flatMap((e) => (e.type === 'line' ? [e.line.seq] : []));

export function runQueueContract(impl: QueueImplementation): void {
  const patience = impl.patienceMs;

  async function waitFor(what: string, cond: () => boolean | Promise<boolean>): Promise<void> {
    const end = Date.now() + patience;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`${impl.name}: timed out waiting for ${what}`);
      await sleep(10);
    }
  }

  function within<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${impl.name}: timed out waiting for ${what}`)), patience);
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

  /** A fresh queue with a processor that records calls and runs the payload's script. */
  async function setup(opts: { workers?: number; attempts?: number } = {}) {
    const scripts = new Map<string, Script>();
    const calls: string[] = [];
    const finished: Array<[string, FinalState, string | undefined]> = [];
    const processor: Processor<ContractJob> = async (ctx) => {
      calls.push(ctx.key);
      const script = scripts.get(ctx.payload.script);
      if (!script) throw new Error(`no script ${ctx.payload.script}`);
      await script(ctx);
    };
    const under = await impl.open(processor, { workers: opts.workers ?? 1, attempts: opts.attempts ?? 3 });
    const q = under.queue;
    q.onFinished((key, state, error) => finished.push([key, state, error]));
    const job = (script: Script): ContractJob => {
      const id = randomUUID();
      scripts.set(id, script);
      return { script: id };
    };
    const state = async (key: string) => (await q.get(key))?.state;
    const ended = (key: string, s: FinalState) => waitFor(`${key} ${s}`, async () => (await state(key)) === s);
    return { q, under, calls, finished, job, state, ended };
  }

  type Setup = Awaited<ReturnType<typeof setup>>;

  /** Runs `body` on a fresh queue, then closes it; a close() that hangs after a failure does not hide the failure. */
  async function withQueue(opts: { workers?: number; attempts?: number }, body: (t: Setup) => Promise<void>): Promise<void> {
    const t = await setup(opts);
    let failed = true;
    try {
      await body(t);
      failed = false;
    } finally {
      const closing = within('close() after the test', t.under.close(CLEANUP_GRACE_MS));
      if (failed) await closing.catch(() => undefined);
      else await closing;
    }
  }

  /** A script that blocks until released. */
  function blocker(before?: (ctx: JobContext<ContractJob>) => void) {
    const gate = deferred();
    const started = deferred<JobContext<ContractJob>>();
    let done = false;
    const script: Script = async (ctx) => {
      before?.(ctx);
      started.resolve(ctx);
      await passGate(gate.promise, ctx);
      done = true;
    };
    return { script, started: within('a job to start', started.promise), release: () => gate.resolve(), done: () => done };
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
  const mustNotRun: Script = async () => {
    throw new Error('this payload must never run');
  };

  describe(`BuildQueue contract: ${impl.name}`, () => {
    test('one build per key: concurrent enqueues create one job (created once), later ones join it; a finished key is queued afresh', async () => {
      await withQueue({ workers: 2 }, async (t) => {
        const b = blocker();
        const first = t.job(b.script);
        const answers = await Promise.all(Array.from({ length: 8 }, () => t.q.enqueue('k', first)));
        assert.equal(answers.filter((a) => a.created).length, 1, `exactly one enqueue created the job: ${JSON.stringify(answers.map((a) => a.created))}`);
        for (const a of answers) assert.equal(a.job.key, 'k');
        await b.started;
        const joined = await t.q.enqueue('k', t.job(mustNotRun));
        assert.equal(joined.created, false);
        assert.equal(joined.job.state, 'running');
        assert.deepEqual((await t.q.get('k'))?.payload, first, 'the first payload is kept');
        b.release();
        await t.ended('k', 'succeeded');
        assert.deepEqual(t.calls, ['k'], 'the processor ran once');

        const again = await t.q.enqueue('k', t.job(noop));
        assert.equal(again.created, true, 'a finished key is a new job');
        await waitFor('k built again', () => t.calls.length === 2);
        await t.ended('k', 'succeeded');
      });
    });

    test('status and progress: queued with positions, running with its phase and agent, succeeded with its times; depth and agents', async () => {
      await withQueue({ workers: 1 }, async (t) => {
        const a = blocker((ctx) => ctx.phase('building'));
        const enqA = await t.q.enqueue('A', t.job(a.script));
        assert.equal(enqA.created, true);
        assert.ok(['queued', 'running'].includes(enqA.job.state), enqA.job.state);
        assert.ok(!Number.isNaN(Date.parse(enqA.job.createdAt)));
        await a.started;
        const b = await t.q.enqueue('B', t.job(noop));
        const c = await t.q.enqueue('C', t.job(noop));
        assert.deepEqual([b.job.state, c.job.state], ['queued', 'queued']);
        assert.deepEqual([b.job.position, c.job.position], [1, 2]);
        assert.equal(b.job.phase, 'queued');
        assert.deepEqual(await t.q.depth(), { queued: 2, running: 1 });
        // The jobs in flight, running first, then in queue order, with their payloads; limited.
        const active = await t.q.active(10);
        assert.deepEqual(
          active.map((j) => [j.key, j.state, j.position]),
          [
            ['A', 'running', undefined],
            ['B', 'queued', 1],
            ['C', 'queued', 2],
          ],
        );
        assert.deepEqual(active[1]!.payload, (await t.q.get('B'))!.payload);
        assert.deepEqual(
          (await t.q.active(2)).map((j) => j.key),
          ['A', 'B'],
        );
        assert.deepEqual(await t.q.active(0), []);

        await waitFor('A reports its phase', async () => (await t.q.get('A'))?.phase === 'building');
        const snapA = await t.q.get('A');
        assert.equal(snapA?.state, 'running');
        assert.equal(snapA?.position, undefined, 'a running job has no position');
        assert.ok(snapA?.agent, 'a running job names its worker');
        assert.ok(snapA?.startedAt && !snapA.finishedAt);
        await waitFor('the agent list shows A running', async () => (await t.q.agents()).some((ag) => ag.jobs.includes('A')));
        const agents = await t.q.agents();
        assert.ok(agents.length >= 1);
        assert.equal(
          agents.reduce((n, ag) => n + ag.concurrency, 0),
          1,
          'one worker in all',
        );

        a.release();
        await t.ended('C', 'succeeded');
        const snapC = await t.q.get('C');
        assert.equal(snapC?.phase, 'done');
        assert.equal(snapC?.position, undefined);
        assert.ok(snapC?.createdAt && snapC.startedAt && snapC.finishedAt);
        assert.ok(Date.parse(snapC.finishedAt) >= Date.parse(snapC.startedAt));
        assert.equal(snapC.error, undefined);
        assert.deepEqual(t.calls, ['A', 'B', 'C'], 'first in, first out');
        await waitFor('depth back to 0', async () => JSON.stringify(await t.q.depth()) === JSON.stringify({ queued: 0, running: 0 }));
        assert.deepEqual(await t.q.active(10), [], 'nothing in flight');
      });
    });

    test('logs: every line numbered from 0, replayed to late followers and from fromSeq, live lines, then the end', async () => {
      await withQueue({}, async (t) => {
        const logged = deferred();
        const gate = deferred();
        let seen: number[] = [];
        await t.q.enqueue(
          'k',
          t.job(async (ctx) => {
            ctx.log('stdout', 'one');
            ctx.log('stderr', 'two two');
            ctx.phase('building');
            ctx.log('stdout', '');
            logged.resolve();
            await passGate(gate.promise, ctx);
            ctx.log('stdout', 'four');
            ctx.log('system', 'five');
            seen = (await ctx.lines()).map((l) => l.seq);
          }),
        );
        await logged.promise;
        const early = collect(t.q.follow('k'));
        await sleep(50);
        const from2 = collect(t.q.follow('k', { fromSeq: 2 }));
        await sleep(50);
        gate.resolve();
        const all = await early;
        assert.deepEqual(jobTexts(all), ['one', 'two two', '', 'four', 'five']);
        const n = seqs(all).length;
        assert.deepEqual(
          seqs(all),
          Array.from({ length: n }, (_, i) => i),
          'seq numbers are 0, 1, 2, ... without gaps',
        );
        assert.deepEqual(seen, seqs(all), 'ctx.lines() holds every line logged so far');
        for (const e of all) if (e.type === 'line') assert.ok(!Number.isNaN(Date.parse(e.line.ts)), 'lines carry ISO timestamps');
        const streams = all.flatMap((e) => (e.type === 'line' && !isQueueLine(e.line.text) ? [e.line.stream] : []));
        assert.deepEqual(streams, ['stdout', 'stderr', 'stdout', 'stdout', 'system']);
        assert.ok(
          all.some((e) => e.type === 'phase' && e.phase === 'building'),
          'phases reach followers',
        );
        assert.deepEqual(all.at(-1), { type: 'end', state: 'succeeded' });
        assert.equal(all.filter((e) => e.type === 'end').length, 1);

        const resumed = await from2;
        assert.deepEqual(allTexts(resumed), allTexts(all).slice(2), 'fromSeq skips the lines before it');
        assert.deepEqual(resumed.at(-1), { type: 'end', state: 'succeeded' });

        // After the end, a new follower still gets everything, and the end.
        const late = await collect(t.q.follow('k'));
        assert.deepEqual(allTexts(late), allTexts(all));
        assert.deepEqual(late.at(-1), { type: 'end', state: 'succeeded' });
        const late3 = await collect(t.q.follow('k', { fromSeq: 3 }));
        assert.deepEqual(seqs(late3), seqs(all).slice(3));
        assert.equal((await t.q.get('k'))?.lines, n, 'the snapshot counts the lines');
      });
    });

    test('cancel of a queued job: it never runs, ends canceled for followers, listeners and get(); its key can be queued again', async () => {
      await withQueue({ workers: 1 }, async (t) => {
        const a = blocker();
        await t.q.enqueue('A', t.job(a.script));
        await a.started;
        await t.q.enqueue('B', t.job(mustNotRun));
        await t.q.enqueue('C', t.job(noop));
        assert.equal((await t.q.get('C'))?.position, 2);
        const followB = collect(t.q.follow('B'));
        await sleep(50);

        assert.equal(await t.q.cancel('B'), true);
        const snap = await t.q.get('B');
        assert.equal(snap?.state, 'canceled');
        assert.equal(snap?.phase, 'canceled');
        assert.equal(snap?.error, 'canceled while queued');
        assert.deepEqual(snap?.payload, (await t.q.get('B'))?.payload);
        assert.equal((await t.q.get('C'))?.position, 1, 'the jobs behind move up');
        assert.deepEqual(await t.q.depth(), { queued: 1, running: 1 });
        const events = await followB;
        assert.deepEqual(events.at(-1), { type: 'end', state: 'canceled', error: 'canceled while queued' });
        assert.deepEqual(allTexts(events), ['fairway: canceled while queued']);
        await waitFor('B reported finished', () => t.finished.some(([k]) => k === 'B'));
        assert.equal(await t.q.cancel('B'), false, 'already canceled');

        a.release();
        await t.ended('C', 'succeeded');
        assert.deepEqual(t.calls, ['A', 'C'], 'B never ran');
        assert.equal(await t.q.cancel('C'), false, 'already done');
        assert.equal(await t.q.cancel('unknown'), false);

        // The canceled key is queued afresh: a new job, with a log of its own.
        const again = await t.q.enqueue(
          'B',
          t.job(async (ctx) => ctx.log('stdout', 'B at last')),
        );
        assert.equal(again.created, true);
        const events2 = await collect(t.q.follow('B'));
        assert.deepEqual(jobTexts(events2), ['B at last']);
        assert.ok(!allTexts(events2).includes('fairway: canceled while queued'), 'nothing of the canceled job is replayed');
        assert.deepEqual(events2.at(-1), { type: 'end', state: 'succeeded' });
        await t.ended('B', 'succeeded');
        await sleep(200);
        assert.deepEqual(
          t.finished.filter(([k]) => k === 'B'),
          [
            ['B', 'canceled', 'canceled while queued'],
            ['B', 'succeeded', undefined],
          ],
          'onFinished once per job',
        );
      });
    });

    test('cancel of a running job aborts its signal and ends it canceled with its error, without another attempt', async () => {
      await withQueue({ workers: 1, attempts: 3 }, async (t) => {
        const job = abortable();
        await t.q.enqueue('k', t.job(job.script));
        const signal = await job.started;
        assert.equal(signal.aborted, false);
        const events = collect(t.q.follow('k'));
        assert.equal(await t.q.cancel('k'), true);
        await waitFor('the signal to abort', () => signal.aborted);
        const got = await events;
        assert.deepEqual(got.at(-1), { type: 'end', state: 'canceled', error: 'the build was canceled' });
        await t.ended('k', 'canceled');
        const snap = await t.q.get('k');
        assert.equal(snap?.phase, 'canceled');
        assert.equal(snap?.error, 'the build was canceled');
        await waitFor('k reported finished', () => t.finished.length > 0);
        await sleep(200);
        assert.deepEqual(t.finished, [['k', 'canceled', 'the build was canceled']]);
        assert.deepEqual(t.calls, ['k'], 'a canceled job is not retried');
        assert.equal(await t.q.cancel('k'), false, 'no longer running');
      });
    });

    test('a failing job ends failed with its message on its last attempt; a refused one at once; the next job still runs', async () => {
      await withQueue({ workers: 1, attempts: 1 }, async (t) => {
        await t.q.enqueue(
          'bad',
          t.job(async (ctx) => {
            assert.equal(ctx.finalAttempt, true);
            ctx.log('stderr', 'go: build failed');
            throw new Error('xcaddy exited with code 1: go: build failed');
          }),
        );
        await t.q.enqueue('good', t.job(noop));
        const events = await collect(t.q.follow('bad'));
        assert.deepEqual(events.at(-1), { type: 'end', state: 'failed', error: 'xcaddy exited with code 1: go: build failed' });
        assert.ok(jobTexts(events).includes('go: build failed'));
        await t.ended('bad', 'failed');
        const snap = await t.q.get('bad');
        assert.equal(snap?.phase, 'failed');
        assert.equal(snap?.error, 'xcaddy exited with code 1: go: build failed');
        await t.ended('good', 'succeeded');
        await waitFor('both reported', () => t.finished.length >= 2);
        await sleep(200);
        assert.deepEqual(
          [...t.finished].sort((x, y) => x[0].localeCompare(y[0])),
          [
            ['bad', 'failed', 'xcaddy exited with code 1: go: build failed'],
            ['good', 'succeeded', undefined],
          ],
        );
      });
      await withQueue({ workers: 1, attempts: 3 }, async (r) => {
        await r.q.enqueue(
          'refused',
          r.job(async () => {
            throw new JobRefused('refused job refused: not ours');
          }),
        );
        await r.ended('refused', 'failed');
        assert.equal((await r.q.get('refused'))?.error, 'refused job refused: not ours');
        await sleep(300);
        assert.deepEqual(r.calls, ['refused'], 'a refused job gets no other attempt');
      });
    });

    test('unknown keys: get() is null, cancel() false, follow() ends without events', async () => {
      await withQueue({}, async (t) => {
        assert.equal(await t.q.get('nope'), null);
        assert.equal(await t.q.cancel('nope'), false);
        assert.deepEqual(await collect(t.q.follow('nope')), []);
        assert.deepEqual(await t.q.depth(), { queued: 0, running: 0 });
        await t.q.ping();
      });
    });

    test('close() lets the running job finish, then refuses new jobs', async () => {
      const t = await setup({ workers: 1 });
      const a = blocker();
      await t.q.enqueue('A', t.job(a.script));
      await a.started;
      let closed = false;
      const closing = t.under.close(60_000).then(() => {
        closed = true;
      });
      await sleep(300);
      assert.equal(closed, false, 'close() waits for the running job');
      a.release();
      await within('close()', closing);
      assert.equal(a.done(), true, 'the running job finished');
      await assert.rejects(t.q.enqueue('B', t.job(noop)), /shutting down/);
    });
  });
}
