/**
 * The fleet module proxy (docs/distributed.md "Fleet caches") with real parts: a real Redis, an fs
 * store, one hub and two agents as separate `fairway` processes, every go command in the real
 * bubblewrap sandbox, and as the only upstream a real GOPROXY-protocol server run here
 * (test/helpers/goproxy.ts) behind a front that counts each request and records its
 * Authorization header. Each agent has a fresh Go cache of its own; the hub has the shared test cache.
 *
 * The module is synthetic and new in every run (fairway.test/fleet/R<random>, with an upper-case
 * letter so the `!r` escaping is exercised), so nothing of it is in any cache. The builds use a
 * stand-in xcaddy (the test is about where modules come from, not about compiling Caddy): its
 * `build` runs the real `go mod download -json` of every `--with` module in the agent's sandbox
 * (through the agent's module relay, so through the fleet proxy) and `go list -m <module>@latest`
 * (a version list, which the fleet proxy answers 404, so the relay goes on to the upstream),
 * records its environment, and copies a real Go binary (xcaddy's own, put in the agent's cache,
 * where the sandbox sees it) as "caddy", which runs `version` like Caddy; `version` prints the pinned
 * xcaddy version (hub and agents must agree on it, and the stand-in is the same file for both).
 *
 * Proves: two agents building two specs with the same plugin (linux/amd64 and linux/arm64, one on
 * each agent) fetch every module file (.info, .mod, .zip) from the upstream exactly once in all:
 * the hub fetched them and both agents' module caches hold them; the upstream never saw the fleet
 * token; the token is not in a build's environment; the hub counted hits and a fill. A request
 * without a token gets 401, with a token without the agent scope 403; an agent whose token the hub
 * refuses says so at start and still builds, its modules then fetched from the upstream directly
 * (the documented fall-back).
 *   node scripts/setup.mjs && FAIRWAY_TEST_CACHE=$PWD/.cache/go node --import tsx --test test/integration/fleet-proxy.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { XCADDY_VERSION } from '../../src/config/index.js';
import { api, CADDY_VERSION, XCADDY, startFairway, tempDir, waitForBuild, type FairwayProcess } from '../helpers/fairway.js';
import { escapeModulePath, startGoProxy, type GoProxy } from '../helpers/goproxy.js';
import { startRedis, type RedisService } from '../helpers/services.js';

const BUILD = 5 * 60_000;
const sha256hex = (s: string) => createHash('sha256').update(s).digest('hex');

/** The upstream as the fleet sees it: every request counted by path, with the Authorization it carried. */
async function countingFront(upstream: GoProxy): Promise<{ url: string; seen: Array<{ path: string; auth: string | undefined }>; close(): Promise<void> }> {
  const seen: Array<{ path: string; auth: string | undefined }> = [];
  const server = http.createServer((req, res) => {
    seen.push({ path: req.url ?? '', auth: req.headers.authorization });
    void fetch(upstream.url + (req.url ?? '/'), { method: req.method ?? 'GET' }).then(
      async (r) => {
        const body = Buffer.from(await r.arrayBuffer());
        res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain', 'content-length': body.length });
        res.end(body);
      },
      () => res.writeHead(502).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The stand-in xcaddy (see the file comment). It sees only what the sandbox binds: its own file, GOROOT, the agent's Go caches, its work dir. */
async function standInXcaddy(dir: string): Promise<string> {
  const bin = join(dir, 'xcaddy-fleet');
  await writeFile(
    bin,
    `#!/bin/sh
if [ "$1" = "version" ]; then echo "${XCADDY_VERSION}"; exit 0; fi
if [ "$1" != "build" ]; then echo "stand-in xcaddy: $1 is not supported" >&2; exit 2; fi
out=""; mods=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --output) out="$2"; shift ;;
    --with) mods="$mods $2"; shift ;;
  esac
  shift
done
rec="$GOPATH/fairway-test"; mkdir -p "$rec"
env > "$rec/fleet-env-$$"
for m in $mods; do
  "$XCADDY_WHICH_GO" mod download -json "$m" || exit 1
  "$XCADDY_WHICH_GO" list -m -json "\${m%@*}@latest" || exit 1
done
# Long enough that the other agent takes the other job while this one holds its own.
sleep 4
cp "$rec/xcaddy-real" "$out"
`,
  );
  await chmod(bin, 0o755);
  return bin;
}

async function metric(url: string, result: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^fairway_goproxy_requests_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `fairway_goproxy_requests_total{result="${result}"} is exported`);
  return Number(m[1]);
}

describe('fleet module proxy: a hub and two agents fetch each module file from the upstream once', { timeout: 20 * 60_000 }, () => {
  let redis: RedisService;
  let upstream: GoProxy;
  let front: Awaited<ReturnType<typeof countingFront>>;
  let dir: string;
  let xcaddy: string;
  let hub: FairwayProcess;
  const agents: Record<string, FairwayProcess> = {};
  const agentCache: Record<string, string> = {};
  const agentToken = `fw_${randomBytes(24).toString('base64url')}`;
  const buildToken = `fw_${randomBytes(24).toString('base64url')}`;
  const modulePath = `fairway.test/fleet/R${randomBytes(5).toString('hex')}`;
  const version = 'v1.0.0';
  const escaped = escapeModulePath(modulePath);
  const files = ['info', 'mod', 'zip'].map((ext) => `/${escaped}/@v/${version}.${ext}`);
  const goEnv = { FAIRWAY_GONOSUMDB: 'fairway.test', FAIRWAY_LOG_FORMAT: 'json' };

  const startAgent = async (id: string, token: string) => {
    agentCache[id] = join(dir, `cache-${id}`);
    const rec = join(agentCache[id]!, 'gopath', 'fairway-test');
    await mkdir(rec, { recursive: true });
    await copyFile(XCADDY, join(rec, 'xcaddy-real'));
    await chmod(join(rec, 'xcaddy-real'), 0o755);
    agents[id] = await startFairway({
      command: 'agent',
      dataDir: join(dir, `data-${id}`),
      args: [
        '--redis',
        redis.url,
        '--store',
        join(dir, 'store'),
        '--xcaddy-bin',
        xcaddy,
        '--agent-id',
        id,
        '--concurrency',
        '1',
        '--cache-dir',
        agentCache[id]!,
        '--goproxy',
        front.url,
        '--fleet-proxy',
        hub.url,
      ],
      env: { ...goEnv, FAIRWAY_FLEET_TOKEN: token },
    });
  };
  const request = (arch: string) => api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch, plugins: [{ module: modulePath, version }] } });
  const fetchedFromUpstream = (path: string) => front.seen.filter((r) => r.path === path).length;
  const inCache = (id: string, ext: string) =>
    stat(join(agentCache[id]!, 'mod', 'cache', 'download', ...escaped.split('/'), '@v', `${version}.${ext}`)).then(
      (s) => s.isFile(),
      () => false,
    );
  const envRecords = async (id: string) => {
    const d = join(agentCache[id]!, 'gopath', 'fairway-test');
    const names = (await readdir(d).catch(() => [] as string[])).filter((n) => n.startsWith('fleet-env-'));
    return Promise.all(names.map((n) => readFile(join(d, n), 'utf8')));
  };

  before(async () => {
    dir = await tempDir('fairway-fleet-');
    await chmod(dir, 0o755);
    redis = await startRedis();
    upstream = await startGoProxy([{ path: modulePath, version, files: { 'go.mod': `module ${modulePath}\n\ngo 1.21\n`, 'fleet.go': 'package fleet\n\nconst Name = "fleet"\n' } }]);
    front = await countingFront(upstream);
    xcaddy = await standInXcaddy(dir);
    hub = await startFairway({
      command: 'hub',
      dataDir: join(dir, 'data-hub'),
      // The hub's GOPROXY: the counted upstream first (the synthetic module), the real proxy for Caddy's own resolution.
      args: ['--redis', redis.url, '--store', join(dir, 'store'), '--xcaddy-bin', xcaddy, '--goproxy', `${front.url},https://proxy.golang.org`, '--anonymous-scopes', 'read,build'],
      env: { ...goEnv, FAIRWAY_TOKENS: `fleet-agents:agent:${sha256hex(agentToken)},builder:build:${sha256hex(buildToken)}` },
    });
  });

  after(async () => {
    await Promise.all([hub, ...Object.values(agents)].filter(Boolean).map((p) => p.stop('SIGKILL')));
    await front?.close();
    await upstream?.close();
    await redis?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the route needs the agent scope: 401 without a token, 403 with a build token, 404 for a list with the agent token', async () => {
    const url = `${hub.url}/goproxy/${escaped}/@v/${version}.mod`;
    const anon = await fetch(url);
    assert.equal(anon.status, 401, await anon.text());
    const build = await fetch(url, { headers: { authorization: `Bearer ${buildToken}` } });
    assert.equal(build.status, 403, await build.text());
    const list = await fetch(`${hub.url}/goproxy/${escaped}/@v/list`, { headers: { authorization: `Bearer ${agentToken}` } });
    assert.equal(list.status, 404);
    assert.match(await list.text(), /next proxy/);
    const bad = await fetch(`${hub.url}/goproxy/${escaped}/@v/..%2f..%2fx.mod`, { headers: { authorization: `Bearer ${agentToken}` } });
    assert.equal(bad.status, 400);
    assert.deepEqual(
      front.seen.filter((r) => r.path.includes(escaped)),
      [],
      'nothing was fetched for refused or unserved requests',
    );
  });

  test('two agents, one spec each with the same plugin: every module file fetched from the upstream once', { timeout: BUILD * 2 }, async () => {
    await startAgent('agent-a', agentToken);
    await startAgent('agent-b', agentToken);
    for (const id of ['agent-a', 'agent-b']) {
      assert.match(agents[id]!.output(), /modules come from the fleet module proxy http:\/\/127\.0\.0\.1:\d+\/goproxy first/);
      assert.match(agents[id]!.output(), /the fleet module proxy accepts this agent/);
    }
    const [amd, arm] = await Promise.all([request('amd64'), request('arm64')]);
    assert.equal(amd.status, 202, JSON.stringify(amd.body));
    assert.equal(arm.status, 202, JSON.stringify(arm.body));
    assert.notEqual(amd.body.id, arm.body.id);
    for (const b of [amd, arm]) {
      const done = await waitForBuild(hub.url, b.body.id, BUILD);
      assert.equal(done.status, 'succeeded', `${done.error}\n${(await api(hub.url, `/api/builds/${b.body.id}/log`)).body}`);
    }
    // One build on each agent (each ran the stand-in once), and each agent's own module cache holds the module.
    for (const id of ['agent-a', 'agent-b']) {
      assert.equal((await envRecords(id)).length, 1, `${id} ran one build`);
      for (const ext of ['info', 'mod', 'zip']) assert.ok(await inCache(id, ext), `${id} has the .${ext} in its module cache`);
    }
    for (const f of files) assert.equal(fetchedFromUpstream(f), 1, `${f} fetched from the upstream exactly once: ${JSON.stringify(front.seen.map((r) => r.path))}`);
    // The version lists (not served by the fleet proxy) went on to the upstream, without the token.
    assert.ok(
      front.seen.some((r) => r.path === `/${escaped}/@v/list`),
      'the agents asked the upstream for the version list',
    );
    assert.deepEqual(
      front.seen.filter((r) => r.auth !== undefined),
      [],
      'the upstream never got an Authorization header',
    );
    // Hits and a fill on the hub; the zip was filled by one go command.
    assert.ok((await metric(hub.url, 'hit')) >= 4, 'hits: .info and .mod for both agents, the zip for one at least');
    assert.ok((await metric(hub.url, 'fill')) >= 1);
    assert.equal(hub.output().match(/fleet module proxy: fetched into the module cache/g)?.length, 1, 'one fill (the zip: the hub had .info and .mod from resolving the spec)');
    // The token never reaches a build: not in its environment, GOPROXY is the sandbox's relay.
    for (const id of ['agent-a', 'agent-b']) {
      const [env] = await envRecords(id);
      assert.ok(!env!.includes(agentToken), 'the token is not in the build environment');
      assert.ok(!env!.includes(hub.url), 'nor the hub URL');
      assert.match(env!, /^GOPROXY=http:\/\/127\.0\.0\.1:3128$/m);
      assert.ok(!agents[id]!.output().includes(agentToken), 'nor in the agent log');
    }
  });

  test('an agent whose token the hub refuses says so at start and falls back to the upstream', { timeout: BUILD }, async () => {
    // The two agents stop, so the new one takes the next job.
    await Promise.all([agents['agent-a']!.stop(), agents['agent-b']!.stop()]);
    const hitsBefore = await metric(hub.url, 'hit');
    await startAgent('agent-c', buildToken);
    assert.match(agents['agent-c']!.output(), /refuses this agent's fleetToken/);
    const res = await api(hub.url, '/api/builds', { json: { caddyVersion: CADDY_VERSION, os: 'linux', arch: 'riscv64', plugins: [{ module: modulePath, version }] } });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const done = await waitForBuild(hub.url, res.body.id, BUILD);
    assert.equal(done.status, 'succeeded', done.error);
    assert.equal((await envRecords('agent-c')).length, 1, 'agent-c built it');
    assert.ok(await inCache('agent-c', 'zip'));
    // Refused by the hub (403, before the route), so fetched from the upstream directly: one more each.
    for (const f of files) assert.equal(fetchedFromUpstream(f), 2, `${f}: ${JSON.stringify(front.seen.map((r) => r.path))}`);
    assert.equal(await metric(hub.url, 'hit'), hitsBefore, 'the hub served agent-c nothing');
    assert.match(agents['agent-c']!.output(), /the fleet module proxy refused a request/);
    assert.deepEqual(
      front.seen.filter((r) => r.auth !== undefined),
      [],
    );
  });
});
