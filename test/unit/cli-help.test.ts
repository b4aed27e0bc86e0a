/**
 * What a newcomer reads first: `fairway serve|hub|agent --help` lists the common options first,
 * then the role's own, then one heading a topic; the tools-dir default it names is the one the
 * code uses; `fairway build` prints only the figures it knows.
 *   node --import tsx --test test/unit/cli-help.test.ts
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Command } from 'commander';
import { builtFigures } from '../../src/cli/client-commands.js';
import { defaultToolsDir } from '../../src/config/install.js';
import { agentFlags, doctorFlags, hubFlags, serveFlags } from '../../src/main/flags.js';

const help = (make: (c: Command) => Command, name: string) => make(new Command(name).exitOverride()).helpInformation({ error: false });
const headings = (text: string) => text.split('\n').filter((l) => /^\S.*:$/.test(l) && !l.startsWith('Usage'));
const flagsUnder = (text: string, heading: string) => {
  const lines = text.split('\n');
  const from = lines.indexOf(heading);
  const out: string[] = [];
  for (const l of lines.slice(from + 1)) {
    if (l.trim() === '') break;
    const m = /^ {2}(?:-\w, )?(--[a-z-]+)/.exec(l);
    if (m) out.push(m[1]!);
  }
  return out;
};

describe('--help of the servers', () => {
  for (const [name, make] of [
    ['serve', serveFlags],
    ['hub', hubFlags],
    ['agent', agentFlags],
    ['doctor', doctorFlags],
  ] as const) {
    test(`${name}: common options first (--config, --host, --port, --data-dir, logging), then ${name}'s own, then the topics`, () => {
      const text = help(make, name);
      const hs = headings(text);
      assert.deepEqual(hs.slice(0, 3), ['Common options:', `${name} options:`, 'Builds:'], text);
      assert.deepEqual(flagsUnder(text, 'Common options:'), ['--config', '--host', '--port', '--data-dir', '--log-level', '--log-format']);
      // Pruning, prebuilds and images come after the options everyone sets.
      assert.ok(hs.indexOf('Pruning, refresh and prebuilds (docs/operations.md):') > hs.indexOf('Builds:'));
      assert.ok(text.indexOf('--prebuild') > text.indexOf('--port'));
      if (name === 'hub') assert.deepEqual(flagsUnder(text, 'hub options:').slice(0, 1), ['--redis']);
    });
  }

  test('the tools-dir default named in --help is the one the code uses, for a checkout and for a package as root or not', () => {
    const text = help(serveFlags, 'serve').replace(/\s+/g, ' ');
    assert.ok(text.includes(defaultToolsDir({ kind: 'package', uid: 0 })), text);
    assert.ok(text.includes('~/.local/share/fairway/tools'));
    assert.doesNotMatch(text, /\/var\/lib\/fairway\/tools/);
  });
});

describe('fairway build: the built line', () => {
  test('real figures when known; nothing for an unknown one (never "0 B" or "undefined")', () => {
    assert.equal(builtFigures({ size: 42_000_000, sha256: 'ab'.repeat(32), durationMs: 12_345, cached: false }), `: 42.0 MB, sha256 ${'ab'.repeat(32)}, in 12.3s`);
    assert.equal(builtFigures({ size: 42_000_000, sha256: 'ab'.repeat(32), durationMs: 12_345, cached: true }), `: 42.0 MB, sha256 ${'ab'.repeat(32)}`);
    assert.equal(builtFigures({ cached: false }), '');
    assert.equal(builtFigures({ sha256: 'cd'.repeat(32), cached: false }), `: sha256 ${'cd'.repeat(32)}`);
  });
});
