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
import { EMSGSIZE, TxBatch, type LinkDriver, type LinkPort, type PortFilter } from './af-packet.js';
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
  /** Frames queued to send before they go (one sendmmsg per port) and their ring slots are given back. */
  txBatch?: number;
  /** A packet-path exception (already counted). */
  onException(error: unknown): void;
}

/** Frames sent per flush (one sendmmsg); their ring slots stay taken until then. */
const DEFAULT_TX_BATCH = 32;
/**
 * How often the neighbour table's and the interfaces' changes are read (a recv() each) while frames
 * keep coming: not every turn, where they cost as much as the frames. A new MAC or MTU waits at
 * most this long.
 */
export const LINK_UPDATE_MS = 10;

export class LinkPath {
  /** Receiving ports by name (the plan's), and every open port by ifindex (those we only send on too). */
  private readonly receiving = new Map<string, LinkPort>();
  private readonly byIndex = new Map<number, LinkPort>();
  private readonly eth = new Uint8Array(ETH_HLEN);
  /** The received frame's source MAC: the previous hop, where an answer to its sender goes. */
  private readonly ethSource = this.eth.subarray(6, 12);
  /** What this drain has to send, flushed every txBatch frames and at the end of each port's turn. */
  private readonly tx = new TxBatch();
  private readonly txBatch: number;
  /** When the neighbour table's and the interfaces' changes were last taken in. */
  private lastNetlinkUpdate = -Infinity;
  /** Queue drops of ports closed so far. */
  private closedDrops = 0;
  /** The rings' drops at the last look: more since means the kernel had no room for frames. */
  private queueDropsSeen = 0;

  constructor(private readonly options: LinkPathOptions) {
    this.txBatch = options.txBatch ?? DEFAULT_TX_BATCH;
  }

  /** Opens and closes ports to match the plan and gives each the plan's filter; throws (changing nothing) on a bad plan. */
  setPlan(plan: LinkPlan): void {
    const filter: PortFilter = {
      handshakes: encodeProgram(filterProgram(plan.spec, 'handshakes')),
      rest: encodeProgram(filterProgram(plan.spec, 'rest')),
    };
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
    for (const port of this.receiving.values()) port.setFilter(filter);
    // Resolving the real servers now spares their first packets a "no-neighbour" drop.
    for (const { addr } of plan.spec.realServers) {
      const hop = this.options.nextHops.get(addr);
      if (hop?.kind === 'link') this.options.neighbours.mac(hop.ifindex, hop.via);
    }
  }

  /** Descriptors to poll: the receiving ports and the neighbour table's and interfaces' changes. */
  fds(): number[] {
    const { neighbours, links } = this.options;
    return [...[...this.receiving.values()].flatMap((p) => p.fds), neighbours.fd, links.fd];
  }

  queueDrops(): number {
    let drops = this.closedDrops;
    for (const port of this.byIndex.values()) drops += port.queueDrops();
    return drops;
  }

  /** One batch from every port (`now`: the loop's clock at the start of its turn); how many frames were handled. */
  drain(director: PacketDirector, now: number): number {
    if (now - this.lastNetlinkUpdate >= LINK_UPDATE_MS) {
      this.lastNetlinkUpdate = now;
      this.options.neighbours.update();
      this.options.links.update();
      const drops = this.queueDrops();
      if (drops > this.queueDropsSeen) director.receiveOverflowed();
      this.queueDropsSeen = drops;
    }
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
    const { eth, options } = this;
    const { stats } = options;
    let handled = 0;
    for (; handled < options.batch; handled++) {
      const n = port.receive();
      if (n === 0) break;
      const buf = port.frame;
      const at = port.frameAt;
      const length = n < 0 ? -1 : toDirectorLayout(buf, at, n, eth);
      if (length < 0) {
        stats.drops.badFrame++;
        continue;
      }
      stats.rxPackets++;
      stats.rxBytes += length;
      let out: number;
      try {
        out = director.process(buf, at + LINK_HEADROOM, length, 0, true);
      } catch (error) {
        stats.drops.exception++;
        options.onException(error);
        continue;
      }
      if (out === 0) stats.drops.verdict++;
      else if (out === PASS_TO_HOST) this.toHost(buf, at, length);
      else if (director.replyToSender)
        this.tx.push(port, buf, at, toWireLayout(buf, at, out, this.ethSource, port.mac), false);
      else this.deliver(buf, at, out, director.nextHop);
      if (director.pending.length > 0) {
        for (const held of director.pending.splice(0)) {
          // Rare (split segments, fragments): each gets a buffer of its own, as it waits in the batch.
          const extra = new Uint8Array(LINK_HEADROOM + held.length);
          extra.set(held, LINK_HEADROOM);
          this.deliver(extra, 0, held.length, director.nextHop);
        }
      }
      if (this.tx.count >= this.txBatch) this.flush();
    }
    this.flush();
    return handled;
  }

