// The architecture as a test (docs/architecture.md): the parts under src/ import each other only
// through their index.ts, the arrows between parts go one way (no cycle), nothing imports the
// composition root (src/main), util imports no part, and the arrows are exactly those of the map
// (the imports column of docs/architecture.md's table, and its picture). The import graph is read
// from the sources with the TypeScript compiler's own scanner, so comments and strings do not count.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = join(ROOT, 'src');
const MAP = join(ROOT, 'docs', 'architecture.md');

interface Edge {
  file: string;
  from: string;
  to: string;
  target: string;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Every relative import/export of every file, as an edge between parts (top-level folders of src/). */
function edges(): Edge[] {
  const out: Edge[] = [];
  for (const file of sources(SRC)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const ref of info.importedFiles) {
      if (!ref.fileName.startsWith('.')) continue;
      const target = resolve(dirname(file), ref.fileName.replace(/\.js$/, '.ts'));
      const from = relative(SRC, file).split('/')[0]!;
      const to = relative(SRC, target).split('/')[0]!;
      out.push({ file: relative(SRC, file), from, to, target: relative(SRC, target) });
    }
  }
  return out;
}

/** A cycle among parts, as a list of parts, or null. */
export function findCycle(graph: Map<string, Set<string>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === 'done') return null;
    if (state.get(n) === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of graph.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

/**
 * Imports that may go around a part's index.ts, each with its reason. The browser page is compiled
 * on its own (DOM types, no Node types) and bundled by esbuild, so it cannot load a part's
 * index.ts; it takes the build record's type and the resolved spec's from the zod-only files that
 * define them, and the record schema takes the spec's schema the same way (so the page's bundle
 * stays zod-only). Every file behind a side door imports only zod and other such files (checked below).
 */
const THROUGH_A_SIDE_DOOR = new Set([
  'ui/page/types.ts -> service/record-schema.ts',
  'ui/page/types.ts -> request/spec-schema.ts',
  'service/record-schema.ts -> request/spec-schema.ts',
  'ui/page/types.ts -> upstream/state-schema.ts',
]);

/**
 * Names a part's index.ts exports although no other part imports them, with the reason. A part's
 * face is what the other parts use; tests import the module files themselves. The one reason so
 * far: these parts keep their code (or some of it) in index.ts itself rather than behind it, so
 * their tests (and the options and result types of their face) have no other file to import it
 * from. Moving that code into module files is the follow-up; the list is exact (a listed name that
 * another part imports, or that is no longer exported, fails too).
 */
const DEFINED_IN_INDEX: Record<string, readonly string[]> = {
  api: ['ApiOptions'],
  auth: ['AuthConfigError', 'AuthResult', 'AuthenticatorOptions', 'NEVER_ANONYMOUS', 'defaultAnonymousScopes', 'loadTokenFile', 'parseTokenFile', 'parseTokensEnv', 'scryptRefused'],
  catalog: [
    'CatalogModule',
    'CatalogSource',
    'CuratedFile',
    'FileCatalogOptions',
    'LearnedModules',
    'UpstreamPackage',
    'UpstreamStatus',
    'curatedSchema',
    'packageId',
    'parseUpstream',
    'shippedCatalog',
  ],
  doctor: ['Check', 'CheckOutcome', 'CheckResult', 'DoctorOptions', 'checkRedis', 'checkSigningKey', 'checkStore', 'checkWritableDir', 'doctorChecks', 'findGo', 'runChecks'],
  hottier: ['HotCacheOptions', 'HotItem'],
  image: [
    'BuildImageOptions',
    'BuiltImage',
    'BuiltIndex',
    'CMD',
    'DEFAULT_SOURCE',
    'EXPOSED_PORTS',
    'IMAGE_PATHS',
    'IMAGE_TITLE',
    'ImageLayer',
    'LAYER_MTIME',
    'LayoutRef',
    'buildBaseLayer',
    'imageIndex',
    'rfc3339',
    'writeOciLayout',
  ],
  policy: ['CATALOG_PATTERN', 'PolicyContext', 'PolicyOptions', 'VersionRange', 'compareSemver', 'matchModulePattern', 'parseSemver', 'policyDenied'],
  provenance: ['ProvenanceCheck', 'readStatement'],
  registry: ['BlobAnswer', 'ManifestAnswer', 'ReferrersAnswer', 'RegistryOptions'],
  resolve: ['DEFAULT_MAX_RESOLUTIONS', 'GoResolverOptions', 'RESOLVE_QUEUE_WAIT_MS', 'ResolutionGate', 'ResolveError', 'ResolvedModule', 'VERSIONS_REFRESH_MEMO_MS', 'classifyGoError'],
  runner: ['BuildHooks', 'BuildPhase', 'XcaddyRunnerOptions', 'openBuildOutput', 'processStartTime', 'sha256File', 'xcaddyArgs'],
  sandbox: ['NO_SANDBOX_WARNING', 'SandboxOptions'],
  setup: ['SYSTEMD_UNITS', 'SetupOptions', 'SetupResult', 'SetupStep', 'UNIT_FAIRWAY_PATH', 'XCADDY_PACKAGE', 'cacheprogSourceHash', 'goMinor', 'nodeVersionOk', 'unitText'],
  store: ['OpenStoreOptions', 'StoreSpec', 'parseStoreUrl'],
  toolchain: ['AllowedEnvName', 'ENV_ALLOWLIST', 'GoCacheHookup', 'ToolchainError', 'ToolchainIdentity', 'ToolchainOptions'],
  ui: ['CONTENT_SECURITY_POLICY', 'UI_BUDGET_BYTES', 'UiOptions', 'defaultUiDir'],
};
const UNIMPORTED_EXPORTS_ALLOWED = new Map<string, string>(
  Object.entries(DEFINED_IN_INDEX).flatMap(([part, names]) => names.map((n): [string, string] => [`${part}/${n}`, `defined in ${part}/index.ts itself, which its tests import`])),
);

const hasExport = (n: ts.Node) => ts.canHaveModifiers(n) && !!ts.getModifiers(n)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

/** The names a module exports (`export *` followed into its module). */
export function exportedNames(file: string, seen = new Set<string>()): Set<string> {
  const out = new Set<string>();
  if (seen.has(file)) return out;
  seen.add(file);
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
  for (const st of sf.statements) {
    if (ts.isExportDeclaration(st)) {
      if (st.exportClause && ts.isNamedExports(st.exportClause)) for (const e of st.exportClause.elements) out.add(e.name.text);
      else if (st.exportClause) out.add(st.exportClause.name.text);
      else if (st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier)) {
        for (const n of exportedNames(resolve(dirname(file), st.moduleSpecifier.text.replace(/\.js$/, '.ts')), seen)) out.add(n);
      }
    } else if (ts.isExportAssignment(st)) out.add('default');
    else if (hasExport(st)) {
      if (ts.isVariableStatement(st)) for (const d of st.declarationList.declarations) out.add(d.name.getText(sf));
      else if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) {
        out.add(st.name.text);
      }
    }
  }
  return out;
}

