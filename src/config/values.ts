/**
 * The kinds of value a setting takes, each read from JSON (the config file) and from a string (an
 * environment variable or a flag) and checked with a message naming what is wrong: durations,
 * sizes, whole numbers, lists, module patterns, Go variables, ops lists, recipes. A new setting
 * in schema.ts picks one of these, or a plain zod type.
 */
import { z } from 'zod';
import { goEnvError, modulePatternError } from '../policy/index.js';
import { recipeVersionKind, testConfigError, type TestConfig } from '../request/index.js';
import { parseBytes, parseDuration } from '../util/units.js';
import { errorMessage } from '../util/errors.js';

export const duration = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    try {
      return parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: errorMessage(e) });
      return z.NEVER;
    }
  })
  .pipe(z.number().int().positive('must be greater than zero'));
export const bytes = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    try {
      return parseBytes(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: errorMessage(e) });
      return z.NEVER;
    }
  })
  .pipe(z.number().int().positive('must be greater than zero'));
export const int = (min: number, max: number) =>
  z
    .union([
      z.number(),
      z
        .string()
        .trim()
        .regex(/^[0-9]+$/, 'must be a whole number')
        .transform(Number),
    ])
    .pipe(z.number().int().min(min).max(max));
/** A list from JSON (array) or from a flag/env (comma-separated). */
export const list = z.union([
  z.array(z.string()),
  z.string().transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  ),
]);
/** A string that `errorOf` accepts (null), else the issue it names. */
export const checked = (errorOf: (v: string) => string | null | undefined) =>
  z.string().superRefine((v, ctx) => {
    const err = errorOf(v);
    if (err) ctx.addIssue({ code: 'custom', message: err });
  });
/** A switch: true or false in JSON; "true", "false", "1" or "0" from a flag or the environment. */
export const bool = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).transform((v) => v === true || v === 'true' || v === '1');
export const patterns = list.pipe(
  z.array(
    checked((p) => {
      const err = modulePatternError(p);
      return err && `module pattern "${p}" ${err}`;
    }),
  ),
);
/** A size, or 0 for "off". One parse, so a bad value gets parseBytes' message rather than a union's "Invalid input". */
export const bytesOrZero = z.union([z.string(), z.number()]).transform((v, ctx) => {
  try {
    const n = parseBytes(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`invalid size "${v}": must be 0 or a positive size`);
    return n;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: errorMessage(e) });
    return z.NEVER;
  }
});
export const goEnv = (name: 'gosumdb' | 'gonosumdb' | 'goprivate') => checked((v) => goEnvError(name, v));

/** Ops lists (pinned, prebuild): a JSON array in a file; from env/flags a JSON array or comma-separated items. */
export function opsList<T extends z.ZodType>(item: T, fromString: (parts: string[]) => unknown[] = (p) => p) {
  return z
    .union([z.array(z.unknown()), z.string()])
    .transform((v, ctx) => {
      if (Array.isArray(v)) return v;
      const t = v.trim();
      if (t === '') return [];
      if (t.startsWith('[')) {
        try {
          return JSON.parse(t) as unknown[];
        } catch (e) {
          ctx.addIssue({ code: 'custom', message: `invalid JSON list: ${errorMessage(e)}` });
          return z.NEVER;
        }
      }
      return fromString(
        t
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
      );
    })
    .pipe(z.array(item));
}
export const specObject = z.record(z.string(), z.unknown());
const recipePlugin = z.strictObject({
  module: z.string().min(1),
  // latest, exact, a semver range (^1.2, >=1.0.0 <2.0.0) or a branch: docs/recipes.md "Version ranges".
  version: z
    .string()
    .min(1)
    .superRefine((v, ctx) => {
      const k = recipeVersionKind(v);
      if ('error' in k) ctx.addIssue({ code: 'custom', message: k.error });
    })
    .optional(),
});
/** A Caddyfile or a Caddy JSON config, at most 64 KiB: only its shape and size are checked here. */
const recipeTestConfig = z
  .unknown()
  .superRefine((v, ctx) => {
    const err = testConfigError(v);
    if (err) ctx.addIssue({ code: 'custom', message: err });
  })
  .transform((v) => v as TestConfig);
/** Recipes: an object in a file; from env/flags a JSON object. Names and plugins are checked again by src/registry. */
export const recipesSetting = z.preprocess(
  (v, ctx) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `invalid JSON object: ${errorMessage(e)}` });
      return z.NEVER;
    }
  },
  z.record(
    z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'a recipe name is [a-z0-9][a-z0-9-]{0,63}'),
    z.strictObject({ plugins: z.array(recipePlugin).max(200), caddyVersion: z.string().min(1).optional(), testConfig: recipeTestConfig.optional() }),
  ),
);
/** An image platform: linux/<arch>, with /v5 to /v8 for arm. */
export const imagePlatform = z.string().regex(/^linux\/[a-z0-9]+(?:\/v[5-8])?$/, 'a platform like linux/amd64 or linux/arm/v7');
