// Direct routing through the director: what a real server holding the VIP receives (the client's
// packet, only the TTL one less), where the link must deliver it (nextHop), the TCP states of a
// director that sees only the client, "packet too big" for what the real server's link cannot
// take, and the refusal by a data plane that cannot deliver it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { Director } from '../../../src/core/director.js';
import type { ForwardingCapability } from '../../../src/core/forward/types.js';
import { formatAddr, IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import type { DestSettings, ServiceKey } from '../../../src/core/model.js';
import { VNET_HDR_LEN } from '../../../src/core/packet/vnet.js';
import {
  addr,
  addrBytes,
  buildPacket,
  fragNeeded,
  fragmentedDatagram,
  ipv4HeaderValid,
  l4ChecksumValid,
  partialVnetFor,
  sendFrame as send,
  tcpSegment,
  withVnet,
} from '../../helpers/packets.js';

const VIP = '198.18.0.1';
const CLIENT = '198.18.0.100';
const RIP = '198.18.1.11';
const key: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: addr(VIP), port: 80, fwmark: 0 };
const route: DestSettings = { method: 'route', weight: 1, uThreshold: 0, lThreshold: 0 };
const masq: DestSettings = { ...route, method: 'masq' };
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;
const RST = 0x04;
const PSH = 0x08;

const RR = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };

function routeDirector(forwarding?: ForwardingCapability): Director {
  const d = new Director({ clock: new ManualClock(1000), random: () => 0.5, connCapacity: 1024, forwarding });
  d.execute({ op: 'add-service', key, settings: RR });
  d.execute({ op: 'add-dest', key, addr: addr(RIP), port: 80, settings: route });
  return d;
}

const nextHop = (d: Director): string | null => (d.nextHop ? formatAddr(d.nextHop) : null);

/** The packet as the real server must receive it: the client's, with the TTL one less. */
function forwardedAs(packet: Uint8Array): Uint8Array {
  const expected = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), ttl: packet[8]! - 1 });
  assert.equal(expected.length, packet.length);
  return expected;
}

test('a client packet leaves unchanged but for the TTL, to be delivered to the real server', () => {
  const d = routeDirector();
  const packet = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), ttl: 61 });
  const [frame, ...more] = send(d, withVnet(packet));
  assert.deepEqual(more, []);
  const ip = frame!.subarray(VNET_HDR_LEN);
  assert.ok(ipv4HeaderValid(ip), 'the header checksum follows the TTL');
  assert.ok(l4ChecksumValid(ip));
  assert.deepEqual(ip, forwardedAs(packet), 'addresses, ports and payload as the client sent them');
  assert.equal(ip[8], 60);
  assert.equal(nextHop(d), RIP, 'the link delivers it to the real server, not to the VIP');
  assert.equal(d.snapshot({ connections: false }).services[0]!.stats.inPkts, '1');
});

test('nextHop is null for a frame whose IP destination is where it goes, and after a drop or a pass', () => {
  const d = routeDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  assert.equal(nextHop(d), RIP);
  assert.deepEqual(send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40001, VIP, 80, ACK)))), []);
  assert.equal(nextHop(d), null, 'a dropped packet (no connection)');
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, '198.18.0.9', 22, SYN))));
  assert.equal(nextHop(d), null, 'a packet given back to the host');
  const nat: ServiceKey = { ...key, port: 8080 };
  d.execute({ op: 'add-service', key: nat, settings: RR });
  d.execute({ op: 'add-dest', key: nat, addr: addr('198.18.1.12'), port: 80, settings: masq });
  const [frame] = send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40002, VIP, 8080, SYN))));
  assert.deepEqual([...frame!.subarray(VNET_HDR_LEN + 16, VNET_HDR_LEN + 20)], [198, 18, 1, 12]);
  assert.equal(nextHop(d), null, 'NAT: the frame says where it goes');
});

test('a partial checksum and a GSO super-packet pass as they are, for the device to finish', () => {
  const d = routeDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const packet = buildPacket({
    ...tcpSegment(CLIENT, 40000, VIP, 80, ACK | PSH),
    payload: new Uint8Array(4000).fill(3),
    partial: true,
  });
  const vnet = partialVnetFor(packet, { gsoSize: 1400 });
  const [frame, ...more] = send(d, withVnet(packet, vnet));
  assert.deepEqual(more, [], 'not split: the real server is a hop away on the link');
  assert.deepEqual(frame!.subarray(0, VNET_HDR_LEN), withVnet(packet, vnet).subarray(0, VNET_HDR_LEN));
  const ip = frame!.subarray(VNET_HDR_LEN);
  assert.ok(ipv4HeaderValid(ip));
  assert.deepEqual(ip.subarray(12), packet.subarray(12), 'addresses and L4 untouched, partial sum included');
});

