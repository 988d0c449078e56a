// The Internet checksum (RFC 1071) and its incremental update (RFC 1624), plus SCTP's CRC32c.
// Sums are kept unfolded as plain numbers (exact up to 2^53), so a 64 KB super-packet adds up
// without overflow and folding happens once at the end.

import type { Addr, Family } from '../inet.js';

/** Adds buf[start, end) as big-endian 16-bit words to `initial`; an odd last byte is padded with zero. */
export function onesSum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  for (; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** Folds a sum to 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum field value for a sum: the ones complement of the folded sum. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** What replacing a 16-bit word `from` by `to` adds to a sum (RFC 1624: ~m + m'). */
export function delta16(from: number, to: number): number {
  return (~from & 0xffff) + (to & 0xffff);
}

/** What replacing a 32-bit word `from` by `to` adds to a sum. */
export function delta32(from: number, to: number): number {
  return delta16(from >>> 16, to >>> 16) + delta16(from & 0xffff, to & 0xffff);
}

/** A complete checksum after the covered data changed by `delta` (RFC 1624 eqn. 3: ~(~HC + ~m + m')). */
export function applyDelta(check: number, delta: number): number {
  return ~fold((~check & 0xffff) + delta) & 0xffff;
}

/**
 * A partial checksum (virtio NEEDS_CSUM: the field holds the folded pseudo-header sum, not
 * complemented) after the pseudo-header changed by `delta`.
 */
export function applySeedDelta(seed: number, delta: number): number {
  return fold(seed + delta);
}

/** RFC 1624 update of a complete checksum for one 16-bit field change. */
export function csumReplace16(check: number, from: number, to: number): number {
  return applyDelta(check, delta16(from, to));
}

/** RFC 1624 update of a complete checksum for one 32-bit field change. */
export function csumReplace32(check: number, from: number, to: number): number {
  return applyDelta(check, delta32(from, to));
}

export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}

export function writeU16(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value >>> 8;
  buf[off + 1] = value;
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

export function writeU32(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value >>> 24;
  buf[off + 1] = value >>> 16;
  buf[off + 2] = value >>> 8;
  buf[off + 3] = value;
}

/** Writes a 16-bit field and returns what the change adds to any checksum covering it. */
export function replace16(buf: Uint8Array, off: number, value: number): number {
  const delta = delta16(readU16(buf, off), value);
  writeU16(buf, off, value);
  return delta;
}

function replace32(buf: Uint8Array, off: number, value: number): number {
  const delta = delta32(readU32(buf, off), value);
  writeU32(buf, off, value);
  return delta;
}

/** Writes an address (4 or 16 bytes by its family) and returns the checksum delta of the change. */
export function replaceAddr(buf: Uint8Array, off: number, addr: Addr): number {
  if (addr.af === 4) return replace32(buf, off, addr.a);
  return (
    replace32(buf, off, addr.a) +
    replace32(buf, off + 4, addr.b) +
    replace32(buf, off + 8, addr.c) +
    replace32(buf, off + 12, addr.d)
  );
}

/** The IPv4 header checksum of the header at `off` of `headerLength` bytes (its own field counted as zero). */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number, headerLength: number): number {
  return finish(onesSum(buf, off + 12, off + headerLength, onesSum(buf, off, off + 10)));
}

/**
 * The pseudo-header sum of the IP packet at `l3Offset` (addresses taken from it) for an upper-layer
 * message of `l4Length` bytes of `protocol` (RFC 793 for IPv4, RFC 8200 section 8.1 for IPv6).
 */
export function pseudoHeaderSum(
  buf: Uint8Array,
  l3Offset: number,
  af: Family,
  protocol: number,
  l4Length: number,
): number {
  const lengthSum = (l4Length >>> 16) + (l4Length & 0xffff);
  if (af === 4) return onesSum(buf, l3Offset + 12, l3Offset + 20, protocol + lengthSum);
  return onesSum(buf, l3Offset + 8, l3Offset + 40, protocol + lengthSum);
}

/**
 * The complete L4 checksum of the message in buf[l4Offset, end) whose checksum field is at
 * `checkOffset` (counted as zero), with the pseudo-header of the IP packet at `l3Offset`.
 * `protocol` is 0 for ICMPv4, whose checksum has no pseudo-header.
 */
export function l4Checksum(
  buf: Uint8Array,
  l3Offset: number,
  af: Family,
  protocol: number,
  l4Offset: number,
  end: number,
  checkOffset: number,
): number {
  let sum = protocol === 0 ? 0 : pseudoHeaderSum(buf, l3Offset, af, protocol, end - l4Offset);
  sum = onesSum(buf, l4Offset, checkOffset, sum);
  return finish(onesSum(buf, checkOffset + 2, end, sum));
}

/**
 * Completes a NEEDS_CSUM checksum as the kernel's skb_checksum_help does: sums buf[csumStart, end)
 * (the field holding the pseudo-header seed) and stores the complement, 0 stored as 0xffff.
 * Offsets are absolute in `buf`.
 */
export function completePartialChecksum(
  buf: Uint8Array,
  csumStart: number,
  checkOffset: number,
  end: number,
): void {
  const check = finish(onesSum(buf, csumStart, end));
  writeU16(buf, checkOffset, check === 0 ? 0xffff : check);
}

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32c (Castagnoli) of buf[start, end), as SCTP's checksum uses it (RFC 9260 appendix A). */
export function crc32c(buf: Uint8Array, start: number, end: number): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = CRC32C_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** Recomputes the SCTP checksum of the packet at buf[l4Offset, end); it is stored little-endian. */
export function writeSctpChecksum(buf: Uint8Array, l4Offset: number, end: number): void {
  writeU32(buf, l4Offset + 8, 0);
  const crc = crc32c(buf, l4Offset, end);
  buf[l4Offset + 8] = crc;
  buf[l4Offset + 9] = crc >>> 8;
  buf[l4Offset + 10] = crc >>> 16;
  buf[l4Offset + 11] = crc >>> 24;
}
