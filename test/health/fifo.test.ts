// The notify FIFO against the real thing: a FIFO made (and removed) in a temporary directory, read
// by a reader as a notify_fifo script would, lines in order; a full pipe loses lines instead of
// blocking; what is not a FIFO, or cannot be made, is refused with the path named.

import assert from 'node:assert/strict';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fifoOpener } from '../../src/health/fifo.js';

describe('notify FIFO', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lvh10-fifo-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const lost: string[] = [];
  const open = fifoOpener((path, reason) => lost.push(`${path} ${reason}`));

  it('makes the FIFO, writes whole lines in order to its reader, and removes it on close', async () => {
    const path = join(dir, 'made');
    const fifo = open(path, null);
    assert.ok(statSync(path).isFIFO());
    assert.equal(statSync(path).mode & 0o777, 0o644 & ~process.umask());
    // Written before any reader: the lines wait in the pipe.
    fifo.write('RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 DOWN');
    const reader = createReadStream(path, { encoding: 'utf8' });
    let text = '';
    reader.on('data', (chunk) => (text += chunk));
    fifo.write('VS [198.18.0.1]:tcp:80 DOWN');
    fifo.write('RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 UP');
    for (let i = 0; i < 200 && text.split('\n').length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    fifo.close();
    assert.equal(existsSync(path), false, 'a FIFO lvsd made goes with it');
    await new Promise<void>((resolve) => reader.once('close', () => resolve()));
    assert.equal(
      text,
      'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 DOWN\nVS [198.18.0.1]:tcp:80 DOWN\n' +
        'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 UP\n',
    );
    fifo.write('after close: nothing');
  });

  it('loses lines when nobody reads and the pipe is full, never blocking', () => {
    const path = join(dir, 'full');
    const fifo = open(path, null);
    const line = `RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 DOWN ${'x'.repeat(200)}`;
    // A pipe holds 64 KiB by default: 1000 lines of ~250 bytes overflow it.
    for (let i = 0; i < 1000; i++) fifo.write(line);
    fifo.close();
    assert.ok(lost.length > 0 && lost.every((l) => l === `${path} EAGAIN`), lost.slice(0, 3).join('\n'));
  });

  it('keeps a FIFO that was there before; refuses a path that is not a FIFO or cannot be made', () => {
    const kept = join(dir, 'kept');
    const maker = open(kept, null);
    const user = open(kept, null);
    user.close();
    assert.ok(statSync(kept).isFIFO(), 'closing a FIFO it found leaves it');
    maker.close();

    const file = join(dir, 'plain');
    writeFileSync(file, 'data');
    assert.throws(() => open(file, null), /cannot open the notify FIFO .*plain: it is not a FIFO/);
    assert.equal(statSync(file).isFile(), true, 'left as it was');
    assert.throws(() => open(join(dir, 'no', 'such', 'dir'), null), /cannot make the notify FIFO .*: ENOENT/);
  });
});
