import pino, { type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type LogFormat = 'auto' | 'json' | 'pretty';

export interface LoggerOptions {
  /** `auto` (default): readable lines when stdout is a terminal, JSON lines otherwise. */
  format?: LogFormat;
  name?: string;
  /** Where lines go (default stdout); tests give their own stream. */
  destination?: NodeJS.WritableStream;
  /** Whether the destination is a terminal (default: stdout's isTTY). */
  isTTY?: boolean;
}

/**
 * Structured logs: JSON lines for machines (the default when stdout is not a terminal), or the
 * same records as readable, coloured lines (pino-pretty, written synchronously so nothing is lost
 * at exit) on a terminal.
 */
export function createLogger(level: string, o: LoggerOptions = {}): Logger {
  const format = o.format ?? 'auto';
  const isTTY = o.isTTY ?? process.stdout.isTTY === true;
  const readable = format === 'pretty' || (format === 'auto' && isTTY);
  const options = { name: o.name ?? 'fairway', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  const destination = o.destination ?? process.stdout;
  if (!readable) return pino(options, destination as DestinationStream);
  const stream = pretty({ destination, sync: true, colorize: isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return pino(options, stream);
}
