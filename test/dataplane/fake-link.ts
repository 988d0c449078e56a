// In-memory layer-2 ports, neighbour and link sources and routes: the layer-2 loop runs over them without
// root. A port can be made faulty (the kernel refusing what is sent, a frame cut short).

import assert from 'node:assert/strict';
import type { Addr } from '../../src/core/inet.js';
import { formatAddr } from '../../src/core/inet.js';
import type { LinkDriver, LinkPort, PortFilter, TxBatch } from '../../src/dataplane/af-packet.js';
import type { LinkSource } from '../../src/dataplane/links.js';
import type { LinkUpdate, NeighbourUpdate } from '../../src/dataplane/netlink.js';
import type { NeighbourSource } from '../../src/dataplane/neighbours.js';
import type { NextHop, NextHopLookup } from '../../src/dataplane/routes.js';

export class FakeLinkPort implements LinkPort {
  readonly inbox: (Uint8Array | 'cut-short')[] = [];
  readonly sent: Uint8Array[] = [];
  filter: PortFilter | null = null;
  /** The errno transmit() answers with; 0: sent. */
  refuse = 0;
  closed = false;

  constructor(
    readonly name: string,
    readonly ifindex: number,
    readonly mac: Uint8Array,
    readonly fds: readonly number[],
  ) {}

  setFilter(filter: PortFilter): void {
    this.filter = filter;
  }

  frame = new Uint8Array(0);
  frameAt = 0;
  /** Frames received and not yet given back (the ring slots lvsd holds). */
  taken = 0;
  /** The most frames taken at once. */
  mostTaken = 0;

  /** Each frame in a slot of its own, at an offset, with room after it, as in a ring. */
  receive(): number {
    const frame = this.inbox.shift();
    if (frame === undefined) return 0;
    this.mostTaken = Math.max(this.mostTaken, ++this.taken);
    if (frame === 'cut-short') return -1;
    this.frameAt = 50;
    this.frame = new Uint8Array(this.frameAt + frame.length + 2048);
    this.frame.set(frame, this.frameAt);
    return frame.length;
  }

  release(): void {
    this.taken = 0;
  }

  transmit(batch: TxBatch, from: number, to: number): void {
    for (let i = from; i < to; i++) {
      assert.equal(batch.ports[i], this);
      batch.errors[i] = this.refuse;
      const at = batch.ats[i]!;
      if (this.refuse === 0) this.sent.push(batch.bufs[i]!.slice(at, at + batch.lengths[i]!));
    }
  }

  queueDrops(): number {
    return 0;
  }

  close(): void {
    this.closed = true;
  }
}

/** Interfaces by name: index i + 1, MAC 02:00:00:00:00:0(i+1). */
export class FakeLinkDriver implements LinkDriver {
  readonly ports = new Map<string, FakeLinkPort>();
  readonly refuse = new Set<string>();

  constructor(private readonly names: string[]) {}

  open(name: string, options: { receive: boolean }): FakeLinkPort {
    const i = this.names.indexOf(name);
    if (i < 0 || this.refuse.has(name)) throw new Error(`no interface ${name}`);
    const port = new FakeLinkPort(
      name,
      i + 1,
      Uint8Array.from([2, 0, 0, 0, 0, i + 1]),
      options.receive ? [100 + i] : [],
    );
    this.ports.set(name, port);
    return port;
  }

  nameOf(ifindex: number): string | null {
    return this.names[ifindex - 1] ?? null;
  }
}

/** A kernel table as a netlink source gives it: `table` is the dump, `queued` the changes to come. */
class FakeTable<T> {
  readonly table: T[] = [];
  readonly queued: T[] = [];

  dump(): T[] {
    return [...this.table];
  }

  changes(): T[] {
    return this.queued.splice(0);
  }

  close(): void {}
}

export class FakeNeighbourSource extends FakeTable<NeighbourUpdate> implements NeighbourSource {
  readonly asked: string[] = [];
  readonly fd = 99;

  resolve(ifindex: number, addr: Addr): void {
    this.asked.push(`${ifindex}/${formatAddr(addr)}`);
  }
}

export class FakeLinkSource extends FakeTable<LinkUpdate> implements LinkSource {
  readonly fd = 98;
}

/** Routes as a map from address text to next hop (missing: no route). */
export class FakeNextHops implements NextHopLookup {
  lookups = 0;

  constructor(readonly routes: Map<string, NextHop>) {}

  lookup(addr: Addr): NextHop | null {
    this.lookups++;
    return this.routes.get(formatAddr(addr)) ?? null;
  }
}
