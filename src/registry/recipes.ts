/**
 * Recipes: named plugin sets (and an optional pinned Caddy version), each served as the registry
 * repository `caddy/<recipe>`. From the configuration (`recipes`) and the API (records
 * `recipes/<name>` in the store, which win on a name both have). A recipe read from the store is
 * reused for RECIPE_MEMO_MS: every registry request names its repository, and a pull is several
 * requests in a row; a change through another hub shows within that time, one through this hub at once.
 */
import type { Logger } from 'pino';
import type { RequestContext } from '../service/index.js';
import type { BuildRequest } from '../request/index.js';
import type { ArtifactStore } from '../store/index.js';
import { AppError, NotFoundError } from '../util/errors.js';

export interface RecipePlugin {
  module: string;
  version?: string;
}

export interface RecipeInput {
  plugins: RecipePlugin[];
  caddyVersion?: string;
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
}

export class RecipeBook {
  /** API recipes (or their absence) read in the last RECIPE_MEMO_MS, by name. */
  private readonly recipeMemo = new Map<string, { value: RecipeInput | null; at: number }>();

  constructor(private readonly o: RecipeBookOptions) {
    for (const name of Object.keys(o.recipes)) checkRecipeName(name);
  }

  /** Every recipe: the configuration's, then the API's (which win on a name both have), by name. */
  async list(): Promise<Recipe[]> {
    const out = new Map<string, Recipe>();
    for (const [name, r] of Object.entries(this.o.recipes)) out.set(name, { name, ...r, source: 'config' });
    for (const name of await this.o.store.listRecords(RECIPES_NS)) {
      const r = (await this.o.store.getRecord(RECIPES_NS, name)) as RecipeInput | null;
      if (r && Array.isArray(r.plugins)) out.set(name, { name, plugins: r.plugins, ...(r.caddyVersion ? { caddyVersion: r.caddyVersion } : {}), source: 'api' });
    }
    return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** A recipe by name (the API's before the configuration's); null for none, or a name no recipe can have. */
  async get(name: string): Promise<Recipe | null> {
    if (!RECIPE_NAME.test(name) || RESERVED.has(name)) return null;
    const r = await this.storedRecipe(name);
    if (r && Array.isArray(r.plugins)) return { name, plugins: r.plugins, ...(r.caddyVersion ? { caddyVersion: r.caddyVersion } : {}), source: 'api' };
    const c = this.o.recipes[name];
    return c ? { name, ...c, source: 'config' } : null;
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
    if (!body || typeof body !== 'object' || !Array.isArray(body.plugins)) throw new AppError('invalid_recipe', 'a recipe is {"plugins": [{"module", "version"?}], "caddyVersion"?}');
    const unknown = Object.keys(body).filter((k) => k !== 'plugins' && k !== 'caddyVersion');
    if (unknown.length > 0)
      throw new AppError(
        'invalid_recipe',
        `a recipe has plugins and caddyVersion only (not ${unknown
          .slice(0, 3)
          .map((k) => JSON.stringify(k.slice(0, 40)))
          .join(', ')})`,
      );
    // The same grammar and policy as a build, on the first image platform.
    const req = this.o.check({ ...(body.caddyVersion !== undefined ? { caddyVersion: body.caddyVersion } : {}), ...this.o.platform, plugins: body.plugins }, ctx);
    for (const p of req.plugins) if (p.replace) throw new AppError('invalid_recipe', `recipes take no replacements (${p.module})`);
    const value: RecipeInput = {
      plugins: req.plugins.map((p) => ({ module: p.module, ...(p.version && p.version !== 'latest' ? { version: p.version } : {}) })),
      ...(body.caddyVersion !== undefined ? { caddyVersion: body.caddyVersion } : {}),
    };
    await this.o.store.putRecord(RECIPES_NS, name, value);
    this.recipeMemo.delete(name);
    this.o.logger.info({ recipe: name, plugins: value.plugins.length }, 'recipe saved');
    return { name, ...value, source: 'api' };
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
