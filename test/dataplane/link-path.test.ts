// The layer-2 loop over fake ports with the real director: a client's SYN comes in on the VIP's
// interface and leaves on the real server's with the real server's MAC; the reply goes back with
// the client's; no MAC yet means a counted drop and a resolution asked for; what the director
// gives back reaches the host through the TUN device; faults are counted, never thrown.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { formatAddr, IPPROTO_TCP, parseAddr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import { parsePacket } from '../../src/core/packet/parse.js';
import { EMSGSIZE } from '../../src/dataplane/af-packet.js';
import { EMPTY_FILTER } from '../../src/dataplane/l2-filter.js';
import { LINK_UPDATE_MS } from '../../src/dataplane/link-path.js';
import { Neighbours } from '../../src/dataplane/neighbours.js';
import { PacketLoop, SPIN_MS } from '../../src/dataplane/packet-loop.js';
import { NextHopCache, type NextHop } from '../../src/dataplane/routes.js';
import { LinkMtus } from '../../src/dataplane/links.js';
import {
  buildPacket,
  partialVnetFor,
  withVnet,
  type PacketSpec,
  type VnetFields,
} from '../helpers/packets.js';
import { FakeDriver } from './fake-device.js';
import { FakeLinkDriver, FakeLinkSource, FakeNeighbourSource, FakeNextHops } from './fake-link.js';

const a = (text: string) => parseAddr(text)!;
const VIP = '198.18.0.1';
const RS = '198.18.1.11';
const CLIENT = '198.18.0.2';
const CLIENT_MAC = Uint8Array.from([2, 0xc, 0, 0, 0, 2]);
const RS_MAC = Uint8Array.from([2, 0xd, 0, 0, 0, 11]);
const key: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: a(VIP), port: 80, fwmark: 0 };
const settings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };

/**
 * vnet | Ethernet (to the port's MAC, from `from`) | IP, as a ring slot holds it (the vnet
 * header's offsets counted from the IP header in `vnet`, from the Ethernet header in the frame).
 */
function frame(
  spec: PacketSpec,
  to: Uint8Array,
  from: Uint8Array,
  vnet?: (ip: Uint8Array) => VnetFields,
): Uint8Array {
  const ip = buildPacket(spec);
  const fields = vnet?.(ip) ?? {};
  if (fields.csumStart !== undefined) fields.csumStart += 14;
  if (fields.hdrLen !== undefined) fields.hdrLen += 14;
  const packet = withVnet(ip, fields);
  const out = new Uint8Array(packet.length + 14);
  out.set(packet.subarray(0, 10));
  out.set([...to, ...from, 0x08, 0x00], 10);
  out.set(packet.subarray(10), 24);
  return out;
}

function setup() {
  const clock = new ManualClock(0);
  const tun = new FakeDriver();
  const link = new FakeLinkDriver(['pub0', 'br0']);
  const source = new FakeNeighbourSource();
  source.table.push({ ifindex: 1, addr: a(CLIENT), mac: CLIENT_MAC });
  const routes = new Map<string, NextHop>([
    [CLIENT, { kind: 'link', ifindex: 1, via: a(CLIENT) }],
    [RS, { kind: 'link', ifindex: 2, via: a(RS) }],
    ['198.18.1.1', { kind: 'local' }],
  ]);
  const hops = new FakeNextHops(routes);
  const links = new FakeLinkSource();
  links.table.push({ ifindex: 1, mtu: 1500 }, { ifindex: 2, mtu: 1500 });
  const director = new Director({ clock, random: () => 0.5, connCapacity: 64 });
  const loop = new PacketLoop({
    report: () => undefined,
    director,
    driver: tun,
    clock,
    frameMax: 65546,
    mainDevice: 'lvs0',
    idlePollMs: 0,
    tickMs: 100,
    link: {
      driver: link,
      neighbours: new Neighbours(source, clock),
      links: new LinkMtus(links),
      nextHops: new NextHopCache(hops, clock, 5000),
    },
  });
  loop.execute({ op: 'add-service', key, settings });
  loop.execute({ op: 'add-dest', key, addr: a(RS), port: 80, settings: masq });
  loop.setLinkPlan({
    interfaces: ['br0', 'pub0'],
    spec: {
      services: [{ addr: a(VIP), protocol: IPPROTO_TCP, port: 80 }],
      realServers: [{ addr: a(RS), protocol: IPPROTO_TCP, port: 80 }],
      locals: [a('198.18.1.1')],
      directReplies: [],
    },
  });
  const pub0 = link.ports.get('pub0')!;
  const br0 = link.ports.get('br0')!;
  return { loop, clock, driver: tun, tun: tun.opened.get('lvs0')!, pub0, br0, source, hops, links };
}

const syn = (sport = 40000): PacketSpec => ({ src: CLIENT, dst: VIP, sport, dport: 80, tcpFlags: 0x02 });

