// Property-based fuzzing (fast-check) of everything that turns untrusted input into a build:
// the spec parser, the compat API's query mapping and the policy. Every generated input must
// either be refused with the parser's own error (SpecError -> 400) or come out as a request whose
// every string is safe to hand to the toolchain as an argument: Go grammar only, printable ASCII,
// nothing starting with "-", no local paths. 12,000+ inputs; the HTTP side is in
// test/integration/security.test.ts.
//   node --import tsx --test test/unit/fuzz-spec.test.ts
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { downloadInput } from '../../src/api/compat.js';
import { BuildPolicy } from '../../src/policy/index.js';
import { PlatformSet, SpecError, type BuildRequest } from '../../src/request/index.js';
import type { ParseOptions } from '../../src/request/parse.js';
import { AppError } from '../../src/util/errors.js';
import { hostileQuery, hostileSpec, oracleMustRefuseSpec, piece, policySpec, validQuery, validSpec, assertSafeRequest as safe, parseOrRefuse as parse } from '../helpers/hostile.js';

const platforms = PlatformSet.fromDistListJson(readFileSync(new URL('./fixtures/dist-list.json', import.meta.url), 'utf8'));
const remote: ParseOptions = { platforms, maxPlugins: 50, allowLocalReplace: false };
const SEED = Number(process.env.FAIRWAY_FUZZ_SEED ?? 20260707);
let total = 0;
const parseOrRefuse = (input: unknown) => parse(input, remote);
const assertSafeRequest = (r: BuildRequest) => safe(r, remote);
/** Asserts that at least `share` of `runs` inputs took the path counted in `n` (so that path is exercised, not just possible). */
const atLeast = (n: number, runs: number, share: number, what: string) =>
  assert.ok(n >= share * runs, `${what}: ${n} of ${runs} inputs (${((100 * n) / runs).toFixed(1)}%), the generator is meant to give at least ${share * 100}%`);

describe('fuzz: spec parser', () => {
  test('arbitrary JSON values: a SpecError or a safe request, never a crash', () => {
    // Valid specs are mixed in (weight 1 of 4) so that the accepting side runs: at least 15% accepted.
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue({ maxDepth: 4 }), fc.anything({ maxDepth: 3, withObjectString: true, withNullPrototype: true }), fc.jsonValue({ maxDepth: 4 }), validSpec), (input) => {
        total++;
        const r = parseOrRefuse(input);
        if (r) {
          accepted++;
          assertSafeRequest(r);
        }
      }),
      { numRuns: 3000, seed: SEED },
    );
    atLeast(accepted, 3000, 0.15, 'accepted');
  });

  test('hostile build specs: a SpecError or a safe request', () => {
    let accepted = 0;
    fc.assert(
      fc.property(hostileSpec, (input) => {
        total++;
        const r = parseOrRefuse(input);
        if (r) {
          accepted++;
          assertSafeRequest(r);
        }
      }),
      { numRuns: 5000, seed: SEED + 1 },
    );
    assert.ok(accepted > 200, `the generator also produces valid specs, so the accepting side is exercised (${accepted})`);
    atLeast(accepted, 5000, 0.05, 'accepted');
  });

  test('hostile JSON text (as a body would arrive): JSON.parse or parser error, never a crash', () => {
    const text = fc.oneof(
      fc.json({ maxDepth: 3 }),
      hostileSpec.map((s) => JSON.stringify(s) ?? ''),
      fc
        .tuple(
          hostileSpec.map((s) => JSON.stringify(s) ?? '{}'),
          fc.nat(40),
          piece,
        )
        .map(([j, at, p]) => j.slice(0, at) + p + j.slice(at)),
      fc.constantFrom('{"__proto__":{"polluted":1},"os":"linux","arch":"amd64"}', '{"constructor":{"prototype":{"x":1}}}', '{"os":"linux","os":"windows","arch":"amd64"}'),
    );
    let notJson = 0;
    let accepted = 0;
    fc.assert(
      fc.property(text, (t) => {
        total++;
        let v: unknown;
        try {
          v = JSON.parse(t);
        } catch (err) {
          // Not JSON: the server answers 400 before the parser; only a SyntaxError is allowed here.
          assert.ok(err instanceof SyntaxError, String(err));
          notJson++;
          return;
        }
        const r = parseOrRefuse(v);
        if (r) {
          accepted++;
          assertSafeRequest(r);
        }
        assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
      }),
      { numRuns: 2000, seed: SEED + 2 },
    );
    // Most texts are JSON (so the parser runs), some of them valid specs; the spliced ones are mostly not JSON.
    atLeast(2000 - notJson, 2000, 0.6, 'parsed as JSON');
    atLeast(notJson, 2000, 0.05, 'not JSON');
    atLeast(accepted, 2000, 0.05, 'accepted');
  });
});

