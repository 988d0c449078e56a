// What each data plane delivers, declared to the director (ForwardingCapability): the service
// table refuses a real server whose forwarding method the running data plane cannot carry out.

import type { ForwardingCapability } from '../core/forward/types.js';

/**
 * The TUN device is layer 3: what lvsd writes to it the kernel routes by its IP destination, so
 * it carries NAT and tunnels, but not direct routing (a packet for the VIP would come back).
 */
export const TUN_FORWARDING: ForwardingCapability = {
  dataplane: 'tun',
  methods: ['masq', 'tunnel'],
  elsewhere: { route: 'start lvsd with --dataplane packet (the layer-2 data plane) for it' },
};
