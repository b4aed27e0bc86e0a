/**
 * The page's view of the API's JSON: the one place the page's build record is typed, so that it
 * can later be derived from the server's schema (src/api). Types only: no code, no DOM.
 */

export type Status = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

export interface Plugin {
  module: string;
  version?: string;
  replace?: unknown;
}

/** A build as `GET /api/builds/:id`, `POST /api/builds` and the log stream's `status` message give it. */
export interface Build {
  id: string;
  status: Status;
  phase: string;
  position?: number;
  cached?: boolean;
  request?: { caddyVersion?: string; plugins?: Plugin[] };
  spec: { caddyVersion: string; os: string; arch: string; arm?: string; plugins: Plugin[]; toolchain?: { go?: string; xcaddy?: string } };
  filename: string;
  sha256?: string;
  size?: number;
  goVersion?: string;
  error?: string;
  createdAt?: string;
  startedAt?: string;
  finishedAt?: string;
  durationMs?: number;
  agent?: string;
  provenance?: 'signed' | 'unsigned';
  links: { artifact: string; provenance?: string };
}

/** The queue's depth, as `GET /api/builds` and `GET /api/agents` report it. */
export interface QueueDepth {
  queued: number;
  running: number;
}

/** A catalog package as the picker shows it (normaliseCatalog in format.ts reads several shapes). */
export interface CatalogEntry {
  path: string;
  available: boolean;
  description: string;
  modules: string[];
}

/** A named plugin set (`GET /api/recipes`). */
export interface Recipe {
  name: string;
  plugins?: Plugin[];
  caddyVersion?: string;
}

/** A message of a build's log stream (websocket, or SSE with a token). */
export type Msg =
  | { type: 'status'; build: Build }
  | { type: 'phase'; phase: string; position?: number }
  | { type: 'line'; seq: number; ts: string; stream: string; text: string }
  | { type: 'end'; status: Status; error?: string; build?: Build | null }
  | { type: 'error'; error?: { message?: string } };