/** The IP packet of a sent frame, as "src:sport>dst:dport", and its MACs. */
function sentIp(wire: Uint8Array): { flow: string; dst: string; src: string } {
  const p = parsePacket(wire, 24, wire.length - 24);
  assert.ok(p.ok);
  const mac = (m: Uint8Array) => [...m].join('.');
  return {
    flow: `${formatAddr(p.saddr)}:${p.sport}>${formatAddr(p.daddr)}:${p.dport}`,
    dst: mac(wire.subarray(10, 16)),
    src: mac(wire.subarray(16, 22)),
  };
}

describe('the layer-2 loop', () => {
  it("names the packet plane and its plan's interfaces in the snapshot (the doctor checks them)", () => {
    const { loop } = setup();
    const { dataPath } = loop.snapshot(false);
    assert.equal(dataPath.plane, 'packet');
    assert.deepEqual(dataPath.interfaces, ['br0', 'pub0']);
  });

  it('asks the real server resolved at once, drops as no-neighbour until it is, then forwards with its MAC', () => {
    const { loop, clock, pub0, br0, source } = setup();
    assert.deepEqual(source.asked, ['2/198.18.1.11'], 'resolved when the plan named it');
    assert.ok(pub0.filter && br0.filter, 'each port has the filter');
    pub0.inbox.push(frame(syn(), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 0);
    assert.equal(loop.counters().drops.noNeighbour, 1);
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    clock.advance(1000);
    pub0.inbox.push(frame(syn(), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 1);
    assert.deepEqual(sentIp(br0.sent[0]!), {
      flow: `${CLIENT}:40000>${RS}:80`,
      dst: [...RS_MAC].join('.'),
      src: [...br0.mac].join('.'),
    });
    // The reply goes back out of the VIP's interface, to the client's MAC, from the VIP.
    br0.inbox.push(frame({ src: RS, dst: CLIENT, sport: 80, dport: 40000, tcpFlags: 0x12 }, br0.mac, RS_MAC));
    loop.turn();
    assert.deepEqual(sentIp(pub0.sent[0]!), {
      flow: `${VIP}:80>${CLIENT}:40000`,
      dst: [...CLIENT_MAC].join('.'),
      src: [...pub0.mac].join('.'),
    });
    const counters = loop.counters();
    assert.equal(counters.txPackets, 2);
  });

  it("direct routing: the client's packet, still to the VIP, goes to the real server's MAC, and follows a new MAC", () => {
    const { loop, clock, pub0, br0, source, tun } = setup();
    const route = { ...masq, method: 'route' as const };
    loop.execute({ op: 'edit-dest', key, addr: a(RS), port: 80, settings: route });
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    pub0.inbox.push(frame({ ...syn(), ttl: 64 }, pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.deepEqual(sentIp(br0.sent[0]!), {
      flow: `${CLIENT}:40000>${VIP}:80`,
      dst: [...RS_MAC].join('.'),
      src: [...br0.mac].join('.'),
    });
    assert.equal(br0.sent[0]![24 + 8], 63, 'one hop: the TTL one less');
    // The real server's interface is replaced: the neighbour table follows, and so do its frames.
    const moved = Uint8Array.from([2, 0xd, 0, 0, 1, 11]);
    source.queued.push({ ifindex: 2, addr: a(RS), mac: moved });
    clock.advance(1000);
    pub0.inbox.push(frame({ ...syn(), tcpFlags: 0x10 }, pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(sentIp(br0.sent[1]!).dst, [...moved].join('.'));
    assert.equal(pub0.sent.length, 0, 'nothing goes back: the real server answers the client itself');
    // Too big for the link: refused, never given to the kernel, which would take it for the VIP.
    br0.refuse = EMSGSIZE;
    pub0.inbox.push(frame({ ...syn(), tcpFlags: 0x10 }, pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(tun.outbox.length, 0);
    assert.equal(loop.counters().drops.writeFailed, 1);
  });

  it("gives the host what is not the director's through the TUN device, unchanged", () => {
    const { loop, pub0, br0, tun, source } = setup();
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    // An ICMP echo to the VIP is no service's: given back unchanged.
    const ping = frame({ src: CLIENT, dst: VIP, protocol: 'icmp', icmpType: 8 }, pub0.mac, CLIENT_MAC);
    pub0.inbox.push(ping);
    loop.turn();
    assert.equal(tun.outbox.length, 1);
    assert.deepEqual(tun.outbox[0]!.subarray(10), ping.subarray(24));
    assert.equal(br0.sent.length + pub0.sent.length, 0);
  });

  it('counts a frame cut short, a runt, no route and a refused send; an oversized one goes to the host', () => {
    const { loop, pub0, br0, tun, source, hops } = setup();
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    pub0.inbox.push('cut-short', new Uint8Array(20));
    loop.turn();
    assert.equal(loop.counters().drops.badFrame, 2);
    br0.refuse = 105; // ENOBUFS
    pub0.inbox.push(frame(syn(40001), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(loop.counters().drops.writeFailed, 1);
    br0.refuse = EMSGSIZE;
    pub0.inbox.push(frame(syn(40002), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(tun.outbox.length, 1, 'the kernel fragments it or answers for it');
    const p = parsePacket(tun.outbox[0]!, 10, tun.outbox[0]!.length - 10);
    assert.ok(p.ok && formatAddr(p.daddr) === RS);
    hops.routes.delete(RS);
    br0.refuse = 0;
    // A new flow to the real server with no route now (the cache looks again after 5 s).
    pub0.inbox.push(frame(syn(40003), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 1, 'the cached route still holds');
  });

  it("a super-packet whose segments the egress link cannot take goes to the host; once the link's MTU grows it goes out", () => {
    const { loop, clock, pub0, br0, tun, source, links } = setup();
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    pub0.inbox.push(frame(syn(), pub0.mac, CLIENT_MAC));
    loop.turn();
    // Three 1500-byte segments as one TSO frame from the real server.
    const reply: PacketSpec = {
      src: RS,
      dst: CLIENT,
      sport: 80,
      dport: 40000,
      tcpFlags: 0x10,
      payload: new Uint8Array(3 * 1460),
      partial: true,
    };
    const tso = (ip: Uint8Array) => partialVnetFor(ip, { gsoSize: 1460 });
    links.queued.push({ ifindex: 1, mtu: 1280 });
    clock.advance(LINK_UPDATE_MS);
    br0.inbox.push(frame(reply, br0.mac, RS_MAC, tso));
    loop.turn();
    assert.equal(pub0.sent.length, 0);
    assert.equal(tun.outbox.length, 1, "the kernel's forwarding answers 'packet too big' to the VIP");
    const p = parsePacket(tun.outbox[0]!, 10, tun.outbox[0]!.length - 10);
    assert.ok(p.ok && formatAddr(p.saddr) === VIP && formatAddr(p.daddr) === CLIENT);
    links.queued.push({ ifindex: 1, mtu: 1500 });
    clock.advance(LINK_UPDATE_MS);
    br0.inbox.push(frame(reply, br0.mac, RS_MAC, tso));
    loop.turn();
    assert.equal(pub0.sent.length, 1);
    assert.equal(tun.outbox.length, 1);
  });

  it('keeps looking at the rings for a while after a frame, yielding the core, then sleeps in poll', () => {
    const { loop, clock, driver, pub0, br0, source } = setup();
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    pub0.inbox.push(frame(syn(), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 1);
    driver.waits = 0;
    loop.turn();
    clock.advance(1);
    loop.turn();
    assert.deepEqual([driver.yields, driver.waits], [2, 0], 'looking again, not sleeping');
    // The next frame, met while looking, is forwarded at once.
    pub0.inbox.push(frame(syn(40001), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 2);
    clock.advance(SPIN_MS);
    loop.turn();
    assert.deepEqual([driver.yields, driver.waits], [2, 1], 'idle for long enough: asleep in poll');
  });

  it('sends a burst in order, a batch at a time, and gives every ring slot back by the end of the turn', () => {
    const { loop, pub0, br0, source } = setup();
    source.queued.push({ ifindex: 2, addr: a(RS), mac: RS_MAC });
    for (let i = 0; i < 70; i++) pub0.inbox.push(frame(syn(41000 + i), pub0.mac, CLIENT_MAC));
    loop.turn();
    assert.equal(br0.sent.length, 64, 'one batch of the port per turn');
    assert.deepEqual(
      br0.sent.map((wire) => sentIp(wire).flow),
      Array.from({ length: 64 }, (_, i) => `${CLIENT}:${41000 + i}>${RS}:80`),
    );
    assert.ok(pub0.mostTaken <= 32, `slots held at once: ${pub0.mostTaken}`);
    assert.equal(pub0.taken, 0, 'all given back');
    loop.turn();
    assert.equal(br0.sent.length, 70);
    assert.equal(loop.counters().txPackets, 70);
  });

  it('changes ports with the plan and refuses a plan with an interface that cannot be opened, changing nothing', () => {
    const { loop, pub0, br0 } = setup();
    assert.throws(
      () =>
        loop.setLinkPlan({
          interfaces: ['pub0', 'eth9'],
          spec: EMPTY_FILTER,
        }),
      /no interface eth9/,
    );
    assert.ok(!pub0.closed && !br0.closed);
    loop.setLinkPlan({ interfaces: ['pub0'], spec: EMPTY_FILTER });
    assert.ok(br0.closed && !pub0.closed);
  });
});
