// A StateFs that fails where it is told to, as a full disk or a failing device would: a write
// that leaves a partial temporary file behind before ENOSPC, a rename that fails with EIO.

import { writeFile } from 'node:fs/promises';
import { nodeStateFs } from '../../src/control/state-file.js';
import type { StateFs } from '../../src/control/state-file.js';

export type Fault = 'write' | 'rename';

function osError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

export class FaultyStateFs implements StateFs {
  /** Every write (or rename) fails while this is set. */
  failing: Fault | null = null;
  writes = 0;

  readFile = nodeStateFs.readFile;
  mkdir = nodeStateFs.mkdir;
  unlink = nodeStateFs.unlink;
  syncDir = nodeStateFs.syncDir;

  async writeSynced(file: string, text: string): Promise<void> {
    if (this.failing === 'write') {
      // As a full disk does: the file is created and part of the text lands before ENOSPC.
      await writeFile(file, text.slice(0, text.length >> 1));
      throw osError('ENOSPC', 'no space left on device, write');
    }
    this.writes++;
    await nodeStateFs.writeSynced(file, text);
  }

  async rename(from: string, to: string): Promise<void> {
    if (this.failing === 'rename') throw osError('EIO', 'i/o error, rename');
    await nodeStateFs.rename(from, to);
  }
}
