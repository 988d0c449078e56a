// The layer-2 frame shuffle: vnet | Ethernet | IP in, vnet | IP for the director, and back with a
// new Ethernet header, the vnet header's offsets moved between the two origins.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { readVnetHdr } from '../../src/core/packet/vnet.js';
import {
  ETH_HLEN,
  largestWirePacket,
  LINK_HEADROOM,
  toDirectorLayout,
  toWireLayout,
} from '../../src/dataplane/frame.js';
import { buildPacket, partialVnetFor, withVnet } from '../helpers/packets.js';

const SRC_MAC = Uint8Array.from([2, 0, 0, 0, 0, 0xaa]);
const DST_MAC = Uint8Array.from([2, 0, 0, 0, 0, 0xbb]);

/** vnet | Ethernet | IP as the ring holds it, the vnet offsets counted from the Ethernet header. */
function received(packet: Uint8Array, gso = false): Uint8Array {
  const fields = partialVnetFor(packet, gso ? { gsoSize: 1448 } : undefined);
  const frame = withVnet(new Uint8Array(ETH_HLEN + packet.length), {
    ...fields,
    csumStart: fields.csumStart! + ETH_HLEN,
    hdrLen: fields.hdrLen === undefined ? 0 : fields.hdrLen + ETH_HLEN,
  });
  frame.set([...DST_MAC, ...SRC_MAC, 0x08, 0x00], 10);
  frame.set(packet, 10 + ETH_HLEN);
  const buf = new Uint8Array(frame.length + 64);
  buf.set(frame);
  return buf;
}

describe('the layer-2 frame layout', () => {
  it('gives the director vnet | IP with offsets from the IP header, and keeps the Ethernet header', () => {
    const packet = buildPacket({
      src: '198.18.0.2',
      dst: '198.18.0.1',
      dport: 80,
      payload: new Uint8Array(3000),
    });
    const buf = received(packet, true);
    const eth = new Uint8Array(ETH_HLEN);
    const length = toDirectorLayout(buf, 0, 10 + ETH_HLEN + packet.length, eth);
    assert.equal(length, 10 + packet.length);
    assert.deepEqual(eth.subarray(6, 12), SRC_MAC, 'the previous hop');
    const vnet = readVnetHdr(buf, LINK_HEADROOM);
    assert.equal(vnet.csumStart, 20, 'TCP starts after the IPv4 header');
    assert.equal(vnet.hdrLen, 40);
    assert.equal(vnet.gsoSize, 1448);
    assert.deepEqual(buf.subarray(LINK_HEADROOM + 10, LINK_HEADROOM + 10 + packet.length), packet);
  });

  it('and back: vnet | new Ethernet header | IP, the same vnet header as received, wherever it sits in the slot', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.boolean(), fc.nat(2000), fc.nat(100), (v6, gso, size, at) => {
        const packet = v6
          ? buildPacket({ src: '2001:db8::2', dst: '2001:db8::1', dport: 80, payload: new Uint8Array(size) })
          : buildPacket({ src: '198.18.0.2', dst: '198.18.0.1', dport: 80, payload: new Uint8Array(size) });
        const frame = received(packet, gso);
        // What precedes the frame in its ring slot (the ring's own header) is never touched.
        const buf = new Uint8Array(at + frame.length).fill(0xee);
        buf.set(frame, at);
        const original = frame.slice(0, 10);
        const length = toDirectorLayout(buf, at, 10 + ETH_HLEN + packet.length, new Uint8Array(ETH_HLEN));
        assert.deepEqual(buf.subarray(at + LINK_HEADROOM + 10, at + LINK_HEADROOM + length), packet);
        const wire = toWireLayout(buf, at, length, DST_MAC, SRC_MAC);
        assert.equal(wire, 10 + ETH_HLEN + packet.length);
        assert.ok(buf.subarray(0, at).every((b) => b === 0xee));
        assert.deepEqual(buf.subarray(at, at + 10), original);
        assert.deepEqual(buf.subarray(at + 10, at + 16), DST_MAC);
        assert.deepEqual(buf.subarray(at + 16, at + 22), SRC_MAC);
        assert.deepEqual([...buf.subarray(at + 22, at + 24)], v6 ? [0x86, 0xdd] : [0x08, 0x00]);
        assert.deepEqual(buf.subarray(at + 24, at + 24 + packet.length), packet);
      }),
    );
  });

  it('sizes a frame as the wire carries it: a super-packet by its segments, a plain one whole', () => {
    for (const [src, dst, l3] of [
      ['198.18.1.11', '198.18.0.2', 20],
      ['2001:db8:1::11', '2001:db8::2', 40],
    ] as const) {
      const packet = buildPacket({
        src,
        dst,
        sport: 80,
        dport: 40000,
        payload: new Uint8Array(4000),
        partial: true,
      });
      const tso = withVnet(packet, partialVnetFor(packet, { gsoSize: 1448 }));
      assert.equal(largestWirePacket(tso, 0, tso.length), l3 + 20 + 1448);
      const plain = withVnet(packet, partialVnetFor(packet));
      assert.equal(largestWirePacket(plain, 0, plain.length), packet.length);
      // One segment's worth of payload or less: the packet is its own segment.
      const small = buildPacket({
        src,
        dst,
        sport: 80,
        dport: 40000,
        payload: new Uint8Array(100),
        partial: true,
      });
      const one = withVnet(small, partialVnetFor(small, { gsoSize: 1448 }));
      assert.equal(largestWirePacket(one, 0, one.length), small.length);
    }
  });

  it('refuses runts and a partial checksum that starts inside the Ethernet header', () => {
    const eth = new Uint8Array(ETH_HLEN);
    assert.equal(toDirectorLayout(new Uint8Array(100), 0, 24, eth), -1);
    const bad = withVnet(new Uint8Array(80), { flags: 1, csumStart: 4, csumOffset: 16 });
    assert.equal(toDirectorLayout(bad, 0, bad.length, eth), -1);
  });
});