/** Per imported file (relative to src/): the names other parts import from it (`*` for a namespace import). */
export function importedNames(files: readonly string[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const file of files) {
    const from = relative(SRC, file).split('/')[0]!;
    const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest);
    for (const st of sf.statements) {
      const spec = (ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) && st.moduleSpecifier && ts.isStringLiteral(st.moduleSpecifier) ? st.moduleSpecifier.text : null;
      if (!spec?.startsWith('.')) continue;
      const target = relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      if (target.split('/')[0] === from) continue;
      if (!out.has(target)) out.set(target, new Set());
      const names = out.get(target)!;
      const clause = ts.isImportDeclaration(st) ? st.importClause : null;
      if (clause?.name) names.add('default');
      const bindings = clause?.namedBindings ?? (ts.isExportDeclaration(st) ? st.exportClause : undefined);
      if (!bindings) {
        if (ts.isExportDeclaration(st)) names.add('*');
      } else if (ts.isNamespaceImport(bindings) || ts.isNamespaceExport(bindings)) names.add('*');
      else for (const e of bindings.elements) names.add((e.propertyName ?? e.name).text);
    }
  }
  return out;
}

/** `a -> b` for every arrow of a graph. */
function arrows(graph: Map<string, Set<string>>): string[] {
  return [...graph].flatMap(([from, tos]) => [...tos].map((to) => `${from} -> ${to}`)).sort();
}

