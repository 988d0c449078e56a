// The tunnel method through the director: what a real server behind tunl0 (or gre0) receives, the
// TCP states of a director that sees only the client, path MTU (ICMP "fragmentation needed" back
// to the client, less each type's headers), GSO super-packets split into valid segments, an edit
// of the tunnel type taking effect at once, and what the service table refuses.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { Director } from '../../../src/core/director.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import type { DestSettings, ServiceKey, TunnelSettings } from '../../../src/core/model.js';
import { VNET_HDR_LEN } from '../../../src/core/packet/vnet.js';
import {
  addr,
  buildPacket,
  fragNeeded,
  fragmentedDatagram,
  ipv4HeaderValid,
  l4ChecksumValid,
  partialVnetFor,
  sendFrame,
  tcpSegment,
  withVnet,
} from '../../helpers/packets.js';
import { decapsulate, type Decapsulated } from '../../helpers/tunnels.js';

const VIP = '198.18.0.1';
const CLIENT = '198.18.0.100';
const RIP = '198.18.1.11';
const DIP = '198.18.1.1';
const key: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: addr(VIP), port: 80, fwmark: 0 };
const tunnel: DestSettings = { method: 'tunnel', weight: 1, uThreshold: 0, lThreshold: 0 };
const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;
const PSH = 0x08;
const DF = 0x40;

const RR = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };

const GRE_CSUM: TunnelSettings = { type: 'gre', port: 0, csum: 'csum' };

/** A service with the tunnelled real server RIP, routed from the DIP. */
function addTunnelService(d: Director, service: ServiceKey, mtu: number, settings = tunnel): void {
  d.execute({ op: 'add-service', key: service, settings: RR });
  d.execute({ op: 'add-dest', key: service, addr: addr(RIP), port: service.port, settings });
  d.setRealServerRoute(addr(RIP), { source: addr(DIP), mtu });
}

function tunnelDirector(mtu = 1500, settings = tunnel): Director {
  const d = new Director({ clock: new ManualClock(1000), random: () => 0.5, connCapacity: 1024 });
  addTunnelService(d, key, mtu, settings);
  return d;
}

/** What the real server's tunnel driver takes out of a frame the director sent. */
function unwrapped(frame: Uint8Array): Decapsulated {
  const found = decapsulate(frame.subarray(VNET_HDR_LEN), 6080);
  assert.equal(typeof found, 'object', String(found));
  return found as Decapsulated;
}

const send = sendFrame;

test('a client packet reaches the real server inside an IPIP header from the DIP, unchanged', () => {
  const d = tunnelDirector();
  const packet = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), ttl: 61, dontFragment: true });
  const [frame] = send(d, withVnet(packet));
  const outer = frame!.subarray(VNET_HDR_LEN);
  assert.equal(outer.length, packet.length + 20);
  assert.ok(ipv4HeaderValid(outer));
  assert.equal(outer[9], 4, 'protocol IPIP');
  assert.equal(outer[8], 61, 'the inner TTL');
  assert.equal(outer[6] & DF, DF, 'DF copied from the inner header');
  assert.deepEqual([...outer.subarray(12, 16)], [198, 18, 1, 1]);
  assert.deepEqual([...outer.subarray(16, 20)], [198, 18, 1, 11]);
  assert.deepEqual(outer.subarray(20), packet, 'the client packet inside, byte for byte');
  assert.equal(d.snapshot({ connections: false }).services[0]!.stats.inPkts, '1');
});

test('TCP follows INPUT_ONLY: the client alone moves the connection to ESTABLISHED and out', () => {
  const d = tunnelDirector();
  const state = () => d.snapshot({ connections: true }).connections![0]!.state;
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  assert.equal(state(), 'SYN_RECV');
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, ACK))));
  assert.equal(state(), 'ESTABLISHED');
  assert.equal(d.snapshot({ connections: false }).services[0]!.dests[0]!.activeConns, 1);
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, FIN | ACK))));
  assert.equal(state(), 'FIN_WAIT');
});

test('a DF packet too big for the tunnel is answered with fragmentation needed, MTU minus 20', () => {
  const d = tunnelDirector(1500);
  const payload = new Uint8Array(1460);
  const packet = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, ACK), payload, dontFragment: true });
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const [reply] = send(d, withVnet(packet));
  const icmp = reply!.subarray(VNET_HDR_LEN);
  assert.ok(ipv4HeaderValid(icmp));
  assert.equal(icmp[9], 1);
  assert.deepEqual([...icmp.subarray(12, 16)], [198, 18, 0, 1], 'from the VIP');
  assert.deepEqual([...icmp.subarray(16, 20)], [198, 18, 0, 100], 'to the client');
  assert.deepEqual([icmp[20], icmp[21]], [3, 4]);
  assert.equal((icmp[26]! << 8) | icmp[27]!, 1480);
  assert.ok(l4ChecksumValid(icmp));
  assert.deepEqual(icmp.subarray(28, 48), packet.subarray(0, 20), 'quoting the client packet');
  const { dataPath } = d.snapshot({ connections: false });
  assert.equal(dataPath.drops['too-big'], 1);
  assert.equal(dataPath.icmpSent, 1);
  assert.equal(
    d.snapshot({ connections: false }).services[0]!.stats.inPkts,
    '1',
    'the SYN alone went through',
  );
  // Without DF the packet goes, and the host fragments the outer packet on its way.
  const plain = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, ACK), payload });
  assert.equal(send(d, withVnet(plain))[0]!.length, VNET_HDR_LEN + plain.length + 20);
});

