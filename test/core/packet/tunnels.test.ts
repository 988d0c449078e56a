// The IPv4 tunnel encapsulations (ipip, gre, gue) against an oracle decapsulator written apart
// from them (test/helpers/tunnels.ts): the inner packet comes out byte for byte, the outer header
// is valid, a GRE or UDP checksum is there exactly when asked for and covers every byte after it,
// GUE's source port stays one per flow, and a super-packet's segments are each wrapped whole.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { addr4 } from '../../../src/core/inet.js';
import type { TunnelSettings } from '../../../src/core/model.js';
import { GRE } from '../../../src/core/packet/gre.js';
import { flowSourcePort, GUE } from '../../../src/core/packet/gue.js';
import {
  encapsulate,
  encapsulateSegments,
  IPIP,
  tunnelOverhead,
  type Encapsulation,
  type TunnelPath,
} from '../../../src/core/packet/ipip.js';
import { parsePacket, type ParsedPacket } from '../../../src/core/packet/parse.js';
import { VNET_HDR_LEN } from '../../../src/core/packet/vnet.js';
import {
  buildPacket,
  ipv4HeaderValid,
  l4ChecksumValid,
  partialVnetFor,
  withVnet,
} from '../../helpers/packets.js';
import { decapsulate, type Decapsulated } from '../../helpers/tunnels.js';

const GUE_PORT = 6080;
const ENCAPS: Record<TunnelSettings['type'], Encapsulation> = { ipip: IPIP, gre: GRE, gue: GUE };
const SETTINGS: TunnelSettings[] = [
  { type: 'ipip', port: 0, csum: 'nocsum' },
  { type: 'gre', port: 0, csum: 'nocsum' },
  { type: 'gre', port: 0, csum: 'csum' },
  { type: 'gue', port: GUE_PORT, csum: 'nocsum' },
  { type: 'gue', port: GUE_PORT, csum: 'csum' },
];
const OVERHEADS = [20, 24, 28, 32, 32];

function pathFor(settings: TunnelSettings): TunnelPath {
  return { from: addr4(0xc6120101), to: addr4(0xc612010b), encap: ENCAPS[settings.type], settings };
}

function framed(packet: Uint8Array, vnet = withVnet(packet)): { buf: Uint8Array; p: ParsedPacket } {
  const buf = new Uint8Array(vnet.length + 64);
  buf.set(vnet);
  return { buf, p: parsePacket(buf, VNET_HDR_LEN, packet.length) as ParsedPacket };
}

function unwrap(frame: Uint8Array): Decapsulated {
  const found = decapsulate(frame.subarray(VNET_HDR_LEN), GUE_PORT);
  assert.equal(typeof found, 'object', `the real server takes it: ${String(found)}`);
  return found as Decapsulated;
}

const clientPacket = fc.record({
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  sport: fc.integer({ min: 1, max: 65535 }),
  dport: fc.integer({ min: 1, max: 65535 }),
  ttl: fc.integer({ min: 1, max: 255 }),
  dontFragment: fc.boolean(),
  payload: fc.uint8Array({ maxLength: 1400 }),
});

test('each type adds its header and nothing else: 20, 24, 28 (checksum), 32 bytes', () => {
  assert.deepEqual(
    SETTINGS.map((s) => tunnelOverhead(pathFor(s))),
    OVERHEADS,
  );
});

test('every type carries the client packet byte for byte, with the checksum it was asked for', () => {
  fc.assert(
    fc.property(clientPacket, fc.constantFrom(...SETTINGS), (spec, settings) => {
      const packet = buildPacket({ src: '198.18.0.100', dst: '198.18.2.1', ...spec });
      const { buf, p } = framed(packet);
      const length = encapsulate(buf, 0, p, pathFor(settings), 0x4242);
      const outer = buf.subarray(VNET_HDR_LEN, length);
      assert.equal(outer.length, packet.length + tunnelOverhead(pathFor(settings)));
      const found = unwrap(buf.subarray(0, length));
      assert.equal(found.kind, settings.type);
      assert.equal(found.checksummed, settings.csum === 'csum');
      assert.deepEqual(found.inner, packet);
      // ip_vs_tunnel_xmit: TOS, TTL and DF from the inner header.
      assert.equal(outer[8], spec.ttl);
      assert.equal(outer[6]! & 0x40, spec.dontFragment ? 0x40 : 0);
      if (settings.type === 'gue') assert.equal((outer[22]! << 8) | outer[23]!, GUE_PORT);
    }),
  );
});

