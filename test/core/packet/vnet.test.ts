import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  readVnetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  vnetFlags,
  writePlainVnetHdr,
  writeVnetHdr,
} from '../../../src/core/packet/vnet.js';
import { withVnet } from '../../helpers/packets.js';

test('readVnetHdr reads the little-endian fields the kernel writes', () => {
  const buf = withVnet(new Uint8Array(4), {
    flags: 1,
    gsoType: 1,
    hdrLen: 0x0136,
    gsoSize: 1448,
    csumStart: 20,
    csumOffset: 16,
  });
  assert.deepEqual(readVnetHdr(buf, 0), {
    flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
    gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
    hdrLen: 0x0136,
    gsoSize: 1448,
    csumStart: 20,
    csumOffset: 16,
  });
  assert.equal(vnetFlags(buf, 0), VIRTIO_NET_HDR_F_NEEDS_CSUM);
});

test('writeVnetHdr writes back exactly what was read, at an offset', () => {
  const original = withVnet(new Uint8Array(0), {
    flags: 1,
    gsoType: 0x84,
    hdrLen: 74,
    gsoSize: 1428,
    csumStart: 40,
    csumOffset: 16,
  });
  const out = new Uint8Array(16).fill(0xaa);
  writeVnetHdr(out, 3, readVnetHdr(original, 0));
  assert.deepEqual(out.subarray(3, 13), original.subarray(0, 10));
  assert.equal(out[2], 0xaa);
  assert.equal(out[13], 0xaa);
  writePlainVnetHdr(out, 3);
  assert.deepEqual(readVnetHdr(out, 3), {
    flags: 0,
    gsoType: 0,
    hdrLen: 0,
    gsoSize: 0,
    csumStart: 0,
    csumOffset: 0,
  });
});
