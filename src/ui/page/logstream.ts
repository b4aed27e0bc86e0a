/**
 * Following a build's log: the websocket `/api/builds/:id/log?from=<seq>`, or, with an API token,
 * the same messages over SSE read with fetch (a browser WebSocket cannot send headers). A dropped
 * connection is tried again with a growing pause, from the next line.
 */
import { get, hasToken, refusal } from './api.js';
import { reconnectDelay, sseEvents } from './format.js';
import type { Msg } from './types.js';

/** One followed log: where it is, and its open connection. */
export interface LogFollow {
  id: string;
  /** The next line's seq: where a reconnection starts. */
  next: number;
  /** The stream has ended (or was closed): no reconnection. */
  ended: boolean;
  retry: number;
  ws?: WebSocket;
  /** The SSE request when the log is followed with a token. */
  sse?: AbortController;
}

export interface LogHandlers {
  /** Whether this log is still the one shown; messages of any other are dropped. */
  current(): boolean;
  message(m: Msg): void;
  /** A dropped connection will be tried again in `waitMs`. */
  retrying(waitMs: number): void;
}

export function connect(v: LogFollow, on: LogHandlers): void {
  if (hasToken()) {
    connectSse(v, on);
    return;
  }
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/builds/${encodeURIComponent(v.id)}/log?from=${v.next}`);
  v.ws = ws;
  ws.onmessage = (e) => {
    if (!on.current()) return;
    let m: Msg;
    try {
      m = JSON.parse(String(e.data)) as Msg;
    } catch {
      return;
    }
    on.message(m);
  };
  ws.onclose = () => reconnect(v, on);
}

/** Close the connection; the log is not followed again. */
export function disconnect(v: LogFollow): void {
  v.ended = true;
  v.ws?.close();
  v.sse?.abort();
}

function reconnect(v: LogFollow, on: LogHandlers): void {
  if (!on.current() || v.ended) return;
  v.retry++;
  const wait = reconnectDelay(v.retry);
  on.retrying(wait);
  setTimeout(() => on.current() && !v.ended && connect(v, on), wait);
}

function connectSse(v: LogFollow, on: LogHandlers): void {
  const ac = new AbortController();
  v.sse = ac;
  void (async () => {
    try {
      const res = await get(`/api/builds/${encodeURIComponent(v.id)}/log?from=${v.next}`, 'text/event-stream', ac.signal);
      if (!res.ok || !res.body) {
        if (res.status >= 400 && res.status < 500) {
          // Not found, or not allowed: retrying will not help.
          const message = await refusal(res);
          if (on.current()) on.message({ type: 'error', error: { message } });
          return;
        }
        throw new Error(`HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const { data, rest } = sseEvents(buf + value);
        buf = rest;
        for (const d of data) {
          if (!on.current()) continue;
          let m: Msg;
          try {
            m = JSON.parse(d) as Msg;
          } catch {
            continue;
          }
          on.message(m);
        }
      }
    } catch {
      /* network error, or closed by us */
    }
    if (!ac.signal.aborted) reconnect(v, on);
  })();
}
