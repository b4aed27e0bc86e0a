#!/usr/bin/env node
/**
 * The composition root: the `fairway` command line and the only place that wires the parts
 * together (servers.ts, parts.ts, prune.ts). Nothing imports src/main.
 */
import { Command } from 'commander';
import { ConfigError, FAIRWAY_VERSION, loadConfig } from '../config/index.js';
import { registerClientCommands, registerPackageCommands, registerProvenanceCommands, registerTokenCommands } from '../cli/index.js';
import { createLogger } from '../util/logger.js';
import { agentFlags, hubFlags, serveFlags } from './flags.js';
import { registerPruneCommand } from './prune.js';
import { startAgent, startHub, startServe } from './servers.js';

const program = new Command();
program.name('fairway').description('Build server for custom Caddy binaries').version(FAIRWAY_VERSION);

/** Loads config from flags/env/file; runs `start`; stops gracefully on SIGINT/SIGTERM. */
function daemon(
  start: (config: ReturnType<typeof loadConfig>, logger: ReturnType<typeof createLogger>) => Promise<{ close(): Promise<void> }>,
  stopMessage = 'shutting down: finishing running builds (signal again to force)',
) {
  return async (opts: Record<string, unknown>) => {
    const { config: file, ...flags } = opts;
    const config = loadConfig({ flags, ...(typeof file === 'string' ? { file } : {}) });
    const logger = createLogger(config.logLevel, { format: config.logFormat });
    const running = await start(config, logger);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, stopMessage);
      running.close().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  };
}

serveFlags(program.command('serve'))
  .description('run the build server with embedded defaults: local workers, local disk, no other server')
  // The embedded queue keeps its builds in the journal: they stop now and run again after a restart.
  .action(daemon(startServe, 'shutting down: running builds stop and are re-queued when the server starts again (signal again to force)'));

hubFlags(program.command('hub')).description('run the HTTP API and UI on a shared BullMQ/Redis queue; builds run on agents').action(daemon(startHub));

agentFlags(program.command('agent'))
  .description('take builds from the shared queue, run xcaddy, upload artifacts to the store')
  .action((opts: Record<string, unknown>) => {
    const { concurrency, ...rest } = opts;
    return daemon(async (config, logger) => {
      const agent = await startAgent(config, logger);
      return { close: () => agent.close() };
    })({ ...rest, ...(concurrency !== undefined ? { workers: concurrency } : {}) });
  });

// `fairway prune [--dry-run]` directly against the store (prune.ts).
registerPruneCommand(program);

// API tokens: `fairway token create|hash` (src/cli/token.ts).
registerTokenCommands(program);
registerProvenanceCommands(program); // `fairway key create`, `fairway verify` (src/cli/key.ts, verify.ts)

// Client commands (build, status, logs): talk to a running server over its HTTP API.
registerClientCommands(program);

// ---- upgrade / add-package / remove-package against a Fairway server (src/cli/packages.ts) ----
registerPackageCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`fairway: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fairway: ${(err as Error).message}\n`);
  process.exit(1);
});
