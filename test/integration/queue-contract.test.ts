/**
 * The BuildQueue contract (test/helpers/queue-contract.ts) against the distributed queue: a hub's
 * BullMqQueue and an agent's BullMqWorker in this process, on a real Redis (redis-server on
 * loopback, `bash scripts/deps.sh`). Each test gets a fresh key prefix. No Go.
 *   node --import tsx --test test/integration/queue-contract.test.ts
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { BullMqQueue, BullMqWorker, JobRefused, type JobEvent } from '../../src/queue/index.js';
import { runQueueContract, type ContractJob } from '../helpers/queue-contract.js';
import { startRedis, type RedisService } from '../helpers/services.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A pino logger whose records land in an array. */
function capture() {
  const records: Array<{ level: number; msg: string; err?: unknown; key?: string }> = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) records.push(JSON.parse(line) as (typeof records)[number]);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, dest), records, warnings: () => records.filter((r) => r.level === 40) };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('BullMQ on a real Redis', { timeout: 10 * 60_000 }, () => {
  let redis: RedisService;
  let n = 0;
  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    await redis?.destroy();
  });

  runQueueContract({
    name: 'BullMqQueue + BullMqWorker',
    patienceMs: 15_000,
    open: async (processor, { workers, attempts }) => {
      const prefix = `contract${process.pid}-${++n}`;
      // The adapter's warnings, shown when a test fails (and in the output of a verbose run).
      const logger = pino({ level: process.env.FAIRWAY_TEST_QUEUE_LOG ?? 'silent' });
      const queue = new BullMqQueue<ContractJob>({ redisUrl: redis.url, prefix, attempts, backoffMs: 50, logger });
      await queue.ready();
      const worker = new BullMqWorker<ContractJob>(processor, {
        redisUrl: redis.url,
        prefix,
        attempts,
        concurrency: workers,
        id: `contract-agent-${n}`,
        identity: { go: 'go0', xcaddy: 'v0' },
        heartbeatMs: 500,
        logger,
        check: ({ key, data }) => {
          const script = (data as { script?: unknown } | null)?.script;
          if (typeof script !== 'string') throw new Error(`job ${key} has no script`);
          return { script };
        },
      });
      await worker.start();
      return {
        queue,
        close: async (graceMs) => {
          // Graceful (running jobs finish); after the grace, jobs still running are canceled (as LocalQueue does).
          let timer: NodeJS.Timeout | undefined;
          const graceful = worker.close();
          const late = graceMs === undefined ? null : new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), graceMs)));
          if ((await (late ? Promise.race([graceful, late]) : graceful)) === 'late') {
            for (const agent of await queue.agents()) for (const key of agent.jobs) await queue.cancel(key);
            await graceful;
          }
          clearTimeout(timer);
          await queue.close();
        },
      };
    },
  });

  test("the worker runs only what its check accepts: a refused job fails at once with the check's message, the processor never sees it, and the refusal is logged", async () => {
    const prefix = `contract${process.pid}-check`;
    const log = capture();
    const queue = new BullMqQueue<unknown>({ redisUrl: redis.url, prefix, attempts: 3, backoffMs: 50, logger: log.logger });
    await queue.ready();
    const ran: string[] = [];
    const checked: Array<{ key: string; data: unknown; agent: string }> = [];
    const worker = new BullMqWorker<{ ok: true }>(
      async (ctx) => {
        ran.push(ctx.key);
      },
      {
        redisUrl: redis.url,
        prefix,
        id: 'checking-agent',
        concurrency: 1,
        identity: { go: 'go0', xcaddy: 'v0' },
        logger: log.logger,
        check: (job) => {
          checked.push(job);
          if ((job.data as { ok?: unknown } | null)?.ok !== true) throw new JobRefused(`refused job ${job.key}: not ok`);
          return { ok: true };
        },
      },
    );
    await worker.start();
    try {
      await queue.enqueue('bad', { ok: false, note: 'forged' });
      const events: JobEvent[] = [];
      for await (const e of queue.follow('bad')) events.push(e);
      assert.deepEqual(events.at(-1), { type: 'end', state: 'failed', error: 'refused job bad: not ok' });
      assert.ok(
        events.some((e) => e.type === 'line' && e.line.text === 'fairway: refused job bad: not ok'),
        'the refusal is in the job log',
      );
      await until('bad failed', async () => (await queue.get('bad'))?.state === 'failed');
      assert.equal((await queue.get('bad'))?.error, 'refused job bad: not ok');
      await sleep(300);
      assert.deepEqual(checked, [{ key: 'bad', data: { ok: false, note: 'forged' }, agent: 'checking-agent' }], 'checked once, with the data as stored, no other attempt');
      assert.deepEqual(ran, [], 'the processor never saw it');
      assert.ok(
        log.warnings().some((r) => r.msg === 'refused a job taken from Redis' && r.key === 'bad'),
        JSON.stringify(log.records),
      );

      await queue.enqueue('good', { ok: true });
      await until('good succeeded', async () => (await queue.get('good'))?.state === 'succeeded');
      assert.deepEqual(ran, ['good']);
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  test('avoid: a job that asks not to run on an agent runs on another live one; with no other agent, on that one after avoidForMs', async () => {
    const prefix = `contract${process.pid}-avoid`;
    const queue = new BullMqQueue<{ avoid?: string }>({ redisUrl: redis.url, prefix, attempts: 1, logger: pino({ level: 'silent' }) });
    await queue.ready();
    const ranOn = new Map<string, string>();
    const agent = (id: string, avoidForMs = 60_000) =>
      new BullMqWorker<{ avoid?: string }>(
        async (ctx) => {
          await sleep(100); // both agents busy in turn: without `avoid`, about half the jobs land on each
          ranOn.set(ctx.key, ctx.agent);
        },
        {
          redisUrl: redis.url,
          prefix,
          id,
          concurrency: 1,
          identity: { go: 'go0', xcaddy: 'v0' },
          heartbeatMs: 300,
          logger: pino({ level: 'silent' }),
          check: ({ data }) => data as { avoid?: string },
          avoid: (p) => p.avoid,
          avoidForMs,
        },
      );
    const a = agent('avoid-a');
    const b = agent('avoid-b');
    await Promise.all([a.start(), b.start()]);
    try {
      await until('both agents beat', async () => (await queue.agents()).length === 2);
      // Twelve jobs that avoid agent a (without avoid, about half would land on it), and twelve with no wish.
      for (let i = 0; i < 12; i++) await queue.enqueue(`avoid-${i}`, { avoid: 'avoid-a' });
      for (let i = 0; i < 12; i++) await queue.enqueue(`any-${i}`, {});
      await until('all ran', () => ranOn.size === 24, 60_000);
      for (let i = 0; i < 12; i++) assert.equal(ranOn.get(`avoid-${i}`), 'avoid-b', `avoid-${i}`);
      for (let i = 0; i < 12; i++) await until(`avoid-${i} succeeded`, async () => (await queue.get(`avoid-${i}`))?.state === 'succeeded');
      const onA = [...ranOn].filter(([k, v]) => k.startsWith('any-') && v === 'avoid-a').length;
      assert.ok(onA > 0, `agent a takes jobs that do not avoid it (${onA} of 12)`);
      // Alone, agent a still runs a job that avoids it, once avoidForMs is over.
      await b.close();
      await until('b gone', async () => (await queue.agents()).every((x) => x.id !== 'avoid-b'), 10_000);
      await a.close();
      const alone = agent('avoid-a', 1500);
      await alone.start();
      try {
        await queue.enqueue('alone', { avoid: 'avoid-a' });
        await until('alone ran', () => ranOn.has('alone'), 15_000);
        assert.equal(ranOn.get('alone'), 'avoid-a');
      } finally {
        await alone.close();
      }
    } finally {
      await Promise.all([a.close(), b.close()]).catch(() => undefined);
      await queue.close();
    }
  });

  test('errors the adapter survives are logged as warnings: Redis going away while a hub and an agent are connected', async () => {
    const own = await startRedis();
    const log = capture();
    const queue = new BullMqQueue<unknown>({ redisUrl: own.url, prefix: 'warn', logger: log.logger });
    const worker = new BullMqWorker<unknown>(async () => undefined, {
      redisUrl: own.url,
      prefix: 'warn',
      id: 'warn-agent',
      concurrency: 1,
      identity: { go: 'go0', xcaddy: 'v0' },
      heartbeatMs: 200,
      logger: log.logger,
      check: ({ data }) => data,
    });
    try {
      await queue.ready();
      await worker.start();
      assert.deepEqual(log.warnings(), []);
      await own.kill();
      await until('warnings about the lost connection', () => log.warnings().length >= 2);
      for (const w of log.warnings()) {
        assert.ok(w.err, `the error is in the record: ${JSON.stringify(w)}`);
        assert.match(w.msg, /Redis|BullMQ|heartbeat/, 'says what it was doing');
      }
      await own.start();
      await until('the agent beats again', async () => (await queue.agents()).some((a) => a.id === 'warn-agent'));
    } finally {
      if (!own.running) {
        // BullMQ's close() waits for its connections: let them come back first.
        await own.start();
        await until('the agent reconnected', async () => (await queue.agents()).some((a) => a.id === 'warn-agent')).catch(() => undefined);
      }
      await worker.close();
      await queue.close();
      await own.destroy();
    }
  });
});
