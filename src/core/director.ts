// The director: the service table, the connection table and the rate estimator, driven by
// control operations and by packets. Pure: the clock and randomness are injected.

import type { Clock } from './clock.js';
import { Defense, defenseSettings, type DefenseSettings } from './conn/defense.js';
import { DEFAULT_EXPIRY, type ExpirySettings } from './conn/expiry.js';
import { ConnTable, MAX_CAPACITY } from './conn/table.js';
import {
  S_UDP,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  type ConnStateName,
  type Direction,
} from './conn/tcp-state.js';
import { Timeouts } from './conn/timeouts.js';
import { Estimator } from './estimator.js';
import { ErrorCodes, LvsError } from './errors.js';
import { forwardingMethodById, forwardingMethodId } from './forward/registry.js';
import {
  XMIT_NO_ROUTE,
  XMIT_NOT_REWRITABLE,
  XMIT_TOO_BIG,
  XMIT_TTL_EXPIRED,
  type ForwardingCapability,
  type ForwardingMethod,
  type RealServerRoute,
  type XmitTarget,
} from './forward/types.js';
import { addrEquals, addrMask, IPPROTO_TCP, IPPROTO_UDP, type Addr } from './inet.js';
import {
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  zeroRates,
  type Counter,
  type Dest,
  type Service,
  type Stats,
} from './model.js';
import { MAX_CONN_PAGE, PASS_TO_HOST } from './ops.js';
import type {
  ConnPage,
  ConnRecord,
  ControlOp,
  DataPathCounters,
  ImportResult,
  DestSnapshot,
  ServiceSnapshot,
  Snapshot,
  StatsSnapshot,
} from './ops.js';
import { fragmentIpv6, needsIpv6Fragmentation } from './packet/fragment6.js';
import { FragmentTracker } from './packet/fragments.js';
import {
  buildPacketTooBig,
  buildPortUnreachable,
  isIcmpError,
  mayReplyWithIcmpError,
  parseIcmpError,
  rewriteIcmpErrorToClient,
  rewriteIcmpErrorToRealServer,
} from './packet/icmp.js';
import { hasPorts, parsePacket, type DropReason, type ParsedPacket } from './packet/parse.js';
import { readU32 } from './packet/checksum.js';
import { cookieMssIndex, COOKIE_MSS, SynCookies } from './packet/syn-cookie.js';
import {
  readSynOptions,
  segmentWindow,
  shiftSequence,
  TCP_ACK_SEQ,
  TCP_SEQ,
  writeSegment,
  type SegmentSpec,
} from './packet/tcp-segment.js';
import { PROXY_SYN_RETRY_MS, ProxyHandshakes, SynShedding } from './syn-proxy.js';
import { isSuperPacket, readVnetHdr, VNET_HDR_LEN, vnetFlags, writePlainVnetHdr } from './packet/vnet.js';
import { ServiceTable } from './services.js';
import { CONN_F_OUT_SEQ, CONN_F_TEMPLATE, type SyncConn } from './sync/conn.js';
import type { SyncTuning } from './sync/master.js';
import { MAX_SCAN_SLOTS, type FullSyncPageRequest } from './sync/full-sync.js';
import { SyncSource, syncWalkPage, type SyncPage } from './sync/source.js';
import './sched/index.js';

/** Why the data path dropped a packet: the parser's reasons and the director's own. */
export type DirectorDrop =
  | DropReason
  | 'no-service'
  | 'no-conn'
  | 'no-dest'
  | 'table-full'
  | 'no-reply-path'
  | 'not-rewritable'
  | 'no-route'
  | 'too-big'
  | 'ttl-expired'
  | 'icmp-unmatched'
  | 'fragment-unmatched'
  | 'syn-proxy-wait'
  | 'syn-shed';

/** Where the later fragments of a datagram go: the rewrite its first fragment got. */
interface FragmentDecision {
  direction: Direction;
  target: XmitTarget;
  service: Service;
  dest: Dest;
  method: ForwardingMethod;
}

/** 1M entries: about 100 MB of typed arrays (docs/limits.md). */
export const DEFAULT_CONN_CAPACITY = 1 << 20;

const NO_DEST = -1;
const TABLE_FULL = -2;

export interface DirectorOptions {
  clock: Clock;
  /** Uniform in [0, 1); defaults to Math.random. */
  random?: () => number;
  /** Most connections (and persistence templates) tracked at once; default DEFAULT_CONN_CAPACITY. */
  connCapacity?: number;
  /** How the table defends itself under pressure; unset fields take DEFAULT_DEFENSE's. */
  defense?: Partial<DefenseSettings>;
  /** log2 of the hash buckets reported as "size=" (IPVS's conn_tab_bits, default 12). */
  connHashBits?: number;
  /** What happens to the connections and templates of failed and quiesced real servers; unset fields take DEFAULT_EXPIRY's. */
  expiry?: Partial<ExpirySettings>;
  /** The forwarding methods the data plane delivers; unset or null: every method the core has. */
  forwarding?: ForwardingCapability | null;
}

export class Director {
  readonly clock: Clock;
  readonly services: ServiceTable;
  readonly conns: ConnTable;
  readonly timeouts = new Timeouts();
  private readonly defense: Defense;
  private readonly estimator = new Estimator();
  private readonly connHashBits: number;
  private readonly expiry: ExpirySettings;
  private readonly fragments: FragmentTracker<FragmentDecision>;
  /** Packets ready besides the one `process` returns (held fragments released): the caller sends them. */
  readonly pending: Uint8Array[] = [];
  /**
   * After `process` returned a frame for a real server, the address the link must deliver it (and
   * what it added to `pending`) to when that is not the frame's IP destination: the real server of
   * a directly routed connection, while the packet still says VIP. null otherwise.
   */
  nextHop: Addr | null = null;
  /**
   * After `process` returned a frame: it answers the packet's sender itself (the SYN proxy's
   * SYN-ACK), so the link sends it back to the previous hop the packet came from, with no route
   * lookup for a source that may be one of a flood's millions.
   */
  replyToSender = false;
  private readonly cookies: SynCookies;
  private readonly handshakes: ProxyHandshakes;
  private readonly shedding: SynShedding;
  /** The master sync role's decisions, while a master sync daemon runs. */
  private syncSource: SyncSource | null = null;
  /** The identification of the next IPv6 datagram the director fragments: random start (RFC 7739). */
  private nextFragmentId: number;
  readonly counters: DataPathCounters = {
    forwardedIn: 0,
    forwardedOut: 0,
    icmpSent: 0,
    drops: {},
    passed: {},
  };

