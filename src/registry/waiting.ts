/**
 * A tag's builds (docs/registry.md): for a caller with the `build` scope, waited for up to
 * `imageWait`; for any other, what is built, found without resolving or queueing anything.
 */
import type { Logger } from 'pino';
import type { BuildRecord, BuildService, RequestContext } from '../service/index.js';
import { RegistryError } from './oci.js';

export interface WaitContext {
  service: Pick<BuildService, 'lookup' | 'waitFor'>;
  platforms: ReadonlyArray<{ name: string }>;
  /** How long a manifest request waits for builds (`imageWait`). */
  waitMs: number;
  log: Logger;
}

/**
 * For a caller without the build scope: the builds of every image platform when all are built;
 * 503 UNAVAILABLE (Retry-After) when the missing ones are being built now; else MANIFEST_UNKNOWN
 * naming what is missing and how to have it built. Nothing is resolved or queued.
 */
export async function builtOnly(c: WaitContext, wanted: Array<Record<string, unknown>>, ctx: RequestContext, name: string): Promise<BuildRecord[]> {
  const found = await Promise.all(wanted.map((w) => c.service.lookup(w, ctx)));
  const platform = (i: number) => c.platforms[i]!.name;
  const missing = found.flatMap((r, i) => (r ? [] : [platform(i)]));
  if (missing.length > 0) {
    c.log.info({ image: name, missing }, 'registry: image not built, and the client may not build it');
    throw new RegistryError(
      404,
      'MANIFEST_UNKNOWN',
      `${name} is not built yet (${missing.join(', ')} missing), and this client may not start builds: pull it once with a token that has the build scope (docker login / --creds x:<token>), or have it built with POST /api/builds for each platform (${c.platforms.map((p) => p.name).join(', ')}); then pull again`,
    );
  }
  const running = found.filter((r) => r!.status !== 'succeeded');
  if (running.length > 0) {
    throw new RegistryError(503, 'UNAVAILABLE', `${name} is being built now (${running.map((r) => r!.id).join(', ')}); retry in a minute`, 60);
  }
  return found as BuildRecord[];
}

/** Waits for every build (up to `waitMs`); 503 UNAVAILABLE with Retry-After past it, an error for a failed build. */
export async function waitAll(c: WaitContext, recs: BuildRecord[], signal?: AbortSignal): Promise<BuildRecord[]> {
  const pending = recs.filter((r) => r.status !== 'succeeded');
  if (pending.length === 0) return recs;
  c.log.info({ builds: pending.map((r) => r.id) }, 'image: waiting for builds');
  const ac = new AbortController();
  const onAbort = () => ac.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, c.waitMs);
  try {
    const ended = await Promise.all(recs.map((r) => (r.status === 'succeeded' ? r : c.service.waitFor(r.id, ac.signal))));
    for (const r of ended) {
      if (r.status === 'succeeded') continue;
      if (r.status === 'canceled') throw new RegistryError(503, 'UNAVAILABLE', `build ${r.id} was canceled before it finished; retry`, 10);
      throw new RegistryError(500, 'UNKNOWN', `build ${r.id} (${r.spec.os}/${r.spec.arch}) failed: ${r.error ?? 'unknown error'} (log: /api/builds/${r.id}/log)`);
    }
    return ended;
  } catch (err) {
    if (timedOut) {
      const ids = pending.map((r) => r.id).join(', ');
      throw new RegistryError(503, 'UNAVAILABLE', `the image's builds are still running after ${Math.round(c.waitMs / 1000)} s (${ids}); they go on: retry later`, 60);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