describe('fuzz: compat download query and policy', () => {
  test('downloadInput + parser: a SpecError or a safe request', () => {
    // Valid queries are mixed in (1 of 3) so that the accepting side runs: at least 20% accepted, most with plugins.
    let accepted = 0;
    let withPlugins = 0;
    fc.assert(
      fc.property(fc.oneof(hostileQuery, hostileQuery, validQuery), (q) => {
        total++;
        let input: ReturnType<typeof downloadInput>;
        try {
          input = downloadInput(q);
        } catch (err) {
          assert.ok(err instanceof SpecError, String(err));
          return;
        }
        const r = parseOrRefuse(input);
        if (r) {
          accepted++;
          if (r.plugins.length > 0) withPlugins++;
          assertSafeRequest(r);
        }
      }),
      { numRuns: 2500, seed: SEED + 3 },
    );
    atLeast(accepted, 2500, 0.2, 'accepted');
    atLeast(withPlugins, 2500, 0.15, 'accepted with plugins');
  });

  test('policy on accepted requests: passes or a 403 AppError, never another error', () => {
    const policy = new BuildPolicy({
      allowModules: ['catalog', 'github.com/myorg/*'],
      denyModules: ['github.com/myorg/evil'],
      caddyVersions: '>=v2.8.0 <v3',
      inCatalog: (m) => m === 'github.com/mholt/caddy-l4',
    });
    const scopes = fc.subarray(['read', 'build', 'admin'] as const);
    // Requests aimed at the policy are mixed in (1 of 2) so that what it lets through is exercised:
    // passed with plugins, passed with a replacement (admin only), refused.
    let passedWithPlugins = 0;
    let passedWithReplace = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.oneof(hostileSpec, policySpec), scopes, (input, s) => {
        total++;
        const r = parseOrRefuse(input);
        if (!r) return;
        try {
          policy.checkRequest(r, { scopes: s });
        } catch (err) {
          assert.ok(err instanceof AppError && err.statusCode === 403, String(err));
          refused++;
          return;
        }
        if (r.plugins.length > 0) passedWithPlugins++;
        if (r.plugins.some((p) => p.replace)) passedWithReplace++;
        // The oracle, written from the policy's configuration rather than with its code.
        for (const p of r.plugins) {
          assert.ok(p.module === 'github.com/mholt/caddy-l4' || p.module.startsWith('github.com/myorg/'), p.module);
          assert.notEqual(p.module, 'github.com/myorg/evil', 'a denied module passed');
          if (p.replace) assert.ok(s.includes('admin'), 'replacement without admin');
          if (p.replace) assert.ok(p.replace.startsWith('github.com/myorg/'), `replacement outside the allowlist: ${p.replace}`);
        }
      }),
      { numRuns: 1500, seed: SEED + 4 },
    );
    atLeast(passedWithPlugins, 1500, 0.05, 'passed the policy with plugins');
    atLeast(passedWithReplace, 1500, 0.03, 'passed the policy with a replacement');
    atLeast(refused, 1500, 0.1, 'refused by the policy');
  });

  test("what the HTTP fuzz's independent oracle says must be refused, the parser refuses", () => {
    // The oracle of test/integration/security.test.ts, checked here against the parser on the same
    // generators: at least 40% of the inputs are ruled out by the oracle (those are sent over HTTP).
    let mustRefuse = 0;
    fc.assert(
      fc.property(fc.oneof(hostileSpec, hostileSpec, validSpec), (input) => {
        total++;
        const v = JSON.parse(JSON.stringify(input) ?? 'null') as unknown;
        if (!oracleMustRefuseSpec(v)) return;
        mustRefuse++;
        assert.equal(parseOrRefuse(v), null, `the oracle rules it out, the parser accepted it: ${JSON.stringify(v).slice(0, 300)}`);
      }),
      { numRuns: 2000, seed: SEED + 5 },
    );
    atLeast(mustRefuse, 2000, 0.4, 'ruled out by the oracle');
  });

  test('the safety check itself catches unsafe requests (so the properties above mean something)', () => {
    const ok: BuildRequest = { caddyVersion: 'v2.11.9', os: 'linux', arch: 'amd64', plugins: [{ module: 'github.com/x/y', version: 'v1.0.0' }] };
    assertSafeRequest(ok);
    for (const bad of [
      { ...ok, plugins: [{ module: '-x.com/y' }] },
      { ...ok, plugins: [{ module: 'github.com/x/y;id' }] },
      { ...ok, plugins: [{ module: 'github.com/x/y', replace: '/etc' }] },
      { ...ok, plugins: [{ module: 'github.com/x/y', version: '-v' }] },
      { ...ok, os: 'plan9' },
      { ...ok, caddyVersion: '--output=/x' },
      { ...ok, plugins: [{ module: 'github.com/x/y' }, { module: 'github.com/x/y' }] },
    ] as BuildRequest[]) {
      assert.throws(() => assertSafeRequest(bad), JSON.stringify(bad));
    }
  });

  test('at least 10,000 generated inputs in this file', () => {
    assert.ok(total >= 10_000, `only ${total}`);
  });
});