  /** Sends what is queued, one transmit per run of frames to the same port, then gives the ring slots back. */
  private flush(): void {
    const { tx, eth } = this;
    for (let from = 0; from < tx.count;) {
      const port = tx.ports[from]!;
      let to = from + 1;
      while (to < tx.count && tx.ports[to] === port) to++;
      port.transmit(tx, from, to);
      for (let i = from; i < to; i++) {
        const refused = tx.errors[i]!;
        const wire = tx.lengths[i]!;
        if (refused === 0) this.sent(wire - ETH_HLEN);
        // Larger than the link takes (a datagram the bridge reassembled, say).
        else if (refused === EMSGSIZE) {
          const buf = tx.bufs[i]!;
          const at = tx.ats[i]!;
          this.tooBig(buf, at, toDirectorLayout(buf, at, wire, eth), tx.routed[i]!);
        } else this.options.stats.drops.writeFailed++;
      }
      from = to;
    }
    tx.count = 0;
    for (const port of this.receiving.values()) port.release();
  }

  /** buf[at + LINK_HEADROOM, +length) is `vnet | IP`: to the host's stack through the TUN device. */
  private toHost(buf: Uint8Array, at: number, length: number): void {
    if (this.options.host.write(buf.subarray(at + LINK_HEADROOM), length)) this.sent(length);
    else this.options.stats.drops.writeFailed++;
  }

  private sent(length: number): void {
    this.options.stats.txPackets++;
    this.options.stats.txBytes += length;
  }

  /**
   * buf[at + LINK_HEADROOM, +length) is `vnet | IP`: queued for the next hop of `to` (the
   * director's nextHop: a directly routed real server, while the packet says VIP), else of its
   * destination.
   */
  private deliver(buf: Uint8Array, at: number, length: number, to: Addr | null): void {
    const { stats } = this.options;
    const hop = this.options.nextHops.get(to ?? destination(buf, at + LINK_HEADROOM + VNET_HDR_LEN));
    if (hop === null) {
      stats.drops.noRoute++;
      return;
    }
    if (hop.kind === 'local') return this.toHost(buf, at, length);
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
    if (mtu > 0 && largestWirePacket(buf, at + LINK_HEADROOM, length) > mtu)
      return this.tooBig(buf, at, length, to !== null);
    const mac = this.options.neighbours.mac(hop.ifindex, hop.via);
    if (!mac) {
      stats.drops.noNeighbour++;
      return;
    }
    this.tx.push(port, buf, at, toWireLayout(buf, at, length, mac, port.mac), to !== null);
  }

  /**
   * A frame the egress link cannot take: the kernel forwards it from the TUN device, fragmenting
   * it or answering "packet too big" as it would. Not a directly routed one, which says VIP (the
   * kernel would keep it or send it back): the director fits those to the route's MTU, and one
   * that still does not fit (a route not looked up again yet, IPv4 without DF) is refused.
   */
  private tooBig(buf: Uint8Array, at: number, length: number, routed: boolean): void {
    if (!routed) this.toHost(buf, at, length);
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
