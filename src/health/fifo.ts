// keepalived's notify FIFOs (global_defs notify_fifo and lvs_notify_fifo): one line per change of a
// real server or of a virtual server's quorum, in keepalived's format ("RS [198.18.1.11]:tcp:80
// [198.18.0.1]:tcp:80 DOWN", "VS [198.18.0.1]:tcp:80 UP"), in the order the changes happen. As
// keepalived (notify.c fifo_open): the FIFO is made if missing (mode 0644, owned by the script's
// user), opened read-write and non-blocking, so lvsd never waits for a reader: lines wait in the
// pipe until one reads, and a line that finds the pipe full is lost, not waited for. A FIFO lvsd
// made is removed when it closes, before its descriptor, so that a reader looping on it ends.

import { chownSync, closeSync, constants, fstatSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import koffi from 'koffi';

/** An open notify FIFO. */
export interface NotifyFifo {
  readonly path: string;
  /** Writes one line (without its newline); never blocks, never throws. */
  write(line: string): void;
  close(): void;
}

/** Opens a notify FIFO (the real one below, or a fake in tests); throws with the reason. */
export type FifoOpener = (path: string, owner: { uid: number; gid: number } | null) => NotifyFifo;

const EEXIST = 17;
const libc = koffi.load('libc.so.6');
// Node has no mkfifo; libc's, as keepalived calls it.
const mkfifo = libc.func('mkfifo', 'int', ['const char *', 'uint32_t']);

function errnoName(errno: number): string {
  const name = Object.entries(osConstants.errno).find(([, value]) => value === errno)?.[0];
  return name ?? `errno ${errno}`;
}

/** The real FIFO; `onLost` hears of each line dropped (pipe full, reader gone wrong). */
export function fifoOpener(onLost: (path: string, message: string) => void): FifoOpener {
  return (path, owner) => {
    let created = false;
    if (mkfifo(path, 0o644) === 0) created = true;
    else {
      const errno = koffi.errno();
      if (errno !== EEXIST) throw new Error(`cannot make the notify FIFO ${path}: ${errnoName(errno)}`);
    }
    let fd: number;
    try {
      if (created && owner) chownSync(path, owner.uid, owner.gid);
      fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
      if (!fstatSync(fd).isFIFO()) {
        closeSync(fd);
        throw new Error('it is not a FIFO');
      }
    } catch (err) {
      if (created) unlinkSync(path);
      throw new Error(`cannot open the notify FIFO ${path}: ${(err as Error).message}`, { cause: err });
    }
    let open = true;
    return {
      path,
      write(line) {
        if (!open) return;
        try {
          // One write of a short line: atomic in a pipe (PIPE_BUF), so lines never interleave.
          writeSync(fd, `${line}\n`);
        } catch (err) {
          onLost(path, (err as NodeJS.ErrnoException).code ?? (err as Error).message);
        }
      },
      close() {
        if (!open) return;
        open = false;
        try {
          if (created) unlinkSync(path);
        } catch {
          // Someone removed it already.
        }
        closeSync(fd);
      },
    };
  };
}