  constructor(options: DirectorOptions) {
    this.clock = options.clock;
    this.connHashBits = options.connHashBits ?? 12;
    this.expiry = { ...DEFAULT_EXPIRY, ...options.expiry };
    this.fragments = new FragmentTracker(this.clock);
    const random = options.random ?? Math.random;
    this.nextFragmentId = Math.floor(random() * 0x100000000);
    // Validated before the table's memory is taken.
    const defense = defenseSettings(options.defense);
    this.conns = new ConnTable({
      capacity: options.connCapacity ?? DEFAULT_CONN_CAPACITY,
      clock: this.clock,
      timeouts: this.timeouts,
      // Unpredictable buckets: clients cannot aim their flows at one chain.
      hashSeed: Math.floor(random() * 0x100000000),
      random,
    });
    this.defense = new Defense(this.conns, defense);
    this.cookies = new SynCookies(Math.floor(random() * 0x100000000), Math.floor(random() * 0x100000000));
    this.handshakes = new ProxyHandshakes((id) => this.conns.isLive(id) && this.conns.isProxyWaiting(id));
    this.shedding = new SynShedding(random, Math.floor(random() * 0x100000000));
    this.services = new ServiceTable(
      { clock: this.clock, random },
      {
        servicesRemoved: (services) => {
          this.conns.dropServices(new Set(services.map((s) => s.id)));
          for (const service of services) {
            this.estimator.remove(service.stats);
            for (const dest of service.dests) this.estimator.remove(dest.stats);
          }
        },
        destRemoved: (_service, dest) => {
          this.conns.dropDest(dest);
          this.estimator.remove(dest.stats);
        },
      },
      options.forwarding ?? null,
    );
  }

  execute(op: ControlOp): void {
    switch (op.op) {
      case 'add-service': {
        const service = this.services.add(op.key, op.settings);
        this.estimator.add(service.stats, service);
        return;
      }
      case 'edit-service':
        return this.services.edit(op.key, op.settings);
      case 'delete-service':
        return this.services.delete(op.key);
      case 'clear':
        return this.services.clear();
      case 'add-dest': {
        const dest = this.services.addDest(op.key, op.addr, op.port, op.settings, op.runtime);
        this.estimator.add(dest.stats, dest);
        return;
      }
      case 'edit-dest':
        return this.services.editDest(op.key, op.addr, op.port, op.settings);
      case 'delete-dest':
        return this.services.deleteDest(op.key, op.addr, op.port);
      case 'set-dest-runtime': {
        const dest = this.services.setDestRuntime(op.key, op.addr, op.port, op.change);
        // expire_nodest_conn for a server taken out: its connections end now instead of draining.
        if ((op.endConnections || this.expiry.expireNodestConn) && !dest.scheduled) this.conns.dropDest(dest);
        return;
      }
      case 'zero':
        return this.zero(op);
      case 'set-timeouts': {
        const { tcp, tcpfin, udp } = op.timeouts;
        return this.timeouts.setIpvs(tcp, tcpfin, udp);
      }
    }
  }

  private zero(op: Extract<ControlOp, { op: 'zero' }>): void {
    const targets = op.key ? [this.services.find(op.key)] : this.services.services;
    if (targets[0] === undefined && op.key) throw new LvsError(ErrorCodes.NO_SERVICE, 'No such service');
    for (const service of targets as Service[]) {
      this.zeroStats(service.stats, service);
      for (const dest of service.dests) this.zeroStats(dest.stats, dest);
    }
  }

  private zeroStats(stats: Stats, owner: Service | Dest): void {
    stats.reset();
    this.estimator.reset(stats);
    owner.rates = zeroRates();
  }

  /** Housekeeping: expire connections due by now, defend a table under pressure, sample the rate estimator. */
  tick(): void {
    this.conns.advance();
    this.defense.tick(this.clock.now());
    this.fragments.expire();
    this.estimator.tick(this.clock.now());
  }

  // ---- the packet path: never throws, every drop counted ----

