// lvsd's log lines: time and level on a terminal or file, sd-daemon priority prefixes when stderr
// is the journal's stream ($JOURNAL_STREAM names its device:inode).

import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatLogLine, stderrIsJournal } from '../../src/control/log.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';

const NOW = new Date('2026-12-01T13:00:00.000Z');

test('journal lines carry <3> <4> <6> <7> and no time (journald stamps them); others time and level', () => {
  assert.equal(formatLogLine('error', 'cannot start', true, NOW), '<3>cannot start\n');
  assert.equal(formatLogLine('warn', 'w', true, NOW), '<4>w\n');
  assert.equal(formatLogLine('info', 'i', true, NOW), '<6>i\n');
  assert.equal(formatLogLine('debug', 'd', true, NOW), '<7>d\n');
  assert.equal(
    formatLogLine('error', 'cannot start', false, NOW),
    '2026-12-01T13:00:00.000Z error cannot start\n',
  );
});

test('JOURNAL_STREAM counts only when it names this stream: a redirected stderr is not the journal', async () => {
  const dir = await tempDir('lvq12-log-');
  const fd = openSync(join(dir, 'stderr'), 'w');
  try {
    const { dev, ino } = fstatSync(fd);
    assert.equal(stderrIsJournal(`${dev}:${ino}`, fd), true);
    assert.equal(stderrIsJournal(`${dev}:${ino + 1}`, fd), false);
    assert.equal(stderrIsJournal(undefined, fd), false);
    assert.equal(stderrIsJournal('', fd), false);
  } finally {
    closeSync(fd);
    await removeDir(dir);
  }
});
