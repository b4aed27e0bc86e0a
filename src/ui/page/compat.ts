/**
 * A recipe's compatibility table (GET /api/recipes/{name}: what the watcher tried): for each
 * plugin, Caddy versions × that plugin's versions, each cell `ok` (a trial with both built and
 * passed its checks), `bad` (a trial with both failed, and the failure was blamed on that version
 * or on nothing else it changed) or `untried`. Pure: no DOM (compatView in recipes.ts draws it).
 */
import type { RecipeWatchState } from './types.js';

export type Cell = 'ok' | 'bad' | 'untried';

export interface CompatTable {
  module: string;
  caddyVersions: string[];
  versions: string[];
  /** `${caddyVersion} ${version}` → cell. */
  cells: Map<string, Cell>;
}

/** Newest first by dotted numbers (v2.11.9 > v2.9.0); prerelease suffixes sort after their release's number. */
function newestFirst(a: string, b: string): number {
  const n = (v: string) =>
    v
      .replace(/^v/, '')
      .split(/[.-]/)
      .map((x) => (/^\d+$/.test(x) ? Number(x) : -1));
  const [x, y] = [n(a), n(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (y[i] ?? 0) - (x[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function compatTables(state: RecipeWatchState): CompatTable[] {
  const modules = [...new Set(state.history.flatMap((h) => h.plugins.map((p) => p.module)))].sort();
  return modules.map((module) => {
    const cells = new Map<string, Cell>();
    const caddy = new Set<string>();
    const versions = new Set<string>();
    // Oldest first, so a later pass (ok) wins over an earlier failure of the same pair only when it passed.
    for (const h of [...state.history].reverse()) {
      const p = h.plugins.find((x) => x.module === module);
      if (!p) continue;
      caddy.add(h.caddyVersion);
      versions.add(p.version);
      const key = `${h.caddyVersion} ${p.version}`;
      if (h.result !== 'failed') cells.set(key, 'ok');
      else if (cells.get(key) !== 'ok') {
        const blamed = !h.culprit || (h.culprit.module === module && h.culprit.version === p.version);
        if (blamed) cells.set(key, 'bad');
      }
    }
    return { module, caddyVersions: [...caddy].sort(newestFirst), versions: [...versions].sort(newestFirst), cells };
  });
}