  /**
   * Handles one packet read from the device: buf[offset, offset + length) is a virtio_net_hdr and an
   * IP packet. Rewrites it in place (or replaces it by an ICMP error of the director's own) and
   * returns the verdict: the bytes from offset to transmit, 0 to drop it (counted by reason), or
   * PASS_TO_HOST when it is not the director's (counted too): the device gives it back to the kernel
   * unchanged, as IPVS's NF_ACCEPT. Check `pending` afterwards.
   *
   * `fromWire`: the frame was read off an interface (--dataplane packet) rather than steered by the
   * kernel. A real server's packet of no connection is then given back too: it may be the reply of
   * a flow that reached the real server directly, which only the kernel saw (conntrack), and the
   * kernel forwards it only as that (host.ts). A steered one was sorted by the kernel already, so
   * it is dropped here.
   */
  process(buf: Uint8Array, offset: number, length: number, fwmark = 0, fromWire = false): number {
    this.nextHop = null;
    this.replyToSender = false;
    if (length <= VNET_HDR_LEN) return this.drop('truncated');
    const p = parsePacket(buf, offset + VNET_HDR_LEN, length - VNET_HDR_LEN);
    if (!p.ok) return this.drop(p.reason);
    const vflags = vnetFlags(buf, offset);
    if (p.l4Offset < 0) return this.laterFragment(buf, offset, length, p, vflags);
    if (isIcmpError(p)) return this.icmpError(buf, offset, length, p, vflags, fromWire);
    if (!hasPorts(p.protocol)) return this.pass('not-a-service');

    let id = this.conns.findIn(p.af, p.protocol, p.saddr, p.sport, p.daddr, p.dport);
    if (id >= 0 && (this.isOnePacket(id, p) || this.reopens(id, p))) {
      // One-packet scheduling, or a client reusing the port of a finished connection: a new
      // connection, scheduled afresh (IPVS's conn_reuse_mode).
      this.conns.expire(id);
      id = -1;
    }
    if (id >= 0) {
      if (this.conns.isProxyWaiting(id)) return this.clientWhileProxying(buf, offset, length, p, id);
      return this.forward(buf, offset, length, p, vflags, id, 'in');
    }
    id = this.conns.findOut(p.af, p.protocol, p.saddr, p.sport, p.daddr, p.dport);
    if (id >= 0) {
      if (this.conns.isProxyWaiting(id)) return this.realServerAnswersProxy(buf, offset, p, id);
      return this.forward(buf, offset, length, p, vflags, id, 'out');
    }

    // As ip_vs_service_find: a marked packet matches the mark's service first.
    const service =
      (fwmark > 0 ? this.services.lookupFwmark(p.af, fwmark) : undefined) ??
      this.services.lookup(p.protocol, p.daddr, p.dport);
    if (!service) {
      // A real server's packet that belongs to no connection (one that expired, or from before
      // a restart) must not leave with its own address: the client would see the real server.
      if (!this.services.isRealServer(p.saddr, p.sport)) return this.pass('not-a-service');
      return fromWire ? this.pass('real-server-no-conn') : this.drop('no-conn');
    }
    if (p.protocol === IPPROTO_TCP) {
      // As IPVS without sloppy_tcp: only a SYN opens a TCP connection, or an ACK bringing back
      // the SYN proxy's cookie.
      const handshake = p.tcpFlags & (TCP_SYN | TCP_RST | TCP_ACK | TCP_FIN);
      if (handshake === TCP_ACK && this.proxies(service, p))
        return this.openProxied(buf, offset, length, p, service);
      if ((handshake & ~TCP_FIN) !== TCP_SYN) return this.drop('no-conn');
      if (this.defense.synProxyOn && this.proxies(service, p)) return this.answerSyn(buf, offset, p);
    }
    id = this.schedule(service, p);
    if (id === NO_DEST) return this.portUnreachable(buf, offset, p);
    if (id === TABLE_FULL) return this.drop('table-full');
    if (p.protocol === IPPROTO_TCP) this.defense.checkSynProxy();
    return this.forward(buf, offset, length, p, vflags, id, 'in');
  }

  /** As the kernel, one-packet scheduling applies to UDP only (a firewall-mark service may carry TCP too). */
  private isOnePacket(id: number, p: ParsedPacket): boolean {
    if (p.protocol !== IPPROTO_UDP) return false;
    const service = this.services.byId(this.conns.serviceId(id));
    return service !== undefined && (service.settings.flags & SVC_F_ONEPACKET) !== 0;
  }

