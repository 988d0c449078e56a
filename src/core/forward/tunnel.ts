// Tunnelling (ipvsadm -i, LVS-TUN): the client's IPv4 packet travels to the real server inside an
// outer IPv4 header from the director's address on that side, as IPVS's ip_vs_tunnel_xmit sends
// it, wrapped as the real server's --tun-type says: ipip (RFC 2003, the default), gre (RFC 2784)
// or gue (UDP). The real server holds the VIP on its tunnel device and answers the client itself:
// replies never reach the director, so TCP follows INPUT_ONLY.

import { IPIP_TUNNEL, type TunnelCsum, type TunnelType } from '../model.js';
import { GRE } from '../packet/gre.js';
import { GUE } from '../packet/gue.js';
import {
  dontFragment,
  encapsulate,
  encapsulateSegments,
  fitsEncapsulated,
  IPIP,
  tunnelOverhead,
  wireLength,
  type Encapsulation,
} from '../packet/ipip.js';
import { isSuperPacket, readVnetHdr } from '../packet/vnet.js';
import { registerForwardingMethod } from './registry.js';
import { XMIT_NO_ROUTE, XMIT_NOT_REWRITABLE, XMIT_OVERSIZE, XMIT_TOO_BIG, type XmitTarget } from './types.js';

const ENCAPSULATIONS: Record<TunnelType, Encapsulation> = { ipip: IPIP, gre: GRE, gue: GUE };

/** The outer IPv4 header and the type's own header: what the route's MTU loses to the tunnel. */
function overheadFor(target: XmitTarget): number {
  const settings = target.tunnel ?? IPIP_TUNNEL;
  return tunnelOverhead({ encap: ENCAPSULATIONS[settings.type], settings });
}

/** The outer headers' IPv4 identification: unique enough per source for the outer fragments. */
let lastId = 0;
const nextId = (): number => (lastId = (lastId + 1) & 0xffff);

registerForwardingMethod({
  name: 'tunnel',
  clientDirection: 'in-only',
  headroom: Math.max(
    ...Object.values(ENCAPSULATIONS).flatMap((encap) =>
      (['nocsum', 'csum', 'remcsum'] satisfies TunnelCsum[]).map((csum) =>
        tunnelOverhead({ encap, settings: { ...IPIP_TUNNEL, csum } }),
      ),
    ),
  ),
  headerLength: overheadFor,
  delivery: 'packet-destination',
  toRealServer(frame, offset, _length, p, target, extra) {
    const { route } = target;
    if (route === null) return XMIT_NO_ROUTE;
    // The service table admits IPv4 tunnels only.
    if (p.af !== 4 || target.addr.af !== 4) return XMIT_NOT_REWRITABLE;
    const settings = target.tunnel ?? IPIP_TUNNEL;
    const path = { from: route.source, to: target.addr, encap: ENCAPSULATIONS[settings.type], settings };
    const overhead = tunnelOverhead(path);
    const vnet = readVnetHdr(frame, offset);
    if (dontFragment(frame, p) && wireLength(vnet, p) + overhead > route.mtu) return XMIT_TOO_BIG;
    if (isSuperPacket(vnet, p.payloadLength)) {
      return encapsulateSegments(frame, offset, p, path, nextId, extra) || XMIT_OVERSIZE;
    }
    if (!fitsEncapsulated(frame, p, overhead)) return XMIT_OVERSIZE;
    return encapsulate(frame, offset, p, path, nextId()) || XMIT_NOT_REWRITABLE;
  },
  toClient: null,
});
