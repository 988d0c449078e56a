// lvsd's log: one line per event, so that journald (or a test) reads it line by line.

import { fstatSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

/** sd-daemon(3)'s priority prefixes, which journald reads off each stream line. */
const JOURNAL_PRIORITY: Record<LogLevel, string> = { error: '<3>', warn: '<4>', info: '<6>', debug: '<7>' };

/** A log line: journald stamps lines itself and reads the level from the prefix; elsewhere, time and level. */
export function formatLogLine(level: LogLevel, message: string, journal: boolean, now: Date): string {
  return journal ? `${JOURNAL_PRIORITY[level]}${message}\n` : `${now.toISOString()} ${level} ${message}\n`;
}

/**
 * Whether stderr is the stream systemd connected to the journal: $JOURNAL_STREAM names its
 * device and inode, so a child whose stderr was redirected elsewhere does not take it for one.
 */
export function stderrIsJournal(journalStream: string | undefined, fd = 2): boolean {
  if (!journalStream) return false;
  try {
    const { dev, ino } = fstatSync(fd);
    return journalStream === `${dev}:${ino}`;
  } catch {
    return false;
  }
}

const journal = stderrIsJournal(process.env.JOURNAL_STREAM);

/** One line per event on stderr. */
export const stderrLogger: Logger = (level, message) => {
  process.stderr.write(formatLogLine(level, message, journal, new Date()));
};
