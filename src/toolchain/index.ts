/**
 * The Go toolchain and xcaddy as Fairway uses them: where they are, which versions, and the
 * clean, allowlisted environment every child process gets. Nothing from the server's own
 * environment reaches a build unless it is named here. Every go and xcaddy command runs inside
 * the build sandbox (src/sandbox) as the build identity, seeing GOROOT read-only and only its
 * own caches read-write.
 */
import { access, mkdir, realpath } from 'node:fs/promises';
import { constants } from 'node:fs';
import { delimiter, dirname, isAbsolute, join, resolve as resolvePath } from 'node:path';
import type { Sandbox, SandboxCommand, SandboxNetwork } from '../sandbox/index.js';
import { errorMessage } from '../util/errors.js';

export interface ToolchainOptions {
  /** The `go` command; default: `go` from PATH. */
  goBin?: string;
  /** The xcaddy binary installed by the setup step. */
  xcaddyBin: string;
  /** Folder for GOPATH, GOMODCACHE and GOCACHE, reused across builds. */
  cacheDir: string;
  /** Module download settings passed to every go command; undefined = Go's defaults. */
  goproxy?: string;
  goprivate?: string;
  gonosumdb?: string;
  gonoproxy?: string;
  gosumdb?: string;
  /** Where every toolchain command runs. */
  sandbox: Sandbox;
  /** The command named when xcaddy is missing: `npm run setup` (a checkout, the default) or `fairway setup` (the npm package). */
  setupCommand?: string;
}

export interface ToolchainIdentity {
  go: string;
  xcaddy: string;
}

/** Variables that may reach the toolchain. Everything else, including server secrets, is dropped. */
export const ENV_ALLOWLIST = [
  'PATH',
  'HOME',
  'TMPDIR',
  'LANG',
  'GOPATH',
  'GOMODCACHE',
  'GOCACHE',
  'GOENV',
  'GOTOOLCHAIN',
  'GOTELEMETRY',
  'GOFLAGS',
  'GO111MODULE',
  'GOPROXY',
  'GOPRIVATE',
  'GONOSUMDB',
  'GONOPROXY',
  'GOSUMDB',
  'GOINSECURE',
  // The shared build cache's program (docs/distributed.md), set by Fairway only; GOCACHE stays set.
  'GOCACHEPROG',
  'CGO_ENABLED',
  'GOOS',
  'GOARCH',
  'GOARM',
  // Fixed by Fairway. Never XCADDY_SETCAP/XCADDY_SUDO (privilege escalation), XCADDY_SKIP_*,
  // XCADDY_DEBUG, XCADDY_RACE_DETECTOR, XCADDY_GO_BUILD_FLAGS/MOD_FLAGS (they change what is built
  // behind the cache key's back): those names cannot reach xcaddy.
  'XCADDY_WHICH_GO',
  'XCADDY_PRINT_VERSION',
] as const;
export type AllowedEnvName = (typeof ENV_ALLOWLIST)[number];

/**
 * Shared build cache (docs/distributed.md): the GOCACHEPROG program, the cache server's socket
 * and the local tier the go command reads entries from (read-only in the sandbox).
 */
export interface GoCacheHookup {
  /** Absolute path of fairway-cacheprog. */
  prog: string;
  /** Host path of the cache server's unix socket. */
  socket: string;
  /** The local tier's directory: DiskPaths point into it. */
  localDir: string;
}

export class ToolchainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolchainError';
  }
}

export class Toolchain {
  private constructor(
    readonly goBin: string,
    /** GOROOT of goBin: visible read-only to every toolchain command. */
    readonly goRoot: string,
    readonly xcaddyBin: string,
    readonly cacheDir: string,
    readonly identity: ToolchainIdentity,
    readonly sandbox: Sandbox,
    private readonly opts: ToolchainOptions,
  ) {}

  // ---- shared build cache (docs/distributed.md) ----
  private goCache: GoCacheHookup | null = null;

  /** Routes the go command's build cache of every later toolchain command through a GOCACHEPROG server (null: off). */
  useGoCache(hookup: GoCacheHookup | null): void {
    this.goCache = hookup;
  }

  get goCacheHookup(): GoCacheHookup | null {
    return this.goCache;
  }

  /** Finds go and xcaddy, reads their versions (in the sandbox), prepares the cache folders. */
  static async detect(opts: ToolchainOptions): Promise<Toolchain> {
    const cacheDir = resolvePath(opts.cacheDir);
    const sandbox = opts.sandbox;
    await mkdir(join(cacheDir, 'tmp'), { recursive: true });
    // Caches the build identity writes; made by another user (or an unsandboxed run) they are handed over.
    const owned = ['gopath', 'mod', 'build'].map((d) => join(cacheDir, d));
    await sandbox.handOver(owned);
    await sandbox.ownedDir(join(cacheDir, 'tmp', 'run'));
    const { goBin, goRoot } = await locateGo(opts.goBin ?? 'go');
    const xcaddyBin = resolvePath(opts.xcaddyBin);
    const tc = new Toolchain(goBin, goRoot, xcaddyBin, cacheDir, { go: '', xcaddy: '' }, sandbox, opts);
    let xcaddy: string;
    try {
      await access(xcaddyBin, constants.X_OK);
      const { stdout } = await sandbox.run(tc.command([xcaddyBin, 'version'], { network: 'none' }), { timeoutMs: 30_000 });
      xcaddy = stdout.trim().split(/\s+/)[0] ?? 'unknown';
    } catch (err) {
      throw new ToolchainError(`xcaddy not found or not runnable at ${xcaddyBin} (${errorMessage(err).split('\n')[0]}); run "${opts.setupCommand ?? 'npm run setup'}" to install it`);
    }
    let go: string;
    try {
      go = (await tc.go(['env', 'GOVERSION'])).stdout.trim();
    } catch (err) {
      throw new ToolchainError(`${goBin} does not run in the build sandbox (${errorMessage(err).split('\n')[0]}); is GOROOT ${goRoot} complete?`);
    }
    Object.assign(tc.identity, { go, xcaddy });
    return tc;
  }

