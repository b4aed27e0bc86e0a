#!/usr/bin/env node
/** The `fairway` command line. */
import { Command, Option } from 'commander';
import { ConfigError, loadConfig } from '../config/index.js';
import { createLogger } from './logger.js';
import { startServe } from './serve.js';

const program = new Command();
program.name('fairway').description('Build server for custom Caddy binaries').version('0.1.0');

function serverOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'JSON config file (env FAIRWAY_CONFIG)')
    .option('--host <host>', 'address to listen on (env FAIRWAY_HOST, default 127.0.0.1)')
    .option('-p, --port <port>', 'port to listen on, 0 for any (env FAIRWAY_PORT, default 8080)')
    .option('-d, --data-dir <dir>', 'artifacts and state (env FAIRWAY_DATA_DIR, default .data)')
    .option('--cache-dir <dir>', 'Go module/build caches (env FAIRWAY_CACHE_DIR, default <data-dir>/go)')
    .option('-w, --workers <n>', 'concurrent builds (env FAIRWAY_WORKERS, default 1)')
    .option('--build-timeout <duration>', 'per-build timeout, e.g. 30m (env FAIRWAY_BUILD_TIMEOUT)')
    .option('--resolve-ttl <duration>', 'how long `latest` stays pinned, e.g. 10m (env FAIRWAY_RESOLVE_TTL)')
    .option('--max-plugins <n>', 'plugins per build (env FAIRWAY_MAX_PLUGINS, default 50)')
    .option('--max-artifact-size <size>', 'largest binary accepted, e.g. 512MB (env FAIRWAY_MAX_ARTIFACT_SIZE)')
    .option('--xcaddy-bin <path>', 'xcaddy binary (env FAIRWAY_XCADDY_BIN, default .tools/bin/xcaddy)')
    .option('--go-bin <path>', 'go command (env FAIRWAY_GO_BIN, default go)')
    .option('--goproxy <list>', 'GOPROXY for resolution and builds (env FAIRWAY_GOPROXY or GOPROXY)')
    .option('--goprivate <list>', 'GOPRIVATE (env FAIRWAY_GOPRIVATE or GOPRIVATE)')
    .option('--gonosumdb <list>', 'GONOSUMDB (env FAIRWAY_GONOSUMDB or GONOSUMDB)')
    .addOption(new Option('--log-level <level>', 'log level (env FAIRWAY_LOG_LEVEL)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']));
}

serverOptions(program.command('serve'))
  .description('run the build server with embedded defaults: local workers, local disk, no other server')
  .action(async (opts: Record<string, unknown>) => {
    const { config: file, ...flags } = opts;
    const config = loadConfig({ flags, ...(typeof file === 'string' ? { file } : {}) });
    const logger = createLogger(config.logLevel);
    const running = await startServe(config, logger);
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'shutting down: finishing running builds');
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
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`fairway: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fairway: ${(err as Error).message}\n`);
  process.exit(1);
});
