// IPv6 fragmentation by the director, for datagrams it was handed whole and must send on whole
// otherwise. IPv6 routers never fragment (RFC 8200 section 5): the kernel answers a forwarded
// packet longer than the egress MTU with "packet too big" to its source, which after the NAT
// rewrite is the director itself (the VIP) or the real server, neither of which can send the
// datagram any smaller. Such datagrams reach the device when the host's defragmentation
// reassembled them and lost the fragments' sizes on the way (a bridge with br_netfilter does),
// or come from a local sender routed through the device's large MTU. IPVS meets the same case
// by refragmenting at the largest fragment it was given (frag_max_size); the device does not
// say that, so the director fragments at the one size every IPv6 link carries.

import { completePartialChecksum, writeU16, writeU32 } from './checksum.js';
import { IPV6_MIN_MTU } from './icmp.js';
import {
  IPV6_HEADER,
  NEXTHDR_DEST,
  NEXTHDR_FRAGMENT,
  NEXTHDR_HOP,
  NEXTHDR_ROUTING,
  type ParsedPacket,
} from './parse.js';
import {
  readVnetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VNET_HDR_LEN,
  writePlainVnetHdr,
} from './vnet.js';

/**
 * A plain (non-GSO) IPv6 packet longer than this is fragmented before it is sent: Ethernet's MTU,
 * which nearly every path has. Shorter packets go whole, as a router sends them.
 */
export const IPV6_UNFRAGMENTED_MAX = 1500;

const FRAGMENT_HEADER = 8;

/**
 * Whether the frame at buf[offset] (virtio_net_hdr, then the IPv6 packet `p`) is one the kernel
 * would refuse to forward whole and the director must fragment: IPv6, not already a fragment, not
 * a GSO super-packet (the kernel segments those), longer than IPV6_UNFRAGMENTED_MAX.
 */
export function needsIpv6Fragmentation(buf: Uint8Array, offset: number, p: ParsedPacket): boolean {
  return (
    p.af === 6 &&
    p.l4Offset >= 0 &&
    !p.isFragment &&
    p.end - p.l3Offset > IPV6_UNFRAGMENTED_MAX &&
    buf[offset + 1] === VIRTIO_NET_HDR_GSO_NONE
  );
}

/**
 * The IPv6 packet `p` of the frame at buf[offset] as fragments of at most `mtu` bytes, each a frame
 * of its own with a plain virtio_net_hdr, in order; `id` is the fragment identification (RFC 7739:
 * the caller's, unpredictable). A partial checksum is completed first, since no device can finish
 * one spread over fragments. The unfragmentable part (RFC 8200 section 4.5: the IPv6 header,
 * Hop-by-Hop and Routing headers and Destination Options before a Routing header) is repeated in
 * each. Null when the packet has a fragment header already or its unfragmentable part leaves no
 * room for data; `buf` is unchanged then.
 */
export function fragmentIpv6(
  buf: Uint8Array,
  offset: number,
  p: ParsedPacket,
  id: number,
  mtu = IPV6_MIN_MTU,
): Uint8Array[] | null {
  const l3 = p.l3Offset;
  // Where the unfragmentable part ends, and the Next Header field that names what follows it.
  let unfragmentableEnd = l3 + IPV6_HEADER;
  let nextHeaderField = l3 + 6;
  let next = buf[l3 + 6]!;
  let pos = l3 + IPV6_HEADER;
  while (pos < p.l4Offset) {
    if (next === NEXTHDR_FRAGMENT) return null;
    if (next !== NEXTHDR_HOP && next !== NEXTHDR_ROUTING && next !== NEXTHDR_DEST) break;
    const length = (buf[pos + 1]! + 1) * 8;
    if (next !== NEXTHDR_DEST) {
      unfragmentableEnd = pos + length;
      nextHeaderField = pos;
    }
    next = buf[pos]!;
    pos += length;
  }
  const unfragmentable = unfragmentableEnd - l3;
  const perFragment = Math.floor((mtu - unfragmentable - FRAGMENT_HEADER) / 8) * 8;
  if (perFragment < 8) return null;

  const vnet = readVnetHdr(buf, offset);
  if (vnet.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    const start = offset + VNET_HDR_LEN + vnet.csumStart;
    completePartialChecksum(buf, start, start + vnet.csumOffset, p.end);
  }
  const firstFragmentable = buf[nextHeaderField]!;
  const frames: Uint8Array[] = [];
  for (let at = unfragmentableEnd; at < p.end; at += perFragment) {
    const dataLength = Math.min(perFragment, p.end - at);
    const more = at + dataLength < p.end;
    const frame = new Uint8Array(VNET_HDR_LEN + unfragmentable + FRAGMENT_HEADER + dataLength);
    writePlainVnetHdr(frame, 0);
    const ip = VNET_HDR_LEN;
    frame.set(buf.subarray(l3, unfragmentableEnd), ip);
    writeU16(frame, ip + 4, unfragmentable - IPV6_HEADER + FRAGMENT_HEADER + dataLength);
    frame[ip + (nextHeaderField - l3)] = NEXTHDR_FRAGMENT;
    const header = ip + unfragmentable;
    frame[header] = firstFragmentable;
    frame[header + 1] = 0;
    writeU16(frame, header + 2, (at - unfragmentableEnd) | (more ? 1 : 0));
    writeU32(frame, header + 4, id);
    frame.set(buf.subarray(at, at + dataLength), header + FRAGMENT_HEADER);
    frames.push(frame);
  }
  return frames;
}
