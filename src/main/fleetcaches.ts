/**
 * The fleet caches as the composition root wires them (docs/distributed.md "Fleet caches"): the
 * hub's module proxy, an agent's upstream to it, and an agent's shared Go build cache server.
 */
import { access } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { FleetModuleProxy, startAgentGoCache, type GoCacheServer } from '../fleet/index.js';
import { parseGoproxy, type Upstream } from '../sandbox/index.js';
import type { BuildGate, OpsMetrics } from '../ops/index.js';
import { setupCommand, type Config } from '../config/index.js';
import { freeBytesAt, type BuildPolicy } from '../policy/index.js';
import { openStore } from '../store/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { matchPrivate, privateModules } from '../util/goprivate.js';
import { formatBytes } from '../util/units.js';
import { errorMessage } from '../util/errors.js';

/** The hub's (and serve's) module cache, read-through: a miss is fetched by the sandboxed go command, once. */
export function fleetModuleProxy(toolchain: Toolchain, metrics: OpsMetrics, logger: Logger, config: Config, policy: BuildPolicy): FleetModuleProxy {
  // Private modules (GONOPROXY, default GOPRIVATE) are never asked of a proxy: the hub refuses them as its relay would.
  const { noProxy } = privateModules(config);
  const minFree = config.minFreeDisk;
  let lastLow = 0;
  return new FleetModuleProxy({
    refuse: (module) => {
      const denied = policy.deniedError(module);
      if (denied) return `${denied}; the hub does not fetch it`;
      const pattern = matchPrivate(noProxy, module);
      return pattern ? `${module} is a private module (GONOPROXY/GOPRIVATE pattern "${pattern}"): it is never asked of a module proxy` : null;
    },
    maxConcurrentFills: 4,
    maxQueuedFills: 64,
    lowDisk: async () => {
      if (!minFree) return null;
      const free = await freeBytesAt(toolchain.cacheDir);
      if (free >= minFree) return null;
      if (Date.now() - lastLow > 60_000) {
        lastLow = Date.now();
        logger.warn({ free, minFreeDisk: minFree }, 'low disk space on the module cache volume: the fleet module proxy refuses fills (agents fetch from their own GOPROXY)');
      }
      return `not enough free disk space on the hub's module cache volume (${formatBytes(free)} free, minFreeDisk ${formatBytes(minFree)})`;
    },
    // GOMODCACHE is <cacheDir>/mod (src/toolchain); its download cache has the GOPROXY layout.
    downloadDir: join(toolchain.cacheDir, 'mod', 'cache', 'download'),
    fill: async ({ module, version, what }) => {
      // Checked by the fleet part: a module path and a canonical version, neither starting with "-".
      const target = `${module}@${version}`;
      // .info/.mod: `go list -m` fetches those two only (an agent's MVS reads many go.mod files whose zips it never needs).
      const args = what === 'zip' ? ['mod', 'download', '-json', target] : ['list', '-m', '-json', target];
      const started = Date.now();
      await toolchain.go(args, { network: 'modules', timeoutMs: 10 * 60_000 });
      logger.info({ module, version, what, ms: Date.now() - started }, 'fleet module proxy: fetched into the module cache');
    },
    onResult: (result) => metrics.goproxyRequests.inc({ result }),
  });
}

/**
 * An agent's fleet module proxy: `<fleetProxy>/goproxy` before the GOPROXY proxies, with the token
 * as a header the relay sends to it alone (outside the sandbox). Any failure there (refused token,
 * hub down, not fetchable) falls through to the next proxy, like `|`: the fleet cache saves
 * downloads, it is never what a build depends on.
 */
