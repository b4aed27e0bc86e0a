/** The flags of `serve`, `hub` and `agent` (each maps to a config setting: src/config). */
import { type Command, Option } from 'commander';

/** Common options first, then one group a topic (`--help` shows each under its heading). */
function commonOptions(cmd: Command): Command {
  return cmd
    .optionsGroup('Common options:')
    .option('-c, --config <file>', 'JSON config file (env FAIRWAY_CONFIG)')
    .option('--host <host>', 'address to listen on (env FAIRWAY_HOST, default 127.0.0.1)')
    .option('-p, --port <port>', 'port to listen on, 0 for any (env FAIRWAY_PORT, default 8080)')
    .option('-d, --data-dir <dir>', 'artifacts and state (env FAIRWAY_DATA_DIR, default .data)')
    .addOption(new Option('--log-level <level>', 'log level (env FAIRWAY_LOG_LEVEL)').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
    .addOption(new Option('--log-format <format>', 'auto: readable lines on a terminal, JSON otherwise (env FAIRWAY_LOG_FORMAT)').choices(['auto', 'json', 'pretty']));
}

/** The rest of the server flags, by topic, after the role's own (each maps to a config setting: src/config). */
function topicOptions(cmd: Command): Command {
  return cmd
    .optionsGroup('Builds:')
    .option('--cache-dir <dir>', 'Go module/build caches (env FAIRWAY_CACHE_DIR, default <data-dir>/go)')
    .option('-w, --workers <n>', 'concurrent builds (env FAIRWAY_WORKERS, default 1)')
    .option('--build-timeout <duration>', 'per-build timeout, e.g. 30m (env FAIRWAY_BUILD_TIMEOUT)')
    .option('--resolve-ttl <duration>', 'how long `latest` stays pinned, e.g. 10m (env FAIRWAY_RESOLVE_TTL)')
    .option('--max-plugins <n>', 'plugins per build (env FAIRWAY_MAX_PLUGINS, default 50)')
    .option('--max-artifact-size <size>', 'largest binary accepted, e.g. 512MB (env FAIRWAY_MAX_ARTIFACT_SIZE)')
    .option('--min-free-disk <size>', 'free disk needed before a build starts, 0 = off (env FAIRWAY_MIN_FREE_DISK, default 2GB)')
    .option(
      '--tools-dir <dir>',
      'where `fairway setup` installs xcaddy and fairway-cacheprog (env FAIRWAY_TOOLS_DIR, default .tools in a checkout, for a package /usr/local/lib/fairway/tools as root, else ~/.local/share/fairway/tools)',
    )
    .option('--xcaddy-bin <path>', 'xcaddy binary (env FAIRWAY_XCADDY_BIN, default <tools-dir>/bin/xcaddy)')
    .option('--go-bin <path>', 'go command (env FAIRWAY_GO_BIN, default go)')
    .option('--sandbox <kind>', 'bwrap (default): builds and built binaries run in bubblewrap as the build user; none: no sandbox, unsafe (env FAIRWAY_SANDBOX)')
    .option('--build-user <user>', 'user builds run as when Fairway runs as root, a name or uid:gid (env FAIRWAY_BUILD_USER, default fairway-build)')
    .option('--build-memory-max <size>', 'memory of one sandboxed go command, e.g. 4GiB (env FAIRWAY_BUILD_MEMORY_MAX, default 4GiB)')
    .option('--build-tasks-max <n>', 'processes and threads of one sandboxed go command (env FAIRWAY_BUILD_TASKS_MAX, default 1024)')
    .option('--build-tmpfs-size <size>', "size of a go command's /tmp and /dev/shm (env FAIRWAY_BUILD_TMPFS_SIZE, default 1GiB)")
    .option('--build-file-size-max <size>', 'largest file a go command may write (env FAIRWAY_BUILD_FILE_SIZE_MAX, default 2GiB)')
    .option('--run-memory-max <size>', 'memory of one run of a built binary (env FAIRWAY_RUN_MEMORY_MAX, default 512MiB)')
    .option('--run-tasks-max <n>', 'processes and threads of one run of a built binary (env FAIRWAY_RUN_TASKS_MAX, default 128)')
    .option('--run-tmpfs-size <size>', "size of a built binary run's /tmp and /dev/shm, and its largest file (env FAIRWAY_RUN_TMPFS_SIZE, default 64MiB)")
    .addOption(
      new Option('--sandbox-limits <mode>', 'auto: a cgroup per sandboxed command where possible, else rlimits; rlimits: never cgroups (env FAIRWAY_SANDBOX_LIMITS)').choices(['auto', 'rlimits']),
    )
    .option('--goproxy <list>', 'GOPROXY for resolution and builds (env FAIRWAY_GOPROXY or GOPROXY)')
    .option('--goprivate <list>', 'GOPRIVATE (env FAIRWAY_GOPRIVATE or GOPRIVATE)')
    .option('--gonosumdb <list>', 'GONOSUMDB (env FAIRWAY_GONOSUMDB or GONOSUMDB)')
    .option('--gonoproxy <list>', 'GONOPROXY (env FAIRWAY_GONOPROXY or GONOPROXY)')
    .option('--gosumdb <value>', 'GOSUMDB, the checksum database (env FAIRWAY_GOSUMDB or GOSUMDB)')
    .optionsGroup('Store and catalog:')
    .option('--store <url>', 'artifact store: a directory or s3://bucket/prefix?endpoint=... (env FAIRWAY_STORE)')
    .option('--catalog-upstream <url>', 'package list to mirror into the catalog, caddyserver.com /api/packages shape (env FAIRWAY_CATALOG_UPSTREAM)')
    .option('--catalog-refresh <duration>', 'how often to refresh the catalog mirror, e.g. 6h (env FAIRWAY_CATALOG_REFRESH)')
    .addOption(new Option('--catalog-learn <mode>', 'learn module IDs by running built binaries (env FAIRWAY_CATALOG_LEARN, default catalog)').choices(['off', 'catalog', 'all']))
    .optionsGroup('Provenance (docs/provenance.md):')
    .option('--signing-key <file>', 'ECDSA P-256 key (PKCS#8 PEM) that builds are signed with; `fairway key create` makes one (env FAIRWAY_SIGNING_KEY; serve and agent)')
    .option('--public-key <file>', "public key (PEM) served at /api/signing-key; a hub takes its agents' key here (env FAIRWAY_PUBLIC_KEY)")
    .option(
      '--index-signing-key <file>',
      "ECDSA P-256 key (PKCS#8 PEM) that signs tags' image indexes (env FAIRWAY_INDEX_SIGNING_KEY; default: serve's signing key, a hub's <data-dir>/index-signing.key)",
    )
    .optionsGroup('Access and limits (docs/SECURITY.md):')
    .option('--auth-file <file>', 'API tokens, JSON [{name, hash, scopes}] (env FAIRWAY_AUTH_FILE; also FAIRWAY_TOKENS)')
    .option('--anonymous-scopes <list>', 'scopes without a token: none, read, read,build (env FAIRWAY_ANONYMOUS_SCOPES; never admin)')
    .option('--trust-proxy <value>', 'client address from X-Forwarded-For: true or proxy addresses (env FAIRWAY_TRUST_PROXY)')
    .option('--allow-modules <patterns>', 'module patterns that may be built, e.g. catalog,github.com/myorg/* (env FAIRWAY_ALLOW_MODULES)')
    .option('--deny-modules <patterns>', 'module patterns that are refused (env FAIRWAY_DENY_MODULES)')
    .option('--caddy-versions <range>', 'Caddy versions allowed, e.g. ">=v2.8.0 <v3" (env FAIRWAY_CADDY_VERSIONS)')
    .option('--rate-limit <n>', 'requests per client per window, 0 = off (env FAIRWAY_RATE_LIMIT, default 1200)')
    .option('--rate-limit-window <duration>', 'rate limit window (env FAIRWAY_RATE_LIMIT_WINDOW, default 1m)')
    .option('--build-rate-limit <n>', 'build requests per client per window, 0 = off (env FAIRWAY_BUILD_RATE_LIMIT, default 120)')
    .option('--max-active-builds <n>', 'builds one client may have queued, running or being resolved, 0 = off (env FAIRWAY_MAX_ACTIVE_BUILDS, default 10)')
    .option('--max-resolutions <n>', 'go commands resolving versions at once; more wait, then 503 (env FAIRWAY_MAX_RESOLUTIONS, default 4)')
    .option('--resolve-failure-ttl <duration>', 'how long a version that did not resolve is answered from memory, e.g. 1m (env FAIRWAY_RESOLVE_FAILURE_TTL, default 1m)')
    .option('--allowed-hosts <list>', 'host names answered besides localhost, 127.0.0.1, [::1] and --host; checked on loopback, and on any address once set (env FAIRWAY_ALLOWED_HOSTS)')
    .option('--allowed-origins <list>', 'origins of other web pages that may call the API, e.g. https://ci.example.com (env FAIRWAY_ALLOWED_ORIGINS)')
    .option('--body-limit <size>', 'largest request body accepted, e.g. 64KB (env FAIRWAY_BODY_LIMIT)')
    .optionsGroup('Connections and timeouts (docs/operations.md):')
    .option('--headers-timeout <duration>', 'time to send the request headers, e.g. 30s (env FAIRWAY_HEADERS_TIMEOUT, default 30s)')
    .option('--request-timeout <duration>', 'time to send the whole request; responses are never cut (env FAIRWAY_REQUEST_TIMEOUT, default 60s)')
    .option('--keep-alive-timeout <duration>', 'idle time between requests on a kept-alive connection (env FAIRWAY_KEEP_ALIVE_TIMEOUT, default 65s)')
    .option('--max-connections-per-client <n>', 'open connections per client address, 0 = off (env FAIRWAY_MAX_CONNECTIONS_PER_CLIENT, default 256)')
    .optionsGroup('Pruning, refresh and prebuilds (docs/operations.md):')
    .option('--store-max-bytes <size>', 'byte budget of the artifact store, e.g. 20GB (env FAIRWAY_STORE_MAX_BYTES)')
    .option('--store-max-age <duration>', 'prune artifacts not downloaded for this long, e.g. 30d (env FAIRWAY_STORE_MAX_AGE)')
    .option('--pinned <list>', 'never pruned: cache keys, or a JSON list of build specs (env FAIRWAY_PINNED)')
    .option('--prebuild <list>', 'kept built: "linux/amd64,linux/arm64" (latest Caddy, no plugins) or a JSON list of specs (env FAIRWAY_PREBUILD)')
    .option('--refresh-interval <duration>', 'how often the Caddy version list is refreshed, default 1h (env FAIRWAY_REFRESH_INTERVAL)')
    .option('--prune-interval <duration>', 'how often the store and Go cache budgets are checked, default 1h (env FAIRWAY_PRUNE_INTERVAL)')
    .option('--go-cache-max-bytes <size>', 'budget of the Go build + module caches, e.g. 10GB (env FAIRWAY_GO_CACHE_MAX_BYTES)')
    .option('--access-write-interval <duration>', 'how often last-download times are written to the store, default 60s (env FAIRWAY_ACCESS_WRITE_INTERVAL)')
    .optionsGroup('Images (docs/registry.md):')
    .option('--watch-interval <duration>', 'how often recipes are checked against new Caddy and plugin releases (trial, promote), 0 = off, default 1h (env FAIRWAY_WATCH_INTERVAL)')
    .option('--public-url <url>', 'the public URL of this server, for absolute links in webhooks (env FAIRWAY_PUBLIC_URL)')
    .option('--recipes <json>', 'named plugin sets served as caddy/<name> images, JSON {"name": {"plugins": [{"module", "version"}]}} (env FAIRWAY_RECIPES)')
    .option('--image-platforms <list>', 'platforms of an image tag, default linux/amd64,linux/arm64 (env FAIRWAY_IMAGE_PLATFORMS)')
    .option('--image-wait <duration>', 'how long a manifest request waits for on-demand builds, default 10m (env FAIRWAY_IMAGE_WAIT)');
}

/** The server flags of a role: common ones, then the role's own (`role`), then the topics. */
function serverOptions(cmd: Command, heading: string, role: (cmd: Command) => Command = (c) => c): Command {
  return topicOptions(role(commonOptions(cmd).optionsGroup(heading)));
}

// ---- fleet (docs/distributed.md) ----
/** Agents: the fleet module proxy. Its token (fleetToken) has no flag: FAIRWAY_FLEET_TOKEN or the config file, never in `ps`. */
function fleetAgentOptions(cmd: Command): Command {
  return cmd.option('--fleet-proxy <url>', 'hub URL whose module proxy (<hub>/goproxy) is asked first for modules; token in FAIRWAY_FLEET_TOKEN (env FAIRWAY_FLEET_PROXY)');
}
// ---- end fleet ----

// ---- shared build cache (docs/distributed.md) ----
/** Agents: the shared Go build cache (GOCACHEPROG, the store's gocache/ area). */
function sharedCacheAgentOptions(cmd: Command): Command {
  return cmd
    .option('--go-cache-shared', 'share Go build outputs with the other agents through the store, checked by sha256 (env FAIRWAY_GO_CACHE_SHARED, default off)')
    .option('--go-cache-shared-max-bytes <size>', 'byte budget of the shared Go build cache in the store, e.g. 50GB (env FAIRWAY_GO_CACHE_SHARED_MAX_BYTES)')
    .option('--go-cache-prog-bin <path>', 'GOCACHEPROG program (env FAIRWAY_GO_CACHE_PROG_BIN, default <tools-dir>/bin/fairway-cacheprog)');
}
// ---- end shared build cache ----

const MEMORY_CACHE = 'memory for recently downloaded binaries, served without reading the store; 0 = off (env FAIRWAY_MEMORY_CACHE, default 256MiB)';

/** `fairway serve`: the server flags and the hot tier. */
export function serveFlags(cmd: Command): Command {
  return serverOptions(cmd, 'serve options:', (c) => c.option('--memory-cache <size>', MEMORY_CACHE));
}

/** `fairway hub`: the server flags, Redis, the hot tier, redirects, retries, the index resync. */
export function hubFlags(cmd: Command): Command {
  return serverOptions(cmd, 'hub options:', (c) =>
    c
      .option('--redis <url>', 'Redis URL, e.g. redis://127.0.0.1:6379 (env FAIRWAY_REDIS)')
      .option('--download-redirect', 'redirect downloads to presigned store URLs (env FAIRWAY_DOWNLOAD_REDIRECT)')
      .option('--memory-cache <size>', MEMORY_CACHE)
      .option('--job-attempts <n>', 'tries per build before it fails (env FAIRWAY_JOB_ATTEMPTS, default 3)')
      .option('--index-rescan-interval <duration>', 'how often the index is resynced from the store listing (env FAIRWAY_INDEX_RESCAN_INTERVAL, default 60s)'),
  );
}

/** `fairway agent`: the server flags, Redis, the agent's name and its job lock timings, the fleet caches. */
export function agentFlags(cmd: Command): Command {
  return serverOptions(cmd, 'agent options:', (c) =>
    sharedCacheAgentOptions(
      fleetAgentOptions(
        c
          .option('--redis <url>', 'Redis URL (env FAIRWAY_REDIS)')
          .option('--concurrency <n>', 'builds at once (alias of --workers)')
          .option('--agent-id <id>', 'name shown in /api/agents (env FAIRWAY_AGENT_ID, default host-pid)')
          .option('--job-lock-duration <duration>', "lock on a running job; a dead agent's job is retaken after it (env FAIRWAY_JOB_LOCK_DURATION, default 30s)")
          .option('--stalled-interval <duration>', 'how often stalled jobs are looked for (env FAIRWAY_STALLED_INTERVAL, default 15s)'),
      ),
    ),
  );
}

// ---- install (docs/install.md) ----
/** `fairway doctor`: every server flag (so it checks the real configuration), Redis, the GOCACHEPROG program, --json. */
export function doctorFlags(cmd: Command): Command {
  return serverOptions(cmd, 'doctor options:', (c) =>
    sharedCacheAgentOptions(c.option('--redis <url>', 'also check this Redis: reachable and writable (env FAIRWAY_REDIS)').option('--json', 'print the checks as a JSON list')),
  );
}

/** `fairway setup`: where the tools go, and what the sandbox part needs to know. */
export function setupFlags(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'JSON config file (env FAIRWAY_CONFIG)')
    .option('--tools-dir <dir>', 'where xcaddy and fairway-cacheprog are installed, in <dir>/bin (env FAIRWAY_TOOLS_DIR)')
    .option('--go-bin <path>', 'go command that builds them (env FAIRWAY_GO_BIN, default go)')
    .option('--sandbox <kind>', 'none: skip the sandbox part (env FAIRWAY_SANDBOX)')
    .option('--build-user <user>', 'the build user created when run as root (env FAIRWAY_BUILD_USER, default fairway-build)')
    .option('--goproxy <list>', 'GOPROXY for go install (env FAIRWAY_GOPROXY or GOPROXY)')
    .option('--systemd [dir]', "also write the systemd units and fairway.env.example with this fairway's path (default dir /etc/systemd/system)")
    .option('--no-os', 'do not install OS packages with apt-get (only check that bubblewrap and socat are there)');
}
