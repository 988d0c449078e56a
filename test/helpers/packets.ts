// A packet builder for tests: IPv4/IPv6 with TCP, UDP, SCTP or ICMP, options, extension headers,
// fragments and a virtio_net_hdr, all with correct checksums. Its checksum code is written apart
// from src/core/packet on purpose, so that it can serve as an oracle for it.

import { parseAddr, type Addr } from '../../src/core/inet.js';

export const PROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58, sctp: 132 } as const;

export interface PacketSpec {
  src: string;
  dst: string;
  /** Default tcp. 'icmp' means ICMPv6 for IPv6 addresses. */
  protocol?: 'tcp' | 'udp' | 'sctp' | 'icmp' | number;
  sport?: number;
  dport?: number;
  tcpFlags?: number;
  seq?: number;
  /** The TCP acknowledgment number (default 0). */
  ack?: number;
  /** TCP options, padded with zeros (end of options) to a multiple of 4 bytes. */
  tcpOptions?: Uint8Array;
  payload?: Uint8Array;
  icmpType?: number;
  icmpCode?: number;
  /** The 4 bytes after the ICMP checksum (MTU, pointer, echo id/seq). */
  icmpRest?: number;
  /** Send UDP with checksum 0 (none; IPv4). */
  udpNoChecksum?: boolean;
  /** Leave the L4 checksum as NEEDS_CSUM does: the folded pseudo-header sum, not complemented. */
  partial?: boolean;
  ttl?: number;
  ipId?: number;
  /** Set IPv4's DF (don't fragment) bit. */
  dontFragment?: boolean;
  /** IPv4 options, padded with zeros to a multiple of 4 bytes. */
  ipOptions?: Uint8Array;
  /** IPv6 extension headers (0 hop-by-hop, 43 routing, 60 destination options), 8 bytes each. */
  extHeaders?: number[];
}

function sum16(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum += (i - start) % 2 === 0 ? bytes[i] * 256 : bytes[i];
  return sum;
}

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

function be16(value: number): number[] {
  return [(value >>> 8) & 0xff, value & 0xff];
}

function be32(value: number): number[] {
  return [...be16(value >>> 16), ...be16(value & 0xffff)];
}

export function addrBytes(text: string): Uint8Array {
  const addr = parseAddr(text);
  if (!addr) throw new Error(`bad address ${text}`);
  return Uint8Array.from(addr.af === 4 ? be32(addr.a) : [addr.a, addr.b, addr.c, addr.d].flatMap(be32));
}

function padTo4(bytes: Uint8Array | undefined): Uint8Array {
  const length = bytes ? Math.ceil(bytes.length / 4) * 4 : 0;
  const out = new Uint8Array(length);
  if (bytes) out.set(bytes);
  return out;
}

function protocolNumber(spec: PacketSpec, v6: boolean): number {
  const p = spec.protocol ?? 'tcp';
  if (typeof p === 'number') return p;
  if (p === 'icmp') return v6 ? PROTO.icmpv6 : PROTO.icmp;
  return PROTO[p];
}

/** Offset of the checksum inside the L4 header, or -1. */
export function checksumFieldOffset(protocol: number): number {
  if (protocol === PROTO.tcp) return 16;
  if (protocol === PROTO.udp) return 6;
  if (protocol === PROTO.icmp || protocol === PROTO.icmpv6) return 2;
  if (protocol === PROTO.sctp) return 8;
  return -1;
}

function l4Header(spec: PacketSpec, protocol: number): Uint8Array {
  const sport = spec.sport ?? 40000;
  const dport = spec.dport ?? 80;
  if (protocol === PROTO.tcp) {
    const options = padTo4(spec.tcpOptions);
    const header = new Uint8Array(20 + options.length);
    header.set([...be16(sport), ...be16(dport), ...be32(spec.seq ?? 1000), ...be32(spec.ack ?? 0)]);
    header[12] = ((20 + options.length) / 4) << 4;
    header[13] = spec.tcpFlags ?? 0x18;
    header.set(be16(65535), 14);
    header.set(options, 20);
    return header;
  }
  if (protocol === PROTO.udp) {
    return Uint8Array.from([...be16(sport), ...be16(dport), ...be16(8 + (spec.payload?.length ?? 0)), 0, 0]);
  }
  if (protocol === PROTO.sctp)
    return Uint8Array.from([...be16(sport), ...be16(dport), ...be32(0x1234567), 0, 0, 0, 0]);
  if (protocol === PROTO.icmp || protocol === PROTO.icmpv6) {
    return Uint8Array.from([spec.icmpType ?? 8, spec.icmpCode ?? 0, 0, 0, ...be32(spec.icmpRest ?? 0)]);
  }
  return new Uint8Array(0);
}

