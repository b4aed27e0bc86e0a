/**
 * Secrets a build could read are refused at start (docs/SECURITY.md "Secrets"), against real
 * `fairway serve` processes: a file that holds a secret (the auth file, the config file, the
 * signing key) and is a symlink into a directory every build sandbox binds (the Go cache dir)
 * stops the server before it listens, with an error naming the file, the directory and the fix;
 * and `serve` without signingKey refuses to make its own key where builds could read it (a cache
 * dir that is the data dir). No build runs.
 *   npm run build && node --import tsx --test test/integration/secrets.test.ts
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { link, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { sha256Hash } from '../../src/auth/index.js';
import { createKeyPair } from '../../src/provenance/index.js';
import { GO_CACHE, startFairway, tempDir } from '../helpers/fairway.js';

describe('secret-bearing files a sandbox could see: refused at start, compared by real path', { timeout: 5 * 60_000 }, () => {
  let dir: string;
  /** Inside the Go cache dir, which every build sandbox binds read-write (GOPATH). */
  let inCache: string;

  before(async () => {
    dir = await tempDir('fairway-secrets-');
    inCache = join(GO_CACHE, 'gopath', 'fairway-test', `secrets-${randomBytes(6).toString('hex')}`);
    await mkdir(inCache, { recursive: true });
  });
  after(async () => {
    if (inCache) await rm(inCache, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('an auth file, a config file, a signing key: each a symlink into the Go cache dir, each refused with the fix', async () => {
    const tokens = join(inCache, 'tokens.json');
    await writeFile(tokens, JSON.stringify([{ name: 'ops', hash: sha256Hash('x'.repeat(40)), scopes: ['admin'] }]), { mode: 0o600 });
    const authLink = join(dir, 'tokens.json');
    await symlink(tokens, authLink);
    await assert.rejects(startFairway({ dataDir: join(dir, 'd1'), args: ['--auth-file', authLink] }), (err: Error) => {
      assert.match(err.message, /exited with 1 before listening/);
      assert.ok(err.message.includes(`authFile ${authLink} (real path ${tokens}) is under ${GO_CACHE}`), err.message);
      assert.match(err.message, /which every build sandbox can read.*move it out of .* and point authFile at the new path/);
      return true;
    });

    const config = join(inCache, 'fairway.json');
    await writeFile(config, JSON.stringify({ logLevel: 'info' }), { mode: 0o600 });
    const configLink = join(dir, 'fairway.json');
    await symlink(config, configLink);
    await assert.rejects(startFairway({ dataDir: join(dir, 'd2'), args: ['--config', configLink] }), (err: Error) => {
      assert.ok(err.message.includes(`the config file ${configLink} (real path ${config}) is under ${GO_CACHE}`), err.message);
      assert.match(err.message, /start Fairway with --config \(or FAIRWAY_CONFIG\) naming the new path/);
      return true;
    });

    const key = join(inCache, 'fairway.key');
    await writeFile(key, createKeyPair().privatePem, { mode: 0o600 });
    const keyLink = join(dir, 'fairway.key');
    await symlink(key, keyLink);
    await assert.rejects(startFairway({ dataDir: join(dir, 'd3'), env: { FAIRWAY_SIGNING_KEY: keyLink } }), (err: Error) => {
      assert.ok(err.message.includes(`signingKey ${keyLink} (real path ${key}) is under ${GO_CACHE}`), err.message);
      return true;
    });
  });

  test('a secret with a second hard link (which has no path to compare) starts, with a warning that says so', async () => {
    const tokens = join(dir, 'linked-tokens.json');
    await writeFile(tokens, JSON.stringify([{ name: 'ops', hash: sha256Hash('y'.repeat(40)), scopes: ['admin'] }]), { mode: 0o600 });
    await link(tokens, join(dir, 'second-link.json'));
    const fw = await startFairway({ dataDir: join(dir, 'd4'), args: ['--auth-file', tokens] });
    try {
      assert.match(fw.output(), new RegExp(`authFile ${tokens.replace(/[.]/g, '\\.')} has 2 hard links: a link inside a directory builds see \\(${GO_CACHE}`));
    } finally {
      await fw.stop();
    }
  });

  test("serve without signingKey does not make its key where builds could read it (a cache dir that is the data dir's parent)", async () => {
    const data = join(inCache, 'data');
    await assert.rejects(startFairway({ dataDir: data }), (err: Error) => {
      assert.ok(err.message.includes(`serve's own signing key (no signingKey is set) ${join(data, 'signing.key')} is under ${GO_CACHE}`), err.message);
      assert.match(
        err.message,
        /keep the data dir .* out of every directory builds see: set --data-dir elsewhere, or --cache-dir to a directory that does not hold the data dir .* or set signingKey to a key kept elsewhere/,
      );
      return true;
    });
  });
});
