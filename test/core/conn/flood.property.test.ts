// A director whose connection table is at capacity under a SYN flood from random sources: the
// established connections survive, new legitimate ones get in, and the counters say what happened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { Director } from '../../../src/core/director.js';
import { addr4, formatAddr, IPPROTO_TCP, parseAddr } from '../../../src/core/inet.js';
import type { ServiceKey } from '../../../src/core/model.js';
import { buildPacket, tcpSegment, withVnet, type PacketSpec } from '../../helpers/packets.js';
import { seeded } from './helpers.js';

const SYN = 0x02;
const ACK = 0x10;
const VIP = '198.18.0.1';
const RS = '198.18.1.11';
const CAPACITY = 256;
const KEY: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };

/** True when the director put the packet back on the wire (forwarded), false when it dropped it. */
function forwarded(d: Director, spec: PacketSpec): boolean {
  const input = withVnet(buildPacket(spec));
  const buf = new Uint8Array(input.length + 1500);
  buf.set(input);
  return d.process(buf, 0, input.length) > 0;
}

const segment = tcpSegment;

/** A legitimate client's whole handshake through the director, as NAT sees it; false if any step dropped. */
function handshake(d: Director, client: string, port: number): boolean {
  return (
    forwarded(d, segment(client, port, VIP, 80, SYN)) &&
    forwarded(d, segment(RS, 8080, client, port, SYN | ACK)) &&
    forwarded(d, segment(client, port, VIP, 80, ACK)) &&
    forwarded(d, segment(RS, 8080, client, port, ACK))
  );
}

/** A flood source: anywhere in 198.18.128.0/17, any port (the lab's range; nothing is sent). */
const floodSource = fc.record({
  host: fc.integer({ min: 0, max: 0x7fff }),
  port: fc.integer({ min: 1024, max: 65535 }),
});

const step = fc.oneof(
  { weight: 20, arbitrary: fc.array(floodSource, { minLength: 1, maxLength: 64 }).map((syns) => ({ syns })) },
  { weight: 3, arbitrary: fc.constant({ legit: true as const }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 3000 }).map((ms) => ({ ms })) },
);

test('under a SYN flood a full table keeps its established connections and lets new legitimate ones in', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: CAPACITY / 4 }),
      fc.array(step, { minLength: 10, maxLength: 60 }),
      fc.integer(),
      fc.uniqueArray(floodSource, {
        minLength: CAPACITY,
        maxLength: CAPACITY,
        selector: ({ host, port }) => host * 65536 + port,
      }),
      (established, steps, seed, prefill) => {
        const clock = new ManualClock(1000);
        // The table's own defenses, without the SYN proxy, which would keep the flood out of it altogether (syn-proxy.test.ts).
        const d = new Director({
          clock,
          random: seeded(seed),
          connCapacity: CAPACITY,
          defense: { synProxy: 0 },
        });
        d.execute({
          op: 'add-service',
          key: KEY,
          settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
        });
        d.execute({
          op: 'add-dest',
          key: KEY,
          addr: parseAddr(RS)!,
          port: 8080,
          settings: { method: 'masq', weight: 1, uThreshold: 0, lThreshold: 0 },
        });
        // Up to a quarter of the table established before the flood; the rest is the flood's to fill.
        const clients: [string, number][] = [];
        for (let i = 0; i < established; i++) clients.push(['198.18.0.100', 10000 + i]);
        for (const [client, port] of clients) assert.ok(handshake(d, client, port));

        const flood = (syns: { host: number; port: number }[]) => {
          for (const { host, port } of syns) {
            forwarded(d, segment(formatAddr(addr4(0xc6128000 + host)), port, VIP, 80, SYN));
          }
        };
        // The flood fills the table first, then goes on between the other steps.
        flood(prefill);
        assert.equal(d.snapshot({ connections: false }).connTable!.entries, CAPACITY);
        let legitimate = 0;
        for (const s of steps) {
          if ('syns' in s) {
            flood(s.syns);
          } else if ('legit' in s) {
            const port = 30000 + legitimate++;
            assert.ok(handshake(d, '198.18.0.101', port), 'a new legitimate connection got in');
            clients.push(['198.18.0.101', port]);
          } else {
            clock.advance(s.ms);
            d.tick();
            // The established clients keep talking, as live connections do.
            for (const [client, port] of clients) {
              assert.ok(
                forwarded(d, segment(client, port, VIP, 80, ACK)),
                `${client}:${port} still forwarded`,
              );
            }
          }
        }
        // Every established connection is still there and still ESTABLISHED.
        const live = d.snapshot({ connections: true });
        const states = new Map(live.connections!.map((c) => [`${formatAddr(c.caddr)}:${c.cport}`, c.state]));
        for (const [client, port] of clients) assert.equal(states.get(`${client}:${port}`), 'ESTABLISHED');

        const table = live.connTable!;
        assert.ok(table.entries <= CAPACITY);
        assert.equal(table.entries, live.connections!.length);
        assert.equal(live.services[0]!.dests[0]!.activeConns, clients.length);
        // Refusals and evictions add up: each flood SYN either took a free slot, evicted, or was refused.
        assert.equal(live.dataPath.drops['table-full'] ?? 0, table.refusedFull);
        assert.equal(table.refusedFull, 0, 'with a quarter established, early drop always found room');
        if (!steps.some((s) => 'ms' in s)) {
          // The clock never moved: nothing expired and drop_entry never ran, so every entry the
          // table made beyond its capacity went by early drop.
          const created = Number(live.services[0]!.stats.conns);
          assert.equal(table.entries, created - table.earlyDrops);
          assert.equal(table.defense.droppedEntries, 0);
        }
      },
    ),
    { numRuns: 40, endOnFailure: true },
  );
});
