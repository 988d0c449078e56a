// Masquerading (ipvsadm -m, LVS-NAT): the destination of a client's packet becomes the real
// server; the reply, routed back through the director, gets the virtual address as its source.

import { rewriteDestination, rewriteSource } from '../packet/nat.js';
import { vnetFlags } from '../packet/vnet.js';
import { registerForwardingMethod } from './registry.js';
import { XMIT_NOT_REWRITABLE } from './types.js';

registerForwardingMethod({
  name: 'masq',
  clientDirection: 'in',
  headroom: 0,
  headerLength: () => 0,
  delivery: 'packet-destination',
  toRealServer: (frame, offset, length, p, target) =>
    rewriteDestination(frame, p, target.addr, target.port, vnetFlags(frame, offset))
      ? length
      : XMIT_NOT_REWRITABLE,
  toClient: rewriteSource,
});
