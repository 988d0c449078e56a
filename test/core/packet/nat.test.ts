import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { addr4, addr6, formatAddr } from '../../../src/core/inet.js';
import { readU16 } from '../../../src/core/packet/checksum.js';
import { rewriteDestination, rewriteSource } from '../../../src/core/packet/nat.js';
import { parsePacket } from '../../../src/core/packet/parse.js';
import type { ParsedPacket } from '../../../src/core/packet/parse.js';
import { readVnetHdr, VNET_HDR_LEN, vnetFlags } from '../../../src/core/packet/vnet.js';
import {
  buildPacket,
  completeAsKernel,
  fragmentPacket,
  hex,
  ipv4HeaderValid,
  l4ChecksumValid,
  partialVnetFor,
  withVnet,
  addr,
} from '../../helpers/packets.js';
import type { PacketSpec } from '../../helpers/packets.js';

function parseAt(buf: Uint8Array, offset = 0): ParsedPacket {
  const p = parsePacket(buf, offset, buf.length - offset);
  assert.ok(p.ok);
  return p;
}

const word = fc.integer({ min: 0, max: 0xffffffff });
const v4Addr = word.map(addr4);
const v6Addr = fc.tuple(word, word, word, word).map(([a, b, c, d]) => addr6(a, b, c, d));
const port = fc.integer({ min: 0, max: 0xffff });

const flowCase = fc.constantFrom(4 as const, 6 as const).chain((af) =>
  fc.record({
    client: af === 4 ? v4Addr : v6Addr,
    vip: af === 4 ? v4Addr : v6Addr,
    rip: af === 4 ? v4Addr : v6Addr,
    cport: port,
    vport: port,
    rport: port,
    protocol: fc.constantFrom('tcp' as const, 'udp' as const),
    payload: fc.uint8Array({ maxLength: 64 }),
    partial: fc.boolean(),
    udpNoChecksum: af === 4 ? fc.boolean() : fc.constant(false),
    direction: fc.constantFrom('in' as const, 'out' as const),
  }),
);

test('property: a NAT rewrite gives exactly the packet built with the new endpoint, checksums valid', () => {
  fc.assert(
    fc.property(flowCase, (c) => {
      const partial = c.partial && !c.udpNoChecksum;
      const common = { protocol: c.protocol, payload: c.payload, partial, udpNoChecksum: c.udpNoChecksum };
      const client = formatAddr(c.client);
      const vip = formatAddr(c.vip);
      const rip = formatAddr(c.rip);
      // In: client->VIP:vport becomes client->RIP:rport. Out: RIP:rport->client becomes VIP:vport->client.
      const [before, after]: PacketSpec[] =
        c.direction === 'in'
          ? [
              { ...common, src: client, sport: c.cport, dst: vip, dport: c.vport },
              { ...common, src: client, sport: c.cport, dst: rip, dport: c.rport },
            ]
          : [
              { ...common, src: rip, sport: c.rport, dst: client, dport: c.cport },
              { ...common, src: vip, sport: c.vport, dst: client, dport: c.cport },
            ];
      const original = buildPacket(before!);
      const vnetFields = partial ? partialVnetFor(original) : {};
      const buf = withVnet(original, vnetFields);
      const p = parseAt(buf, VNET_HDR_LEN);
      const flags = vnetFlags(buf, 0);
      const done =
        c.direction === 'in'
          ? rewriteDestination(buf, p, c.rip, c.rport, flags)
          : rewriteSource(buf, p, c.vip, c.vport, flags);
      assert.equal(done, true);
      const rewritten = buf.subarray(VNET_HDR_LEN);
      assert.equal(hex(rewritten), hex(buildPacket(after!)));
      if (p.af === 4) assert.ok(ipv4HeaderValid(rewritten));
      if (partial) {
        const hdr = readVnetHdr(buf, 0);
        assert.ok(l4ChecksumValid(completeAsKernel(rewritten, hdr.csumStart, hdr.csumOffset)));
      } else {
        assert.ok(l4ChecksumValid(rewritten));
      }
    }),
    { numRuns: 2000 },
  );
});

test('a 64 KB TSO super-packet with NEEDS_CSUM: only the seed changes, the vnet header stays', () => {
  const spec = { src: '198.18.0.1', dst: '198.18.1.1', sport: 40000, dport: 80, partial: true };
  const payload = Uint8Array.from({ length: 64000 }, (_, i) => i * 7);
  const original = buildPacket({ ...spec, payload });
  const vnet = partialVnetFor(original, { gsoSize: 1448 });
  const buf = withVnet(original, vnet);
  const headerBefore = hex(buf.subarray(0, VNET_HDR_LEN));
  const p = parseAt(buf, VNET_HDR_LEN);
  assert.ok(rewriteDestination(buf, p, addr('198.18.2.7'), 8080, vnetFlags(buf, 0)));
  assert.equal(hex(buf.subarray(0, VNET_HDR_LEN)), headerBefore);
  const rewritten = buf.subarray(VNET_HDR_LEN);
  assert.equal(hex(rewritten), hex(buildPacket({ ...spec, dst: '198.18.2.7', dport: 8080, payload })));
  assert.ok(l4ChecksumValid(completeAsKernel(rewritten, vnet.csumStart!, vnet.csumOffset!)));
});

