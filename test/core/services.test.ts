import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/core/clock.js';
import { parseAddr, IPPROTO_TCP } from '../../src/core/inet.js';
import { DEFAULT_SCHEDULER, type Service, type ServiceKey } from '../../src/core/model.js';
import { ServiceTable } from '../../src/core/services.js';
import '../../src/core/sched/index.js';
import { ErrorCodes } from '../../src/core/errors.js';
import type { DestSettings, ServiceSettings } from '../../src/core/model.js';
import { makeEnv, makeFlow } from './sched/fixtures.js';

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

// Issue 14: the kernel's checks and their order.
const table14Key: ServiceKey = { af: 4, protocol: 6, addr: parseAddr('198.18.0.1')!, port: 80, fwmark: 0 };
const settings: ServiceSettings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };
const masq = (extra: Partial<DestSettings> = {}): DestSettings => ({
  method: 'masq',
  weight: 1,
  uThreshold: 0,
  lThreshold: 0,
  ...extra,
});

function table(): ServiceTable {
  const t = new ServiceTable(makeEnv(), { servicesRemoved: () => {}, destRemoved: () => {} });
  t.add(table14Key, settings);
  return t;
}

const code = (code: string) => (err: unknown) => (err as { code?: string }).code === code;

test('a service that exists is refused before its scheduler is looked up', () => {
  assert.throws(
    () => table().add(table14Key, { ...settings, scheduler: 'bogus' }),
    code(ErrorCodes.SERVICE_EXISTS),
  );
  assert.throws(
    () => table().add({ ...table14Key, port: 81 }, { ...settings, scheduler: 'bogus' }),
    code(ErrorCodes.NO_SCHEDULER),
  );
});

test('a lower threshold above the upper one is out of range, before the real server lookup', () => {
  const t = table();
  const rs = parseAddr('198.19.0.1')!;
  assert.throws(() => t.addDest(table14Key, rs, 80, masq({ lThreshold: 10 })), code(ErrorCodes.OUT_OF_RANGE));
  assert.throws(
    () => t.editDest(table14Key, rs, 80, masq({ uThreshold: 5, lThreshold: 10 })),
    code(ErrorCodes.OUT_OF_RANGE),
  );
  assert.throws(
    () => t.editDest(table14Key, rs, 80, masq({ uThreshold: 10, lThreshold: 5 })),
    code(ErrorCodes.NO_DEST),
  );
  t.addDest(table14Key, rs, 80, masq({ uThreshold: 10, lThreshold: 10 }));
  assert.equal(t.find(table14Key)!.dests.length, 1);
});

test('a real server that is not unicast is refused, after the exists check, and changes nothing', () => {
  const t = table();
  for (const text of ['0.0.0.0', '255.255.255.255', '224.0.0.1'])
    assert.throws(() => t.addDest(table14Key, parseAddr(text)!, 80, masq()), code(ErrorCodes.INVALID), text);
  assert.equal(t.find(table14Key)!.dests.length, 0);
});

test('scheduler none binds a service that never picks; an IPv4 mask of 0.0.0.0 is taken', () => {
  const t = table();
  const none = { ...table14Key, port: 81 };
  t.add(none, { ...settings, scheduler: 'none', flags: 1, timeout: 60, netmaskPrefix: 0 });
  const svc = t.find(none)!;
  t.addDest(none, parseAddr('198.19.0.1')!, 81, masq());
  assert.equal(svc.scheduler.name, 'none');
  assert.equal(svc.scheduler.schedule(svc.schedState, svc.view, makeFlow(0xc6130101)), null);
  assert.equal(svc.settings.netmaskPrefix, 0);
});
