import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_DEFENSE,
  Defense,
  defenseSettings,
  nextMode,
  type DefenseSettings,
} from '../../../src/core/conn/defense.js';
import { ConnTable } from '../../../src/core/conn/table.js';
import { TCP_ACK, TCP_SYN } from '../../../src/core/conn/tcp-state.js';
import { ErrorCodes } from '../../../src/core/errors.js';
import { addr4, IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import { connSpec, makeDest, makeTable, seeded, templateSpec, VIP } from './helpers.js';

function tableWith(capacity: number, seed = 1) {
  const made = makeTable(capacity);
  const table = new ConnTable({
    capacity,
    clock: made.clock,
    timeouts: made.timeouts,
    random: seeded(seed),
  });
  return { ...made, table };
}

/** A NAT handshake through the director's state machine: SYN, SYN-ACK, ACK, the server's first ACK. */
function establish(table: ConnTable, id: number): void {
  table.onPacket(id, 'in', TCP_SYN);
  table.onPacket(id, 'out', TCP_SYN | TCP_ACK);
  table.onPacket(id, 'in', TCP_ACK);
  table.onPacket(id, 'out', TCP_ACK);
}

test('the automatic modes follow the pressure; 0 and 3 never move', () => {
  assert.equal(nextMode(1, true), 2);
  assert.equal(nextMode(2, true), 2);
  assert.equal(nextMode(2, false), 1);
  assert.equal(nextMode(1, false), 1);
  assert.equal(nextMode(0, true), 0);
  assert.equal(nextMode(3, false), 3);
});

test('defense settings: defaults filled in, anything else refused with a clear error', () => {
  assert.deepEqual(defenseSettings(), DEFAULT_DEFENSE);
  assert.deepEqual(defenseSettings({ dropEntry: 3, earlyDrop: false }), {
    ...DEFAULT_DEFENSE,
    dropEntry: 3,
    earlyDrop: false,
  });
  const bad: Partial<DefenseSettings>[] = [
    { dropEntry: 2 },
    { secureTcp: 4 as never },
    { dropEntry: NaN as never },
    { thresholdPercent: 0 },
    { thresholdPercent: 101 },
    { thresholdPercent: 50.5 },
    { earlyDrop: 'yes' as never },
  ];
  for (const partial of bad) {
    assert.throws(
      () => defenseSettings(partial),
      (err: { code?: string; message: string }) =>
        err.code === ErrorCodes.INVALID && /drop_entry|secure_tcp|threshold|earlyDrop/.test(err.message),
      JSON.stringify(partial),
    );
  }
});

test('secure_tcp: a client ACK alone does not establish, half-open entries time out in 10 s', () => {
  const { table } = tableWith(8);
  table.secureTcp = true;
  const dest = makeDest(0, '198.18.1.10');
  const blind = table.create(connSpec(1, dest));
  table.onPacket(blind, 'in', TCP_SYN);
  table.onPacket(blind, 'in', TCP_ACK);
  assert.equal(table.state(blind), 'SYN_RECV', 'a spoofed SYN followed by a blind ACK stays half-open');
  assert.equal(table.expiresIn(blind), 10_000);

  const real = table.create(connSpec(2, dest));
  table.onPacket(real, 'in', TCP_SYN);
  table.onPacket(real, 'out', TCP_SYN | TCP_ACK);
  assert.equal(table.state(real), 'SYNACK');
  assert.equal(table.expiresIn(real), 10_000);
  table.onPacket(real, 'in', TCP_ACK);
  assert.equal(table.state(real), 'SYNACK');
  table.onPacket(real, 'out', TCP_ACK);
  assert.equal(table.state(real), 'ESTABLISHED');
  assert.equal(table.expiresIn(real), 900_000);
  assert.equal(dest.activeConns, 1);

  // Without secure_tcp the same blind ACK establishes, as IPVS's ordinary table does.
  table.secureTcp = false;
  const plain = table.create(connSpec(3, dest));
  table.onPacket(plain, 'in', TCP_SYN);
  assert.equal(table.expiresIn(plain), 60_000);
  table.onPacket(plain, 'in', TCP_ACK);
  assert.equal(table.state(plain), 'ESTABLISHED');
});

test('early drop: a full table evicts a half-open entry for a new one, never an established one', () => {
  const { table } = tableWith(4);
  table.earlyDrop = true;
  const dest = makeDest(0, '198.18.1.10');
  const established = [1, 2, 3].map((n) => table.create(connSpec(n, dest)));
  established.forEach((id) => establish(table, id));
  const halfOpen = table.create(connSpec(4, dest));
  table.onPacket(halfOpen, 'in', TCP_SYN);

  const fresh = table.create(connSpec(5, dest));
  assert.notEqual(fresh, -1, 'the new connection got the half-open entry’s slot');
  assert.equal(table.earlyDrops, 1);
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000004), 40004, VIP, 80), -1);
  assert.deepEqual([dest.activeConns, dest.inactConns], [3, 1]);

  // Now every entry but the new one is established, and the new one may be evicted in turn.
  establish(table, fresh);
  assert.equal(table.create(connSpec(6, dest)), -1, 'nothing evictable: refused');
  assert.deepEqual([table.refusedFull, table.earlyDrops, table.size], [1, 1, 4]);
  for (const n of [1, 2, 3, 5]) {
    assert.notEqual(table.findIn(4, IPPROTO_TCP, addr4(0x0a000000 + n), 40000 + n, VIP, 80), -1);
  }
});

