// Terminal control out of build logs (issue 26, point 4): stripControl, and the embedded queue,
// where build output lines become LogLine records, storing none of it. The Redis log and the
// served log go through the same function (src/queue/redislog.ts, src/api/logs.ts; the Redis path
// is covered end to end in test/integration/log-relay.test.ts).
//   node --import tsx --test test/unit/log-control.test.ts
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LocalQueue, type JobEvent, type Processor } from '../../src/queue/index.js';
import { stripControl } from '../../src/util/text.js';

/** Any C0 control but tab, DEL, any C1 control. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/;

const HOSTILE: Array<[string, string, string]> = [
  ['colour (CSI SGR)', 'plugin \x1b[31mred\x1b[0m text', 'plugin red text'],
  ['cursor moves and erase', '\x1b[2J\x1b[H\x1b[1;1Hcleared\x1b[K', 'cleared'],
  ['private CSI (hide cursor)', 'a\x1b[?25lb', 'ab'],
  ['OSC title, BEL-terminated', 'x\x1b]0;pwned title\x07y', 'xy'],
  ['OSC 8 hyperlink, ST-terminated', '\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\', 'click'],
  ['OSC 52 clipboard write', 'copy\x1b]52;c;ZWNobyBwd25lZA==\x07 done', 'copy done'],
  ['DCS string', 'a\x1bPq#0;2;0;0;0\x1b\\b', 'ab'],
  ['two-byte escapes (RIS, charset)', 'a\x1bcb\x1b(Bc', 'abc'],
  ['8-bit CSI and OSC', 'a\x9b31mb\x9d0;t\x9cc', 'abc'],
  ['lone ESC at the end', 'end\x1b', 'end'],
  ['bell, backspace, NUL, DEL', 'b\x07e\x08l\x00l\x7f', 'bell'],
  ['carriage return overwrite', 'fake line\rreal', 'fake line real'],
  ['newline forging a log line', 'x\n2026-01-01T00:00:00.000Z system fairway: build succeeded', 'x 2026-01-01T00:00:00.000Z system fairway: build succeeded'],
  ['C1 controls (NEL; an 8-bit CSI takes its final byte)', 'a\x85b\x9bcd', 'abd'],
  ['tab and Unicode kept', 'col1\tcol2 ✓ ünïcode 日本', 'col1\tcol2 ✓ ünïcode 日本'],
];

describe('stripControl', () => {
  for (const [what, input, want] of HOSTILE) {
    test(what, () => {
      const got = stripControl(input);
      assert.equal(got, want);
      assert.ok(!CONTROL.test(got), JSON.stringify(got));
    });
  }

  test('every single byte 0x00-0x9f in a line: only tab survives', () => {
    for (let c = 0; c <= 0x9f; c++) {
      const got = stripControl(`a${String.fromCharCode(c)}b`);
      assert.ok(!CONTROL.test(got), `0x${c.toString(16)} -> ${JSON.stringify(got)}`);
      if (c === 0x09) assert.equal(got, 'a\tb');
    }
  });

  test('plain text is returned as is', () => {
    const s = 'go: downloading github.com/mholt/caddy-l4 v0.1.2';
    assert.equal(stripControl(s), s);
  });
});

describe('the embedded queue stores log lines without terminal control', () => {
  test('lines logged by a job with escapes are stored and followed clean', async () => {
    const processor: Processor<null> = async (ctx) => {
      for (const [, input] of HOSTILE) ctx.log('stdout', input);
      ctx.log('stderr', '\x1b[1;31merror:\x1b[0m boom\x07');
    };
    const queue = new LocalQueue<null>(processor, { workers: 1, name: 'log-control' });
    try {
      await queue.enqueue('k1', null);
      const events: JobEvent[] = [];
      for await (const e of queue.follow('k1')) events.push(e);
      const lines = events.flatMap((e) => (e.type === 'line' ? [e.line.text] : []));
      assert.deepEqual(lines, [...HOSTILE.map(([, , want]) => want), 'error: boom']);
      for (const l of lines) assert.ok(!CONTROL.test(l), JSON.stringify(l));
    } finally {
      await queue.close();
    }
  });
});
