import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatAddr } from '../../../src/core/inet.js';
import {
  buildPacketTooBig,
  buildPortUnreachable,
  mayReplyWithIcmpError,
  parseIcmpError,
  rewriteIcmpErrorToClient,
  rewriteIcmpErrorToRealServer,
} from '../../../src/core/packet/icmp.js';
import { parsePacket } from '../../../src/core/packet/parse.js';
import type { ParsedPacket } from '../../../src/core/packet/parse.js';
import {
  buildPacket,
  completeAsKernel,
  fragmentPacket,
  hex,
  ipv4HeaderValid,
  l4ChecksumValid,
  l4Start,
  addr,
} from '../../helpers/packets.js';
import type { PacketSpec } from '../../helpers/packets.js';

function parseOk(buf: Uint8Array): ParsedPacket {
  const p = parsePacket(buf, 0, buf.length);
  assert.ok(p.ok);
  return p;
}

const hosts = {
  4: { client: '203.0.113.5', vip: '198.18.0.10', rip: '198.18.1.20', router: '198.18.5.1' },
  6: { client: '2001:db8:c::5', vip: '2001:db8::10', rip: 'fd00:1::20', router: 'fd00:5::1' },
};

/** An ICMP error from `from` to `to` quoting the first `quoteLength` bytes of `quoted`. */
function icmpError(af: 4 | 6, from: string, to: string, quoted: Uint8Array, quoteLength: number): Uint8Array {
  return buildPacket({
    src: from,
    dst: to,
    protocol: 'icmp',
    icmpType: af === 4 ? 3 : 2,
    icmpCode: af === 4 ? 4 : 0,
    icmpRest: 1400,
    payload: quoted.subarray(0, quoteLength),
  });
}

function assertAllChecksumsValid(packet: Uint8Array): void {
  const v4 = packet[0]! >>> 4 === 4;
  if (v4) assert.ok(ipv4HeaderValid(packet), 'outer IPv4 header');
  assert.ok(l4ChecksumValid(packet), 'ICMP checksum');
  const inner = packet.subarray(l4Start(packet).offset + 8);
  if (v4) assert.ok(ipv4HeaderValid(inner), 'quoted IPv4 header');
}

const quoteCases = fc.record({
  af: fc.constantFrom(4 as const, 6 as const),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  payload: fc.uint8Array({ maxLength: 40 }),
  // How much of the quoted L4 message is present: 8 bytes (RFC 792) up to all of it. A quote
  // ending inside the TCP checksum (17 bytes) cannot be fixed and is left out.
  extra: fc.integer({ min: 8, max: 80 }).filter((n) => n !== 17),
  cport: fc.integer({ min: 1, max: 0xffff }),
  vport: fc.integer({ min: 1, max: 0xffff }),
  rport: fc.integer({ min: 1, max: 0xffff }),
});

test('property: an error to the client about client->RIP becomes one from the VIP about client->VIP', () => {
  fc.assert(
    fc.property(quoteCases, (c) => {
      const h = hosts[c.af];
      const flow = { protocol: c.protocol, payload: c.payload, src: h.client, sport: c.cport };
      // What the client sent, and what the director forwarded to the real server.
      const sent = buildPacket({ ...flow, dst: h.vip, dport: c.vport });
      const forwarded = buildPacket({ ...flow, dst: h.rip, dport: c.rport });
      const headerLength = c.af === 4 ? 20 : 40;
      const quoteLength = Math.min(sent.length, headerLength + c.extra);
      const buf = icmpError(c.af, h.router, h.client, forwarded, quoteLength);

      const outer = parseOk(buf);
      const inner = parseIcmpError(buf, outer);
      assert.ok(inner);
      assert.deepEqual(
        [inner.protocol, formatAddr(inner.saddr), inner.sport, formatAddr(inner.daddr), inner.dport],
        [c.protocol === 'tcp' ? 6 : 17, h.client, c.cport, h.rip, c.rport],
      );
      rewriteIcmpErrorToClient(buf, outer, inner, addr(h.vip), c.vport, 0);
      assert.equal(hex(buf), hex(icmpError(c.af, h.vip, h.client, sent, quoteLength)));
      assertAllChecksumsValid(buf);
    }),
    { numRuns: 1000 },
  );
});

