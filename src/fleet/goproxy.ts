/**
 * The fleet module proxy (docs/distributed.md "Fleet caches"): a hub answers the GOPROXY protocol
 * for its agents from its own Go module cache, read-through. `<cacheDir>/mod/cache/download`
 * already has the GOPROXY layout (`<escaped module>/@v/<escaped version>.{info,mod,zip}`); a file
 * that is not there yet is filled by the hub's own go command (sandboxed, through the hub's module
 * relay and GOPROXY, verified against the checksum database as always), once for concurrent
 * requests, and then served from the cache.
 *
 * Only exact versions are served. `@v/list` and `@latest` answer 404: the hub's cache knows only
 * the versions it happened to download, so a list from it would be wrong; a 404 makes the agent's
 * relay go on to the next proxy of its GOPROXY list, which answers with the real list.
 *
 * Nothing from a request reaches a flag position, a shell or a file path before it passed
 * `parseGoproxyPath`: Go's module path grammar with its case escaping (`!x` for `X`), a canonical
 * semantic version, no `.`/`..` element, length limits.
 *
 * What a token with the `agent` scope can make the hub do is bounded like a build: a module the
 * build policy denies, or a private one (GONOPROXY/GOPRIVATE), is refused (403) before the cache
 * or any proxy is looked at; fills run at most `maxConcurrentFills` at a time with a bounded queue
 * behind them (503 beyond: the agent's relay asks its next proxy); a fill needs the free disk
 * space builds need (`minFreeDisk`, 507 otherwise). Refusals are not remembered as failures.
 */
import { lstat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';

export type GoproxyFile = 'info' | 'mod' | 'zip';

export type GoproxyPath =
  | { kind: 'file'; file: GoproxyFile; module: string; version: string; escapedModule: string; escapedVersion: string }
  /** `@v/list`, `@latest`, `sumdb/…`: valid requests this proxy does not answer (404, fall through). */
  | { kind: 'not-served'; what: 'list' | 'latest' | 'sumdb'; module?: string };

/** A request refused at the edge: 400 for what no go command sends, 404 for what is not served. */
export class GoproxyPathError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
    this.name = 'GoproxyPathError';
  }
}

export const MAX_PATH_LENGTH = 1024;
export const MAX_MODULE_LENGTH = 500;
export const MAX_VERSION_LENGTH = 128;
const MAX_ELEMENT_LENGTH = 255;

/** Go's case encoding (golang.org/x/mod/module.UnescapePath): `!x` → `X`; null for a bare upper-case letter or a lone `!`. */
export function unescapeGo(s: string): string | null {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c >= 'A' && c <= 'Z') return null;
    if (c === '!') {
      const n = s[i + 1];
      if (n === undefined || n < 'a' || n > 'z') return null;
      out += n.toUpperCase();
      i++;
    } else out += c;
  }
  return out;
}

export function escapeGo(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);
}

/** Why `path` (unescaped) is not a module path Go accepts (module.CheckPath, simplified where stricter), or null. */
export function modulePathError(path: string): string | null {
  if (path.length === 0 || path.length > MAX_MODULE_LENGTH) return `a module path has 1 to ${MAX_MODULE_LENGTH} characters`;
  const elems = path.split('/');
  for (const e of elems) {
    if (e === '') return 'a module path has no empty element (no leading, trailing or double "/")';
    if (e.length > MAX_ELEMENT_LENGTH) return `a module path element has at most ${MAX_ELEMENT_LENGTH} characters`;
    if (!/^[A-Za-z0-9._~-]+$/.test(e)) return `module path element "${e.slice(0, 64)}" has a character Go does not allow (letters, digits, "-", ".", "_", "~")`;
    if (e.startsWith('.') || e.endsWith('.')) return `module path element "${e.slice(0, 64)}" starts or ends with a dot`;
  }
  const first = elems[0]!;
  if (!/^[a-z0-9.-]+$/.test(first) || !first.includes('.') || first.startsWith('-')) {
    return `the first element of a module path is a lower-case host name with a dot (got "${first.slice(0, 64)}")`;
  }
  return null;
}

const SEMVER = /^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(\+incompatible)?$/;

