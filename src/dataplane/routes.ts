// The host's route to a tunnelled real server, looked up for the director, which never reads the
// routing table itself: the source address the host would pick for it (the DIP on that side) and
// the MTU of the path (a route's or learnt PMTU's, else the interface's), as IPVS takes both from
// the route it sends the encapsulated packet on.

import type { RealServerRoute } from '../core/forward/types.js';
import { formatAddr, parseAddr, type Addr } from '../core/inet.js';
import { isInterfaceName } from './host-journal.js';
import type { System } from './host.js';

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
