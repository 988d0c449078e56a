// In-memory layer-2 ports, neighbour and link sources and routes: the layer-2 loop runs over them without
// root. A port can be made faulty (the kernel refusing what is sent, a frame cut short).

import type { Addr } from '../../src/core/inet.js';
import { formatAddr } from '../../src/core/inet.js';
import type { LinkDriver, LinkPort } from '../../src/dataplane/af-packet.js';
import type { LinkSource } from '../../src/dataplane/links.js';
import type { LinkUpdate, NeighbourUpdate } from '../../src/dataplane/netlink.js';
import type { NeighbourSource } from '../../src/dataplane/neighbours.js';
import type { NextHop, NextHopLookup } from '../../src/dataplane/routes.js';

export class FakeLinkPort implements LinkPort {
  readonly inbox: (Uint8Array | 'cut-short')[] = [];
  readonly sent: Uint8Array[] = [];
  filter: Buffer | null = null;
  /** The errno transmit() answers with; 0: sent. */
  refuse = 0;
  closed = false;

  constructor(
    readonly name: string,
    readonly ifindex: number,
    readonly mac: Uint8Array,
    readonly fd: number,
  ) {}

  setFilter(program: Buffer): void {
    this.filter = program;
  }

  receive(buf: Uint8Array): number {
    const frame = this.inbox.shift();
    if (frame === undefined) return 0;
    if (frame === 'cut-short') return -1;
    buf.set(frame);
    return frame.length;
  }

  transmit(buf: Uint8Array, length: number): number {
    if (this.refuse !== 0) return this.refuse;
    this.sent.push(buf.slice(0, length));
    return 0;
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
      options.receive ? 100 + i : -1,
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
