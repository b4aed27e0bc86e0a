/**
 * `fairway serve`: the embedded composition — HTTP API, in-process queue with N workers, local
 * disk store, Go toolchain. No other server needed.
 */
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { createApi } from '../api/index.js';
import { XcaddyRunner } from '../build/index.js';
import type { Config } from '../config/index.js';
import { LocalQueue } from '../queue/index.js';
import { GoResolver } from '../resolve/index.js';
import { BuildService, buildProcessor, type BuildPayload } from '../service/index.js';
import { PlatformSet } from '../spec/index.js';
import { FsStore } from '../store/index.js';
import { Toolchain } from '../toolchain/index.js';
import { uiRoutes } from '../ui/index.js';

/** Build flags are part of every cache key; xcaddy's defaults (-trimpath, -ldflags "-w -s"). */
export const BUILD_FLAGS = 'xcaddy-default';

export interface Running {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export async function startServe(config: Config, logger: Logger): Promise<Running> {
  const toolchain = await Toolchain.detect({
    goBin: config.goBin,
    xcaddyBin: config.xcaddyBin,
    cacheDir: config.cacheDir,
    ...(config.goproxy !== undefined ? { goproxy: config.goproxy } : {}),
    ...(config.goprivate !== undefined ? { goprivate: config.goprivate } : {}),
    ...(config.gonosumdb !== undefined ? { gonosumdb: config.gonosumdb } : {}),
    ...(config.gonoproxy !== undefined ? { gonoproxy: config.gonoproxy } : {}),
    ...(config.gosumdb !== undefined ? { gosumdb: config.gosumdb } : {}),
  });
  logger.info({ go: toolchain.identity.go, xcaddy: toolchain.identity.xcaddy, cacheDir: config.cacheDir }, 'toolchain ready');
  const { stdout } = await toolchain.go(['tool', 'dist', 'list', '-json'], { cwd: toolchain.tmpDir });
  const platforms = PlatformSet.fromDistListJson(stdout);
  const store = await FsStore.open(join(config.dataDir, 'artifacts'));
  const runner = new XcaddyRunner(toolchain, { timeoutMs: config.buildTimeout, maxArtifactBytes: config.maxArtifactSize });
  const queue = new LocalQueue<BuildPayload>(buildProcessor(runner, store), { workers: config.workers });
  const resolver = new GoResolver(toolchain, { ttlMs: config.resolveTtl, buildFlags: BUILD_FLAGS });
  const service = new BuildService({
    resolver,
    queue,
    store,
    platforms,
    buildFlags: BUILD_FLAGS,
    maxPlugins: config.maxPlugins,
    logger,
  });
  await service.init();
  const app = await createApi({
    service,
    logger,
    bodyLimit: config.bodyLimit,
    plugins: [uiRoutes],
    ready: async () => {
      await store.ping();
      return { store: 'ok' };
    },
  });
  await app.listen({ host: config.host, port: config.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  logger.info({ url, port, dataDir: config.dataDir, workers: config.workers }, `fairway listening on ${url}`);
  return {
    app,
    url,
    close: async () => {
      await app.close();
      await queue.close();
    },
  };
}