/** The pseudo-header sum, from the packet's own addresses. */
function pseudoSum(packet: Uint8Array, protocol: number, l4Length: number): number {
  const v6 = packet[0] >>> 4 === 6;
  const addrs = v6 ? sum16(packet, 8, 40) : sum16(packet, 12, 20);
  return addrs + protocol + Math.floor(l4Length / 0x10000) + (l4Length % 0x10000);
}

function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** Writes a correct L4 checksum (or the NEEDS_CSUM seed) for the message at packet[l4, end). */
function fillL4Checksum(packet: Uint8Array, l4: number, protocol: number, spec: PacketSpec): void {
  const at = l4 + checksumFieldOffset(protocol);
  if (protocol === PROTO.sctp) {
    const crc = crc32c(packet.subarray(l4));
    packet.set([crc & 0xff, (crc >>> 8) & 0xff, (crc >>> 16) & 0xff, crc >>> 24], at);
    return;
  }
  if (protocol === PROTO.udp && spec.udpNoChecksum) return;
  const withPseudo = protocol !== PROTO.icmp;
  const pseudo = withPseudo ? pseudoSum(packet, protocol, packet.length - l4) : 0;
  if (spec.partial) {
    packet.set(be16(fold16(pseudo)), at);
    return;
  }
  let check = ~fold16(pseudo + sum16(packet, l4)) & 0xffff;
  if (protocol === PROTO.udp && check === 0) check = 0xffff;
  packet.set(be16(check), at);
}

/** A complete IP packet as specified, every checksum correct. */
export function buildPacket(spec: PacketSpec): Uint8Array {
  const src = addrBytes(spec.src);
  const dst = addrBytes(spec.dst);
  const v6 = src.length === 16;
  if (v6 !== (dst.length === 16)) throw new Error('mixed address families');
  const protocol = protocolNumber(spec, v6);
  const l4 = l4Header(spec, protocol);
  const payload = spec.payload ?? new Uint8Array(0);
  let ipHeader: Uint8Array;
  if (v6) {
    const exts = spec.extHeaders ?? [];
    ipHeader = new Uint8Array(40 + 8 * exts.length);
    const payloadLength = 8 * exts.length + l4.length + payload.length;
    ipHeader.set([0x60, 0, 0, 0, ...be16(payloadLength), exts[0] ?? protocol, spec.ttl ?? 64]);
    ipHeader.set(src, 8);
    ipHeader.set(dst, 24);
    exts.forEach((type, i) => {
      // Next header, length 0 (8 bytes), then a PadN option filling the rest; a routing header
      // has its type and segments left (0: this is the final destination) there instead.
      const rest = type === 43 ? [0, 0, 0, 0, 0, 0] : [1, 4, 0, 0, 0, 0];
      ipHeader.set([exts[i + 1] ?? protocol, 0, ...rest], 40 + 8 * i);
    });
  } else {
    const options = padTo4(spec.ipOptions);
    ipHeader = new Uint8Array(20 + options.length);
    const total = ipHeader.length + l4.length + payload.length;
    ipHeader.set([
      0x40 | (ipHeader.length / 4),
      0,
      ...be16(total),
      ...be16(spec.ipId ?? 0x1234),
      spec.dontFragment ? 0x40 : 0,
      0,
    ]);
    ipHeader.set([spec.ttl ?? 64, protocol], 8);
    ipHeader.set(src, 12);
    ipHeader.set(dst, 16);
    ipHeader.set(options, 20);
    ipHeader.set(be16(~fold16(sum16(ipHeader)) & 0xffff), 10);
  }
  const packet = new Uint8Array(ipHeader.length + l4.length + payload.length);
  packet.set(ipHeader);
  packet.set(l4, ipHeader.length);
  packet.set(payload, ipHeader.length + l4.length);
  if (l4.length > 0) fillL4Checksum(packet, ipHeader.length, protocol, spec);
  return packet;
}

