/**
 * Scale: builds per hour with 1, 2 and 4 agents on a stream of distinct specs, and a simulation
 * fed with the build times measured here.
 *
 * Real measurement: for each agent count, a fresh Redis and a fresh shared-disk store, one hub and
 * N `fairway agent` processes (one build each at a time) on this machine, all on the same warm Go
 * caches. K distinct specs are sent at once; builds/hour = K / (time until the last one ended).
 * Agent counts run in the order 1,2,4 then 4,2,1 on the next round (drift cancels), medians.
 * On a 2-core machine CPU-bound builds cannot go faster than ~2 at once; that limit is the
 * machine's, not Fairway's, so the model below shows what more machines would do.
 *
 * Simulation (bench/sim.ts): the build times of the 1-agent runs (uncontended) drive a FIFO
 * queue with 1, 2, 4, 8 agents each on its own machine, at arrival rates from half of one
 * agent's capacity to six times it: builds/hour and queue wait p50/p95.
 *   node --import tsx bench/scale.ts [--agents 1,2,4] [--rounds 1] [--specs 6] [--hours 8]
 */
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import {
  benchDir,
  type BenchSpec,
  describeSpec,
  finish,
  flags,
  fmtMs,
  GO_CACHE,
  int,
  L4,
  log,
  median,
  now,
  rawXcaddy,
  report,
  requireSetup,
  spec,
  startBench,
  startRedis,
  waitForEnd,
  type FairwayProcess,
  type Row,
} from './lib.js';
import { simTable, simulateBurst } from './sim.js';

const f = flags('bench/scale.ts: builds/hour with 1, 2, 4 agents, and a queue simulation fed with measured build times', {
  agents: { type: 'string', default: '1,2,4', help: 'agent counts to run for real' },
  rounds: { type: 'string', default: '1', help: 'rounds over the agent counts (alternating order)' },
  specs: { type: 'string', default: '6', help: 'distinct specs per stream (6 are warm from the test suite; more compile new platforms)' },
  hours: { type: 'string', default: '8', help: 'simulated hours of arrivals' },
  'sim-agents': { type: 'string', default: '1,2,4,8', help: 'agent counts to simulate' },
  loads: { type: 'string', default: '0.5,0.9,1.5,3,6', help: "arrival rates to simulate, as multiples of one agent's capacity" },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'Go caches shared by all agents' },
});

/** Distinct specs: platforms × plugin sets, warm ones first. */
function specs(n: number): BenchSpec[] {
  const platforms: Array<[string, string]> = [
    ['linux', 'amd64'],
    ['linux', 'arm64'],
    ['windows', 'amd64'],
    ['darwin', 'arm64'],
    ['freebsd', 'amd64'],
    ['linux', 'riscv64'],
  ];
  const out: BenchSpec[] = [];
  for (const [os, arch] of platforms) for (const plugins of [[], [L4]]) out.push(spec(os, arch, plugins));
  if (n > out.length) throw new Error(`at most ${out.length} specs`);
  return out.slice(0, n);
}

interface StreamResult {
  agents: number;
  makespan: number;
  perHour: number;
  waits: number[];
  services: number[];
  byAgent: Record<string, number>;
}

