/**
 * Learns which Caddy module IDs a plugin package registers from what a built binary printed for
 * `list-modules --packages --versions --skip-standard`. The builder (serve's worker or an agent)
 * ran that inside the build sandbox, with no network and a read-only binary, and recorded the
 * output in the artifact's meta.json (`listModules`); this side only reads it. No binary ever runs
 * here, so hubs never execute plugin code.
 *
 * Policy (`catalogLearn`): `catalog` (default) only takes IDs from builds whose plugins are all
 * listed by the curated file or the upstream mirror (so an unlisted package cannot name itself in
 * the catalog); `all` takes any; `off` none.
 */
import type { Logger } from 'pino';
import type { ArtifactStore } from '../store/index.js';
import type { Catalog } from './index.js';
import { modulesByPackage, parseListModulesText } from './listmodules.js';
import { errorMessage } from '../util/errors.js';

export type LearnMode = 'off' | 'catalog' | 'all';

export interface LearnResult {
  key: string;
  /** Package path → module IDs stored. */
  learned: Record<string, string[]>;
  skipped?: string;
}

export interface ModuleLearnerOptions {
  store: ArtifactStore;
  catalog: Catalog;
  mode: LearnMode;
  logger?: Logger;
}

export class ModuleLearner {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ModuleLearnerOptions) {}

  /** Queues learning from the finished build `key`; one binary runs at a time. Never throws. */
  learn(key: string): Promise<LearnResult> {
    const run = this.chain.then(() => this.learnNow(key));
    this.chain = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      this.o.logger?.warn({ key, err }, 'catalog: could not learn module IDs from the build');
      return { key, learned: {}, skipped: errorMessage(err) };
    });
  }

  private async learnNow(key: string): Promise<LearnResult> {
    const skip = (why: string): LearnResult => {
      this.o.logger?.debug({ key, why }, 'catalog: not learning module IDs from this build');
      return { key, learned: {}, skipped: why };
    };
    if (this.o.mode === 'off') return skip('learning is off');
    const meta = await this.o.store.getMeta(key);
    if (meta?.status !== 'succeeded') return skip('no successful build');
    const spec = meta.spec;
    if (!spec.plugins.length) return skip('no plugins');
    if (this.o.mode === 'catalog') {
      const unlisted = spec.plugins.filter((p) => !this.o.catalog.lists(p.module)).map((p) => p.module);
      if (unlisted.length) return skip(`plugins not in the catalog: ${unlisted.join(', ')} (catalogLearn=catalog)`);
    }
    if (typeof meta.listModules !== 'string') return skip(`the builder could not run the ${spec.os}/${spec.arch} binary to list its modules`);
    const groups = modulesByPackage(parseListModulesText(meta.listModules));
    const learned: Record<string, string[]> = {};
    for (const p of spec.plugins) {
      // A plugin named by a package inside its Go module still maps to the module printed.
      const hit = groups.get(p.module) ?? [...groups.entries()].find(([path]) => p.module.startsWith(`${path}/`))?.[1];
      const ids = hit?.ids ?? [];
      await this.o.catalog.setModules(p.module, ids, { ...(p.version ? { version: p.version } : {}), build: key });
      learned[p.module] = ids;
    }
    this.o.logger?.info({ key, packages: Object.fromEntries(Object.entries(learned).map(([k, v]) => [k, v.length])) }, 'catalog: learned module IDs from build');
    return { key, learned };
  }
}
