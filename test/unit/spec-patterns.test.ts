// The grammar as patterns (src/request/grammar.ts), which the OpenAPI document publishes, against the
// checks the server runs: every value one accepts the other accepts, on hand-picked edge cases and
// on many generated ones.
//   node --import tsx --test test/unit/spec-patterns.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CADDY_VERSION_PATTERN, MODULE_PATH_PATTERN, VERSION_QUERY_PATTERN, classifyVersionQuery, modulePathError, whole } from '../../src/request/grammar.js';
import { PlatformSet, parseBuildRequest } from '../../src/request/index.js';
import { GOPROXY_PATH_PATTERN } from '../../src/fleet/index.js';
import { type GoproxyPathError, parseGoproxyPath } from '../../src/fleet/goproxy.js';

/** A small deterministic generator (mulberry32), so a failure names a reproducible value. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Strings made of pieces that sit on the grammar's edges. */
function values(pieces: string[], n: number, seed: number): string[] {
  const r = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let s = '';
    const len = 1 + Math.floor(r() * 7);
    for (let j = 0; j < len; j++) s += pieces[Math.floor(r() * pieces.length)];
    out.push(s);
  }
  return out;
}

function agree(name: string, pattern: string, accepts: (v: string) => boolean, cases: string[]): void {
  const re = new RegExp(whole(pattern));
  const wrong = cases.filter((v) => re.test(v) !== accepts(v)).map((v) => `${JSON.stringify(v)}: pattern ${re.test(v)}, check ${accepts(v)}`);
  assert.deepEqual(wrong.slice(0, 10), [], `${name}: ${wrong.length} of ${cases.length} disagree`);
}

const MODULE_PIECES = ['github.com', 'a.b', 'x', '/', '//', '.', '..', '-', '_', '~', '~1', 'v0', 'v1', 'v2', 'v01', 'v10', 'Con', 'com1', 'lpt9', 'aux.', 'A', 'é', ' ', '@', 'caddy', '9'];
const VERSION_PIECES = ['v', '1', '0', '01', '.', '-', '+', 'rc', 'latest', 'upgrade', 'none', '/', '//', '.lock', '>=', '<', 'a', 'B', '_', 'x', ' ', '2'];

describe('the grammar as patterns matches the checks', () => {
  test('module paths', () => {
    const cases = [
      'github.com/mholt/caddy-l4',
      'example.com',
      'github.com/x/v2',
      'github.com/x/v1',
      'github.com/x/v02',
      'github.com/Azure/x',
      'Github.com/x',
      '-a.b/c',
      'a.b/-c',
      'a.b/.c',
      'a.b/c.',
      'a.b/con',
      'a.b/con.txt',
      'a.b/console',
      'a.b/x~1',
      'a.b/x~1.go',
      'a.b/x~y',
      'ab/c',
      'a.b//c',
      'a.b/c/',
      ...values(MODULE_PIECES, 4000, 1),
    ];
    agree('module path', MODULE_PATH_PATTERN, (v) => modulePathError(v) === null && v.length <= 255, cases);
  });

  test('a comparison the go command calls ambiguous (<= or > with a prefix) is refused, not sent to go', () => {
    for (const v of ['>v0', '>v2.11', '<=v2', '<=v2.11']) assert.ok('error' in classifyVersionQuery(v), v);
    for (const v of ['>=v0', '<v2.11', '>v2.11.0', '<=v2.11.9-rc.1']) assert.deepEqual(classifyVersionQuery(v), { kind: 'compare' }, v);
  });

  test('version queries', () => {
    const cases = [
      'latest',
      'v1.2.3',
      'v1.2.3-rc.1',
      'v1.2.3-01',
      'v1.2.3-0a',
      'v1.2.3+meta',
      'v2',
      'v2.11',
      'v2.011',
      '>=v2.1',
      '<v3.0.0-rc.01',
      'master',
      'feature/x',
      'x..y',
      'x.lock',
      'x/',
      'v3x',
      'upgrade',
      'patch',
      'none',
      '-x',
      ...values(VERSION_PIECES, 4000, 2),
    ];
    agree('version query', VERSION_QUERY_PATTERN, (v) => !('error' in classifyVersionQuery(v)), cases);
  });

  test('caddyVersion of a build request', () => {
    const platforms = new PlatformSet([{ os: 'linux', arch: 'amd64' }]);
    const accepts = (caddyVersion: string) => {
      try {
        parseBuildRequest({ os: 'linux', arch: 'amd64', caddyVersion }, { platforms, maxPlugins: 1, allowLocalReplace: false });
        return true;
      } catch {
        return false;
      }
    };
    const cases = ['', 'latest', '2', '2.11', '2.11.9', 'v2.11.9', '2.x', '2.1x', 'v3.0.0', 'v3', '>=v3', '2abc', 'master', ...values(VERSION_PIECES, 4000, 3)];
    agree(
      'caddyVersion',
      CADDY_VERSION_PATTERN,
      accepts,
      cases.filter((v) => v.length <= 100),
    );
  });
});

describe('the fleet module proxy path as a pattern matches parseGoproxyPath', () => {
  test('escaped module paths and versions', () => {
    const accepts = (p: string) => {
      try {
        parseGoproxyPath(p);
        return p.length <= 1024;
      } catch (e) {
        return (e as GoproxyPathError).status === 404;
      }
    };
    const pieces = ['github.com', 'a.b', '/', '!a', '!', 'A', 'x', '.', '-', '_', '~', '@v/', '@latest', 'list', 'v1.2.3', 'v1.0.0-01', '-rc.1', '+incompatible', '.info', '.mod', '.zip', 'sumdb'];
    const cases = ['github.com/!azure/x/@v/v1.2.3.info', 'github.com/x/@v/list', 'github.com/x/@latest', 'github.com/x/@v/v1.0.0-01.mod', 'github.com/X/@v/v1.0.0.mod', ...values(pieces, 6000, 4)];
    // Checksum database paths (sumdb/…) are refused with 404 before any check: either answer is right for them.
    agree(
      'goproxy path',
      GOPROXY_PATH_PATTERN.slice(1, -1),
      accepts,
      cases.filter((p) => p.split('/')[0] !== 'sumdb'),
    );
  });
});
