// The error catalog (src/util/errors.ts ERRORS) and its page (docs/errors.md) are one list: every
// code the catalog has is on the page with its status and meaning, and the page has no other.
// Every error a part throws is an AppError with a catalog code (the type allows no other, and no
// status of its own), so each code answers one status; the compatible API's 400 for a failed
// build is the one documented exception, made by its renderer.
//   node --import tsx --test test/unit/errors.test.ts
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AppError, ERRORS, NotFoundError, errorMessage } from '../../src/util/errors.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The catalog rows of docs/errors.md: code -> [status, means]. */
export function pageRows(markdown: string): Map<string, [number, string]> {
  const rows = new Map<string, [number, string]>();
  for (const line of markdown.split('\n')) {
    const m = /^\| `([a-z_]+)` \| (\d{3}) \| (.+) \|$/.exec(line);
    if (!m) continue;
    assert.ok(!rows.has(m[1]!), `docs/errors.md lists ${m[1]} twice`);
    rows.set(m[1]!, [Number(m[2]), m[3]!]);
  }
  return rows;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('error catalog', () => {
  test('docs/errors.md lists exactly the catalog, with each status and meaning', () => {
    const rows = pageRows(readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8'));
    assert.ok(rows.size >= 40, `only ${rows.size} rows read from docs/errors.md`);
    const catalog = new Map(Object.entries(ERRORS).map(([code, e]) => [code, [e.status, e.means] as [number, string]]));
    assert.deepEqual(
      [...catalog.keys()].filter((c) => !rows.has(c)),
      [],
      'codes of the catalog missing from docs/errors.md',
    );
    assert.deepEqual(
      [...rows.keys()].filter((c) => !catalog.has(c)),
      [],
      'codes on docs/errors.md that the catalog does not have',
    );
    for (const [code, [status, means]] of catalog) assert.deepEqual(rows.get(code), [status, means], `docs/errors.md's row of ${code}`);
  });

  test('every code has a client status and says what it means', () => {
    for (const [code, e] of Object.entries(ERRORS)) {
      assert.match(code, /^[a-z][a-z_]*[a-z]$/, code);
      assert.ok(e.status >= 400 && e.status <= 599, `${code}: ${e.status}`);
      assert.ok(e.means.length >= 10, `${code} says what it means`);
    }
  });

  test('an AppError takes its status from the catalog', () => {
    assert.equal(new AppError('too_many_builds', 'x', 10).statusCode, 429);
    assert.equal(new AppError('too_many_builds', 'x', 10).retryAfterS, 10);
    assert.equal(new NotFoundError('build x').statusCode, 404);
    assert.equal(new NotFoundError('build x').code, 'not_found');
  });

  test('no part writes an error with a status of its own (only the OCI catalog, RegistryError, does)', () => {
    const inline: string[] = [];
    for (const file of sources(join(ROOT, 'src'))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/new AppError\(\s*(\d|\{)/g)) inline.push(`${file.slice(ROOT.length + 1)}: ${m[0]}`);
      for (const m of text.matchAll(/super\(\s*\{\s*status/g)) if (!file.endsWith(join('registry', 'oci.ts'))) inline.push(`${file.slice(ROOT.length + 1)}: ${m[0]}`);
    }
    assert.deepEqual(inline, []);
  });

  test('errorMessage: the message of an Error, anything else as text (a thrown string is not lost)', () => {
    assert.equal(errorMessage(new Error('disk full')), 'disk full');
    assert.equal(errorMessage('plain string'), 'plain string');
    assert.equal(errorMessage(undefined), 'undefined');
    assert.equal(errorMessage({ code: 1 }), '[object Object]');
  });

  test('the page reader reads (the checks above can fail)', () => {
    const md = ['| code | status | means |', '|---|---|---|', '| `a_b` | 404 | it is gone |', '| `c` | x | not a row |'].join('\n');
    assert.deepEqual([...pageRows(md)], [['a_b', [404, 'it is gone']]]);
  });
});