test('property: an error to the VIP about VIP->client becomes one to the RIP about RIP->client', () => {
  fc.assert(
    fc.property(quoteCases, (c) => {
      const h = hosts[c.af];
      const flow = { protocol: c.protocol, payload: c.payload, dst: h.client, dport: c.cport };
      // What the real server sent, and what the director forwarded to the client.
      const sent = buildPacket({ ...flow, src: h.rip, sport: c.rport });
      const forwarded = buildPacket({ ...flow, src: h.vip, sport: c.vport });
      const headerLength = c.af === 4 ? 20 : 40;
      const quoteLength = Math.min(sent.length, headerLength + c.extra);
      const buf = icmpError(c.af, h.router, h.vip, forwarded, quoteLength);

      const outer = parseOk(buf);
      const inner = parseIcmpError(buf, outer);
      assert.ok(inner);
      assert.deepEqual([formatAddr(inner.saddr), inner.sport], [h.vip, c.vport]);
      rewriteIcmpErrorToRealServer(buf, outer, inner, addr(h.rip), c.rport, 0);
      assert.equal(hex(buf), hex(icmpError(c.af, h.router, h.rip, sent, quoteLength)));
      assertAllChecksumsValid(buf);
    }),
    { numRuns: 1000 },
  );
});

test('ICMPv6 error with a NEEDS_CSUM checksum: completing it as the kernel does verifies', () => {
  const h = hosts[6];
  const forwarded = buildPacket({ src: h.client, dst: h.rip, sport: 1000, dport: 8080 });
  const spec: PacketSpec = {
    src: h.router,
    dst: h.client,
    protocol: 'icmp',
    icmpType: 1,
    payload: forwarded,
  };
  const buf = buildPacket({ ...spec, partial: true });
  const outer = parseOk(buf);
  const inner = parseIcmpError(buf, outer);
  assert.ok(inner);
  rewriteIcmpErrorToClient(buf, outer, inner, addr(h.vip), 80, 1);
  assert.ok(l4ChecksumValid(completeAsKernel(buf, 40, 2)));
  assert.equal(formatAddr(parseOk(buf).saddr), h.vip);
});

test('UDP quoted without a checksum keeps 0 in the quote', () => {
  const h = hosts[4];
  const flow = { protocol: 'udp' as const, src: h.client, sport: 5000, udpNoChecksum: true };
  const forwarded = buildPacket({ ...flow, dst: h.rip, dport: 53 });
  const buf = icmpError(4, h.router, h.client, forwarded, forwarded.length);
  const outer = parseOk(buf);
  rewriteIcmpErrorToClient(buf, outer, parseIcmpError(buf, outer)!, addr(h.vip), 53, 0);
  assert.equal(
    hex(buf),
    hex(icmpError(4, h.vip, h.client, buildPacket({ ...flow, dst: h.vip, dport: 53 }), 28)),
  );
});

test('parseIcmpError refuses what it cannot translate', () => {
  const h = hosts[4];
  const tcp = buildPacket({ src: h.client, dst: h.rip });
  const echo = buildPacket({ src: h.router, dst: h.client, protocol: 'icmp', icmpType: 8, payload: tcp });
  assert.equal(parseIcmpError(echo, parseOk(echo)), null, 'not an error');
  const aboutEcho = icmpError(4, h.router, h.client, echo, 28);
  assert.equal(parseIcmpError(aboutEcho, parseOk(aboutEcho)), null, 'quotes ICMP, no ports');
  const short = icmpError(4, h.router, h.client, tcp, 24);
  assert.equal(parseIcmpError(short, parseOk(short)), null, 'ports cut off');
  const v6inV4 = icmpError(4, h.router, h.client, buildPacket({ src: '::1', dst: '::2' }), 48);
  assert.equal(parseIcmpError(v6inV4, parseOk(v6inV4)), null, 'family mismatch');
  const [fragmentedError] = fragmentPacket(icmpError(4, h.router, h.client, tcp, 40), 16, 3);
  assert.equal(parseIcmpError(fragmentedError!, parseOk(fragmentedError!)), null, 'fragmented error');
});

for (const af of [4, 6] as const) {
  test(`IPv${af} port unreachable from the VIP quotes the offending packet`, () => {
    const h = hosts[af];
    const payload = Uint8Array.from({ length: 100 }, (_, i) => i);
    const offending = buildPacket({
      src: h.client,
      dst: h.vip,
      sport: 40001,
      dport: 443,
      tcpFlags: 0x02,
      payload,
      ipOptions: af === 4 ? Uint8Array.from([1, 1, 1, 1]) : undefined,
    });
    const p = parseOk(offending);
    assert.ok(mayReplyWithIcmpError(p));
    const out = new Uint8Array(1500);
    const length = buildPortUnreachable(out, 0, offending, p);
    // IPv4: header (with its options) + 8 bytes; IPv6: the whole packet, it fits in 1280.
    const quoteLength = af === 4 ? 24 + 8 : offending.length;
    assert.equal(length, (af === 4 ? 20 : 40) + 8 + quoteLength);
    const reply = out.subarray(0, length);
    const r = parseOk(reply);
    assert.deepEqual(
      [formatAddr(r.saddr), formatAddr(r.daddr), r.icmpType, r.icmpCode],
      [h.vip, h.client, af === 4 ? 3 : 1, af === 4 ? 3 : 4],
    );
    assert.ok(l4ChecksumValid(reply));
    if (af === 4) assert.ok(ipv4HeaderValid(reply));
    assert.equal(hex(reply.subarray(r.l4Offset + 8)), hex(offending.subarray(0, quoteLength)));
    // The director's own ICMP translation sees the quoted flow.
    const inner = parseIcmpError(reply, r);
    assert.ok(inner);
    assert.deepEqual([inner.sport, inner.dport, formatAddr(inner.daddr)], [40001, 443, h.vip]);
    assert.equal(mayReplyWithIcmpError(r), false, 'never an error about an error');
  });
}

