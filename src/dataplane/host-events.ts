// What tells the host repair loop that the host changed under lvsd: the kernel's own
// announcements of links, addresses, routes and rules (rtnetlink) and of nftables ruleset changes
// (nfnetlink), read without blocking. Listing the host to compare it with the journal forks `ip`
// and `nft` (3-4 processes, tens of ms of a core under load); with these, it is done only after
// an announcement, not every tick. Netlink has no ready-made binding in npm that runs in-process
// without a native build; the socket is netlink.ts's koffi one.

import { NETLINK_NETFILTER, NetlinkSocket } from './netlink.js';

/** Where the repair loop learns that something it keeps may have changed. */
export interface HostEvents {
  /** Whether the kernel announced a change since the last call (or announcements were lost). */
  changed(): boolean;
  close(): void;
}

// rtnetlink multicast groups as bind() takes them (bit n-1 for group n).
const RTMGRP_LINK = 0x1;
const RTMGRP_IPV4_IFADDR = 0x10;
const RTMGRP_IPV4_ROUTE = 0x40;
const RTMGRP_IPV4_RULE = 0x80;
const RTMGRP_IPV6_IFADDR = 0x100;
const RTMGRP_IPV6_ROUTE = 0x400;
/** RTNLGRP_IPV6_RULE is group 19. */
const RTMGRP_IPV6_RULE = 1 << 18;
/** NFNLGRP_NFTABLES is group 7. */
const NFNLGRP_NFTABLES_MASK = 1 << 6;

const ROUTE_GROUPS =
  RTMGRP_LINK |
  RTMGRP_IPV4_IFADDR |
  RTMGRP_IPV4_ROUTE |
  RTMGRP_IPV4_RULE |
  RTMGRP_IPV6_IFADDR |
  RTMGRP_IPV6_ROUTE |
  RTMGRP_IPV6_RULE;

/** The kernel's announcements, on two netlink sockets. */
export class NetlinkHostEvents implements HostEvents {
  private readonly sockets = [
    new NetlinkSocket(ROUTE_GROUPS),
    new NetlinkSocket(NFNLGRP_NFTABLES_MASK, NETLINK_NETFILTER),
  ];

  changed(): boolean {
    let changed = false;
    for (const socket of this.sockets) {
      try {
        while (socket.receive().length > 0) changed = true;
      } catch {
        // ENOBUFS: the socket overflowed and announcements were lost; anything may have changed.
        changed = true;
      }
    }
    return changed;
  }

  close(): void {
    for (const socket of this.sockets) socket.close();
  }
}
