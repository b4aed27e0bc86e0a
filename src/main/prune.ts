/**
 * `fairway prune`: one pruning run directly against a store, no server needed (the same Pruner the
 * servers run on their interval, src/ops/prune.ts).
 */
import type { Command } from 'commander';
import { loadConfig } from '../config/index.js';
import { createLogger } from '../util/logger.js';
import { loadPlatforms, prepareStore, prepareToolchain } from './parts.js';
import { GoResolver } from '../resolve/index.js';
import { BUILD_FLAGS, cacheKey, parseBuildRequest } from '../request/index.js';
import type { ArtifactStore } from '../store/index.js';
import { formatBytes } from '../util/units.js';
import { Pruner, type PinResolver, type PruneReport } from '../ops/index.js';
import { errorMessage } from '../util/errors.js';

function printReport(r: PruneReport): void {
  const out = process.stdout;
  const budget =
    [r.budget.maxBytes != null ? `max ${formatBytes(r.budget.maxBytes)}` : null, r.budget.maxAgeMs != null ? `max age ${Math.round(r.budget.maxAgeMs / 1000)}s` : null].filter(Boolean).join(', ') ||
    'no limits';
  out.write(`${r.dryRun ? 'dry run: would remove' : 'removed'} ${r.removed.length} of ${r.before.objects} artifacts (${budget})\n`);
  for (const x of r.removed) out.write(`  ${x.key}  ${formatBytes(x.bytes).padStart(9)}  ${x.status.padEnd(9)}  last used ${x.lastAccess}  (${x.reason})\n`);
  out.write(`before: ${formatBytes(r.before.bytes)} in ${r.before.objects} artifacts; after: ${formatBytes(r.after.bytes)} in ${r.after.objects}; pinned: ${r.pinned}\n`);
  const b = r.blobs;
  out.write(
    `blobs: ${r.dryRun ? 'would delete' : 'deleted'} ${b.removed} unreferenced (${formatBytes(b.bytes)}), kept ${b.young} newer than the grace period; ${formatBytes(b.storedBytes)} of blobs before\n`,
  );
  if (b.skipped) out.write(`blobs not collected: ${b.skipped}\n`);
  if (r.overBudget) out.write('still over budget: pinned artifacts (or unfinished uploads) exceed it\n');
  for (const e of r.errors) out.write(`error: ${e.key}: ${e.error}\n`);
}

/** `fairway prune`: one run against the store, without a server. */
export function registerPruneCommand(program: Command): void {
  program
    .command('prune')
    .description('remove artifacts over the store budget or age limit (least recently downloaded first); works directly on the store')
    .option('-c, --config <file>', 'JSON config file (env FAIRWAY_CONFIG)')
    .option('-d, --data-dir <dir>', 'data dir; the default store is <data-dir>/artifacts (env FAIRWAY_DATA_DIR)')
    .option('--cache-dir <dir>', 'Go caches, to resolve pinned specs (env FAIRWAY_CACHE_DIR)')
    .option('--store <url>', 'artifact store: a directory or s3://bucket/prefix?endpoint=... (env FAIRWAY_STORE)')
    .option('--store-max-bytes <size>', 'byte budget, e.g. 20GB (env FAIRWAY_STORE_MAX_BYTES)')
    .option('--store-max-age <duration>', 'remove artifacts not downloaded for this long, e.g. 30d (env FAIRWAY_STORE_MAX_AGE)')
    .option('--pinned <list>', 'never removed: cache keys, or a JSON list of build specs (env FAIRWAY_PINNED)')
    .option('--dry-run', 'only report what would be removed')
    .option('--json', 'print the report as JSON')
    .action(async (opts: Record<string, unknown>) => {
      const { config: file, dryRun, json, ...flags } = opts;
      const config = loadConfig({ flags: { logLevel: 'warn', ...flags }, ...(typeof file === 'string' ? { file } : {}) });
      const logger = createLogger(config.logLevel, { format: config.logFormat });
      if (config.storeMaxBytes === undefined && config.storeMaxAge === undefined) {
        throw new Error('nothing to prune against: give --store-max-bytes and/or --store-max-age (or set them in the config)');
      }
      const store: ArtifactStore = await prepareStore(config);
      const access = store.accessTracker();
      // Pinned specs need the toolchain to resolve; without it, matching requests are kept.
      let pinResolver: PinResolver = {};
      let closeSandbox = async (): Promise<void> => {};
      if (config.pinned.some((p) => typeof p !== 'string')) {
        try {
          const tc = await prepareToolchain(config, logger);
          closeSandbox = () => tc.sandbox.close();
          const platforms = await loadPlatforms(tc);
          const resolver = new GoResolver(tc, { ttlMs: config.resolveTtl, buildFlags: BUILD_FLAGS });
          const parse = (spec: Record<string, unknown>) => parseBuildRequest(spec, { platforms, maxPlugins: config.maxPlugins, allowLocalReplace: true });
          pinResolver = {
            parse,
            resolve: async (spec) => {
              const request = parse(spec);
              return { key: cacheKey(await resolver.resolve(request)), request };
            },
          };
        } catch (err) {
          logger.warn({ error: errorMessage(err) }, 'no Go toolchain to resolve pinned specs: keeping every artifact built from a pinned request');
        }
      }
      try {
        const pruner = new Pruner({
          store,
          access,
          limits: { maxBytes: config.storeMaxBytes ?? null, maxAgeMs: config.storeMaxAge ?? null },
          pinned: config.pinned,
          pinResolver,
          logger,
        });
        const report = await pruner.run({ dryRun: !!dryRun, trigger: 'cli' });
        if (json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        else printReport(report);
        if (report.errors.length) process.exitCode = 1;
      } finally {
        await access.close();
        await closeSandbox();
        await store.close?.();
      }
    });
}