export function fleetUpstream(config: Config, logger: Logger): Upstream | undefined {
  const own = parseGoproxy(config.goproxy).upstreams.map((u) => u.url);
  if (!config.fleetProxy) {
    if (config.fleetToken) logger.warn('fleetToken is set but fleetProxy is not: the token is not used');
    logger.info({ moduleProxies: own }, 'modules come from the GOPROXY proxies (no fleetProxy)');
    return undefined;
  }
  if (!config.fleetToken)
    throw new Error('fleetProxy needs fleetToken (env FAIRWAY_FLEET_TOKEN or the config file): a token with the agent scope (`fairway token create --name <agent> --scopes agent`)');
  const url = `${config.fleetProxy}/goproxy`;
  if (config.sandbox === 'none') {
    logger.warn({ fleetProxy: config.fleetProxy, moduleProxies: own }, 'fleetProxy is not used with --sandbox none (the token would reach the go command): modules come from the GOPROXY proxies');
    return undefined;
  }
  logger.info({ fleetProxy: url, fallBackTo: own }, `modules come from the fleet module proxy ${url} first, then from ${own.join(', ')}`);
  return { url, fallThrough: 'any-error', headers: { authorization: `Bearer ${config.fleetToken}` } };
}

/** Asks the hub once whether it takes the token (a list request: 404 when it does, 401/403 when not) and says so. */
export async function probeFleetProxy(up: Upstream, logger: Logger): Promise<void> {
  try {
    const res = await fetch(`${up.url}/fleet.invalid/probe/@v/list`, { headers: { ...up.headers }, signal: AbortSignal.timeout(5000) });
    await res.arrayBuffer();
    if (res.status === 401 || res.status === 403) {
      logger.error({ fleetProxy: up.url, status: res.status }, "the hub refuses this agent's fleetToken (it needs the agent scope): modules come from the GOPROXY proxies directly");
    } else if (res.status !== 404) logger.warn({ fleetProxy: up.url, status: res.status }, 'the fleet module proxy answered unexpectedly; modules fall back to the GOPROXY proxies when it fails');
    else logger.info({ fleetProxy: up.url }, 'the fleet module proxy accepts this agent');
  } catch (err) {
    logger.warn({ fleetProxy: up.url, err: errorMessage(err) }, 'the fleet module proxy is not reachable now; modules fall back to the GOPROXY proxies while it is not');
  }
}

/** The agent's Go cache server, hooked into the toolchain's build commands; says where its caches come from. */
export async function agentGoCache(config: Config, toolchain: Toolchain, gate: BuildGate, logger: Logger): Promise<GoCacheServer> {
  // Named here with the right set-up command for this install (a checkout or the npm package).
  const prog = resolve(config.goCacheProgBin);
  await access(prog, fsConstants.X_OK).catch(() => {
    throw new Error(
      `goCacheShared: the GOCACHEPROG program ${prog} is missing or not executable; run "${setupCommand({ toolsDir: config.toolsDir })}" (it builds tools/cacheprog) or set goCacheProgBin`,
    );
  });
  // The shared tier: the artifact store's `gocache` area (docs/distributed.md "Fleet caches").
  const shared = await openStore(config.store ?? join(config.dataDir, 'artifacts'), { dataDir: config.dataDir, area: 'gocache' });
  const cache = await startAgentGoCache({
    shared,
    localDir: join(config.cacheDir, 'gocacheprog'),
    protectRecentMs: config.buildTimeout,
    localMaxBytes: config.goCacheMaxBytes,
    sharedMaxBytes: config.goCacheSharedMaxBytes,
    progBin: resolve(config.goCacheProgBin),
    goVersion: toolchain.identity.go,
    logger: logger.child({ part: 'gocache' }),
  });
  toolchain.useGoCache({ prog: resolve(config.goCacheProgBin), socket: cache.socketPath, localDir: cache.localDir });
  cache.schedulePruning({ intervalMs: config.pruneInterval, onIdle: (l) => gate.onIdle(l), whenIdle: (fn) => gate.whenIdle(fn) });
  logger.info({ ...cache.describe(), prog: config.goCacheProgBin }, 'shared build cache on: go builds read and write through the local tier and the store (GOCACHEPROG)');
  return cache;
}
