/**
 * HTTP client of a Fairway server, for the `fairway build/status/logs` commands: the JSON API
 * over global fetch, the live log over the websocket (with reconnect from the next line), and
 * an atomic, checksum-verified artifact download.
 */
import { randomBytes } from 'node:crypto';
import { chmod, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import WebSocket from 'ws';
import type { BuildRecord, BuildStatus } from '../service/index.js';
import { isCacheKey, type PluginRequest } from '../request/index.js';
import { stripControl } from '../util/text.js';
import { DownloadVerifyError, expectedSha256, receiveVerified } from './download.js';
import { errorMessage } from '../util/errors.js';

/** Exit codes of the client commands. */
export const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

/** An error with the exit code the command should end with. */
export class ClientError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'ClientError';
  }
}

// The wire types are the service's own records (type-only: the client talks HTTP, never to the service).
export type { BuildRecord, BuildStatus } from '../service/index.js';
export type PluginSpec = PluginRequest;

export interface BuildInput {
  caddyVersion?: string;
  os: string;
  arch: string;
  arm?: string;
  plugins: PluginSpec[];
}

export type LogMessage =
  | { type: 'status'; build: BuildRecord }
  | { type: 'phase'; phase: string; position?: number }
  | { type: 'line'; seq: number; ts: string; stream: string; text: string }
  | { type: 'end'; status: BuildStatus; error?: string; build: BuildRecord | null };

export const isActive = (s: BuildStatus) => s === 'queued' || s === 'running';

export interface FollowOptions {
  from?: number;
  signal?: AbortSignal;
  /** Called before each reconnect attempt (attempt number, wait in ms). */
  onReconnect?(attempt: number, waitMs: number, reason: string): void;
  /** Reconnect attempts in a row without a message before giving up. Default 8 (~1 min). */
  maxRetries?: number;
}

export interface DownloadProgress {
  received: number;
  total: number | null;
}

export interface DownloadResult {
  path: string;
  sha256: string;
  size: number;
}

function explain(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string }; message?: string };
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

export class FairwayClient {
  readonly base: string;
  /** `Authorization` for servers that require a token (`--token` or FAIRWAY_TOKEN). */
  readonly auth: Record<string, string>;

  constructor(server: string, token: string | undefined = process.env.FAIRWAY_TOKEN) {
    this.auth = token ? { authorization: `Bearer ${token}` } : {};
    let url: URL;
    try {
      url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `http://${server}`);
    } catch {
      throw new ClientError(`--server: "${server}" is not a URL (like http://build.example.com:8080)`, EXIT.usage);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ClientError(`--server: use an http:// or https:// URL (got ${url.protocol})`, EXIT.usage);
    this.base = url.href.replace(/\/+$/, '');
  }

  url(path: string): string {
    return this.base + path;
  }

