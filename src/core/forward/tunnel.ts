// Tunnelling (ipvsadm -i, LVS-TUN, ipip type): the client's IPv4 packet travels to the real
// server inside an outer IPv4 header from the director's address on that side (RFC 2003), as
// IPVS's ip_vs_tunnel_xmit sends it. The real server holds the VIP on its tunl0 device and
// answers the client itself: replies never reach the director, so TCP follows INPUT_ONLY.

import {
  dontFragment,
  encapsulate,
  encapsulateSegments,
  fitsEncapsulated,
  IPIP_HEADER,
  wireLength,
} from '../packet/ipip.js';
import { isSuperPacket, readVnetHdr } from '../packet/vnet.js';
import { registerForwardingMethod } from './registry.js';
import { XMIT_NO_ROUTE, XMIT_NOT_REWRITABLE, XMIT_OVERSIZE, XMIT_TOO_BIG } from './types.js';

/** The outer headers' IPv4 identification: unique enough per source for the outer fragments. */
let lastId = 0;
const nextId = (): number => (lastId = (lastId + 1) & 0xffff);

registerForwardingMethod({
  name: 'tunnel',
  clientDirection: 'in-only',
  headroom: IPIP_HEADER,
  delivery: 'packet-destination',
  toRealServer(frame, offset, _length, p, target, extra) {
    const { route } = target;
    if (route === null) return XMIT_NO_ROUTE;
    // The service table admits IPv4 tunnels only.
    if (p.af !== 4 || target.addr.af !== 4) return XMIT_NOT_REWRITABLE;
    const vnet = readVnetHdr(frame, offset);
    if (dontFragment(frame, p) && wireLength(vnet, p) + IPIP_HEADER > route.mtu) return XMIT_TOO_BIG;
    if (isSuperPacket(vnet, p.payloadLength)) {
      return encapsulateSegments(frame, offset, p, route.source, target.addr, nextId, extra) || XMIT_OVERSIZE;
    }
    if (!fitsEncapsulated(frame, p)) return XMIT_OVERSIZE;
    return encapsulate(frame, offset, p, route.source, target.addr, nextId()) || XMIT_NOT_REWRITABLE;
  },
  toClient: null,
});
