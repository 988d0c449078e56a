import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../../src/core/conn/tcp-state.js';
import { addr4, IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import { ErrorCodes } from '../../../src/core/errors.js';
import { connSpec, ip, makeDest, makeTable, templateSpec, VIP } from './helpers.js';

const counters = (d: { activeConns: number; inactConns: number; persistConns: number }) => [
  d.activeConns,
  d.inactConns,
  d.persistConns,
];

test('a new connection is found from the client side and from the real server side', () => {
  const { table } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  const id = table.create(connSpec(5, dest));
  assert.notEqual(id, -1);
  assert.equal(table.size, 1);
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000005), 40005, VIP, 80), id);
  assert.equal(table.findOut(4, IPPROTO_TCP, dest.addr, 80, addr4(0x0a000005), 40005), id);
  // Any field off by one misses.
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000005), 40006, VIP, 80), -1);
  assert.equal(table.findIn(4, IPPROTO_UDP, addr4(0x0a000005), 40005, VIP, 80), -1);
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000005), 40005, VIP, 81), -1);
  assert.equal(table.findOut(4, IPPROTO_TCP, VIP, 80, addr4(0x0a000005), 40005), -1);
  // What NAT needs.
  assert.equal(table.dest(id), dest);
  assert.equal(table.serviceId(id), 1);
  assert.equal(table.state(id), 'NONE');
  assert.deepEqual([table.cport(id), table.vport(id), table.dport(id)], [40005, 80, 80]);
  assert.equal(table.daddrWord(id, 0), dest.addr.a);
  assert.equal(table.vaddrWord(id, 0), VIP.a);
  assert.deepEqual(table.caddr(id), addr4(0x0a000005));
  assert.deepEqual(counters(dest), [0, 1, 0]);
  assert.equal(dest.stats.value('conns'), 0n, 'stats are the director’s to count');
});

test('NAT life cycle: handshake makes it active, FIN closes, expiry returns the counters to 0', () => {
  const { table, clock } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  const id = table.create(connSpec(1, dest));
  table.onPacket(id, 'in', TCP_SYN);
  assert.equal(table.state(id), 'SYN_RECV');
  assert.equal(table.expiresIn(id), 60_000);
  table.onPacket(id, 'out', TCP_SYN | TCP_ACK);
  assert.equal(table.state(id), 'SYN_RECV');
  assert.deepEqual(counters(dest), [0, 1, 0]);
  table.onPacket(id, 'in', TCP_ACK);
  assert.equal(table.state(id), 'ESTABLISHED');
  assert.deepEqual(counters(dest), [1, 0, 0]);
  assert.equal(table.expiresIn(id), 900_000);

  clock.advance(600_000);
  assert.equal(table.advance(), 0);
  table.onPacket(id, 'out', TCP_ACK);
  assert.equal(table.expiresIn(id), 900_000, 'a packet re-arms the timeout');

  table.onPacket(id, 'in', TCP_FIN | TCP_ACK);
  assert.equal(table.state(id), 'CLOSE_WAIT');
  assert.deepEqual(counters(dest), [0, 1, 0]);
  clock.advance(59_999);
  assert.equal(table.advance(), 0);
  clock.advance(1);
  assert.equal(table.advance(), 1);
  assert.equal(table.size, 0);
  assert.deepEqual(counters(dest), [0, 0, 0]);
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000001), 40001, VIP, 80), -1);
  assert.equal(table.findOut(4, IPPROTO_TCP, dest.addr, 80, addr4(0x0a000001), 40001), -1);
});

test('RST moves an established connection to CLOSE, which expires after 10 s, not 900', () => {
  const { table, clock } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  const id = table.create(connSpec(1, dest));
  for (const [dir, flags] of [
    ['in', TCP_SYN],
    ['out', TCP_SYN | TCP_ACK],
    ['in', TCP_ACK],
  ] as const) {
    table.onPacket(id, dir, flags);
  }
  // Let the wheel refile it under its 900 s expiry first: the shorter CLOSE timeout must still win.
  clock.advance(5000);
  assert.equal(table.advance(), 0);
  table.onPacket(id, 'out', TCP_RST);
  assert.equal(table.state(id), 'CLOSE');
  assert.deepEqual(counters(dest), [0, 1, 0]);
  clock.advance(10_000);
  assert.equal(table.advance(), 1);
  assert.deepEqual(counters(dest), [0, 0, 0]);
});

