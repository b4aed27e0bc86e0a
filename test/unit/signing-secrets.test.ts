// Signed by default and secrets kept from builds, the parts below the server: serve's own key
// (src/provenance loadOrCreateSigner), the sandbox visibility check by real path
// (src/sandbox sandboxVisibleParent) and the list of secret-bearing files (src/config secretFiles).
// The real server processes are in test/integration/provenance.test.ts and security.test.ts.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig, secretFiles } from '../../src/config/index.js';
import { KeyError, createKeyPair, loadOrCreateSigner } from '../../src/provenance/index.js';
import { sandboxVisibleParent } from '../../src/sandbox/index.js';

const tmp = () => mkdtemp(join(tmpdir(), 'fairway-signing-'));

describe("serve's own key", () => {
  test('made on first use (mode 0600), the same key afterwards; two processes starting together agree', async () => {
    const dir = await tmp();
    const path = join(dir, 'data', 'signing.key');
    const first = await loadOrCreateSigner(path);
    assert.equal(first.created, true);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.match(await readFile(path, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    const again = await loadOrCreateSigner(path);
    assert.equal(again.created, false);
    assert.equal(again.signer.fingerprint, first.signer.fingerprint);
    const racing = join(dir, 'race', 'signing.key');
    const all = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateSigner(racing)));
    assert.equal(all.filter((r) => r.created).length, 1, 'one of them made it');
    assert.equal(new Set(all.map((r) => r.signer.fingerprint)).size, 1, 'all use that one');
  });

  test('refused: a symlink where the key should be (not followed), or a file that is not a key', async () => {
    const dir = await tmp();
    const target = join(dir, 'elsewhere.key');
    await writeFile(target, createKeyPair().privatePem, { mode: 0o600 });
    const link = join(dir, 'signing.key');
    await symlink(target, link);
    await assert.rejects(loadOrCreateSigner(link), (e: Error) => e instanceof KeyError && /is not a regular file/.test(e.message));
    const junk = join(dir, 'junk.key');
    await writeFile(junk, 'not a key', { mode: 0o600 });
    await assert.rejects(loadOrCreateSigner(junk), /not a PEM private key/);
  });
});

describe('sandboxVisibleParent compares real paths', () => {
  test('a secret under a bound dir, a symlink into one, a bound dir that is a symlink to the secret’s dir; not: elsewhere', async () => {
    const dir = await tmp();
    const cache = join(dir, 'cache');
    const secrets = join(dir, 'secrets');
    await mkdir(join(cache, 'mod'), { recursive: true });
    await mkdir(secrets);
    const inCache = join(cache, 'mod', 'tokens.json');
    await writeFile(inCache, '[]');
    assert.equal(sandboxVisibleParent(inCache, [cache]), cache, 'as written');
    const viaLink = join(secrets, 'tokens.json');
    await symlink(inCache, viaLink);
    assert.equal(sandboxVisibleParent(viaLink, [cache]), cache, 'a symlink into the bound dir');
    const own = join(secrets, 'fairway.key');
    await writeFile(own, 'k');
    assert.equal(sandboxVisibleParent(own, [cache]), null, 'a file of its own elsewhere');
    const linkedCache = join(dir, 'linked-cache');
    await symlink(secrets, linkedCache);
    assert.equal(sandboxVisibleParent(own, [linkedCache]), linkedCache, 'the bound dir is a symlink to the secret’s dir');
    assert.equal(sandboxVisibleParent(join(secrets, 'not-yet', 'signing.key'), [linkedCache]), linkedCache, 'a file not made yet, by its real parent');
    assert.equal(sandboxVisibleParent('/usr/share/secret.key'), '/usr', 'the system dirs every sandbox sees');
  });
});

describe('secretFiles: every secret-bearing file the configuration names', () => {
  test('the signing key, the config file, the auth file; AWS credential files for an S3 store', async () => {
    const dir = await tmp();
    const configFile = join(dir, 'fairway.json');
    const authFile = join(dir, 'tokens.json');
    const creds = join(dir, 'aws-credentials');
    const webToken = join(dir, 'web-identity-token');
    for (const f of [authFile, creds, webToken]) await writeFile(f, 'x');
    await writeFile(configFile, JSON.stringify({ authFile, signingKey: join(dir, 'missing.key'), indexSigningKey: join(dir, 'index.key') }));
    const env = { HOME: dir, AWS_SHARED_CREDENTIALS_FILE: creds, AWS_WEB_IDENTITY_TOKEN_FILE: webToken };
    const fsConfig = loadConfig({ file: configFile, env });
    assert.deepEqual(
      secretFiles(fsConfig, env).map((s) => [s.setting, s.path]),
      [
        ['signingKey', join(dir, 'missing.key')],
        ['indexSigningKey', join(dir, 'index.key')],
        ['the config file', configFile],
        ['authFile', authFile],
      ],
    );
    const s3 = loadConfig({ file: configFile, env, flags: { store: 's3://bucket/prefix' } });
    assert.deepEqual(
      secretFiles(s3, env)
        .map((s) => s.setting)
        .slice(4),
      ['AWS_SHARED_CREDENTIALS_FILE', 'AWS_WEB_IDENTITY_TOKEN_FILE'],
    );
  });
});
