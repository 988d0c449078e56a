import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatAddr } from '../../../src/core/inet.js';
import { parseIcmpError } from '../../../src/core/packet/icmp.js';
import { rewriteDestination, rewriteSource } from '../../../src/core/packet/nat.js';
import { parsePacket, parseQuotedPacket } from '../../../src/core/packet/parse.js';
import type { ParsedPacket, ParseResult } from '../../../src/core/packet/parse.js';
import { buildPacket, fragmentPacket, withVnet } from '../../helpers/packets.js';
import type { PacketSpec } from '../../helpers/packets.js';

function parseOk(packet: Uint8Array): ParsedPacket {
  const result = parsePacket(packet, 0, packet.length);
  assert.ok(result.ok, `expected a parse, got ${result.ok ? '' : result.reason}`);
  return result;
}

function reason(result: ParseResult): string {
  return result.ok ? 'ok' : result.reason;
}

test('IPv4 TCP: addresses, ports, flags, offsets, payload', () => {
  const payload = new TextEncoder().encode('hello');
  const packet = buildPacket({
    src: '10.0.0.1',
    dst: '198.18.0.10',
    sport: 51000,
    dport: 443,
    tcpFlags: 0x12,
    tcpOptions: Uint8Array.from([2, 4, 5, 0xb4]),
    ipOptions: Uint8Array.from([1, 1, 1, 1]),
    payload,
  });
  const p = parseOk(packet);
  assert.equal(p.af, 4);
  assert.equal(formatAddr(p.saddr), '10.0.0.1');
  assert.equal(formatAddr(p.daddr), '198.18.0.10');
  assert.deepEqual([p.protocol, p.sport, p.dport, p.tcpFlags], [6, 51000, 443, 0x12]);
  assert.deepEqual([p.l3Offset, p.l4Offset, p.payloadOffset, p.payloadLength, p.end], [0, 24, 48, 5, 53]);
  assert.equal(p.isFragment, false);
  assert.equal(p.icmpType, -1);
});

test('the packet may sit behind a vnet header, with trailing bytes ignored by its length field', () => {
  const packet = buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'udp', sport: 53, dport: 5353 });
  const buf = new Uint8Array(10 + packet.length + 6);
  buf.set(withVnet(packet));
  const p = parsePacket(buf, 10, buf.length - 10);
  assert.ok(p.ok);
  assert.deepEqual([p.l3Offset, p.l4Offset, p.end, p.sport, p.dport], [10, 30, 10 + packet.length, 53, 5353]);
});

test('IPv6 UDP behind hop-by-hop, routing and destination options headers', () => {
  const packet = buildPacket({
    src: '2001:db8::1',
    dst: '2001:db8:1::53',
    protocol: 'udp',
    sport: 1234,
    dport: 53,
    extHeaders: [0, 43, 60],
    payload: new Uint8Array(12),
  });
  const p = parseOk(packet);
  assert.equal(p.af, 6);
  assert.equal(formatAddr(p.daddr), '2001:db8:1::53');
  assert.deepEqual([p.protocol, p.l4Offset, p.sport, p.dport, p.payloadLength], [17, 64, 1234, 53, 12]);
});

test('ICMP and ICMPv6 report type and code', () => {
  const v4 = parseOk(buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'icmp', icmpType: 8 }));
  assert.deepEqual([v4.protocol, v4.icmpType, v4.icmpCode, v4.sport], [1, 8, 0, 0]);
  const v6 = parseOk(buildPacket({ src: '::1', dst: '::2', protocol: 'icmp', icmpType: 2, icmpRest: 1280 }));
  assert.deepEqual([v6.protocol, v6.icmpType, v6.icmpCode], [58, 2, 0]);
});

test('SCTP reports its ports', () => {
  const p = parseOk(buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'sctp', sport: 7, dport: 9 }));
  assert.deepEqual([p.protocol, p.sport, p.dport], [132, 7, 9]);
});

