// Masquerading (ipvsadm -m, LVS-NAT): the destination of a client's packet becomes the real
// server; the reply, routed back through the director, gets the virtual address as its source.

import { rewriteDestination, rewriteSource } from '../packet/nat.js';
import { registerForwardingMethod } from './registry.js';

registerForwardingMethod({
  name: 'masq',
  clientDirection: 'in',
  toRealServer: rewriteDestination,
  toClient: rewriteSource,
});
