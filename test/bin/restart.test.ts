// lvsd's own restart: SIGTERM saves the connection table for the next start, which takes it over
// once its configuration is in; --restart-hold takes seconds in 0..3600 and nothing else.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LVSD, removeDir, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';

test('SIGTERM saves the connection table beside lvsd.json; the next lvsd takes it over', async () => {
  const dir = await tempDir();
  try {
    const first = await spawnDaemon(dir, undefined, { args: ['--restart-hold', '5'] });
    const added = await runLvsadmBinary(['-A', '-t', '198.18.0.1:80', '-s', 'rr'], {
      LVSD_SOCKET: first.socketPath,
    });
    assert.equal(added.code, 0, added.stderr);
    assert.equal(await first.stop(), 0);
    const file = join(first.stateDir, 'connections.json');
    assert.match(first.stderr(), new RegExp(`info saved 0 connections to ${file}\n`));
    assert.match(readFileSync(file, 'utf8'), /^\{"format":"lvsd-connections","version":1,/);

    const second = await spawnDaemon(dir);
    await second.waitForLog(/info took over 0 connections from .*connections\.json \(saved [\d.]+ s ago/);
    assert.match(second.stderr(), /restored configuration from[\s\S]*took over/, 'after the configuration');
    assert.equal(existsSync(file), false);
    assert.equal(await second.stop(), 0);
  } finally {
    await removeDir(dir);
  }
});

test('a bad --restart-hold stops lvsd before it starts', async () => {
  const dir = await tempDir();
  try {
    for (const value of ['3601', '-1', '1.5', 'soon']) {
      const run = spawnSync(
        process.execPath,
        [
          LVSD,
          '--no-dataplane',
          '--socket',
          join(dir, 'lvsd.sock'),
          '--state-dir',
          dir,
          '--restart-hold',
          value,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      );
      assert.equal(run.status, 2, value);
      assert.match(
        run.stderr,
        new RegExp(`--restart-hold: ${value} is not a whole number of seconds in 0\\.\\.3600`),
      );
    }
  } finally {
    await removeDir(dir);
  }
});
