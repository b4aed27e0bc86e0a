/**
 * Admission of new builds: before a cache miss is queued, the server checks that the
 * disks it builds and stores on have room (507 with a clear message otherwise, so a build never
 * dies half-written on a full disk), and that the client has fewer than `maxActivePerClient`
 * builds queued or running (429 otherwise). Joining a build already in flight costs nothing and
 * is always admitted; cache hits never get here.
 */
import { statfs } from 'node:fs/promises';
import { AppError } from '../util/errors.js';
import { formatBytes } from '../util/units.js';

export interface DiskCheck {
  /** Shown to the client, e.g. "the build cache". Never a path. */
  what: string;
  /** Free bytes; null when the volume has no meaningful figure (an S3 store): not checked. */
  free(): Promise<number | null>;
}

export interface AdmissionOptions {
  /** Builds one client may have queued or running; 0 = no limit. */
  maxActivePerClient: number;
  /** Free bytes each disk needs before a build is queued; 0 = no check. */
  minFreeBytes: number;
  disks: DiskCheck[];
  /** Whether a build with this key is queued or running now. */
  isActive(key: string): Promise<boolean>;
  /** Told which path was short of space (for the server log). */
  onLowDisk?(what: string, free: number): void;
  /** Where the per-client counts live; default in memory (this process only). */
  activeBuilds?: ActiveBuilds;
  /** Told when the per-client counts could not be read or written (the check was skipped). */
  onCountError?(err: Error): void;
}

/** Free bytes for an unprivileged user on the filesystem holding `dir`. */
export async function freeBytesAt(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/**
 * Which builds each client has queued or running. In memory for `serve`; hubs keep it in Redis
 * (`RedisActiveBuilds`) so that `maxActiveBuilds` holds across all of them.
 */
export interface ActiveBuilds {
  keys(client: string): Promise<string[]>;
  add(client: string, key: string): Promise<void>;
  remove(client: string, key: string): Promise<void>;
  /** The build ended: it counts against nobody. */
  release(key: string): Promise<void>;
}

export class MemoryActiveBuilds implements ActiveBuilds {
  private readonly byClient = new Map<string, Set<string>>();

  async keys(client: string): Promise<string[]> {
    return [...(this.byClient.get(client) ?? [])];
  }

  async add(client: string, key: string): Promise<void> {
    const mine = this.byClient.get(client) ?? new Set<string>();
    mine.add(key);
    this.byClient.set(client, mine);
  }

  async remove(client: string, key: string): Promise<void> {
    const mine = this.byClient.get(client);
    mine?.delete(key);
    if (mine?.size === 0) this.byClient.delete(client);
  }

  async release(key: string): Promise<void> {
    for (const client of [...this.byClient.keys()]) await this.remove(client, key);
  }
}

export class BuildAdmission {
  private readonly builds: ActiveBuilds;

  constructor(private readonly o: AdmissionOptions) {
    this.builds = o.activeBuilds ?? new MemoryActiveBuilds();
  }

  /**
   * Throws 507 (disk) or 429 (too many builds) when a new build of `key` must not be queued;
   * otherwise counts it against `client` until `release(key)`.
   */
  async admit(key: string, client?: string): Promise<void> {
    if (await this.o.isActive(key)) return;
    if (this.o.minFreeBytes > 0) {
      for (const d of this.o.disks) {
        const free = await d.free();
        if (free !== null && free < this.o.minFreeBytes) {
          this.o.onLowDisk?.(d.what, free);
          throw new AppError(
            'insufficient_storage',
            `not enough free disk space to start a build: ${formatBytes(free)} free on ${d.what}, at least ${formatBytes(this.o.minFreeBytes)} needed (minFreeDisk). Nothing was queued; finished builds are still served. Free some space or prune old builds, then try again.`,
          );
        }
      }
    }
    if (!client || this.o.maxActivePerClient <= 0) return;
    try {
      let mine = await this.builds.keys(client);
      if (mine.length >= this.o.maxActivePerClient) {
        // Forget builds that ended without us hearing of it (e.g. a failed enqueue, a restart).
        for (const k of mine) if (!(await this.o.isActive(k))) await this.builds.remove(client, k);
        mine = await this.builds.keys(client);
      }
      if (mine.length >= this.o.maxActivePerClient && !mine.includes(key)) {
        throw new AppError(
          'too_many_builds',
          `you have ${mine.length} builds queued or running, the most one client may have (maxActiveBuilds); wait for one to finish or cancel one (DELETE /api/builds/<id>)`,
        );
      }
      await this.builds.add(client, key);
    } catch (err) {
      if (err instanceof AppError) throw err;
      // The count cannot be read (Redis down): let the request through; queueing will tell.
      this.o.onCountError?.(err as Error);
    }
  }

  /**
   * Whether `client` already has as many builds queued or running, plus `resolving` requests being
   * resolved, as one client may have (maxActiveBuilds): then nothing new is resolved for it (the
   * service answers 429 before any go command). False when there is no limit or the count is unavailable.
   */
  async full(client: string | undefined, resolving: number): Promise<boolean> {
    if (!client || this.o.maxActivePerClient <= 0) return false;
    try {
      let mine = await this.builds.keys(client);
      if (mine.length + resolving < this.o.maxActivePerClient) return false;
      for (const k of mine) if (!(await this.o.isActive(k))) await this.builds.remove(client, k);
      mine = await this.builds.keys(client);
      return mine.length + resolving >= this.o.maxActivePerClient;
    } catch (err) {
      this.o.onCountError?.(err as Error);
      return false;
    }
  }

  get maxActivePerClient(): number {
    return this.o.maxActivePerClient;
  }

  /** A build ended: it no longer counts against anyone. */
  async release(key: string): Promise<void> {
    await this.builds.release(key).catch((err: unknown) => this.o.onCountError?.(err as Error));
  }

  async active(client: string): Promise<number> {
    return (await this.builds.keys(client)).length;
  }
}
