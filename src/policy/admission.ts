/**
 * Admission of new builds (issue 7): before a cache miss is queued, the server checks that the
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
  free(): Promise<number>;
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
}

/** Free bytes for an unprivileged user on the filesystem holding `dir`. */
export async function freeBytesAt(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

export class BuildAdmission {
  private readonly byClient = new Map<string, Set<string>>();

  constructor(private readonly o: AdmissionOptions) {}

  /**
   * Throws 507 (disk) or 429 (too many builds) when a new build of `key` must not be queued;
   * otherwise counts it against `client` until `release(key)`.
   */
  async admit(key: string, client?: string): Promise<void> {
    if (await this.o.isActive(key)) return;
    if (this.o.minFreeBytes > 0) {
      for (const d of this.o.disks) {
        const free = await d.free();
        if (free < this.o.minFreeBytes) {
          this.o.onLowDisk?.(d.what, free);
          throw new AppError(
            507,
            'insufficient_storage',
            `not enough free disk space to start a build: ${formatBytes(free)} free on ${d.what}, at least ${formatBytes(this.o.minFreeBytes)} needed (minFreeDisk). Nothing was queued; finished builds are still served. Free some space or prune old builds, then try again.`,
          );
        }
      }
    }
    if (!client || this.o.maxActivePerClient <= 0) return;
    let mine = this.byClient.get(client);
    if (mine && mine.size >= this.o.maxActivePerClient) {
      // Forget builds that ended without us hearing of it (e.g. a failed enqueue).
      for (const k of [...mine]) if (!(await this.o.isActive(k))) mine.delete(k);
    }
    mine = this.byClient.get(client) ?? new Set();
    if (mine.size >= this.o.maxActivePerClient && !mine.has(key)) {
      throw new AppError(
        429,
        'too_many_builds',
        `you have ${mine.size} builds queued or running, the most one client may have (maxActiveBuilds); wait for one to finish or cancel one (DELETE /api/builds/<id>)`,
      );
    }
    mine.add(key);
    this.byClient.set(client, mine);
  }

  /** A build ended: it no longer counts against anyone. */
  release(key: string): void {
    for (const [client, keys] of this.byClient) {
      keys.delete(key);
      if (keys.size === 0) this.byClient.delete(client);
    }
  }

  active(client: string): number {
    return this.byClient.get(client)?.size ?? 0;
  }
}
