/** Parses durations like "90s", "30m", "1h30m", "500ms" or a plain number of milliseconds. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number') return v;
  const s = v.trim();
  if (/^[0-9]+$/.test(s)) return Number(s);
  const re = /([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/gy;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  let end = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * unit[m[2]!]!;
    end = re.lastIndex;
  }
  if (end !== s.length || end === 0) throw new Error(`invalid duration "${v}" (use e.g. 90s, 30m, 1h)`);
  return total;
}

/** Parses sizes like "20GB", "512MiB", "1.5G", "1000" (bytes). */
export function parseBytes(v: string | number): number {
  if (typeof v === 'number') return v;
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)?\s*$/i.exec(v);
  if (!m) throw new Error(`invalid size "${v}" (use e.g. 500MB, 20GB, 1GiB)`);
  const u = (m[2] ?? '').toLowerCase().replace(/b$/, '');
  const pow: Record<string, number> = { '': 0, k: 1, m: 2, g: 3, t: 4 };
  const p = pow[u.replace('i', '')];
  if (p === undefined) throw new Error(`invalid size unit in "${v}"`);
  const base = u.endsWith('i') ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** p);
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let x = n;
  while (x >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}