test("early drop takes a flood's idle half-open entries, not a handshake under way", () => {
  const { table, clock } = tableWith(256, 3);
  table.earlyDrop = true;
  const dest = makeDest(0, '198.18.1.10');
  // 192 flood SYNs, then 64 real clients whose SYN arrived half a second later.
  for (let n = 0; n < 192; n++) table.onPacket(table.create(connSpec(n, dest)), 'in', TCP_SYN);
  clock.advance(500);
  const clients = Array.from({ length: 64 }, (_, n) => table.create(connSpec(1000 + n, dest)));
  for (const id of clients) table.onPacket(id, 'in', TCP_SYN);
  const keys = clients.map((id) => table.snapshotOf(id));

  // 60 more flood SYNs find the table full, each evicting an entry.
  for (let n = 0; n < 60; n++) {
    clock.advance(1);
    table.onPacket(table.create(connSpec(2000 + n, dest)), 'in', TCP_SYN);
  }
  assert.equal(table.earlyDrops, 60);
  const evictedClients = keys.filter(
    (c) => table.findIn(4, IPPROTO_TCP, c.caddr, c.cport, VIP, 80) === -1,
  ).length;
  assert.equal(evictedClients, 0, 'every real client is still in its handshake');
});

test('drop_entry spares half-open entries that saw a packet within the last second', () => {
  const { table, clock } = tableWith(64);
  const dest = makeDest(0, '198.18.1.10');
  for (let n = 0; n < 10; n++) table.onPacket(table.create(connSpec(n, dest)), 'in', TCP_SYN);
  clock.advance(1500);
  const handshaking = table.create(connSpec(100, dest));
  table.onPacket(handshaking, 'in', TCP_SYN);
  clock.advance(500);

  // Buckets are picked at random: this many picks cover all 64.
  const everyBucket = table.buckets * 16;
  assert.equal(table.dropHalfOpen(everyBucket), 10, 'the old ones go');
  assert.ok(table.isLive(handshaking), 'the new one stays');
  clock.advance(600);
  assert.equal(table.dropHalfOpen(everyBucket), 1, 'until it too has idled for a second');
});

