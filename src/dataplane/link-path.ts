// The layer-2 loop: frames from the AF_PACKET ports (the VIPs' interfaces and the real servers'),
// the Ethernet header off, the director's verdict, and out again: on the egress interface of the
// packet's destination with the next hop's MAC (dst) and the interface's own (src); into the TUN
// device when the destination is the host's own, or when the director gives the frame back to the
// kernel (the netdev rule dropped it on the wire: through the TUN the kernel receives it as if
// lvsd were not there).

import { PASS_TO_HOST, type DeviceCounters } from '../core/ops.js';
import { VNET_HDR_LEN } from '../core/packet/vnet.js';
import type { Addr } from '../core/inet.js';
import type { PacketDevice } from './device.js';
import { EMSGSIZE, type LinkDriver, type LinkPort } from './af-packet.js';
import { encodeProgram, filterProgram, type FilterSpec } from './l2-filter.js';
import { ETH_HLEN, largestWirePacket, LINK_HEADROOM, toDirectorLayout, toWireLayout } from './frame.js';
import type { LinkMtus } from './links.js';
import type { PacketDirector } from './messages.js';
import type { Neighbours } from './neighbours.js';
import type { NextHopCache } from './routes.js';

/** What the host side decided the layer-2 plane takes: on which interfaces, which frames. */
export interface LinkPlan {
  interfaces: string[];
  spec: FilterSpec;
}

export interface LinkPathOptions {
  driver: LinkDriver;
  neighbours: Neighbours;
  /** The egress interfaces' MTUs, which a GSO super-packet's segments must fit. */
  links: LinkMtus;
  nextHops: NextHopCache;
  /** The TUN device: how a frame reaches the host's own stack. */
  host: PacketDevice;
  /** The loop's counters, which this path adds to. */
  stats: DeviceCounters;
  /** Frames per port before the others get their turn. */
  batch: number;
  /** A packet-path exception (already counted). */
  onException(error: unknown): void;
}

export class LinkPath {
  /** Receiving ports by name (the plan's), and every open port by ifindex (those we only send on too). */
  private readonly receiving = new Map<string, LinkPort>();
  private readonly byIndex = new Map<number, LinkPort>();
  private readonly frame = new Uint8Array(LINK_HEADROOM + VNET_HDR_LEN + 65536 + ETH_HLEN);
  private readonly extra = new Uint8Array(this.frame.length);
  private readonly eth = new Uint8Array(ETH_HLEN);
  /** Queue drops of ports closed so far. */
  private closedDrops = 0;

  constructor(private readonly options: LinkPathOptions) {}

  /** Opens and closes ports to match the plan and gives each the plan's filter; throws (changing nothing) on a bad plan. */
  setPlan(plan: LinkPlan): void {
    const program = encodeProgram(filterProgram(plan.spec));
    const opened: LinkPort[] = [];
    try {
      for (const name of plan.interfaces) {
        if (this.receiving.has(name)) continue;
        const port = this.options.driver.open(name, { receive: true });
        opened.push(port);
      }
    } catch (error) {
      for (const port of opened) port.close();
      throw error;
    }
    for (const port of opened) {
      this.byIndex.get(port.ifindex)?.close();
      this.receiving.set(port.name, port);
      this.byIndex.set(port.ifindex, port);
    }
    for (const [name, port] of [...this.receiving]) {
      if (plan.interfaces.includes(name)) continue;
      this.receiving.delete(name);
      this.byIndex.delete(port.ifindex);
      this.closePort(port);
    }
    for (const port of this.receiving.values()) port.setFilter(program);
    // Resolving the real servers now spares their first packets a "no-neighbour" drop.
    for (const { addr } of plan.spec.realServers) {
      const hop = this.options.nextHops.get(addr);
      if (hop?.kind === 'link') this.options.neighbours.mac(hop.ifindex, hop.via);
    }
  }

  /** Descriptors to poll: the receiving ports and the neighbour table's and interfaces' changes. */
  fds(): number[] {
    const { neighbours, links } = this.options;
    return [...[...this.receiving.values()].map((p) => p.fd), neighbours.fd, links.fd];
  }

  queueDrops(): number {
    let drops = this.closedDrops;
    for (const port of this.byIndex.values()) drops += port.queueDrops();
    return drops;
  }

  /** One batch from every port; how many frames were handled. */
  drain(director: PacketDirector): number {
    this.options.neighbours.update();
    this.options.links.update();
    let handled = 0;
    for (const port of this.receiving.values()) handled += this.drainPort(port, director);
    return handled;
  }

  close(): void {
    for (const port of this.byIndex.values()) this.closePort(port);
    this.byIndex.clear();
    this.receiving.clear();
    this.options.neighbours.close();
    this.options.links.close();
  }

