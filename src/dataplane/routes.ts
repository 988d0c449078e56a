// The host's route to a tunnelled real server, looked up for the director, which never reads the
// routing table itself: the source address the host would pick for it (the DIP on that side) and
// the MTU of the path (a route's or learnt PMTU's, else the interface's), as IPVS takes both from
// the route it sends the encapsulated packet on.

import type { Clock } from '../core/clock.js';
import type { RealServerRoute } from '../core/forward/types.js';
import { formatAddr, parseAddr, type Addr } from '../core/inet.js';
import { isInterfaceName } from './host-journal.js';
import type { System } from './host.js';
import { encodeRouteGet, NetlinkSocket, parseRoute, RTN_LOCAL, RTN_UNICAST } from './netlink.js';

export interface RouteLookup {
  /** The route to `addr`; null when there is none, or it is one of the host's own addresses. */
  lookup(addr: Addr): RealServerRoute | null;
}

interface RouteGet {
  type?: string;
  dev?: string;
  prefsrc?: string;
  metrics?: { mtu?: number }[];
}

/** `ip route get` and the interface's MTU from sysfs. */
export class IpRouteLookup implements RouteLookup {
  constructor(private readonly system: Pick<System, 'run' | 'readFile'>) {}

  lookup(addr: Addr): RealServerRoute | null {
    let route: RouteGet | undefined;
    try {
      [route] = JSON.parse(
        this.system.run(['ip', `-${addr.af}`, '-j', 'route', 'get', formatAddr(addr)]),
      ) as RouteGet[];
    } catch {
      return null;
    }
    if (!route || (route.type ?? 'unicast') !== 'unicast' || !route.dev || !isInterfaceName(route.dev))
      return null;
    const source = route.prefsrc === undefined ? null : parseAddr(route.prefsrc);
    if (source === null || source.af !== addr.af) return null;
    const routeMtu = route.metrics?.find((m) => m.mtu !== undefined)?.mtu;
    const mtu = routeMtu ?? Number(this.system.readFile(`/sys/class/net/${route.dev}/mtu`)?.trim());
    return Number.isInteger(mtu) && mtu > 0 ? { source, mtu } : null;
  }
}

/** How long the layer-2 loop keeps a destination's next hop before it looks again. */
export const ROUTE_CACHE_MS = 5_000;

/** Where the layer-2 loop sends a packet for an address. */
export type NextHop =
  /** One of the host's own addresses: the kernel's to deliver (lvsd writes it into its TUN device). */
  | { kind: 'local' }
  /** Out of this interface, to this neighbour (the gateway, or the address itself on the link). */
  | { kind: 'link'; ifindex: number; via: Addr };

export interface NextHopLookup {
  /** The next hop, or null when the host has no route (or one that is not unicast or local). */
  lookup(addr: Addr): NextHop | null;
}

/** The route to an address as one RTM_GETROUTE on a netlink socket (no subprocess on the packet path). */
export class NetlinkNextHops implements NextHopLookup {
  private readonly socket = new NetlinkSocket(0);
  private seq = 1;

  lookup(addr: Addr): NextHop | null {
    for (const msg of this.socket.request(encodeRouteGet(this.seq++, addr), 200)) {
      const route = parseRoute(msg);
      if (!route) continue;
      if (route.type === RTN_LOCAL) return { kind: 'local' };
      if (route.type !== RTN_UNICAST || route.ifindex <= 0) return null;
      return { kind: 'link', ifindex: route.ifindex, via: route.gateway ?? addr };
    }
    return null;
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * Next hops remembered per destination, each looked up again after `ttlMs` (a route that
 * changed), so that a flow costs one lookup, not one per packet. Bounded: cleared when full.
 */
export class NextHopCache {
  private readonly entries = new Map<number | string, { hop: NextHop | null; at: number }>();

  constructor(
    private readonly lookup: NextHopLookup,
    private readonly clock: Clock,
    private readonly ttlMs: number,
    private readonly capacity = 65536,
  ) {}

  get(addr: Addr): NextHop | null {
    const key = addr.af === 4 ? addr.a : `${addr.a}:${addr.b}:${addr.c}:${addr.d}`;
    const now = this.clock.now();
    const entry = this.entries.get(key);
    if (entry && now - entry.at < this.ttlMs) return entry.hop;
    if (this.entries.size >= this.capacity) this.entries.clear();
    const hop = this.lookup.lookup(addr);
    this.entries.set(key, { hop, at: now });
    return hop;
  }
}
