/**
 * Cache hit: serving a cached binary (~50 MB: caddy v2.11.9 linux/amd64) from Fairway against a
 * static file server serving the same file on loopback, in the same run.
 *
 *   1. single-stream download throughput, curl, interleaved (ABBA), medians: Fairway's
 *      `/api/download` (the caddyserver.com-compatible route: parse, resolve from the memo,
 *      store lookup, stream) and `/api/builds/:id/artifact`, each against the static server.
 *      Target: ratio ≥ 0.9.
 *   2. 50 concurrent clients (autocannon) for a fixed time on each side: time to first byte
 *      p50/p99 of `/api/download`.
 *   3. 50 concurrent curl clients: aggregate throughput of `/api/download`. Target ≥ 0.9.
 *
 * Fairway is measured twice: as configured by default (the hot tier, src/hottier, holds the binary
 * in memory after its first download) and with `--memory-cache 0` (every download streamed from
 * the fs store), a second server on the same data dir. Throughput rows of both paths are written.
 *
 * The static server is nginx from Debian (`apt-get install nginx-light`; one worker, sendfile)
 * or, with `--baseline caddy` or without nginx, the built caddy's own `file-server`.
 *   node --import tsx bench/cachehit.ts [--reps 10] [--connections 50] [--seconds 8] [--rounds 2]
 */
import { createRequire } from 'node:module';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  benchDir,
  curlConcurrent,
  curlDownload,
  describeSpec,
  downloadPath,
  findNginx,
  finish,
  flags,
  fmtMs,
  fmtRate,
  fmtRatio,
  getFreePort,
  GO_CACHE,
  int,
  interleave,
  log,
  median,
  percentile,
  report,
  requireSetup,
  spec,
  startCaddyFileServer,
  startBench,
  startNginx,
  timedBuild,
  type Row,
  type StaticServer,
} from './lib.js';

const f = flags('bench/cachehit.ts: cached download from Fairway vs a static file server on loopback', {
  reps: { type: 'string', default: '10', help: 'pairs of single-stream downloads per Fairway route' },
  connections: { type: 'string', default: '50', help: 'concurrent clients for the latency run' },
  seconds: { type: 'string', default: '8', help: 'duration of one autocannon round per side' },
  rounds: { type: 'string', default: '2', help: 'autocannon and aggregate rounds per side, interleaved' },
  each: { type: 'string', default: '2', help: 'downloads per curl client in the aggregate-throughput run' },
  baseline: { type: 'string', default: 'nginx', help: "nginx or caddy (the built binary's file-server)" },
  'nginx-workers': { type: 'string', default: '1', help: 'nginx worker processes (Fairway is one Node process)' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'Go caches for the one build that fills the store' },
});

