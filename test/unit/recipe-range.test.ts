// Version ranges of recipe plugins (src/request/range.ts, docs/recipes.md "Version ranges"): what
// a recipe's version may be, the range grammar as the OpenAPI pattern publishes it against the
// check the server runs, and which Go versions a range admits (Go's `v` and `+incompatible`, the
// prerelease rule, pseudo-versions never), against an oracle written from the semver rules.
//   node --import tsx --test test/unit/recipe-range.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import semver from 'semver';
import { RecipePluginVersion } from '../../src/api/schemas.js';
import { RANGE_PATTERN, admitted, isPseudoVersion, isVersionRange, newestAdmitted, recipeVersionKind, recipeVersionPattern } from '../../src/request/range.js';
import { VERSION_QUERY_PATTERN, whole } from '../../src/request/index.js';

const SEED = Number(process.env.FAIRWAY_FUZZ_SEED ?? 29);

describe('what a recipe plugin version is', () => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'latest'],
    ['', 'latest'],
    ['latest', 'latest'],
    ['v1.2.3', 'exact'],
    ['v2.0.0+incompatible', 'exact'],
    ['v0.0.0-20240101000000-abcdef123456', 'exact'],
    ['^1.2', 'range'],
    ['~0.3.1', 'range'],
    ['>=1.0.0 <2.0.0', 'range'],
    ['1.x', 'range'],
    ['1.2.x', 'range'],
    ['*', 'range'],
    ['v1.2', 'range'],
    ['>=v1.2.0', 'range'],
    ['>=1.2.0-rc.0 <1.3.0', 'range'],
    ['1.2.3 - 1.4', 'range'],
    ['^1 || ^2', 'range'],
    ['^1||^2', 'range'],
    ['=1.2.3', 'range'],
    ['1.2.3', 'range'],
    ['master', 'query'],
    ['feature/x', 'query'],
    ['abc1234', 'query'],
    // Not ranges, but branch names to the build grammar, as before ranges: Go resolves them.
    ['1.2.3-01', 'query'],
    ['99999999999999999999', 'query'],
    ['x.1', 'query'],
    ['1.x.1', 'query'],
    ['v1234567890123456', 'query'],
  ];
  for (const [v, kind] of cases) {
    test(`${JSON.stringify(v)} is ${kind}`, () => assert.deepEqual(recipeVersionKind(v), { kind }));
  }
  const refused = ['>= 1.2', '^1.2  <2', ' ^1.2', '^1.2 ', '^', '>=', '^1.2.3-01', '^x.1', '^1.2.3.4', '~>1.2', '1 - ', '^99999999999999999999', 'a b', '^1.2 || ', '-1', `^1.${'1'.repeat(130)}`];
  for (const v of refused) {
    test(`${JSON.stringify(v)} is refused, saying what a recipe takes`, () => {
      const k = recipeVersionKind(v);
      assert.ok('error' in k, `${v} accepted as ${JSON.stringify(k)}`);
      assert.match(k.error, /a semver range|longer than 128/);
    });
  }
});

/** Strings made of pieces that sit on the range grammar's edges (a fixed seed: a failure names a reproducible value). */
const PIECES = ['^', '~', '>=', '>', '<=', '<', '=', '1', '0', '01', '2', '15', '.', 'x', 'X', '*', '-', ' ', '  ', ' - ', '||', ' || ', 'v', 'rc', '+', 'a', 'latest', '/', '~>'];

/** Comparators put together with separators right and wrong: about half come out as ranges. */
const nearRange = fc
  .array(
    fc.tuple(
      fc.constantFrom('', '^', '~', '>=', '<', '=', '>= ', '~>'),
      fc.constantFrom('1', '0.3', '1.2.3', 'v1.2', '1.x', '*', '1.2.3-rc.1', '1.2.3-rc.01', '1.2.3+incompatible', '01', 'x.1', '1.2.3.4', 'a'),
      fc.constantFrom(' ', ' ', ' ', ' || ', '||', ' - ', '  ', ''),
    ),
    { minLength: 1, maxLength: 4 },
  )
  .map((parts) => parts.map(([op, v, sep], i) => op + v + (i < parts.length - 1 ? sep : '')).join(''));

