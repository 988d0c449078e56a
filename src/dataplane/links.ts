// The interfaces' MTUs as the layer-2 loop reads them: one dump at start and the changes the
// kernel announces after (an operator's `ip link set mtu`). The kernel checks what lvsd sends
// against the MTU only for a plain frame: a GSO super-packet goes out whole, its segments sized
// for the link it came in on, and must be checked here (see LinkPath.deliver).

import { encodeLinkDump, NetlinkTable, parseLink, RTMGRP_LINK, type LinkUpdate } from './netlink.js';

/** Where the MTUs come from: rtnetlink in lvsd, a fake in the tests. */
export interface LinkSource {
  /** Every interface, now. */
  dump(): LinkUpdate[];
  /** The changes announced since the last call. */
  changes(): LinkUpdate[];
  /** For poll(): readable when changes are queued. */
  readonly fd: number;
  close(): void;
}

export class LinkMtus {
  private readonly mtus = new Map<number, number>();

  constructor(private readonly source: LinkSource) {
    for (const update of source.dump()) this.apply(update);
  }

  get fd(): number {
    return this.source.fd;
  }

  /** Takes the kernel's changes in. */
  update(): void {
    for (const update of this.source.changes()) this.apply(update);
  }

  /** The interface's MTU; 0 for one the kernel has not told of. */
  mtu(ifindex: number): number {
    return this.mtus.get(ifindex) ?? 0;
  }

  close(): void {
    this.source.close();
  }

  private apply(update: LinkUpdate): void {
    if (update.mtu === null) this.mtus.delete(update.ifindex);
    else this.mtus.set(update.ifindex, update.mtu);
  }
}

/** The link source over rtnetlink. */
export class NetlinkLinks extends NetlinkTable<LinkUpdate> implements LinkSource {
  constructor() {
    super(RTMGRP_LINK, encodeLinkDump, parseLink);
  }
}
