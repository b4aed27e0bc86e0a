/**
 * Reading a Caddy binary's plugins from the outside: the output of
 * `caddy list-modules --packages --versions --skip-standard` (every Caddy v2 since 2021) and of
 * `caddy list-modules --json` (v2.11+). Caddy's own `upgrade` gets the same facts from
 * debug.ReadBuildInfo() inside the process (cmd/packagesfuncs.go getModules/getPluginPackages);
 * list-modules prints exactly that data, so these parsers reproduce Caddy's view.
 */

export type ModuleKind = 'standard' | 'non-standard' | 'unknown';

export interface ListedModule {
  /** Caddy module ID, e.g. `layer4.matchers.tls`. */
  id: string;
  kind: ModuleKind;
  /** Version of the Go module that provides it (absent when Caddy could not tell). */
  version?: string;
  /** Go module path that provides it. */
  package?: string;
  /** `replace` target of that Go module, when the binary was built with one. */
  replace?: string;
  error?: string;
}

const SUMMARY = /^\s*(Standard|Non-standard|Unknown) modules:\s*\d+\s*$/;

/**
 * Parses the text form. Caddy prints each group of modules followed by a summary line
 * (`  Standard modules: N`, `  Non-standard modules: N`, `  Unknown modules: N`), so a module's
 * kind is the label of the next summary line.
 */
export function parseListModulesText(text: string): ListedModule[] {
  const out: ListedModule[] = [];
  let pending: Omit<ListedModule, 'kind'>[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    const summary = SUMMARY.exec(raw);
    if (summary) {
      const kind = summary[1]!.toLowerCase() as ModuleKind;
      for (const m of pending) out.push({ ...m, kind });
      pending = [];
      continue;
    }
    let rest = line;
    let error: string | undefined;
    const err = /\s\[(.*)\]$/.exec(rest);
    if (err) {
      error = err[1];
      rest = rest.slice(0, err.index);
    }
    const [id, version, pkg, arrow, replace] = rest.split(/\s+/);
    if (!id) continue;
    pending.push({
      id,
      ...(version ? { version } : {}),
      ...(pkg ? { package: pkg } : {}),
      ...(arrow === '=>' && replace ? { replace } : {}),
      ...(error ? { error } : {}),
    });
  }
  // Output without summary lines (should not happen): treat as non-standard, as --skip-standard asked.
  for (const m of pending) out.push({ ...m, kind: 'non-standard' });
  return out;
}

/** Parses `caddy list-modules --json` (Caddy v2.11+). It carries no replacement information. */
export function parseListModulesJson(text: string): ListedModule[] {
  const rows = JSON.parse(text) as Array<{ module_name?: unknown; module_type?: unknown; version?: unknown; package_url?: unknown }>;
  if (!Array.isArray(rows)) throw new Error('list-modules --json did not print an array');
  return rows
    .filter((r) => typeof r?.module_name === 'string')
    .map((r) => {
      const kind: ModuleKind = r.module_type === 'standard' ? 'standard' : r.module_type === 'unknown' ? 'unknown' : 'non-standard';
      return {
        id: r.module_name as string,
        kind,
        ...(typeof r.version === 'string' && r.version ? { version: r.version } : {}),
        ...(typeof r.package_url === 'string' && r.package_url ? { package: r.package_url } : {}),
      };
    });
}

export interface PluginPackage {
  path: string;
  version: string;
}

/**
 * Caddy's getPluginPackages: the non-standard modules collapsed into Go modules (path → version).
 * Refuses replaced modules with Caddy's own message; a module with no Go module (Caddy would
 * dereference nil here) is reported instead of crashing.
 */
export function pluginPackages(modules: ListedModule[]): Map<string, PluginPackage> {
  const pkgs = new Map<string, PluginPackage>();
  for (const m of modules) {
    if (m.kind !== 'non-standard') continue;
    if (!m.package) throw new Error(`cannot tell which Go module provides the Caddy module ${m.id}; the binary's build info is incomplete`);
    if (m.replace) throw new Error(`cannot auto-upgrade when Go module has been replaced: ${m.package} => ${m.replace}`);
    pkgs.set(m.package, { path: m.package, version: m.version ?? '' });
  }
  return pkgs;
}

/** Module IDs of the non-standard modules, grouped by the Go module that provides them. */
export function modulesByPackage(modules: ListedModule[]): Map<string, { version?: string; ids: string[] }> {
  const out = new Map<string, { version?: string; ids: string[] }>();
  for (const m of modules) {
    if (m.kind !== 'non-standard' || !m.package) continue;
    const entry = out.get(m.package) ?? { ...(m.version ? { version: m.version } : {}), ids: [] };
    entry.ids.push(m.id);
    out.set(m.package, entry);
  }
  for (const e of out.values()) e.ids.sort();
  return out;
}
