// Unit tests of the security parts: API tokens (hashing, loading, constant-time verification,
// scopes), the build policy (module patterns, Caddy version ranges, admin-only replacements),
// admission (free disk, builds per client) and the security settings in the config schema.
//   node --import tsx --test test/unit/auth-policy.test.ts
import { describe, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto, { createHash } from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { performance } from 'node:perf_hooks';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  AuthConfigError,
  TokenAuthenticator,
  allows,
  authenticatorFromConfig,
  defaultAnonymousScopes,
  expandScopes,
  generateToken,
  isLoopbackHost,
  loadTokenFile,
  parseTokenFile,
  parseTokensEnv,
  sha256Hash,
  tokensEnvEntry,
} from '../../src/auth/index.js';
import { createToken, hashSecret } from '../../src/cli/token.js';
import { FileCatalog } from '../../src/catalog/index.js';
import { contentDisposition, safeContentDisposition } from '../../src/api/security.js';
import { loadConfig } from '../../src/config/index.js';
import { BuildAdmission, BuildPolicy, VersionRange, compareSemver, goEnvError, matchModulePattern, modulePatternError, parseSemver } from '../../src/policy/index.js';
import type { BuildRequest, ResolvedSpec } from '../../src/request/index.js';
import { AppError } from '../../src/util/errors.js';

const hex = (t: string) => createHash('sha256').update(t).digest('hex');

