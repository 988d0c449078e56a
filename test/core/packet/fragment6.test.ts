import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { fragmentIpv6, needsIpv6Fragmentation } from '../../../src/core/packet/fragment6.js';
import { IPV6_MIN_MTU } from '../../../src/core/packet/icmp.js';
import { parsePacket, type ParsedPacket } from '../../../src/core/packet/parse.js';
import { VNET_HDR_LEN } from '../../../src/core/packet/vnet.js';
import {
  buildPacket,
  fragmentPacket,
  l4ChecksumValid,
  partialVnetFor,
  withVnet,
  type PacketSpec,
} from '../../helpers/packets.js';

const udp = (size: number, extra: Partial<PacketSpec> = {}): PacketSpec => ({
  src: '2001:db8:1::11',
  dst: '2001:db8::2',
  protocol: 'udp',
  sport: 7,
  dport: 40000,
  payload: Uint8Array.from({ length: size }, (_, i) => (i * 7) & 0xff),
  ...extra,
});

function parsed(frame: Uint8Array): ParsedPacket {
  const p = parsePacket(frame, VNET_HDR_LEN, frame.length - VNET_HDR_LEN);
  assert.ok(p.ok, `parses: ${p.ok ? '' : p.reason}`);
  return p;
}

/** Reassembles fragments as a receiver does (RFC 8200 section 4.5), checking them on the way. */
function reassemble(frames: Uint8Array[]): Uint8Array {
  const first = frames[0]!;
  const ps = frames.map(parsed);
  const id = ps[0]!.fragmentId;
  // The unfragmentable part is what precedes the fragment header: the same in every fragment.
  const header = (frame: Uint8Array): number => {
    let next = frame[VNET_HDR_LEN + 6]!;
    let at = VNET_HDR_LEN + 40;
    while (next !== 44) {
      next = frame[at]!;
      at += (frame[at + 1]! + 1) * 8;
    }
    return at;
  };
  const fragmentHeader = header(first);
  const unfragmentable = first.subarray(VNET_HDR_LEN, fragmentHeader);
  const data: number[] = [];
  ps.forEach((p, i) => {
    const frame = frames[i]!;
    assert.ok(p.isFragment && p.fragmentId === id);
    assert.equal(p.fragmentOffset, data.length, 'fragments in order, without gaps');
    assert.equal(p.moreFragments, i < frames.length - 1);
    assert.ok(frame.length - VNET_HDR_LEN <= IPV6_MIN_MTU, `fragment ${i} fits 1280 bytes`);
    assert.ok(i === frames.length - 1 || (frame.length - header(frame) - 8) % 8 === 0);
    assert.deepEqual(frame.subarray(VNET_HDR_LEN, header(frame)).slice(0, 4), unfragmentable.slice(0, 4));
    assert.deepEqual(frame.subarray(VNET_HDR_LEN + 8, VNET_HDR_LEN + 40), unfragmentable.slice(8, 40));
    assert.deepEqual([...frame.subarray(0, VNET_HDR_LEN)], new Array(VNET_HDR_LEN).fill(0));
    data.push(...frame.subarray(header(frame) + 8));
  });
  const nextAfter = first[fragmentHeader]!;
  const whole = new Uint8Array(unfragmentable.length + data.length);
  whole.set(unfragmentable);
  whole.set(data, unfragmentable.length);
  // Restore the Next Header that named the fragment header, and the payload length.
  let field = 6;
  let next = whole[6]!;
  let at = 40;
  while (next !== 44) {
    field = at;
    next = whole[at]!;
    at += (whole[at + 1]! + 1) * 8;
  }
  whole[field] = nextAfter;
  whole[4] = (whole.length - 40) >>> 8;
  whole[5] = (whole.length - 40) & 0xff;
  return whole;
}

