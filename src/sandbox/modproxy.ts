/**
 * The only network a sandboxed go command has: a GOPROXY-protocol relay on a unix socket that the
 * sandbox binds in (and bridges to 127.0.0.1 inside its own network namespace with socat). It
 * answers GET/HEAD for module downloads and checksum-database lookups only, from the upstream
 * proxies of the operator's GOPROXY list, with Go's own fallback rules (`,` falls through on
 * 404/410, `|` on any error). `direct` and `off` cannot be relayed: a sandboxed build fetches
 * modules from proxies only, never from a VCS host. Nothing else on the machine (Redis, the S3
 * server, the Fairway API, loopback services) is reachable through it.
 *
 * Private modules (`go help module-private`) are treated as the go command treats them: a module
 * path matching GONOPROXY (default: GOPRIVATE) is never asked of any proxy, the go command would
 * fetch it from its VCS host, which a sandboxed build cannot reach, so the relay refuses it (403,
 * with what to do) before any upstream sees the path; a module path matching GONOSUMDB (default:
 * GOPRIVATE) is never looked up in a checksum database through it. Patterns are Go's: comma-
 * separated globs matched against a prefix of the module path (path.Match per element), here
 * ignoring case (a private path in other capitals stays private).
 */
import { createReadStream } from 'node:fs';
import { chmod, mkdtemp, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { matchPrivate, type PrivateModules } from '../util/goprivate.js';

export interface Upstream {
  /** `https://…`, `http://…` or `file:///dir` without a trailing slash. */
  url: string;
  /** Go's rule for moving to the next entry: after `,` only on 404/410, after `|` on any error. */
  fallThrough: 'not-found' | 'any-error';
  /**
   * Request headers sent to this upstream only (the fleet proxy's `Authorization`, docs/distributed.md).
   * They are added here, outside the sandbox: no go command and no build ever sees them, and no
   * other upstream gets them. Never logged (describe() shows the URLs only).
   */
  headers?: Readonly<Record<string, string>>;
}

export interface ParsedGoproxy {
  upstreams: Upstream[];
  /** Entries that cannot be relayed (`direct`, and whatever follows `off`). */
  dropped: string[];
}

/** Go's default when GOPROXY is unset. */
export const DEFAULT_GOPROXY = 'https://proxy.golang.org,direct';

/** Splits a GOPROXY value into the proxies a sandboxed build can use. */
export function parseGoproxy(value: string | undefined): ParsedGoproxy {
  const text = value === undefined || value.trim() === '' ? DEFAULT_GOPROXY : value;
  const upstreams: Upstream[] = [];
  const dropped: string[] = [];
  const parts = text.split(/([,|])/);
  let off = false;
  for (let i = 0; i < parts.length; i += 2) {
    const entry = parts[i]!.trim();
    const sepAfter = parts[i + 1];
    if (entry === '') continue;
    if (off) {
      dropped.push(entry);
      continue;
    }
    if (entry === 'off') {
      off = true;
      continue;
    }
    if (entry === 'direct') {
      dropped.push(entry);
      continue;
    }
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new Error(`GOPROXY entry "${entry}" is not a URL (expected https://…, http://…, file:///…, direct or off)`);
    }
    if (!['https:', 'http:', 'file:'].includes(url.protocol)) throw new Error(`GOPROXY entry "${entry}": only https, http and file proxies can be used`);
    upstreams.push({ url: entry.replace(/\/+$/, ''), fallThrough: sepAfter === '|' ? 'any-error' : 'not-found' });
  }
  return { upstreams, dropped };
}

/** Module paths in proxy URLs are case-encoded (`!a` for `A`); versions likewise. */
const SEGMENT = /^[a-z0-9!._~+-]+$/;
const MODULE_REQ = /^\/(.+)\/(@v\/list|@latest|@v\/[^/]+\.(?:info|mod|zip))$/;
const SUMDB_REQ = /^\/sumdb\/([a-z0-9.-]+(?::[0-9]+)?)\/(supported|latest|lookup\/.+|tile\/.+)$/;

