// The kernel's neighbour table (ARP, ND) as the layer-2 loop reads it: the MAC of the next hop on
// an interface, from one dump at start and the changes the kernel announces after. A next hop with
// no MAC yet is resolved by the kernel on request (NTF_USE), at most once a second per address;
// its frames meanwhile are the loop's to drop ("no-neighbour"), never sent to a zero MAC.
// The kernel never sees lvsd use an entry, so lvsd tells it (NTF_USE again, every few seconds for
// an entry in use): a STALE entry is then probed like one the kernel sends through, and a real
// server whose MAC changed is found again instead of being sent to its old MAC for ever.

import type { Clock } from '../core/clock.js';
import type { Addr } from '../core/inet.js';
import {
  encodeNeighbourDump,
  encodeResolve,
  NetlinkTable,
  parseNeighbour,
  RTMGRP_NEIGH,
  type NeighbourUpdate,
} from './netlink.js';

/** Where the table's facts come from: rtnetlink in lvsd, a fake in the tests. */
export interface NeighbourSource {
  /** The whole table, now. */
  dump(): NeighbourUpdate[];
  /** The changes announced since the last call. */
  changes(): NeighbourUpdate[];
  /** Asks the kernel to resolve `addr` on the interface. */
  resolve(ifindex: number, addr: Addr): void;
  /** For poll(): readable when changes are queued. */
  readonly fd: number;
  close(): void;
}

const RESOLVE_INTERVAL_MS = 1000;
/** How often an entry in use is reported used to the kernel (its delay_first_probe_time is 5 s). */
const USE_INTERVAL_MS = 5000;

/** A Map key without allocating an object: a number for IPv4, a string for IPv6. */
export function neighbourKey(ifindex: number, addr: Addr): number | string {
  return addr.af === 4
    ? ifindex * 0x1_0000_0000 + addr.a
    : `${ifindex}/${addr.a}:${addr.b}:${addr.c}:${addr.d}`;
}

export class Neighbours {
  private readonly macs = new Map<number | string, Uint8Array>();
  private readonly asked = new Map<number | string, number>();

  constructor(
    private readonly source: NeighbourSource,
    private readonly clock: Clock,
  ) {
    for (const update of source.dump()) this.apply(update);
  }

  get fd(): number {
    return this.source.fd;
  }

  /** Takes the kernel's changes in. */
  update(): void {
    for (const update of this.source.changes()) this.apply(update);
  }

  /** The MAC of `addr` on the interface; null (and a resolution asked for) when there is none yet. */
  mac(ifindex: number, addr: Addr): Uint8Array | null {
    const key = neighbourKey(ifindex, addr);
    const mac = this.macs.get(key) ?? null;
    const now = this.clock.now();
    if (now - (this.asked.get(key) ?? -Infinity) >= (mac ? USE_INTERVAL_MS : RESOLVE_INTERVAL_MS)) {
      this.asked.set(key, now);
      this.source.resolve(ifindex, addr);
    }
    return mac;
  }

  close(): void {
    this.source.close();
  }

  private apply(update: NeighbourUpdate): void {
    const key = neighbourKey(update.ifindex, update.addr);
    if (update.mac) this.macs.set(key, update.mac);
    else this.macs.delete(key);
  }
}

/** The neighbour source over rtnetlink: the table, and the resolutions asked for on its request socket. */
export class NetlinkNeighbours extends NetlinkTable<NeighbourUpdate> implements NeighbourSource {
  constructor() {
    super(RTMGRP_NEIGH, encodeNeighbourDump, parseNeighbour);
  }

  override changes(): NeighbourUpdate[] {
    const out = super.changes();
    // Answers to resolve() (acks, errors) are not waited for: drain them here.
    while (this.requests.receive().length > 0);
    return out;
  }

  resolve(ifindex: number, addr: Addr): void {
    this.requests.send(encodeResolve(this.seq++, ifindex, addr));
  }
}