describe('tokens', () => {
  test('generated tokens are 256-bit base64url with a prefix, and unique', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const t = generateToken();
      assert.match(t, /^fw_[A-Za-z0-9_-]{43}$/);
      seen.add(t);
    }
    assert.equal(seen.size, 200);
  });

  test('sha256 hashes and the FAIRWAY_TOKENS form round-trip', () => {
    const t = generateToken();
    assert.equal(sha256Hash(t), `sha256:${hex(t)}`);
    const env = tokensEnvEntry({ name: 'ci', hash: sha256Hash(t), scopes: ['build', 'read'] });
    assert.equal(env, `ci:build+read:${hex(t)}`);
    assert.deepEqual(parseTokensEnv(`${env}, ops:admin:sha256:${hex('x'.repeat(20))}`), [
      { name: 'ci', hash: `sha256:${hex(t)}`, scopes: ['build', 'read'] },
      { name: 'ops', hash: `sha256:${hex('x'.repeat(20))}`, scopes: ['admin'] },
    ]);
  });

  test('FAIRWAY_TOKENS and auth files refuse what they cannot use, naming the entry', () => {
    for (const [bad, re] of [
      ['ci:build', /expected name:scope1\+scope2:sha256hex/],
      [`ci:root:${hex('a')}`, /scopes/],
      [`ci::${hex('a')}`, /at least one scope/],
      ['ci:read:abc', /hash/],
      [`c i:read:${hex('a')}`, /name/],
      [`ci:read:${hex('a').toUpperCase()}`, /hash/],
    ] as const) {
      assert.throws(
        () => parseTokensEnv(bad),
        (e: Error) => e instanceof AuthConfigError && re.test(e.message),
        bad,
      );
    }
    assert.throws(() => parseTokenFile('{nope'), /not valid JSON/);
    assert.throws(() => parseTokenFile('[{"name":"a","hash":"md5:00","scopes":["read"]}]'), /0\.hash/);
    assert.throws(() => parseTokenFile(`[{"name":"a","hash":"sha256:${hex('a')}","scopes":["read"],"extra":1}]`), /unrecognized|Unrecognized/);
    assert.deepEqual(parseTokenFile(JSON.stringify({ tokens: [{ name: 'a', hash: sha256Hash('b'.repeat(20)), scopes: ['read'] }] })).length, 1);
  });

  test('token create: prints a secret whose hash is the configured line', async () => {
    const c = await createToken('deploy-bot', 'build,read');
    assert.deepEqual(c.entry.scopes, ['build', 'read']);
    assert.equal(c.entry.hash, sha256Hash(c.token));
    assert.equal(c.env, `deploy-bot:build+read:${hex(c.token)}`);
    await assert.rejects(createToken('x y', 'read'), /--name/);
    await assert.rejects(createToken('x', 'root'), /unknown scope "root"/);
    await assert.rejects(createToken('x', ''), /at least one/);
  });

  test("scopes: admin implies build implies read (and admin the fleet proxy's agent scope)", () => {
    assert.deepEqual([...expandScopes(['admin'])].sort(), ['admin', 'agent', 'build', 'read']);
    assert.deepEqual([...expandScopes(['agent'])], ['agent']);
    assert.deepEqual([...expandScopes(['build'])].sort(), ['build', 'read']);
    assert.deepEqual([...expandScopes(['read'])], ['read']);
    const p = { name: 'x', scopes: expandScopes(['build']) };
    assert.ok(allows(p, 'read') && allows(p, 'build') && allows(p, 'public') && !allows(p, 'admin'));
  });

  test('authenticate: the right token, its scopes; wrong, malformed and missing credentials', async () => {
    const [a, b] = [generateToken(), generateToken()];
    const auth = new TokenAuthenticator({
      tokens: [
        { name: 'reader', hash: sha256Hash(a), scopes: ['read'] },
        { name: 'admin', hash: sha256Hash(b), scopes: ['admin'] },
      ],
      anonymousScopes: [],
    });
    const ok = await auth.authenticate(`Bearer ${b}`);
    assert.ok(ok.ok && ok.principal.name === 'admin' && ok.principal.scopes.has('build'));
    const lower = await auth.authenticate(`bearer ${a}`);
    assert.ok(lower.ok && lower.principal.name === 'reader');
    const anon = await auth.authenticate(undefined);
    assert.ok(anon.ok && anon.principal.name === null && anon.principal.scopes.size === 0);
    for (const h of [`Bearer ${a}x`, `Bearer ${a.slice(0, -1)}`, `Bearer ${'A'.repeat(43)}`]) {
      const r = await auth.authenticate(h);
      assert.ok(!r.ok && r.reason === 'invalid', h);
    }
    for (const h of [`Basic ${a}`, a, 'Bearer', 'Bearer short', `Bearer ${a} extra`, `Bearer ${a}\u0000`, `Bearer ${'a'.repeat(600)}`, `Bearer ${a};x`]) {
      const r = await auth.authenticate(h);
      assert.ok(!r.ok && r.reason === 'malformed', JSON.stringify(h));
    }
  });

  test('authenticate never throws and accepts nothing it was not given (property)', async () => {
    const t = generateToken();
    const auth = new TokenAuthenticator({ tokens: [{ name: 'only', hash: sha256Hash(t), scopes: ['build'] }], anonymousScopes: ['read'] });
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 600 }),
          fc.string({ unit: 'binary', maxLength: 80 }).map((s) => `Bearer ${s}`),
          fc.base64String({ minLength: 16, maxLength: 80 }).map((s) => `Bearer ${s}`),
        ),
        async (h) => {
          const r = await auth.authenticate(h);
          if (r.ok) assert.ok(r.principal.name === null ? h === '' : h.replace(/^bearer +/i, '').trim() === t);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('scrypt hashes are refused at start, saying how to replace them', async () => {
    const scrypt = `scrypt:16384:8:1:${'A'.repeat(22)}:${'B'.repeat(43)}`;
    const says = (e: unknown) =>
      e instanceof AuthConfigError &&
      /token "human": scrypt hashes are no longer accepted/.test(e.message) &&
      /fairway token create --name human --scopes read/.test(e.message) &&
      /fairway token hash --name human/.test(e.message);
    assert.throws(() => new TokenAuthenticator({ tokens: [{ name: 'human', hash: scrypt, scopes: ['read'] }], anonymousScopes: [] }), says);
    assert.throws(
      () => parseTokenFile(JSON.stringify([{ name: 'human', hash: scrypt, scopes: ['read'] }]), 'auth file t.json'),
      (e: unknown) => says(e) && /^auth file t\.json: 0\.hash: /.test((e as Error).message),
    );
    assert.throws(
      () => parseTokensEnv(`human:read:${scrypt}`),
      (e: unknown) => says(e) && /^FAIRWAY_TOKENS entry 1 \("human"\): hash: /.test((e as Error).message),
    );
    const dir = await mkdtemp(join(tmpdir(), 'fairway-auth-'));
    await writeFile(join(dir, 'tokens.json'), JSON.stringify([{ name: 'human', hash: scrypt, scopes: ['read'] }]));
    assert.throws(() => authenticatorFromConfig({ host: '127.0.0.1', authFile: join(dir, 'tokens.json') }), says);
  });

  test('1000 wrong tokens cost one sha256 each: scrypt is never called, and all of them take less than one scrypt', async () => {
    const calls = { scrypt: 0 };
    const original = crypto.scrypt;
    // Counted through the builtin module, so a named `import { scrypt } from 'node:crypto'` would be seen too.
    const s1 = mock.method(crypto, 'scrypt', function (this: unknown, ...a: unknown[]) {
      calls.scrypt++;
      return (original as (...x: unknown[]) => unknown).apply(this, a);
    });
    const s2 = mock.method(crypto, 'scryptSync', function (this: unknown, ...a: unknown[]) {
      calls.scrypt++;
      return (crypto.scryptSync as unknown as { mock: { original: (...x: unknown[]) => unknown } }).mock.original.apply(this, a);
    });
    // And the sha256s: "one each" is counted, not assumed (createHash through the builtin module too).
    const originalCreateHash = crypto.createHash;
    const sha256s = { n: 0 };
    const s3 = mock.method(crypto, 'createHash', function (this: unknown, ...a: unknown[]) {
      if (String(a[0]).toLowerCase() === 'sha256') sha256s.n++;
      return (originalCreateHash as (...x: unknown[]) => unknown).apply(this, a);
    });
    syncBuiltinESMExports();
    try {
      const known = Array.from({ length: 20 }, () => generateToken());
      const auth = new TokenAuthenticator({ tokens: known.map((t, i) => ({ name: `t${i}`, hash: sha256Hash(t), scopes: ['read'] })), anonymousScopes: ['read'] });
      const bad = Array.from({ length: 1000 }, () => `Bearer ${generateToken()}`);
      const t0 = performance.now();
      let refused = 0;
      sha256s.n = 0;
      for (const h of bad) if (!(await auth.authenticate(h)).ok) refused++;
      const elapsed = performance.now() - t0;
      assert.equal(refused, 1000);
      assert.equal(sha256s.n, 1000, 'exactly one sha256 per wrong token');
      assert.equal(calls.scrypt, 0, 'no scrypt on the request path');
      const good = await auth.authenticate(`Bearer ${known[7]}`);
      assert.ok(good.ok && good.principal.name === 't7');
      // The baseline, measured here: one scrypt with the parameters `token create --hash scrypt` used.
      const b0 = performance.now();
      await new Promise((r, j) => original('baseline', 'salt', 32, { N: 16384, r: 8, p: 1 }, (e, k) => (e ? j(e) : r(k))));
      const oneScrypt = performance.now() - b0;
      assert.ok(elapsed < oneScrypt, `1000 wrong tokens took ${elapsed.toFixed(1)} ms, one scrypt ${oneScrypt.toFixed(1)} ms`);
    } finally {
      s1.mock.restore();
      s2.mock.restore();
      s3.mock.restore();
      syncBuiltinESMExports();
    }
  });

  test('token hash: an existing secret gets the sha256 line the server accepts', async () => {
    const secret = 'correct.horse.battery.staple';
    const h = hashSecret(`${secret}\n`, 'human', 'read');
    assert.equal(h.hash, `sha256:${hex(secret)}`);
    assert.deepEqual(h.entry, { name: 'human', hash: `sha256:${hex(secret)}`, scopes: ['read'] });
    assert.equal(h.env, `human:read:${hex(secret)}`);
    assert.deepEqual(hashSecret(secret), { hash: `sha256:${hex(secret)}` });
    const r = await new TokenAuthenticator({ tokens: parseTokensEnv(h.env!), anonymousScopes: [] }).authenticate(`Bearer ${secret}`);
    assert.ok(r.ok && r.principal.name === 'human');
    assert.throws(() => hashSecret('short'), /cannot be used: a token must be 16 to 512 characters/);
    assert.throws(() => hashSecret('has spaces in the secret'), /cannot be used/);
    assert.throws(() => hashSecret(secret, 'x y'), /--name/);
  });

  test('anonymous admin is impossible; duplicate names and hashes are refused', () => {
    assert.throws(() => new TokenAuthenticator({ tokens: [], anonymousScopes: ['admin'] }), /never/);
    const h = sha256Hash(generateToken());
    assert.throws(
      () =>
        new TokenAuthenticator({
          tokens: [
            { name: 'a', hash: h, scopes: ['read'] },
            { name: 'a', hash: sha256Hash('z'.repeat(30)), scopes: ['read'] },
          ],
          anonymousScopes: [],
        }),
      /twice/,
    );
    assert.throws(
      () =>
        new TokenAuthenticator({
          tokens: [
            { name: 'a', hash: h, scopes: ['read'] },
            { name: 'b', hash: h, scopes: ['read'] },
          ],
          anonymousScopes: [],
        }),
      /same hash/,
    );
  });

  test('default anonymous scopes: read+build only on loopback without tokens', () => {
    assert.deepEqual(defaultAnonymousScopes({ host: '127.0.0.1', tokens: 0 }), ['read', 'build']);
    assert.deepEqual(defaultAnonymousScopes({ host: '::1', tokens: 0 }), ['read', 'build']);
    assert.deepEqual(defaultAnonymousScopes({ host: 'localhost', tokens: 0 }), ['read', 'build']);
    assert.deepEqual(defaultAnonymousScopes({ host: '127.0.0.1', tokens: 1 }), ['read']);
    assert.deepEqual(defaultAnonymousScopes({ host: '0.0.0.0', tokens: 0 }), ['read']);
    assert.deepEqual(defaultAnonymousScopes({ host: '::', tokens: 0 }), ['read']);
    assert.deepEqual(defaultAnonymousScopes({ host: '10.0.0.5', tokens: 0 }), ['read']);
    assert.ok(isLoopbackHost('127.1.2.3') && isLoopbackHost('[::1]') && !isLoopbackHost('127.0.0.1.evil.com'));
  });

  test('authenticatorFromConfig merges the auth file and FAIRWAY_TOKENS', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fairway-auth-'));
    const file = join(dir, 'tokens.json');
    const [a, b] = [generateToken(), generateToken()];
    await writeFile(file, JSON.stringify([{ name: 'file', hash: sha256Hash(a), scopes: ['admin'] }]));
    assert.equal(loadTokenFile(file).length, 1);
    const auth = authenticatorFromConfig({ host: '127.0.0.1', authFile: file, tokens: `env:read:${hex(b)}` });
    assert.equal(auth.size, 2);
    assert.deepEqual([...auth.anonymous.scopes], ['read'], 'tokens configured: anonymous may only read');
    const r = await auth.authenticate(`Bearer ${b}`);
    assert.ok(r.ok && r.principal.name === 'env');
    assert.throws(() => authenticatorFromConfig({ host: '127.0.0.1', authFile: join(dir, 'missing.json') }), /cannot read auth file/);
  });
});