test('a TCP super-packet leaves as encapsulated segments with valid checksums and the same bytes', () => {
  const d = tunnelDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const payload = Uint8Array.from({ length: 4000 }, (_, i) => i % 251);
  const packet = buildPacket({
    ...tcpSegment(CLIENT, 40000, VIP, 80, ACK | PSH),
    seq: 1000,
    payload,
    partial: true,
    dontFragment: true,
  });
  const frames = send(d, withVnet(packet, partialVnetFor(packet, { gsoSize: 1400 })));
  assert.equal(frames.length, 3);
  const data: number[] = [];
  frames.forEach((frame, i) => {
    assert.deepEqual([...frame.subarray(0, VNET_HDR_LEN)], Array(VNET_HDR_LEN).fill(0), 'a plain frame');
    const outer = frame.subarray(VNET_HDR_LEN);
    assert.ok(outer.length <= 1500);
    assert.ok(ipv4HeaderValid(outer) && outer[9] === 4);
    const inner = outer.subarray(20);
    assert.ok(ipv4HeaderValid(inner));
    assert.ok(l4ChecksumValid(inner));
    const seq = ((inner[24]! << 24) | (inner[25]! << 16) | (inner[26]! << 8) | inner[27]!) >>> 0;
    assert.equal(seq, 1000 + i * 1400);
    assert.equal(inner[33]! & PSH, i === 2 ? PSH : 0, 'PSH on the last segment only');
    data.push(...inner.subarray(40));
  });
  assert.deepEqual(data, [...payload]);
  const { stats } = d.snapshot({ connections: false }).services[0]!;
  assert.equal(stats.inPkts, '4');
});

test('a partial checksum is completed before the packet goes into the tunnel', () => {
  const d = tunnelDirector();
  const packet = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), partial: true });
  const [frame] = send(d, withVnet(packet, partialVnetFor(packet)));
  assert.ok(l4ChecksumValid(frame!.subarray(VNET_HDR_LEN + 20)));
  assert.equal(frame![0], 0, 'no NEEDS_CSUM left for the host');
});

test('the fragments of a datagram each go into the tunnel unchanged, a held one included', () => {
  const d = tunnelDirector();
  addTunnelService(d, { ...key, protocol: IPPROTO_UDP, port: 53 }, 1500);
  const [first, second] = fragmentedDatagram(CLIENT, VIP, 2000, 0x4242);
  // The second fragment comes first: it waits for the first, which decides where both go.
  assert.deepEqual(send(d, withVnet(second!)), []);
  const frames = send(d, withVnet(first!));
  assert.equal(frames.length, 2);
  frames.forEach((frame, i) => {
    const outer = frame.subarray(VNET_HDR_LEN);
    assert.ok(ipv4HeaderValid(outer) && outer[9] === 4);
    assert.deepEqual(outer.subarray(20), [first, second][i]);
  });
});

test('without a route to the real server the packet is dropped and counted', () => {
  const d = tunnelDirector();
  d.setRealServerRoute(addr(RIP), null);
  assert.deepEqual(send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN)))), []);
  assert.equal(d.snapshot({ connections: false }).dataPath.drops['no-route'], 1);
});

test('an ICMP error about the real server reply goes to the real server unchanged, in the tunnel', () => {
  const d = tunnelDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const reply = buildPacket(tcpSegment(VIP, 80, CLIENT, 40000, SYN | ACK));
  const error = buildPacket(fragNeeded(CLIENT, VIP, reply));
  const [frame] = send(d, withVnet(error));
  assert.deepEqual(frame!.subarray(VNET_HDR_LEN + 20), error);
  assert.equal(frame![VNET_HDR_LEN + 9], 4);
});

test('a gre real server with --tun-csum gets the packet behind a checksummed GRE header', () => {
  const d = tunnelDirector(1500, { ...tunnel, tunnel: GRE_CSUM });
  const packet = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, SYN), ttl: 61, dontFragment: true });
  const [frame] = send(d, withVnet(packet));
  const outer = frame!.subarray(VNET_HDR_LEN);
  assert.equal(outer[9], 47, 'protocol GRE');
  assert.deepEqual([...outer.subarray(16, 20)], [198, 18, 1, 11]);
  assert.deepEqual(unwrapped(frame!), { kind: 'gre', checksummed: true, inner: packet });
  assert.deepEqual(d.snapshot({ connections: false }).services[0]!.dests[0]!.tunnel, GRE_CSUM);
});

