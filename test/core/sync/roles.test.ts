import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { syncConnKey, SyncMaster } from '../../../src/core/sync/master.js';
import { SyncBackup } from '../../../src/core/sync/backup.js';
import { exampleUdp } from './arbitrary.js';

test('with a share of messages lost, the periodic resend still brings every long-lived flow to the backup', () => {
  for (const kept of [1, 2, 3]) {
    const clock = new ManualClock();
    const master = new SyncMaster({ syncId: 1, maxLen: 1472, clock });
    const held = new Set<string>();
    const backup = new SyncBackup({
      syncId: 1,
      maxLen: 1472,
      clock,
      deliver: (conns) => conns.forEach((c) => held.add(syncConnKey(c))),
    });
    const flows = Array.from({ length: 20 }, (_, i) => exampleUdp({ cport: 1000 + i }));
    // Every flow sends a packet a second and the master sends when due; three messages in four
    // are lost on the way (the first among them), only the `kept`-th of each four arrives.
    let sent = 0;
    for (let second = 1; second <= 400; second++) {
      for (const conn of flows) master.handle({ kind: 'packet', conn, inPkts: second });
      clock.advance(1000);
      for (const message of master.takeReady()) if (sent++ % 4 === kept) backup.receive(message);
    }
    assert.ok(sent >= 8, `${sent} messages`);
    assert.equal(held.size, flows.length);
    assert.ok(backup.stats().accepted >= 2);
  }
});