/** Why `v` is not a canonical semantic version a proxy serves files for (semver.IsValid && Canonical), or null. */
export function versionError(v: string): string | null {
  if (v.length === 0 || v.length > MAX_VERSION_LENGTH) return `a version has 1 to ${MAX_VERSION_LENGTH} characters`;
  const m = SEMVER.exec(v);
  if (!m) return `"${v.slice(0, 64)}" is not a canonical semantic version (vMAJOR.MINOR.PATCH[-pre][+incompatible])`;
  for (const id of m[4]?.split('.') ?? []) {
    if (/^[0-9]+$/.test(id) && id.length > 1 && id.startsWith('0')) return `"${v.slice(0, 64)}": a numeric pre-release identifier has no leading zero`;
  }
  return null;
}

/**
 * What parseGoproxyPath accepts, as one pattern (ECMA-262) for the OpenAPI document: an escaped
 * module path (a lower-case host name with a dot, then elements; `!x` for an upper-case X), then
 * `/@v/list`, `/@latest` or `/@v/<escaped canonical version>.info|.mod|.zip`. Lengths are checked
 * apart (1024 in all, 500 for the module, 255 an element, 128 the version).
 */
const ESC_CHAR = '(?:[a-z0-9_~-]|![a-z])';
const ESC_ELEM = `${ESC_CHAR}(?:(?:${ESC_CHAR}|\\.)*${ESC_CHAR})?`;
const ESC_PRE = '(?:0|[1-9][0-9]*|[0-9]*(?:[a-z-]|![a-z])(?:[0-9a-z-]|![a-z])*)';
const ESC_VERSION = `v(?:0|[1-9][0-9]*)\\.(?:0|[1-9][0-9]*)\\.(?:0|[1-9][0-9]*)(?:-${ESC_PRE}(?:\\.${ESC_PRE})*)?(?:\\+incompatible)?`;
export const GOPROXY_PATH_PATTERN = `^(?=[a-z0-9.-]*\\.)[a-z0-9](?:[a-z0-9.-]*[a-z0-9-])?(?:/${ESC_ELEM})*/(?:@latest|@v/(?:list|${ESC_VERSION}\\.(?:info|mod|zip)))$`;

const REQ = /^(.+)\/@v\/(list|[^/]+\.(?:info|mod|zip))$/;
const LATEST = /^(.+)\/@latest$/;

/**
 * Parses the part of a request URL after `/goproxy/` (percent-encoded as the go command sends it,
 * query included or not). Throws GoproxyPathError.
 */
export function parseGoproxyPath(raw: string): GoproxyPath {
  const noQuery = raw.split('?')[0]!;
  if (noQuery.length > MAX_PATH_LENGTH * 3) throw new GoproxyPathError(400, `request path longer than ${MAX_PATH_LENGTH} characters`);
  let path: string;
  try {
    path = decodeURIComponent(noQuery);
  } catch {
    throw new GoproxyPathError(400, 'bad percent-encoding in the request path');
  }
  if (path.length > MAX_PATH_LENGTH) throw new GoproxyPathError(400, `request path longer than ${MAX_PATH_LENGTH} characters`);
  // Nothing a go command sends, nothing a file path should see.
  if (/[\x00-\x20\x7f\\%]/.test(path)) throw new GoproxyPathError(400, 'the request path has a space, a control character, "\\" or "%" after decoding');
  const segments = path.split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) throw new GoproxyPathError(400, 'the request path has an empty, "." or ".." element');
  if (segments[0] === 'sumdb') throw new GoproxyPathError(404, 'the fleet proxy does not proxy checksum databases: ask the next proxy');
  const latest = LATEST.exec(path);
  const m = latest ? null : REQ.exec(path);
  if (!latest && !m) throw new GoproxyPathError(400, 'not a GOPROXY request: expected <module>/@v/list, <module>/@v/<version>.info|.mod|.zip or <module>/@latest');
  const escapedModule = (latest ?? m)![1]!;
  if (!/^[a-z0-9!._~/-]+$/.test(escapedModule)) throw new GoproxyPathError(400, 'an escaped module path has lower-case letters, digits, "-", ".", "_", "~", "/" and "!" only');
  const module = unescapeGo(escapedModule);
  if (module === null || escapeGo(module) !== escapedModule) throw new GoproxyPathError(400, 'bad case escaping in the module path ("!" must come before a lower-case letter)');
  const modErr = modulePathError(module);
  if (modErr) throw new GoproxyPathError(400, modErr);
  if (latest) return { kind: 'not-served', what: 'latest', module };
  const last = m![2]!;
  if (last === 'list') return { kind: 'not-served', what: 'list', module };
  const dot = last.lastIndexOf('.');
  const file = last.slice(dot + 1) as GoproxyFile;
  const escapedVersion = last.slice(0, dot);
  if (!/^[a-z0-9!.+-]+$/.test(escapedVersion)) throw new GoproxyPathError(400, 'an escaped version has lower-case letters, digits, "-", ".", "+" and "!" only');
  const version = unescapeGo(escapedVersion);
  if (version === null || escapeGo(version) !== escapedVersion) throw new GoproxyPathError(400, 'bad case escaping in the version');
  const verErr = versionError(version);
  if (verErr) throw new GoproxyPathError(400, verErr);
  return { kind: 'file', file, module, version, escapedModule, escapedVersion };
}

