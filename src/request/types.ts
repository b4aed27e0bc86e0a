/** A plugin as requested: module path, optional version query, optional replacement. */
export interface PluginRequest {
  module: string;
  version?: string;
  /** `module[@version]`, or (trusted callers only) a local directory. */
  replace?: string;
}

/** A validated, normalised build request. Versions may still be queries such as `latest`. */
export interface BuildRequest {
  caddyVersion: string;
  os: string;
  arch: string;
  /** GOARM, only for arch=arm ("5", "6" or "7"); otherwise undefined. */
  arm?: string;
  plugins: PluginRequest[];
}

export type Replacement = { kind: 'module'; module: string; version: string } | { kind: 'path'; path: string };

export interface ResolvedPlugin {
  module: string;
  /** Exact version; absent only when a replacement decides the code. */
  version?: string;
  replace?: Replacement;
}

/** What goes into the toolchain identity part of a cache key. */
export interface Toolchain {
  go: string;
  xcaddy: string;
  /** Any build flags that change the output; constant for now but part of the key. */
  flags: string;
}

/** A request with every version pinned: the input of a build and of the cache key. */
export interface ResolvedSpec {
  caddyVersion: string;
  os: string;
  arch: string;
  arm?: string;
  plugins: ResolvedPlugin[];
  toolchain: Toolchain;
}