export interface VnetFields {
  flags?: number;
  gsoType?: number;
  hdrLen?: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

/** The packet behind a 10-byte virtio_net_hdr (little-endian fields). */
export function withVnet(packet: Uint8Array, fields: VnetFields = {}): Uint8Array {
  const out = new Uint8Array(10 + packet.length);
  const le16 = (v: number) => [v & 0xff, v >>> 8];
  out.set([
    fields.flags ?? 0,
    fields.gsoType ?? 0,
    ...le16(fields.hdrLen ?? 0),
    ...le16(fields.gsoSize ?? 0),
    ...le16(fields.csumStart ?? 0),
    ...le16(fields.csumOffset ?? 0),
  ]);
  out.set(packet, 10);
  return out;
}

/** Where the L4 header starts, walking IPv6 extension headers (fragment included) naively. */
export function l4Start(packet: Uint8Array): { offset: number; protocol: number } {
  if (packet[0] >>> 4 === 4) return { offset: (packet[0] & 0xf) * 4, protocol: packet[9] };
  let next = packet[6];
  let offset = 40;
  while (next === 0 || next === 43 || next === 60 || next === 44) {
    const length = next === 44 ? 8 : (packet[offset + 1] + 1) * 8;
    next = packet[offset];
    offset += length;
  }
  return { offset, protocol: next };
}

/** The header that a TCP packet sent with NEEDS_CSUM (and optionally TSO) has. */
export function partialVnetFor(packet: Uint8Array, gso?: { gsoSize: number }): VnetFields {
  const { offset, protocol } = l4Start(packet);
  const v6 = packet[0] >>> 4 === 6;
  const fields: VnetFields = { flags: 1, csumStart: offset, csumOffset: checksumFieldOffset(protocol) };
  if (gso) {
    fields.gsoType = v6 ? 4 : 1;
    fields.gsoSize = gso.gsoSize;
    fields.hdrLen = offset + (packet[offset + 12] >>> 4) * 4;
  }
  return fields;
}

export function ipv4HeaderValid(packet: Uint8Array, offset = 0): boolean {
  const length = (packet[offset] & 0xf) * 4;
  return fold16(sum16(packet, offset, offset + length)) === 0xffff;
}

/** Whether bytes[start, end) sum to all ones with `initial` added: an Internet checksum (RFC 1071) that verifies. */
export function onesComplementValid(bytes: Uint8Array, start = 0, end = bytes.length, initial = 0): boolean {
  return fold16(initial + sum16(bytes, start, end)) === 0xffff;
}

/**
 * Whether the L4 checksum of the whole (unfragmented) packet verifies: TCP, UDP (0 accepted as
 * "none" for IPv4), ICMP, ICMPv6 and SCTP.
 */
export function l4ChecksumValid(packet: Uint8Array): boolean {
  const { offset, protocol } = l4Start(packet);
  const message = packet.subarray(offset);
  if (protocol === PROTO.sctp) {
    const copy = message.slice();
    copy.fill(0, 8, 12);
    const crc = crc32c(copy);
    return message[8] + message[9] * 256 + message[10] * 65536 + message[11] * 16777216 === crc;
  }
  if (protocol === PROTO.udp && message[6] === 0 && message[7] === 0 && packet[0] >>> 4 === 4) return true;
  const pseudo = protocol === PROTO.icmp ? 0 : pseudoSum(packet, protocol, message.length);
  return fold16(pseudo + sum16(message)) === 0xffff;
}

/** Completes a NEEDS_CSUM checksum as the kernel does: the sum from csum_start, complemented, 0 as 0xffff. */
export function completeAsKernel(packet: Uint8Array, csumStart: number, csumOffset: number): Uint8Array {
  const out = packet.slice();
  const check = ~fold16(sum16(out, csumStart)) & 0xffff;
  out.set(be16(check === 0 ? 0xffff : check), csumStart + csumOffset);
  return out;
}

/** ICMP "fragmentation needed" (MTU 1400) from `src` to `dst`, quoting the first 28 bytes of `quote`. */
export function fragNeeded(src: string, dst: string, quote: Uint8Array): PacketSpec {
  return {
    src,
    dst,
    protocol: 'icmp',
    icmpType: 3,
    icmpCode: 4,
    icmpRest: 1400,
    payload: quote.subarray(0, 28),
  };
}

/** A UDP datagram from src:5353 to dst:53 with `payloadLength` bytes, as fragments of 1480 bytes. */
export function fragmentedDatagram(
  src: string,
  dst: string,
  payloadLength: number,
  id: number,
): Uint8Array[] {
  const payload = new Uint8Array(payloadLength).fill(7);
  const datagram = buildPacket({ src, dst, protocol: 'udp', sport: 5353, dport: 53, payload });
  return fragmentPacket(datagram, 1480, id);
}

/**
 * Splits a complete packet into fragments carrying `chunk` bytes of its fragmentable part each
 * (a multiple of 8). IPv4 copies the header; IPv6 inserts a fragment header after the fixed
 * header (build the packet without extension headers).
 */
export function fragmentPacket(packet: Uint8Array, chunk: number, id: number): Uint8Array[] {
  const v6 = packet[0] >>> 4 === 6;
  const headerLength = v6 ? 40 : (packet[0] & 0xf) * 4;
  const body = packet.subarray(headerLength);
  const out: Uint8Array[] = [];
  for (let start = 0; start < body.length; start += chunk) {
    const data = body.subarray(start, Math.min(body.length, start + chunk));
    const more = start + chunk < body.length ? 1 : 0;
    if (v6) {
      const fragment = new Uint8Array(48 + data.length);
      fragment.set(packet.subarray(0, 40));
      fragment.set(be16(8 + data.length), 4);
      fragment[6] = 44;
      fragment.set([packet[6], 0, ...be16(start | more), ...be32(id)], 40);
      fragment.set(data, 48);
      out.push(fragment);
    } else {
      const fragment = new Uint8Array(headerLength + data.length);
      fragment.set(packet.subarray(0, headerLength));
      fragment.set(be16(headerLength + data.length), 2);
      fragment.set(be16(id), 4);
      fragment.set(be16((more << 13) | (start / 8)), 6);
      fragment.set([0, 0], 10);
      fragment.set(be16(~fold16(sum16(fragment, 0, headerLength)) & 0xffff), 10);
      fragment.set(data, headerLength);
      out.push(fragment);
    }
  }
  return out;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** A parsed address, for tests that write them as text. */
export function addr(text: string): Addr {
  const parsed = parseAddr(text);
  if (!parsed) throw new Error(`bad address ${text}`);
  return parsed;
}

/** A TCP segment with `tcpFlags` and nothing else set. */
export function tcpSegment(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  tcpFlags: number,
): PacketSpec {
  return { src, dst, protocol: 'tcp', sport, dport, tcpFlags };
}

/**
 * Builds the packet as the TUN device hands it over (behind a vnet header), in a buffer with room
 * to grow, and has the director process it; returns the verdict.
 */
export function processPacket(
  director: { process(buf: Uint8Array, offset: number, length: number, fwmark?: number): number },
  spec: PacketSpec,
): number {
  const frame = withVnet(buildPacket(spec));
  const buf = new Uint8Array(frame.length + 1500);
  buf.set(frame);
  return director.process(buf, 0, frame.length);
}

/** Runs one frame through the director; returns what it sent (the frame, then any pending ones). */
export function sendFrame(
  director: { process(buf: Uint8Array, offset: number, length: number): number; pending: Uint8Array[] },
  framed: Uint8Array,
): Uint8Array[] {
  const buf = new Uint8Array(65536 + 10);
  buf.set(framed);
  const n = director.process(buf, 0, framed.length);
  if (n <= 0) return [];
  return [buf.slice(0, n), ...director.pending.splice(0)];
}