describe('the recipe version pattern (OpenAPI) matches the check', () => {
  const re = new RegExp(whole(recipeVersionPattern(VERSION_QUERY_PATTERN)));
  const accepts = (v: string) => v.length <= 128 && (v === '' || !('error' in recipeVersionKind(v)));

  // Half from the pieces above, half near-ranges (comparators joined right and wrong): about 14%
  // come out accepted (at least 12% asserted), and pattern and check must agree on every one,
  // accepted or refused.
  test('on 20,000 generated values, of which at least 12% are accepted', () => {
    let accepted = 0;
    fc.assert(
      fc.property(
        fc.oneof(
          fc.array(fc.constantFrom(...PIECES), { minLength: 1, maxLength: 8 }).map((p) => p.join('')),
          nearRange,
        ),
        (v) => {
          const ok = accepts(v);
          if (ok) accepted++;
          assert.equal(re.test(v), ok, `${JSON.stringify(v)}: pattern ${re.test(v)}, check ${ok}`);
          // The published zod schema of the recipe body says the same.
          assert.equal(RecipePluginVersion.safeParse(v).success, ok, `${JSON.stringify(v)}: schema`);
        },
      ),
      { numRuns: 20_000, seed: SEED },
    );
    assert.ok(accepted >= 2_400, `only ${accepted} of 20000 accepted`);
  });

  // Every string the range pattern generates is a range node-semver reads: all 5,000 accepted.
  test('every value the range pattern generates (5,000) is a range node-semver reads', () => {
    let accepted = 0;
    fc.assert(
      // fast-check generates from a regular expression without lookaheads: the length bound is the one lookahead.
      fc.property(fc.stringMatching(new RegExp(whole(RANGE_PATTERN.replace('(?=.{1,128}$)', '')))), (v) => {
        if (v.length > 128) {
          assert.ok(!isVersionRange(v));
          accepted++;
          return;
        }
        assert.notEqual(semver.validRange(v), null, `${JSON.stringify(v)}: node-semver refuses it`);
        assert.ok(isVersionRange(v), v);
        const k = recipeVersionKind(v);
        assert.ok('kind' in k && (k.kind === 'range' || k.kind === 'exact'), `${JSON.stringify(v)}: ${JSON.stringify(k)}`);
        accepted++;
      }),
      { numRuns: 5_000, seed: SEED },
    );
    assert.equal(accepted, 5_000);
  });
});

describe('admitted: which Go versions a range admits, newest first', () => {
  const LIST = [
    'v0.9.0',
    'v1.0.0',
    'v1.1.0',
    'v1.2.0-rc.1',
    'v1.2.4-0.20240101000000-abcdef123456',
    'v1.3.0-pre.0.20240101000000-abcdef123456',
    'v0.0.0-20240101000000-abcdef123456',
    'v2.0.0+incompatible',
    'v2.1.0-beta.1+incompatible',
  ];
  const cases: Array<[string, string[]]> = [
    ['^1.0', ['v1.1.0', 'v1.0.0']],
    ['~1.0.0', ['v1.0.0']],
    ['1.x', ['v1.1.0', 'v1.0.0']],
    ['*', ['v2.0.0+incompatible', 'v1.1.0', 'v1.0.0', 'v0.9.0']],
    ['>=1.2.0-rc.0 <1.3.0', ['v1.2.0-rc.1']],
    ['>=1.2.0-rc.2 <1.3.0', []],
    ['>=1.1.0 <1.3.0', ['v1.1.0']],
    ['^2', ['v2.0.0+incompatible']],
    ['^2.1.0-beta.0', ['v2.1.0-beta.1+incompatible']],
    ['>=2.1.0-alpha', ['v2.1.0-beta.1+incompatible']],
    ['^0.9', ['v0.9.0']],
    ['^3', []],
    ['<1', ['v0.9.0']],
    ['v1.1', ['v1.1.0']],
    ['^1 || ^2', ['v2.0.0+incompatible', 'v1.1.0', 'v1.0.0']],
    ['0.9.0 - 1.0', ['v1.0.0', 'v0.9.0']],
    ['=1.1.0', ['v1.1.0']],
  ];
  for (const [range, want] of cases) {
    test(`${range} → ${want.join(', ') || 'nothing'}`, () => {
      assert.deepEqual(admitted(LIST, range), want);
      assert.equal(newestAdmitted(LIST, range), want[0] ?? null);
    });
  }

  test('pseudo-versions are recognised (and so never admitted)', () => {
    for (const v of ['v0.0.0-20240101000000-abcdef123456', 'v1.2.4-0.20240101000000-abcdef123456', 'v1.3.0-pre.0.20240101000000-abcdef123456', 'v2.0.1-0.20240101000000-abcdef123456+incompatible']) {
      assert.ok(isPseudoVersion(v), v);
    }
    for (const v of ['v1.2.0-rc.1', 'v1.0.0', 'v2.0.0+incompatible', 'v1.0.0-20240101000000', 'v1.2.4-0.2024010100000-abcdef']) assert.ok(!isPseudoVersion(v), v);
    assert.deepEqual(admitted(['v0.0.0-20240101000000-abcdef123456', 'v1.2.4-0.20240101000000-abcdef123456'], '>=0.0.0-0'), []);
  });

  test('not a Go version, or not a range', () => {
    assert.deepEqual(admitted(['1.0.0', 'v1', 'v1.0', 'v01.0.0', 'vx', 'v1.0.0', 'v1.0.0'], '*'), ['v1.0.0']);
    assert.throws(() => admitted(['v1.0.0'], 'master'), /not a version range/);
  });
});

// ---- the property: admitted against an oracle written from the semver rules ---------------------

