#!/usr/bin/env node
/**
 * The composition root: the `fairway` command line and the only place that wires the parts
 * together (servers.ts with http.ts, keys.ts and fleetcaches.ts; parts.ts, prune.ts). Nothing imports src/main.
 */
import { Command } from 'commander';
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, FAIRWAY_VERSION, loadConfig, setupCommand } from '../config/index.js';
import { exitCode, formatReport, runDoctor } from '../doctor/index.js';
import { nodeRuntimeCheck, runSetup, setupOptionsFrom } from '../setup/index.js';
import { registerClientCommands, registerPackageCommands, registerProvenanceCommands, registerTokenCommands } from '../cli/index.js';
import { createLogger } from '../util/logger.js';
import { agentFlags, doctorFlags, hubFlags, serveFlags, setupFlags } from './flags.js';
import { registerPruneCommand } from './prune.js';
import { startAgent, startHub, startServe } from './servers.js';
import { errorMessage } from '../util/errors.js';

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
    // The runtime first: an unmaintained Node.js gets no security fixes (docs/install.md "Node.js").
    const node = nodeRuntimeCheck();
    if (node.ok) logger.info({ node: process.version, execPath: process.execPath }, node.detail);
    else logger.warn({ node: process.version, execPath: process.execPath, fix: node.fix }, node.detail);
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

// ---- install (docs/install.md): `fairway setup`, `fairway doctor` ----
setupFlags(program.command('setup'))
  .description('install what the package cannot carry: the pinned xcaddy and fairway-cacheprog into <tools-dir>/bin, bubblewrap, socat and the build user; idempotent')
  .action(async (opts: Record<string, unknown>) => {
    const { config: file, systemd, os, ...flags } = opts;
    const config = loadConfig({ flags, ...(typeof file === 'string' ? { file } : {}) });
    // The command the units start: the Node.js running this setup (checked by its `node` step) and
    // this program's real path, so a service never runs on whatever older `node` PATH has first.
    const fairwayBin = `${process.execPath} ${realpathSync(resolve(process.argv[1] ?? ''))}`;
    const result = await runSetup(
      setupOptionsFrom(config, {
        log: (line) => process.stdout.write(`setup: ${line}\n`),
        installOsPackages: os !== false,
        ...(systemd !== undefined ? { systemdDir: typeof systemd === 'string' ? systemd : '/etc/systemd/system', fairwayBin } : {}),
      }),
    );
    process.stdout.write(result.ok ? 'setup: done; check the result with `fairway doctor`\n' : 'setup: FAILED (see the lines above)\n');
    process.exitCode = result.ok ? 0 : 1;
  });

doctorFlags(program.command('doctor'))
  .description('check Go, xcaddy, the sandbox, the module proxy, the data and cache dirs and, when configured, Redis, the store and the signing key; non-zero exit on any failure')
  .action(async (opts: Record<string, unknown>) => {
    const { config: file, json, ...flags } = opts;
    const config = loadConfig({ flags, ...(typeof file === 'string' ? { file } : {}) });
    const results = await runDoctor({ config, setupCommand: setupCommand({ toolsDir: config.toolsDir }) });
    process.stdout.write(json ? `${JSON.stringify(results, null, 2)}\n` : formatReport(results));
    process.exitCode = exitCode(results);
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
  process.stderr.write(`fairway: ${errorMessage(err)}\n`);
  process.exit(1);
});