function fragmentOf(packet: Uint8Array, frame = withVnet(packet), id = 0x1234_5678): Uint8Array[] {
  const p = parsed(frame);
  assert.ok(needsIpv6Fragmentation(frame, 0, p));
  const frames = fragmentIpv6(frame, 0, p, id);
  assert.ok(frames);
  return frames;
}

test('a datagram of 4000 bytes leaves as fragments of at most 1280 bytes that reassemble to it', () => {
  const packet = buildPacket(udp(4000));
  const frames = fragmentOf(packet);
  assert.equal(frames.length, 4);
  assert.deepEqual(reassemble(frames), packet);
  assert.deepEqual(
    frames.map((f) => parsed(f).fragmentId),
    [0x1234_5678, 0x1234_5678, 0x1234_5678, 0x1234_5678],
  );
  // The first fragment carries the ports, as a receiver and the next director need.
  const first = parsed(frames[0]!);
  assert.deepEqual([first.protocol, first.sport, first.dport], [17, 7, 40000]);
});

test('any size: fragments reassemble to the datagram, each within 1280 bytes', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1500 - 48 + 1, max: 65000 }), (size) => {
      const packet = buildPacket(udp(size));
      assert.deepEqual(reassemble(fragmentOf(packet)), packet);
    }),
    { numRuns: 50 },
  );
});

test('Hop-by-Hop and Routing headers are repeated in each fragment; Destination Options after them are data', () => {
  // hop-by-hop, destination options (before routing: unfragmentable), routing, destination options.
  const packet = buildPacket(udp(3000, { extHeaders: [0, 60, 43, 60] }));
  const frames = fragmentOf(packet);
  assert.deepEqual(reassemble(frames), packet);
  for (const frame of frames) {
    const ip = VNET_HDR_LEN;
    assert.equal(frame[ip + 6], 0, 'hop-by-hop first');
    assert.equal(frame[ip + 40], 60, 'then destination options');
    assert.equal(frame[ip + 48], 43, 'then routing');
    assert.equal(frame[ip + 56], 44, 'the fragment header follows the routing header');
    assert.equal(frame[ip + 64], 60, 'the last destination options are fragmentable');
  }
});

test('a partial (NEEDS_CSUM) checksum is completed before the datagram is split', () => {
  const packet = buildPacket(udp(5000, { partial: true }));
  const frames = fragmentOf(packet, withVnet(packet, partialVnetFor(packet)));
  assert.ok(l4ChecksumValid(reassemble(frames)));
});

test('only plain IPv6 datagrams over 1500 bytes are fragmented', () => {
  const frame = (packet: Uint8Array, gso = false) =>
    withVnet(packet, gso ? { ...partialVnetFor(packet, { gsoSize: 1400 }), gsoType: 4 } : {});
  const check = (f: Uint8Array) => needsIpv6Fragmentation(f, 0, parsed(f));
  assert.equal(check(frame(buildPacket(udp(1500 - 48)))), false, '1500 bytes go whole');
  assert.equal(check(frame(buildPacket(udp(1500 - 47)))), true);
  assert.equal(check(frame(buildPacket({ ...udp(4000), src: '198.18.1.11', dst: '198.18.0.2' }))), false);
  const segment = buildPacket({
    src: '2001:db8:1::11',
    dst: '2001:db8::2',
    sport: 80,
    dport: 40000,
    tcpFlags: 0x10,
    payload: new Uint8Array(20000),
  });
  assert.equal(check(frame(segment, true)), false, 'the kernel segments a GSO super-packet');
  const [fragment] = fragmentPacket(buildPacket(udp(4000)), 2000, 9);
  assert.equal(check(withVnet(fragment!)), false, 'a fragment goes as it came');
});

test('a datagram with a fragment header already (an atomic fragment) is left whole', () => {
  const [atomic] = fragmentPacket(buildPacket(udp(3000)), 4000, 9);
  const frame = withVnet(atomic!);
  const before = frame.slice();
  assert.equal(fragmentIpv6(frame, 0, parsed(frame), 1), null);
  assert.deepEqual(frame, before);
});
