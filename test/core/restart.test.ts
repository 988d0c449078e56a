// A restarted director's take-over of the saved table: the time down comes off every timer,
// what ran out is left out, and a table this configuration cannot hold is refused whole.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { parseAddr } from '../../src/core/inet.js';
import { SVC_F_PERSISTENT, type ServiceKey } from '../../src/core/model.js';
import type { ConnRecord, ControlOp } from '../../src/core/ops.js';
import { planRestore, type RestoreTarget } from '../../src/core/restart.js';
import { processPacket as send } from '../helpers/packets.js';

const VIP = '198.18.0.1';
const tcpKey: ServiceKey = { af: 4, protocol: 6, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
const udpKey: ServiceKey = { af: 4, protocol: 17, addr: parseAddr(VIP)!, port: 53, fwmark: 0 };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };
const SAVED_AT = 1_800_000_000_000;
const MAX_AGE = 15 * 60_000;

function configure(realServers = ['198.18.1.11', '198.18.1.12']): ControlOp[] {
  const ops: ControlOp[] = [];
  for (const key of [tcpKey, udpKey]) {
    const flags = key === tcpKey ? SVC_F_PERSISTENT : 0;
    ops.push({
      op: 'add-service',
      key,
      settings: { scheduler: 'rr', flags, timeout: 300, netmaskPrefix: 32, pe: null },
    });
    for (const rs of realServers)
      ops.push({ op: 'add-dest', key, addr: parseAddr(rs)!, port: key.port, settings: masq });
  }
  return ops;
}

function director(clock: ManualClock, ops: ControlOp[], connCapacity = 64): Director {
  const d = new Director({ clock, random: () => 0.25, connCapacity });
  for (const op of ops) d.execute(op);
  return d;
}

/** A director with an established TCP connection (and its persistence template) and a UDP flow. */
function running(clock: ManualClock): Director {
  const d = director(clock, configure());
  send(d, { src: '198.18.0.2', dst: VIP, protocol: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x02 });
  send(d, { src: '198.18.0.2', dst: VIP, protocol: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x10 });
  send(d, { src: '198.18.0.3', dst: VIP, protocol: 'udp', sport: 5000, dport: 53 });
  return d;
}

function target(d: Director, nowMs: number, maxAgeMs = MAX_AGE): RestoreTarget {
  const snapshot = d.snapshot({ connections: false });
  return {
    nowMs,
    services: snapshot.services,
    room: snapshot.connTable!.capacity - snapshot.connTable!.entries,
    maxAgeMs,
  };
}

const byKey = <T extends { cport: number; template: boolean }>(records: readonly T[]) =>
  [...records].sort((a, b) => a.cport - b.cport || Number(a.template) - Number(b.template));

test('the time spent down comes off every timer; the new director lists what the old one had, that much older', () => {
  const clock = new ManualClock(5_000);
  const old = running(clock);
  const saved = { savedAtMs: SAVED_AT, records: old.exportConnections() };
  assert.equal(saved.records.length, 3, 'a connection, its template and a UDP flow');

  // The new run's monotonic clock starts anywhere: only the wall clock spans the two runs.
  const fresh = director(new ManualClock(123), configure());
  const decision = planRestore(saved, target(fresh, SAVED_AT + 7_000));
  assert.ok(decision.ok);
  assert.equal(decision.plan.downMs, 7_000);
  assert.equal(decision.plan.expired, 0);
  const result = fresh.importConnections(decision.plan.records);
  assert.equal(result.imported, 3);

  const before = byKey(old.snapshot({ connections: true }).connections!);
  const after = byKey(fresh.snapshot({ connections: true }).connections!);
  assert.deepEqual(
    after.map((c) => [c.state, c.cport, c.daddr, c.expiresMs]),
    before.map((c) => [c.state, c.cport, c.daddr, c.expiresMs - 7_000]),
  );
});

test('entries whose time ran out while down are left out and counted, the rest taken', () => {
  const clock = new ManualClock(0);
  const old = running(clock);
  const records = old.exportConnections();
  const udp = records.find((r) => r.protocol === 17)!;
  // Down just past the UDP flow's time left (300 s) but within the established connection's.
  const down = udp.expiresMs + 1;
  const fresh = director(new ManualClock(0), configure());
  const decision = planRestore({ savedAtMs: SAVED_AT, records }, target(fresh, SAVED_AT + down));
  assert.ok(decision.ok);
  assert.equal(decision.plan.expired, 2, 'the UDP flow and the 300 s persistence template');
  assert.deepEqual(
    decision.plan.records.map((r) => [r.state, r.cport]),
    [['ESTABLISHED', 40000]],
  );
});

test('any downtime: an entry is taken exactly when it had more time left, with that much less', () => {
  const clock = new ManualClock(0);
  const records = running(clock).exportConnections();
  const fresh = director(new ManualClock(0), configure());
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX_AGE }), (down) => {
      const decision = planRestore({ savedAtMs: SAVED_AT, records }, target(fresh, SAVED_AT + down));
      assert.ok(decision.ok);
      const alive = records.filter((r) => r.expiresMs > down);
      assert.equal(decision.plan.expired, records.length - alive.length);
      assert.deepEqual(
        decision.plan.records,
        alive.map((r) => ({ ...r, expiresMs: r.expiresMs - down })),
      );
    }),
  );
});

test("a table that cannot be this director's is refused whole, naming why", () => {
  const records = running(new ManualClock(0)).exportConnections();
  const saved = { savedAtMs: SAVED_AT, records };
  const refusal = (d: Director, nowMs: number, maxAgeMs = MAX_AGE) => {
    const decision = planRestore(saved, target(d, nowMs, maxAgeMs));
    assert.equal(decision.ok, false);
    return decision.ok ? '' : decision.reason;
  };
  const same = director(new ManualClock(0), configure());
  assert.match(refusal(same, SAVED_AT - 2_000), /saved 2 s in the future/);
  assert.match(refusal(same, SAVED_AT + 61_000, 60_000), /stale: saved 61 s ago, more than 60 s/);

  // The real server the connections are on is gone from the configuration (the UDP one stays).
  const otherServers = director(new ManualClock(0), configure(['198.18.1.13']));
  assert.match(refusal(otherServers, SAVED_AT), /no real server 198\.18\.1\.1[12]:(80|53) any more/);

  const noUdp = director(
    new ManualClock(0),
    configure().filter((op) => !('key' in op) || op.key !== udpKey),
  );
  assert.match(refusal(noUdp, SAVED_AT), /no service UDP 198\.18\.0\.1:53 any more/);

  const small = director(new ManualClock(0), configure(), 2);
  assert.match(refusal(small, SAVED_AT), /3 live entries and the connection table has room for 2/);
});

test('an empty table is taken as it is', () => {
  const fresh = director(new ManualClock(0), []);
  const decision = planRestore({ savedAtMs: SAVED_AT, records: [] as ConnRecord[] }, target(fresh, SAVED_AT));
  assert.deepEqual(decision, { ok: true, plan: { records: [], expired: 0, downMs: 0 } });
});
