import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { HostRepair, RepairReport } from '../../src/dataplane/host.js';
import { watchHost } from '../../src/dataplane/start.js';

describe('watchHost', () => {
  it('repairs on every tick, logs what it put back, and what it cannot only when that changes', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const reports: RepairReport[] = [
        { repaired: [], failed: [] },
        { repaired: ['nft table inet lvsd'], failed: ['ip -4 route default dev lvs0 table 19542: gone'] },
        { repaired: [], failed: ['ip -4 route default dev lvs0 table 19542: gone'] },
        { repaired: [], failed: [] },
      ];
      let ticks = 0;
      const host: HostRepair = { verify: () => [], repair: () => reports[ticks++]! };
      const lines: string[] = [];
      watchHost(host, 2000, (level, message) => lines.push(`${level} ${message}`));
      mock.timers.tick(1999);
      assert.equal(ticks, 0);
      mock.timers.tick(4 * 2000);
      assert.equal(ticks, 4);
      assert.deepEqual(lines, [
        'warn host: put back nft table inet lvsd',
        'error host: cannot put back ip -4 route default dev lvs0 table 19542: gone',
      ]);
    } finally {
      mock.timers.reset();
    }
  });
});