test('early drop spares templates and answered UDP flows; one-sided UDP goes', () => {
  const { table } = tableWith(3);
  table.earlyDrop = true;
  const dest = makeDest(0, '198.18.1.10');
  const template = table.createTemplate(templateSpec(addr4(0x0a000009), dest));
  const answered = table.create(connSpec(1, dest, { protocol: IPPROTO_UDP }));
  table.onPacket(answered, 'in', 0);
  table.onPacket(answered, 'out', 0);
  const oneSided = table.create(connSpec(2, dest, { protocol: IPPROTO_UDP }));
  table.onPacket(oneSided, 'in', 0);
  assert.equal(table.templates, 1);

  assert.notEqual(table.create(connSpec(3, dest, { protocol: IPPROTO_UDP })), -1);
  assert.equal(table.earlyDrops, 1);
  assert.equal(table.findIn(4, IPPROTO_UDP, addr4(0x0a000002), 40002, VIP, 80), -1);
  assert.ok(table.isLive(template) && table.isLive(answered));
  // The new flow is one-sided too: it is what goes next, and then nothing can.
  assert.notEqual(table.create(connSpec(4, dest, { protocol: IPPROTO_UDP })), -1);
  table.onPacket(table.findIn(4, IPPROTO_UDP, addr4(0x0a000004), 40004, VIP, 80), 'out', 0);
  assert.equal(table.create(connSpec(5, dest, { protocol: IPPROTO_UDP })), -1);
  assert.deepEqual(table.stats(), { capacity: 3, entries: 3, templates: 1, refusedFull: 1, earlyDrops: 2 });
});

test('drop_entry and secure_tcp switch on over the threshold, act, and switch off below it', () => {
  const { table, clock } = tableWith(1024, 7);
  const defense = new Defense(table, defenseSettings({ thresholdPercent: 50 }));
  const dest = makeDest(0, '198.18.1.10');
  const established = Array.from({ length: 100 }, (_, n) => table.create(connSpec(n, dest)));
  established.forEach((id) => establish(table, id));
  defense.tick(clock.now());
  assert.deepEqual([defense.snapshot().dropEntry, table.secureTcp], [1, false], 'under the threshold');

  for (let n = 100; n < 700; n++) table.onPacket(table.create(connSpec(n, dest)), 'in', TCP_SYN);
  clock.advance(500);
  defense.tick(clock.now());
  assert.equal(defense.snapshot().dropEntry, 1, 'checked once a second only');
  clock.advance(500);
  defense.tick(clock.now());
  const on = defense.snapshot();
  assert.deepEqual([on.dropEntry, on.secureTcp, table.secureTcp], [2, 2, true]);
  assert.equal(on.secureTcpActivations, 1);
  assert.ok(on.droppedEntries > 0, 'a scan of 1/32 of the buckets found half-open entries');
  assert.equal(table.size, 700 - on.droppedEntries);
  for (const id of established) assert.equal(table.state(id), 'ESTABLISHED');

  // Keep scanning until the table falls under the threshold: the strategies switch off.
  for (let second = 0; second < 200 && table.size * 2 >= table.capacity; second++) {
    clock.advance(1000);
    defense.tick(clock.now());
  }
  clock.advance(1000);
  defense.tick(clock.now());
  const off = defense.snapshot();
  assert.deepEqual([off.dropEntry, off.secureTcp, table.secureTcp], [1, 1, false]);
  assert.equal(off.secureTcpActivations, 1);
  assert.equal(dest.activeConns, 100, 'every established connection is still there');
});

test('mode 3 is always on, mode 0 never, whatever the occupancy', () => {
  const { table, clock } = tableWith(64);
  const always = new Defense(table, defenseSettings({ dropEntry: 3, secureTcp: 3 }));
  assert.equal(table.secureTcp, true);
  const dest = makeDest(0, '198.18.1.10');
  table.onPacket(table.create(connSpec(1, dest)), 'in', TCP_SYN);
  // One bucket in 32 is scanned: with 64 buckets, two random ones a second.
  for (let second = 0; second < 200 && table.size > 0; second++) {
    clock.advance(1000);
    always.tick(clock.now());
  }
  assert.equal(table.size, 0);
  assert.equal(always.snapshot().droppedEntries, 1);

  const never = new Defense(table, defenseSettings({ dropEntry: 0, secureTcp: 0, earlyDrop: false }));
  assert.deepEqual([table.secureTcp, table.earlyDrop], [false, false]);
  for (let n = 0; n < 64; n++) table.onPacket(table.create(connSpec(n, dest)), 'in', TCP_SYN);
  clock.advance(1000);
  never.tick(clock.now());
  assert.deepEqual([never.snapshot().dropEntry, never.snapshot().droppedEntries, table.size], [0, 0, 64]);
  assert.equal(table.create(connSpec(99, dest)), -1);
});
