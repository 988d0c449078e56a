// GRE encapsulation (RFC 2784), as IPVS's ipvs_gre_encap builds it for --tun-type gre: a 4-byte
// header (no key, no sequence number) naming the inner packet's EtherType, and with --tun-csum
// the checksum of the GRE header and everything after it, plus the reserved word that follows.
// The real server takes it apart on a GRE device (the fallback gre0 or one of its own).

import { finish, onesSum, writeU16, writeU32 } from './checksum.js';
import { OUTER_IPV4_HEADER, type Encapsulation } from './ipip.js';

/** IPPROTO_GRE: the outer header's protocol. */
export const IPPROTO_GRE = 47;
/** The C bit: a checksum and a reserved word follow the first four bytes. */
export const GRE_FLAG_CSUM = 0x8000;
const ETH_P_IP = 0x0800;
const GRE_BASE_HEADER = 4;
const GRE_CSUM_FIELDS = 4;

export const GRE: Encapsulation = {
  protocol: IPPROTO_GRE,
  // gre_calc_hlen: the base header, and the checksum with its reserved word when asked for.
  headerLength: (t) => GRE_BASE_HEADER + (t.csum === 'csum' ? GRE_CSUM_FIELDS : 0),
  write(buf, outer, end, t) {
    const gre = outer + OUTER_IPV4_HEADER;
    const csum = t.csum === 'csum';
    // Version 0, no routing, key or sequence number (gre_build_header with no flags but the C bit).
    writeU16(buf, gre, csum ? GRE_FLAG_CSUM : 0);
    writeU16(buf, gre + 2, ETH_P_IP);
    if (!csum) return;
    // RFC 2784 2.5: the checksum field counts as zero while the sum is taken.
    writeU32(buf, gre + GRE_BASE_HEADER, 0);
    writeU16(buf, gre + GRE_BASE_HEADER, finish(onesSum(buf, gre, end)));
  },
};