test('an entry with no packet after creation lives 2 s (NONE)', () => {
  const { table, clock } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  table.create(connSpec(1, dest));
  clock.advance(1999);
  assert.equal(table.advance(), 0);
  clock.advance(1);
  assert.equal(table.advance(), 1);
});

test('--set timeouts apply to the next state change or refresh', () => {
  const { table, clock, timeouts } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  timeouts.setIpvs(30, 0, 20);
  const tcp = table.create(connSpec(1, dest));
  table.onPacket(tcp, 'in', TCP_SYN);
  table.onPacket(tcp, 'in', TCP_ACK);
  assert.equal(table.expiresIn(tcp), 30_000);
  const udp = table.create(connSpec(2, dest, { protocol: IPPROTO_UDP }));
  assert.equal(table.state(udp), 'UDP');
  assert.equal(table.expiresIn(udp), 20_000);
  table.onPacket(udp, 'in', 0);
  assert.equal(table.state(udp), 'UDP', 'UDP has no states');
  assert.deepEqual(counters(dest), [1, 1, 0], 'UDP is never active');
  clock.advance(20_000);
  assert.equal(table.advance(), 1);
  clock.advance(10_000);
  assert.equal(table.advance(), 1);
  assert.deepEqual(counters(dest), [0, 0, 0]);
});

test('a template lives while it controls connections, then expires after its own timeout', () => {
  const { table, clock } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  const client = ip('10.0.0.0'); // already masked with /24
  const tpl = table.createTemplate(templateSpec(client, dest));
  assert.equal(table.findTemplate(4, IPPROTO_TCP, client, VIP, 80, 0), tpl);
  assert.equal(table.findTemplate(4, IPPROTO_UDP, client, VIP, 80, 0), -1);
  assert.equal(table.findIn(4, IPPROTO_TCP, client, 0, VIP, 80), -1, 'a template is not a connection');
  assert.deepEqual(counters(dest), [0, 0, 1]);

  const conn = table.create(connSpec(7, dest, { template: tpl }));
  assert.equal(table.template(conn), tpl);
  assert.equal(table.controlledCount(tpl), 1);
  table.onPacket(conn, 'in', TCP_SYN);
  table.onPacket(conn, 'in', TCP_ACK);
  // The connection outlives the template's timeout; packets keep both alive.
  for (let t = 0; t < 10; t++) {
    clock.advance(100_000);
    table.advance();
    table.onPacket(conn, 'in', TCP_ACK);
  }
  assert.equal(table.findTemplate(4, IPPROTO_TCP, client, VIP, 80, 0), tpl);
  // Idle, the connection (900 s) outlives the template (300 s): the template is re-armed meanwhile.
  clock.advance(899_000);
  table.advance();
  assert.equal(table.findTemplate(4, IPPROTO_TCP, client, VIP, 80, 0), tpl);
  clock.advance(1000);
  assert.equal(table.advance(), 1, 'the connection ends');
  assert.equal(table.controlledCount(tpl), 0);
  assert.ok(table.isLive(tpl));
  clock.advance(300_000);
  table.advance();
  assert.equal(table.findTemplate(4, IPPROTO_TCP, client, VIP, 80, 0), -1);
  assert.deepEqual(counters(dest), [0, 0, 0]);
  assert.equal(table.size, 0);
});

test('firewall-mark templates key on the mark with protocol 0 and list as NONE', () => {
  const { table } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  const tpl = table.createTemplate({
    af: 4,
    protocol: IPPROTO_TCP,
    caddr: ip('10.1.2.3'),
    vaddr: VIP,
    vport: 0,
    fwmark: 10,
    daddr: dest.addr,
    dport: 80,
    dest,
    serviceId: 2,
    timeoutMs: 360_000,
  });
  assert.equal(table.findTemplate(4, IPPROTO_UDP, ip('10.1.2.3'), ip('1.1.1.1'), 0, 10), tpl);
  assert.equal(table.findTemplate(4, IPPROTO_TCP, ip('10.1.2.3'), VIP, 0, 0), -1);
  assert.equal(table.findTemplate(4, IPPROTO_TCP, ip('10.1.2.3'), VIP, 0, 11), -1);
  const [entry] = [...table.entries()];
  assert.deepEqual(entry, {
    af: 4,
    protocol: 0,
    caddr: ip('10.1.2.3'),
    cport: 0,
    vaddr: addr4(10),
    vport: 0,
    daddr: dest.addr,
    dport: 80,
    state: 'NONE',
    expiresMs: 360_000,
    template: true,
  });
});

