// The master's sync decisions inside the director (SyncSource) and the backup's import: what a
// kernel master would send for the packets a client sends, and what a backup director then holds.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { Director } from '../../../src/core/director.js';
import { formatAddr, parseAddr } from '../../../src/core/inet.js';
import { SVC_F_PERSISTENT, type ServiceKey } from '../../../src/core/model.js';
import { CONN_F_INACTIVE, CONN_F_TEMPLATE } from '../../../src/core/sync/conn.js';
import { decode, encode } from '../../../src/core/sync/message.js';
import { buildPacket, withVnet } from '../../helpers/packets.js';

const VIP = '198.18.0.1';
const key: ServiceKey = { af: 4, protocol: 6, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
const udpKey: ServiceKey = { ...key, protocol: 17, port: 53 };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };

function director(clock: ManualClock, persistent = false): Director {
  const d = new Director({ clock, random: () => 0.25, connCapacity: 1024 });
  for (const k of [key, udpKey]) {
    const flags = persistent && k === key ? SVC_F_PERSISTENT : 0;
    d.execute({
      op: 'add-service',
      key: k,
      settings: { scheduler: 'rr', flags, timeout: 300, netmaskPrefix: 32, pe: null },
    });
    d.execute({ op: 'add-dest', key: k, addr: parseAddr('198.18.1.11')!, port: k.port, settings: masq });
  }
  return d;
}

/** A packet from client 198.18.0.2:port to the VIP; returns the verdict. */
function fromClient(d: Director, sport: number, tcpFlags: number, udp = false): number {
  const frame = withVnet(
    buildPacket({
      src: '198.18.0.2',
      dst: VIP,
      protocol: udp ? 'udp' : 'tcp',
      sport,
      dport: udp ? 53 : 80,
      tcpFlags,
    }),
  );
  const buf = new Uint8Array(frame.length + 1500);
  buf.set(frame);
  return d.process(buf, 0, frame.length);
}

const SYN = 0x02;
const ACK = 0x10;
const FIN_ACK = 0x11;

test('a TCP connection is synced at its third client packet, then every 50th, and at once when it closes', () => {
  const clock = new ManualClock(1000);
  const d = director(clock);
  d.startSyncSource();
  fromClient(d, 40000, SYN);
  fromClient(d, 40000, ACK);
  assert.deepEqual(d.takeSyncConns(), [], 'not before the third packet');
  fromClient(d, 40000, ACK);
  const [first, ...rest] = d.takeSyncConns();
  assert.equal(rest.length, 0);
  assert.equal(first!.stateName, 'ESTABLISHED');
  assert.equal(first!.state, 1);
  assert.equal(first!.flags, 0, 'established: not inactive, masquerading');
  assert.equal(first!.timeoutSec, 900);
  assert.equal(formatAddr(first!.caddr), '198.18.0.2');
  assert.equal(first!.cport, 40000);
  assert.equal(formatAddr(first!.vaddr), VIP);
  assert.equal(formatAddr(first!.daddr), '198.18.1.11');
  let synced = 0;
  for (let pkts = 4; pkts <= 103; pkts++) {
    fromClient(d, 40000, ACK);
    synced += d.takeSyncConns().length;
    if (pkts === 53 || pkts === 103) assert.equal(synced, pkts === 53 ? 1 : 2, `at packet ${pkts}`);
  }
  fromClient(d, 40000, FIN_ACK);
  const [closing] = d.takeSyncConns();
  assert.equal(closing!.stateName, 'CLOSE_WAIT');
  assert.equal(closing!.flags, CONN_F_INACTIVE);
  d.stopSyncSource();
  for (let i = 0; i < 60; i++) fromClient(d, 40000, ACK);
  assert.deepEqual(d.takeSyncConns(), [], 'nothing once stopped');
});

