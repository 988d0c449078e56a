// The TCP segments the SYN proxy writes itself (IPv4): the SYN-ACK that answers a client, the SYN
// and ACK of its own handshake with the real server, and the sequence-number shift that joins the
// two halves afterwards. Segments are written in place over the packet that caused them, with
// complete checksums; the shift is an incremental update (RFC 1624).

import { IPPROTO_TCP } from '../inet.js';
import { delta32, finish, onesSum, readU16, readU32, writeU16, writeU32 } from './checksum.js';
import { adjustL4Checksum } from './nat.js';
import type { ParsedPacket } from './parse.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM } from './vnet.js';

export const TCP_SEQ = 4;
export const TCP_ACK_SEQ = 8;
const TCP_WINDOW = 14;
const TCP_CHECK = 16;

const OPT_END = 0;
const OPT_NOP = 1;
const OPT_MSS = 2;
const OPT_SACK_PERM = 4;
const OPT_SACK = 5;

/** RFC 9293 3.7.1: a sender that announces no MSS is taken to accept 536 bytes. */
const DEFAULT_MSS = 536;
/** The longest segment written here: IPv4 and TCP headers with MSS and SACK-permitted options. */
export const BUILT_SEGMENT_MAX = 20 + 20 + 8;

/** The MSS and SACK permission a SYN announces. */
export interface SynOptions {
  mss: number;
  sack: boolean;
}

/** The options of the TCP header of `p`; a malformed option list ends the reading (what was read stands). */
export function readSynOptions(buf: Uint8Array, p: ParsedPacket): SynOptions {
  const result: SynOptions = { mss: DEFAULT_MSS, sack: false };
  const end = p.payloadOffset;
  for (let at = optionAt(buf, p.l4Offset + 20, end); at >= 0; at = optionAt(buf, at + buf[at + 1]!, end)) {
    const kind = buf[at]!;
    const length = buf[at + 1]!;
    if (kind === OPT_MSS && length === 4) result.mss = readU16(buf, at + 2);
    else if (kind === OPT_SACK_PERM && length === 2) result.sack = true;
  }
  return result;
}

/**
 * Where the option at or after `at` (NOPs skipped) starts, its kind at `at` and its length after;
 * -1 at the end of the list, or at an option that does not fit (what came before stands).
 */
function optionAt(buf: Uint8Array, at: number, end: number): number {
  while (at < end && buf[at] === OPT_NOP) at++;
  if (at + 1 >= end || buf[at] === OPT_END) return -1;
  const length = buf[at + 1]!;
  return length >= 2 && at + length <= end ? at : -1;
}

/** The fields of a segment to write. */
export interface SegmentSpec {
  saddr: number;
  daddr: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  /** TCP flags byte. */
  flags: number;
  window: number;
  /** Announce this MSS (SYN and SYN-ACK only); 0: no options. */
  mss: number;
  sack: boolean;
}

/**
 * Writes an IPv4 TCP segment without payload at buf[l3Offset...] and returns its length, 0 when
 * `buf` has no room for it.
 */
export function writeSegment(buf: Uint8Array, l3Offset: number, s: SegmentSpec): number {
  const optionsLength = s.mss === 0 ? 0 : s.sack ? 8 : 4;
  const tcpLength = 20 + optionsLength;
  const total = 20 + tcpLength;
  if (l3Offset < 0 || l3Offset + total > buf.length) return 0;
  const l4 = l3Offset + 20;
  buf.fill(0, l3Offset, l3Offset + total);
  buf[l3Offset] = 0x45;
  writeU16(buf, l3Offset + 2, total);
  // Don't fragment, as every TCP stack sends.
  buf[l3Offset + 6] = 0x40;
  buf[l3Offset + 8] = 64;
  buf[l3Offset + 9] = IPPROTO_TCP;
  writeU32(buf, l3Offset + 12, s.saddr);
  writeU32(buf, l3Offset + 16, s.daddr);
  writeU16(buf, l3Offset + 10, finish(onesSum(buf, l3Offset, l3Offset + 20)));
  writeU16(buf, l4, s.sport);
  writeU16(buf, l4 + 2, s.dport);
  writeU32(buf, l4 + TCP_SEQ, s.seq);
  writeU32(buf, l4 + TCP_ACK_SEQ, s.ack);
  buf[l4 + 12] = (tcpLength / 4) << 4;
  buf[l4 + 13] = s.flags;
  writeU16(buf, l4 + TCP_WINDOW, Math.min(s.window, 0xffff));
  if (s.mss !== 0) {
    buf[l4 + 20] = OPT_MSS;
    buf[l4 + 21] = 4;
    writeU16(buf, l4 + 22, s.mss);
    if (s.sack) {
      buf[l4 + 24] = OPT_NOP;
      buf[l4 + 25] = OPT_NOP;
      buf[l4 + 26] = OPT_SACK_PERM;
      buf[l4 + 27] = 2;
    }
  }
  // The pseudo-header: addresses, protocol, TCP length.
  const pseudo = onesSum(buf, l3Offset + 12, l3Offset + 20, IPPROTO_TCP + tcpLength);
  writeU16(buf, l4 + TCP_CHECK, finish(onesSum(buf, l4, l4 + tcpLength, pseudo)));
  return total;
}

/** The segment's window field. */
export function segmentWindow(buf: Uint8Array, p: ParsedPacket): number {
  return readU16(buf, p.l4Offset + TCP_WINDOW);
}

/**
 * Adds `delta` (mod 2^32) to the 32-bit field at `field` of the TCP header and, for the
 * acknowledgment number, to the edges of the SACK blocks (they name the same sequence space).
 * A partial checksum (NEEDS_CSUM) covers only the pseudo-header, so only a complete one changes.
 */
export function shiftSequence(
  buf: Uint8Array,
  p: ParsedPacket,
  field: typeof TCP_SEQ | typeof TCP_ACK_SEQ,
  delta: number,
  vnetFlags: number,
): void {
  let sum = shiftWord(buf, p.l4Offset + field, delta);
  if (field === TCP_ACK_SEQ) sum += shiftSackBlocks(buf, p, delta);
  if ((vnetFlags & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0)
    adjustL4Checksum(buf, p.l4Offset + TCP_CHECK, IPPROTO_TCP, sum);
}

function shiftWord(buf: Uint8Array, off: number, delta: number): number {
  const from = readU32(buf, off);
  const to = (from + delta) >>> 0;
  writeU32(buf, off, to);
  return delta32(from, to);
}

function shiftSackBlocks(buf: Uint8Array, p: ParsedPacket, delta: number): number {
  let sum = 0;
  const end = p.payloadOffset;
  for (let at = optionAt(buf, p.l4Offset + 20, end); at >= 0; at = optionAt(buf, at + buf[at + 1]!, end)) {
    if (buf[at] !== OPT_SACK) continue;
    for (let edge = at + 2; edge + 4 <= at + buf[at + 1]!; edge += 4) sum += shiftWord(buf, edge, delta);
  }
  return sum;
}
