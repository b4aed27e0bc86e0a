/**
 * Recipes: named plugin sets (and an optional pinned Caddy version, and an optional test config),
 * each served as the registry repository `caddy/<recipe>`. From the configuration (`recipes`) and
 * the API (records `recipes/<name>` in the store, which win on a name both have). A recipe read
 * from the store is reused for RECIPE_MEMO_MS: every registry request names its repository, and a
 * pull is several requests in a row; a change through another hub shows within that time, one
 * through this hub at once.
 *
 * A plugin's version is `latest` (or absent), exact, a semver range, or another Go query (a
 * branch): src/request range.ts. Whatever turns a recipe into builds asks `pinRanges` first (each
 * range → the newest version it admits, from the module's version list); `resolve` pins every
 * version (docs/recipes.md).
 */
import type { Logger } from 'pino';
import type { RequestContext } from '../service/index.js';
import { SpecError, admitted, recipeVersionKind, testConfigError, type BuildRequest, type TestConfig } from '../request/index.js';
import type { ArtifactStore } from '../store/index.js';
import { AppError, NotFoundError } from '../util/errors.js';
import { RegistryError } from './oci.js';

export interface RecipePlugin {
  module: string;
  /** `latest` when absent; exact (v1.2.3), a semver range (^1.2) or another Go query (a branch). */
  version?: string;
}

export interface RecipeInput {
  plugins: RecipePlugin[];
  caddyVersion?: string;
  /** A Caddyfile (string) or a Caddy JSON config (object) the recipe's builds are tried with; at most 64 KiB. */
  testConfig?: TestConfig;
}

/** Where a recipe's version ranges are admitted from (the service, over src/resolve). */
export interface RecipeVersionSource {
  /** The module's published versions, newest first (`go list -m -versions`). */
  moduleVersions(module: string, opts: { refresh?: boolean }, ctx: RequestContext): Promise<{ versions: Array<{ version: string }> }>;
  /** One Go query (`latest`, a branch) pinned to its exact version. */
  resolveModule(module: string, query: string): Promise<string>;
}

export interface Recipe extends RecipeInput {
  name: string;
  source: 'config' | 'api';
}

export const RECIPE_NAME = /^[a-z0-9][a-z0-9-]{0,63}$/;
/** Names that are path segments of the routes (or the build repository), never recipes. */
const RESERVED = new Set(['build', 'manifests', 'blobs', 'tags', 'referrers']);
const RECIPES_NS = 'recipes';
const RECIPE_MEMO_MS = 1_000;
const MEMO_ENTRIES = 512;

export function checkRecipeName(name: string): void {
  if (!RECIPE_NAME.test(name) || RESERVED.has(name)) {
    throw new AppError('invalid_recipe', `recipe name ${JSON.stringify(name.slice(0, 80))}: use [a-z0-9][a-z0-9-]{0,63}, not build, manifests, blobs, tags or referrers`);
  }
}

export interface RecipeBookOptions {
  store: ArtifactStore;
  /** Recipes from the configuration (`recipes`). */
  recipes: Record<string, RecipeInput>;
  /** The build grammar and policy (BuildService.check), which a recipe is held to. */
  check(input: unknown, ctx: RequestContext): BuildRequest;
  /** The platform a recipe is checked on (the first image platform). */
  platform: { os: string; arch: string; arm?: string };
  logger: Logger;
  /** Version lists and Go queries, for ranges and `resolve`. */
  versions: RecipeVersionSource;
}

/** A recipe as stored or configured, with only the fields it has. */
function recipeOf(name: string, r: RecipeInput, source: Recipe['source']): Recipe {
  return {
    name,
    plugins: r.plugins,
    ...(r.caddyVersion ? { caddyVersion: r.caddyVersion } : {}),
    ...(r.testConfig !== undefined ? { testConfig: r.testConfig } : {}),
    source,
  };
}

/** Null when every plugin version and the test config of a recipe are ones a recipe takes, else why not. */
export function recipeError(r: { plugins: Array<{ module?: unknown; version?: unknown }>; testConfig?: unknown }): string | null {
  for (const [i, p] of r.plugins.entries()) {
    if (typeof p?.version !== 'string') continue;
    const k = recipeVersionKind(p.version);
    if ('error' in k) return `plugins[${i}].version: ${k.error}`;
  }
  return testConfigError(r.testConfig);
}

export class RecipeBook {
  /** API recipes (or their absence) read in the last RECIPE_MEMO_MS, by name. */
  private readonly recipeMemo = new Map<string, { value: RecipeInput | null; at: number }>();

