/**
 * Runs of a built binary outside its build: `caddy validate` of a recipe's test config (the
 * watcher's trial check, src/upstream). Same rules as the build's own runs (index.ts runBuilt):
 * the run sandbox with no network, the binary and the config read-only, the binary's limits.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createWriteStream } from 'node:fs';
import { SandboxRunError } from '../sandbox/index.js';
import type { Toolchain } from '../toolchain/index.js';
import { errorMessage } from '../util/errors.js';

/** What a built binary sees when it runs: no server variable, a private /tmp for everything. */
export const BINARY_ENV = { PATH: '/usr/bin:/bin', HOME: '/tmp', TMPDIR: '/tmp', XDG_CONFIG_HOME: '/tmp', XDG_DATA_HOME: '/tmp', XDG_CACHE_HOME: '/tmp', LANG: 'C' };

const MAX_OUTPUT = 2000;

/**
 * `caddy validate` of `config` (a Caddyfile as a string, or a JSON config) with the binary that
 * `open` streams. Null when Caddy accepts it, else Caddy's own words (its last output lines).
 */
export async function validateConfig(toolchain: Pick<Toolchain, 'sandbox' | 'tmpDir'>, open: () => Promise<NodeJS.ReadableStream>, config: string | Record<string, unknown>): Promise<string | null> {
  const dir = await mkdtemp(join(toolchain.tmpDir, 'validate-'));
  try {
    const bin = join(dir, 'caddy');
    await pipeline(await open(), createWriteStream(bin, { mode: 0o755 }));
    await chmod(bin, 0o755);
    const caddyfile = typeof config === 'string';
    const cfg = join(dir, caddyfile ? 'Caddyfile' : 'caddy.json');
    await writeFile(cfg, caddyfile ? config : JSON.stringify(config), { mode: 0o644 });
    const argv = [bin, 'validate', '--config', cfg, ...(caddyfile ? ['--adapter', 'caddyfile'] : [])];
    try {
      await toolchain.sandbox.run({ argv, env: BINARY_ENV, readOnly: [bin, cfg], network: 'none', limits: 'binary' }, { timeoutMs: 60_000, maxBuffer: 1 << 20 });
      return null;
    } catch (err) {
      if (!(err instanceof SandboxRunError)) throw err;
      const said = `${err.stderr}\n${err.stdout}`.trim().split('\n').slice(-6).join('\n');
      const limits = err.limits.length ? ` (${err.limits.map((h) => h.message).join('; ')})` : '';
      return `caddy validate refused the recipe's test config${limits}: ${(said || errorMessage(err)).slice(-MAX_OUTPUT)}`;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