test('expiring a template that still controls connections hides it until they end', () => {
  const { table, clock } = makeTable(2);
  const dest = makeDest(0, '198.18.1.10');
  const spec = templateSpec(ip('10.0.0.0'), dest, 60_000);
  const tpl = table.createTemplate(spec);
  const conn = table.create(connSpec(1, dest, { template: tpl }));
  assert.equal(table.expire(tpl), true);
  assert.equal(table.findTemplate(4, IPPROTO_TCP, spec.caddr, VIP, 80, 0), -1);
  assert.equal(table.size, 1);
  assert.deepEqual(counters(dest), [0, 1, 0]);
  table.onPacket(conn, 'in', TCP_SYN); // must not touch the hidden template
  assert.equal(table.create(connSpec(2, dest)), -1, 'its slot is still held');
  clock.advance(60_000);
  table.advance();
  assert.equal(table.size, 0);
  assert.notEqual(table.createTemplate(spec), -1);
  assert.notEqual(table.create(connSpec(3, dest)), -1, 'both slots are free again');
});

test('dropDest ends exactly the connections and templates of that real server', () => {
  const { table } = makeTable();
  const a = makeDest(0, '198.18.1.10');
  const b = makeDest(1, '198.18.1.11');
  const tpl = table.createTemplate({
    af: 4,
    protocol: IPPROTO_TCP,
    caddr: ip('10.0.0.0'),
    vaddr: VIP,
    vport: 80,
    fwmark: 0,
    daddr: a.addr,
    dport: 80,
    dest: a,
    serviceId: 1,
    timeoutMs: 60_000,
  });
  for (let n = 0; n < 6; n++) table.create(connSpec(n, n % 2 ? b : a, { template: n % 2 ? -1 : tpl }));
  assert.deepEqual(counters(a), [0, 3, 1]);
  assert.equal(table.dropDest(a), 4);
  assert.deepEqual(counters(a), [0, 0, 0]);
  assert.deepEqual(counters(b), [0, 3, 0]);
  assert.equal(table.size, 3);
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000000), 40000, VIP, 80), -1);
  assert.notEqual(table.findIn(4, IPPROTO_TCP, addr4(0x0a000001), 40001, VIP, 80), -1);
  assert.equal(table.dropServices(new Set([1])), 3);
  assert.equal(table.size, 0);
  assert.deepEqual(counters(b), [0, 0, 0]);
});

test('a full table refuses new entries, counts them, and evicts nothing', () => {
  const { table, clock } = makeTable(3);
  const dest = makeDest(0, '198.18.1.10');
  const ids = [1, 2, 3].map((n) => table.create(connSpec(n, dest)));
  assert.ok(ids.every((id) => id >= 0));
  assert.equal(table.create(connSpec(4, dest)), -1);
  assert.equal(table.create(connSpec(5, dest)), -1);
  assert.equal(table.refusedFull, 2);
  assert.equal(table.size, 3);
  assert.deepEqual(counters(dest), [0, 3, 0]);
  ids.forEach((id, i) =>
    assert.equal(table.findIn(4, IPPROTO_TCP, addr4(0x0a000001 + i), 40001 + i, VIP, 80), id),
  );
  table.expire(ids[1]!);
  assert.notEqual(table.create(connSpec(4, dest)), -1);
  clock.advance(2000);
  assert.equal(table.advance(), 3);
  assert.equal(table.size, 0);
});

test('a bad capacity is refused', () => {
  for (const capacity of [0, -1, 1.5, 2 ** 30]) {
    assert.throws(() => makeTable(capacity), { code: ErrorCodes.INVALID });
  }
});