async function stream(dir: string, cacheDir: string, agents: number, list: BenchSpec[], tag: string): Promise<StreamResult> {
  const redis = await startRedis();
  const store = join(dir, `store-${tag}`);
  const procs: FairwayProcess[] = [];
  try {
    const common = ['--redis', redis.url, '--store', store];
    procs.push(await startBench({ command: 'hub', dataDir: join(dir, `hub-${tag}`), cacheDir, args: common }));
    const hub = procs[0]!;
    const started = await Promise.all(
      Array.from({ length: agents }, (_, i) =>
        startBench({ command: 'agent', dataDir: join(dir, `agent-${tag}-${i}`), cacheDir, args: [...common, '--agent-id', `agent-${i + 1}`, '--concurrency', '1'] }),
      ),
    );
    procs.push(...started);
    const t0 = now();
    const ids = await Promise.all(
      list.map(async (s) => {
        const res = await fetch(`${hub.url}/api/builds`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(s) });
        const body = (await res.json()) as any;
        if (res.status !== 202) throw new Error(`${describeSpec(s)}: ${res.status} ${JSON.stringify(body)}`);
        return body.id as string;
      }),
    );
    const ends = await Promise.all(ids.map((id) => waitForEnd(hub.url, id)));
    const makespan = Math.max(...ends.map((e) => e.at)) - t0;
    const failed = ends.filter((e) => e.status !== 'succeeded');
    if (failed.length) throw new Error(`${failed.length} build(s) failed: ${JSON.stringify(failed[0]!.build?.error)}`);
    const records = await Promise.all(ids.map(async (id) => (await fetch(`${hub.url}/api/builds/${id}`)).json() as Promise<any>));
    const waits = records.map((r) => Date.parse(r.startedAt) - Date.parse(r.createdAt));
    const services = records.map((r) => Date.parse(r.finishedAt) - Date.parse(r.startedAt));
    const byAgent: Record<string, number> = {};
    for (const r of records) byAgent[r.agent] = (byAgent[r.agent] ?? 0) + 1;
    return { agents, makespan, perHour: (list.length * 3600_000) / makespan, waits, services, byAgent };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await redis.destroy();
    await rm(store, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  requireSetup();
  const counts = f.agents.split(',').map((x) => int(x, 'agents'));
  const rounds = int(f.rounds, 'rounds');
  const list = specs(int(f.specs, 'specs'));
  const cacheDir = f['cache-dir'];
  const dir = await benchDir();
  log(`${list.length} distinct specs: ${list.map(describeSpec).join('; ')}`);
  // Not timed: every spec's modules and packages in the shared Go caches, so each stream
  // measures builds with warm caches (a cold first compile would land on whichever run is first).
  log('warm-up: one raw xcaddy build per spec');
  for (const s of list) {
    const r = await rawXcaddy(s, cacheDir);
    await rm(r.dir, { recursive: true, force: true });
    log(`  ${describeSpec(s)}: ${fmtMs(r.ms)}`);
  }

  const results: StreamResult[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? counts : [...counts].reverse();
    for (const n of order) {
      log(`round ${round + 1}: ${n} agent(s), ${list.length} builds at once`);
      const r = await stream(dir, cacheDir, n, list, `${round}-${n}`);
      log(`  ${fmtMs(r.makespan)} → ${r.perHour.toFixed(0)} builds/h; queue wait p50 ${fmtMs(median(r.waits))}; build time p50 ${fmtMs(median(r.services))}; per agent ${JSON.stringify(r.byAgent)}`);
      results.push(r);
    }
  }

  const byCount = (n: number) => results.filter((r) => r.agents === n);
  const base = counts.includes(1) ? median(byCount(1).map((r) => r.perHour)) : NaN;
  const rows: Row[] = [];
  for (const n of counts) {
    const rs = byCount(n);
    const perHour = median(rs.map((r) => r.perHour));
    rows.push({
      bench: 'scale',
      figure: `builds/hour, ${n} agent process(es) on this machine, ${list.length} distinct specs at once, warm Go caches${rounds > 1 ? `, median of ${rounds}` : ''}`,
      value: `${perHour.toFixed(0)}/h`,
      baseline: `1 agent ${base.toFixed(0)}/h`,
      ratio: perHour / base,
      target: '—',
      notes: `build time p50 ${fmtMs(median(rs.flatMap((r) => r.services)))}, queue wait p50 ${fmtMs(median(rs.flatMap((r) => r.waits)))}; ideal ${n}×, a 2-core machine caps near 2×`,
    });
  }

  // The model, fed with the uncontended (1-agent) build times of this run.
  const durations = (byCount(1).length ? byCount(1) : results).flatMap((r) => r.services);
  const simAgents = f['sim-agents'].split(',').map((x) => int(x, 'sim-agents'));
  const loads = f.loads.split(',').map(Number);
  const table = simTable(durations, simAgents, loads, Number(f.hours));
  process.stdout.write(`\n${table.text}\n\n`);
  const burst = simAgents.map((a) => simulateBurst(durations, a, list.length));
  process.stdout.write(`Model of the burst above (${list.length} builds at once, agents on separate machines) vs measured here:\n`);
  for (const b of burst) {
    const measured = byCount(b.agents);
    process.stdout.write(
      `  ${b.agents} agent(s): model ${b.throughputPerHour.toFixed(0)} builds/h${measured.length ? `, measured ${median(measured.map((r) => r.perHour)).toFixed(0)} builds/h` : ''}\n`,
    );
  }
  const top = loads[loads.length - 1]!;
  const topRate = Math.max(...table.results.map((x) => x.arrivalsPerHour));
  const sat = table.results.filter((r) => r.arrivalsPerHour === topRate);
  const one = sat.find((r) => r.agents === 1);
  const waitAt = (load: number, agents: number) => {
    const li = loads.indexOf(load);
    const r = li === -1 ? undefined : table.results[li * simAgents.length + simAgents.indexOf(agents)];
    return r ? fmtMs(r.waitP95) : 'n/a';
  };
  for (const r of sat) {
    if (r.agents === 1 || !one) continue;
    rows.push({
      bench: 'scale (model)',
      figure: `simulated builds/hour, ${r.agents} agents on separate machines, ${r.arrivalsPerHour.toFixed(0)} arrivals/h (${top}× one agent), build times measured above`,
      value: `${r.throughputPerHour.toFixed(0)}/h, wait p95 ${fmtMs(r.waitP95)}`,
      baseline: `1 agent ${one.throughputPerHour.toFixed(0)}/h, wait p95 ${fmtMs(one.waitP95)}`,
      ratio: r.throughputPerHour / one.throughputPerHour,
      target: '—',
      notes: `utilisation ${(r.utilisation * 100).toFixed(0)}%; at 0.9× one agent's capacity p95 queue wait ${waitAt(0.9, r.agents)} vs ${waitAt(0.9, 1)} with 1 agent; full table printed by the bench`,
    });
  }
  await report(rows);
}

finish(main());