test('a GRE or UDP checksum covers every byte after its header: one changed byte fails it', () => {
  fc.assert(
    fc.property(
      clientPacket,
      fc.constantFrom(...SETTINGS.filter((s) => s.csum === 'csum')),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (spec, settings, at, flip) => {
        const packet = buildPacket({ src: '198.18.0.100', dst: '198.18.2.1', ...spec });
        const { buf, p } = framed(packet);
        const length = encapsulate(buf, 0, p, pathFor(settings), 1);
        const outer = buf.slice(VNET_HDR_LEN, length);
        const inner = outer.length - packet.length;
        outer[inner + (at % packet.length)]! ^= flip;
        assert.equal(decapsulate(outer, GUE_PORT), settings.type === 'gre' ? 'gre checksum' : 'udp checksum');
      },
    ),
  );
});

test('a UDP checksum that sums to zero is sent as all ones, never as "no checksum"', () => {
  // Search the 16-bit payload word that makes the checksum come out 0 before RFC 768's rule (the
  // inner datagram carries no checksum of its own, which would cancel the word out).
  const settings = SETTINGS[4]!;
  const seen = new Set<number>();
  for (let word = 0; word < 0x10000; word++) {
    const payload = Uint8Array.of(word >> 8, word & 0xff);
    const packet = buildPacket({
      src: '198.18.0.100',
      dst: '198.18.2.1',
      protocol: 'udp',
      payload,
      udpNoChecksum: true,
    });
    const { buf, p } = framed(packet);
    const length = encapsulate(buf, 0, p, pathFor(settings), 7);
    const check = (buf[VNET_HDR_LEN + 26]! << 8) | buf[VNET_HDR_LEN + 27]!;
    seen.add(check);
    if (check === 0xffff) {
      assert.equal(unwrap(buf.subarray(0, length)).checksummed, true);
      return;
    }
  }
  assert.fail(`no payload gave 0xffff; ${seen.has(0) ? 'one gave 0' : ''}`);
});

test("GUE's source port is the flow's: the same for every packet of a connection, in the ephemeral range", () => {
  fc.assert(
    fc.property(clientPacket, fc.uint8Array({ maxLength: 200 }), (spec, otherPayload) => {
      const ports = [spec.payload, otherPayload].map((payload) => {
        const packet = buildPacket({ src: '198.18.0.100', dst: '198.18.2.1', ...spec, payload });
        const { buf, p } = framed(packet);
        const length = encapsulate(buf, 0, p, pathFor(SETTINGS[3]!), 1);
        return unwrap(buf.subarray(0, length)).sourcePort!;
      });
      assert.equal(ports[0], ports[1]);
      assert.ok(ports[0]! >= 32768 && ports[0]! <= 60999);
    }),
  );
  // Different connections spread over the range.
  const spread = new Set<number>();
  for (let sport = 40000; sport < 40100; sport++) {
    const packet = buildPacket({ src: '198.18.0.100', dst: '198.18.2.1', sport, dport: 80 });
    spread.add(flowSourcePort(packet, 0, packet.length));
  }
  assert.ok(spread.size > 90, `${spread.size} ports for 100 connections`);
});

test('a partial checksum is completed before the outer checksum is taken over it', () => {
  for (const settings of SETTINGS) {
    const packet = buildPacket({
      src: '198.18.0.100',
      dst: '198.18.2.1',
      partial: true,
      payload: new Uint8Array(99),
    });
    const { buf, p } = framed(packet, withVnet(packet, partialVnetFor(packet)));
    const length = encapsulate(buf, 0, p, pathFor(settings), 1);
    assert.equal(buf[0], 0, 'a plain virtio_net_hdr');
    assert.ok(l4ChecksumValid(unwrap(buf.subarray(0, length)).inner));
  }
});

test('a TCP super-packet becomes segments, each wrapped whole with its own valid checksums', () => {
  const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 7) % 256);
  for (const settings of SETTINGS) {
    const packet = buildPacket({
      src: '198.18.0.100',
      dst: '198.18.2.1',
      tcpFlags: 0x18,
      payload,
      partial: true,
      dontFragment: true,
    });
    const vnet = withVnet(packet, partialVnetFor(packet, { gsoSize: 1448 }));
    const buf = new Uint8Array(65536);
    buf.set(vnet);
    const p = parsePacket(buf, VNET_HDR_LEN, packet.length) as ParsedPacket;
    const extra: Uint8Array[] = [];
    let id = 100;
    const first = encapsulateSegments(buf, 0, p, pathFor(settings), () => id++, extra);
    const frames = [buf.slice(0, first), ...extra];
    assert.equal(frames.length, 4);
    const data: number[] = [];
    for (const frame of frames) {
      const { inner, checksummed } = unwrap(frame);
      assert.equal(checksummed, settings.csum === 'csum');
      assert.ok(ipv4HeaderValid(inner) && l4ChecksumValid(inner));
      assert.equal(frame.length - VNET_HDR_LEN, inner.length + tunnelOverhead(pathFor(settings)));
      data.push(...inner.subarray(40));
    }
    assert.deepEqual(data, [...payload], `${settings.type} ${settings.csum}`);
  }
});