describe('policy', () => {
  const req = (plugins: BuildRequest['plugins'], caddyVersion = 'latest'): BuildRequest => ({ caddyVersion, os: 'linux', arch: 'amd64', plugins });
  const spec = (caddyVersion: string): ResolvedSpec => ({ caddyVersion, os: 'linux', arch: 'amd64', plugins: [], toolchain: { go: 'go1.26.8', xcaddy: 'v0.4.5', flags: 'x' } });
  const code = (fn: () => void): string | null => {
    try {
      fn();
      return null;
    } catch (err) {
      assert.ok(err instanceof AppError, String(err));
      assert.equal(err.statusCode, 403);
      return err.code;
    }
  };

  test('module patterns match like GOPRIVATE: element globs on a path prefix', () => {
    const cases: Array<[string, string, boolean]> = [
      ['github.com/myorg/*', 'github.com/myorg/plugin', true],
      ['github.com/myorg/*', 'github.com/myorg/plugin/v2', true],
      ['github.com/myorg', 'github.com/myorg/plugin', true],
      ['github.com/myorg/*', 'github.com/myorg', false],
      ['github.com/myorg/*', 'github.com/myorgx/plugin', false],
      ['github.com/myorg/*', 'github.com/other/myorg', false],
      ['*.corp.example.com', 'git.corp.example.com/x', true],
      ['*.corp.example.com', 'corp.example.com/x', false],
      ['github.com/caddy-dns/*', 'github.com/caddy-dns/cloudflare', true],
      ['github.com/a?c/x', 'github.com/abc/x', true],
      ['github.com/a?c/x', 'github.com/ac/x', false],
      ['github.com/*/caddy-*', 'github.com/mholt/caddy-l4', true],
      ['github.com/*/caddy-*', 'github.com/mholt/l4', false],
    ];
    for (const [p, m, want] of cases) assert.equal(matchModulePattern(p, m), want, `${p} vs ${m}`);
    for (const bad of ['', 'github.com/[a]', 'a b', 'github.com//x', '/x', 'x/']) assert.ok(modulePatternError(bad), bad);
    assert.equal(modulePatternError('catalog'), null);
  });

  test('pattern matching terminates fast on hostile patterns (property)', () => {
    // The reference: a dynamic-programming glob match, O(pattern x string) by construction. The
    // matcher must agree with it on every input, and take no longer than a few times what the
    // reference takes on the same inputs, measured here in the same run (no absolute time, which
    // a loaded machine would break and a fast one would let pass for an exponential matcher).
    const reference = (p: string, s: string): boolean => {
      let row = [true, ...Array.from({ length: s.length }, () => false)];
      for (const c of p) {
        const next = [c === '*' && row[0]!];
        for (let j = 1; j <= s.length; j++) next[j] = c === '*' ? row[j]! || next[j - 1]! : row[j - 1]! && (c === '?' || c === s[j - 1]);
        row = next;
      }
      return row[s.length]!;
    };
    const inputs = fc.sample(fc.tuple(fc.stringMatching(/^[a-z*?]{0,40}$/), fc.stringMatching(/^[a-z]{0,200}$/)), { numRuns: 2000, seed: 20260713 });
    inputs.push([`${'*'.repeat(40)}b`, 'a'.repeat(5000)], [`${'a*'.repeat(20)}b`, 'a'.repeat(5000)], ['*?'.repeat(20), 'a'.repeat(5000)]);
    fc.assert(
      fc.property(fc.constantFrom(...inputs), ([p, s]) => {
        assert.equal(matchModulePattern(p, s), reference(p, s), `${p} vs ${s.slice(0, 40)}`);
      }),
      { numRuns: 500, seed: 20260714 },
    );
    for (const [p, s] of inputs) assert.equal(matchModulePattern(p, s), reference(p, s), `${p} vs ${s.slice(0, 40)}`);
    const time = (f: (p: string, s: string) => boolean) => {
      const t0 = performance.now();
      for (let k = 0; k < 3; k++) for (const [p, s] of inputs) f(p, s);
      return performance.now() - t0;
    };
    time(matchModulePattern);
    time(reference); // warm both up first
    const matcher = Math.min(time(matchModulePattern), time(matchModulePattern));
    const baseline = Math.min(time(reference), time(reference));
    assert.ok(matcher < 5 * baseline, `the matcher took ${matcher.toFixed(1)} ms, the O(p x s) reference ${baseline.toFixed(1)} ms on the same inputs`);
    assert.equal(matchModulePattern(`${'*'.repeat(40)}b`, 'a'.repeat(5000)), false);
  });

  test('allowlist, denylist and the catalog', () => {
    const p = new BuildPolicy({ allowModules: ['catalog', 'github.com/myorg/*'], denyModules: ['github.com/myorg/evil'], inCatalog: (m) => m === 'github.com/mholt/caddy-l4' });
    assert.equal(
      code(() => p.checkRequest(req([{ module: 'github.com/mholt/caddy-l4' }]))),
      null,
    );
    assert.equal(
      code(() => p.checkRequest(req([{ module: 'github.com/myorg/good' }]))),
      null,
    );
    assert.equal(
      code(() => p.checkRequest(req([{ module: 'github.com/myorg/evil' }]))),
      'policy_denied',
    );
    assert.equal(
      code(() => p.checkRequest(req([{ module: 'github.com/myorg/evil/v2' }]))),
      'policy_denied',
    );
    assert.equal(
      code(() => p.checkRequest(req([{ module: 'github.com/someone/else' }]))),
      'policy_denied',
    );
    assert.match(p.moduleError('github.com/someone/else')!, /allowed: the catalog \(GET \/api\/catalog\), github\.com\/myorg\/\*/);
    assert.equal(new BuildPolicy().moduleError('github.com/anything/at-all'), null);
    assert.throws(() => new BuildPolicy({ allowModules: ['catalog'] }), /needs a catalog/);
  });

  test('upper-case letters defeat neither deny nor allow patterns, exact or with *, nor the catalog', async () => {
    for (const [p, m] of [
      ['github.com/myorg/evil', 'github.com/MyOrg/Evil'],
      ['github.com/myorg/evil', 'GITHUB.COM/myorg/evil/v2'],
      ['github.com/myorg/*', 'github.com/MYORG/plugin'],
      ['github.com/*/caddy-*', 'github.com/Mholt/Caddy-L4'],
      ['GitHub.com/MyOrg/Evil', 'github.com/myorg/evil'],
    ]) {
      assert.equal(matchModulePattern(p!, m!), true, `${p} vs ${m}`);
    }
    assert.equal(matchModulePattern('github.com/myorg/*', 'github.com/MyOrgX/plugin'), false);
    const deny = new BuildPolicy({ denyModules: ['github.com/myorg/evil', 'github.com/bad/*'] });
    for (const m of ['github.com/MyOrg/Evil', 'github.com/myorg/EVIL/v2', 'github.com/Bad/anything', 'GitHub.com/BAD/x']) {
      assert.equal(
        code(() => deny.checkRequest(req([{ module: m }]))),
        'policy_denied',
        m,
      );
    }
    const replaced = req([{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/MyOrg/Evil@v1.0.0' }]);
    assert.equal(
      code(() => deny.checkRequest(replaced, { scopes: ['admin'] })),
      'policy_denied',
      'a replacement target too',
    );
    const allow = new BuildPolicy({ allowModules: ['github.com/myorg/*'] });
    assert.equal(
      code(() => allow.checkRequest(req([{ module: 'github.com/MyOrg/good' }]))),
      null,
    );
    assert.equal(
      code(() => allow.checkRequest(req([{ module: 'github.com/Other/good' }]))),
      'policy_denied',
    );
    // The real catalog (the shipped list): its lookup ignores case too, for allow and deny alike.
    const catalog = await FileCatalog.open({ dir: await mkdtemp(join(tmpdir(), 'fairway-catalog-')), refreshMs: 0 });
    const fromCatalog = new BuildPolicy({ allowModules: ['catalog'], inCatalog: (m) => catalog.lists(m) });
    for (const m of ['github.com/mholt/caddy-l4', 'github.com/Mholt/Caddy-L4', 'github.com/weidideng/caddy-cloudflare-ip']) {
      assert.equal(
        code(() => fromCatalog.checkRequest(req([{ module: m }]))),
        null,
        m,
      );
    }
    assert.equal(
      code(() => fromCatalog.checkRequest(req([{ module: 'github.com/Someone/Else' }]))),
      'policy_denied',
    );
    const denyCatalog = new BuildPolicy({ denyModules: ['catalog'], inCatalog: (m) => catalog.lists(m) });
    assert.equal(
      code(() => denyCatalog.checkRequest(req([{ module: 'GITHUB.COM/MHOLT/CADDY-L4' }]))),
      'policy_denied',
    );
    await catalog.close();
  });

  test('replacements need the admin scope, and their target must be allowed too', () => {
    const p = new BuildPolicy({ denyModules: ['github.com/evil'] });
    const r = req([{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/fork/caddy-l4@v1.0.0' }]);
    assert.equal(
      code(() => p.checkRequest(r)),
      'admin_required',
      'no scopes',
    );
    assert.equal(
      code(() => p.checkRequest(r, { scopes: ['build', 'read'] })),
      'admin_required',
    );
    assert.equal(
      code(() => p.checkRequest(r, { scopes: ['admin'] })),
      null,
    );
    assert.equal(
      code(() => p.checkRequest(r, { trusted: true })),
      null,
    );
    const evil = req([{ module: 'github.com/mholt/caddy-l4', replace: 'github.com/evil/x@v1.0.0' }]);
    assert.equal(
      code(() => p.checkRequest(evil, { scopes: ['admin'] })),
      'policy_denied',
    );
  });

  test('semver precedence', () => {
    const order = [
      'v1.9.9',
      'v2.0.0-alpha',
      'v2.0.0-alpha.1',
      'v2.0.0-alpha.beta',
      'v2.0.0-beta.2',
      'v2.0.0-beta.11',
      'v2.0.0-rc.1',
      'v2.0.0',
      'v2.10.0',
      'v2.11.10-0.20260101000000-abcdefabcdef',
      'v2.11.10',
    ];
    for (let i = 0; i + 1 < order.length; i++) {
      assert.equal(compareSemver(parseSemver(order[i]!)!, parseSemver(order[i + 1]!)!), -1, `${order[i]} < ${order[i + 1]}`);
      assert.equal(compareSemver(parseSemver(order[i + 1]!)!, parseSemver(order[i]!)!), 1);
    }
    assert.equal(compareSemver(parseSemver('v2.1.0+meta')!, parseSemver('2.1')!), 0);
    assert.equal(parseSemver('vx'), null);
  });

  test('Caddy version ranges: before resolution for exact versions, after it for queries', () => {
    const r = VersionRange.parse('>=v2.8.0 <v3 || =v2.6.4');
    for (const v of ['v2.8.0', 'v2.11.9', 'v2.6.4']) assert.ok(r.contains(v), v);
    for (const v of ['v2.7.6', 'v3.0.0', 'v2.8.0-beta.1', 'v2.6.3', 'nonsense']) assert.ok(!r.contains(v), v);
    assert.ok(VersionRange.parse('>=2.9, <2.11').contains('v2.10.2'));
    assert.throws(() => VersionRange.parse('>=banana'), /not a comparison/);
    assert.throws(() => VersionRange.parse('>=v2 ||'), /empty/);
    const p = new BuildPolicy({ caddyVersions: '>=v2.10.0 <v3' });
    assert.equal(
      code(() => p.checkRequest(req([], 'v2.9.1'))),
      'policy_denied',
      'exact: refused before resolving',
    );
    assert.equal(
      code(() => p.checkRequest(req([], 'latest'))),
      null,
      'a query: decided after resolution',
    );
    assert.equal(
      code(() => p.checkResolved(spec('v2.9.1'))),
      'policy_denied',
    );
    assert.equal(
      code(() => p.checkResolved(spec('v2.11.9'))),
      null,
    );
  });

  test('the checksum database stays on: GOSUMDB=off and catch-all GONOSUMDB/GOPRIVATE are refused', () => {
    assert.match(goEnvError('gosumdb', 'off')!, /refused/);
    assert.match(goEnvError('gosumdb', ' OFF ')!, /refused/);
    assert.equal(goEnvError('gosumdb', 'sum.golang.org'), null);
    for (const bad of ['*', '*.*', '*.com', 'com', '*/x', 'github.com/x,*']) assert.ok(goEnvError('gonosumdb', bad), bad);
    for (const ok of ['corp.example.com', '*.corp.example.com', 'github.com/myorg', 'github.com/myorg/*,git.corp.io']) assert.equal(goEnvError('goprivate', ok), null, ok);
  });
});

describe('admission', () => {
  const make = (o: { free?: number; active?: Set<string>; max?: number; min?: number }) =>
    new BuildAdmission({
      maxActivePerClient: o.max ?? 2,
      minFreeBytes: o.min ?? 1000,
      disks: [{ what: 'the build cache volume', free: async () => o.free ?? 10_000 }],
      isActive: async (k) => o.active?.has(k) ?? false,
    });
  const status = async (p: Promise<void>) =>
    p.then(
      () => 0,
      (e: AppError) => e.statusCode,
    );

  test('a full disk refuses new builds with 507 and a clear message; joining is free', async () => {
    const active = new Set(['k1']);
    const a = make({ free: 10, active });
    const err = await a.admit('k2', 'ip:1').catch((e: AppError) => e);
    assert.ok(err instanceof AppError);
    assert.equal(err.statusCode, 507);
    assert.equal(err.code, 'insufficient_storage');
    assert.match(err.message, /10 B free on the build cache volume, at least 1\.0 KB needed \(minFreeDisk\)\. Nothing was queued/);
    assert.equal(await status(a.admit('k1', 'ip:1')), 0, 'joining an active build');
    assert.equal(await status(make({ free: 10, min: 0 }).admit('k3', 'ip:1')), 0, 'check off');
  });

  test('per-client active builds: 429 at the limit, others unaffected, released on finish', async () => {
    const active = new Set<string>();
    const a = make({ active, max: 2 });
    assert.equal(await status(a.admit('k1', 'token:a')), 0);
    active.add('k1');
    assert.equal(await status(a.admit('k2', 'token:a')), 0);
    active.add('k2');
    assert.equal(await status(a.admit('k3', 'token:a')), 429);
    assert.equal(await status(a.admit('k3', 'token:b')), 0, 'another client');
    assert.equal(await status(a.admit('k3', undefined)), 0, 'internal callers are not limited');
    await a.release('k1');
    active.delete('k1');
    assert.equal(await a.active('token:a'), 1);
    assert.equal(await status(a.admit('k4', 'token:a')), 0);
    active.add('k4');
    // A build that ended unnoticed is forgotten when the client hits the limit.
    active.delete('k2');
    assert.equal(await status(a.admit('k5', 'token:a')), 0);
  });

  test('when the per-client counts cannot be read (Redis down), the request passes and the error is reported', async () => {
    const errors: string[] = [];
    const broken = {
      keys: async () => {
        throw new Error("Stream isn't writeable");
      },
      add: async () => undefined,
      remove: async () => undefined,
      release: async () => {
        throw new Error('down');
      },
    };
    const a = new BuildAdmission({ maxActivePerClient: 1, minFreeBytes: 0, disks: [], isActive: async () => false, activeBuilds: broken, onCountError: (e) => errors.push(e.message) });
    assert.equal(await status(a.admit('k1', 'token:a')), 0);
    await a.release('k1');
    assert.deepEqual(errors, ["Stream isn't writeable", 'down']);
  });
});

describe('Content-Disposition', () => {
  test('only safe file names; user input can neither inject headers nor name a path', () => {
    assert.equal(contentDisposition('caddy_linux_amd64'), 'attachment; filename="caddy_linux_amd64"');
    assert.equal(contentDisposition('caddy_windows_amd64.exe'), 'attachment; filename="caddy_windows_amd64.exe"');
    for (const evil of ['a"\r\nSet-Cookie: x=1', '../../etc/passwd', '..', '', '\u0000', 'é'.repeat(10), 'x'.repeat(500), '.bashrc']) {
      const v = contentDisposition(evil);
      assert.match(v, /^attachment; filename="[A-Za-z0-9][A-Za-z0-9._-]{0,200}"$/, JSON.stringify(evil));
      assert.doesNotMatch(v, /[\r\n\u0000/\\]|\.\./);
    }
    assert.equal(safeContentDisposition('attachment; filename="caddy_linux_arm64_custom"'), 'attachment; filename="caddy_linux_arm64_custom"');
    assert.equal(safeContentDisposition('attachment; filename="../x"'), 'attachment; filename="x"');
    assert.equal(safeContentDisposition('inline; evil'), 'attachment; filename="download"');
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (s) => /^attachment; filename="[A-Za-z0-9][A-Za-z0-9._-]{0,200}"$/.test(safeContentDisposition(s))),
      { numRuns: 2000 },
    );
  });
});

describe('config: security settings', () => {
  const load = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) => loadConfig({ flags, env });

  test('defaults', () => {
    const c = load({});
    assert.equal(c.anonymousScopes, undefined, 'decided by host and tokens');
    assert.equal(c.rateLimit, 1200);
    assert.equal(c.rateLimitWindow, 60_000);
    assert.equal(c.buildRateLimit, 120);
    assert.equal(c.maxActiveBuilds, 10);
    assert.equal(c.minFreeDisk, 2_000_000_000);
    assert.deepEqual(c.denyModules, []);
  });

  test('values from flags and env, lists from commas', () => {
    const c = load(
      { anonymousScopes: 'none', allowModules: 'catalog, github.com/myorg/*', minFreeDisk: '0', caddyVersions: '>=v2.8.0 <v3' },
      { FAIRWAY_TOKENS: `a:read:${hex('x')}`, FAIRWAY_MAX_ACTIVE_BUILDS: '3', FAIRWAY_TRUST_PROXY: 'true' },
    );
    assert.deepEqual(c.anonymousScopes, []);
    assert.deepEqual(c.allowModules, ['catalog', 'github.com/myorg/*']);
    assert.equal(c.minFreeDisk, 0);
    assert.equal(c.maxActiveBuilds, 3);
    assert.equal(c.trustProxy, true);
    assert.equal(c.tokens, `a:read:${hex('x')}`);
    assert.deepEqual(load({ anonymousScopes: 'read,build' }).anonymousScopes, ['read', 'build']);
  });

  test('refused: anonymous admin, GOSUMDB=off (flag or env), catch-all GONOSUMDB, bad patterns and ranges', () => {
    assert.throws(() => load({ anonymousScopes: 'read,admin' }), /anonymousScopes: admin is never granted/);
    assert.throws(() => load({}, { GOSUMDB: 'off' }), /gosumdb: GOSUMDB=off is refused/);
    assert.throws(() => load({}, { FAIRWAY_GOSUMDB: 'off' }), /checksum database stays on/);
    assert.throws(() => load({}, { GONOSUMDB: '*' }), /gonosumdb/);
    assert.throws(() => load({}, { GOPRIVATE: '*.com' }), /goprivate/);
    assert.throws(() => load({ allowModules: 'github.com/[x]' }), /allowModules/);
    assert.throws(() => load({ caddyVersions: '>=latest' }), /caddyVersions/);
    assert.throws(() => load({ anonymousScopes: 'root' }), /anonymousScopes/);
    assert.equal(load({}, { GONOSUMDB: 'corp.example.com' }).gonosumdb, 'corp.example.com');
  });
});