for (const af of [4, 6] as const) {
  test(`IPv${af} fragments: the first carries ports, later ones have no L4 header`, () => {
    const src = af === 4 ? '10.0.0.1' : '2001:db8::1';
    const dst = af === 4 ? '10.0.0.2' : '2001:db8::2';
    const packet = buildPacket({
      src,
      dst,
      protocol: 'udp',
      sport: 5000,
      dport: 6000,
      payload: new Uint8Array(100),
    });
    const [first, second, last] = fragmentPacket(packet, 48, 0xbeef).map(parseOk);
    assert.deepEqual(
      [first!.isFragment, first!.fragmentOffset, first!.moreFragments, first!.fragmentId, first!.sport],
      [true, 0, true, 0xbeef, 5000],
    );
    assert.equal(first!.l4Offset >= 0, true);
    assert.deepEqual(
      [second!.isFragment, second!.fragmentOffset, second!.l4Offset, second!.sport, second!.protocol],
      [true, 48, -1, 0, 17],
    );
    assert.equal(second!.payloadLength, 48);
    assert.deepEqual([last!.moreFragments, last!.fragmentOffset], [false, 96]);
  });
}

test('an IPv6 atomic fragment (offset 0, no more) is not a fragment', () => {
  const packet = buildPacket({ src: '::1', dst: '::2', protocol: 'udp', payload: new Uint8Array(8) });
  const [only] = fragmentPacket(packet, 1024, 7);
  const p = parseOk(only!);
  assert.equal(p.isFragment, false);
  assert.equal(p.sport, 40000);
});

test('a GSO super-packet longer than any MTU parses', () => {
  const packet = buildPacket({
    src: '10.0.0.1',
    dst: '10.0.0.2',
    payload: new Uint8Array(65000),
    partial: true,
  });
  const p = parseOk(packet);
  assert.equal(p.payloadLength, 65000);
});

function mutate(packet: Uint8Array, at: number, value: number): Uint8Array {
  const copy = packet.slice();
  copy[at] = value;
  return copy;
}

test('each kind of malformed packet has its drop reason', () => {
  const tcp = buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', payload: new Uint8Array(4) });
  const udp = buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'udp', payload: new Uint8Array(4) });
  const v6 = buildPacket({ src: '::1', dst: '::2', extHeaders: [60] });
  const at = (buf: Uint8Array) => reason(parsePacket(buf, 0, buf.length));
  assert.equal(at(new Uint8Array(0)), 'truncated');
  assert.equal(at(tcp.subarray(0, 19)), 'truncated');
  assert.equal(at(tcp.subarray(0, tcp.length - 1)), 'truncated');
  assert.equal(at(mutate(tcp, 0, 0x55)), 'bad-version');
  assert.equal(at(mutate(tcp, 0, 0x44)), 'bad-ihl');
  assert.equal(at(mutate(tcp, 0, 0x4f)), 'truncated');
  // IHL 15 fits the bytes present but not the total length field (44).
  const padded = new Uint8Array(tcp.length + 20);
  padded.set(mutate(tcp, 0, 0x4f));
  assert.equal(at(padded), 'bad-length');
  assert.equal(at(mutate(tcp, 3, 10)), 'bad-length');
  assert.equal(at(mutate(tcp, 32, 0x40)), 'bad-tcp-offset');
  assert.equal(at(mutate(tcp, 32, 0xf0)), 'bad-tcp-offset');
  assert.equal(at(mutate(udp, 25, 7)), 'bad-udp-length');
  assert.equal(at(mutate(udp, 25, 200)), 'bad-udp-length');
  assert.equal(at(mutate(v6, 40, 0)), 'bad-ext-header');
  assert.equal(at(mutate(v6, 41, 9)), 'truncated');
  assert.equal(at(v6.subarray(0, 39)), 'truncated');
  // A TCP fragment at offset 8 (RFC 1858 overlap attack).
  const overlap = mutate(tcp, 7, 1);
  assert.equal(at(overlap), 'bad-fragment');
  // A first fragment too short to hold the TCP header.
  const tiny = fragmentPacket(tcp, 8, 1)[0]!;
  assert.equal(at(tiny), 'truncated');
  assert.equal(reason(parsePacket(tcp, 2, tcp.length)), 'bad-length');
  assert.equal(reason(parsePacket(tcp, -1, 4)), 'bad-length');
});

test('a Routing header with segments left is refused (the VIP is a waypoint); quoted in an ICMP error it is read', () => {
  const routed = buildPacket({ src: '2001:db8::2', dst: '2001:db8::1', protocol: 'udp', extHeaders: [43] });
  assert.equal(reason(parsePacket(routed, 0, routed.length)), 'ok');
  const waypoint = mutate(routed, 43, 1);
  assert.equal(reason(parsePacket(waypoint, 0, waypoint.length)), 'source-routed');
  assert.equal(reason(parseQuotedPacket(waypoint, 0, waypoint.length)), 'ok');
});