test('a packet whose TTL would reach 0 is dropped and counted, and changes no state', () => {
  const d = routeDirector();
  assert.deepEqual(
    send(d, withVnet(buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), ttl: 1 }))),
    [],
  );
  const snapshot = d.snapshot({ connections: true });
  assert.equal(snapshot.dataPath.drops['ttl-expired'], 1);
  assert.equal(snapshot.services[0]!.stats.inPkts, '0');
  assert.equal(snapshot.connections![0]!.state, 'NONE', 'scheduled, but no packet moved it');
  assert.equal(nextHop(d), null);
});

test('TCP follows INPUT_ONLY: the client alone moves the connection to ESTABLISHED and out', () => {
  const d = routeDirector();
  const state = () => d.snapshot({ connections: true }).connections![0]!.state;
  const dest = () => d.snapshot({ connections: false }).services[0]!.dests[0]!;
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  assert.equal(state(), 'SYN_RECV');
  assert.deepEqual([dest().activeConns, dest().inactConns], [0, 1]);
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, ACK))));
  assert.equal(state(), 'ESTABLISHED');
  assert.deepEqual([dest().activeConns, dest().inactConns], [1, 0]);
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, FIN | ACK))));
  assert.equal(state(), 'FIN_WAIT', "INPUT_ONLY's fin row (NAT's INPUT would say CLOSE_WAIT)");
  assert.deepEqual([dest().activeConns, dest().inactConns], [0, 1]);
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, ACK))));
  assert.equal(state(), 'FIN_WAIT');
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, RST))));
  assert.equal(state(), 'CLOSE');
});

test('IPv6: the hop limit goes down by one, nothing else changes', () => {
  const d = new Director({ clock: new ManualClock(1000), random: () => 0.5, connCapacity: 64 });
  const v6: ServiceKey = { af: 6, protocol: IPPROTO_TCP, addr: addr('2001:db8::1'), port: 80, fwmark: 0 };
  d.execute({ op: 'add-service', key: v6, settings: { ...RR, netmaskPrefix: 128 } });
  d.execute({ op: 'add-dest', key: v6, addr: addr('2001:db8:1::11'), port: 80, settings: route });
  const packet = buildPacket({ ...tcpSegment('2001:db8:2::100', 40000, '2001:db8::1', 80, SYN), ttl: 64 });
  const [frame] = send(d, withVnet(packet));
  const ip = frame!.subarray(VNET_HDR_LEN);
  assert.equal(ip[7], 63);
  assert.deepEqual(ip.subarray(8), packet.subarray(8));
  assert.ok(l4ChecksumValid(ip));
  assert.equal(nextHop(d), '2001:db8:1::11');
});

test("a packet the real server's link cannot take: packet too big from the VIP (IPv6, IPv4 with DF)", () => {
  const d = new Director({ clock: new ManualClock(1000), random: () => 0.5, connCapacity: 64 });
  const v6: ServiceKey = { af: 6, protocol: IPPROTO_TCP, addr: addr('2001:db8::1'), port: 80, fwmark: 0 };
  d.execute({ op: 'add-service', key: v6, settings: { ...RR, netmaskPrefix: 128 } });
  d.execute({ op: 'add-dest', key: v6, addr: addr('2001:db8:1::11'), port: 80, settings: route });
  d.execute({ op: 'add-service', key, settings: RR });
  d.execute({ op: 'add-dest', key, addr: addr(RIP), port: 80, settings: route });
  d.setRealServerRoute(addr('2001:db8:1::11'), { source: addr('2001:db8:1::1'), mtu: 1280 });
  d.setRealServerRoute(addr(RIP), { source: addr('198.18.1.1'), mtu: 1280 });
  const payload = new Uint8Array(1400);
  const client6 = '2001:db8:2::100';
  send(d, withVnet(buildPacket(tcpSegment(client6, 40000, '2001:db8::1', 80, SYN))));
  const big6 = buildPacket({ ...tcpSegment(client6, 40000, '2001:db8::1', 80, ACK), payload });
  const [reply6] = send(d, withVnet(big6));
  const icmp6 = reply6!.subarray(VNET_HDR_LEN);
  assert.equal(icmp6[6], 58, 'ICMPv6');
  assert.deepEqual(icmp6.subarray(8, 24), addrBytes('2001:db8::1'), 'from the VIP');
  assert.deepEqual(icmp6.subarray(24, 40), addrBytes(client6), 'to the client');
  assert.deepEqual([icmp6[40], icmp6[41]], [2, 0], 'packet too big');
  assert.equal(((icmp6[44]! << 24) | (icmp6[45]! << 16) | (icmp6[46]! << 8) | icmp6[47]!) >>> 0, 1280);
  assert.ok(l4ChecksumValid(icmp6));
  assert.equal(nextHop(d), null, 'the error goes to the client, not the real server');
  // IPv4: with DF, "fragmentation needed"; without, the packet goes (the link refuses it).
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const big4 = { ...tcpSegment(CLIENT, 40000, VIP, 80, ACK), payload };
  const [reply4] = send(d, withVnet(buildPacket({ ...big4, dontFragment: true })));
  const icmp4 = reply4!.subarray(VNET_HDR_LEN);
  assert.deepEqual([icmp4[9], icmp4[20], icmp4[21]], [1, 3, 4]);
  assert.equal((icmp4[26]! << 8) | icmp4[27]!, 1280);
  const [plain] = send(d, withVnet(buildPacket(big4)));
  assert.equal(plain!.length, VNET_HDR_LEN + 20 + 20 + payload.length);
  assert.equal(nextHop(d), RIP);
  assert.equal(d.snapshot({ connections: false }).dataPath.drops['too-big'], 2);
});

