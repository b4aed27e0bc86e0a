/**
 * The resolved spec as zod, defined once: the grammar's first gate for a spec from outside this
 * process (checkResolvedSpec in resolved.ts, before the grammar's own checks), the `spec` of the
 * build record every client sees (src/service/record-schema.ts, hence /openapi.json), and the
 * UI page's type of it (src/ui/page/types.ts). Imports only zod: the page is bundled without
 * the server's code, so it and the record schema reach this file through a side door
 * (test/unit/architecture.test.ts).
 */
import { z } from 'zod';

const text = (max: number) => z.string().min(1).max(max);

const moduleReplacement = z.strictObject({ kind: z.literal('module'), module: text(255), version: text(128) });
const pathReplacement = z.strictObject({ kind: z.literal('path'), path: text(4096) });
const replaces = 'what replaces the plugin: a module at an exact version, or (local CLI builds only) a directory';
const replacementSchema = z.discriminatedUnion('kind', [moduleReplacement, pathReplacement]).describe(replaces);

const resolvedPluginSchema = z.strictObject({ module: text(255), version: text(128).optional(), replace: replacementSchema.optional() });

export const resolvedSpecSchema = z
  .strictObject({
    caddyVersion: text(128),
    os: text(32),
    arch: text(32),
    arm: text(4).optional(),
    plugins: z.array(resolvedPluginSchema).max(200),
    toolchain: z.strictObject({ go: text(64), xcaddy: text(64), flags: text(256) }).describe('the Go and xcaddy versions and build flags, part of the key'),
  })
  .describe('the fully resolved spec the cache key hashes');

/** A resolved spec as the schema reads it (the same shape as ResolvedSpec in types.ts). */
export type ResolvedSpecShape = z.infer<typeof resolvedSpecSchema>;
