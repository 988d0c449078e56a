// One lvsd per state directory: an flock(2) on <state-dir>/lvsd.lock, taken before lvsd touches
// anything (socket, host journal, TUN device), held for the life of the process. flock rather
// than a pid file created with O_EXCL: the kernel drops the lock when the holder dies, however
// it dies, so there is no stale lock to guess about and no pid that may have been reused. The
// file keeps the holder's pid only to name it in the refusal.

import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import koffi from 'koffi';

export const LOCK_FILE_NAME = 'lvsd.lock';

const libc = koffi.load('libc.so.6');
const flock = libc.func('int flock(int fd, int operation)');
const LOCK_EX = 2;
const LOCK_NB = 4;
const EWOULDBLOCK = 11;

/** Another lvsd holds the state directory (or the lock cannot be taken at all). */
export class StateLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StateLockError';
  }
}

export interface StateLock {
  readonly file: string;
  /** Drops the lock (closing the file); the file itself stays, empty of meaning. */
  release(): void;
}

/** Takes the state directory's lock at once or throws StateLockError; never waits. */
export function lockStateDir(stateDir: string): StateLock {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, LOCK_FILE_NAME);
  // 'a+': created if missing, never truncated before the lock is ours (the holder's pid stays).
  const fd = openSync(file, 'a+', 0o600);
  if (flock(fd, LOCK_EX | LOCK_NB) !== 0) {
    const errno = koffi.errno();
    closeSync(fd);
    if (errno !== EWOULDBLOCK) throw new StateLockError(`cannot lock ${file}: errno ${errno}`);
    const holder = readFileSync(file, 'utf8').trim();
    throw new StateLockError(
      `another lvsd${/^\d+$/.test(holder) ? ` (pid ${holder})` : ''} is running with the state directory ` +
        `${stateDir} (it holds ${file}); this one stops without touching anything`,
    );
  }
  ftruncateSync(fd, 0);
  writeSync(fd, `${process.pid}\n`);
  let open = true;
  return {
    file,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}