test("path MTU leaves room for each type's headers: 1476 for gre, 1472 with its checksum, 1468 for gue", () => {
  for (const [settings, mtu] of [
    [{ type: 'gre', port: 0, csum: 'nocsum' }, 1476],
    [GRE_CSUM, 1472],
    [{ type: 'gue', port: 6080, csum: 'csum' }, 1468],
  ] as const) {
    const d = tunnelDirector(1500, { ...tunnel, tunnel: settings });
    send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
    const fits = buildPacket({
      ...tcpSegment(CLIENT, 40000, VIP, 80, ACK),
      payload: new Uint8Array(mtu - 40),
      dontFragment: true,
    });
    const [frame] = send(d, withVnet(fits));
    assert.equal(frame!.length, VNET_HDR_LEN + 1500, 'a packet of the MTU left goes, filling 1500 bytes');
    const over = buildPacket({
      ...tcpSegment(CLIENT, 40000, VIP, 80, ACK),
      payload: new Uint8Array(mtu - 39),
      dontFragment: true,
    });
    const [reply] = send(d, withVnet(over));
    const icmp = reply!.subarray(VNET_HDR_LEN);
    assert.deepEqual([icmp[9], icmp[20], icmp[21]], [1, 3, 4], 'fragmentation needed');
    assert.equal((icmp[26]! << 8) | icmp[27]!, mtu);
  }
});

test('a gue real server gets the packet in UDP to its --tun-port, one source port per connection', () => {
  const d = tunnelDirector(1500, { ...tunnel, tunnel: { type: 'gue', port: 6080, csum: 'csum' } });
  const syn = buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN));
  const ack = buildPacket({ ...tcpSegment(CLIENT, 40000, VIP, 80, ACK), payload: new Uint8Array(300) });
  const [first, second] = [syn, ack].map((packet) => {
    const [frame] = send(d, withVnet(packet));
    assert.equal(frame![VNET_HDR_LEN + 9], 17, 'protocol UDP');
    return unwrapped(frame!);
  });
  assert.deepEqual([first!.kind, first!.checksummed, first!.inner], ['gue', true, syn]);
  assert.deepEqual(second!.inner, ack);
  assert.equal(first!.sourcePort, second!.sourcePort);
});

test('editing the tunnel type changes how the next packet of a connection is wrapped', () => {
  const d = tunnelDirector();
  send(d, withVnet(buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, SYN))));
  const settings: DestSettings = { ...tunnel, tunnel: GRE_CSUM };
  d.execute({ op: 'edit-dest', key, addr: addr(RIP), port: 80, settings });
  const packet = buildPacket(tcpSegment(CLIENT, 40000, VIP, 80, ACK));
  const [frame] = send(d, withVnet(packet));
  assert.deepEqual(unwrapped(frame!), { kind: 'gre', checksummed: true, inner: packet });
  assert.equal(d.snapshot({ connections: true }).connections!.length, 1, 'the same connection');
});

test('the service table refuses tunnels it cannot carry out, and changes nothing', () => {
  const d = tunnelDirector();
  const v6: ServiceKey = { af: 6, protocol: IPPROTO_TCP, addr: addr('2001:db8::1'), port: 80, fwmark: 0 };
  d.execute({ op: 'add-service', key: v6, settings: { ...RR, netmaskPrefix: 128 } });
  const unsupported = 'LVS_ERR_METHOD_UNSUPPORTED';
  const invalid = 'LVS_ERR_INVALID';
  const RIP2 = '198.18.1.12';
  const refusals: [ServiceKey, string, DestSettings, string, RegExp][] = [
    [key, RIP2, { ...tunnel, tunnel: { type: 'gue', port: 6080, csum: 'remcsum' } }, unsupported, /remcsum/],
    [key, RIP2, { ...tunnel, tunnel: { type: 'gue', port: 0, csum: 'csum' } }, invalid, /--tun-port/],
    [key, '198.18.1.12', { ...tunnel, tunnel: { type: 'gre', port: 0, csum: 'remcsum' } }, invalid, /gre/],
    [key, '198.18.1.12', { ...tunnel, tunnel: { type: 'gre', port: 6080, csum: 'csum' } }, invalid, /port/],
    [key, '198.18.1.12', { ...tunnel, tunnel: { type: 'ipip', port: 0, csum: 'csum' } }, invalid, /checksum/],
    [v6, '2001:db8:1::11', tunnel, unsupported, /IPv4 in IPv4/],
    [v6, '198.18.1.12', tunnel, unsupported, /IPv4 in IPv4/],
  ];
  const before = JSON.stringify(d.snapshot({ connections: true }));
  for (const [service, server, settings, code, message] of refusals) {
    assert.throws(
      () => d.execute({ op: 'add-dest', key: service, addr: addr(server), port: 80, settings }),
      (e: Error & { code?: string }) => e.code === code && message.test(e.message),
    );
  }
  assert.equal(JSON.stringify(d.snapshot({ connections: true })), before);
});
