// What the doctor's raw-socket watch makes of the packets it sees: a SYN-ACK (and nothing else of
// TCP), an ICMP or ICMPv6 port unreachable quoting a UDP datagram (with and without IPv4 options),
// and the DNS query a UDP probe of port 53 sends.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIcmp, parseTcp4, udpPayload } from '../../src/cli/doctor-probe.js';
import { formatAddr } from '../../src/core/inet.js';

function ipv4Header(protocol: number, src: number[], dst: number[], optionWords = 0): Buffer {
  const header = Buffer.alloc(20 + optionWords * 4);
  header[0] = 0x40 | (5 + optionWords);
  header[8] = 64;
  header[9] = protocol;
  Buffer.from(src).copy(header, 12);
  Buffer.from(dst).copy(header, 16);
  return header;
}

function tcp(sport: number, dport: number, flags: number): Buffer {
  const segment = Buffer.alloc(20);
  segment.writeUInt16BE(sport, 0);
  segment.writeUInt16BE(dport, 2);
  segment[12] = 0x50;
  segment[13] = flags;
  return segment;
}

function udp(sport: number, dport: number): Buffer {
  const datagram = Buffer.alloc(8);
  datagram.writeUInt16BE(sport, 0);
  datagram.writeUInt16BE(dport, 2);
  return datagram;
}

test('a SYN-ACK is seen with its source and the local port it answers; other segments are not', () => {
  const packet = Buffer.concat([ipv4Header(6, [198, 18, 1, 32], [198, 18, 1, 1]), tcp(80, 40001, 0x12)]);
  const { synAck } = parseTcp4(packet);
  assert.ok(synAck);
  assert.deepEqual([formatAddr(synAck.from), synAck.sport, synAck.dport], ['198.18.1.32', 80, 40001]);
  for (const flags of [0x02, 0x10, 0x14, 0x04]) {
    assert.deepEqual(
      parseTcp4(Buffer.concat([ipv4Header(6, [198, 18, 1, 32], [198, 18, 1, 1]), tcp(80, 40001, flags)])),
      {},
    );
  }
  assert.deepEqual(parseTcp4(packet.subarray(0, 30)), {}, 'cut short');
  assert.deepEqual(
    parseTcp4(Buffer.concat([ipv4Header(17, [1, 2, 3, 4], [5, 6, 7, 8]), tcp(1, 2, 0x12)])),
    {},
  );
});

test('an ICMP port unreachable quoting our datagram is seen, IPv4 options and all; other ICMP is not', () => {
  const quoted = Buffer.concat([ipv4Header(17, [198, 18, 1, 1], [198, 18, 1, 11], 1), udp(40002, 5301)]);
  const icmp = (type: number, code: number) =>
    Buffer.concat([
      ipv4Header(1, [198, 18, 1, 11], [198, 18, 1, 1]),
      Buffer.from([type, code, 0, 0, 0, 0, 0, 0]),
      quoted,
    ]);
  const { unreachable } = parseIcmp(icmp(3, 3), false);
  assert.ok(unreachable);
  assert.deepEqual(
    [formatAddr(unreachable.to), unreachable.sport, unreachable.dport, unreachable.code],
    ['198.18.1.11', 40002, 5301, 3],
  );
  assert.equal(parseIcmp(icmp(3, 1), false).unreachable?.code, 1, 'host unreachable, told apart by its code');
  assert.deepEqual(parseIcmp(icmp(0, 0), false), {}, 'an echo reply');
  assert.deepEqual(parseIcmp(icmp(3, 3).subarray(0, 40), false), {}, 'cut short');
});

test('an ICMPv6 port unreachable (no IPv6 header from a raw socket) quoting our datagram is seen', () => {
  const inner = Buffer.alloc(40);
  inner[0] = 0x60;
  inner[6] = 17;
  inner.writeUInt32BE(0x20010db8, 24);
  inner.writeUInt32BE(0x00010000, 28);
  inner.writeUInt32BE(0x11, 36);
  const packet = Buffer.concat([Buffer.from([1, 4, 0, 0, 0, 0, 0, 0]), inner, udp(40003, 53)]);
  const { unreachable } = parseIcmp(packet, true);
  assert.ok(unreachable);
  assert.deepEqual(
    [formatAddr(unreachable.to), unreachable.sport, unreachable.dport, unreachable.code, unreachable.v6],
    ['2001:db8:1::11', 40003, 53, 4, true],
  );
  inner[6] = 6;
  assert.deepEqual(
    parseIcmp(Buffer.concat([packet.subarray(0, 8), inner, udp(1, 2)]), true),
    {},
    'TCP quoted',
  );
});

test('a UDP probe of port 53 is a DNS query for the root NS; elsewhere a line of text', () => {
  const query = udpPayload(53);
  assert.equal(query.readUInt16BE(4), 1, 'one question');
  assert.equal(query[12], 0, 'the root name');
  assert.deepEqual([query.readUInt16BE(13), query.readUInt16BE(15)], [2, 1], 'NS, IN');
  assert.equal(udpPayload(5300).toString(), 'lvsd doctor probe\n');
});
