// The LVS-NAT rewrites, in place, with incremental checksum updates (as IPVS's tcp/udp
// dnat/snat handlers): client->VIP becomes client->RIP on the way in, RIP->client becomes
// VIP->client on the way out. The parse result is stale after a rewrite (it keeps the old
// addresses and ports); the offsets in it stay valid because no length changes.

import { IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../inet.js';
import type { Addr, Family } from '../inet.js';
import {
  applyDelta,
  applySeedDelta,
  readU16,
  replace16,
  replaceAddr,
  writeSctpChecksum,
  writeU16,
} from './checksum.js';
import { daddrOffset, hasPorts, saddrOffset } from './parse.js';
import type { ParsedPacket } from './parse.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM } from './vnet.js';

/**
 * Offset, from the L4 header, of the checksum that covers the IP pseudo-header (and so changes
 * with the addresses), or -1 for protocols without one (ICMPv4, SCTP, others).
 */
export function pseudoChecksumOffset(protocol: number, af: Family): number {
  if (protocol === IPPROTO_TCP) return 16;
  if (protocol === IPPROTO_UDP) return 6;
  if (protocol === IPPROTO_ICMPV6 && af === 6) return 2;
  return -1;
}

/** Adjusts the IPv4 header checksum for a change of `delta` in the header. */
export function adjustIpv4HeaderChecksum(buf: Uint8Array, l3Offset: number, delta: number): void {
  writeU16(buf, l3Offset + 10, applyDelta(readU16(buf, l3Offset + 10), delta));
}

/**
 * Applies `delta` to a complete L4 checksum at `off`, keeping UDP's rules: 0 means the sender sent
 * none and stays 0; a result of 0 is sent as 0xffff (RFC 768). Returns the checksum's own delta.
 */
export function adjustL4Checksum(buf: Uint8Array, off: number, protocol: number, delta: number): number {
  const check = readU16(buf, off);
  if (protocol === IPPROTO_UDP) {
    if (check === 0) return 0;
    const updated = applyDelta(check, delta);
    return replace16(buf, off, updated === 0 ? 0xffff : updated);
  }
  return replace16(buf, off, applyDelta(check, delta));
}

/**
 * client->VIP:vport becomes client->RIP:rport. `vnetFlags` is the virtio_net_hdr flags byte (0 for a
 * packet without one). Returns false when the packet cannot be rewritten (the first fragment of an
 * SCTP datagram whose port changes: its CRC covers bytes that are not here); drop it then.
 */
export function rewriteDestination(
  buf: Uint8Array,
  p: ParsedPacket,
  addr: Addr,
  port: number,
  vnetFlags: number,
): boolean {
  return rewriteEndpoint(buf, p, daddrOffset(p.af, p.l3Offset), 2, addr, port, vnetFlags);
}

/** RIP:rport->client becomes VIP:vport->client. Same contract as rewriteDestination. */
export function rewriteSource(
  buf: Uint8Array,
  p: ParsedPacket,
  addr: Addr,
  port: number,
  vnetFlags: number,
): boolean {
  return rewriteEndpoint(buf, p, saddrOffset(p.af, p.l3Offset), 0, addr, port, vnetFlags);
}

function rewriteEndpoint(
  buf: Uint8Array,
  p: ParsedPacket,
  addrOffset: number,
  portOffsetInL4: number,
  addr: Addr,
  port: number,
  vnetFlags: number,
): boolean {
  const rewritePort = p.l4Offset >= 0 && hasPorts(p.protocol);
  const portOffset = p.l4Offset + portOffsetInL4;
  const portChanges = rewritePort && readU16(buf, portOffset) !== port;
  if (portChanges && p.protocol === IPPROTO_SCTP && p.isFragment) return false;
  const addrDelta = replaceAddr(buf, addrOffset, addr);
  if (p.af === 4) adjustIpv4HeaderChecksum(buf, p.l3Offset, addrDelta);
  // A non-first fragment has no L4 header: its checksum was in the first fragment.
  if (p.l4Offset < 0) return true;
  const portDelta = rewritePort ? replace16(buf, portOffset, port) : 0;
  if (p.protocol === IPPROTO_SCTP) {
    // CRC32c covers no pseudo-header and cannot be updated incrementally: recompute it.
    if (portChanges) writeSctpChecksum(buf, p.l4Offset, p.end);
    return true;
  }
  const checkInL4 = pseudoChecksumOffset(p.protocol, p.af);
  if (checkInL4 < 0) return true;
  const checkOffset = p.l4Offset + checkInL4;
  if ((vnetFlags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0) {
    // The field holds the pseudo-header seed; the device sums the ports in later.
    writeU16(buf, checkOffset, applySeedDelta(readU16(buf, checkOffset), addrDelta));
  } else {
    adjustL4Checksum(buf, checkOffset, p.protocol, addrDelta + portDelta);
  }
  return true;
}