test('the fragments of a datagram go to the real server too, a held one included', () => {
  const d = routeDirector();
  const udp: ServiceKey = { ...key, protocol: IPPROTO_UDP, port: 53 };
  d.execute({ op: 'add-service', key: udp, settings: RR });
  d.execute({ op: 'add-dest', key: udp, addr: addr(RIP), port: 53, settings: route });
  const [first, second] = fragmentedDatagram(CLIENT, VIP, 2000, 0x4242);
  assert.deepEqual(send(d, withVnet(second!)), []);
  const frames = send(d, withVnet(first!));
  assert.equal(frames.length, 2);
  assert.equal(nextHop(d), RIP, 'for the frame returned and the one released with it');
  frames.forEach((frame, i) => {
    const ip = frame.subarray(VNET_HDR_LEN);
    const sent = [first, second][i]!;
    assert.ok(ipv4HeaderValid(ip));
    assert.equal(ip[8], sent[8]! - 1);
    assert.deepEqual(ip.subarray(12), sent.subarray(12));
  });
});

test('an ICMP error about the real server reply goes to the real server as it is', () => {
  const d = routeDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  // The real server answered from the VIP, around the director; a router on the way sends this.
  const reply = buildPacket(tcpSegment(VIP, 80, CLIENT, 40000, SYN | ACK));
  const error = buildPacket(fragNeeded('198.18.0.254', VIP, reply));
  const [frame] = send(d, withVnet(error));
  const ip = frame!.subarray(VNET_HDR_LEN);
  assert.ok(ipv4HeaderValid(ip));
  assert.deepEqual(ip.subarray(12), error.subarray(12));
  assert.equal(nextHop(d), RIP);
});

const LAYER3: ForwardingCapability = {
  dataplane: 'tun',
  methods: ['masq', 'tunnel'],
  elsewhere: { route: 'start lvsd with --dataplane packet' },
};

test('a data plane that cannot deliver direct routing refuses it at once, and changes nothing', () => {
  const d = new Director({ clock: new ManualClock(1000), connCapacity: 64, forwarding: LAYER3 });
  d.execute({ op: 'add-service', key, settings: RR });
  d.execute({ op: 'add-dest', key, addr: addr(RIP), port: 80, settings: masq });
  const before = JSON.stringify(d.snapshot({ connections: true }));
  const refused = (e: Error & { code?: string }) =>
    e.code === 'LVS_ERR_METHOD_UNSUPPORTED' &&
    e.message ===
      "lvsd's tun data plane cannot forward by direct routing (-g, ipvsadm's default when no method is " +
        'given); start lvsd with --dataplane packet, or use masquerading (-m) or tunnelling (-i)';
  assert.throws(
    () => d.execute({ op: 'add-dest', key, addr: addr('198.18.1.12'), port: 80, settings: route }),
    refused,
  );
  assert.throws(
    () => d.execute({ op: 'edit-dest', key, addr: addr(RIP), port: 80, settings: route }),
    refused,
  );
  assert.equal(JSON.stringify(d.snapshot({ connections: true })), before);
  // What it delivers it takes.
  d.execute({ op: 'edit-dest', key, addr: addr(RIP), port: 80, settings: { ...masq, weight: 3 } });
});

test('a method the core lacks is refused with what the data plane can do instead', () => {
  const d = new Director({ clock: new ManualClock(1000), connCapacity: 64, forwarding: LAYER3 });
  d.execute({ op: 'add-service', key, settings: RR });
  assert.throws(
    () =>
      d.execute({ op: 'add-dest', key, addr: addr(RIP), port: 80, settings: { ...route, method: 'local' } }),
    (e: Error & { code?: string }) =>
      e.code === 'LVS_ERR_METHOD_UNSUPPORTED' &&
      e.message === 'lvsd cannot forward by local delivery yet; use masquerading (-m) or tunnelling (-i)',
  );
});
