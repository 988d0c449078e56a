// The IPv4 tunnels of IPVS's ip_vs_tunnel_xmit: an outer IPv4 header from the director to the
// real server, copying the inner header's TOS, TTL and DF, then the encapsulation's own header
// (none for IP-in-IP, RFC 2003; GRE and UDP + GUE in gre.ts and gue.ts), then the client's packet
// unchanged. The frame leaves with a plain virtio_net_hdr: a partial checksum is completed here,
// and a TCP GSO super-packet is split into the segments the kernel would have made
// (tcp_gso_segment), because virtio_net_hdr has no GSO type for an encapsulated packet and the
// kernel would segment the outer header as if it were TCP.

import { IPPROTO_TCP, type Addr } from '../inet.js';
import type { TunnelSettings } from '../model.js';
import {
  completePartialChecksum,
  ipv4HeaderChecksum,
  l4Checksum,
  readU16,
  readU32,
  writeU16,
  writeU32,
} from './checksum.js';
import type { ParsedPacket } from './parse.js';
import {
  readVnetHdr,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VNET_HDR_LEN,
  isSuperPacket,
  writePlainVnetHdr,
  type VnetHdr,
} from './vnet.js';

/** The outer IPv4 header, without options. */
export const OUTER_IPV4_HEADER = 20;
/** IPPROTO_IPIP: the outer header's protocol for IP-in-IP, and GUE's inner protocol. */
export const IPPROTO_IPIP = 4;

/**
 * What a tunnel type puts between the outer IPv4 header and the client's packet (IPVS's
 * ipvs_gre_encap, ipvs_gue_encap), for a real server's tunnel settings.
 */
export interface Encapsulation {
  /** The outer header's protocol. */
  readonly protocol: number;
  /** Bytes between the outer IPv4 header and the inner packet. */
  headerLength(t: TunnelSettings): number;
  /**
   * Writes them at buf[outer + OUTER_IPV4_HEADER, ...) once the outer header at buf[outer] (its
   * addresses complete) and the inner packet after them, to `end`, are in place.
   */
  write(buf: Uint8Array, outer: number, end: number, t: TunnelSettings): void;
}

/** IP-in-IP (RFC 2003): the inner packet right after the outer header. */
export const IPIP: Encapsulation = {
  protocol: IPPROTO_IPIP,
  headerLength: () => 0,
  write: () => {},
};
/** The largest IPv4 packet. */
const IPV4_MAX_LENGTH = 0xffff;

const IPV4_DF = 0x40;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

/** Whether the client's IPv4 packet forbids fragmentation. */
export function dontFragment(buf: Uint8Array, p: ParsedPacket): boolean {
  return (buf[p.l3Offset + 6] & IPV4_DF) !== 0;
}

/**
 * The length of the largest IP packet the frame becomes on the wire, before encapsulation:
 * one segment's for a super-packet, else the packet's.
 */
export function wireLength(vnet: VnetHdr, p: ParsedPacket): number {
  return isSuperPacket(vnet, p.payloadLength)
    ? p.payloadOffset - p.l3Offset + vnet.gsoSize
    : p.end - p.l3Offset;
}

/** Where a packet goes through the tunnel, and how it is wrapped. */
export interface TunnelPath {
  readonly from: Addr;
  readonly to: Addr;
  readonly encap: Encapsulation;
  readonly settings: TunnelSettings;
}

/** The bytes a tunnel adds in front of the client's packet. */
export function tunnelOverhead(path: Pick<TunnelPath, 'encap' | 'settings'>): number {
  return OUTER_IPV4_HEADER + path.encap.headerLength(path.settings);
}

/**
 * The outer header at buf[off] and the encapsulation's header after it, for the inner packet of
 * `innerLength` bytes already in place behind them.
 */
function writeOuterHeaders(buf: Uint8Array, off: number, innerLength: number, path: TunnelPath, id: number) {
  const overhead = tunnelOverhead(path);
  const inner = off + overhead;
  buf[off] = 0x45;
  buf[off + 1] = buf[inner + 1];
  writeU16(buf, off + 2, overhead + innerLength);
  writeU16(buf, off + 4, id);
  buf[off + 6] = buf[inner + 6] & IPV4_DF;
  buf[off + 7] = 0;
  buf[off + 8] = buf[inner + 8];
  buf[off + 9] = path.encap.protocol;
  writeU32(buf, off + 12, path.from.a);
  writeU32(buf, off + 16, path.to.a);
  writeU16(buf, off + 10, ipv4HeaderChecksum(buf, off, OUTER_IPV4_HEADER));
  path.encap.write(buf, off, inner + innerLength, path.settings);
}

/**
 * Encapsulates the (non-segmented) packet of the frame at buf[offset] in place, completing a
 * partial checksum first. The buffer needs the tunnel's overhead in bytes after the packet and the
 * packet must leave room for it under 64 KB (fitsEncapsulated). Returns the frame's new length, or
 * 0 when its virtio_net_hdr names a checksum outside the packet.
 */
