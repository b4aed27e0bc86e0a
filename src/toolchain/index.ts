/**
 * The Go toolchain and xcaddy as Fairway uses them: where they are, which versions, and the
 * clean, allowlisted environment every child process gets (DESIGN principle 4). Nothing from the
 * server's own environment reaches a build unless it is named here.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

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
}

export interface ToolchainIdentity {
  go: string;
  xcaddy: string;
}

/** Variables that may reach the toolchain. Everything else, including server secrets, is dropped. */
export const ENV_ALLOWLIST = [
  'PATH', 'HOME', 'TMPDIR', 'LANG',
  'GOPATH', 'GOMODCACHE', 'GOCACHE', 'GOENV', 'GOTOOLCHAIN', 'GOTELEMETRY', 'GOFLAGS', 'GO111MODULE',
  'GOPROXY', 'GOPRIVATE', 'GONOSUMDB', 'GONOPROXY', 'GOSUMDB', 'GOINSECURE',
  'CGO_ENABLED', 'GOOS', 'GOARCH', 'GOARM',
  'XCADDY_SKIP_CLEANUP', 'XCADDY_SKIP_BUILD', 'XCADDY_WHICH_GO', 'XCADDY_DEBUG', 'XCADDY_RACE_DETECTOR', 'XCADDY_SETCAP', 'XCADDY_SUDO',
] as const;
export type AllowedEnvName = (typeof ENV_ALLOWLIST)[number];

export class ToolchainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ToolchainError';
  }
}

export class Toolchain {
  private constructor(
    readonly goBin: string,
    readonly xcaddyBin: string,
    readonly cacheDir: string,
    readonly identity: ToolchainIdentity,
    private readonly opts: ToolchainOptions,
  ) {}

  /** Finds go and xcaddy, reads their versions, prepares the cache folders. */
  static async detect(opts: ToolchainOptions): Promise<Toolchain> {
    const cacheDir = resolvePath(opts.cacheDir);
    await Promise.all(['gopath', 'mod', 'build', 'tmp'].map((d) => mkdir(join(cacheDir, d), { recursive: true })));
    const goBin = await locateGo(opts.goBin ?? 'go');
    const xcaddyBin = resolvePath(opts.xcaddyBin);
    let xcaddy: string;
    try {
      const { stdout } = await execFileP(xcaddyBin, ['version'], { timeout: 30_000 });
      xcaddy = stdout.trim().split(/\s+/)[0] ?? 'unknown';
    } catch (err) {
      throw new ToolchainError(
        `xcaddy not found or not runnable at ${xcaddyBin} (${(err as Error).message.split('\n')[0]}); run "npm run setup" to install it`,
      );
    }
    const tc = new Toolchain(goBin, xcaddyBin, cacheDir, { go: '', xcaddy }, opts);
    const { stdout } = await tc.go(['env', 'GOVERSION'], { cwd: join(cacheDir, 'tmp') });
    (tc.identity as { go: string }).go = stdout.trim();
    return tc;
  }

  /** The full environment for a toolchain child: allowlisted names only, fixed values. */
  env(extra: Partial<Record<AllowedEnvName, string>> = {}, home?: string): NodeJS.ProcessEnv {
    const o = this.opts;
    const base: Partial<Record<AllowedEnvName, string>> = {
      PATH: `${dirname(this.goBin)}:/usr/local/bin:/usr/bin:/bin`,
      HOME: home ?? join(this.cacheDir, 'tmp'),
      TMPDIR: join(this.cacheDir, 'tmp'),
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
      ...(o.goproxy !== undefined ? { GOPROXY: o.goproxy } : {}),
      ...(o.goprivate !== undefined ? { GOPRIVATE: o.goprivate } : {}),
      ...(o.gonosumdb !== undefined ? { GONOSUMDB: o.gonosumdb } : {}),
      ...(o.gonoproxy !== undefined ? { GONOPROXY: o.gonoproxy } : {}),
      ...(o.gosumdb !== undefined ? { GOSUMDB: o.gosumdb } : {}),
      ...extra,
    };
    const env: NodeJS.ProcessEnv = {};
    for (const name of ENV_ALLOWLIST) if (base[name] !== undefined) env[name] = base[name];
    return env;
  }

  /** Runs `go` with an argument array (never a shell) in the clean environment. */
  async go(args: string[], opts: { cwd: string; timeoutMs?: number }): Promise<{ stdout: string; stderr: string }> {
    return execFileP(this.goBin, args, {
      cwd: opts.cwd,
      env: this.env(),
      timeout: opts.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
      killSignal: 'SIGKILL',
    });
  }

  get tmpDir(): string {
    return join(this.cacheDir, 'tmp');
  }
}

async function locateGo(goBin: string): Promise<string> {
  try {
    const { stdout } = await execFileP(goBin, ['env', 'GOROOT'], { timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', GOTOOLCHAIN: 'local' } });
    return join(stdout.trim(), 'bin', 'go');
  } catch (err) {
    throw new ToolchainError(`the Go toolchain was not found (${goBin}: ${(err as Error).message.split('\n')[0]}); install Go 1.22 or newer and put it on PATH, or set FAIRWAY_GO_BIN`);
  }
}
