// Direct routing (ipvsadm -g, LVS-DR, ipvsadm's default): the client's packet goes to the real
// server unchanged, addresses and ports as the client sent them (IPVS's ip_vs_dr_xmit); only the
// link-layer destination becomes the real server's, which the layer-2 data plane puts on
// (`delivery: 'real-server'`, Director.nextHop). The real server holds the VIP on a loopback
// interface and answers the client itself: replies never reach the director, so TCP follows
// INPUT_ONLY. As a router forwarding it, the director takes one off the TTL (hop limit), and
// answers a packet the real server's link cannot take, and that may not be fragmented (IPv6, or
// IPv4 with DF), with "packet too big" (ip_vs_dr_xmit's __mtu_check_toobig_v4/_v6).

import { adjustIpv4HeaderChecksum } from '../packet/nat.js';
import { replace16 } from '../packet/checksum.js';
import { dontFragment, wireLength } from '../packet/ipip.js';
import { readVnetHdr } from '../packet/vnet.js';
import { registerForwardingMethod } from './registry.js';
import { XMIT_NOT_REWRITABLE, XMIT_TOO_BIG, XMIT_TTL_EXPIRED } from './types.js';

registerForwardingMethod({
  name: 'route',
  clientDirection: 'in-only',
  headroom: 0,
  headerLength: () => 0,
  delivery: 'real-server',
  toRealServer(frame, offset, length, p, target) {
    // The service table admits real servers of the service's family only.
    if (p.af !== target.addr.af) return XMIT_NOT_REWRITABLE;
    const { route } = target;
    // Without a route known yet the link refuses what it cannot take, and the frame is dropped.
    if (
      route &&
      (p.af === 6 || dontFragment(frame, p)) &&
      wireLength(readVnetHdr(frame, offset), p) > route.mtu
    )
      return XMIT_TOO_BIG;
    const l3 = p.l3Offset;
    if (p.af === 6) {
      if (frame[l3 + 7] <= 1) return XMIT_TTL_EXPIRED;
      frame[l3 + 7]--;
      return length;
    }
    const ttl = frame[l3 + 8];
    if (ttl <= 1) return XMIT_TTL_EXPIRED;
    // TTL and protocol share a 16-bit word of the header checksum.
    adjustIpv4HeaderChecksum(frame, l3, replace16(frame, l3 + 8, ((ttl - 1) << 8) | frame[l3 + 9]));
    return length;
  },
  toClient: null,
});