test('a partial seed is adjusted for the address only: a port change must not touch it', () => {
  const spec = { src: '10.0.0.1', dst: '10.0.0.2', partial: true, sport: 1000, dport: 80 };
  const buf = buildPacket(spec);
  const seed = readU16(buf, 36);
  rewriteDestination(buf, parseAt(buf), addr('10.0.0.2'), 9999, 1);
  assert.equal(readU16(buf, 36), seed);
  assert.equal(readU16(buf, 22), 9999);
});

test('UDP over IPv4 without a checksum keeps 0', () => {
  const buf = buildPacket({ src: '10.0.0.1', dst: '10.0.0.2', protocol: 'udp', udpNoChecksum: true });
  rewriteDestination(buf, parseAt(buf), addr('10.9.8.7'), 53, 0);
  assert.equal(readU16(buf, 26), 0);
  assert.ok(ipv4HeaderValid(buf));
  assert.equal(formatAddr(parseAt(buf).daddr), '10.9.8.7');
});

for (const af of [4, 6] as const) {
  test(`IPv${af} UDP: a checksum that computes to 0 is sent as 0xffff`, () => {
    const [client, vip, rip] =
      af === 4 ? ['10.0.0.1', '10.0.0.2', '10.0.0.3'] : ['fd00::1', 'fd00::2', 'fd00::3'];
    const after = { src: client, dst: rip, protocol: 'udp' as const, sport: 1111, dport: 53 };
    // Choose the payload word that makes the rewritten packet's sum all ones (checksum 0).
    const probe = buildPacket({ ...after, payload: new Uint8Array(2) });
    const probeCheck = readU16(probe, probe.length - 4);
    const x = probeCheck === 0xffff ? 0 : probeCheck;
    const payload = Uint8Array.from([x >>> 8, x & 0xff]);
    const expected = buildPacket({ ...after, payload });
    assert.equal(readU16(expected, expected.length - 4), 0xffff);

    const buf = buildPacket({ ...after, dst: vip, dport: 5353, payload });
    rewriteDestination(buf, parseAt(buf), addr(rip), 53, 0);
    assert.equal(hex(buf), hex(expected));
  });
}

for (const af of [4, 6] as const) {
  test(`IPv${af} fragments: the first has its L4 header rewritten, later ones only addresses`, () => {
    const [client, vip, rip] =
      af === 4 ? ['10.0.0.1', '10.0.0.2', '10.0.0.3'] : ['fd00::1', 'fd00::2', 'fd00::3'];
    const payload = Uint8Array.from({ length: 300 }, (_, i) => i);
    const spec = { src: client, protocol: 'udp' as const, sport: 7000, payload };
    const fragments = fragmentPacket(buildPacket({ ...spec, dst: vip, dport: 53 }), 128, 42);
    const expected = fragmentPacket(buildPacket({ ...spec, dst: rip, dport: 5300 }), 128, 42);
    assert.equal(fragments.length, 3);
    for (const [i, fragment] of fragments.entries()) {
      assert.ok(rewriteDestination(fragment, parseAt(fragment), addr(rip), 5300, 0));
      assert.equal(hex(fragment), hex(expected[i]!), `fragment ${i}`);
    }
  });
}

test('ICMP echo: addresses rewritten, the ICMPv4 checksum (no pseudo-header) untouched', () => {
  const buf = buildPacket({
    src: '10.0.0.1',
    dst: '10.0.0.2',
    protocol: 'icmp',
    icmpType: 8,
    icmpRest: 0x10001,
  });
  rewriteDestination(buf, parseAt(buf), addr('10.0.0.3'), 0, 0);
  assert.equal(
    hex(buf),
    hex(buildPacket({ src: '10.0.0.1', dst: '10.0.0.3', protocol: 'icmp', icmpType: 8, icmpRest: 0x10001 })),
  );
});

test('ICMPv6 echo: the checksum follows the pseudo-header change', () => {
  const spec = {
    src: 'fd00::1',
    protocol: 'icmp' as const,
    icmpType: 128,
    payload: new Uint8Array(10).fill(3),
  };
  const buf = buildPacket({ ...spec, dst: 'fd00::2' });
  rewriteDestination(buf, parseAt(buf), addr('fd00::3'), 0, 0);
  assert.equal(hex(buf), hex(buildPacket({ ...spec, dst: 'fd00::3' })));
});

test('SCTP: the CRC32c is recomputed after a port change', () => {
  const spec = {
    src: '10.0.0.1',
    protocol: 'sctp' as const,
    sport: 5000,
    payload: new Uint8Array(16).fill(9),
  };
  const buf = buildPacket({ ...spec, dst: '10.0.0.2', dport: 3868 });
  assert.ok(rewriteDestination(buf, parseAt(buf), addr('10.0.0.3'), 3869, 0));
  assert.equal(hex(buf), hex(buildPacket({ ...spec, dst: '10.0.0.3', dport: 3869 })));
  assert.ok(l4ChecksumValid(buf));
});

test('SCTP: a first fragment whose port would change is refused and left as it was', () => {
  const spec = { src: '10.0.0.1', dst: '10.0.0.2', protocol: 'sctp' as const, payload: new Uint8Array(64) };
  const [first] = fragmentPacket(buildPacket(spec), 32, 5);
  const before = hex(first!);
  assert.equal(rewriteDestination(first!, parseAt(first!), addr('10.0.0.3'), 1, 0), false);
  assert.equal(hex(first!), before);
});