test('an ext-header chain longer than 8 is refused, 8 is accepted', () => {
  const eight = buildPacket({ src: '::1', dst: '::2', extHeaders: [60, 60, 60, 60, 60, 60, 60, 60] });
  assert.equal(reason(parsePacket(eight, 0, eight.length)), 'ok');
  const packet = buildPacket({ src: '::1', dst: '::2', extHeaders: [60, 60, 60, 60, 60, 60, 60, 60, 60] });
  assert.equal(reason(parsePacket(packet, 0, packet.length)), 'unsupported');
});

// ---- fuzzing -------------------------------------------------------------------------------------

const specs: PacketSpec[] = [
  {
    src: '10.0.0.1',
    dst: '10.0.0.2',
    tcpOptions: Uint8Array.from([2, 4, 5, 0xb4]),
    payload: new Uint8Array(20),
  },
  { src: '10.0.0.1', dst: '10.0.0.2', protocol: 'udp', ipOptions: Uint8Array.from([1, 1, 1, 1]) },
  { src: '2001:db8::1', dst: '2001:db8::2', extHeaders: [0, 43, 60], payload: new Uint8Array(9) },
  { src: '2001:db8::1', dst: '2001:db8::2', protocol: 'sctp' },
];
const valid: Uint8Array[] = specs.map(buildPacket);
valid.push(...fragmentPacket(buildPacket({ ...specs[1]!, payload: new Uint8Array(40) }), 16, 9));
valid.push(...fragmentPacket(buildPacket({ ...specs[2]!, extHeaders: [] }), 16, 9));
for (const inner of [valid[0]!, valid[2]!]) {
  const v6 = inner[0]! >>> 4 === 6;
  valid.push(
    buildPacket({
      src: v6 ? '2001:db8::9' : '10.9.9.9',
      dst: v6 ? '2001:db8::1' : '10.0.0.1',
      protocol: 'icmp',
      icmpType: v6 ? 1 : 3,
      payload: inner.subarray(0, 48),
    }),
  );
}

/** Parses buf[offset, offset+length) and checks that every reported offset is inside it. */
function checkBounded(buf: Uint8Array, offset: number, length: number): void {
  const result = parsePacket(buf, offset, length);
  if (!result.ok) return;
  const limit = offset + length;
  assert.ok(result.l3Offset === offset);
  assert.ok(result.end > offset && result.end <= limit);
  if (result.l4Offset !== -1) assert.ok(result.l4Offset > offset && result.l4Offset <= result.end);
  assert.ok(result.payloadLength >= 0 && result.payloadOffset > offset);
  assert.ok(result.payloadOffset + result.payloadLength <= result.end);
  assert.ok(result.sport >= 0 && result.sport <= 0xffff && result.dport >= 0 && result.dport <= 0xffff);
  const inner = parseIcmpError(buf, result);
  if (inner)
    assert.ok(inner.l3Offset > result.l4Offset && inner.end <= result.end && inner.l4Offset < inner.end);
}

test('fuzz: random bytes never throw and never yield offsets outside the input', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(8), (bytes, pad) => {
      const buf = new Uint8Array(pad + bytes.length + pad);
      buf.set(bytes, pad);
      checkBounded(buf, pad, bytes.length);
    }),
    { numRuns: 3000 },
  );
});

test('fuzz: mutated valid packets, parsed and NAT-rewritten, stay within their bytes', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...valid),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.nat(),
      (packet, edits, cut) => {
        const mutated = packet.slice();
        for (const [at, value] of edits) mutated[at % mutated.length] = value;
        const length = cut % 3 === 0 ? cut % (mutated.length + 1) : mutated.length;
        // Guard bytes around the packet catch any write outside it.
        const buf = new Uint8Array(length + 16).fill(0xa5);
        buf.set(mutated.subarray(0, length), 8);
        checkBounded(buf, 8, length);
        const p = parsePacket(buf, 8, length);
        if (p.ok) {
          const other = p.af === 4 ? p.saddr : p.daddr;
          rewriteDestination(buf, p, other, 1, 0);
          rewriteSource(buf, p, other, 2, 1);
        }
        assert.ok(buf.subarray(0, 8).every((b) => b === 0xa5));
        assert.ok(buf.subarray(8 + length).every((b) => b === 0xa5));
      },
    ),
    { numRuns: 5000 },
  );
});
