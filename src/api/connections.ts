/**
 * Bounded connections (docs/operations.md "Connections and timeouts"): Node's header, body and
 * keep-alive timeouts, a per-client cap on open connections, and closing the connection after an
 * error answered before the request body arrived. Timeouts only ever apply to *receiving* a
 * request: a response in progress (a long download, a log stream, the blocking /api/download)
 * is never cut by them.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

export interface ConnectionOptions {
  /** Time to receive the request line and headers (Node's headersTimeout). */
  headersTimeoutMs: number;
  /** Time to receive the whole request, body included (Node's requestTimeout). */
  requestTimeoutMs: number;
  /** Idle time between requests on a kept-alive connection. */
  keepAliveTimeoutMs: number;
  /** Open connections per remote address; 0 = no limit. */
  maxPerClient: number;
}

export const DEFAULT_CONNECTIONS: ConnectionOptions = {
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 65_000,
  maxPerClient: 256,
};

/** How often Node looks for requests past their header/request timeout (its default is 30 s). */
export function checkingIntervalMs(o: ConnectionOptions): number {
  return Math.max(100, Math.min(5_000, Math.floor(Math.min(o.headersTimeoutMs, o.requestTimeoutMs) / 4)));
}

const REFUSED_LOG_INTERVAL_MS = 60_000;
const RETRY_AFTER_S = 5;

/**
 * Counts open connections per remote address on the raw server's 'connection' event; one over
 * the cap gets a short 503 JSON answer (without being parsed) and is closed. Wraps the server's
 * existing 'connection' listeners, so a refused socket never reaches the HTTP parser.
 */
export function limitConnectionsPerClient(server: Server, maxPerClient: number, logger: Pick<Logger, 'warn'>, now: () => number = Date.now): { open(address: string): number } {
  const open = new Map<string, number>();
  const lastLogged = new Map<string, number>();
  if (maxPerClient > 0) {
    const inner = server.listeners('connection') as Array<(s: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      const address = socket.remoteAddress ?? 'unknown';
      const n = open.get(address) ?? 0;
      if (n >= maxPerClient) {
        refuse(socket, maxPerClient);
        const t = now();
        if ((lastLogged.get(address) ?? -Infinity) + REFUSED_LOG_INTERVAL_MS <= t) {
          if (lastLogged.size > 10_000) for (const [a, at] of lastLogged) if (at + REFUSED_LOG_INTERVAL_MS <= t) lastLogged.delete(a);
          lastLogged.set(address, t);
          logger.warn({ client: address, open: n, maxConnectionsPerClient: maxPerClient }, 'too many connections from one client: refusing new ones (logged at most once a minute per client)');
        }
        return;
      }
      open.set(address, n + 1);
      socket.once('close', () => {
        const left = (open.get(address) ?? 1) - 1;
        if (left <= 0) open.delete(address);
        else open.set(address, left);
      });
      for (const l of inner) l.call(server, socket);
    });
  }
  return { open: (address) => open.get(address) ?? 0 };
}

function refuse(socket: Socket, max: number): void {
  const body = JSON.stringify({
    status_code: 503,
    error: { code: 'too_many_connections', message: `too many open connections from this client (at most ${max}); close some and retry` },
  });
  socket.on('error', () => {});
  socket.resume(); // whatever the client sends is discarded
  socket.end(`HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: ${RETRY_AFTER_S}\r\nConnection: close\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 2_000).unref();
}

/**
 * An error answered before the request body has fully arrived (a 401 in onRequest, a 413...)
 * closes the connection: `Connection: close` makes Node end and destroy the socket once the
 * answer is written, so a client trickling a body does not keep it.
 */
export function closeAfterEarlyErrors(app: FastifyInstance): void {
  app.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode >= 400 && !req.raw.complete) reply.header('connection', 'close');
    return payload;
  });
}