/**
 * How a request was answered: from the cache (hit), after a fill (fill), not (miss), refused at
 * the edge (invalid), or refused by the hub's limits (refused: policy, private module, busy, disk).
 */
export type GoproxyResult = 'hit' | 'fill' | 'miss' | 'invalid' | 'refused';

export type GoproxyAnswer =
  | { status: 200; contentType: string; file: string; size: number; result: 'hit' | 'fill' }
  | { status: 400 | 404; message: string; result: 'miss' | 'invalid' }
  | { status: 403 | 503 | 507; message: string; result: 'refused' };

export interface FillRequest {
  module: string;
  version: string;
  /** `zip`: the module zip (and with it .info and .mod); `meta`: .info and .mod only. */
  what: 'zip' | 'meta';
}

export interface FleetModuleProxyOptions {
  /** The GOPROXY-layout download cache: `<GOMODCACHE>/cache/download`. */
  downloadDir: string;
  /** Puts the module's files into downloadDir (the hub's sandboxed go command); rejects when it cannot. */
  fill(req: FillRequest): Promise<void>;
  /** Each answer's result, for the metrics. */
  onResult?(result: GoproxyResult): void;
  /** How long a failed fill is remembered before it is tried again. Default 30 s. */
  failureTtlMs?: number;
  /** Why this module may not be served (the build policy's deny list, a private module), or null. Checked before anything else. */
  refuse?(module: string): string | null;
  /** Fills running at once (default 4); more wait, up to `maxQueuedFills` (default 64), then 503. */
  maxConcurrentFills?: number;
  maxQueuedFills?: number;
  /** Why there is not enough free disk space for a fill (minFreeDisk), or null. */
  lowDisk?(): Promise<string | null>;
}

/** A fill that was not tried (busy, low disk): answered, never remembered as a failure. */
class FillRefused extends Error {
  constructor(
    readonly status: 503 | 507,
    message: string,
  ) {
    super(message);
    this.name = 'FillRefused';
  }
}

const CONTENT_TYPES: Record<GoproxyFile, string> = { info: 'application/json', mod: 'text/plain; charset=utf-8', zip: 'application/zip' };

async function regularFile(path: string): Promise<number | null> {
  const st = await lstat(path).catch(() => null);
  return st?.isFile() ? st.size : null;
}

/** The read-through proxy over a module cache. HTTP-agnostic: the route (src/api/goproxy.ts) streams the file it names. */
export class FleetModuleProxy {
  private readonly root: string;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly failed = new Map<string, { at: number; message: string }>();
  /** Fills started (after dedupe), for the log and tests. */
  fills = 0;
  /** Fills running now, and the most that ran at once (for tests). */
  running = 0;
  peakRunning = 0;
  private readonly queued: Array<() => void> = [];

  constructor(private readonly o: FleetModuleProxyOptions) {
    this.root = resolve(o.downloadDir);
  }

  /** Answers one request path (the part after `/goproxy/`). */
  async answer(rawPath: string): Promise<GoproxyAnswer> {
    const a = await this.answerInner(rawPath);
    this.o.onResult?.(a.result);
    return a;
  }

