/**
 * The parts of a recipe that are not a build request's: its test config (docs/recipes.md). A recipe
 * may carry a Caddy config its builds are tried with: a Caddyfile (a string) or a Caddy JSON
 * config (an object), at most MAX_TEST_CONFIG bytes (UTF-8; an object as JSON). Only its shape and
 * size are checked here; whether Caddy accepts it is for `caddy validate` on a built binary.
 */

/** The largest test config: 64 KiB of UTF-8 (a Caddyfile) or of JSON (a JSON config). */
export const MAX_TEST_CONFIG = 64 * 1024;

export type TestConfig = string | Record<string, unknown>;

/** Null when `v` is a test config a recipe may carry (or absent), else what is wrong with it. */
export function testConfigError(v: unknown): string | null {
  if (v === undefined) return null;
  if (typeof v === 'string') {
    if (v.length === 0) return 'testConfig is empty: leave it out for none, or give a Caddyfile';
    const size = Buffer.byteLength(v, 'utf8');
    return size > MAX_TEST_CONFIG ? `testConfig is ${size} bytes of UTF-8: at most ${MAX_TEST_CONFIG} (64 KiB)` : null;
  }
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const size = Buffer.byteLength(JSON.stringify(v), 'utf8');
    return size > MAX_TEST_CONFIG ? `testConfig is ${size} bytes as JSON: at most ${MAX_TEST_CONFIG} (64 KiB)` : null;
  }
  return 'testConfig is a Caddyfile (a string) or a Caddy JSON config (an object)';
}
