import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../../src/core/conn/tcp-state.js';
import type { ConnTable } from '../../../src/core/conn/table.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import type { Dest } from '../../../src/core/model.js';
import { connSpec, ip, makeDest, makeTable, templateSpec, VIP } from './helpers.js';

type Op =
  | { kind: 'conn'; dest: number; udp: boolean; persistent: boolean }
  | { kind: 'packet'; pick: number; direction: 'in' | 'out' | 'in-only'; flags: number }
  | { kind: 'expire'; pick: number }
  | { kind: 'wait'; ms: number }
  | { kind: 'dropDest'; dest: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('conn' as const),
    dest: fc.nat(2),
    udp: fc.boolean(),
    persistent: fc.boolean(),
  }),
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('packet' as const),
      pick: fc.nat(),
      direction: fc.constantFrom('in' as const, 'out' as const, 'in-only' as const),
      flags: fc.constantFrom(TCP_SYN, TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_ACK, 0),
    }),
  },
  fc.record({ kind: fc.constant('expire' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('wait' as const),
    ms: fc.oneof(fc.nat(5000), fc.nat(120_000), fc.nat(1_000_000)),
  }),
  fc.record({ kind: fc.constant('dropDest' as const), dest: fc.nat(2) }),
);

function liveIds(table: ConnTable): number[] {
  const ids: number[] = [];
  for (let id = 0; id < table.capacity; id++) if (table.isLive(id)) ids.push(id);
  return ids;
}

/** Every destination counter equals what the live entries say; every connection is found both ways. */
function checkConsistent(table: ConnTable, dests: Dest[]): void {
  const ids = liveIds(table);
  assert.equal(table.size, ids.length);
  assert.equal([...table.entries()].length, ids.length);
  for (const dest of dests) {
    const mine = ids.filter((id) => table.dest(id) === dest);
    const conns = mine.filter((id) => !table.isTemplate(id));
    const active = conns.filter((id) => table.state(id) === 'ESTABLISHED').length;
    assert.equal(dest.activeConns, active);
    assert.equal(dest.inactConns, conns.length - active);
    assert.equal(dest.persistConns, mine.length - conns.length);
  }
  for (const id of ids) {
    if (table.isTemplate(id)) continue;
    const af = table.af(id);
    const protocol = table.protocol(id);
    assert.equal(
      table.findIn(af, protocol, table.caddr(id), table.cport(id), table.vaddr(id), table.vport(id)),
      id,
    );
    assert.equal(
      table.findOut(af, protocol, table.daddr(id), table.dport(id), table.caddr(id), table.cport(id)),
      id,
    );
  }
}

test('random create / packet / expire / wait / drop sequences keep the table consistent', () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
      const { table, clock } = makeTable(48);
      const dests = [0, 1, 2].map((i) => makeDest(i, `198.18.1.${10 + i}`, { uThreshold: 5, lThreshold: 0 }));
      let serial = 0;
      for (const step of ops) {
        const live = liveIds(table);
        switch (step.kind) {
          case 'conn': {
            const dest = dests[step.dest]!;
            const client = serial++;
            let template = -1;
            if (step.persistent) {
              const masked = ip(`10.0.${client % 4}.0`);
              template = table.findTemplate(4, IPPROTO_TCP, masked, VIP, 80, 0);
              if (template < 0) {
                template = table.createTemplate(templateSpec(masked, dest, 30_000));
              }
              if (template < 0) break;
            }
            const bound = template >= 0 ? table.dest(template) : dest;
            const protocol = step.udp ? IPPROTO_UDP : IPPROTO_TCP;
            const [size, refused] = [table.size, table.refusedFull];
            const id = table.create(connSpec(client, bound, { protocol, template }));
            // Either it is in, or it was refused and counted; nothing else changes.
            assert.deepEqual(
              [table.size, table.refusedFull],
              id < 0 ? [size, refused + 1] : [size + 1, refused],
            );
            break;
          }
          case 'packet':
            if (live.length) table.onPacket(live[step.pick % live.length]!, step.direction, step.flags);
            break;
          case 'expire':
            if (live.length) assert.equal(table.expire(live[step.pick % live.length]!), true);
            break;
          case 'wait': {
            // What must go: everything due by then, except templates that still control connections.
            const due = new Map(live.map((id) => [id, table.expiresIn(id)]));
            const busy = new Set(live.filter((id) => table.controlledCount(id) > 0));
            clock.advance(step.ms);
            table.advance();
            for (const [id, remaining] of due) {
              if (remaining > step.ms) assert.ok(table.isLive(id), `entry ${id} expired early`);
              else if (!busy.has(id)) assert.ok(!table.isLive(id), `entry ${id} outlived its timeout`);
            }
            break;
          }
          case 'dropDest':
            table.dropDest(dests[step.dest]!);
            assert.ok(liveIds(table).every((id) => table.dest(id) !== dests[step.dest]));
            break;
        }
        checkConsistent(table, dests);
        for (const dest of dests) {
          const total = dest.activeConns + dest.inactConns;
          if (total >= 5) assert.ok(dest.overloaded, 'at uThreshold a dest is overloaded');
          if (total * 4 < 15) assert.ok(!dest.overloaded, 'below 3/4 of uThreshold it is not');
        }
      }
      table.flush();
      assert.equal(table.size, 0);
      for (const dest of dests)
        assert.deepEqual([dest.activeConns, dest.inactConns, dest.persistConns], [0, 0, 0]);
    }),
    { numRuns: 300 },
  );
});

test('paging lists every entry live throughout exactly once, whatever the page size and churn', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 200 }),
      fc.integer({ min: 1, max: 50 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      fc.array(fc.nat(), { maxLength: 60 }),
      (count, pageSize, removals, additions) => {
        const { table } = makeTable(256);
        const dest = makeDest(0, '198.18.1.10');
        const ids = Array.from({ length: count }, (_, n) => table.create(connSpec(n, dest)));
        const removed = new Set<number>();
        const seen: number[] = [];
        let turn = 0;
        for (let from = 0; from >= 0; turn++) {
          const page = table.page(from, pageSize);
          assert.ok(page.entries.length <= pageSize);
          seen.push(...page.entries.map((c) => c.cport));
          from = page.next;
          // Between pages, entries come and go, as they do under a running listing.
          const victim = ids[(removals[turn] ?? 0) % ids.length]!;
          if (removals[turn] !== undefined && table.expire(victim)) removed.add(victim);
          if (additions[turn] !== undefined) table.create(connSpec(1000 + turn, dest));
        }
        // connSpec(n) comes from port 40000 + n.
        ids.forEach((id, n) => {
          if (!removed.has(id)) assert.ok(seen.includes(40000 + n), `entry ${n} listed`);
        });
        assert.equal(new Set(seen).size, seen.length, 'no entry twice');
      },
    ),
  );
});
