/**
 * The API against its own OpenAPI document (/openapi.json): schemathesis (pinned in
 * scripts/contract-requirements.txt, installed into .tools/venv by scripts/contract-tools.sh, which
 * scripts/deps.sh runs) sends every phase — examples, coverage, fuzzing, stateful (chains through
 * the document's links) — with every check, against
 *
 *  (a) `fairway serve` with builds stubbed at the xcaddy level: a stand-in xcaddy (the xcaddyBin
 *      setting) that answers `version` like xcaddy v0.4.7 and "builds" by copying a Go binary to
 *      --output, inside the real sandbox, so builds succeed in about a second;
 *  (b) `fairway hub` on a real Redis with no agents (builds stay queued).
 *
 * Both resolve versions against a local module proxy that serves Caddy v2.11.9 only (any other
 * module is unknown: 422), so nothing leaves the machine. Settings and each deliberate deviation,
 * with its reason: schemathesis.toml; rules JSON Schema cannot state: test/contract/fairway_hooks.py.
 * A run with any failure fails the test with schemathesis's report; the reports (text, JUnit) stay
 * in test-output/contract/.
 *   FAIRWAY_TEST_CACHE=.cache/go node --import tsx --test test/integration/contract.test.ts
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { XCADDY_VERSION } from '../../src/config/index.js';
import { api, ROOT, standInDir, startFairway, tempDir, type FairwayProcess } from '../helpers/fairway.js';
import { startGoProxy, type GoProxy } from '../helpers/goproxy.js';
import { startRedis, type RedisService } from '../helpers/services.js';

const SCHEMATHESIS = join(ROOT, '.tools', 'venv', 'bin', 'schemathesis');
const CONFIG = join(ROOT, 'schemathesis.toml');
const HOOKS = join(ROOT, 'test', 'contract');
const OUT = join(ROOT, 'test-output', 'contract');
const CADDY = 'github.com/caddyserver/caddy/v2';
/** A fixed seed: a failure reproduces with the same run; FAIRWAY_CONTRACT_SEED explores others. */
const SEED = process.env.FAIRWAY_CONTRACT_SEED ?? '1';

