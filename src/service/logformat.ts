import type { LogLine, LogStream } from '../util/logline.js';

/** build.log is plain text, one line per log line: `<ISO time> <stream> <text>`. */
export function formatLog(lines: LogLine[]): string {
  // A text with newlines (a multi-line error) becomes several lines, so the file stays parseable.
  return lines
    .map((l) =>
      l.text
        .split(/\r?\n/)
        .map((t) => `${l.ts} ${l.stream} ${t}\n`)
        .join(''),
    )
    .join('');
}

export function parseLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw) continue;
    const a = raw.indexOf(' ');
    const b = raw.indexOf(' ', a + 1);
    const stream = (b === -1 ? raw.slice(a + 1) : raw.slice(a + 1, b)) as LogStream;
    out.push({ seq: out.length, ts: raw.slice(0, a), stream, text: b === -1 ? '' : raw.slice(b + 1) });
  }
  return out;
}
