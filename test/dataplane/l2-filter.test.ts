// The layer-2 plane's frame filter: the BPF program, run by the interpreter in l2-filter.ts, takes
// exactly the services' frames; and the nft script drops the same set (checked on its text here,
// on the kernel in the e2e suites).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { IPPROTO_TCP, IPPROTO_UDP, parseAddr, type Addr } from '../../src/core/inet.js';
import {
  encodeProgram,
  filterProgram,
  MAX_INSTRUCTIONS,
  netdevScript,
  runProgram,
  type FilterSpec,
} from '../../src/dataplane/l2-filter.js';
import { buildPacket, fragmentPacket, type PacketSpec } from '../helpers/packets.js';

const a = (text: string): Addr => parseAddr(text)!;

const SPEC: FilterSpec = {
  services: [
    { addr: a('198.18.0.1'), protocol: IPPROTO_TCP, port: 80 },
    { addr: a('198.18.0.1'), protocol: IPPROTO_UDP, port: 53 },
    { addr: a('2001:db8::1'), protocol: IPPROTO_TCP, port: 443 },
  ],
  realServers: [
    { addr: a('198.18.1.11'), protocol: IPPROTO_TCP, port: 8080 },
    { addr: a('2001:db8:1::11'), protocol: IPPROTO_TCP, port: 443 },
  ],
  locals: [a('198.18.1.1'), a('127.0.0.1'), a('2001:db8:1::1')],
  directReplies: [{ addr: a('198.18.0.1'), protocol: IPPROTO_TCP, port: 80 }],
};

const HOST = { pkttype: 0, vlanTagged: false };

function ethernet(packet: Uint8Array, type?: number): Uint8Array {
  const frame = new Uint8Array(14 + packet.length);
  frame.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  const ethType = type ?? (packet[0]! >> 4 === 6 ? 0x86dd : 0x0800);
  frame[12] = ethType >> 8;
  frame[13] = ethType & 0xff;
  frame.set(packet, 14);
  return frame;
}

const program = filterProgram(SPEC);
const taken = (packet: PacketSpec | Uint8Array, meta = HOST, type?: number): boolean => {
  const bytes = packet instanceof Uint8Array ? packet : buildPacket(packet);
  return runProgram(program, ethernet(bytes, type), meta) > 0;
};

