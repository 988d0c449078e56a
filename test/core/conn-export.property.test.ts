// Exported connections re-created in another director (a restart, a sync peer) are the same
// connections: same keys, states, real servers, time left, and the same per-server counts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { parseAddr } from '../../src/core/inet.js';
import { SVC_F_PERSISTENT, type ServiceKey } from '../../src/core/model.js';
import type { ConnRecord, ControlOp } from '../../src/core/ops.js';
import { processPacket as send } from '../helpers/packets.js';

const VIP = '198.18.0.1';
const tcpKey: ServiceKey = { af: 4, protocol: 6, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
const udpKey: ServiceKey = { af: 4, protocol: 17, addr: parseAddr(VIP)!, port: 53, fwmark: 0 };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };

function configure(persistent: boolean): ControlOp[] {
  const ops: ControlOp[] = [];
  for (const key of [tcpKey, udpKey]) {
    const flags = persistent && key === tcpKey ? SVC_F_PERSISTENT : 0;
    ops.push({
      op: 'add-service',
      key,
      settings: { scheduler: 'rr', flags, timeout: 300, netmaskPrefix: 24, pe: null },
    });
    for (const rs of ['198.18.1.11', '198.18.1.12', '198.18.1.13'])
      ops.push({ op: 'add-dest', key, addr: parseAddr(rs)!, port: key.port, settings: masq });
  }
  return ops;
}

function director(clock: ManualClock, ops: ControlOp[]): Director {
  const d = new Director({ clock, random: () => 0.25, connCapacity: 4096 });
  for (const op of ops) d.execute(op);
  return d;
}

const recordKey = (r: ConnRecord) =>
  JSON.stringify([r.protocol, r.caddr, r.cport, r.vport, r.daddr, r.dport, r.state, r.template, r.expiresMs]);

const flow = fc.record({
  client: fc.integer({ min: 2, max: 250 }),
  port: fc.integer({ min: 1024, max: 65535 }),
  udp: fc.boolean(),
  // How far the TCP handshake got: SYN only, established, or closing.
  stage: fc.constantFrom('syn', 'established', 'fin'),
  laterMs: fc.integer({ min: 0, max: 30_000 }),
});

test('export then import re-creates every connection and template, with counts and time left', () => {
  fc.assert(
    fc.property(fc.array(flow, { maxLength: 40 }), fc.boolean(), (flows, persistent) => {
      const ops = configure(persistent);
      const clock = new ManualClock(1_000);
      const a = director(clock, ops);
      for (const f of flows) {
        const client = `198.18.0.${f.client}`;
        if (f.udp) {
          send(a, { src: client, dst: VIP, protocol: 'udp', sport: f.port, dport: 53 });
        } else {
          send(a, { src: client, dst: VIP, protocol: 'tcp', sport: f.port, dport: 80, tcpFlags: 0x02 });
          if (f.stage !== 'syn')
            send(a, { src: client, dst: VIP, protocol: 'tcp', sport: f.port, dport: 80, tcpFlags: 0x10 });
          if (f.stage === 'fin')
            send(a, { src: client, dst: VIP, protocol: 'tcp', sport: f.port, dport: 80, tcpFlags: 0x11 });
        }
        clock.advance(f.laterMs);
      }
      const exported = a.exportConnections();
      const b = director(clock, ops);
      const result = b.importConnections(exported);
      // Duplicate client ports reuse an entry: whatever a holds, b holds once.
      assert.equal(result.imported, exported.length);
      assert.deepEqual(b.exportConnections().map(recordKey).sort(), exported.map(recordKey).sort());
      const counts = (d: Director) =>
        d
          .snapshot({ connections: false })
          .services.map((s) => s.dests.map((x) => [x.activeConns, x.inactConns, x.persistConns]));
      assert.deepEqual(counts(b), counts(a));
      // A second import finds everything there already.
      assert.equal(b.importConnections(exported).skipped.present, exported.length);
    }),
    { numRuns: 150 },
  );
});

test('records for services or real servers this director does not have are skipped and counted', () => {
  const clock = new ManualClock(0);
  const a = director(clock, configure(false));
  send(a, { src: '198.18.0.7', dst: VIP, protocol: 'tcp', sport: 4000, dport: 80, tcpFlags: 0x02 });
  send(a, { src: '198.18.0.7', dst: VIP, protocol: 'udp', sport: 4000, dport: 53 });
  const exported = a.exportConnections();
  const b = director(
    clock,
    configure(false).filter((op) => op.op !== 'add-dest' || op.key !== udpKey),
  );
  b.execute({ op: 'delete-service', key: tcpKey });
  assert.deepEqual(b.importConnections(exported), {
    imported: 0,
    refreshed: 0,
    skipped: { noService: 1, noDest: 1, tableFull: 0, present: 0 },
  });
});
