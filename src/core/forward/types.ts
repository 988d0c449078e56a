// A forwarding method as IPVS's ip_vs_bind_xmit binds one to each connection: how a client's
// packet reaches the real server, and how (if at all) the real server's reply comes back.

import type { Direction } from '../conn/tcp-state.js';
import type { Addr } from '../inet.js';
import type { ForwardMethod, TunnelSettings } from '../model.js';
import type { ParsedPacket } from '../packet/parse.js';

/**
 * The host's path to a real server, as the data plane's adapter found it in the routing table
 * (the core never looks): what an encapsulating method needs for its outer header.
 */
export interface RealServerRoute {
  /** The director's address on the real server's side: the source the host would choose. */
  readonly source: Addr;
  /** The MTU towards the real server (the route's, else its interface's). */
  readonly mtu: number;
}

/** Where a client's packet goes: the real server's address and port, and the route to it. */
export interface XmitTarget {
  readonly addr: Addr;
  readonly port: number;
  /** null while the adapter has not found one (or there is none). */
  readonly route: RealServerRoute | null;
  /** A tunnelling real server's encapsulation (null: ipip, the kernel's default, or not a tunnel). */
  readonly tunnel: TunnelSettings | null;
}

/** toRealServer could not rewrite the packet (drop it: 'not-rewritable'). */
export const XMIT_NOT_REWRITABLE = 0;
/** The method needs a route to the real server and none is known (drop it: 'no-route'). */
export const XMIT_NO_ROUTE = -1;
/**
 * The packet would not fit the route's MTU once forwarded, and may not be fragmented (DF): the
 * client gets ICMP "fragmentation needed" with the MTU left for it (IPVS's __mtu_check_toobig_v4).
 */
export const XMIT_TOO_BIG = -2;
/** The packet cannot be carried at all (too big for any frame, or a kind the method cannot split). */
export const XMIT_OVERSIZE = -3;
/** The packet's TTL (hop limit) would reach 0 on this hop: a router drops it (RFC 1812 5.3.1). */
export const XMIT_TTL_EXPIRED = -4;

export interface ForwardingMethod {
  readonly name: ForwardMethod;
  /**
   * The TCP state table a client's packets move through: 'in' when replies cross the director
   * too (so they drive the 'out' table), 'in-only' when they bypass it (IPVS's tcp_states_dos
   * INPUT_ONLY rows, for direct routing and tunnels).
   */
  readonly clientDirection: Extract<Direction, 'in' | 'in-only'>;
  /**
   * The most bytes of the method's own headers (an outer IP header and a tunnel's) for any target:
   * what a frame may grow by on its way to the real server. 0 for NAT.
   */
  readonly headroom: number;
  /** Bytes of the method's own headers towards this target: what of the route's MTU is not left for the client's packet. */
  headerLength(target: XmitTarget): number;
  /**
   * Where the frame goes on the link: 'packet-destination', to the next hop of the IP destination
   * it leaves with (the real server after NAT, the outer header's after encapsulation);
   * 'real-server', to the real server itself while the packet still says VIP (direct routing,
   * which only a layer-2 data plane can deliver).
   */
  readonly delivery: 'packet-destination' | 'real-server';
  /**
   * Sends the client's packet in frame[offset, offset + length) (virtio_net_hdr first) towards the
   * target, rewriting it in place (`frame` has at least `headroom` bytes to spare after it, unless
   * it is longer than any frame the device delivers). Returns the frame's new length from `offset`,
   * or one of the XMIT_* failures. Frames beyond the one returned (the segments of a GSO
   * super-packet the method had to split) go to `extra`, to be sent after it.
   */
  toRealServer(
    frame: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    target: XmitTarget,
    extra: Uint8Array[],
  ): number;
  /**
   * Rewrites a real server's reply in place so that it comes from the virtual address vaddr:vport;
   * null for a method whose replies never reach the director.
   */
  readonly toClient:
    ((buf: Uint8Array, p: ParsedPacket, vaddr: Addr, vport: number, vnetFlags: number) => boolean) | null;
}

/**
 * What a data plane can carry out, declared by it to the director (and through it to the service
 * table): the forwarding methods its packet path delivers. A real server asking for another is
 * refused at once (LVS_ERR_METHOD_UNSUPPORTED), never accepted and then dropped. Plain data: it
 * crosses to the data-plane worker.
 */
export interface ForwardingCapability {
  /** The data plane's name, as the operator chose it (`tun`). */
  readonly dataplane: string;
  readonly methods: readonly ForwardMethod[];
  /** For a method it cannot deliver that another data plane can: what the operator should do. */
  readonly elsewhere: Partial<Record<ForwardMethod, string>>;
}