test('a backup director holds what the master sent and forwards the connection when its traffic arrives', () => {
  const clock = new ManualClock(1000);
  const master = director(clock, true);
  const backup = director(clock, true);
  master.startSyncSource();
  for (const flags of [SYN, ACK, ACK]) fromClient(master, 40001, flags);
  const conns = master.takeSyncConns();
  // As the kernel with sync_refresh_period 0: the template goes with every packet of its
  // connections, the connection itself at its third.
  assert.deepEqual(
    conns.map((c) => c.flags & CONN_F_TEMPLATE),
    [CONN_F_TEMPLATE, CONN_F_TEMPLATE, 0, CONN_F_TEMPLATE],
  );
  // Through the kernel's wire format, as a backup receives them.
  const message = decode(encode({ syncId: 1, conns }));
  assert.ok(message.ok);
  assert.deepEqual(backup.importSynced(message.conns), {
    imported: 2,
    refreshed: 2,
    skipped: { noService: 0, noDest: 0, tableFull: 0, present: 0 },
  });
  const held = backup.snapshot({ connections: true }).connections!;
  const conn = held.find((c) => !c.template)!;
  assert.equal(conn.state, 'ESTABLISHED');
  assert.equal(conn.cport, 40001);
  assert.equal(conn.expiresMs, 900_000);
  assert.ok(held.some((c) => c.template));
  assert.equal(backup.snapshot({ connections: false }).services[0]!.dests[0]!.activeConns, 1);

  // A later state replaces the held one (ip_vs_proc_conn's update), and nothing is duplicated.
  fromClient(master, 40001, FIN_ACK);
  const closing = master.takeSyncConns().filter((c) => !(c.flags & CONN_F_TEMPLATE));
  const update = backup.importSynced(closing);
  assert.equal(update.refreshed, 1);
  assert.equal(update.imported, 0);
  const after = backup.snapshot({ connections: true }).connections!.filter((c) => !c.template);
  assert.deepEqual(
    after.map((c) => c.state),
    ['CLOSE_WAIT'],
  );

  // An ACK without a SYN opens nothing on a director that never saw the connection ...
  const stranger = director(clock);
  assert.equal(fromClient(stranger, 40001, ACK), 0);
  // ... but the backup forwards it.
  assert.ok(fromClient(backup, 40001, ACK) > 0);
});

test('connections for a service the backup lacks are counted, not held', () => {
  const clock = new ManualClock(0);
  const master = director(clock);
  master.startSyncSource();
  fromClient(master, 5353, 0, true);
  fromClient(master, 5353, 0, true);
  fromClient(master, 5353, 0, true);
  const conns = master.takeSyncConns();
  assert.equal(conns.length, 1);
  assert.equal(conns[0]!.stateName, 'UDP');
  const backup = new Director({ clock, connCapacity: 16 });
  assert.equal(backup.importSynced(conns).skipped.noService, 1);
  assert.equal(backup.snapshot({ connections: true }).connections!.length, 0);
});

test('every record the master chooses is sendable and comes back from the wire as it went', () => {
  const flow = fc.record({
    port: fc.integer({ min: 1024, max: 65535 }),
    udp: fc.boolean(),
    packets: fc.integer({ min: 1, max: 60 }),
    fin: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(flow, { maxLength: 20 }), fc.boolean(), (flows, persistent) => {
      const clock = new ManualClock(1000);
      const d = director(clock, persistent);
      d.startSyncSource();
      for (const f of flows) {
        fromClient(d, f.port, SYN, f.udp);
        for (let i = 1; i < f.packets; i++) fromClient(d, f.port, ACK, f.udp);
        if (f.fin) fromClient(d, f.port, FIN_ACK, f.udp);
        clock.advance(10);
      }
      const conns = d.takeSyncConns();
      if (conns.length === 0) return;
      const back = decode(encode({ syncId: 3, conns: conns.slice(0, 255) }));
      assert.ok(back.ok);
      assert.deepEqual(back.conns, conns.slice(0, 255));
    }),
    { numRuns: 100 },
  );
});
