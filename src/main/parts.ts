/**
 * The parts every process of the composition root starts from: the sandboxed toolchain, the
 * platforms it can build, the artifact store, the builder. Shared by `serve`, `hub`, `agent` and
 * `fairway prune`; imported only inside src/main.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { XcaddyRunner, sweepOrphanBuilds } from '../runner/index.js';
import { sandboxLimitsOf, setupCommand, type Config } from '../config/index.js';
import { openSandbox, type Upstream } from '../sandbox/index.js';
import { PlatformSet } from '../request/index.js';
import { FsStore, openStore, type ArtifactStore } from '../store/index.js';
import { Toolchain } from '../toolchain/index.js';
import { privateModules } from '../util/goprivate.js';

/** `fleetUpstream`: an agent's fleet module proxy, relayed first (docs/distributed.md "Fleet caches"). */
export async function prepareToolchain(config: Config, logger: Logger, fleet: { fleetUpstream?: Upstream } = {}): Promise<Toolchain> {
  // Every go command and every run of a built binary goes through the sandbox (docs/SECURITY.md).
  const sandbox = await openSandbox({
    kind: config.sandbox,
    buildUser: config.buildUser,
    setupCommand: setupCommand({ toolsDir: config.toolsDir }),
    ...(config.goproxy !== undefined ? { goproxy: config.goproxy } : {}),
    ...(fleet.fleetUpstream ? { fleetUpstream: fleet.fleetUpstream } : {}), // fleet module proxy
    privateModules: privateModules(config), // GONOPROXY/GONOSUMDB/GOPRIVATE: never asked of a proxy
    limits: sandboxLimitsOf(config),
    limitsMechanism: config.sandboxLimits,
    logger,
  });
  const toolchain = await Toolchain.detect({
    sandbox,
    goBin: config.goBin,
    xcaddyBin: config.xcaddyBin,
    cacheDir: config.cacheDir,
    setupCommand: setupCommand({ toolsDir: config.toolsDir }),
    ...(config.goproxy !== undefined ? { goproxy: config.goproxy } : {}),
    ...(config.goprivate !== undefined ? { goprivate: config.goprivate } : {}),
    ...(config.gonosumdb !== undefined ? { gonosumdb: config.gonosumdb } : {}),
    ...(config.gonoproxy !== undefined ? { gonoproxy: config.gonoproxy } : {}),
    ...(config.gosumdb !== undefined ? { gosumdb: config.gosumdb } : {}),
  });
  logger.info({ go: toolchain.identity.go, xcaddy: toolchain.identity.xcaddy, cacheDir: config.cacheDir, ...sandbox.describe() }, 'toolchain ready');
  const swept = await sweepOrphanBuilds(toolchain.tmpDir);
  if (swept.length) logger.warn({ swept }, 'stopped and removed builds left by a process that died');
  return toolchain;
}

/** The targets this Go toolchain can build, from `go tool dist list -json`. */
export async function loadPlatforms(toolchain: Toolchain): Promise<PlatformSet> {
  const { stdout } = await toolchain.go(['tool', 'dist', 'list', '-json']);
  return PlatformSet.fromDistListJson(stdout);
}

/** The artifact store named by `--store` (fs path or s3:// URL); default: `<data-dir>/artifacts`. */
export async function prepareStore(config: Config): Promise<ArtifactStore> {
  return config.store ? openStore(config.store) : FsStore.open(join(config.dataDir, 'artifacts'));
}

export function runner(config: Config, toolchain: Toolchain): XcaddyRunner {
  return new XcaddyRunner(toolchain, { timeoutMs: config.buildTimeout, maxArtifactBytes: config.maxArtifactSize, minFreeBytes: config.minFreeDisk });
}
