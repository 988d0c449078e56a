// lvsd's log: one line per event, so that journald (or a test) reads it line by line.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

/** One line per event on stderr: time, level, message. */
export const stderrLogger: Logger = (level, message) => {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
};
