/** The shared Go build cache on an agent: its checks before it starts, and the processor wrapper that waits for its puts. */
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ArtifactStore } from '../store/index.js';
import { GoCacheServer } from './gocache.js';

export interface AgentGoCacheOptions {
  /**
   * The shared tier: the store's `gocache` area, opened by the composition root
   * (`openStore(url, { area: 'gocache' })`); the server closes it when it stops.
   */
  shared: ArtifactStore;
  /** The local tier (`<cacheDir>/gocacheprog`). */
  localDir: string;
  localMaxBytes?: number;
  protectRecentMs?: number;
  sharedMaxBytes?: number;
  /** The GOCACHEPROG program, checked here. */
  progBin: string;
  /** The toolchain's Go version (`go1.26.8`): GOCACHEPROG needs Go 1.24 or newer. */
  goVersion: string;
  logger?: Logger;
}

/**
 * An agent's cache server: checks Go, the program and the shared tier, then starts. It owns the
 * shared tier from here on: closed when the server stops, or here when a check fails.
 */
export async function startAgentGoCache(o: AgentGoCacheOptions): Promise<GoCacheServer> {
  try {
    const v = /^go1\.(\d+)/.exec(o.goVersion);
    if (!v || Number(v[1]) < 24) throw new Error(`goCacheShared needs Go 1.24 or newer (GOCACHEPROG); this toolchain is ${o.goVersion}`);
    try {
      await access(o.progBin, constants.X_OK);
    } catch {
      throw new Error(`goCacheShared: the GOCACHEPROG program ${o.progBin} is missing or not executable; run "npm run setup" (it builds tools/cacheprog) or set goCacheProgBin`);
    }
    await o.shared.ping();
    return await GoCacheServer.start({
      localDir: o.localDir,
      shared: o.shared,
      ownsShared: true,
      localMaxBytes: o.localMaxBytes,
      protectRecentMs: o.protectRecentMs,
      sharedMaxBytes: o.sharedMaxBytes,
      logger: o.logger,
    });
  } catch (err) {
    await o.shared.close?.();
    throw err;
  }
}

/** Wraps a build processor so a build ends only after its cache puts are durable (or dropped with a log line). */
export function flushingGoCache<A extends unknown[], R>(cache: Pick<GoCacheServer, 'flush'>, fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } finally {
      await cache.flush();
    }
  };
}