  private reopens(id: number, p: ParsedPacket): boolean {
    return (
      p.protocol === IPPROTO_TCP &&
      (p.tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN &&
      this.conns.state(id) === 'TIME_WAIT'
    );
  }

  private holds(dest: Dest): boolean {
    return dest.scheduled && !(this.expiry.expireQuiescentTemplate && dest.weight === 0);
  }

  /** A new connection: persistence template first, else the scheduler. */
  private schedule(service: Service, p: ParsedPacket): number {
    const { settings, key } = service;
    let template = -1;
    let dest: Dest | null = null;
    if (settings.flags & SVC_F_PERSISTENT) {
      const caddr = addrMask(p.saddr, settings.netmaskPrefix);
      // Port-0 and firewall-mark services key their templates on port 0: one template for all ports.
      const vport = key.port === 0 || key.fwmark > 0 ? 0 : p.dport;
      template = this.conns.findTemplate(p.af, p.protocol, caddr, p.daddr, vport, key.fwmark);
      // ip_vs_check_template: a template whose real server left the scheduling (failed, in
      // maintenance), or with expire_quiescent_template is at weight 0, no longer holds its client there.
      if (template >= 0 && !this.holds(this.conns.dest(template))) {
        this.conns.expire(template);
        template = -1;
      }
      if (template >= 0) {
        dest = this.conns.dest(template);
      } else {
        dest = service.scheduler.schedule(service.schedState, service.view, p);
        if (!dest) return NO_DEST;
        template = this.conns.createTemplate({
          af: p.af,
          protocol: p.protocol,
          caddr,
          vaddr: p.daddr,
          vport,
          fwmark: key.fwmark,
          daddr: dest.addr,
          dport: dest.port,
          dest,
          serviceId: service.id,
          timeoutMs: settings.timeout * 1000,
        });
        if (template < 0) return TABLE_FULL;
      }
    } else {
      dest = service.scheduler.schedule(service.schedState, service.view, p);
      if (!dest) return NO_DEST;
    }
    const id = this.conns.create({
      af: p.af,
      protocol: p.protocol,
      caddr: p.saddr,
      cport: p.sport,
      vaddr: p.daddr,
      vport: p.dport,
      daddr: dest.addr,
      // A real server without a port (firewall-mark and port-0 services) keeps the client's.
      dport: dest.port || p.dport,
      dest,
      // ip_vs_bind_xmit: the method is the connection's from now on, whatever later edits say.
      method: forwardingMethodId(dest.method),
      serviceId: service.id,
      template,
    });
    if (id < 0) return TABLE_FULL;
    service.stats.countConn();
    dest.stats.countConn();
    return id;
  }

  private forward(
    buf: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    vflags: number,
    id: number,
    direction: Direction,
  ): number {
    const dest = this.conns.dest(id);
    const service = this.services.byId(this.conns.serviceId(id));
    if (!service) return this.drop('no-service');
    const method = forwardingMethodById(this.conns.method(id));
    const inbound = direction === 'in';
    const target: XmitTarget = inbound
      ? this.realServerTarget(id)
      : { addr: this.conns.vaddr(id), port: this.conns.vport(id), route: null, tunnel: null };
    if (!inbound && !method.toClient) return this.drop('no-reply-path');
    // Measured before the method rewrites the frame (a tunnel replaces its virtio_net_hdr).
    const size = wireSize(buf, offset, p);
    if (this.conns.isProxied(id)) {
      const shift = this.conns.proxyOffset(id);
      if (inbound) shiftSequence(buf, p, TCP_ACK_SEQ, -shift, vflags);
      else shiftSequence(buf, p, TCP_SEQ, shift, vflags);
    }
    const out = this.transmit(buf, offset, length, p, vflags, method, inbound, target);
    if (out <= 0) return this.notSent(buf, offset, p, out, method, target);
    this.count(service, dest, inbound, size);
    this.conns.onPacket(id, inbound ? method.clientDirection : 'out', p.tcpFlags);
    if (inbound && this.syncSource !== null) this.syncSource.onClientPacket(id, this.isOnePacket(id, p));
    if (method.headroom === 0 && needsIpv6Fragmentation(buf, offset, p))
      return this.sendFragmented(buf, offset, out, p);
    if (p.isFragment) {
      for (const held of this.fragments.decide(p, { direction, target, service, dest, method })) {
        // Room for the method's headers: the tracker keeps held fragments at their own size.
        const frame = new Uint8Array(held.length + method.headroom);
        frame.set(held);
        const heldLength = this.laterFragment(frame, 0, held.length, null, vnetFlags(frame, 0));
        if (heldLength > 0) this.pending.push(frame.subarray(0, heldLength));
      }
    }
    return out;
  }

  // ---- the SYN proxy (syn-proxy.ts) ----

  /** IPv4 services whose real servers are all masqueraded: the director sees both directions, so it can join two handshakes. */
  private proxies(service: Service, p: ParsedPacket): boolean {
    return p.af === 4 && this.defense.synProxyEnabled && service.masqueradedOnly;
  }

  /** The data plane's receive queue overflowed: for a while the SYN proxy sheds first SYNs (SynShedding). */
  receiveOverflowed(): void {
    this.shedding.overflowed(this.clock.now());
  }

  /** A SYN answered with a SYN-ACK whose sequence number is the cookie; nothing is kept. */
  private answerSyn(buf: Uint8Array, offset: number, p: ParsedPacket): number {
    if (!mayReplyWithIcmpError(p)) return this.drop('no-conn');
    const isn = readU32(buf, p.l4Offset + TCP_SEQ);
    const now = this.clock.now();
    if (!this.shedding.answers(p.saddr.a, ((p.sport << 16) | p.dport) >>> 0, p.daddr.a, isn, now)) {
      this.defense.synsShed++;
      return this.drop('syn-shed');
    }
    const { mss, sack } = readSynOptions(buf, p);
    const mssIndex = cookieMssIndex(mss);
    // prettier-ignore
    const cookie = this.cookies.make(
      p.saddr.a, 0, 0, 0, p.sport, p.daddr.a, 0, 0, 0, p.dport, isn, mssIndex, sack, now,
    );
    this.defense.cookiesSent++;
    return this.answerSender(
      buf,
      offset,
      p,
      cookie,
      (isn + 1) >>> 0,
      TCP_SYN | TCP_ACK,
      COOKIE_MSS[mssIndex]!,
      sack,
    );
  }

  /** A segment of the director's back to the packet's sender, from where it was sent, out to the hop it came from. */
  // prettier-ignore
  private answerSender(
    buf: Uint8Array, offset: number, p: ParsedPacket,
    seq: number, ack: number, flags: number, mss: number, sack: boolean,
  ): number {
    this.replyToSender = true;
    const window = flags & TCP_RST ? 0 : 0xffff;
    return this.segment(buf, offset, p, {
      saddr: p.daddr.a, daddr: p.saddr.a, sport: p.dport, dport: p.sport, seq, ack, flags, window, mss, sack,
    });
  }

  /**
   * An ACK of no connection: if it brings back a good cookie, the client has completed the
   * handshake with the director, which schedules it and opens its own with the real server.
   */
  private openProxied(
    buf: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    service: Service,
  ): number {
    const isn = (readU32(buf, p.l4Offset + TCP_SEQ) - 1) >>> 0;
    const cookie = (readU32(buf, p.l4Offset + TCP_ACK_SEQ) - 1) >>> 0;
    // prettier-ignore
    const contents = this.cookies.check(
      p.saddr.a, 0, 0, 0, p.sport, p.daddr.a, 0, 0, 0, p.dport, isn, cookie, this.clock.now(),
    );
    if (contents === null) {
      this.defense.cookiesRejected++;
      return this.drop('no-conn');
    }
    if (!this.handshakes.hasRoom()) return this.drop('table-full');
    const id = this.schedule(service, p);
    if (id === TABLE_FULL) return this.drop('table-full');
    if (id === NO_DEST) {
      // The client believes it is connected: a reset, at the sequence number it expects, ends it.
      this.drop('no-dest');
      return this.answerSender(buf, offset, p, (cookie + 1) >>> 0, 0, TCP_RST, 0, false);
    }
    this.defense.cookiesAccepted++;
    this.conns.beginProxied(id);
    this.count(service, this.conns.dest(id), true, wireSize(buf, offset, p));
    this.handshakes.begin(id, {
      isn,
      cookie,
      mss: contents.mss,
      sack: contents.sack,
      window: segmentWindow(buf, p),
      data: p.payloadLength > 0 ? buf.slice(offset, offset + length) : null,
      sentAt: 0,
    });
    return this.synToRealServer(buf, offset, p, id);
  }

  /** The director's SYN to connection `id`'s real server, from the client's address and with its initial sequence number. */
  private synToRealServer(buf: Uint8Array, offset: number, p: ParsedPacket, id: number): number {
    const handshake = this.handshakes.get(id)!;
    handshake.sentAt = this.clock.now();
    const target = this.realServerTarget(id);
    return this.segment(buf, offset, p, {
      saddr: this.conns.caddrWord(id, 0),
      daddr: target.addr.a,
      sport: this.conns.cport(id),
      dport: target.port,
      seq: handshake.isn,
      ack: 0,
      flags: TCP_SYN,
      window: handshake.window,
      mss: handshake.mss,
      sack: handshake.sack,
    });
  }

  /**
   * A client's packet while the real server has not answered yet: its first data is held, and a
   * SYN lost on the way is sent again; the client's own retransmissions pace the retries.
   */
  private clientWhileProxying(
    buf: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    id: number,
  ): number {
    const handshake = this.handshakes.get(id);
    if (handshake === undefined || p.tcpFlags & TCP_RST) {
      this.conns.expire(id);
      return this.drop('no-conn');
    }
    if (p.payloadLength > 0 && handshake.data === null) handshake.data = buf.slice(offset, offset + length);
    if (this.clock.now() - handshake.sentAt >= PROXY_SYN_RETRY_MS)
      return this.synToRealServer(buf, offset, p, id);
    return this.drop('syn-proxy-wait');
  }

  /**
   * The real server's answer to the director's SYN. A SYN-ACK fixes the offset between the two
   * sequence spaces and is acknowledged in the client's name; then the client's held data goes
   * on. A reset is passed to the client, at the sequence number it expects.
   */
  private realServerAnswersProxy(buf: Uint8Array, offset: number, p: ParsedPacket, id: number): number {
    const handshake = this.handshakes.get(id);
    const service = this.services.byId(this.conns.serviceId(id));
    if (handshake === undefined || !service) return this.drop('no-conn');
    const seq = readU32(buf, p.l4Offset + TCP_SEQ);
    const ack = readU32(buf, p.l4Offset + TCP_ACK_SEQ);
    // The real server's packet is to the client, p.daddr:p.dport.
    if (p.tcpFlags & TCP_RST) {
      const vaddr = this.conns.vaddrWord(id, 0);
      const vport = this.conns.vport(id);
      this.handshakes.end(id);
      this.conns.expire(id);
      return this.segment(buf, offset, p, {
        saddr: vaddr,
        daddr: p.daddr.a,
        sport: vport,
        dport: p.dport,
        seq: (handshake.cookie + 1) >>> 0,
        ack: 0,
        flags: TCP_RST,
        window: 0,
        mss: 0,
        sack: false,
      });
    }
    if ((p.tcpFlags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || ack !== (handshake.isn + 1) >>> 0) {
      return this.drop('no-conn');
    }
    const dest = this.conns.dest(id);
    this.count(service, dest, false, wireSize(buf, offset, p));
    this.conns.joinProxied(id, handshake.cookie - seq);
    this.conns.onPacket(id, 'out', p.tcpFlags);
    this.conns.onPacket(id, 'in', TCP_ACK);
    this.handshakes.end(id);
    const out = this.segment(buf, offset, p, {
      saddr: p.daddr.a,
      daddr: p.saddr.a,
      sport: p.dport,
      dport: p.sport,
      seq: ack,
      ack: (seq + 1) >>> 0,
      flags: TCP_ACK,
      window: handshake.window,
      mss: 0,
      sack: false,
    });
    const held = handshake.data;
    if (out > 0 && held !== null) {
      const q = parsePacket(held, VNET_HDR_LEN, held.length - VNET_HDR_LEN);
      const sent =
        q.ok && q.l4Offset >= 0 ? this.forward(held, 0, held.length, q, vnetFlags(held, 0), id, 'in') : 0;
      if (sent > 0) this.pending.push(held.subarray(0, sent));
    }
    return out;
  }

  /** A segment of the director's own written over the packet in buf: the frame's length, 0 if it did not fit. */
  private segment(buf: Uint8Array, offset: number, p: ParsedPacket, spec: SegmentSpec): number {
    const length = writeSegment(buf, p.l3Offset, spec);
    if (length === 0) return this.drop('not-rewritable');
    writePlainVnetHdr(buf, offset);
    return p.l3Offset - offset + length;
  }

  /** Where connection `id`'s client packets go: its real server, by the route and tunnel it has now. */
  private realServerTarget(id: number): XmitTarget {
    const dest = this.conns.dest(id);
    return { addr: dest.addr, port: this.conns.dport(id), route: dest.route, tunnel: dest.tunnel };
  }

  /**
   * A rewritten IPv6 datagram too long to be forwarded whole (packet/fragment6.ts), sent as
   * fragments: the first in place of the packet, the others in `pending`. One that cannot be split
   * goes as it is, and the kernel answers it as any router would.
   */
  private sendFragmented(buf: Uint8Array, offset: number, length: number, p: ParsedPacket): number {
    const frames = fragmentIpv6(buf, offset, p, this.nextFragmentId);
    if (frames === null) return length;
    this.nextFragmentId = (this.nextFragmentId + 1) >>> 0;
    const [first, ...rest] = frames as [Uint8Array, ...Uint8Array[]];
    buf.set(first, offset);
    this.pending.push(...rest);
    return first.length;
  }

  /** The rewrite or encapsulation, by the connection's method: the frame's length to send, or an XMIT_* failure. */
  private transmit(
    buf: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    vflags: number,
    method: ForwardingMethod,
    inbound: boolean,
    target: XmitTarget,
  ): number {
    if (!inbound)
      return method.toClient!(buf, p, target.addr, target.port, vflags) ? length : XMIT_NOT_REWRITABLE;
    const out = method.toRealServer(buf, offset, length, p, target, this.pending);
    if (out > 0 && method.delivery === 'real-server') this.nextHop = target.addr;
    return out;
  }

  /**
   * A packet the method could not send, counted by why: 0 (dropped), or the length of the ICMP
   * "packet too big" the director built in its place when that is why.
   */
  private notSent(
    buf: Uint8Array,
    offset: number,
    p: ParsedPacket,
    failure: number,
    method: ForwardingMethod,
    target: XmitTarget,
  ): number {
    switch (failure) {
      case XMIT_NOT_REWRITABLE:
        return this.drop('not-rewritable');
      case XMIT_NO_ROUTE:
        return this.drop('no-route');
      case XMIT_TOO_BIG:
        return this.packetTooBig(buf, offset, p, target.route!.mtu - method.headerLength(target));
      case XMIT_TTL_EXPIRED:
        return this.drop('ttl-expired');
      default:
        return this.drop('too-big');
    }
  }

  /** A fragment without the L4 header follows the decision taken for its first fragment. */
  private laterFragment(
    buf: Uint8Array,
    offset: number,
    length: number,
    parsed: ParsedPacket | null,
    vflags: number,
  ): number {
    let p = parsed;
    if (!p) {
      const reparsed = parsePacket(buf, offset + VNET_HDR_LEN, length - VNET_HDR_LEN);
      if (!reparsed.ok) return this.drop(reparsed.reason);
      p = reparsed;
    }
    const decision = this.fragments.decisionFor(p);
    if (!decision) {
      if (parsed && this.fragments.hold(p, buf.slice(offset, offset + length))) return 0;
      return this.drop('fragment-unmatched');
    }
    const inbound = decision.direction === 'in';
    const size = wireSize(buf, offset, p);
    const { method, target } = decision;
    const out = this.transmit(buf, offset, length, p, vflags, method, inbound, target);
    if (out <= 0) return this.notSent(buf, offset, p, out, method, target);
    this.count(decision.service, decision.dest, inbound, size);
    return out;
  }

  /** ICMP errors about a tracked connection are translated, outer and quoted headers both. */
  private icmpError(
    buf: Uint8Array,
    offset: number,
    length: number,
    p: ParsedPacket,
    vflags: number,
    fromWire: boolean,
  ): number {
    const inner = parseIcmpError(buf, p);
    if (!inner) return this.icmpNotOurs(p, fromWire);
    // About a client -> real server packet: on its way to the client.
    let id = this.conns.findOut(inner.af, inner.protocol, inner.daddr, inner.dport, inner.saddr, inner.sport);
    if (id >= 0) {
      rewriteIcmpErrorToClient(buf, p, inner, this.conns.vaddr(id), this.conns.vport(id), vflags);
      this.counters.forwardedOut++;
      return length;
    }
    // About a VIP -> client reply: on its way to the real server.
    id = this.conns.findIn(inner.af, inner.protocol, inner.daddr, inner.dport, inner.saddr, inner.sport);
    const method = id >= 0 ? forwardingMethodById(this.conns.method(id)) : null;
    if (method !== null && method.toClient === null) {
      // A real server that answers the client itself holds the VIP: the error goes to it as it
      // is, the way the connection's packets go (ip_vs_icmp_xmit's packet_xmit for DR and TUN).
      const target = this.realServerTarget(id);
      const out = this.transmit(buf, offset, length, p, vflags, method, true, target);
      if (out <= 0) return this.notSent(buf, offset, p, out, method, target);
      this.counters.forwardedIn++;
      return out;
    }
    if (id >= 0) {
      rewriteIcmpErrorToRealServer(buf, p, inner, this.conns.daddr(id), this.conns.dport(id), vflags);
      this.counters.forwardedIn++;
      return length;
    }
    return this.icmpNotOurs(p, fromWire);
  }

  /**
   * An error for the host's own sockets on a VIP (ssh, path MTU) is the host's. Any other is a real
   * server's: from the wire, the kernel's to judge (a direct flow's, see process()), else dropped.
   */
  private icmpNotOurs(p: ParsedPacket, fromWire: boolean): number {
    if (this.services.isVirtualAddress(p.daddr)) return this.pass('icmp-for-host');
    return fromWire ? this.pass('real-server-no-conn') : this.drop('icmp-unmatched');
  }

  /**
   * __mtu_check_toobig_v4: a client's packet that does not fit the path to the real server once
   * encapsulated, and may not be fragmented, is answered with "fragmentation needed" (ICMPv6
   * "packet too big") from the VIP, telling the client the MTU left for it.
   */
  private packetTooBig(buf: Uint8Array, offset: number, p: ParsedPacket, mtu: number): number {
    this.drop('too-big');
    if (!mayReplyWithIcmpError(p)) return 0;
    return this.replyWithIcmp(buf, offset, buildPacketTooBig(buf, offset + VNET_HDR_LEN, buf, p, mtu));
  }

  /** ip_vs_leave: no real server available, so the client hears "port unreachable" from the VIP. */
  private portUnreachable(buf: Uint8Array, offset: number, p: ParsedPacket): number {
    this.drop('no-dest');
    if (!mayReplyWithIcmpError(p)) return 0;
    return this.replyWithIcmp(buf, offset, buildPortUnreachable(buf, offset + VNET_HDR_LEN, buf, p));
  }

  /** The frame of an ICMP error the director built in place (icmpLength bytes after the header; 0: none). */
  private replyWithIcmp(buf: Uint8Array, offset: number, icmpLength: number): number {
    if (icmpLength === 0) return 0;
    writePlainVnetHdr(buf, offset);
    this.counters.icmpSent++;
    return VNET_HDR_LEN + icmpLength;
  }

  private count(service: Service, dest: Dest, inbound: boolean, { packets, bytes }: WireSize): void {
    if (inbound) {
      this.counters.forwardedIn++;
      service.stats.countIn(packets, bytes);
      dest.stats.countIn(packets, bytes);
    } else {
      this.counters.forwardedOut++;
      service.stats.countOut(packets, bytes);
      dest.stats.countOut(packets, bytes);
    }
  }

  private drop(reason: DirectorDrop): 0 {
    this.counters.drops[reason] = (this.counters.drops[reason] ?? 0) + 1;
    return 0;
  }

  private pass(reason: 'not-a-service' | 'icmp-for-host' | 'real-server-no-conn'): typeof PASS_TO_HOST {
    this.counters.passed[reason] = (this.counters.passed[reason] ?? 0) + 1;
    return PASS_TO_HOST;
  }

  /** Every connection and template, with its service's key. */
  exportConnections(): ConnRecord[] {
    const records: ConnRecord[] = [];
    for (const id of this.conns.liveIds()) {
      const service = this.services.byId(this.conns.serviceId(id));
      if (!service) continue;
      const record: ConnRecord = { ...this.conns.snapshotOf(id), service: service.key };
      if (this.conns.isProxied(id)) record.seqOffset = this.conns.proxyOffset(id);
      records.push(record);
    }
    return records;
  }

  /**
   * Re-creates exported entries on the real servers of this director's services (matched by
   * address and port, so the records may come from another process): templates first, then the
   * connections they control, each with the state and time left it had. With `refresh`, an entry
   * already there takes the record's state and time (as a sync backup updates its copy); else it
   * is left as it is and counted as present.
   */
  importConnections(records: readonly ConnRecord[], options: { refresh?: boolean } = {}): ImportResult {
    const result: ImportResult = {
      imported: 0,
      refreshed: 0,
      skipped: { noService: 0, noDest: 0, tableFull: 0, present: 0 },
    };
    const ordered = [...records].sort((a, b) => Number(b.template) - Number(a.template));
    // Templates get their time left last: each connection created under one re-arms it.
    const templates: [number, ConnRecord][] = [];
    for (const r of ordered) {
      const service = this.services.find(r.service);
      if (!service) {
        result.skipped.noService++;
        continue;
      }
      const dest = service.dests.find(
        (d) => addrEquals(d.addr, r.daddr) && (d.port === r.dport || d.port === 0),
      );
      if (!dest) {
        result.skipped.noDest++;
        continue;
      }
      const existing = this.findRecorded(service, r);
      if (existing >= 0) {
        if (!options.refresh) {
          result.skipped.present++;
          continue;
        }
        result.refreshed++;
      }
      const id =
        existing >= 0
          ? existing
          : r.template
            ? this.importTemplate(service, dest, r)
            : this.importConnection(service, dest, r);
      if (id === TABLE_FULL) {
        result.skipped.tableFull++;
        continue;
      }
      if (r.template) templates.push([id, r]);
      else this.conns.restore(id, r.state as ConnStateName, r.expiresMs);
      // A backup may have learnt the connection before the real server's answer fixed its offset.
      if (!r.template && r.seqOffset !== undefined) this.conns.joinProxied(id, r.seqOffset);
      if (existing < 0) result.imported++;
    }
    for (const [id, r] of templates) this.conns.restore(id, r.state as ConnStateName, r.expiresMs);
    return result;
  }

  /** The entry a record describes, when this director has it already; else -1. */
  private findRecorded(service: Service, r: ConnRecord): number {
    if (r.template)
      return this.conns.findTemplate(r.af, r.protocol, r.caddr, r.vaddr, r.vport, service.key.fwmark);
    return this.conns.findIn(r.af, r.protocol, r.caddr, r.cport, r.vaddr, r.vport);
  }

  /**
   * A backup's side of connection sync (ip_vs_proc_conn): each synced connection is matched to
   * this director's service by its virtual address, port and protocol (or its firewall mark) and
   * held on the same real server, with the state and full timeout the master gave it; one it
   * holds already is updated. They take effect when the traffic arrives here.
   */
  importSynced(conns: readonly SyncConn[]): ImportResult {
    const records: ConnRecord[] = [];
    let noService = 0;
    for (const conn of conns) {
      const record = this.recordOfSynced(conn);
      if (record) records.push(record);
      else noService++;
    }
    const result = this.importConnections(records, { refresh: true });
    result.skipped.noService += noService;
    return result;
  }

  private recordOfSynced(conn: SyncConn): ConnRecord | null {
    const service =
      conn.fwmark > 0
        ? this.services.lookupFwmark(conn.af, conn.fwmark)
        : this.services.lookup(conn.protocol, conn.vaddr, conn.vport);
    if (!service) return null;
    const template = (conn.flags & CONN_F_TEMPLATE) !== 0;
    const stateName = template ? 'NONE' : conn.protocol === IPPROTO_TCP ? conn.stateName : 'UDP';
    // v0 messages carry no timeout: the state's own, as the kernel's backup takes it.
    const defaultMs = template
      ? service.settings.timeout * 1000
      : this.timeouts.stateMs(conn.protocol === IPPROTO_TCP ? conn.state : S_UDP);
    return {
      af: conn.af,
      protocol: conn.protocol as ConnRecord['protocol'],
      caddr: conn.caddr,
      cport: conn.cport,
      vaddr: conn.vaddr,
      vport: conn.vport,
      daddr: conn.daddr,
      dport: conn.dport,
      state: stateName,
      expiresMs: conn.timeoutSec > 0 ? conn.timeoutSec * 1000 : defaultMs,
      template,
      service: service.key,
      // The kernel's ftp helper shifts sequence numbers the same way: out_seq.delta onto the real server's, off the client's acknowledgments.
      ...(conn.flags & CONN_F_OUT_SEQ && conn.seq && !template && conn.protocol === IPPROTO_TCP
        ? { seqOffset: conn.seq.out.delta >>> 0 }
        : {}),
    };
  }

  /**
   * The host's path to the real server at `addr` (null: none), as the data plane's adapter found
   * it: tunnels take their outer source and MTU from it. Applies to that address in every service.
   */
  setRealServerRoute(addr: Addr, route: RealServerRoute | null): void {
    for (const service of this.services.services) {
      for (const dest of service.dests) if (addrEquals(dest.addr, addr)) dest.route = route;
    }
  }

  /** Starts the master sync role's decisions on every client packet (a master sync daemon runs). */
  startSyncSource(tuning?: Partial<SyncTuning>): void {
    this.syncSource = new SyncSource({
      table: this.conns,
      clock: this.clock,
      tuning,
      serviceFwmark: this.serviceFwmark,
    });
  }

  private readonly serviceFwmark = (serviceId: number): number | undefined =>
    this.services.byId(serviceId)?.key.fwmark;

  /**
   * A stretch of the connection table as sync records, for a full-table sync to a backup that
   * joined (FullSyncWalk plans the stretches): bounded in entries and in slots scanned.
   */
  syncPage(request: FullSyncPageRequest): SyncPage {
    const { from, to, limit, maxSlots } = request;
    const within = (n: number, min: number, max: number) => Number.isInteger(n) && n >= min && n <= max;
    if (
      !within(from, 0, MAX_CAPACITY) ||
      !(to === -1 || within(to, from, MAX_CAPACITY)) ||
      !within(limit, 1, MAX_CONN_PAGE) ||
      !within(maxSlots, 1, MAX_SCAN_SLOTS)
    ) {
      throw new LvsError(
        ErrorCodes.INVALID,
        `a sync page is slots [from, to) (to -1: the end) of 1..${MAX_CONN_PAGE} entries and 1..${MAX_SCAN_SLOTS} slots`,
      );
    }
    return syncWalkPage(this.conns, this.serviceFwmark, request);
  }

  stopSyncSource(): void {
    this.syncSource = null;
  }

  /** The connections chosen for sync since the last call (none while no sync source runs). */
  takeSyncConns(): SyncConn[] {
    return this.syncSource?.take() ?? [];
  }

  private importTemplate(service: Service, dest: Dest, r: ConnRecord): number {
    const { fwmark } = service.key;
    const id = this.conns.createTemplate({
      af: r.af,
      protocol: r.protocol,
      caddr: r.caddr,
      vaddr: r.vaddr,
      vport: r.vport,
      fwmark,
      daddr: r.daddr,
      dport: r.dport,
      dest,
      serviceId: service.id,
      timeoutMs: service.settings.timeout * 1000,
    });
    return id < 0 ? TABLE_FULL : id;
  }

  private importConnection(service: Service, dest: Dest, r: ConnRecord): number {
    const { settings, key } = service;
    const template =
      settings.flags & SVC_F_PERSISTENT
        ? this.conns.findTemplate(
            r.af,
            r.protocol,
            addrMask(r.caddr, settings.netmaskPrefix),
            r.vaddr,
            key.port === 0 || key.fwmark > 0 ? 0 : r.vport,
            key.fwmark,
          )
        : -1;
    const id = this.conns.create({
      af: r.af,
      protocol: r.protocol,
      caddr: r.caddr,
      cport: r.cport,
      vaddr: r.vaddr,
      vport: r.vport,
      daddr: r.daddr,
      dport: r.dport,
      dest,
      method: forwardingMethodId(dest.method),
      serviceId: service.id,
      template,
    });
    return id < 0 ? TABLE_FULL : id;
  }

  /** A page of the connection table from slot `from`: listings stream it without a full copy. */
  connections(from: number, limit: number): ConnPage {
    if (
      !Number.isInteger(from) ||
      from < 0 ||
      !Number.isInteger(limit) ||
      limit < 1 ||
      limit > MAX_CONN_PAGE
    ) {
      throw new LvsError(
        ErrorCodes.INVALID,
        `a page starts at a slot >= 0 and holds 1..${MAX_CONN_PAGE} entries`,
      );
    }
    return this.conns.page(from, limit);
  }

  snapshot(options: { connections: boolean }): Snapshot {
    const snapshot: Snapshot = {
      connTableBuckets: 1 << this.connHashBits,
      connTable: { ...this.conns.stats(), defense: this.defense.snapshot(), expiry: { ...this.expiry } },
      timeouts: this.timeouts.ipvs(),
      services: this.services.services.map(serviceSnapshot),
      dataPath: { ...this.counters, drops: { ...this.counters.drops }, passed: { ...this.counters.passed } },
    };
    if (options.connections) snapshot.connections = [...this.conns.entries()];
    return snapshot;
  }
}

interface WireSize {
  packets: number;
  bytes: number;
}

/** What the wire carries: a GSO super-packet is as many packets as it will be segmented into. */
function wireSize(buf: Uint8Array, offset: number, p: ParsedPacket): WireSize {
  let packets = 1;
  let bytes = p.end - p.l3Offset;
  const vnet = readVnetHdr(buf, offset);
  if (isSuperPacket(vnet, p.payloadLength)) {
    packets = Math.ceil(p.payloadLength / vnet.gsoSize);
    bytes += (packets - 1) * (p.payloadOffset - p.l3Offset);
  }
  return { packets, bytes };
}

function statsSnapshot(stats: Stats): StatsSnapshot {
  const text = (counter: Counter) => stats.value(counter).toString();
  return {
    conns: text('conns'),
    inPkts: text('inPkts'),
    outPkts: text('outPkts'),
    inBytes: text('inBytes'),
    outBytes: text('outBytes'),
  };
}

function serviceSnapshot(service: Service): ServiceSnapshot {
  return {
    key: service.key,
    settings: { ...service.settings },
    stats: statsSnapshot(service.stats),
    rates: { ...service.rates },
    dests: service.dests.map(destSnapshot),
  };
}

function destSnapshot(dest: Dest): DestSnapshot {
  return {
    addr: dest.addr,
    port: dest.port,
    method: dest.method,
    ...(dest.tunnel ? { tunnel: { ...dest.tunnel } } : {}),
    weight: dest.weight,
    configuredWeight: dest.configuredWeight,
    scheduled: dest.scheduled,
    admin: dest.admin,
    operatorWeight: dest.operatorWeight,
    health: dest.health,
    dynamicWeight: dest.dynamicWeight,
    uThreshold: dest.uThreshold,
    lThreshold: dest.lThreshold,
    activeConns: dest.activeConns,
    inactConns: dest.inactConns,
    persistConns: dest.persistConns,
    stats: statsSnapshot(dest.stats),
    rates: { ...dest.rates },
  };
}