  /** A JSON request; maps network failures to exit 3, 4xx to 2 and 5xx to 1 with the server's message. */
  async json<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<{ status: number; body: T }> {
    let res: Response;
    try {
      res = await fetch(this.url(path), {
        method,
        headers: { accept: 'application/json', ...this.auth, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ClientError(`cannot reach the Fairway server at ${this.base} (${explain(err)}); is it running? Set --server or FAIRWAY_SERVER.`, EXIT.unreachable);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (!res.ok) throw httpError(res.status, parsed, `${method} ${path}`);
    return { status: res.status, body: parsed as T };
  }

  async createBuild(input: BuildInput): Promise<BuildRecord> {
    return (await this.json<BuildRecord>('POST', '/api/builds', input)).body;
  }

  async getBuild(id: string): Promise<BuildRecord> {
    return (await this.json<BuildRecord>('GET', `/api/builds/${encodeURIComponent(id)}`)).body;
  }

  /** Asks for a verification rebuild of a finished build (`POST /api/builds/:id/rebuild`): the rebuild's record. */
  async rebuild(id: string): Promise<BuildRecord> {
    return (await this.json<BuildRecord>('POST', `/api/builds/${encodeURIComponent(id)}/rebuild`)).body;
  }

  async listBuilds(limit = 500): Promise<BuildRecord[]> {
    return (await this.json<{ builds: BuildRecord[] }>('GET', `/api/builds?limit=${limit}`)).body.builds;
  }

  /** The finished builds whose binary has this sha256 (`GET /api/builds?sha256=`), newest first. */
  async buildsBySha256(sha256: string): Promise<BuildRecord[]> {
    return (await this.json<{ builds: BuildRecord[] }>('GET', `/api/builds?sha256=${encodeURIComponent(sha256)}&limit=500`)).body.builds;
  }

  /**
   * A build's provenance (the DSSE envelope, unchecked) and what the server says of it
   * (`x-fairway-provenance: signed|unsigned`). A 404 (no provenance) is a ClientError (exit 1).
   */
  async provenance(build: Pick<BuildRecord, 'id'> & { links?: { provenance?: string } }): Promise<{ envelope: unknown; header: string | null; url: string }> {
    const path = build.links?.provenance ?? `/api/builds/${encodeURIComponent(build.id)}/provenance`;
    let res: Response;
    try {
      res = await fetch(this.url(path), { headers: { accept: 'application/json', ...this.auth } });
    } catch (err) {
      throw new ClientError(`cannot reach the Fairway server at ${this.base} (${explain(err)})`, EXIT.unreachable);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (!res.ok) {
      const e = httpError(res.status, parsed, `GET ${path}`);
      throw new ClientError(`no provenance for build ${build.id.slice(0, 12)}: ${e.message}`, res.status === 404 || res.status === 410 ? EXIT.failed : e.exitCode, res.status, e.code);
    }
    return { envelope: parsed, header: res.headers.get('x-fairway-provenance'), url: this.url(path) };
  }

  /** The server's public key (`GET /api/signing-key`, PEM); null when it has none (404). */
  async signingKeyPem(): Promise<string | null> {
    let res: Response;
    try {
      res = await fetch(this.url('/api/signing-key'), { headers: { accept: 'application/x-pem-file, application/json', ...this.auth } });
    } catch (err) {
      throw new ClientError(`cannot reach the Fairway server at ${this.base} (${explain(err)})`, EXIT.unreachable);
    }
    const text = await res.text();
    if (res.status === 404) return null;
    if (!res.ok) {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      throw httpError(res.status, parsed, 'GET /api/signing-key');
    }
    return text;
  }

  /** A full build id, or the unique recent build whose id starts with `prefix`. */
  async resolveId(prefix: string): Promise<string> {
    if (isCacheKey(prefix)) return prefix;
    if (!/^[0-9a-f]{4,63}$/.test(prefix)) throw new ClientError(`"${prefix}" is not a build id (64 hex digits, or a unique prefix of at least 4)`, EXIT.usage);
    const hits = (await this.listBuilds()).filter((b) => b.id.startsWith(prefix));
    if (hits.length === 1) return hits[0]!.id;
    if (hits.length > 1) throw new ClientError(`build id prefix "${prefix}" is ambiguous (${hits.length} builds); give more digits`, EXIT.usage);
    throw new ClientError(`no recent build with an id starting with "${prefix}"; give the full id`, EXIT.usage);
  }

  /** The log so far as text (does not wait for an active build). */
  async logText(id: string): Promise<string> {
    let res: Response;
    try {
      res = await fetch(this.url(`/api/builds/${encodeURIComponent(id)}/log`), { headers: { accept: 'text/plain', ...this.auth } });
    } catch (err) {
      throw new ClientError(`cannot reach the Fairway server at ${this.base} (${explain(err)})`, EXIT.unreachable);
    }
    const text = await res.text();
    if (!res.ok) {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      throw httpError(res.status, parsed, 'GET log');
    }
    return text;
  }

  /**
   * Follows the log over the websocket: replay, live lines, then `end`. A dropped connection is
   * resumed from the next line (`?from=`), so no line is lost or repeated.
   */
  async *follow(id: string, opts: FollowOptions = {}): AsyncGenerator<LogMessage> {
    let next = opts.from ?? 0;
    let failures = 0;
    const maxRetries = opts.maxRetries ?? 8;
    for (;;) {
      const wsUrl = this.url(`/api/builds/${encodeURIComponent(id)}/log?from=${next}`).replace(/^http/, 'ws');
      const conn = connectOnce(wsUrl, opts.signal, this.auth);
      let ended = false;
      let reason = 'connection closed';
      try {
        for await (const m of conn) {
          failures = 0;
          if (m.type === 'line') {
            if (m.seq < next) continue;
            next = m.seq + 1;
            // What reaches the terminal has no control characters, whatever the server sent.
            m.text = stripControl(String(m.text));
          }
          if (m.type === 'end') ended = true;
          yield m;
          if (ended) return;
        }
      } catch (err) {
        if (err instanceof ClientError) throw err;
        reason = explain(err);
      }
      if (opts.signal?.aborted) return;
      failures++;
      if (failures > maxRetries) {
        throw new ClientError(`lost the log stream of build ${id.slice(0, 12)} and could not reconnect to ${this.base} (${reason})`, EXIT.unreachable);
      }
      const wait = Math.min(10_000, 250 * 2 ** failures);
      opts.onReconnect?.(failures, wait, reason);
      await sleep(wait, opts.signal);
      if (opts.signal?.aborted) return;
    }
  }

  /**
   * Downloads the artifact into a temp file next to `dest`, checks size and sha256 against the
   * response headers and the build record, sets mode 0755, then renames it into place.
   * `beforeInstall` (the provenance check) runs on the verified temp file before the rename; when
   * it throws, the file is removed and `dest` is untouched.
   */
  async download(
    build: BuildRecord,
    dest: string,
    onProgress?: (p: DownloadProgress) => void,
    signal?: AbortSignal,
    beforeInstall?: (r: { sha256: string; size: number }) => Promise<void>,
  ): Promise<DownloadResult> {
    let res: Response;
    try {
      res = await fetch(this.url(build.links.artifact), { headers: this.auth, ...(signal ? { signal } : {}) });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new ClientError(`cannot reach the Fairway server at ${this.base} to download (${explain(err)})`, EXIT.unreachable);
    }
    if (!res.ok || !res.body) {
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(await res.text());
      } catch {
        /* not JSON */
      }
      throw httpError(res.status, parsed, 'download');
    }
    let expected: string;
    try {
      expected = expectedSha256(res.headers.get('x-checksum-sha256'), build.sha256);
    } catch (err) {
      await res.body.cancel().catch(() => undefined);
      throw new ClientError(errorMessage(err), EXIT.failed);
    }
    const lengthHeader = res.headers.get('content-length');
    const total = lengthHeader ? Number(lengthHeader) : (build.size ?? null);

    const target = resolve(dest);
    const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString('hex')}.fairway-part`);
    const fh = await open(tmp, 'wx', 0o755).catch((err: NodeJS.ErrnoException) => {
      throw new ClientError(`cannot write in ${dirname(target)}: ${err.code ?? err.message}`, EXIT.usage);
    });
    let ok = false;
    try {
      const { sha256, size: received } = await receiveVerified(res.body as unknown as AsyncIterable<Uint8Array>, fh, {
        sha256: expected,
        length: total,
        ...(build.size !== undefined ? { recordSize: build.size } : {}),
        onProgress: (received) => onProgress?.({ received, total }),
      }).catch((err: unknown) => {
        if (err instanceof DownloadVerifyError) throw new ClientError(err.message, EXIT.failed);
        throw err;
      });
      await fh.close();
      await beforeInstall?.({ sha256, size: received });
      await chmod(tmp, 0o755);
      await rename(tmp, target);
      ok = true;
      return { path: target, sha256, size: received };
    } catch (err) {
      if (err instanceof ClientError || signal?.aborted) throw err;
      throw new ClientError(`download failed: ${explain(err)}`, EXIT.failed);
    } finally {
      if (!ok) {
        await fh.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
      }
    }
  }
}

function httpError(status: number, body: unknown, what: string): ClientError {
  const err = (body as { error?: { code?: string; message?: string; field?: string } } | null)?.error;
  const message = err?.message ?? (typeof body === 'string' && body.trim() ? body.trim().slice(0, 300) : `${what}: HTTP ${status}`);
  const code = status >= 500 ? (status === 502 || status === 503 || status === 504 ? EXIT.unreachable : EXIT.failed) : EXIT.usage;
  return new ClientError(status >= 500 ? `server error (HTTP ${status}): ${message}` : message, code, status, err?.code);
}

/** One websocket connection as an async iterable of messages; ends when the socket closes. */
async function* connectOnce(url: string, signal?: AbortSignal, headers: Record<string, string> = {}): AsyncGenerator<LogMessage> {
  const ws = new WebSocket(url, { handshakeTimeout: 15_000, headers });
  const queue: Array<LogMessage | { type: 'error'; error?: { code?: string; message?: string } }> = [];
  let done = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    wake?.();
    wake = null;
  };
  ws.on('message', (data) => {
    try {
      queue.push(JSON.parse(String(data)));
    } catch {
      /* ignore non-JSON frames */
    }
    notify();
  });
  ws.on('unexpected-response', (_req, res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (text += c));
    res.on('end', () => {
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      failure = httpError(res.statusCode ?? 500, parsed, 'log');
      done = true;
      ws.terminate();
      notify();
    });
  });
  ws.on('error', (err) => {
    failure ??= err;
    done = true;
    notify();
  });
  ws.on('close', () => {
    done = true;
    notify();
  });
  const onAbort = () => ws.terminate();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      while (queue.length) {
        const m = queue.shift()!;
        if (m.type === 'error') {
          const status = m.error?.code === 'not_found' ? 404 : 400;
          throw httpError(status, m, 'log');
        }
        yield m;
      }
      if (done) break;
      await new Promise<void>((r) => (wake = r));
    }
    if (failure) throw failure;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((r) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      r();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Whether `p` is an existing directory. */
export async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}