interface V {
  nums: [number, number, number];
  pre: string[];
}

/** Precedence of semver 2.0.0 §11, written out (not node-semver's). */
function cmp(a: V, b: V): number {
  for (let i = 0; i < 3; i++) if (a.nums[i] !== b.nums[i]) return a.nums[i]! - b.nums[i]!;
  if (!a.pre.length || !b.pre.length) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.max(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i];
    const y = b.pre[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const xn = /^[0-9]+$/.test(x);
    const yn = /^[0-9]+$/.test(y);
    if (xn && yn) return Number(x) - Number(y);
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

const PRES = [[], [], [], [], ['rc', '1'], ['beta'], ['alpha', '0'], ['0'], ['rc', '10']];

const goVersion = fc.record({
  nums: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 1 })),
  pre: fc.constantFrom(...PRES),
  pseudo: fc.boolean(),
});

/**
 * A generated version as Go writes it, of a module without a /vN path: v2 and above are
 * +incompatible; pseudo-versions (about half) are what a range never admits.
 */
function goText(g: { nums: [number, number, number]; pre: string[]; pseudo: boolean }): string {
  const [M, m, p] = g.nums;
  const base = g.pseudo ? `v${M}.${m}.${p + 1}-0.20240101000000-abcdef123456` : `v${M}.${m}.${p}${g.pre.length ? `-${g.pre.join('.')}` : ''}`;
  return base + (M >= 2 ? '+incompatible' : '');
}

/** A range and its meaning: bounds (lo ≤ v < hi) and the tuple whose prereleases it admits. */
const rangeGen = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 1 })).map(([M, m, p]) => {
    // ^M.m.p: up to the next left-most non-zero component.
    const hi: V = M > 0 ? { nums: [M + 1, 0, 0], pre: ['0'] } : m > 0 ? { nums: [0, m + 1, 0], pre: ['0'] } : { nums: [0, 0, p + 1], pre: ['0'] };
    return { text: `^${M}.${m}.${p}`, lo: { nums: [M, m, p], pre: [] } as V, hi, preTuple: null as null | [number, number, number] };
  }),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 1 })).map(([M, m, p]) => ({
    text: `~${M}.${m}.${p}`,
    lo: { nums: [M, m, p], pre: [] } as V,
    hi: { nums: [M, m + 1, 0], pre: ['0'] } as V,
    preTuple: null as null | [number, number, number],
  })),
  fc
    .integer({ min: 0, max: 3 })
    .map((M) => ({ text: `${M}.x`, lo: { nums: [M, 0, 0], pre: [] } as V, hi: { nums: [M + 1, 0, 0], pre: ['0'] } as V, preTuple: null as null | [number, number, number] })),
  fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 1 }), fc.constantFrom(['rc', '0'], ['alpha'], ['0'])).map(([M, m, p, pre]) => ({
    // A prerelease lower bound: prereleases of M.m.p itself admitted, no other prerelease.
    text: `>=${M}.${m}.${p}-${pre.join('.')} <${M + 1}.0.0`,
    lo: { nums: [M, m, p], pre: [...pre] } as V,
    hi: { nums: [M + 1, 0, 0], pre: [] } as V,
    preTuple: [M, m, p] as null | [number, number, number],
  })),
);

describe('admitted against an oracle (fast-check)', () => {
  // 3,000 generated lists of 4 to 16 versions (about half pseudo-versions, v2+ +incompatible,
  // some prereleases) and ranges of four shapes: the oracle's answer, in order, every time; about
  // 28% of the runs admit something (at least 25% asserted), so the comparison is not all empty lists.
  test('3,000 lists × ranges: the same versions, newest first; at least 25% admit something', () => {
    let nonEmpty = 0;
    fc.assert(
      fc.property(fc.array(goVersion, { minLength: 4, maxLength: 16 }), rangeGen, (gs, r) => {
        const list = gs.map(goText);
        const want = [
          ...new Map(
            gs
              .filter((g) => !g.pseudo)
              .filter((g) => {
                const v: V = { nums: g.nums, pre: g.pre };
                if (cmp(v, r.lo) < 0 || cmp(v, r.hi) >= 0) return false;
                // The prerelease rule: only prereleases of the tuple the range names.
                return !g.pre.length || !!r.preTuple?.every((n, i) => n === g.nums[i]);
              })
              .sort((a, b) => cmp({ nums: b.nums, pre: b.pre }, { nums: a.nums, pre: a.pre }))
              .map((g) => [goText(g), goText(g)] as const),
          ).values(),
        ];
        const got = admitted(list, r.text);
        if (got.length > 0) nonEmpty++;
        assert.deepEqual(got, want, `${r.text} over ${list.join(' ')}`);
        for (const v of got) assert.ok(list.includes(v) && !isPseudoVersion(v));
      }),
      { numRuns: 3_000, seed: SEED },
    );
    assert.ok(nonEmpty >= 750, `only ${nonEmpty} of 3000 runs admitted anything`);
  });
});
