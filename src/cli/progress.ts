/**
 * Progress output of the client commands, on stderr. On a terminal: one status line redrawn in
 * place (phase, queue position, elapsed time, last log line) and a byte progress bar for the
 * download. Otherwise (pipes, CI logs): plain lines, one per phase change.
 */
import { formatBytes } from '../util/units.js';

export interface ProgressOptions {
  verbose: boolean;
  quiet: boolean;
  stream?: NodeJS.WriteStream;
  /** Force TTY behaviour on or off (tests); default: the stream's isTTY. */
  tty?: boolean;
}

const SPIN = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export function elapsed(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export class Progress {
  private readonly out: NodeJS.WriteStream;
  private readonly tty: boolean;
  private status = '';
  private lastLine = '';
  private lines = 0;
  private phaseName = '';
  private position: number | undefined;
  private started = Date.now();
  private timer: NodeJS.Timeout | null = null;
  private frame = 0;
  private drawn = false;
  private lastPct = -1;
  private lastPaint = 0;

  constructor(private readonly o: ProgressOptions) {
    this.out = o.stream ?? process.stderr;
    this.tty = o.tty ?? !!this.out.isTTY;
  }

  /** A message on its own line (clears the status line first). */
  info(msg: string): void {
    if (this.o.quiet) return;
    this.clear();
    this.out.write(`${msg}\n`);
    this.redraw();
  }

  /** Always printed, even with --quiet. */
  error(msg: string): void {
    this.clear();
    this.out.write(`${msg}\n`);
  }

  startBuild(startedAt?: string): void {
    const t = startedAt ? Date.parse(startedAt) : NaN;
    this.started = Number.isFinite(t) ? Math.min(t, Date.now()) : Date.now();
    if (this.tty && !this.o.quiet && !this.timer) {
      this.timer = setInterval(() => this.redraw(true), 120);
      this.timer.unref();
    }
  }

  phase(phase: string, position?: number): void {
    if (phase === this.phaseName && position === this.position) return;
    this.phaseName = phase;
    this.position = position;
    if (this.o.quiet) return;
    const label = phase === 'queued' && position ? `queued (position ${position})` : phase;
    if (!this.tty || this.o.verbose) this.info(`fairway: ${label}`);
    else this.redraw();
  }

  line(text: string): void {
    this.lines++;
    this.lastLine = text;
    if (this.o.quiet) return;
    if (this.o.verbose) {
      this.clear();
      this.out.write(`${text}\n`);
      this.redraw();
    } else if (this.tty) this.redraw();
  }

  download(received: number, total: number | null): void {
    if (this.o.quiet) return;
    this.stopTimer();
    if (!this.tty) {
      const pct = total ? Math.floor((received / total) * 4) * 25 : -1;
      if (received === 0) this.info(`fairway: downloading ${total ? formatBytes(total) : ''}`.trimEnd());
      else if (total && pct !== this.lastPct && pct > 0 && pct < 100) this.info(`fairway: downloaded ${pct}%`);
      this.lastPct = pct;
      return;
    }
    const now = Date.now();
    if (now - this.lastPaint < 100 && received !== total) return;
    this.lastPaint = now;
    const width = 28;
    if (total) {
      const f = Math.min(1, received / total);
      const fill = Math.round(f * width);
      this.status = `[${'█'.repeat(fill)}${'░'.repeat(width - fill)}] ${String(Math.floor(f * 100)).padStart(3)}%  ${formatBytes(received)} / ${formatBytes(total)}`;
    } else this.status = `downloading ${formatBytes(received)}`;
    this.paint();
  }

  /** Clears the status line and stops the spinner. */
  done(): void {
    this.stopTimer();
    this.clear();
    this.status = '';
    this.phaseName = '';
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private redraw(tick = false): void {
    if (!this.tty || this.o.quiet || !this.phaseName) return;
    if (tick) this.frame = (this.frame + 1) % SPIN.length;
    const label = this.phaseName === 'queued' && this.position ? `queued #${this.position}` : this.phaseName;
    const head = `${SPIN[this.frame]} ${label} ${elapsed(Date.now() - this.started)} · ${this.lines} lines`;
    this.status = this.o.verbose || !this.lastLine ? head : `${head} · ${this.lastLine.replace(/\s+/g, ' ')}`;
    this.paint();
  }

  private paint(): void {
    const cols = this.out.columns || 100;
    const text = this.status.length > cols - 1 ? `${this.status.slice(0, cols - 2)}…` : this.status;
    this.out.write(`\r\x1b[2K${text}`);
    this.drawn = true;
  }

  private clear(): void {
    if (this.tty && this.drawn) {
      this.out.write('\r\x1b[2K');
      this.drawn = false;
    }
  }
}
