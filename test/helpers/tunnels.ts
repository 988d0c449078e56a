// What a real server's tunnel driver does with a packet from the director (ipip, ip_gre, fou's
// GUE receive side), written apart from src/core/packet on purpose so that it can serve as an
// oracle for it: the outer header checked, the GRE or UDP checksum verified when there is one, and
// the inner packet handed over. The unit tests and the e2e stand-in decapsulator both use it.

import { ipv4HeaderValid, l4ChecksumValid, onesComplementValid } from './packets.js';

export type TunnelKind = 'ipip' | 'gre' | 'gue';

export interface Decapsulated {
  kind: TunnelKind;
  /** Whether the packet carried a GRE or UDP checksum (verified). */
  checksummed: boolean;
  /** GUE's UDP source port. */
  sourcePort?: number;
  inner: Uint8Array;
}

const be16 = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;

/**
 * The inner packet of an encapsulated IPv4 packet, or why a real server's stack would drop it.
 * `guePort` is the port `ip fou add port N gue` listens on.
 */
export function decapsulate(outer: Uint8Array, guePort: number): Decapsulated | string {
  if (outer.length < 20 || outer[0]! >> 4 !== 4 || !ipv4HeaderValid(outer)) return 'bad outer header';
  if (be16(outer, 2) !== outer.length) return 'outer length';
  const ihl = (outer[0]! & 0xf) * 4;
  let found: Decapsulated;
  switch (outer[9]) {
    case 4:
      found = { kind: 'ipip', checksummed: false, inner: outer.subarray(ihl) };
      break;
    case 47: {
      const flags = be16(outer, ihl);
      // RFC 2784: version 0; IPVS sends neither key nor sequence number.
      if ((flags & ~0x8000) !== 0) return 'gre flags';
      if (be16(outer, ihl + 2) !== 0x0800) return 'gre protocol';
      const checksummed = (flags & 0x8000) !== 0;
      if (checksummed && !onesComplementValid(outer, ihl)) return 'gre checksum';
      found = { kind: 'gre', checksummed, inner: outer.subarray(ihl + (checksummed ? 8 : 4)) };
      break;
    }
    case 17: {
      const udp = ihl;
      if (be16(outer, udp + 2) !== guePort) return 'udp port';
      if (be16(outer, udp + 4) !== outer.length - udp) return 'udp length';
      const checksummed = be16(outer, udp + 6) !== 0;
      if (checksummed && !l4ChecksumValid(outer)) return 'udp checksum';
      const gue = udp + 8;
      // Variant 0 (version 0), a data message (C clear), carrying IPv4.
      if (outer[gue]! >> 5 !== 0) return 'gue version or control';
      if (outer[gue + 1] !== 4) return 'gue protocol';
      if (be16(outer, gue + 2) !== 0) return 'gue flags';
      const hlen = (outer[gue]! & 0x1f) * 4;
      found = {
        kind: 'gue',
        checksummed,
        sourcePort: be16(outer, udp),
        inner: outer.subarray(gue + 4 + hlen),
      };
      break;
    }
    default:
      return 'not a tunnel';
  }
  const { inner } = found;
  if (inner.length < 20 || !ipv4HeaderValid(inner) || be16(inner, 2) !== inner.length)
    return 'bad inner packet';
  return found;
}