test('packet too big names the MTU: ICMPv4 fragmentation needed, ICMPv6 packet too big', () => {
  for (const af of [4, 6] as const) {
    const h = hosts[af];
    const offending = buildPacket({ src: h.client, dst: h.vip, sport: 40001, dport: 80, tcpFlags: 0x10 });
    const out = new Uint8Array(1500);
    const reply = out.subarray(0, buildPacketTooBig(out, 0, offending, parseOk(offending), 1480));
    const r = parseOk(reply);
    assert.deepEqual(
      [formatAddr(r.saddr), formatAddr(r.daddr), r.icmpType, r.icmpCode],
      [h.vip, h.client, af === 4 ? 3 : 2, af === 4 ? 4 : 0],
    );
    // RFC 1191: the next-hop MTU in the low 16 bits; RFC 8201: the whole 32-bit word.
    const word = r.l4Offset + 4;
    assert.equal(
      ((reply[word]! << 24) | (reply[word + 1]! << 16) | (reply[word + 2]! << 8) | reply[word + 3]!) >>> 0,
      1480,
    );
    assert.ok(l4ChecksumValid(reply));
    assert.ok(parseIcmpError(reply, r), 'quotes the offending packet');
  }
});

test('IPv6 port unreachable is cut to 1280 bytes; a too small buffer yields 0', () => {
  const h = hosts[6];
  const offending = buildPacket({
    src: h.client,
    dst: h.vip,
    protocol: 'udp',
    payload: new Uint8Array(3000),
  });
  const p = parseOk(offending);
  const out = new Uint8Array(2000);
  const length = buildPortUnreachable(out, 0, offending, p);
  assert.equal(length, 1280);
  assert.equal(hex(out.subarray(48, 1280)), hex(offending.subarray(0, 1232)));
  assert.ok(l4ChecksumValid(out.subarray(0, length)));
  assert.equal(buildPortUnreachable(new Uint8Array(1279), 0, offending, p), 0);
});

test('port unreachable may be built over the offending packet itself', () => {
  const h = hosts[4];
  const offending = buildPacket({ src: h.client, dst: h.vip, protocol: 'udp', payload: new Uint8Array(64) });
  const expectedQuote = offending.slice(0, 28);
  const buf = new Uint8Array(200);
  buf.set(offending, 10);
  const length = buildPortUnreachable(buf, 10, buf, parsePacket(buf, 10, offending.length) as ParsedPacket);
  const reply = buf.subarray(10, 10 + length);
  assert.equal(hex(reply.subarray(28)), hex(expectedQuote));
  assert.equal(formatAddr(parseOk(reply).daddr), h.client);
  assert.ok(l4ChecksumValid(reply) && ipv4HeaderValid(reply));
});

test('mayReplyWithIcmpError: not to multicast, broadcast or unspecified, not about later fragments', () => {
  const may = (spec: PacketSpec) => mayReplyWithIcmpError(parseOk(buildPacket(spec)));
  assert.equal(may({ src: '10.0.0.1', dst: '224.0.0.5', protocol: 'udp' }), false);
  assert.equal(may({ src: '10.0.0.1', dst: '255.255.255.255', protocol: 'udp' }), false);
  assert.equal(may({ src: '0.0.0.0', dst: '10.0.0.2', protocol: 'udp' }), false);
  assert.equal(may({ src: '::', dst: 'fd00::1', protocol: 'udp' }), false);
  assert.equal(may({ src: 'fd00::2', dst: 'ff02::1', protocol: 'udp' }), false);
  assert.equal(may({ src: 'fd00::2', dst: 'fd00::1', protocol: 'udp' }), true);
  const fragments = fragmentPacket(
    buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', payload: new Uint8Array(64) }),
    32,
    1,
  );
  assert.equal(mayReplyWithIcmpError(parseOk(fragments[0]!)), true);
  assert.equal(mayReplyWithIcmpError(parseOk(fragments[1]!)), false);
});
