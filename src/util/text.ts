/**
 * Text from builds (plugin output, go and xcaddy messages) on its way into a log: no terminal
 * control survives. Escape sequences go whole (CSI `ESC [ … final`, OSC `ESC ] … BEL|ST`, the
 * string sequences DCS/SOS/PM/APC, two-byte `ESC x`, and their 8-bit C1 forms), then every other
 * C0 control but tab, DEL and every C1 control. A line break inside a line becomes a space, so a
 * line cannot forge another in the plain-text log. Printable text, tabs and non-ASCII letters stay.
 */

// ESC or its 8-bit form: CSI, string sequences (OSC, DCS, SOS, PM, APC) up to BEL or ST (or the end), other escapes.
const SEQUENCES = /(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b[\x20-\x2f]*[\x30-\x7e]?/g;
const BREAKS = /\r\n|[\r\n\v\f]/g;
// C0 but tab, DEL, C1.
const CONTROLS = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/** `text` without terminal control characters (tab kept, line breaks as spaces). */
export function stripControl(text: string): string {
  // Fast path: most lines have nothing to strip.
  if (!/[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(text)) return text;
  return text.replace(SEQUENCES, '').replace(BREAKS, ' ').replace(CONTROLS, '');
}
