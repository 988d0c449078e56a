// ICMP errors on the NAT path (as IPVS's ip_vs_nat_icmp): an error about a packet of a tracked
// connection quotes that packet, whose addresses and ports are the other side's view. The
// director looks the connection up by the quoted flow, then both the outer and the quoted
// headers are rewritten with incremental checksum updates, so a corrupted error stays corrupted.
// Also the port unreachable the director itself sends when no real server is available.

import { IPPROTO_ICMP, IPPROTO_ICMPV6 } from '../inet.js';
import type { Addr } from '../inet.js';
import {
  applyDelta,
  applySeedDelta,
  finish,
  l4Checksum,
  onesSum,
  readU16,
  replace16,
  replaceAddr,
  writeU16,
  writeU32,
} from './checksum.js';
import { adjustIpv4HeaderChecksum, adjustL4Checksum, pseudoChecksumOffset } from './nat.js';
import { daddrOffset, hasPorts, IPV6_HEADER, parseQuotedPacket, saddrOffset } from './parse.js';
import type { ParsedPacket } from './parse.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM } from './vnet.js';

export const ICMP_DEST_UNREACH = 3;
export const ICMP_PORT_UNREACH = 3;
export const ICMP_FRAG_NEEDED = 4;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAMETERPROB = 12;

export const ICMPV6_DEST_UNREACH = 1;
export const ICMPV6_PORT_UNREACH = 4;
export const ICMPV6_PKT_TOOBIG = 2;
export const ICMPV6_TIME_EXCEED = 3;
export const ICMPV6_PARAMPROB = 4;

/** ICMP header: type, code, checksum and 4 bytes of type-specific data (MTU, pointer, unused). */
const ICMP_HEADER = 8;
/** RFC 4443 section 2.4 (c): an ICMPv6 error must fit in the IPv6 minimum MTU. */
export const IPV6_MIN_MTU = 1280;
const IPV4_HEADER = 20;
const ERROR_TTL = 64;
/** IPTOS_PREC_INTERNETCONTROL, as Linux marks the errors it sends. */
const ERROR_TOS = 0xc0;

/** An ICMP (v4) or ICMPv6 error that quotes the packet that caused it. */
export function isIcmpError(p: ParsedPacket): boolean {
  if (p.l4Offset < 0) return false;
  if (p.af === 4) {
    return (
      p.protocol === IPPROTO_ICMP &&
      (p.icmpType === ICMP_DEST_UNREACH ||
        p.icmpType === ICMP_TIME_EXCEEDED ||
        p.icmpType === ICMP_PARAMETERPROB)
    );
  }
  return (
    p.protocol === IPPROTO_ICMPV6 &&
    (p.icmpType === ICMPV6_DEST_UNREACH ||
      p.icmpType === ICMPV6_PKT_TOOBIG ||
      p.icmpType === ICMPV6_TIME_EXCEED ||
      p.icmpType === ICMPV6_PARAMPROB)
  );
}

/**
 * The packet quoted by an ICMP error, when it is one the NAT can translate: same family, TCP, UDP
 * or SCTP with its ports present. Null otherwise, and for errors that are themselves fragmented
 * (their quote would continue in fragments the rewrite cannot see).
 */
export function parseIcmpError(buf: Uint8Array, p: ParsedPacket): ParsedPacket | null {
  if (p.isFragment || !isIcmpError(p)) return null;
  const innerOffset = p.l4Offset + ICMP_HEADER;
  const inner = parseQuotedPacket(buf, innerOffset, p.end - innerOffset);
  if (!inner.ok || inner.af !== p.af || inner.l4Offset < 0 || !hasPorts(inner.protocol)) return null;
  return inner;
}

/**
 * An error travelling to the client about a client->RIP:rport packet it sent: the quoted
 * destination becomes VIP:vport and, as IPVS does, the outer source becomes the VIP.
 */
export function rewriteIcmpErrorToClient(
  buf: Uint8Array,
  outer: ParsedPacket,
  inner: ParsedPacket,
  vip: Addr,
  vport: number,
  vnetFlags: number,
): void {
  rewriteIcmpError(
    buf,
    outer,
    inner,
    saddrOffset(outer.af, outer.l3Offset),
    daddrOffset(inner.af, inner.l3Offset),
    inner.l4Offset + 2,
    vip,
    vport,
    vnetFlags,
  );
}

