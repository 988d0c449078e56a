import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import type { HostEvents } from '../../src/dataplane/host-events.js';
import type { HostRepair, RepairReport, RepairScope } from '../../src/dataplane/host.js';
import { FULL_CHECK_MS, watchHost } from '../../src/dataplane/start.js';

const clean: RepairReport = { repaired: [], failed: [] };

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

  it('with the kernel announcing changes, lists the host only after one (or a failure, or every FULL_CHECK_MS), else only the sysctls', () => {
    mock.timers.enable({ apis: ['setInterval'] });
    try {
      const scopes: RepairScope[] = [];
      const failures = [false, false, true, false];
      const host: HostRepair = {
        verify: () => [],
        repair: (scope = 'all') => {
          scopes.push(scope);
          return failures[scopes.length - 1] ? { repaired: [], failed: ['route: gone'] } : clean;
        },
      };
      const announced = [false, false, true, false, false, false];
      let polls = 0;
      const events: HostEvents = { changed: () => announced[polls++] ?? false, close: () => undefined };
      watchHost(host, 2000, () => undefined, events);
      mock.timers.tick(6 * 2000);
      assert.deepEqual(scopes, [
        'all', // the first tick: nothing compared yet
        'sysctls',
        'all', // announced, and it failed
        'all', // tried again
        'sysctls',
        'sysctls',
      ]);
      scopes.length = 0;
      mock.timers.tick(FULL_CHECK_MS);
      assert.ok(scopes.includes('all'), 'at least one full check per FULL_CHECK_MS');
      assert.ok(scopes.filter((s) => s === 'all').length <= 1);
    } finally {
      mock.timers.reset();
    }
  });
});