/** Runs schemathesis against `base`; resolves with its exit code and output (also written to test-output/contract/<name>.txt). */
async function schemathesis(name: string, base: string, env: NodeJS.ProcessEnv, extra: string[] = []): Promise<{ code: number | null; output: string }> {
  const dir = join(OUT, name);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const args = [
    '--config-file',
    CONFIG,
    'run',
    `${base}/openapi.json`,
    '--phases',
    'examples,coverage,fuzzing,stateful',
    '--seed',
    SEED,
    '--no-color',
    '--report',
    'junit',
    '--report-dir',
    dir,
    ...extra,
  ];
  // In its own directory: schemathesis keeps its example database in the working directory.
  const child = spawn(SCHEMATHESIS, args, { cwd: dir, env: { ...process.env, PYTHONPATH: HOOKS, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', resolve);
  });
  await writeFile(join(OUT, `${name}.txt`), output);
  return { code, output };
}

/** Fails with schemathesis's own report (failures, then the summary) when the run was not clean. */
function assertClean(name: string, r: { code: number | null; output: string }): void {
  if (r.code === 0) return;
  const from = r.output.search(/^=+ (FAILURES|ERRORS) =+$/m);
  const report = from >= 0 ? r.output.slice(from) : r.output.slice(-8000);
  assert.fail(`schemathesis found problems against ${name} (exit ${r.code}; full report: test-output/contract/${name}.txt):\n${report.slice(0, 60_000)}`);
}

describe('contract: the API answers as /openapi.json says (schemathesis, every phase)', { timeout: 15 * 60_000 }, () => {
  let proxy: GoProxy;
  let redis: RedisService;
  let dir: string;
  let xcaddy: string;
  const token = `fw_${randomBytes(30).toString('base64url')}`;
  const servers: FairwayProcess[] = [];

  before(async () => {
    await access(SCHEMATHESIS).catch(() => {
      throw new Error(`schemathesis is not installed at ${SCHEMATHESIS}: run "bash scripts/contract-tools.sh" (npm test runs it through scripts/deps.sh)`);
    });
    dir = await tempDir('fairway-contract-');
    // Caddy v2.11.9 and nothing else: `latest` resolves, every other module is unknown (422).
    proxy = await startGoProxy([{ path: CADDY, version: 'v2.11.9', files: { 'go.mod': `module ${CADDY}\n\ngo 1.21\n`, 'caddy.go': 'package caddy\n' } }]);
    // The stand-in xcaddy (in the sandbox it sees its own file and the Go binary it copies).
    const real = await standInDir(dir);
    xcaddy = join(dir, 'xcaddy-contract');
    await writeFile(
      xcaddy,
      `#!/bin/sh\nif [ "$1" = "version" ]; then echo "${XCADDY_VERSION} h1:stand-in"; exit 0; fi\nif [ "$1" = "build" ]; then\n  while [ "$#" -gt 0 ]; do if [ "$1" = "--output" ]; then cp '${real}' "$2"; exit 0; fi; shift; done\nfi\necho "stand-in xcaddy: $1 is not stubbed" >&2\nexit 1\n`,
    );
    await chmod(xcaddy, 0o755);
    redis = await startRedis();
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    await Promise.all([proxy?.close(), redis?.destroy()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Settings both targets share: the stand-in xcaddy, the local module proxy, no rate limits (schemathesis sends thousands of requests), one admin token. */
  const common = () => [
    '--xcaddy-bin',
    xcaddy,
    '--goproxy',
    proxy.url,
    '--gonosumdb',
    CADDY,
    '--anonymous-scopes',
    'read,build',
    '--rate-limit',
    '0',
    '--build-rate-limit',
    '0',
    '--max-active-builds',
    '100000',
  ];
  const env = () => ({ FAIRWAY_TOKENS: `contract:read+build+admin:${createHash('sha256').update(token).digest('hex')}` });

  /** The environment schemathesis and the hooks need: the token and the platforms the server builds. */
  async function stEnv(base: string): Promise<NodeJS.ProcessEnv> {
    const platforms = await api(base, '/api/platforms');
    assert.equal(platforms.status, 200);
    return { FAIRWAY_CONTRACT_TOKEN: token, FAIRWAY_CONTRACT_PLATFORMS: JSON.stringify(platforms.body.platforms) };
  }

  test('serve, builds stubbed at the xcaddy level: no failures', async () => {
    const serve = await startFairway({ args: common(), env: env(), dataDir: join(dir, 'serve') });
    servers.push(serve);
    const r = await schemathesis('serve', serve.url, await stEnv(serve.url));
    assertClean('serve', r);
  });

  test('a hub with no agents (Redis): no failures', async () => {
    const hub = await startFairway({ command: 'hub', args: ['--redis', redis.url, '--store', join(dir, 'hub-store'), ...common()], env: env(), dataDir: join(dir, 'hub') });
    servers.push(hub);
    // Some operations wait for builds to finish (by design: the caddy CLI blocks on /api/download;
    // a manifest waits up to imageWait for its platforms; POST /api/watch?wait=true waits for the
    // trial builds of the recipes schemathesis put): without agents nothing finishes, so here they
    // would only time out. They run against `serve` above, whose builds finish.
    const waiting = ['GET /api/download', 'HEAD /api/download', 'POST /api/watch'];
    const r = await schemathesis('hub', hub.url, await stEnv(hub.url), [...waiting.flatMap((n) => ['--exclude-name', n]), '--exclude-name-regex', '^(GET|HEAD) /v2/caddy(/\\{recipe\\})?/manifests/']);
    assertClean('hub', r);
  });
});
