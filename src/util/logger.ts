import pino, { type Logger } from 'pino';

/** Structured JSON logs on stdout (pipe through pino-pretty for humans). */
export function createLogger(level: string, name = 'fairway'): Logger {
  return pino({ name, level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
