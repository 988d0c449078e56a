// lvsd's connection-table options: what is given shows in `lvsadm -L --json`, ipvsadm's text
// outputs stay as they were, and a bad value stops lvsd at once naming the option.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LVSD, removeDir, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';
import type { ConnTableSnapshot } from '../../src/core/ops.js';

test('--conn-capacity, the defense and the expiry options show in -L --json; -Ln keeps ipvsadm’s header', async () => {
  const dir = await tempDir();
  let daemon: SpawnedDaemon | null = null;
  try {
    const args = [
      '--conn-capacity',
      '500',
      '--drop-entry',
      '3',
      '--secure-tcp=0',
      '--defense-threshold',
      '75',
      '--syn-proxy',
      '3',
      '--syn-proxy-threshold=500',
    ];
    daemon = await spawnDaemon(dir, undefined, {
      args: [...args, '--early-drop', 'off', '--expire-nodest-conn', '1', '--expire-quiescent-template=1'],
    });
    const env = { LVSD_SOCKET: daemon.socketPath };
    const json = await runLvsadmBinary(['-L', '--json'], env);
    assert.equal(json.code, 0, json.stderr);
    const table = (JSON.parse(json.stdout) as { connTable: ConnTableSnapshot }).connTable;
    assert.deepEqual(table, {
      capacity: 500,
      entries: 0,
      templates: 0,
      refusedFull: 0,
      earlyDrops: 0,
      defense: {
        dropEntry: 3,
        secureTcp: 0,
        thresholdPercent: 75,
        earlyDrop: false,
        droppedEntries: 0,
        secureTcpActivations: 0,
        synProxy: 3,
        synProxyThreshold: 500,
        cookiesSent: 0,
        cookiesAccepted: 0,
        cookiesRejected: 0,
        synsShed: 0,
        synProxyActivations: 0,
      },
      expiry: { expireNodestConn: true, expireQuiescentTemplate: true },
    });
    const text = await runLvsadmBinary(['-Ln'], env);
    assert.equal(text.stdout.split('\n')[0], 'IP Virtual Server version 1.2.1 (size=4096)');
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
});

test('a bad table option stops lvsd before it starts: exit 2, the option named, no socket', async () => {
  const dir = await tempDir();
  try {
    const socket = join(dir, 'lvsd.sock');
    const cases: [string[], RegExp][] = [
      [['--conn-capacity', '0'], /--conn-capacity: 0 is not a whole number of entries in 1\.\.16777216/],
      [['--conn-capacity', '1e3'], /--conn-capacity: 1e3 is not/],
      [['--conn-capacity', '16777217'], /--conn-capacity: 16777217 is not/],
      [['--conn-capacity'], /--conn-capacity needs a value/],
      [
        ['--drop-entry', '2'],
        /--drop-entry 2: drop_entry must be 0 \(off\), 1 \(automatic\) or 3 \(always\)/,
      ],
      [['--secure-tcp', 'on'], /--secure-tcp on: secure_tcp must be/],
      [
        ['--defense-threshold', '0'],
        /--defense-threshold 0: the defense threshold must be a percentage, 1\.\.100/,
      ],
      [['--early-drop', 'yes'], /--early-drop: yes is not on or off/],
      [['--syn-proxy', '2'], /--syn-proxy 2: syn_proxy must be 0 \(off\), 1 \(automatic\) or 3 \(always\)/],
      [
        ['--syn-proxy-threshold', '0'],
        /--syn-proxy-threshold 0: the SYN proxy threshold must be a whole number/,
      ],
      [['--expire-nodest-conn', 'on'], /--expire-nodest-conn: on is not 0 or 1/],
      [['--expire-quiescent-template', '2'], /--expire-quiescent-template: 2 is not 0 or 1/],
    ];
    for (const [args, message] of cases) {
      const run = spawnSync(
        process.execPath,
        [LVSD, '--no-dataplane', '--socket', socket, '--state-dir', join(dir, 'state'), ...args],
        { encoding: 'utf8', timeout: 10_000 },
      );
      assert.equal(run.status, 2, args.join(' '));
      assert.match(run.stderr, message);
      assert.ok(!existsSync(socket), 'nothing started');
    }
  } finally {
    await removeDir(dir);
  }
});
