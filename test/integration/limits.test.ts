/**
 * Resource limits of the sandbox against a real build (docs/SECURITY.md "Resource limits"): a
 * hostile plugin (test/fixtures/hostile/limits.go.tmpl), served by this test's own module proxy,
 * whose init() — run by Fairway's `caddy version` after the build — tries a nested user
 * namespace, fills /tmp and /dev/shm, starts 300 processes and allocates 1.5 GiB. Every attempt
 * is held to its limit (no user namespace, 64 MiB tmpfs, fewer than 128 tasks, under 512 MiB of
 * memory), the build fails with the limit and its setting named, the server keeps answering and
 * `/healthz` stays under 100 ms at p99 while the build compiles and the plugin runs.
 *
 * Run: npm run build && node --import tsx --test --test-reporter=spec test/integration/limits.test.ts
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { api, CADDY_VERSION, ROOT, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy } from '../helpers/goproxy.js';

const PREFIX = 'fairway.test';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Attempt {
  run: string;
  attempt: string;
  ok: boolean;
  value: number;
  detail: string;
}

describe('sandbox limits: a hostile plugin is held to every limit, the build fails naming it, the server stays responsive', { timeout: 20 * 60_000 }, () => {
  let proxy: GoProxy;
  let serve: FairwayProcess;
  let dataDir: string;
  const run = randomBytes(6).toString('hex');
  const modulePath = `${PREFIX}/limits/r${run}`;

  before(async () => {
    const tmpl = await readFile(join(ROOT, 'test', 'fixtures', 'hostile', 'limits.go.tmpl'), 'utf8');
    proxy = await startGoProxy([{ path: modulePath, version: 'v1.0.0', files: { 'go.mod': `module ${modulePath}\n\ngo 1.21\n`, 'limits.go': tmpl.replace('__RUN__', run) } }]);
    dataDir = await tempDir('fairway-limits-');
    serve = await startFairway({ dataDir, args: ['--goproxy', `${proxy.url},https://proxy.golang.org`, '--gonosumdb', PREFIX] });
  });

  after(async () => {
    await serve?.stop('SIGKILL');
    await proxy?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  test('start-up says which limits are in force', () => {
    const line = serve
      .output()
      .split('\n')
      .find((l) => l.includes('build sandbox ready'));
    assert.ok(line, serve.output());
    assert.match(line, /"limits":"(cgroup2|cgroup1|rlimits)"/);
    assert.match(line, /"goCommandLimits":"memory 4 GiB, 1024 tasks, tmpfs 1 GiB/);
    assert.match(line, /"binaryRunLimits":"memory 512 MiB, 128 tasks, tmpfs 64 MiB/);
    assert.match(line, /"seccomp":"on/);
  });

  test('every attempt is held to its limit; the build fails with the limit named; /healthz p99 < 100 ms meanwhile', async (t) => {
    const spec = { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'amd64', plugins: [{ module: modulePath, version: 'v1.0.0' }] };
    const res = await api(serve.url, '/api/builds', { json: spec });
    assert.ok(res.status === 202 || res.status === 200, JSON.stringify(res.body));
    // /healthz every 50 ms while the build runs (compile, then the plugin's attack).
    const latencies: number[] = [];
    let building = true;
    const probe = (async () => {
      while (building) {
        const t0 = performance.now();
        const r = await fetch(`${serve.url}/healthz`);
        await r.arrayBuffer();
        latencies.push(performance.now() - t0);
        assert.equal(r.status, 200);
        await sleep(50);
      }
    })();
    const build = await waitForBuild(serve.url, res.body.id, 15 * 60_000).finally(() => {
      building = false;
    });
    await probe;
    const log = await (await fetch(`${serve.url}/api/builds/${res.body.id}/log`)).text();
    const attempts: Attempt[] = [];
    for (const m of log.matchAll(/FAIRWAY-LIMITS (\{.*\})/g)) {
      const a = JSON.parse(m[1]!) as Attempt;
      if (a.run === run) attempts.push(a);
    }
    const by = (name: string) => attempts.filter((a) => a.attempt === name);
    const context = `build ${build.status}: ${build.error}\n${attempts.map((a) => `${a.attempt} ok=${a.ok} ${a.value} ${a.detail}`).join('\n')}\n--- log tail ---\n${log.split('\n').slice(-40).join('\n')}`;

    assert.equal(build.status, 'failed', context);
    assert.match(build.error, /the run of the built binary ran out of memory: the sandbox's limit is 512 MiB \(runMemoryMax/, context);
    assert.match(log, /ran out of memory: the sandbox's limit is 512 MiB \(runMemoryMax/, 'the log says so too');

    assert.equal(by('userns')[0]?.ok, false, context);
    assert.equal(by('clone-newuser')[0]?.ok, false, context);
    for (const fill of ['fill-tmp', 'fill-shm']) {
      const a = by(fill)[0];
      assert.ok(a && !a.ok && a.value <= 64 * 1024 * 1024, `${fill}: ${JSON.stringify(a)}\n${context}`);
    }
    const procs = by('processes')[0];
    assert.ok(procs && !procs.ok && procs.value < 128, `processes: ${JSON.stringify(procs)}\n${context}`);
    const mem = by('memory');
    assert.ok(mem.length > 0, `the plugin allocated memory\n${context}`);
    assert.ok(
      mem.every((a) => !a.ok && a.value <= 512),
      `memory: ${mem.map((a) => a.value).join(', ')}\n${context}`,
    );
    assert.equal(by('memory-survived').length, 0, context);

    // The server is alive and answering; and it was, at p99 under 100 ms, all along.
    assert.equal((await fetch(`${serve.url}/healthz`)).status, 200);
    assert.equal(serve.proc.exitCode, null);
    latencies.sort((a, b) => a - b);
    const p = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
    const summary = `${latencies.length} /healthz requests: p50 ${p(0.5).toFixed(1)} ms, p99 ${p(0.99).toFixed(1)} ms, max ${p(1).toFixed(1)} ms`;
    t.diagnostic(summary);
    for (const a of attempts) t.diagnostic(`${a.attempt}: ok=${a.ok} value=${a.value} ${a.detail}`);
    assert.ok(latencies.length > 100, summary);
    assert.ok(p(0.99) < 100, summary);
  });
});
