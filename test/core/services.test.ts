import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { parseAddr, IPPROTO_TCP } from '../../src/core/inet.js';
import { DEFAULT_SCHEDULER, type Service, type ServiceKey } from '../../src/core/model.js';
import { ServiceTable } from '../../src/core/services.js';
import '../../src/core/sched/index.js';

const key = (port: number): ServiceKey => ({
  af: 4,
  protocol: IPPROTO_TCP,
  addr: parseAddr('198.18.0.1')!,
  port,
  fwmark: 0,
});

test('-C retires every service in one call, so their connections go in one pass over the table', () => {
  const removals: number[][] = [];
  const table = new ServiceTable(
    { clock: new ManualClock(0), random: () => 0.5 },
    {
      servicesRemoved: (services: readonly Service[]) => removals.push(services.map((s) => s.key.port)),
      destRemoved: () => undefined,
    },
  );
  const settings = { scheduler: DEFAULT_SCHEDULER, flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };
  for (let port = 1; port <= 100; port++) table.add(key(port), settings);
  table.delete(key(7));
  table.clear();
  assert.equal(removals.length, 2);
  assert.deepEqual(removals[0], [7]);
  assert.equal(removals[1]!.length, 99);
  assert.equal(table.services.length, 0);
});
