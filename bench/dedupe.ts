/**
 * Dedupe: 100 concurrent identical cold requests to `/api/download` (blocking until the binary is
 * ready, as caddyserver.com does) against a fresh `fairway serve`. Counts real xcaddy runs with a
 * counting wrapper (must be 1) and hashes every body (all must be identical and match the
 * server's sha256). Also the wall time of the whole burst against the one build's own time.
 *   node --import tsx bench/dedupe.ts [--clients 100] [--plugins l4|none]
 */
import { Agent, request } from 'node:http';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { benchDir, countingXcaddy, describeSpec, downloadPath, finish, flags, fmtMs, GO_CACHE, int, L4, log, now, report, requireSetup, spec, startBench } from './lib.js';

const f = flags('bench/dedupe.ts: N concurrent identical cold requests make one build', {
  clients: { type: 'string', default: '100', help: 'concurrent identical requests' },
  plugins: { type: 'string', default: 'l4', help: 'l4 or none' },
  os: { type: 'string', default: 'linux', help: 'GOOS of the spec' },
  arch: { type: 'string', default: 'amd64', help: 'GOARCH of the spec' },
  'cache-dir': { type: 'string', default: GO_CACHE, help: 'Go caches (warm: the bench is about Fairway, not Go)' },
});

/** GET with its own connection; hashes the body as it streams. */
function download(url: string, agent: Agent): Promise<{ status: number; sha256: string; bytes: number; header: string | undefined; ms: number }> {
  const t0 = now();
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      const h = createHash('sha256');
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sha256: h.digest('hex'), bytes, header: res.headers['x-checksum-sha256'] as string | undefined, ms: now() - t0 }));
      res.on('error', reject);
    });
    req.setTimeout(30 * 60_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function main(): Promise<void> {
  requireSetup();
  const clients = int(f.clients, 'clients');
  const s = spec(f.os, f.arch, f.plugins === 'none' ? [] : [L4]);
  const dir = await benchDir();
  const xcaddy = await countingXcaddy(dir);
  const server = await startBench({ dataDir: join(dir, 'data'), cacheDir: f['cache-dir'], args: ['--xcaddy-bin', xcaddy.bin, '--workers', '2'] });
  try {
    log(`${clients} concurrent GET ${downloadPath(s)} (${describeSpec(s)}), fresh store`);
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
    const t0 = now();
    const results = await Promise.all(Array.from({ length: clients }, () => download(`${server.url}${downloadPath(s)}`, agent)));
    const wall = now() - t0;
    const runs = await xcaddy.count();
    const ok = results.filter((r) => r.status === 200);
    const hashes = new Set(results.map((r) => r.sha256));
    const first = results[0]!;
    const identical = ok.length === clients && hashes.size === 1 && results.every((r) => r.header === first.sha256 && r.bytes > 0);
    const builds = (await (await fetch(`${server.url}/api/builds`)).json()) as { builds: Array<{ id: string; durationMs?: number; sha256?: string }> };
    const build = builds.builds[0];
    const buildMs = build?.durationMs ?? NaN;
    log(`xcaddy runs: ${runs}; statuses: ${[...new Set(results.map((r) => r.status))].join(',')}; distinct bodies: ${hashes.size}; wall ${fmtMs(wall)}; build ${fmtMs(buildMs)}`);
    await report([
      {
        bench: 'dedupe',
        figure: `xcaddy runs for ${clients} concurrent identical cold /api/download requests, ${describeSpec(s)}`,
        value: String(runs),
        baseline: '1 build',
        ratio: runs,
        target: '= 1',
        pass: runs === 1,
        notes: `counted by a wrapper around the real xcaddy`,
      },
      {
        bench: 'dedupe',
        figure: `identical bodies among the ${clients} responses (sha256 of each body = X-Checksum-Sha256)`,
        value: `${identical ? clients : results.filter((r) => r.status === 200 && r.sha256 === build?.sha256).length}/${clients}`,
        baseline: `${clients}/${clients}`,
        ratio: identical ? 1 : results.filter((r) => r.sha256 === build?.sha256).length / clients,
        target: '= 1',
        pass: identical && build?.sha256 === first.sha256,
        notes: `${hashes.size} distinct body hash(es); ${(first.bytes / 1e6).toFixed(1)} MB each`,
      },
      {
        bench: 'dedupe',
        figure: `wall time until all ${clients} bodies were received`,
        value: fmtMs(wall),
        baseline: `the one build ${fmtMs(buildMs)}`,
        ratio: wall / buildMs,
        target: '—',
        notes: `includes resolving and sending ${((first.bytes * clients) / 1e9).toFixed(1)} GB over loopback; slowest client ${fmtMs(Math.max(...results.map((r) => r.ms)))}`,
      },
    ]);
  } finally {
    await server.stop();
  }
}

finish(main());
