/**
 * A discrete-event model of Fairway's distributed queue: builds arrive (Poisson, or all at once),
 * wait in one FIFO queue, and run on `agents` agents with one build each at a time, each agent on
 * its own machine. A build's service time is drawn from a list of durations measured in a real run
 * (bootstrap), so the model carries the real spread of build times, not an assumed distribution.
 *
 * FIFO onto identical agents means each arrival, in order, starts on the agent that frees up
 * first, at max(arrival, that agent's free time): an exact event simulation needs no event heap.
 * Seeded PRNG: the same inputs give the same table.
 *
 * Standalone: node --import tsx bench/sim.ts --durations 8.1,7.9,9.4 [--agents 1,2,4,8] [--loads 0.5,0.9,1.5,3,6] [--hours 8]
 * (durations in seconds). bench/scale.ts runs it with the durations it measured.
 */
import { fileURLToPath } from 'node:url';

/** mulberry32: small, fast, seedable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SimResult {
  agents: number;
  /** Arrivals per hour (Poisson), or NaN for a burst. */
  arrivalsPerHour: number;
  builds: number;
  /** Builds completed per hour of simulated time while arrivals last (burst: builds / makespan). */
  throughputPerHour: number;
  waitP50: number;
  waitP95: number;
  /** Offered load per agent: arrival rate × mean service time / agents. */
  utilisation: number;
  /** Builds still waiting or running when arrivals stopped. */
  backlogAtEnd: number;
  makespan: number;
}

function pct(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = (p / 100) * (s.length - 1);
  const lo = Math.floor(i);
  return s[lo]! + (s[Math.ceil(i)]! - s[lo]!) * (i - lo);
}

/** FIFO G/G/c: arrival times (ms, ascending) and a service-time sampler; returns per-build waits. */
function fifo(arrivals: number[], agents: number, service: () => number): { waits: number[]; ends: number[] } {
  const free = new Array<number>(agents).fill(0);
  const waits: number[] = [];
  const ends: number[] = [];
  for (const t of arrivals) {
    let k = 0;
    for (let j = 1; j < agents; j++) if (free[j]! < free[k]!) k = j;
    const start = Math.max(t, free[k]!);
    const end = start + service();
    free[k] = end;
    waits.push(start - t);
    ends.push(end);
  }
  return { waits, ends };
}

const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Poisson arrivals at `perHour` for `hours` of simulated time. Durations in ms. */
export function simulatePoisson(durations: number[], agents: number, perHour: number, hours: number, seed = 1): SimResult {
  const r = rng(seed);
  const horizon = hours * 3600_000;
  const arrivals: number[] = [];
  for (let t = -Math.log(1 - r()) * (3600_000 / perHour); t < horizon; t += -Math.log(1 - r()) * (3600_000 / perHour)) arrivals.push(t);
  const service = () => durations[Math.floor(r() * durations.length)]!;
  const { waits, ends } = fifo(arrivals, agents, service);
  const doneInHorizon = ends.filter((e) => e <= horizon).length;
  return {
    agents,
    arrivalsPerHour: perHour,
    builds: arrivals.length,
    throughputPerHour: doneInHorizon / hours,
    waitP50: pct(waits, 50),
    waitP95: pct(waits, 95),
    utilisation: (perHour * meanOf(durations)) / 3600_000 / agents,
    backlogAtEnd: arrivals.length - doneInHorizon,
    makespan: Math.max(...ends),
  };
}

/** `builds` arriving at once (a burst, as bench/scale.ts sends them); averaged over `trials`. */
export function simulateBurst(durations: number[], agents: number, builds: number, trials = 2000, seed = 1): SimResult {
  const r = rng(seed);
  const service = () => durations[Math.floor(r() * durations.length)]!;
  const spans: number[] = [];
  const allWaits: number[] = [];
  for (let i = 0; i < trials; i++) {
    const { waits, ends } = fifo(new Array<number>(builds).fill(0), agents, service);
    spans.push(Math.max(...ends));
    allWaits.push(...waits);
  }
  const makespan = meanOf(spans);
  return {
    agents,
    arrivalsPerHour: NaN,
    builds,
    throughputPerHour: (builds * 3600_000) / makespan,
    waitP50: pct(allWaits, 50),
    waitP95: pct(allWaits, 95),
    utilisation: NaN,
    backlogAtEnd: 0,
    makespan,
  };
}

const fmt = (ms: number) => (!Number.isFinite(ms) ? '—' : ms >= 3600_000 ? `${(ms / 3600_000).toFixed(1)} h` : ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`);

/**
 * The table: for each load (a multiple of ONE agent's capacity, 3600 / mean build time per hour)
 * and each agent count, throughput and queue wait.
 */
export function simTable(durations: number[], agentsList: number[], loads: number[], hours: number): { text: string; results: SimResult[] } {
  const capacity1 = 3600_000 / meanOf(durations);
  const results: SimResult[] = [];
  const lines = [
    `Simulated: ${hours} h of Poisson arrivals, FIFO, one build per agent, each agent on its own machine; build time drawn from ${durations.length} measured builds (mean ${fmt(meanOf(durations))}, p95 ${fmt(pct(durations, 95))}); one agent's capacity ${capacity1.toFixed(0)} builds/h.`,
    '',
    '| arrivals/h (× one agent) | agents | utilisation | builds/h done | queue wait p50 | queue wait p95 | backlog at end |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const [i, load] of loads.entries()) {
    for (const agents of agentsList) {
      // Same seed for every agent count: the same arrivals and build times meet 1, 2, 4… agents.
      const s = simulatePoisson(durations, agents, load * capacity1, hours, 7 + i);
      results.push(s);
      lines.push(
        `| ${s.arrivalsPerHour.toFixed(0)} (${load}×) | ${agents} | ${(s.utilisation * 100).toFixed(0)}% | ${s.throughputPerHour.toFixed(0)} | ${fmt(s.waitP50)} | ${fmt(s.waitP95)} | ${s.backlogAtEnd} |`,
      );
    }
  }
  return { text: lines.join('\n'), results };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string, def: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i === -1 ? def : (process.argv[i + 1] ?? def);
  };
  const durations = arg('durations', '')
    .split(',')
    .filter(Boolean)
    .map((s) => Number(s) * 1000);
  if (!durations.length || durations.some((d) => !(d > 0))) {
    process.stderr.write('usage: node --import tsx bench/sim.ts --durations 8.1,7.9,9.4 [--agents 1,2,4,8] [--loads 0.5,0.9,1.5,3,6] [--hours 8]\n');
    process.exit(2);
  }
  const agents = arg('agents', '1,2,4,8').split(',').map(Number);
  const loads = arg('loads', '0.5,0.9,1.5,3,6').split(',').map(Number);
  process.stdout.write(`${simTable(durations, agents, loads, Number(arg('hours', '8'))).text}\n`);
}
