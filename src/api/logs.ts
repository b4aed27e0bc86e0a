import type { FastifyReply, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import type { BuildService, LogEvent } from '../service/index.js';
import { stripControl } from '../util/text.js';
import { toHttpError } from './errors.js';

/** One wire message per log event; the final `end` carries the build record. */
async function toMessage(service: BuildService, id: string, ev: LogEvent): Promise<Record<string, unknown>> {
  switch (ev.type) {
    case 'line':
      // Cleaned again where it is served: a log stored before, or by an older agent, may hold terminal control.
      return { type: 'line', ...ev.line, text: stripControl(ev.line.text) };
    case 'status':
      return { type: 'status', build: ev.build };
    case 'phase':
      return { type: 'phase', phase: ev.phase, ...(ev.position ? { position: ev.position } : {}) };
    case 'end':
      return { type: 'end', status: ev.state, ...(ev.error ? { error: stripControl(ev.error) } : {}), build: await service.get(id).catch(() => null) };
  }
}

/** The first line to send: `?from=N`, else after the SSE `Last-Event-ID`, else 0 (anything unusable counts as 0). */
export function fromSeq(q: string | undefined, last: string | string[] | undefined): number {
  const v = q ?? (typeof last === 'string' ? String(Number(last) + 1) : undefined);
  const n = v === undefined ? 0 : Number(v);
  return Number.isInteger(n) && n >= 0 ? n : 0;
}

/** WebSocket: replay from the first line (or `?from=N`), live lines, then a final status message. */
export function logWebSocket(service: BuildService) {
  return async (socket: WebSocket, id: string, from: number) => {
    const ac = new AbortController();
    socket.on('close', () => ac.abort());
    socket.on('error', () => ac.abort());
    try {
      for await (const ev of service.followLog(id, { fromSeq: from, signal: ac.signal })) {
        if (ac.signal.aborted) break;
        socket.send(JSON.stringify(await toMessage(service, id, ev)));
      }
      socket.close(1000, 'end of log');
    } catch (err) {
      const { body } = toHttpError(err);
      socket.send(JSON.stringify({ type: 'error', ...body }));
      socket.close(1008, body.error.code);
    }
  };
}

/** SSE (Accept: text/event-stream) or plain text log. */
export function logHttp(service: BuildService) {
  return async (req: FastifyRequest, reply: FastifyReply, id: string, from: number) => {
    const sse = (req.headers.accept ?? '').includes('text/event-stream');
    const ac = new AbortController();
    const events = service.followLog(id, { fromSeq: from, signal: ac.signal });
    const first = await events.next(); // throws 404 before any header is written
    if (!sse) {
      // Plain text: what exists now, without following.
      const lines: string[] = [];
      const status = first.value && first.value.type === 'status' ? first.value.build.status : undefined;
      if (status === 'queued' || status === 'running') {
        ac.abort();
      }
      for await (const ev of events) if (ev.type === 'line') lines.push(`${stripControl(ev.line.ts)} ${ev.line.stream} ${stripControl(ev.line.text)}`);
      return reply.type('text/plain; charset=utf-8').send(lines.join('\n') + (lines.length ? '\n' : ''));
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    req.raw.on('close', () => ac.abort());
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    try {
      const write = async (ev: LogEvent) => {
        const msg = await toMessage(service, id, ev);
        const idLine = ev.type === 'line' ? `id: ${ev.line.seq}\n` : '';
        res.write(`event: ${ev.type}\n${idLine}data: ${JSON.stringify(msg)}\n\n`);
      };
      if (first.value) await write(first.value);
      for await (const ev of events) {
        if (ac.signal.aborted) break;
        await write(ev);
      }
    } finally {
      clearInterval(heartbeat);
      res.end();
    }
  };
}
