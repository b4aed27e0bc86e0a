/**
 * Fleet warmth: new agents build at warm speed through the fleet's shared caches (the hub's
 * module proxy and the GOCACHEPROG build cache in the store, docs/distributed.md).
 *
 * One Redis, one hub (fresh Go caches, its module proxy filled from the upstream), one shared fs
 * store; every agent starts with EMPTY local Go caches, takes modules from the hub
 * (`--fleet-proxy`) and compiled packages from the store (`--go-cache-shared`). The upstream is
 * proxy.golang.org behind a counting relay in this process, so the fleet's upstream downloads
 * are counted per file.
 *
 *   (1) agent A builds caddy + caddy-l4 (cold fleet: time A); A stops; agent B, new, builds plain
 *       caddy of the same version (another key, the same compiled packages): time B.
 *       Ratio B/A, target ≤ 0.35 (per-agent caches give about 1).
 *   (2) agent C, new, builds a new combination (caddy + caddy-ratelimit) in the warm fleet, vs raw
 *       `xcaddy build` of it with empty caches (the same machine, nothing shared). Target ≤ 0.5.
 *   (3) upstream downloads of each module file (.mod, .zip) over the whole run, three agents and
 *       the hub: target one per file.
 *   node --import tsx bench/fleet.ts [--no-record]
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256Hash } from '../src/auth/index.js';
import { benchDir, describeSpec, finish, flags, fmtMs, L4, log, rawXcaddy, removeTree, report, requireSetup, spec, startBench, startRedis, timedBuild, type FairwayProcess, type Row } from './lib.js';

flags('bench/fleet.ts: builds on new agents through the fleet caches vs cold ones', {});

const TIMEOUT = 40 * 60_000;
const UPSTREAM = 'https://proxy.golang.org';
const RATELIMIT = { module: 'github.com/mholt/caddy-ratelimit', version: 'v0.1.0' };
const AGENT_TOKEN = `fw_bench_agent_${createHash('sha256').update(String(Date.now())).digest('hex').slice(0, 32)}`;

/** A GOPROXY in front of proxy.golang.org that counts the requests per path. */
async function countingUpstream(): Promise<{ url: string; counts: Map<string, number>; close(): Promise<void> }> {
  const counts = new Map<string, number>();
  const server = http.createServer(async (req, res) => {
    const path = req.url ?? '/';
    counts.set(path, (counts.get(path) ?? 0) + 1);
    try {
      const up = await fetch(UPSTREAM + path, { method: req.method === 'HEAD' ? 'HEAD' : 'GET', redirect: 'follow' });
      const body = Buffer.from(await up.arrayBuffer());
      res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/octet-stream', 'content-length': String(body.length) });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      res.writeHead(502);
      res.end(String(err));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, counts, close: () => new Promise((r) => server.close(() => r())) };
}

async function main(): Promise<void> {
  requireSetup();
  const dir = await benchDir('fairway-bench-fleet-');
  await chmod(dir, 0o755); // the raw xcaddy baseline runs as the build user, with its caches in here
  const redis = await startRedis();
  const upstream = await countingUpstream();
  const store = join(dir, 'store');
  await mkdir(store, { recursive: true });
  const procs: FairwayProcess[] = [];
  const common = ['--redis', redis.url, '--store', store, '--goproxy', upstream.url];
  try {
    const hub = await startBench({
      command: 'hub',
      dataDir: join(dir, 'hub'),
      cacheDir: join(dir, 'go-hub'),
      args: [...common, '--anonymous-scopes', 'read,build'],
      env: { FAIRWAY_TOKENS: `fleet:agent:${sha256Hash(AGENT_TOKEN)}` },
    });
    procs.push(hub);
    const agent = async (id: string) => {
      const p = await startBench({
        command: 'agent',
        dataDir: join(dir, `data-${id}`),
        cacheDir: join(dir, `go-${id}`),
        args: [...common, '--agent-id', id, '--concurrency', '1', '--build-timeout', '40m', '--fleet-proxy', hub.url, '--go-cache-shared'],
        env: { FAIRWAY_FLEET_TOKEN: AGENT_TOKEN },
      });
      procs.push(p);
      return p;
    };

    const first = spec('linux', 'amd64', [L4]);
    const plain = spec('linux', 'amd64');
    const combo = spec('linux', 'amd64', [RATELIMIT]);

    log(`agent A, empty caches, cold fleet: ${describeSpec(first)}`);
    const a = await agent('fleet-a');
    const ta = await timedBuild(hub.url, first, TIMEOUT);
    log(`   ${fmtMs(ta.ms)} on ${ta.build.agent}`);
    await a.stop();

    log(`agent B, new, empty local caches, warm fleet: ${describeSpec(plain)}`);
    const b = await agent('fleet-b');
    const tb = await timedBuild(hub.url, plain, TIMEOUT);
    log(`   ${fmtMs(tb.ms)} on ${tb.build.agent}`);
    const agents = (await (await fetch(`${hub.url}/api/agents`)).json()) as { agents: Array<{ id: string; cache?: { hits: number; misses: number; hitRate: number } }> };
    const bCache = agents.agents.find((x) => x.id === 'fleet-b')?.cache;
    await b.stop();

    log(`agent C, new, warm fleet, a new combination: ${describeSpec(combo)}`);
    const c = await agent('fleet-c');
    const tc = await timedBuild(hub.url, combo, TIMEOUT);
    log(`   ${fmtMs(tc.ms)} on ${tc.build.agent}`);
    await c.stop();

    log(`raw xcaddy build of the same combination with empty caches: ${describeSpec(combo)}`);
    const rawCache = join(dir, 'go-raw');
    await mkdir(rawCache, { recursive: true });
    const raw = await rawXcaddy(combo, rawCache);
    log(`   ${fmtMs(raw.ms)}`);
    const same = raw.sha256 === tc.build.sha256;
    await removeTree(rawCache);

    const files = [...upstream.counts].filter(([p]) => /\/@v\/[^/]+\.(zip|mod)$/.test(p));
    const most = files.reduce((m, [, n]) => Math.max(m, n), 0);
    const twice = files.filter(([, n]) => n > 1).map(([p, n]) => `${p} ×${n}`);
    const zips = files.filter(([p]) => p.endsWith('.zip')).length;
    const rows: Row[] = [
      {
        bench: 'fleet',
        figure: `new agent B (empty local caches) builds plain caddy ${plain.caddyVersion} after agent A built it with caddy-l4 (cold fleet), both through the hub's module proxy and the shared GOCACHEPROG cache (fs store)`,
        value: fmtMs(tb.ms),
        baseline: `agent A cold ${fmtMs(ta.ms)}`,
        ratio: tb.ms / ta.ms,
        target: '≤ 0.35',
        pass: tb.ms / ta.ms <= 0.35,
        notes: `B's build cache lookups: ${bCache ? `${bCache.hits} hits, ${bCache.misses} misses (${(bCache.hitRate * 100).toFixed(0)} %)` : 'not reported'}; A's first build also filled the hub's module cache`,
      },
      {
        bench: 'fleet',
        figure: `a new plugin combination (caddy-ratelimit) on a brand-new agent in the warm fleet vs raw xcaddy build of it with empty caches`,
        value: fmtMs(tc.ms),
        baseline: `raw xcaddy ${fmtMs(raw.ms)}`,
        ratio: tc.ms / raw.ms,
        target: '≤ 0.5',
        pass: tc.ms / raw.ms <= 0.5,
        notes: `same sha256 as the raw build: ${same ? 'yes' : 'NO'}`,
      },
      {
        bench: 'fleet',
        figure: 'upstream downloads per module file (.mod, .zip) for the whole fleet: hub + 3 agents, 3 builds',
        value: `at most ${most} per file (${files.length} files, ${zips} zips)`,
        baseline: '1 per file',
        ratio: most,
        target: '= 1',
        pass: most <= 1,
        notes: twice.length ? `more than once: ${twice.slice(0, 5).join(', ')}` : 'every file once',
      },
    ];
    await report(rows);
  } finally {
    await Promise.all(procs.map((p) => p.stop().catch(() => undefined)));
    await upstream.close();
    await redis.destroy();
  }
}

finish(main());