  /** The full environment for a toolchain child: allowlisted names only, fixed values. */
  env(extra: Partial<Record<AllowedEnvName, string>> = {}, home?: string): Record<string, string> {
    const o = this.opts;
    const base: Partial<Record<AllowedEnvName, string>> = {
      PATH: `${dirname(this.goBin)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: home ?? this.runDir,
      TMPDIR: home ?? this.runDir,
      LANG: 'C',
      GOPATH: join(this.cacheDir, 'gopath'),
      GOMODCACHE: join(this.cacheDir, 'mod'),
      GOCACHE: join(this.cacheDir, 'build'),
      GOENV: 'off',
      GOTOOLCHAIN: 'local',
      GOTELEMETRY: 'off',
      // -buildvcs=false: builds run in temp dirs that may sit inside a VCS checkout; stamping it would
      // make the binary depend on the server's own repository state.
      GOFLAGS: '-mod=mod -buildvcs=false',
      GO111MODULE: 'on',
      CGO_ENABLED: '0',
      XCADDY_WHICH_GO: this.goBin,
      // Fairway runs the built binary itself, in a sandbox without network (src/runner).
      XCADDY_PRINT_VERSION: '0',
      ...goProxyEnv(o),
      ...(this.goCache ? { GOCACHEPROG: this.goCache.prog } : {}),
      ...extra,
    };
    const env: Record<string, string> = {};
    for (const name of ENV_ALLOWLIST) if (base[name] !== undefined) env[name] = base[name];
    return env;
  }

  /**
   * A toolchain command for the sandbox: GOROOT and the xcaddy binary read-only, the Go caches
   * read-write, `cwd` (default: an empty dir of the build identity) read-write, nothing else of
   * this machine.
   */
  command(argv: string[], o: { cwd?: string; network: SandboxNetwork; env?: Record<string, string>; readOnly?: string[] }): SandboxCommand {
    return {
      argv,
      cwd: o.cwd ?? this.runDir,
      env: o.env ?? this.env(),
      readOnly: [this.goRoot, this.xcaddyBin, ...(this.goCache ? [this.goCache.prog, this.goCache.localDir] : []), ...(o.readOnly ?? [])],
      writable: ['gopath', 'mod', 'build'].map((d) => join(this.cacheDir, d)),
      network: o.network,
      ...(this.goCache ? { goCacheSocket: this.goCache.socket } : {}),
    };
  }

  /**
   * Runs `go` with an argument array (never a shell) in the sandbox. `network: 'modules'` lets it
   * download modules through the module relay; nothing else is reachable.
   */
  async go(args: string[], opts: { cwd?: string; timeoutMs?: number; network?: SandboxNetwork; readOnly?: string[] } = {}): Promise<{ stdout: string; stderr: string }> {
    return this.sandbox.run(this.command([this.goBin, ...args], { network: opts.network ?? 'none', ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.readOnly ? { readOnly: opts.readOnly } : {}) }), {
      timeoutMs: opts.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
  }

  /** Parent of the per-build and per-resolution work dirs. */
  get tmpDir(): string {
    return join(this.cacheDir, 'tmp');
  }

  /** An empty directory of the build identity, the cwd of toolchain commands that need none of their own. */
  get runDir(): string {
    return join(this.cacheDir, 'tmp', 'run');
  }
}

/** The module proxy settings as the go command's environment (only those set). */
export function goProxyEnv(o: Pick<ToolchainOptions, 'goproxy' | 'goprivate' | 'gonosumdb' | 'gonoproxy' | 'gosumdb'>): Record<string, string> {
  return {
    ...(o.goproxy !== undefined ? { GOPROXY: o.goproxy } : {}),
    ...(o.goprivate !== undefined ? { GOPRIVATE: o.goprivate } : {}),
    ...(o.gonosumdb !== undefined ? { GONOSUMDB: o.gonosumdb } : {}),
    ...(o.gonoproxy !== undefined ? { GONOPROXY: o.gonoproxy } : {}),
    ...(o.gosumdb !== undefined ? { GOSUMDB: o.gosumdb } : {}),
  };
}

/** An executable `name` in the dirs of `path` (a name with a slash: that path, resolved), or null. */
export async function findOnPath(name: string, path = process.env.PATH ?? '/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin'): Promise<string | null> {
  if (isAbsolute(name) || name.includes('/')) return resolvePath(name);
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return null;
}

/** The real go binary and its GOROOT (`<GOROOT>/bin/go`), found without running it outside the sandbox. */
async function locateGo(goBin: string): Promise<{ goBin: string; goRoot: string }> {
  const found = await findOnPath(goBin);
  const real = found ? await realpath(found).catch(() => null) : null;
  const goRoot = real ? dirname(dirname(real)) : null;
  if (
    !real ||
    !goRoot ||
    !(await access(join(goRoot, 'src', 'runtime'), constants.R_OK).then(
      () => true,
      () => false,
    ))
  ) {
    throw new ToolchainError(`the Go toolchain was not found (${goBin}${real ? `: ${real} is not inside a GOROOT` : ''}); install Go 1.22 or newer and put it on PATH, or set FAIRWAY_GO_BIN`);
  }
  return { goBin: real, goRoot };
}
