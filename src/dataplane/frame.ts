// The layer-2 plane's frame shuffle, in place in the loop's buffer. An AF_PACKET socket with
// PACKET_VNET_HDR hands over `vnet | Ethernet | IP`; the director reads `vnet | IP` (as from a
// TUN device). So the Ethernet header is saved (its source MAC is the previous hop), the vnet
// header is moved 10 bytes before the IP header, and its offsets, which the kernel counts from
// the Ethernet header, are made to count from the IP header. Going out, the reverse: the vnet
// header goes back to the front and a new Ethernet header sits between it and the IP packet.

import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VNET_HDR_LEN,
} from '../core/packet/vnet.js';

export const ETH_HLEN = 14;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
/** Where the director's `vnet | IP` starts in the loop's buffer. */
export const LINK_HEADROOM = ETH_HLEN;

function shiftOffsets(buf: Uint8Array, vnet: number, by: number): void {
  if ((buf[vnet]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    const start = buf[vnet + 6]! | (buf[vnet + 7]! << 8);
    const moved = start + by;
    buf[vnet + 6] = moved;
    buf[vnet + 7] = moved >>> 8;
  }
  const hdrLen = buf[vnet + 2]! | (buf[vnet + 3]! << 8);
  // hdr_len is the linear head's size: 0 (unknown) stays 0.
  if (hdrLen !== 0) {
    const moved = Math.max(0, hdrLen + by);
    buf[vnet + 2] = moved;
    buf[vnet + 3] = moved >>> 8;
  }
}

/**
 * buf[at, at + length) is `vnet | Ethernet | IP` as received. Copies the Ethernet header to `eth`,
 * leaves `vnet | IP` at buf[at + LINK_HEADROOM, at + LINK_HEADROOM + result) and returns that
 * length; -1 for a frame too short to hold an Ethernet header and an IP header's first byte (a runt).
 */
export function toDirectorLayout(buf: Uint8Array, at: number, length: number, eth: Uint8Array): number {
  if (length <= VNET_HDR_LEN + ETH_HLEN) return -1;
  const needsFix = (buf[at]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
  const csumStart = buf[at + 6]! | (buf[at + 7]! << 8);
  // A partial checksum that starts inside the Ethernet header cannot be an IP packet's.
  if (needsFix && csumStart < ETH_HLEN) return -1;
  // Byte by byte: a subarray per packet would be garbage on the hot path.
  for (let i = 0; i < ETH_HLEN; i++) eth[i] = buf[at + VNET_HDR_LEN + i]!;
  buf.copyWithin(at + LINK_HEADROOM, at, at + VNET_HDR_LEN);
  shiftOffsets(buf, at + LINK_HEADROOM, -ETH_HLEN);
  return length - ETH_HLEN;
}

/**
 * buf[at + LINK_HEADROOM, at + LINK_HEADROOM + length) is `vnet | IP` as the director left it.
 * Makes buf[at, at + result) the frame to send, `vnet | Ethernet(dst, src, IP version's type) | IP`.
 */
export function toWireLayout(
  buf: Uint8Array,
  at: number,
  length: number,
  dst: Uint8Array,
  src: Uint8Array,
): number {
  buf.copyWithin(at, at + LINK_HEADROOM, at + LINK_HEADROOM + VNET_HDR_LEN);
  shiftOffsets(buf, at, ETH_HLEN);
  const type = buf[at + LINK_HEADROOM + VNET_HDR_LEN]! >> 4 === 6 ? ETH_P_IPV6 : ETH_P_IP;
  const eth = at + VNET_HDR_LEN;
  buf.set(dst, eth);
  buf.set(src, eth + 6);
  buf[eth + 12] = type >> 8;
  buf[eth + 13] = type & 0xff;
  return length + ETH_HLEN;
}

/**
 * buf[vnet, vnet + length) is `vnet | IP` (offsets from the IP header): the largest IP packet it
 * is on the wire. A GSO super-packet's is a segment's, its headers and gso_size bytes of payload
 * (the kernel's skb_gso_network_seglen); a segmentation the header does not describe fully counts
 * as the whole packet.
 */
export function largestWirePacket(buf: Uint8Array, vnet: number, length: number): number {
  const whole = length - VNET_HDR_LEN;
  const gsoType = buf[vnet + 1]! & ~VIRTIO_NET_HDR_GSO_ECN;
  const gsoSize = buf[vnet + 4]! | (buf[vnet + 5]! << 8);
  if (gsoType === VIRTIO_NET_HDR_GSO_NONE || gsoSize === 0) return whole;
  if ((buf[vnet]! & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) return whole;
  const l4 = buf[vnet + 6]! | (buf[vnet + 7]! << 8);
  const ip = vnet + VNET_HDR_LEN;
  let l4Header: number;
  if (gsoType === VIRTIO_NET_HDR_GSO_TCPV4 || gsoType === VIRTIO_NET_HDR_GSO_TCPV6) {
    if (l4 + 13 > whole) return whole;
    l4Header = (buf[ip + l4 + 12]! >> 4) * 4;
  } else if (gsoType === VIRTIO_NET_HDR_GSO_UDP_L4) l4Header = 8;
  else return whole;
  return Math.min(whole, l4 + l4Header + gsoSize);
}
