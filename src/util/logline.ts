/** A line of a build's log, as the runner emits it, the queue carries it and the store keeps it. */

/** Where a log line came from: the build's own output, or the system around it. */
export type LogStream = 'stdout' | 'stderr' | 'system';

export interface LogLine {
  /** 0-based, per job, kept across attempts and workers. */
  seq: number;
  ts: string;
  stream: LogStream;
  text: string;
}