  private closePort(port: LinkPort): void {
    this.closedDrops += port.queueDrops();
    port.close();
  }

  private drainPort(port: LinkPort, director: PacketDirector): number {
    const { frame, eth, options } = this;
    const { stats } = options;
    let handled = 0;
    for (; handled < options.batch; handled++) {
      const n = port.receive(frame);
      if (n === 0) break;
      const length = n < 0 ? -1 : toDirectorLayout(frame, n, eth);
      if (length < 0) {
        stats.drops.badFrame++;
        continue;
      }
      stats.rxPackets++;
      stats.rxBytes += length;
      let out: number;
      try {
        out = director.process(frame, LINK_HEADROOM, length, 0, true);
      } catch (error) {
        stats.drops.exception++;
        options.onException(error);
        continue;
      }
      if (out === 0) stats.drops.verdict++;
      else if (out === PASS_TO_HOST) this.toHost(frame, length);
      else this.deliver(frame, out, director.nextHop);
      if (director.pending.length > 0) {
        for (const held of director.pending.splice(0)) {
          this.extra.set(held, LINK_HEADROOM);
          this.deliver(this.extra, held.length, director.nextHop);
        }
      }
    }
    return handled;
  }

  private toHost(buf: Uint8Array, length: number): void {
    if (this.options.host.write(buf.subarray(LINK_HEADROOM), length)) this.sent(length);
    else this.options.stats.drops.writeFailed++;
  }

  private sent(length: number): void {
    this.options.stats.txPackets++;
    this.options.stats.txBytes += length;
  }

  /**
   * buf[LINK_HEADROOM, +length) is `vnet | IP`: out to the next hop of `to` (the director's
   * nextHop: a directly routed real server, while the packet says VIP), else of its destination.
   */
  private deliver(buf: Uint8Array, length: number, to: Addr | null): void {
    const { stats } = this.options;
    const hop = this.options.nextHops.get(to ?? destination(buf, LINK_HEADROOM + VNET_HDR_LEN));
    if (hop === null) {
      stats.drops.noRoute++;
      return;
    }
    if (hop.kind === 'local') return this.toHost(buf, length);
    const port = this.port(hop.ifindex);
    if (!port) {
      stats.drops.noRoute++;
      return;
    }
    // The kernel refuses a plain frame larger than the link (EMSGSIZE, below) but sends a GSO
    // super-packet whatever its segments' size: one sized for a larger link (a real server's
    // reply, the client's side being smaller) is the kernel's to forward too, which answers
    // "packet too big" (IPv6, or IPv4 with DF) to its source, the VIP: lvsd takes that to the
    // real server as path MTU.
    const mtu = this.options.links.mtu(hop.ifindex);
    if (mtu > 0 && largestWirePacket(buf, LINK_HEADROOM, length) > mtu) return this.tooBig(buf, length, to);
    const mac = this.options.neighbours.mac(hop.ifindex, hop.via);
    if (!mac) {
      stats.drops.noNeighbour++;
      return;
    }
    const wire = toWireLayout(buf, length, mac, port.mac);
    const refused = port.transmit(buf, wire);
    if (refused === 0) this.sent(length);
    // Larger than the link takes (a datagram the bridge reassembled, say).
    else if (refused === EMSGSIZE) this.tooBig(buf, toDirectorLayout(buf, wire, this.eth), to);
    else stats.drops.writeFailed++;
  }

  /**
   * A frame the egress link cannot take: the kernel forwards it from the TUN device, fragmenting
   * it or answering "packet too big" as it would. Not a directly routed one, which says VIP (the
   * kernel would keep it or send it back): the director fits those to the route's MTU, and one
   * that still does not fit (a route not looked up again yet, IPv4 without DF) is refused.
   */
  private tooBig(buf: Uint8Array, length: number, to: Addr | null): void {
    if (to === null) this.toHost(buf, length);
    else this.options.stats.drops.writeFailed++;
  }

  /** The port on an interface, opened (to send only) the first time lvsd sends there; null if it cannot be. */
  private port(ifindex: number): LinkPort | null {
    const known = this.byIndex.get(ifindex);
    if (known) return known;
    const name = this.options.driver.nameOf(ifindex);
    if (name === null) return null;
    try {
      const port = this.options.driver.open(name, { receive: false });
      this.byIndex.set(ifindex, port);
      return port;
    } catch {
      return null;
    }
  }
}

/** The IP destination of the packet at buf[ip]. */
function destination(buf: Uint8Array, ip: number): Addr {
  const word = (at: number): number =>
    ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
  if (buf[ip]! >> 4 === 6)
    return { af: 6, a: word(ip + 24), b: word(ip + 28), c: word(ip + 32), d: word(ip + 36) };
  return { af: 4, a: word(ip + 16), b: 0, c: 0, d: 0 };
}