  /** The last version list read of each module (newest first), for `pinRanges({known})`. */
  private readonly lastLists = new Map<string, string[]>();

  constructor(private readonly o: RecipeBookOptions) {
    for (const [name, r] of Object.entries(o.recipes)) {
      checkRecipeName(name);
      const err = recipeError(r);
      if (err) throw new AppError('invalid_recipe', `recipe ${name}: ${err}`);
    }
  }

  /** Every recipe: the configuration's, then the API's (which win on a name both have), by name. */
  async list(): Promise<Recipe[]> {
    const out = new Map<string, Recipe>();
    for (const [name, r] of Object.entries(this.o.recipes)) out.set(name, recipeOf(name, r, 'config'));
    for (const name of await this.o.store.listRecords(RECIPES_NS)) {
      const r = (await this.o.store.getRecord(RECIPES_NS, name)) as RecipeInput | null;
      if (r && Array.isArray(r.plugins)) out.set(name, recipeOf(name, r, 'api'));
    }
    return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** A recipe by name (the API's before the configuration's); null for none, or a name no recipe can have. */
  async get(name: string): Promise<Recipe | null> {
    if (!RECIPE_NAME.test(name) || RESERVED.has(name)) return null;
    const r = await this.storedRecipe(name);
    if (r && Array.isArray(r.plugins)) return recipeOf(name, r, 'api');
    const c = this.o.recipes[name];
    return c ? recipeOf(name, c, 'config') : null;
  }

  private async storedRecipe(name: string): Promise<RecipeInput | null> {
    const m = this.recipeMemo.get(name);
    if (m && Date.now() - m.at <= RECIPE_MEMO_MS) return m.value;
    const value = (await this.o.store.getRecord(RECIPES_NS, name)) as RecipeInput | null;
    if (this.recipeMemo.size >= MEMO_ENTRIES) this.recipeMemo.delete(this.recipeMemo.keys().next().value!);
    this.recipeMemo.set(name, { value, at: Date.now() });
    return value;
  }

  /** Saves an API recipe, held to the grammar and policy of a build on the first image platform. */
  async put(name: string, input: unknown, ctx: RequestContext): Promise<Recipe> {
    checkRecipeName(name);
    const body = (input ?? {}) as Partial<RecipeInput>;
    if (!body || typeof body !== 'object' || !Array.isArray(body.plugins)) throw new AppError('invalid_recipe', 'a recipe is {"plugins": [{"module", "version"?}], "caddyVersion"?, "testConfig"?}');
    const unknown = Object.keys(body).filter((k) => k !== 'plugins' && k !== 'caddyVersion' && k !== 'testConfig');
    if (unknown.length > 0)
      throw new AppError(
        'invalid_recipe',
        `a recipe has plugins, caddyVersion and testConfig only (not ${unknown
          .slice(0, 3)
          .map((k) => JSON.stringify(k.slice(0, 40)))
          .join(', ')})`,
      );
    // A version is held to the recipe grammar (a range, or the build grammar's): invalid_spec as a build's.
    for (const [i, p] of body.plugins.entries()) {
      const k = typeof p?.version === 'string' ? recipeVersionKind(p.version) : null;
      if (k && 'error' in k) throw new SpecError(`plugins[${i}].version`, k.error);
    }
    const err = testConfigError(body.testConfig);
    if (err) throw new AppError('invalid_recipe', err);
    // A range is the recipe's own (docs/recipes.md): the build grammar and policy see the module, at latest.
    const ranges = body.plugins.map((p) => (typeof p?.version === 'string' && (recipeVersionKind(p.version) as { kind?: string }).kind === 'range' ? p.version : null));
    const plugins = body.plugins.map((p, i) => {
      if (ranges[i] === null) return p;
      const { version: _, ...rest } = p;
      return rest;
    });
    // The same grammar and policy as a build, on the first image platform.
    const req = this.o.check({ ...(body.caddyVersion !== undefined ? { caddyVersion: body.caddyVersion } : {}), ...this.o.platform, plugins }, ctx);
    for (const p of req.plugins) if (p.replace) throw new AppError('invalid_recipe', `recipes take no replacements (${p.module})`);
    const value: RecipeInput = {
      plugins: req.plugins.map((p, i) => ({ module: p.module, ...(ranges[i] !== null ? { version: ranges[i]! } : p.version && p.version !== 'latest' ? { version: p.version } : {}) })),
      ...(body.caddyVersion !== undefined ? { caddyVersion: body.caddyVersion } : {}),
      ...(body.testConfig !== undefined ? { testConfig: body.testConfig } : {}),
    };
    await this.o.store.putRecord(RECIPES_NS, name, value);
    this.recipeMemo.delete(name);
    this.o.logger.info({ recipe: name, plugins: value.plugins.length, testConfig: value.testConfig !== undefined }, 'recipe saved');
    return recipeOf(name, value, 'api');
  }

  /**
   * The recipe's plugins with each version range replaced by the newest version it admits (the
   * module's version list: memoised by the resolver, `refresh` to read it again); `latest`, exact
   * versions and other queries as they are (a build resolves them). With `known`, no go command:
   * the lists this process read last, however old, and null when a range's module has none (for
   * callers that may not resolve). Throws unknown_version naming the module and the range when
   * the range admits nothing.
   */
  async pinRanges(recipe: RecipeInput, opts: { known?: boolean; refresh?: boolean; ctx?: RequestContext } = {}): Promise<RecipePlugin[] | null> {
    const out: RecipePlugin[] = [];
    for (const p of recipe.plugins) {
      const kind = recipeVersionKind(p.version);
      if (!('kind' in kind) || kind.kind !== 'range') {
        out.push(p);
        continue;
      }
      let list = this.lastLists.get(p.module);
      if (!opts.known) list = await this.readList(p.module, !!opts.refresh, opts.ctx ?? {});
      if (!list) return null;
      out.push({ module: p.module, version: this.newest(p.module, p.version!, list) });
    }
    return out;
  }

  /**
   * The exact plugin list of a recipe now: each range's newest admitted version (pinRanges), each
   * `latest` or other query as Go resolves it (as a build would), exact versions as they are.
   */
  async resolve(recipe: RecipeInput, opts: { refresh?: boolean } = {}): Promise<Array<{ module: string; version: string }>> {
    const pinned = (await this.pinRanges(recipe, { refresh: !!opts.refresh }))!;
    return Promise.all(
      pinned.map(async (p) => {
        const kind = recipeVersionKind(p.version);
        if ('kind' in kind && kind.kind === 'exact') return { module: p.module, version: p.version! };
        return { module: p.module, version: await this.o.versions.resolveModule(p.module, p.version || 'latest') };
      }),
    );
  }

  /**
   * The plugins to request a recipe's image with (the registry's tag path): ranges pinned, by a
   * go command when the caller may build (admitted as a resolution: BuildService.moduleVersions),
   * else from what this process knows; MANIFEST_UNKNOWN saying how to have it built when it knows
   * nothing of a range's module.
   */
  async buildPlugins(recipe: RecipeInput, ctx: RequestContext, mayResolve: boolean, image: string): Promise<RecipePlugin[]> {
    const plugins = await this.pinRanges(recipe, { known: !mayResolve, ctx });
    if (plugins) return plugins;
    throw new RegistryError(
      404,
      'MANIFEST_UNKNOWN',
      `${image} follows a version range that this server has not resolved yet, and this client may not resolve it: pull it once with a token that has the build scope (docker login / --creds x:<token>); then pull again`,
    );
  }

  private async readList(module: string, refresh: boolean, ctx: RequestContext): Promise<string[]> {
    const list = (await this.o.versions.moduleVersions(module, { refresh }, ctx)).versions.map((v) => v.version);
    this.lastLists.delete(module);
    if (this.lastLists.size >= MEMO_ENTRIES) this.lastLists.delete(this.lastLists.keys().next().value!);
    this.lastLists.set(module, list);
    return list;
  }

  private newest(module: string, range: string, list: readonly string[]): string {
    const v = admitted(list, range)[0];
    if (v) return v;
    const shown = list.slice(0, 5).join(', ');
    throw new AppError(
      'unknown_version',
      `plugin ${module}: no published version is admitted by the range ${JSON.stringify(range)} (${list.length === 0 ? 'the module has no tagged versions' : `newest published: ${shown}${list.length > 5 ? ', …' : ''}`}; prereleases only when the range names one, pseudo-versions never): widen the range, or publish a version it admits`,
    );
  }

  async delete(name: string): Promise<void> {
    checkRecipeName(name);
    if (!(await this.o.store.getRecord(RECIPES_NS, name))) {
      if (this.o.recipes[name]) throw new AppError('config_recipe', `recipe ${name} comes from the configuration (recipes setting); change it there`);
      throw new NotFoundError(`recipe ${name}`);
    }
    await this.o.store.deleteRecord(RECIPES_NS, name);
    this.recipeMemo.delete(name);
  }
}