// autocannon ships no types; the part used here.
interface AcClient {
  on(ev: 'request' | 'headers' | 'response', fn: (...a: unknown[]) => void): void;
  pipelinedRequests: { addBody(b: unknown): void };
}
interface AcResult {
  requests: { total: number };
  throughput: { total: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}
const autocannon = createRequire(import.meta.url)('autocannon') as (opts: Record<string, unknown>) => Promise<AcResult>;

interface LoadResult {
  ttfb: number[];
  /** TTFB seen by one extra native client (curl) downloading in a loop during the round. */
  probe: number[];
  bytes: number;
  seconds: number;
  responses: number;
  errors: number;
}

/**
 * `connections` clients, each request after the previous; TTFB = request written → headers parsed.
 * autocannon's client is one Node process: under 50 downloads of 50 MB its own event loop lags, and
 * the more bytes a server sends it the more it lags. So a native client (curl) downloads in a loop
 * beside it, one more client, and its time to first byte is the server's responsiveness under load.
 */
async function load(url: string, connections: number, seconds: number): Promise<LoadResult> {
  const ttfb: number[] = [];
  const probe: number[] = [];
  let probing = true;
  const probes = (async () => {
    await new Promise((r) => setTimeout(r, 500)); // let the load start
    while (probing) probe.push((await curlDownload(url)).ttfbMs);
  })();
  const r = await autocannon({
    url,
    connections,
    duration: seconds,
    timeout: 120,
    setupClient: (client: AcClient) => {
      // autocannon would keep every body as a string (+= per chunk): 50 MB per response of
      // pure client-side work that slows the client, not the server. Drop bodies; bytes are
      // still counted from the socket.
      client.pipelinedRequests.addBody = () => undefined;
      let sent = 0n;
      client.on('request', () => {
        sent = process.hrtime.bigint();
      });
      client.on('headers', () => {
        if (sent) ttfb.push(Number(process.hrtime.bigint() - sent) / 1e6);
      });
    },
  });
  probing = false;
  await probes;
  return { ttfb, probe, bytes: r.throughput.total, seconds: r.duration, responses: r.requests.total, errors: r.errors + r.timeouts + r.non2xx };
}

async function main(): Promise<void> {
  requireSetup();
  const reps = int(f.reps, 'reps');
  const connections = int(f.connections, 'connections');
  const seconds = int(f.seconds, 'seconds');
  const rounds = int(f.rounds, 'rounds');
  const dir = await benchDir();
  const s = spec('linux', 'amd64');

  const server = await startBench({ dataDir: join(dir, 'data'), cacheDir: f['cache-dir'], args: ['--workers', '1'] });
  let baseline: StaticServer | undefined;
  let storeServer: Awaited<ReturnType<typeof startBench>> | undefined;
  try {
    log(`filling the store: ${describeSpec(s)}`);
    const built = await timedBuild(server.url, s);
    const id = built.build.id as string;
    const size = built.build.size as number;
    log(`built in ${fmtMs(built.ms)}: ${size} bytes, sha256 ${built.build.sha256.slice(0, 16)}…`);

    // The same bytes as a plain file for the static server.
    const root = join(dir, 'www');
    await mkdir(root);
    // nginx workers run as an unprivileged user: the path must be readable by others.
    await chmod(dir, 0o755);
    await chmod(root, 0o755);
    const file = join(root, 'caddy_linux_amd64');
    await writeFile(file, Buffer.from(await (await fetch(`${server.url}/api/builds/${id}/artifact`)).arrayBuffer()));
    await chmod(file, 0o755);
    const port = await getFreePort();
    const useNginx = f.baseline !== 'caddy' && !!findNginx();
    if (f.baseline === 'nginx' && !useNginx) log("nginx not found (apt-get install -y nginx-light): using the built caddy's file-server");
    baseline = useNginx ? await startNginx(root, port, int(f['nginx-workers'], 'nginx-workers')) : await startCaddyFileServer(file, root, port);
    const staticUrl = `${baseline.url}/caddy_linux_amd64`;
    const bname = useNginx ? `nginx (${f['nginx-workers']} worker, sendfile)` : 'caddy file-server';
    // The same data dir served with the hot tier off: every download is read from the fs store.
    storeServer = await startBench({ dataDir: join(dir, 'data'), cacheDir: f['cache-dir'], args: ['--workers', '1', '--memory-cache', '0'] });
    const paths = [
      { path: 'hot tier', server, note: 'default --memory-cache 256MiB: the binary is in memory after its first download' },
      { path: 'store path', server: storeServer, note: '--memory-cache 0: each download streamed from the fs store (256 KiB reads)' },
    ];
    const downloadUrl = `${server.url}${downloadPath(s)}`;

    // Warm every path (page cache, resolver memo, the hot tier's fill: two passes).
    for (let pass = 0; pass < 2; pass++) {
      for (const u of [staticUrl, ...paths.flatMap((p) => [`${p.server.url}${downloadPath(s)}`, `${p.server.url}/api/builds/${id}/artifact`])]) {
        const r = await curlDownload(u);
        if (r.bytes !== size) throw new Error(`${u} sent ${r.bytes} bytes, expected ${size}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }

    const rows: Row[] = [];
    for (const p of paths) {
      for (const [name, url] of [
        ['/api/download', `${p.server.url}${downloadPath(s)}`],
        ['/api/builds/:id/artifact', `${p.server.url}/api/builds/${id}/artifact`],
      ] as const) {
        log(`single stream, ${p.path}: ${name} vs ${bname}, ${reps} pairs`);
        const { a, b } = await interleave(
          reps,
          () => curlDownload(staticUrl),
          () => curlDownload(url),
        );
        const base = median(a.map((x) => x.rate));
        const subj = median(b.map((x) => x.rate));
        log(`  static ${a.map((x) => fmtRate(x.rate)).join(' ')}`);
        log(`  fairway ${b.map((x) => fmtRate(x.rate)).join(' ')}`);
        rows.push({
          bench: 'cache-hit',
          figure: `single-stream download throughput of a cached ${(size / 1e6).toFixed(1)} MB binary, ${name}, ${p.path} (curl, median of ${reps})`,
          value: fmtRate(subj),
          baseline: `${bname} ${fmtRate(base)}`,
          ratio: subj / base,
          target: '≥ 0.9',
          pass: subj / base >= 0.9,
          notes: `${p.note}; TTFB median ${fmtMs(median(b.map((x) => x.ttfbMs)))} vs ${fmtMs(median(a.map((x) => x.ttfbMs)))}`,
        });
      }
    }

    log(`${connections} concurrent clients: /api/download vs ${bname}, ${rounds} × ${seconds}s per side`);
    const { a, b } = await interleave(
      rounds,
      () => load(staticUrl, connections, seconds),
      () => load(downloadUrl, connections, seconds),
    );
    const merge = (xs: LoadResult[]) => ({
      ttfb: xs.flatMap((x) => x.ttfb),
      probe: xs.flatMap((x) => x.probe),
      rate: xs.reduce((t, x) => t + x.bytes, 0) / xs.reduce((t, x) => t + x.seconds, 0),
      responses: xs.reduce((t, x) => t + x.responses, 0),
      errors: xs.reduce((t, x) => t + x.errors, 0),
    });
    const st = merge(a);
    const fw = merge(b);
    if (fw.errors || st.errors) log(`  errors: fairway ${fw.errors}, static ${st.errors}`);
    for (const p of [50, 99]) {
      const subj = percentile(fw.ttfb, p);
      const base = percentile(st.ttfb, p);
      rows.push({
        bench: 'cache-hit',
        figure: `time to first byte p${p}, cached /api/download, ${connections} concurrent clients (autocannon)`,
        value: fmtMs(subj),
        baseline: `${bname} ${fmtMs(base)}`,
        ratio: subj / base,
        target: '—',
        notes: `${fw.ttfb.length} vs ${st.ttfb.length} requests in ${rounds}×${seconds}s, ${fmtRate(fw.rate)} vs ${fmtRate(st.rate)} through autocannon's Node client (its own lag is in these times); lower is better`,
      });
    }
    for (const p of [50, 95]) {
      const subj = percentile(fw.probe, p);
      const base = percentile(st.probe, p);
      rows.push({
        bench: 'cache-hit',
        figure: `time to first byte p${p} of one more client (curl, downloading in a loop) beside the ${connections} autocannon clients, cached /api/download`,
        value: fmtMs(subj),
        baseline: `${bname} ${fmtMs(base)}`,
        ratio: subj / base,
        target: '—',
        notes: `${fw.probe.length} vs ${st.probe.length} downloads; a native client measures the server's responsiveness under the load without autocannon's event-loop lag; lower is better`,
      });
    }
    for (const p of paths) {
      const url = `${p.server.url}${downloadPath(s)}`;
      log(`aggregate throughput, ${p.path}: ${connections} curl clients × ${f.each} downloads, ${rounds} rounds per side`);
      const agg = await interleave(
        rounds,
        () => curlConcurrent(staticUrl, connections, int(f.each, 'each')),
        () => curlConcurrent(url, connections, int(f.each, 'each')),
      );
      const aggBase = median(agg.a.map((x) => x.rate));
      const aggSubj = median(agg.b.map((x) => x.rate));
      log(`  aggregate ${fmtRate(aggSubj)} vs ${fmtRate(aggBase)} (ratio ${fmtRatio(aggSubj / aggBase)})`);
      rows.push({
        bench: 'cache-hit',
        figure: `aggregate download throughput, cached /api/download, ${p.path}, ${connections} concurrent curl clients (median of ${rounds})`,
        value: fmtRate(aggSubj),
        baseline: `${bname} ${fmtRate(aggBase)}`,
        ratio: aggSubj / aggBase,
        target: '≥ 0.9',
        pass: aggSubj / aggBase >= 0.9,
        notes: `${p.note}; ${agg.b[0]!.responses} responses per round; client and server share the cores`,
      });
    }
    log(`TTFB fairway p50 ${fmtMs(percentile(fw.ttfb, 50))} p99 ${fmtMs(percentile(fw.ttfb, 99))}; static p50 ${fmtMs(percentile(st.ttfb, 50))} p99 ${fmtMs(percentile(st.ttfb, 99))}`);
    await report(rows);
  } finally {
    await baseline?.stop();
    await storeServer?.stop();
    await server.stop();
  }
}

finish(main());