test('IPv6 connections are found both ways and never confused with IPv4', () => {
  const { table } = makeTable();
  const dest = makeDest(1, '2001:db8::10', { uThreshold: 0, lThreshold: 0 }, 8080);
  const client = ip('2001:db8:1::5');
  const vip = ip('2001:db8::1');
  const id = table.create({
    af: 6,
    protocol: IPPROTO_TCP,
    caddr: client,
    cport: 5555,
    vaddr: vip,
    vport: 80,
    daddr: dest.addr,
    dport: 8080,
    dest,
    method: 0,
    serviceId: 3,
    template: -1,
  });
  assert.equal(table.findIn(6, IPPROTO_TCP, client, 5555, vip, 80), id);
  assert.equal(table.findOut(6, IPPROTO_TCP, dest.addr, 8080, client, 5555), id);
  assert.equal(table.findIn(6, IPPROTO_TCP, ip('2001:db8:1::6'), 5555, vip, 80), -1);
  assert.equal(table.findIn(6, IPPROTO_TCP, client, 5555, ip('2001:db8::2'), 80), -1);
  // Same first words, other family.
  assert.equal(table.findIn(4, IPPROTO_TCP, addr4(client.a), 5555, addr4(vip.a), 80), -1);
  const [entry] = [...table.entries()];
  assert.deepEqual(
    [entry!.af, entry!.caddr, entry!.vaddr, entry!.daddr, entry!.dport, entry!.state],
    [6, client, vip, dest.addr, 8080, 'NONE'],
  );
});

test('OVERLOAD is set at uThreshold and cleared below 3/4 of it, or below lThreshold', () => {
  const { table } = makeTable();
  const dest = makeDest(0, '198.18.1.10', { uThreshold: 4, lThreshold: 0 });
  const ids = [1, 2, 3, 4].map((n) => table.create(connSpec(n, dest)));
  assert.equal(dest.overloaded, true);
  table.expire(ids[0]!);
  assert.equal(dest.overloaded, true, '3 is not below 3/4 of 4');
  table.expire(ids[1]!);
  assert.equal(dest.overloaded, false);

  const low = makeDest(1, '198.18.1.11', { uThreshold: 3, lThreshold: 1 });
  const more = [5, 6, 7].map((n) => table.create(connSpec(n, low)));
  assert.equal(low.overloaded, true);
  table.expire(more[0]!);
  table.expire(more[1]!);
  assert.equal(low.overloaded, true, '1 is not below lThreshold 1');
  table.expire(more[2]!);
  assert.equal(low.overloaded, false);
});

test('persistence longer than the timer wheel turn expires on time, not early', () => {
  const { table, clock } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  table.createTemplate(templateSpec(ip('10.0.0.0'), dest, 3 * 3600_000));
  for (let t = 0; t < 3 * 60 - 1; t++) {
    clock.advance(60_000);
    assert.equal(table.advance(), 0, `minute ${t}`);
  }
  clock.advance(59_999);
  assert.equal(table.advance(), 0);
  clock.advance(1);
  assert.equal(table.advance(), 1);
});

test('after a long pause one advance expires everything due, whatever the timeouts', () => {
  const { table, clock } = makeTable(1000);
  const dest = makeDest(0, '198.18.1.10');
  for (let n = 0; n < 500; n++) {
    const id = table.create(connSpec(n, dest));
    if (n % 2) {
      table.onPacket(id, 'in', TCP_SYN);
      table.onPacket(id, 'in', TCP_ACK);
    }
  }
  clock.advance(10 * 3600_000);
  assert.equal(table.advance(), 500);
  assert.deepEqual(counters(dest), [0, 0, 0]);
});

test('flush removes everything and undoes every counter', () => {
  const { table } = makeTable();
  const dest = makeDest(0, '198.18.1.10');
  for (let n = 0; n < 10; n++) table.create(connSpec(n, dest));
  assert.equal(table.flush(), 10);
  assert.equal(table.size, 0);
  assert.equal([...table.entries()].length, 0);
  assert.deepEqual(counters(dest), [0, 0, 0]);
  assert.equal(table.expire(3), false);
});