export function encapsulate(
  buf: Uint8Array,
  offset: number,
  p: ParsedPacket,
  path: TunnelPath,
  id: number,
): number {
  const vnet = readVnetHdr(buf, offset);
  if (vnet.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    const start = offset + VNET_HDR_LEN + vnet.csumStart;
    const check = start + vnet.csumOffset;
    if (start < p.l3Offset || check + 2 > p.end) return 0;
    completePartialChecksum(buf, start, check, p.end);
  }
  const innerLength = p.end - p.l3Offset;
  const outer = offset + VNET_HDR_LEN;
  const overhead = tunnelOverhead(path);
  buf.copyWithin(outer + overhead, p.l3Offset, p.end);
  writeOuterHeaders(buf, outer, innerLength, path, id);
  writePlainVnetHdr(buf, offset);
  return VNET_HDR_LEN + overhead + innerLength;
}

/**
 * Writes segment `index` of the super-packet `p` in `src` as an encapsulated frame at
 * out[outOffset] (`out` may be `src` for segment 0, whose bytes come first): the headers, the
 * segment's payload, then the fields tcp_gso_segment fixes (lengths, IP id, sequence number,
 * FIN/PSH on the last segment only, CWR on the first only) and full checksums.
 */
function writeSegment(
  src: Uint8Array,
  p: ParsedPacket,
  gsoSize: number,
  index: number,
  last: boolean,
  out: Uint8Array,
  outOffset: number,
  path: TunnelPath,
  id: number,
): number {
  const headers = p.payloadOffset - p.l3Offset;
  const start = p.payloadOffset + index * gsoSize;
  const chunk = Math.min(gsoSize, p.end - start);
  const overhead = tunnelOverhead(path);
  const ip = outOffset + VNET_HDR_LEN + overhead;
  const innerLength = headers + chunk;
  const seq = readU32(src, p.l4Offset + 4);
  const ipId = readU16(src, p.l3Offset + 4);
  if (out === src) out.copyWithin(ip, p.l3Offset, start + chunk);
  else {
    out.set(src.subarray(p.l3Offset, p.payloadOffset), ip);
    out.set(src.subarray(start, start + chunk), ip + headers);
  }
  const ihl = p.l4Offset - p.l3Offset;
  const tcp = ip + ihl;
  writeU16(out, ip + 2, innerLength);
  writeU16(out, ip + 4, (ipId + index) & 0xffff);
  writeU16(out, ip + 10, ipv4HeaderChecksum(out, ip, ihl));
  writeU32(out, tcp + 4, (seq + index * gsoSize) >>> 0);
  if (!last) out[tcp + 13] &= ~(TCP_FIN | TCP_PSH);
  if (index > 0) out[tcp + 13] &= ~TCP_CWR;
  writeU16(out, tcp + 16, l4Checksum(out, ip, 4, IPPROTO_TCP, tcp, ip + innerLength, tcp + 16));
  writeOuterHeaders(out, outOffset + VNET_HDR_LEN, innerLength, path, id);
  writePlainVnetHdr(out, outOffset);
  return VNET_HDR_LEN + overhead + innerLength;
}

/**
 * Splits the TCPv4 super-packet of the frame at buf[offset] into encapsulated segments: the first
 * in place (its length returned), the others appended to `extra` in order. `nextId` numbers the
 * outer headers. Returns 0 for a super-packet of another kind (lvsd's TUN offers TCP only).
 */
export function encapsulateSegments(
  buf: Uint8Array,
  offset: number,
  p: ParsedPacket,
  path: TunnelPath,
  nextId: () => number,
  extra: Uint8Array[],
): number {
  const vnet = readVnetHdr(buf, offset);
  if ((vnet.gsoType & ~VIRTIO_NET_HDR_GSO_ECN) !== VIRTIO_NET_HDR_GSO_TCPV4 || p.protocol !== IPPROTO_TCP)
    return 0;
  const headers = p.payloadOffset - p.l3Offset;
  const count = Math.ceil(p.payloadLength / vnet.gsoSize);
  const overhead = tunnelOverhead(path);
  if (headers + vnet.gsoSize + overhead > IPV4_MAX_LENGTH) return 0;
  const firstId = nextId();
  // The later segments first: segment 0, written in place, overwrites their bytes.
  for (let i = 1; i < count; i++) {
    const chunk = Math.min(vnet.gsoSize, p.payloadLength - i * vnet.gsoSize);
    const segment = new Uint8Array(VNET_HDR_LEN + overhead + headers + chunk);
    writeSegment(buf, p, vnet.gsoSize, i, i === count - 1, segment, 0, path, nextId());
    extra.push(segment);
  }
  return writeSegment(buf, p, vnet.gsoSize, 0, count === 1, buf, offset, path, firstId);
}

/** Whether the packet, with `overhead` bytes of tunnel headers, still fits an IPv4 packet and the frame's buffer. */
export function fitsEncapsulated(buf: Uint8Array, p: ParsedPacket, overhead: number): boolean {
  return p.end - p.l3Offset + overhead <= IPV4_MAX_LENGTH && p.end + overhead <= buf.length;
}
