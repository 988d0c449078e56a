// Validating parser for the IPv4/IPv6 packets a TUN hands over (no link-layer header). Every
// offset it reports lies inside the bytes it was given; on bad input it returns a drop reason and
// never throws. Offsets are absolute in `buf`, so the NAT rewrite works in place on the same buffer.

import {
  addr4,
  addr6,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from '../inet.js';
import type { Addr, Family } from '../inet.js';
import { readU16, readU32 } from './checksum.js';

export type DropReason =
  | 'truncated'
  | 'bad-version'
  | 'bad-ihl'
  | 'bad-length'
  | 'bad-tcp-offset'
  | 'bad-udp-length'
  | 'bad-fragment'
  | 'bad-ext-header'
  | 'source-routed'
  | 'unsupported';

export interface ParsedPacket {
  readonly ok: true;
  readonly af: Family;
  readonly l3Offset: number;
  /** One past the IP packet's last byte (by its length field; trailing bytes are ignored). */
  readonly end: number;
  /** Start of the L4 header, or -1 when there is none (a non-first fragment). */
  readonly l4Offset: number;
  /** The upper-layer protocol, after any IPv6 extension headers. */
  readonly protocol: number;
  readonly saddr: Addr;
  readonly daddr: Addr;
  /** TCP, UDP and SCTP ports; 0 for other protocols and non-first fragments. */
  readonly sport: number;
  readonly dport: number;
  /** Byte 13 of the TCP header (CWR ECE URG ACK PSH RST SYN FIN); 0 otherwise. */
  readonly tcpFlags: number;
  /** Part of a fragmented datagram (an IPv6 atomic fragment, offset 0 without more, is not). */
  readonly isFragment: boolean;
  /** Fragment offset in bytes: 0 for the first fragment, which carries the L4 header. */
  readonly fragmentOffset: number;
  readonly moreFragments: boolean;
  /** IPv4 identification (16 bits) or IPv6 fragment identification (32 bits); 0 if not a fragment. */
  readonly fragmentId: number;
  /** -1 unless the protocol is ICMP (ICMPv6 for IPv6). */
  readonly icmpType: number;
  readonly icmpCode: number;
  /** After the L4 header (with TCP options), or the fragment data of a non-first fragment. */
  readonly payloadOffset: number;
  readonly payloadLength: number;
}

export interface ParseDrop {
  readonly ok: false;
  readonly reason: DropReason;
}

export type ParseResult = ParsedPacket | ParseDrop;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

const IPV4_MIN_HEADER = 20;
/** The fixed IPv6 header (RFC 8200 section 3). */
export const IPV6_HEADER = 40;
const IPV4_MF = 0x2000;
const IPV4_OFFSET_MASK = 0x1fff;

/** IPv6 extension headers by Next Header value. */
export const NEXTHDR_HOP = 0;
export const NEXTHDR_ROUTING = 43;
export const NEXTHDR_FRAGMENT = 44;
export const NEXTHDR_DEST = 60;
/** More extension headers than this is an attack on the parser, not a real packet. */
const MAX_EXT_HEADERS = 8;

// One frozen object per reason: dropping allocates nothing.
const drops = {} as Record<DropReason, ParseDrop>;
for (const reason of [
  'truncated',
  'bad-version',
  'bad-ihl',
  'bad-length',
  'bad-tcp-offset',
  'bad-udp-length',
  'bad-fragment',
  'bad-ext-header',
  'source-routed',
  'unsupported',
] as const) {
  drops[reason] = Object.freeze({ ok: false, reason });
}

export function readAddr(buf: Uint8Array, off: number, af: Family): Addr {
  if (af === 4) return addr4(readU32(buf, off));
  return addr6(readU32(buf, off), readU32(buf, off + 4), readU32(buf, off + 8), readU32(buf, off + 12));
}

/** Where the source address of the IP header at `l3Offset` starts. */
export function saddrOffset(af: Family, l3Offset: number): number {
  return l3Offset + (af === 4 ? 12 : 8);
}

export function daddrOffset(af: Family, l3Offset: number): number {
  return l3Offset + (af === 4 ? 16 : 24);
}

/** True for the protocols whose first 4 bytes are source and destination port. */
export function hasPorts(protocol: number): boolean {
  return protocol === IPPROTO_TCP || protocol === IPPROTO_UDP || protocol === IPPROTO_SCTP;
}

/**
 * Parses the IP packet at buf[offset, offset + length). Accepts GSO super-packets (longer than any
 * MTU) as long as their length fields agree with the bytes present.
 */
export function parsePacket(buf: Uint8Array, offset: number, length: number): ParseResult {
  return parse(buf, offset, length, false);
}

/**
 * Parses the packet quoted inside an ICMP error: it may be cut anywhere after the first 8 bytes of
 * its L4 header (RFC 792), so length fields are not checked against the bytes present and only
 * the ports, not the whole TCP header, must be there. `end` is the end of the bytes present.
 */
export function parseQuotedPacket(buf: Uint8Array, offset: number, length: number): ParseResult {
  return parse(buf, offset, length, true);
}

function parse(buf: Uint8Array, offset: number, length: number, quoted: boolean): ParseResult {
  if (
    !Number.isInteger(offset) ||
    !Number.isInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > buf.length
  ) {
    return drops['bad-length'];
  }
  if (length < 1) return drops.truncated;
  const version = buf[offset] >>> 4;
  if (version === 4) return parseIPv4(buf, offset, length, quoted);
  if (version === 6) return parseIPv6(buf, offset, length, quoted);
  return drops['bad-version'];
}

function parseIPv4(buf: Uint8Array, offset: number, length: number, quoted: boolean): ParseResult {
  if (length < IPV4_MIN_HEADER) return drops.truncated;
  const headerLength = (buf[offset] & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER) return drops['bad-ihl'];
  if (headerLength > length) return drops.truncated;
  const totalLength = readU16(buf, offset + 2);
  if (totalLength < headerLength) return drops['bad-length'];
  let end = offset + totalLength;
  if (totalLength > length) {
    if (!quoted) return drops.truncated;
    end = offset + length;
  }
  const fragField = readU16(buf, offset + 6);
  const fragmentOffset = (fragField & IPV4_OFFSET_MASK) * 8;
  const moreFragments = (fragField & IPV4_MF) !== 0;
  const isFragment = moreFragments || fragmentOffset !== 0;
  return finishParse(
    buf,
    4,
    offset,
    end,
    offset + headerLength,
    buf[offset + 9],
    readAddr(buf, offset + 12, 4),
    readAddr(buf, offset + 16, 4),
    isFragment,
    fragmentOffset,
    moreFragments,
    isFragment ? readU16(buf, offset + 4) : 0,
    quoted,
  );
}

function parseIPv6(buf: Uint8Array, offset: number, length: number, quoted: boolean): ParseResult {
  if (length < IPV6_HEADER) return drops.truncated;
  const payloadLength = readU16(buf, offset + 4);
  // A zero payload length announces a jumbogram (RFC 2675), which we do not handle.
  if (payloadLength === 0 && buf[offset + 6] === NEXTHDR_HOP) return drops.unsupported;
  let end = offset + IPV6_HEADER + payloadLength;
  if (end > offset + length) {
    if (!quoted) return drops.truncated;
    end = offset + length;
  }
  let next = buf[offset + 6];
  let pos = offset + IPV6_HEADER;
  let fragmentSeen = false;
  let fragmentOffset = 0;
  let moreFragments = false;
  let fragmentId = 0;
  for (let count = 0; ; count++) {
    if (next === NEXTHDR_HOP || next === NEXTHDR_ROUTING || next === NEXTHDR_DEST) {
      // Hop-by-hop options are only allowed right after the IPv6 header (RFC 8200 section 4.1).
      if (next === NEXTHDR_HOP && count !== 0) return drops['bad-ext-header'];
      if (pos + 8 > end) return drops.truncated;
      const extLength = (buf[pos + 1] + 1) * 8;
      if (pos + extLength > end) return drops.truncated;
      // Segments left: the destination is a waypoint, not where the packet ends. Rewriting it
      // would send the packet elsewhere and break its checksum (whose pseudo-header holds the
      // final destination, RFC 8200 section 8.1); the host drops these too (accept_source_route=0).
      if (next === NEXTHDR_ROUTING && buf[pos + 3] !== 0 && !quoted) return drops['source-routed'];
      next = buf[pos];
      pos += extLength;
    } else if (next === NEXTHDR_FRAGMENT) {
      if (fragmentSeen) return drops['bad-fragment'];
      if (pos + 8 > end) return drops.truncated;
      fragmentSeen = true;
      const fragField = readU16(buf, pos + 2);
      fragmentOffset = fragField & 0xfff8;
      moreFragments = (fragField & 1) !== 0;
      fragmentId = readU32(buf, pos + 4);
      next = buf[pos];
      pos += 8;
      // Later headers of a non-first fragment belong to the fragmentable part: data, not headers.
      if (fragmentOffset !== 0) break;
    } else {
      break;
    }
    if (count + 1 > MAX_EXT_HEADERS) return drops.unsupported;
  }
  const isFragment = fragmentSeen && (moreFragments || fragmentOffset !== 0);
  return finishParse(
    buf,
    6,
    offset,
    end,
    pos,
    next,
    readAddr(buf, offset + 8, 6),
    readAddr(buf, offset + 24, 6),
    isFragment,
    isFragment ? fragmentOffset : 0,
    isFragment && moreFragments,
    isFragment ? fragmentId : 0,
    quoted,
  );
}

/** Parses the L4 header at `l4Offset` (the IP layer is already validated) and builds the result. */
function finishParse(
  buf: Uint8Array,
  af: Family,
  l3Offset: number,
  end: number,
  l4Offset: number,
  protocol: number,
  saddr: Addr,
  daddr: Addr,
  isFragment: boolean,
  fragmentOffset: number,
  moreFragments: boolean,
  fragmentId: number,
  quoted: boolean,
): ParseResult {
  let sport = 0;
  let dport = 0;
  let tcpFlags = 0;
  let icmpType = -1;
  let icmpCode = -1;
  let headerEnd = l4Offset;
  let payloadEnd = end;
  const available = end - l4Offset;
  if (fragmentOffset !== 0) {
    // RFC 1858: a TCP fragment at offset 8 can overwrite the flags of the first one.
    if (fragmentOffset === 8 && protocol === IPPROTO_TCP) return drops['bad-fragment'];
  } else if (protocol === IPPROTO_TCP) {
    // A quoted segment needs only its ports; a real one its whole header (RFC 1858 tiny fragments).
    if (available < (quoted ? 8 : 20)) return drops.truncated;
    sport = readU16(buf, l4Offset);
    dport = readU16(buf, l4Offset + 2);
    if (available >= 14) tcpFlags = buf[l4Offset + 13];
    const dataOffset = available >= 13 ? (buf[l4Offset + 12] >>> 4) * 4 : 20;
    if (dataOffset < 20) return drops['bad-tcp-offset'];
    if (dataOffset > available) {
      if (!quoted) return drops['bad-tcp-offset'];
      headerEnd = end;
    } else {
      headerEnd = l4Offset + dataOffset;
    }
  } else if (protocol === IPPROTO_UDP) {
    if (available < 8) return drops.truncated;
    sport = readU16(buf, l4Offset);
    dport = readU16(buf, l4Offset + 2);
    headerEnd = l4Offset + 8;
    // The length of a fragmented or quoted datagram covers bytes that are not here.
    if (!quoted && !isFragment) {
      const udpLength = readU16(buf, l4Offset + 4);
      if (udpLength < 8 || udpLength > available) return drops['bad-udp-length'];
      payloadEnd = l4Offset + udpLength;
    }
  } else if (protocol === IPPROTO_SCTP) {
    if (available < (quoted ? 8 : 12)) return drops.truncated;
    sport = readU16(buf, l4Offset);
    dport = readU16(buf, l4Offset + 2);
    headerEnd = l4Offset + Math.min(12, available);
  } else if (protocol === (af === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6)) {
    if (available < 8) return drops.truncated;
    icmpType = buf[l4Offset];
    icmpCode = buf[l4Offset + 1];
    headerEnd = l4Offset + 8;
  }
  return {
    ok: true,
    af,
    l3Offset,
    end,
    l4Offset: fragmentOffset !== 0 ? -1 : l4Offset,
    protocol,
    saddr,
    daddr,
    sport,
    dport,
    tcpFlags,
    isFragment,
    fragmentOffset,
    moreFragments,
    fragmentId,
    icmpType,
    icmpCode,
    payloadOffset: headerEnd,
    payloadLength: payloadEnd - headerEnd,
  };
}
