/**
 * The page's view of the API's JSON. The build record is the server's own (inferred from its one
 * schema, src/service/record-schema.ts), and so is its resolved spec (src/request/spec-schema.ts);
 * both files import only zod. Types only: no code, no DOM.
 */
import type { ResolvedSpecShape } from '../../request/spec-schema.js';
import type { BuildRecord } from '../../service/record-schema.js';
import type { RecipeWatchState } from '../../upstream/state-schema.js';

/** What the watcher knows of a recipe (`GET /api/recipes/{name}`): the server's one schema of it. */
export type { RecipeWatchState };

export type Status = Build['status'];

export interface Plugin {
  module: string;
  version?: string;
  replace?: unknown;
}

/** A build as `GET /api/builds/:id`, `POST /api/builds` and the log stream's `status` message give it: the server's one record schema. */
export type Build = BuildRecord;

/** A build's resolved spec (`Build['spec']`): the server's one schema of it. */
export type Spec = ResolvedSpecShape;

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

/** A named plugin set (`GET /api/recipes`; `GET /api/recipes/{name}` adds `watching` and `upstream`). */
export interface Recipe {
  name: string;
  plugins?: Plugin[];
  caddyVersion?: string;
  watching?: boolean;
  upstream?: RecipeWatchState;
}

/** A message of a build's log stream (websocket, or SSE with a token). */
export type Msg =
  | { type: 'status'; build: Build }
  | { type: 'phase'; phase: string; position?: number }
  | { type: 'line'; seq: number; ts: string; stream: string; text: string }
  | { type: 'end'; status: Status; error?: string; build?: Build | null }
  | { type: 'error'; error?: { message?: string } };
