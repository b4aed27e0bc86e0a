/** The watch lease of a single process (serve): always held. A fleet uses the queue's Redis lease. */
import type { Lease } from './watcher.js';

export class LocalLease implements Lease {
  async acquire(): Promise<boolean> {
    return true;
  }
}