describe('the layer-2 frame filter', () => {
  it("splits lvsd's frames between the handshake ring (small SYNs) and the other, each frame to one", () => {
    const handshakes = filterProgram(SPEC, 'handshakes');
    const rest = filterProgram(SPEC, 'rest');
    const ring = (spec: PacketSpec): string => {
      const frame = ethernet(buildPacket(spec));
      const h = runProgram(handshakes, frame, HOST) > 0;
      const r = runProgram(rest, frame, HOST) > 0;
      assert.equal(runProgram(program, frame, HOST) > 0, h || r, 'the two parts make the whole');
      assert.ok(!(h && r), 'no frame in both rings');
      return h ? 'handshakes' : r ? 'rest' : 'none';
    };
    const syn = { src: '198.18.0.2', dst: '198.18.0.1', dport: 80, tcpFlags: 0x02 };
    assert.equal(ring(syn), 'handshakes');
    assert.equal(ring({ ...syn, src: '2001:db8::2', dst: '2001:db8::1', dport: 443 }), 'handshakes');
    // A SYN with data too large for a small slot (TCP Fast Open), and every other segment.
    assert.equal(ring({ ...syn, payload: new Uint8Array(1100) }), 'rest');
    assert.equal(
      ring({ ...syn, src: '2001:db8::2', dst: '2001:db8::1', dport: 443, payload: new Uint8Array(600) }),
      'rest',
    );
    for (const tcpFlags of [0x12, 0x10, 0x18, 0x11, 0x04, 0x03])
      assert.equal(ring({ ...syn, tcpFlags }), 'rest', `flags ${tcpFlags}`);
    assert.equal(ring({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'udp', dport: 53 }), 'rest');
    assert.equal(ring({ src: '198.18.1.11', dst: '198.18.0.2', sport: 8080, tcpFlags: 0x12 }), 'rest');
    // Not lvsd's at all: in neither.
    assert.equal(ring({ ...syn, dport: 22 }), 'none');
  });

  it("takes a client's packet to a VIP's protocol and port, and nothing else of the VIP", () => {
    assert.ok(taken({ src: '198.18.0.2', dst: '198.18.0.1', dport: 80 }));
    assert.ok(taken({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'udp', dport: 53 }));
    assert.ok(taken({ src: '2001:db8::2', dst: '2001:db8::1', dport: 443 }));
    // The host's other ports on its own address, and the other protocol on the same port.
    assert.ok(!taken({ src: '198.18.0.2', dst: '198.18.0.1', dport: 22 }));
    assert.ok(!taken({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'udp', dport: 80 }));
    assert.ok(!taken({ src: '198.18.0.2', dst: '198.18.0.9', dport: 80 }));
    assert.ok(!taken({ src: '2001:db8::2', dst: '2001:db8::1', dport: 80 }));
  });

  it("takes a real server's replies, but not those to the host's own addresses (a health check)", () => {
    assert.ok(taken({ src: '198.18.1.11', dst: '198.18.0.2', sport: 8080 }));
    assert.ok(taken({ src: '2001:db8:1::11', dst: '2001:db8::2', sport: 443 }));
    assert.ok(!taken({ src: '198.18.1.11', dst: '198.18.1.1', sport: 8080 }));
    assert.ok(!taken({ src: '2001:db8:1::11', dst: '2001:db8:1::1', sport: 443 }));
    assert.ok(!taken({ src: '198.18.1.11', dst: '198.18.0.2', sport: 8081 }));
    assert.ok(!taken({ src: '198.18.1.12', dst: '198.18.0.2', sport: 8080 }));
  });

  it("takes the replies of real servers that answer from the host's own VIP, not the host's own", () => {
    assert.ok(taken({ src: '198.18.0.1', dst: '198.18.0.2', sport: 80 }));
    assert.ok(!taken({ src: '198.18.0.1', dst: '198.18.1.1', sport: 80 }));
    assert.ok(!taken({ src: '198.18.0.1', dst: '198.18.0.2', sport: 22 }));
    assert.ok(!taken({ src: '198.18.0.1', dst: '198.18.0.2', protocol: 'udp', sport: 53 }));
    const script = netdevScript('lvsd', ['eth0'], SPEC);
    assert.match(script, /ip saddr \. ip protocol \. th sport @reply4 ip daddr != @local4 drop/);
    assert.match(script, /add element netdev lvsd reply4 \{ 198\.18\.0\.1 \. tcp \. 80 \}/);
  });

  it('takes ICMP errors to a VIP and from a real server, not echo requests', () => {
    assert.ok(taken({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'icmp', icmpType: 3, icmpCode: 4 }));
    assert.ok(taken({ src: '198.18.1.11', dst: '198.18.0.2', protocol: 'icmp', icmpType: 11 }));
    assert.ok(taken({ src: '2001:db8::2', dst: '2001:db8::1', protocol: 'icmp', icmpType: 2 }));
    assert.ok(!taken({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'icmp', icmpType: 8 }));
    assert.ok(!taken({ src: '198.18.1.11', dst: '198.18.1.1', protocol: 'icmp', icmpType: 3 }));
  });

  it('leaves fragments, IPv6 extension headers, VLAN tags, other hosts and outgoing frames to the kernel', () => {
    const big = buildPacket({
      src: '198.18.0.2',
      dst: '198.18.0.1',
      protocol: 'udp',
      dport: 53,
      payload: new Uint8Array(3000),
    });
    for (const fragment of fragmentPacket(big, 1480, 7)) assert.ok(!taken(fragment));
    assert.ok(!taken({ src: '2001:db8::2', dst: '2001:db8::1', dport: 443, extHeaders: [0] }));
    const packet = { src: '198.18.0.2', dst: '198.18.0.1', dport: 80 };
    assert.ok(!taken(packet, { pkttype: 0, vlanTagged: true }));
    assert.ok(!taken(packet, { pkttype: 3, vlanTagged: false }), 'PACKET_OTHERHOST');
    assert.ok(!taken(packet, { pkttype: 4, vlanTagged: false }), 'PACKET_OUTGOING');
    assert.ok(!taken(buildPacket(packet), HOST, 0x8100), 'an 802.1Q tag in the frame');
    assert.ok(!taken(buildPacket(packet), HOST, 0x0806), 'not IP');
  });

  it('never throws on any frame, and takes no runt', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.nat(7), (bytes, pkttype) => {
        const verdict = runProgram(program, bytes, { pkttype, vlanTagged: false });
        if (bytes.length < 14 + 20) assert.equal(verdict, 0);
      }),
    );
  });

  it('encodes sock_filter entries of 8 bytes, and refuses a spec too large for the kernel', () => {
    const bytes = encodeProgram(program);
    assert.equal(bytes.length, program.length * 8);
    assert.equal(bytes.readUInt16LE(0), program[0]!.code);
    assert.equal(bytes.readUInt32LE(4), program[0]!.k);
    const many: FilterSpec = {
      services: Array.from({ length: 600 }, (_, i) => ({
        addr: a('198.18.0.1'),
        protocol: IPPROTO_TCP,
        port: i + 1,
      })),
      realServers: [],
      locals: [],
      directReplies: [],
    };
    assert.throws(() => filterProgram(many), new RegExp(`more than the kernel's ${MAX_INSTRUCTIONS}`));
  });

  it('writes the same set as nft: a chain per interface, the sets filled from the spec', () => {
    const script = netdevScript('lvsd', ['br0', 'pub0'], SPEC);
    assert.match(
      script,
      /^table netdev lvsd \{ flags owner; \}\ndelete table netdev lvsd\ntable netdev lvsd \{\n {2}flags owner\n/,
    );
    assert.match(script, /hook ingress device "br0" priority -500/);
    assert.match(script, /hook ingress device "pub0" priority -500/);
    assert.match(
      script,
      /add element netdev lvsd svc4 \{ 198\.18\.0\.1 \. tcp \. 80, 198\.18\.0\.1 \. udp \. 53 \}/,
    );
    assert.match(script, /add element netdev lvsd real6 \{ 2001:db8:1::11 \. tcp \. 443 \}/);
    assert.match(script, /add element netdev lvsd local4 \{ 198\.18\.1\.1, 127\.0\.0\.1 \}/);
    assert.match(script, /meta pkttype != host return/);
    assert.match(script, /ip frag-off & 0x3fff != 0 return/);
  });
});
