// What each data plane delivers, declared to the director (ForwardingCapability): the service
// table refuses a real server whose forwarding method the running data plane cannot carry out.

import type { ForwardingCapability } from '../core/forward/types.js';
import type { DataplaneKind } from '../core/ops.js';

export type { DataplaneKind };

/** What `lvsd` runs without --dataplane: the layer-2 plane, which carries every forwarding method. */
export const DEFAULT_DATAPLANE: DataplaneKind = 'packet';

/**
 * The TUN device is layer 3: what lvsd writes to it the kernel routes by its IP destination, so
 * it carries NAT and tunnels, but not direct routing (a packet for the VIP would come back).
 */
export const TUN_FORWARDING: ForwardingCapability = {
  dataplane: 'tun',
  methods: ['masq', 'tunnel'],
  elsewhere: { route: 'start lvsd with --dataplane packet (the layer-2 data plane) for it' },
};

/**
 * AF_PACKET on the interfaces: lvsd puts the link-layer header on itself, so a directly routed
 * packet goes to the real server's MAC while it still says VIP (Director.nextHop).
 */
export const PACKET_FORWARDING: ForwardingCapability = {
  dataplane: 'packet',
  methods: ['masq', 'tunnel', 'route'],
  elsewhere: {},
};

export const DATAPLANE_FORWARDING: Record<DataplaneKind, ForwardingCapability> = {
  tun: TUN_FORWARDING,
  packet: PACKET_FORWARDING,
};