/**
 * An error travelling to the real server about a VIP:vport->client reply it sent: the quoted
 * source becomes RIP:rport and the outer destination (the VIP) becomes the RIP.
 */
export function rewriteIcmpErrorToRealServer(
  buf: Uint8Array,
  outer: ParsedPacket,
  inner: ParsedPacket,
  rip: Addr,
  rport: number,
  vnetFlags: number,
): void {
  rewriteIcmpError(
    buf,
    outer,
    inner,
    daddrOffset(outer.af, outer.l3Offset),
    saddrOffset(inner.af, inner.l3Offset),
    inner.l4Offset,
    rip,
    rport,
    vnetFlags,
  );
}

function rewriteIcmpError(
  buf: Uint8Array,
  outer: ParsedPacket,
  inner: ParsedPacket,
  outerAddrOffset: number,
  innerAddrOffset: number,
  innerPortOffset: number,
  addr: Addr,
  port: number,
  vnetFlags: number,
): void {
  const outerDelta = replaceAddr(buf, outerAddrOffset, addr);
  if (outer.af === 4) adjustIpv4HeaderChecksum(buf, outer.l3Offset, outerDelta);

  // Every word changed inside the ICMP message adds to the ICMP checksum's delta.
  const innerAddrDelta = replaceAddr(buf, innerAddrOffset, addr);
  let icmpDelta = innerAddrDelta;
  if (inner.af === 4) {
    const innerCheck = applyDelta(readU16(buf, inner.l3Offset + 10), innerAddrDelta);
    icmpDelta += replace16(buf, inner.l3Offset + 10, innerCheck);
  }
  const portDelta = replace16(buf, innerPortOffset, port);
  icmpDelta += portDelta;
  // The quoted L4 checksum, when the quote includes it (half of one cannot be updated: left as is).
  const innerCheckInL4 = pseudoChecksumOffset(inner.protocol, inner.af);
  if (innerCheckInL4 >= 0 && inner.l4Offset + innerCheckInL4 + 2 <= inner.end) {
    icmpDelta += adjustL4Checksum(
      buf,
      inner.l4Offset + innerCheckInL4,
      inner.protocol,
      innerAddrDelta + portDelta,
    );
  }

  const checkOffset = outer.l4Offset + 2;
  if ((vnetFlags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    // Only the pseudo-header is in the seed (ICMPv6 has one, ICMPv4 none); the device sums the rest.
    if (outer.af === 6) writeU16(buf, checkOffset, applySeedDelta(readU16(buf, checkOffset), outerDelta));
    return;
  }
  // ICMPv6's checksum covers the outer addresses through its pseudo-header.
  const delta = outer.af === 6 ? icmpDelta + outerDelta : icmpDelta;
  writeU16(buf, checkOffset, applyDelta(readU16(buf, checkOffset), delta));
}

function isIPv4Multicast(word: number): boolean {
  return word >>> 28 === 0xe;
}

/**
 * Whether an ICMP error may be sent about this packet (RFC 1122 section 3.2.2, RFC 4443 section
 * 2.4 (e)): not about a non-first fragment, an ICMP error, a multicast or broadcast destination,
 * or a source that does not name a single host.
 */
export function mayReplyWithIcmpError(p: ParsedPacket): boolean {
  if (p.fragmentOffset !== 0 || isIcmpError(p)) return false;
  if (p.af === 4) {
    const dst = p.daddr.a;
    const src = p.saddr.a;
    return (
      !isIPv4Multicast(dst) && dst !== 0xffffffff && src !== 0 && !isIPv4Multicast(src) && src !== 0xffffffff
    );
  }
  const unspecified = (p.saddr.a | p.saddr.b | p.saddr.c | p.saddr.d) === 0;
  return p.daddr.a >>> 24 !== 0xff && p.saddr.a >>> 24 !== 0xff && !unspecified;
}

/**
 * Writes at out[outOffset] the ICMP port unreachable (ICMPv4 type 3 code 3, ICMPv6 type 1 code 4)
 * answering the packet `p` in `src` from the address it was sent to (the VIP) back to its sender.
 * It quotes the IPv4 header and the first 8 bytes after it (RFC 792), or for IPv6 as much of the
 * packet as fits in 1280 bytes (RFC 4443). Returns the packet's length, 0 if `out` is too small.
 * Check mayReplyWithIcmpError first.
 */
export function buildPortUnreachable(
  out: Uint8Array,
  outOffset: number,
  src: Uint8Array,
  p: ParsedPacket,
): number {
  return p.af === 4
    ? buildIcmpError(out, outOffset, src, p, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0)
    : buildIcmpError(out, outOffset, src, p, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0);
}

/**
 * As buildPortUnreachable, the "packet too big" of path MTU discovery: ICMPv4 fragmentation
 * needed (type 3 code 4, RFC 1191) or ICMPv6 packet too big (type 2, RFC 8201), telling the
 * sender the `mtu` its packets must fit.
 */
export function buildPacketTooBig(
  out: Uint8Array,
  outOffset: number,
  src: Uint8Array,
  p: ParsedPacket,
  mtu: number,
): number {
  return p.af === 4
    ? buildIcmpError(out, outOffset, src, p, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu & 0xffff)
    : buildIcmpError(out, outOffset, src, p, ICMPV6_PKT_TOOBIG, 0, mtu);
}

/** An ICMP error of `type` and `code` about `p`; `info` is the header's second word (the next-hop MTU). */
function buildIcmpError(
  out: Uint8Array,
  outOffset: number,
  src: Uint8Array,
  p: ParsedPacket,
  type: number,
  code: number,
  info: number,
): number {
  const packetLength = p.end - p.l3Offset;
  const v4 = p.af === 4;
  const ipHeader = v4 ? IPV4_HEADER : IPV6_HEADER;
  const quoteLength = v4
    ? Math.min(packetLength, (src[p.l3Offset] & 0x0f) * 4 + 8)
    : Math.min(packetLength, IPV6_MIN_MTU - IPV6_HEADER - ICMP_HEADER);
  const icmpLength = ICMP_HEADER + quoteLength;
  const total = ipHeader + icmpLength;
  if (outOffset < 0 || outOffset + total > out.length) return 0;

  // Copies first: `out` may be `src` itself.
  const addrLength = v4 ? 4 : 16;
  const from = src.slice(daddrOffset(p.af, p.l3Offset), daddrOffset(p.af, p.l3Offset) + addrLength);
  const to = src.slice(saddrOffset(p.af, p.l3Offset), saddrOffset(p.af, p.l3Offset) + addrLength);
  const icmpOffset = outOffset + ipHeader;
  out.set(src.subarray(p.l3Offset, p.l3Offset + quoteLength), icmpOffset + ICMP_HEADER);
  out.fill(0, outOffset, icmpOffset + ICMP_HEADER);
  out.set(from, saddrOffset(p.af, outOffset));
  out.set(to, daddrOffset(p.af, outOffset));
  if (v4) {
    out[outOffset] = 0x45;
    out[outOffset + 1] = ERROR_TOS;
    writeU16(out, outOffset + 2, total);
    out[outOffset + 8] = ERROR_TTL;
    out[outOffset + 9] = IPPROTO_ICMP;
    writeU16(out, outOffset + 10, finish(onesSum(out, outOffset, outOffset + IPV4_HEADER)));
    out[icmpOffset] = type;
    out[icmpOffset + 1] = code;
    writeU32(out, icmpOffset + 4, info);
    writeU16(out, icmpOffset + 2, finish(onesSum(out, icmpOffset, icmpOffset + icmpLength)));
  } else {
    out[outOffset] = 0x60;
    writeU16(out, outOffset + 4, icmpLength);
    out[outOffset + 6] = IPPROTO_ICMPV6;
    out[outOffset + 7] = ERROR_TTL;
    out[icmpOffset] = type;
    out[icmpOffset + 1] = code;
    writeU32(out, icmpOffset + 4, info);
    const check = l4Checksum(
      out,
      outOffset,
      6,
      IPPROTO_ICMPV6,
      icmpOffset,
      icmpOffset + icmpLength,
      icmpOffset + 2,
    );
    writeU16(out, icmpOffset + 2, check);
  }
  return total;
}