  private async answerInner(rawPath: string): Promise<GoproxyAnswer> {
    let req: GoproxyPath;
    try {
      req = parseGoproxyPath(rawPath);
    } catch (err) {
      if (err instanceof GoproxyPathError) return { status: err.status, message: err.message, result: err.status === 400 ? 'invalid' : 'miss' };
      throw err;
    }
    const refusal = req.module !== undefined ? (this.o.refuse?.(req.module) ?? null) : null;
    if (refusal) return { status: 403, message: `fairway fleet proxy: ${refusal}`, result: 'refused' };
    if (req.kind === 'not-served') {
      const why =
        req.what === 'sumdb' ? 'checksum databases are not proxied' : `${req.what === 'list' ? 'version lists' : '@latest'} are not served from the fleet cache (it knows only the versions it holds)`;
      return { status: 404, message: `fairway fleet proxy: ${why}; ask the next proxy`, result: 'miss' };
    }
    const file = this.pathOf(req);
    const hit = await this.present(file, req.file);
    if (hit !== null) return { status: 200, contentType: CONTENT_TYPES[req.file], file, size: hit, result: 'hit' };
    const what = req.file === 'zip' ? 'zip' : 'meta';
    const key = `${req.module}@${req.version}#${what}`;
    const failure = this.failed.get(key);
    if (failure && Date.now() - failure.at < (this.o.failureTtlMs ?? 30_000)) return { status: 404, message: failure.message, result: 'miss' };
    let p = this.inflight.get(key);
    if (!p) {
      p = this.limitedFill({ module: req.module, version: req.version, what }).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    try {
      await p;
    } catch (err) {
      if (err instanceof FillRefused) return { status: err.status, message: `fairway fleet proxy: ${err.message}; ask the next proxy`, result: 'refused' };
      const message = `fairway fleet proxy: ${req.module}@${req.version} could not be fetched: ${firstLine(err)}`;
      this.failed.set(key, { at: Date.now(), message });
      return { status: 404, message, result: 'miss' };
    }
    this.failed.delete(key);
    const size = await this.present(file, req.file);
    if (size === null) return { status: 404, message: `fairway fleet proxy: ${req.module}@${req.version} has no .${req.file} file`, result: 'miss' };
    return { status: 200, contentType: CONTENT_TYPES[req.file], file, size, result: 'fill' };
  }

  /** A fill within the limits: free disk first, then a slot among `maxConcurrentFills` (waiting in a bounded queue). */
  private async limitedFill(req: FillRequest): Promise<void> {
    const low = await this.o.lowDisk?.();
    if (low) throw new FillRefused(507, low);
    const max = this.o.maxConcurrentFills ?? 4;
    if (this.running >= max) {
      if (this.queued.length >= (this.o.maxQueuedFills ?? 64)) {
        throw new FillRefused(503, `busy: ${this.running} module fills running and ${this.queued.length} waiting`);
      }
      // The slot is handed over by the fill that ends (running stays counted).
      await new Promise<void>((r) => this.queued.push(r));
    } else this.running++;
    this.peakRunning = Math.max(this.peakRunning, this.running);
    this.fills++;
    try {
      await this.o.fill(req);
    } finally {
      const next = this.queued.shift();
      if (next) next();
      else this.running--;
    }
  }

  /** `<downloadDir>/<escaped module>/@v/<escaped version>.<ext>`: made only of checked segments, and checked to stay under the root. */
  private pathOf(req: Extract<GoproxyPath, { kind: 'file' }>): string {
    const file = resolve(join(this.root, ...req.escapedModule.split('/'), '@v', `${req.escapedVersion}.${req.file}`));
    if (!file.startsWith(this.root + sep)) throw new Error(`fleet proxy: ${file} is outside ${this.root}`);
    return file;
  }

  /** Size of a complete cache file: a zip counts once the go command wrote its .ziphash (it checked the hash). */
  private async present(file: string, kind: GoproxyFile): Promise<number | null> {
    const size = await regularFile(file);
    if (size === null) return null;
    if (kind === 'zip' && (await regularFile(`${file.slice(0, -'.zip'.length)}.ziphash`)) === null) return null;
    return size;
  }
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: unknown; message?: unknown };
  const text = typeof e.stderr === 'string' && e.stderr.trim() ? e.stderr : String(e.message ?? err);
  const lines = text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return (lines[lines.length - 1] ?? 'unknown error').slice(0, 300);
}
