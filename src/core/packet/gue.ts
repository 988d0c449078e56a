// GUE encapsulation (Generic UDP Encapsulation, draft-ietf-intarea-gue, variant 0), as IPVS's
// ipvs_gue_encap builds it for --tun-type gue: a UDP header to the real server's --tun-port, from
// a source port hashed from the inner flow (udp_flow_src_port, so that the real server's receive
// side spreads flows over its queues), then a 4-byte GUE header naming the inner protocol (IPIP).
// The UDP checksum is 0 (none, RFC 768) unless --tun-csum asks for it. The real server takes the
// packet apart with `ip fou add port N gue`, which hands the inner packet to its ipip device.

import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../inet.js';
import { l4Checksum, readU16, readU32, writeU16 } from './checksum.js';
import { IPPROTO_IPIP, OUTER_IPV4_HEADER, type Encapsulation } from './ipip.js';

const UDP_HEADER = 8;
const GUE_HEADER = 4;
/**
 * The kernel's default net.ipv4.ip_local_port_range, from which udp_flow_src_port picks the source
 * port when the tunnel names no range of its own (IPVS names none).
 */
const SOURCE_PORT_LOW = 32768;
const SOURCE_PORTS = 60999 - SOURCE_PORT_LOW + 1;

/** The finaliser of MurmurHash3: every input bit moves every output bit. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * The UDP source port for the inner IPv4 packet at buf[inner, end): a hash of its addresses,
 * protocol and, outside fragments, ports, so that every packet of one connection (and every
 * fragment of one datagram) takes the same one, as the kernel's flow hash does.
 */
export function flowSourcePort(buf: Uint8Array, inner: number, end: number): number {
  const l4 = inner + (buf[inner] & 0xf) * 4;
  const protocol = buf[inner + 9];
  let h = mix(readU32(buf, inner + 12) ^ protocol);
  h = mix(h ^ readU32(buf, inner + 16));
  const fragment = (readU16(buf, inner + 6) & 0x3fff) !== 0;
  const ports = protocol === IPPROTO_TCP || protocol === IPPROTO_UDP || protocol === IPPROTO_SCTP;
  if (ports && !fragment && l4 + 4 <= end) h = mix(h ^ readU32(buf, l4));
  return SOURCE_PORT_LOW + (h % SOURCE_PORTS);
}

export const GUE: Encapsulation = {
  protocol: IPPROTO_UDP,
  headerLength: () => UDP_HEADER + GUE_HEADER,
  write(buf, outer, end, t) {
    const udp = outer + OUTER_IPV4_HEADER;
    const gue = udp + UDP_HEADER;
    const inner = gue + GUE_HEADER;
    writeU16(buf, udp, flowSourcePort(buf, inner, end));
    writeU16(buf, udp + 2, t.port);
    writeU16(buf, udp + 4, end - udp);
    writeU16(buf, udp + 6, 0);
    // Version 0, not a control message, no optional fields; the inner packet is IPv4 in IPv4.
    buf[gue] = 0;
    buf[gue + 1] = IPPROTO_IPIP;
    writeU16(buf, gue + 2, 0);
    if (t.csum === 'nocsum') return;
    // RFC 768: a computed checksum of 0 is sent as all ones; 0 means "none".
    const check = l4Checksum(buf, outer, 4, IPPROTO_UDP, udp, end, udp + 6);
    writeU16(buf, udp + 6, check === 0 ? 0xffff : check);
  },
};