/**
 * The request path, if it is a GOPROXY-protocol path; null otherwise (answered 404). The go
 * command percent-encodes the `!` of case-encoded paths (`/github.com/%21burnt%21sushi/…`): the
 * path is decoded once, then checked, and the decoded form is what goes upstream.
 */
export function proxyPath(rawUrl: string): string | null {
  let path: string;
  try {
    path = decodeURIComponent(rawUrl.split('?')[0]!);
  } catch {
    return null;
  }
  if (path.length > 1024 || path.includes('//') || path.includes('\\') || path.includes('%') || /[\x00-\x20\x7f]/.test(path)) return null;
  const segments = path.split('/').slice(1);
  if (segments.some((s) => s === '' || s === '.' || s === '..')) return null;
  const sum = SUMDB_REQ.exec(path);
  if (sum) return segments.slice(3).every((s) => /^[A-Za-z0-9!._~+@*=,-]+$/.test(s)) ? path : null;
  const m = MODULE_REQ.exec(path);
  if (!m) return null;
  if (!m[1]!.split('/').every((s) => SEGMENT.test(s))) return null;
  const last = segments[segments.length - 1]!;
  if (!/^(?:@latest|@v|list|[A-Za-z0-9][A-Za-z0-9!._~+-]*)$/.test(last)) return null;
  return path;
}

type Answer = { status: number; headers: Record<string, string>; body: Readable | null };

async function fromFile(base: string, path: string): Promise<Answer> {
  const root = resolve(fileURLToPath(`${base}/`));
  const file = resolve(root, `.${path}`);
  if (!file.startsWith(root + sep)) return { status: 404, headers: {}, body: null };
  const st = await stat(file).catch(() => null);
  if (!st?.isFile()) return { status: 404, headers: {}, body: null };
  const type = path.endsWith('.zip') ? 'application/zip' : path.endsWith('.info') ? 'application/json' : 'text/plain; charset=utf-8';
  return { status: 200, headers: { 'content-type': type, 'content-length': String(st.size) }, body: createReadStream(file) };
}

async function fromHttp(base: string, path: string, method: string, extra?: Readonly<Record<string, string>>): Promise<Answer> {
  // A redirect to another origin drops Authorization (fetch's rule), so the header stays with this upstream.
  const res = await fetch(base + path, { method, redirect: 'follow', signal: AbortSignal.timeout(10 * 60_000), ...(extra ? { headers: { ...extra } } : {}) });
  const headers: Record<string, string> = {};
  for (const h of ['content-type', 'content-length', 'cache-control', 'last-modified', 'etag']) {
    const v = res.headers.get(h);
    if (v) headers[h] = v;
  }
  return { status: res.status, headers, body: res.body ? Readable.fromWeb(res.body as import('node:stream/web').ReadableStream) : null };
}

export interface ModuleRelay {
  /** The socket path outside the sandbox. */
  readonly socketPath: string;
  readonly upstreams: readonly Upstream[];
  /** Requests answered, by outcome (for tests and the log). */
  readonly counts: { served: number; notFound: number; refused: number; failed: number; private: number };
  close(): Promise<void>;
}