/** The allowed arrows: the `imports` column of the parts table (`| \`part\` | interface | a, b |`). */
export function mapTable(markdown: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const line of markdown.split('\n')) {
    const row = /^\| `([a-z]+)` \|.*\| ([^|]+) \|$/.exec(line);
    if (!row) continue;
    const imports = row[2]!.trim() === '—' ? [] : row[2]!.split(',').map((p) => p.trim());
    out.set(row[1]!, new Set(imports));
  }
  return out;
}

/** The arrows of the mermaid picture (`a[label] --> b & c`, `a -.->|label| b`). */
export function mapPicture(markdown: string): Map<string, Set<string>> {
  const block = /```mermaid\n([\s\S]*?)```/.exec(markdown)?.[1] ?? '';
  const out = new Map<string, Set<string>>();
  for (const line of block.split('\n')) {
    const m = /^\s*([a-z]+)(?:\[[^\]]*\])?\s*(?:-->|-\.->(?:\|[^|]*\|)?)\s*(.+)$/.exec(line);
    if (!m) continue;
    if (!out.has(m[1]!)) out.set(m[1]!, new Set());
    for (const to of m[2]!.split('&')) out.get(m[1]!)!.add(to.trim());
  }
  return out;
}

describe('architecture', () => {
  const all = edges();
  const across = all.filter((e) => e.from !== e.to);

  test('the scan sees the code base (a guard against a scanner that finds nothing)', () => {
    assert.ok(all.length > 200, `only ${all.length} imports found`);
    assert.ok(across.length > 80, `only ${across.length} imports between parts found`);
  });

  test('a part is imported only through its index.ts (util, a folder of helpers, excepted)', () => {
    const bypass = across.filter((e) => e.to !== 'util' && e.target !== `${e.to}/index.ts` && !THROUGH_A_SIDE_DOOR.has(`${e.file} -> ${e.target}`));
    assert.deepEqual(
      bypass.map((e) => `${e.file} -> ${e.target}`),
      [],
    );
  });

  test('a file behind a side door imports only zod and files behind side doors (the page bundles it)', () => {
    const doors = new Set([...THROUGH_A_SIDE_DOOR].map((d) => d.split(' -> ')[1]!));
    const bad: string[] = [];
    for (const file of doors) {
      for (const ref of ts.preProcessFile(readFileSync(join(SRC, file), 'utf8'), true, true).importedFiles) {
        const target = ref.fileName.startsWith('.') ? relative(SRC, resolve(dirname(join(SRC, file)), ref.fileName.replace(/\.js$/, '.ts'))) : ref.fileName;
        if (target !== 'zod' && !doors.has(target)) bad.push(`${file} -> ${target}`);
      }
    }
    assert.deepEqual(bad, []);
  });

  test("a part's index.ts exports only what other parts import (tests import module files)", () => {
    const imported = importedNames(sources(SRC));
    const unimported: string[] = [];
    for (const part of readdirSync(SRC)) {
      const index = join(SRC, part, 'index.ts');
      if (part === 'main' || !existsSync(index)) continue;
      const used = imported.get(`${part}/index.ts`) ?? new Set<string>();
      if (used.has('*')) continue;
      for (const name of exportedNames(index)) if (!used.has(name) && !UNIMPORTED_EXPORTS_ALLOWED.has(`${part}/${name}`)) unimported.push(`${part}/${name}`);
    }
    assert.deepEqual(unimported.sort(), [], 'exports of an index.ts no other part imports: remove them (tests import the module file), or list them with a reason');
    const stale = [...UNIMPORTED_EXPORTS_ALLOWED.keys()].filter((k) => {
      const [part, name] = k.split('/') as [string, string];
      return !exportedNames(join(SRC, part, 'index.ts')).has(name) || imported.get(`${part}/index.ts`)?.has(name);
    });
    assert.deepEqual(stale, [], 'listed as unimported exports, but imported by another part or no longer exported: take them off the list');
  });

  test('the export and import readers read (the check above can fail)', () => {
    assert.ok(exportedNames(join(SRC, 'request', 'index.ts')).has('ResolvedSpec'), 'export * is followed');
    assert.ok(exportedNames(join(SRC, 'service', 'index.ts')).has('BuildService'));
    assert.ok(
      importedNames([join(SRC, 'api', 'schemas.ts')])
        .get('service/index.ts')
        ?.has('buildRecordSchema'),
    );
  });

  test('nothing imports the composition root, and util imports no part', () => {
    assert.deepEqual(
      across.filter((e) => e.to === 'main').map((e) => `${e.file} -> ${e.target}`),
      [],
    );
    assert.deepEqual(
      across.filter((e) => e.from === 'util').map((e) => `${e.file} -> ${e.target}`),
      [],
    );
  });

  test('the arrows between parts go one way', () => {
    const graph = new Map<string, Set<string>>();
    for (const e of across) {
      if (!graph.has(e.from)) graph.set(e.from, new Set());
      graph.get(e.from)!.add(e.to);
    }
    const cycle = findCycle(graph);
    assert.equal(cycle, null, `import cycle between parts: ${cycle?.join(' -> ')}`);
  });

  test('the arrows of the code are exactly the arrows of the map (docs/architecture.md)', () => {
    const code = new Map<string, Set<string>>();
    for (const e of across) {
      if (!code.has(e.from)) code.set(e.from, new Set());
      code.get(e.from)!.add(e.to);
    }
    const markdown = readFileSync(MAP, 'utf8');
    const table = mapTable(markdown);
    const parts = readdirSync(SRC, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
    assert.deepEqual([...table.keys()].sort(), parts, 'every folder of src/ is a row of the parts table, and every row a folder');
    const inCode = arrows(code);
    const inTable = arrows(table);
    assert.deepEqual(
      inCode.filter((a) => !inTable.includes(a)),
      [],
      'arrows the code has and the map lacks: add them to the imports column (if they belong) or remove the import',
    );
    assert.deepEqual(
      inTable.filter((a) => !inCode.includes(a)),
      [],
      'arrows the map shows and the code lacks: remove them from the imports column',
    );
    const shown = arrows(mapPicture(markdown));
    const drawable = inTable.filter((a) => !/ -> (request|util)$/.test(a));
    assert.deepEqual(
      shown.filter((a) => !drawable.includes(a)),
      [],
      'arrows the picture shows and the table lacks',
    );
    assert.deepEqual(
      drawable.filter((a) => !shown.includes(a)),
      [],
      'arrows of the table the picture leaves out',
    );
  });

  test('the map readers read (the check above can fail)', () => {
    const md = ['```mermaid', 'flowchart TD', '  a[a: label, with: colons] --> b & c', '  a -.->|wires| d', '```', '| `a` | `x()`, `y` | b, c, d, util |', '| `b` | nothing | — |'].join('\n');
    assert.deepEqual(arrows(mapTable(md)), ['a -> b', 'a -> c', 'a -> d', 'a -> util']);
    assert.deepEqual(arrows(mapPicture(md)), ['a -> b', 'a -> c', 'a -> d']);
    assert.deepEqual([...mapTable(md).keys()], ['a', 'b']);
  });

  test('the cycle finder finds a cycle (the check above can fail)', () => {
    const g = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['c'])],
      ['c', new Set(['a'])],
    ]);
    assert.deepEqual(findCycle(g), ['a', 'b', 'c', 'a']);
    assert.equal(
      findCycle(
        new Map([
          ['a', new Set(['b'])],
          ['b', new Set<string>()],
        ]),
      ),
      null,
    );
  });
});