/** Go's case encoding undone (`!x` → `X`); null when it is not valid. */
function unescapeCase(s: string): string | null {
  if (/[A-Z]/.test(s) || /![^a-z]|!$/.test(s)) return null;
  return s.replace(/!([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Which module a relayed request is about, and whether as a proxy download or a checksum-database lookup. */
export function requestedModule(path: string): { module: string; via: 'proxy' | 'sumdb' } | null {
  const sum = SUMDB_REQ.exec(path);
  if (sum) {
    const lookup = /^lookup\/(.+)@[^@/]+$/.exec(sum[2]!);
    const module = lookup ? unescapeCase(lookup[1]!) : null;
    return module ? { module, via: 'sumdb' } : null;
  }
  const m = MODULE_REQ.exec(path);
  const module = m ? unescapeCase(m[1]!) : null;
  return module ? { module, via: 'proxy' } : null;
}

export interface RelayOptions {
  upstreams: Upstream[];
  /** Private module paths (GONOPROXY, GONOSUMDB, GOPRIVATE): refused before any upstream is asked. */
  private?: PrivateModules;
  /** A private module path was refused (for the log: the path stays out of every upstream's). */
  onPrivate?(module: string, pattern: string, via: 'proxy' | 'sumdb'): void;
  onError?(err: Error, path: string): void;
  /** An upstream with headers (the fleet proxy) answered neither 200 nor 404/410: e.g. 401/403 for a refused token. */
  onRefused?(upstream: string, status: number, path: string): void;
}

/** Starts the relay on a fresh unix socket, connectable by any local user (the build identity). */
export async function startModuleRelay(o: RelayOptions): Promise<ModuleRelay> {
  if (o.upstreams.length === 0) throw new Error('no module proxy to relay: GOPROXY names no https, http or file proxy (a sandboxed build cannot use "direct")');
  const dir = await mkdtemp(join(tmpdir(), 'fairway-goproxy-'));
  const socketPath = join(dir, 'goproxy.sock');
  const counts = { served: 0, notFound: 0, refused: 0, failed: 0, private: 0 };
  const server = http.createServer((req, res) => {
    void (async () => {
      const path = req.method === 'GET' || req.method === 'HEAD' ? proxyPath(req.url ?? '') : null;
      if (!path) {
        counts.refused++;
        res.writeHead(404, { 'content-type': 'text/plain' }).end('fairway: only module downloads are relayed\n');
        return;
      }
      const about = requestedModule(path);
      if (about) {
        const pattern = matchPrivate(about.via === 'proxy' ? o.private?.noProxy : o.private?.noSumdb, about.module);
        if (pattern) {
          counts.private++;
          o.onPrivate?.(about.module, pattern, about.via);
          const why =
            about.via === 'proxy'
              ? `${about.module} is a private module (GONOPROXY/GOPRIVATE pattern "${pattern}"): the go command fetches private modules from their version control host, never from a module proxy, and a sandboxed build reaches proxies only; no proxy was asked. To build it, serve it from a module proxy of your own and set GONOPROXY so that it does not match (e.g. GONOPROXY=none; GOPRIVATE still keeps it out of the checksum database), with GOPROXY listing only proxies that may see the path`
              : `${about.module} is a private module (GONOSUMDB/GOPRIVATE pattern "${pattern}"): it is not looked up in a checksum database`;
          res.writeHead(403, { 'content-type': 'text/plain' }).end(`fairway: ${why}\n`);
          return;
        }
      }
      let last: Answer | null = null;
      let lastErr: Error | null = null;
      for (const up of o.upstreams) {
        try {
          const a = up.url.startsWith('file:') ? await fromFile(up.url, path) : await fromHttp(up.url, path, req.method!, up.headers);
          if (a.status === 200) {
            counts.served++;
            res.writeHead(200, a.headers);
            if (a.body && req.method === 'GET') await pipeline(a.body, res);
            else {
              a.body?.destroy();
              res.end();
            }
            return;
          }
          a.body?.resume();
          if (up.headers && a.status !== 404 && a.status !== 410) o.onRefused?.(up.url, a.status, path);
          last = a;
          lastErr = null;
          if (up.fallThrough === 'not-found' && a.status !== 404 && a.status !== 410) break;
        } catch (err) {
          lastErr = err as Error;
          last = null;
          o.onError?.(lastErr, path);
          if (up.fallThrough === 'not-found') break;
        }
      }
      if (last && (last.status === 404 || last.status === 410)) counts.notFound++;
      else counts.failed++;
      if (!res.headersSent) {
        const status = last ? last.status : 502;
        res.writeHead(status, { 'content-type': 'text/plain' }).end(lastErr ? `fairway: module proxy unreachable: ${lastErr.message}\n` : `fairway: the module proxy answered ${status}\n`);
      } else res.destroy();
    })().catch((err: Error) => {
      o.onError?.(err, req.url ?? '');
      res.destroy();
    });
  });
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000;
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(socketPath, () => ok());
  });
  // The build identity must be able to connect; the socket is only reachable where it is bound in.
  await chmod(socketPath, 0o666);
  return {
    socketPath,
    upstreams: o.upstreams,
    counts,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
