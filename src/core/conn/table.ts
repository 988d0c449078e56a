// The connection table, as ip_vs_conn.c's: every tracked flow, found from the client side
// (client -> virtual address) and from the real server side (real server -> client), plus the
// persistence templates. Entries live in parallel typed arrays indexed by a connection id, chained
// into two hash tables and into a timer wheel, so a million connections cost no JS objects and
// the packet path allocates nothing. The table is bounded: when full, a new entry evicts a
// half-open one, the idlest of a few sampled at random (early drop, when on; see defense.ts), or is
// refused and counted.
// Established connections and templates are never evicted.

import type { Clock } from '../clock.js';
import { ErrorCodes, LvsError } from '../errors.js';
import { addr4, addr6, IPPROTO_TCP, IPPROTO_UDP, type Addr, type Family, type Protocol } from '../inet.js';
import type { Dest } from '../model.js';
import type { ConnPage, ConnSnapshot, ConnTableStats } from '../ops.js';
import {
  isHalfOpen,
  nextTcpState,
  S_ESTABLISHED,
  S_NONE,
  S_SYN_RECV,
  S_UDP,
  STATE_NAMES,
  type ConnStateName,
  type Direction,
} from './tcp-state.js';
import type { Timeouts } from './timeouts.js';
import { TimerWheel } from './timer-wheel.js';

const NIL = -1;

// Entry flags. INACTIVE and TEMPLATE mirror IP_VS_CONN_F_*; LIVE marks a used slot.
const F_LIVE = 0x01;
const F_TEMPLATE = 0x02;
const F_INACTIVE = 0x04;
/** A template removed while connections still name it: unfindable, kept until they end. */
const F_ORPHAN = 0x08;
/** A reply went back through the director: for UDP, the flow is no longer one-sided (conntrack's assured). */
const F_REPLIED = 0x10;
/** The SYN proxy answered the client; its own handshake with the real server is under way (syn-proxy.ts). */
const F_PROXY_WAIT = 0x20;
/** A SYN-proxied connection: its sequence numbers are shifted by the entry's offset word. */
const F_PROXIED = 0x40;

// The key fields of an entry share one 64-byte line of 16 words, so a lookup touches one bucket
// word and then one line per chained entry:
// caddr 0..3, vaddr 4..7, daddr 8..11 (four words each, IPv4 in the first), PORTS = cport << 16 |
// vport, META = protocol << 24 | (af | template bit) << 16 | dport, then the two hash-chain links.
const ENTRY_WORDS = 16;
const CADDR = 0;
const VADDR = 4;
const DADDR = 8;
const PORTS = 12;
const META = 13;
/** In-hash chain; also the free list's link. */
const IN_NEXT = 14;
const OUT_NEXT = 15;
const META_TEMPLATE = 0x08;

const portsWord = (cport: number, vport: number) => ((cport << 16) | vport) >>> 0;
const metaWord = (protocol: number, afAndTemplate: number, dport: number) =>
  ((protocol << 24) | (afAndTemplate << 16) | dport) >>> 0;
const META_KEY_MASK = 0xffff0000;

const WHEEL_TICK_MS = 250;
/** 8192 ticks of 250 ms: 34 minutes before a slot comes round again. */
const WHEEL_SLOTS = 8192;
/** 16M entries: a 1 GiB key array, within what a typed array may hold. */
export const MAX_CAPACITY = 1 << 24;
/**
 * Slots early drop samples for a half-open entry before refusing (conntrack looks at 8): with a
 * quarter of the table established, a new connection is refused once in 4 billion.
 */
const EARLY_DROP_SAMPLES = 16;
/** How long drop_entry leaves a half-open entry alone after its last packet: a handshake's time. */
export const HANDSHAKE_GRACE_MS = 1000;

export interface ConnTableOptions {
  /** Most entries (connections and templates) held at once. */
  capacity: number;
  clock: Clock;
  timeouts: Timeouts;
  /** Mixed into the hashes; pass a random value so clients cannot aim at one bucket. */
  hashSeed?: number;
  /** Uniform in [0, 1): where evictions look. Defaults to Math.random. */
  random?: () => number;
}

export interface ConnSpec {
  af: Family;
  protocol: number;
  caddr: Addr;
  cport: number;
  vaddr: Addr;
  vport: number;
  daddr: Addr;
  dport: number;
  dest: Dest;
  /** The forwarding method bound to the connection (an id from the forwarding-method registry). */
  method: number;
  serviceId: number;
  /** The persistence template controlling this connection, or -1. */
  template: number;
}

export interface TemplateSpec {
  af: Family;
  /** The service's protocol; ignored for firewall-mark services, whose templates use 0. */
  protocol: number;
  /** The client address already masked with the service's persistence netmask. */
  caddr: Addr;
  /** Ignored for firewall-mark services, which key on the mark. */
  vaddr: Addr;
  /** 0 for port-0 and firewall-mark services. */
  vport: number;
  /** The service's firewall mark, or 0. */
  fwmark: number;
  daddr: Addr;
  dport: number;
  dest: Dest;
  serviceId: number;
  timeoutMs: number;
}

function mix(hash: number, word: number): number {
  const h = Math.imul(hash ^ word, 0x85ebca6b);
  return h ^ (h >>> 13);
}

/** One hash for both lookup directions: (family, protocol, address, port, address, port). */
// prettier-ignore
function keyHash(
  seed: number, af: number, protocol: number,
  a0: number, a1: number, a2: number, a3: number, aPort: number,
  b0: number, b1: number, b2: number, b3: number, bPort: number,
): number {
  let h = mix(seed, (af << 8) | protocol);
  h = mix(h, a0);
  h = mix(h, b0);
  h = mix(h, (aPort << 16) | bPort);
  if (af === 6) {
    h = mix(mix(mix(h, a1), a2), a3);
    h = mix(mix(mix(h, b1), b2), b3);
  }
  h = Math.imul(h ^ (h >>> 16), 0xc2b2ae35);
  return h ^ (h >>> 15);
}

export class ConnTable {
  readonly capacity: number;
  /** Live connections and templates. */
  size = 0;
  /** Live templates (counted in size too). */
  templates = 0;
  /** Creates refused because the table was full. */
  refusedFull = 0;
  /** Half-open entries evicted to make room for a new one. */
  earlyDrops = 0;
  /** On a full table, evict a half-open entry for a new one rather than refuse it. */
  earlyDrop = false;
  /** Track TCP with secure_tcp's state table and half-open timeouts. */
  secureTcp = false;
  /** TCP connections created, and those that completed their handshake: what the SYN proxy's switch watches. */
  tcpOpened = 0;
  handshakes = 0;

  private readonly clock: Clock;
  private readonly timeouts: Timeouts;
  private readonly seed: number;
  private readonly random: () => number;

  /** Key lines, ENTRY_WORDS per entry; `links` views the same memory for the signed chain words. */
  private readonly keys: Uint32Array;
  private readonly links: Int32Array;
  private readonly states: Uint8Array;
  private readonly flags: Uint8Array;
  private readonly timeoutMs: Uint32Array;
  private readonly expiry: Float64Array;
  /** The real server of each entry, by Dest.id: a typed array the garbage collector never walks. */
  private readonly destIds: Int32Array;
  /** The real servers entries are bound to, indexed by Dest.id; a slot empties when its last entry goes. */
  private readonly boundDests: (Dest | undefined)[] = [];
  private readonly serviceIds: Int32Array;
  private readonly methods: Uint8Array;
  private readonly controllers: Int32Array;
  /**
   * For a template, the connections it controls; for a SYN-proxied connection, the offset from
   * the real server's sequence numbers to the client's. One word for both: the memory per entry
   * stays as it was.
   */
  private readonly controlled: Uint32Array;
  /** Packets from the client side (ip_vs_conn's in_pkts); a template counts its connections' packets. */
  private readonly inPkts: Uint32Array;

  private readonly bucketMask: number;
  private readonly inBuckets: Int32Array;
  private readonly outBuckets: Int32Array;
  /** Released slots, reused first. */
  private freeHead = NIL;
  /** Slots at and above this were never used: left untouched, their pages are never faulted in. */
  private unused = 0;

  private readonly wheel: TimerWheel;
  private advanceNow = 0;
  private advanceExpired = 0;
  private readonly visitDue = (id: number): void => this.settle(id);

  constructor(options: ConnTableOptions) {
    const { capacity } = options;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_CAPACITY) {
      throw new LvsError(ErrorCodes.INVALID, `connection table capacity must be 1..${MAX_CAPACITY}`);
    }
    this.capacity = capacity;
    this.clock = options.clock;
    this.timeouts = options.timeouts;
    this.seed = (options.hashSeed ?? 0x9e3779b9) | 0;
    this.random = options.random ?? Math.random;

    this.keys = new Uint32Array(capacity * ENTRY_WORDS);
    this.links = new Int32Array(this.keys.buffer);
    this.states = new Uint8Array(capacity);
    this.flags = new Uint8Array(capacity);
    this.timeoutMs = new Uint32Array(capacity);
    this.expiry = new Float64Array(capacity);
    this.destIds = new Int32Array(capacity);
    this.serviceIds = new Int32Array(capacity);
    this.methods = new Uint8Array(capacity);
    this.controllers = new Int32Array(capacity);
    this.controlled = new Uint32Array(capacity);
    this.inPkts = new Uint32Array(capacity);

    // Load factor at most 1: chains stay short without a resize.
    const buckets = 2 ** Math.ceil(Math.log2(capacity));
    this.bucketMask = buckets - 1;
    this.inBuckets = new Int32Array(buckets).fill(NIL);
    this.outBuckets = new Int32Array(buckets).fill(NIL);

    this.wheel = new TimerWheel(capacity, WHEEL_TICK_MS, WHEEL_SLOTS, this.clock.now());
  }

  /** Hash buckets per direction. */
  get buckets(): number {
    return this.bucketMask + 1;
  }

  /** Occupancy and what the table refused or evicted, as lvsadm -L --json shows it. */
  stats(): ConnTableStats {
    const { capacity, size, templates, refusedFull, earlyDrops } = this;
    return { capacity, entries: size, templates, refusedFull, earlyDrops };
  }

  // ---- lookups (packet path: no allocation) ----

  /** The connection a client -> virtual address packet belongs to, or -1. */
  findIn(af: Family, protocol: number, caddr: Addr, cport: number, vaddr: Addr, vport: number): number {
    // prettier-ignore
    return this.findInWords(af, protocol, caddr.a, caddr.b, caddr.c, caddr.d, cport, vaddr.a, vaddr.b, vaddr.c, vaddr.d, vport);
  }

  /** findIn on address words, for callers that read them straight from the packet. */
  // prettier-ignore
  findInWords(
    af: number, protocol: number,
    c0: number, c1: number, c2: number, c3: number, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
  ): number {
    return this.lookupIn(af, protocol, c0, c1, c2, c3, cport, v0, v1, v2, v3, vport, 0);
  }

  /** The connection a real server -> client reply belongs to, or -1. */
  findOut(af: Family, protocol: number, daddr: Addr, dport: number, caddr: Addr, cport: number): number {
    // prettier-ignore
    return this.findOutWords(af, protocol, daddr.a, daddr.b, daddr.c, daddr.d, dport, caddr.a, caddr.b, caddr.c, caddr.d, cport);
  }

  // prettier-ignore
  findOutWords(
    af: number, protocol: number,
    d0: number, d1: number, d2: number, d3: number, dport: number,
    c0: number, c1: number, c2: number, c3: number, cport: number,
  ): number {
    const { keys } = this;
    const ports = cport << 16;
    const meta = metaWord(protocol, af, dport);
    let id = this.outBuckets[keyHash(this.seed, af, protocol, d0, d1, d2, d3, dport, c0, c1, c2, c3, cport) & this.bucketMask]!;
    while (id !== NIL) {
      const k = id * ENTRY_WORDS;
      if (
        keys[k + DADDR] === d0 && keys[k + CADDR] === c0 &&
        keys[k + META] === meta && (keys[k + PORTS]! & 0xffff0000) === ports &&
        keys[k + DADDR + 1] === d1 && keys[k + DADDR + 2] === d2 && keys[k + DADDR + 3] === d3 &&
        keys[k + CADDR + 1] === c1 && keys[k + CADDR + 2] === c2 && keys[k + CADDR + 3] === c3
      ) {
        return id;
      }
      id = this.links[k + OUT_NEXT]!;
    }
    return NIL;
  }

  /**
   * The persistence template for a client (address already masked) on a service, or -1. Keyed as
   * IPVS keys it: <protocol, caddr, cport 0, vaddr, vport>, with protocol 0 and the mark in place
   * of vaddr for firewall-mark services.
   */
  findTemplate(
    af: Family,
    protocol: number,
    caddr: Addr,
    vaddr: Addr,
    vport: number,
    fwmark: number,
  ): number {
    // prettier-ignore
    return fwmark
      ? this.lookupIn(af, 0, caddr.a, caddr.b, caddr.c, caddr.d, 0, fwmark >>> 0, 0, 0, 0, vport, META_TEMPLATE)
      : this.lookupIn(af, protocol, caddr.a, caddr.b, caddr.c, caddr.d, 0, vaddr.a, vaddr.b, vaddr.c, vaddr.d, vport, META_TEMPLATE);
  }

  // prettier-ignore
  private lookupIn(
    af: number, protocol: number,
    c0: number, c1: number, c2: number, c3: number, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
    templateFlag: number,
  ): number {
    const { keys } = this;
    const ports = portsWord(cport, vport);
    const meta = metaWord(protocol, af | templateFlag, 0);
    let id = this.inBuckets[keyHash(this.seed, af, protocol, c0, c1, c2, c3, cport, v0, v1, v2, v3, vport) & this.bucketMask]!;
    while (id !== NIL) {
      const k = id * ENTRY_WORDS;
      if (
        keys[k + CADDR] === c0 && keys[k + VADDR] === v0 &&
        keys[k + PORTS] === ports && (keys[k + META]! & META_KEY_MASK) === meta &&
        keys[k + CADDR + 1] === c1 && keys[k + CADDR + 2] === c2 && keys[k + CADDR + 3] === c3 &&
        keys[k + VADDR + 1] === v1 && keys[k + VADDR + 2] === v2 && keys[k + VADDR + 3] === v3
      ) {
        return id;
      }
      id = this.links[k + IN_NEXT]!;
    }
    return NIL;
  }

  // ---- creation ----

  /**
   * A new connection in state NONE (UDP: UDP), inactive, bound to `spec.dest`; -1 when the table is
   * full (counted in refusedFull). The caller has looked it up first: duplicates are not checked.
   * The destination's stats are the caller's to count.
   */
  create(spec: ConnSpec): number {
    const id = this.allocate();
    if (id === NIL) return NIL;
    const state = spec.protocol === IPPROTO_TCP ? S_NONE : S_UDP;
    const { af, caddr, vaddr } = spec;
    this.fill(id, spec.protocol, af, caddr, spec.cport, vaddr.a, vaddr.b, vaddr.c, vaddr.d, spec.vport);
    this.fillDest(id, spec.daddr, spec.dport);
    this.states[id] = state;
    this.flags[id] = F_LIVE | F_INACTIVE;
    this.serviceIds[id] = spec.serviceId;
    this.methods[id] = spec.method;
    this.controllers[id] = spec.template;
    this.controlled[id] = 0;
    this.inPkts[id] = 0;
    this.hash(this.inBuckets, IN_NEXT, this.inBucket(id), id);
    this.hash(this.outBuckets, OUT_NEXT, this.outBucket(id), id);
    this.arm(id, this.timeouts.stateMs(state, this.secureTcp));
    this.bind(id, spec.dest);
    if (state === S_NONE) this.tcpOpened++;
    if (spec.template !== NIL) {
      this.controlled[spec.template]!++;
      this.rearm(spec.template);
    }
    return id;
  }

  /** A persistence template (counted in the destination's PersistConn), or -1 when full. */
  createTemplate(spec: TemplateSpec): number {
    const id = this.allocate();
    if (id === NIL) return NIL;
    const { af, caddr, vaddr } = spec;
    const keyedAf = af | META_TEMPLATE;
    if (spec.fwmark) this.fill(id, 0, keyedAf, caddr, 0, spec.fwmark >>> 0, 0, 0, 0, spec.vport);
    else this.fill(id, spec.protocol, keyedAf, caddr, 0, vaddr.a, vaddr.b, vaddr.c, vaddr.d, spec.vport);
    this.fillDest(id, spec.daddr, spec.dport);
    this.states[id] = S_NONE;
    this.flags[id] = F_LIVE | F_TEMPLATE;
    this.templates++;
    this.serviceIds[id] = spec.serviceId;
    this.controllers[id] = NIL;
    this.controlled[id] = 0;
    this.inPkts[id] = 0;
    // Templates are looked up from the client side only.
    this.hash(this.inBuckets, IN_NEXT, this.inBucket(id), id);
    this.arm(id, spec.timeoutMs);
    this.bind(id, spec.dest);
    return id;
  }

  private allocate(): number {
    if (this.freeHead === NIL && this.unused === this.capacity && !this.evictForNew()) {
      this.refusedFull++;
      return NIL;
    }
    let id = this.freeHead;
    if (id !== NIL) this.freeHead = this.links[id * ENTRY_WORDS + IN_NEXT]!;
    else id = this.unused++;
    this.size++;
    return id;
  }

  /**
   * Early drop: of a few slots sampled at random, the half-open entry idle longest goes. A flood's
   * entries sit idle from their one SYN on, while a real client's handshake is a round trip old
   * at most, so the client is not evicted between its SYN and its ACK.
   */
  private evictForNew(): boolean {
    if (!this.earlyDrop) return false;
    let victim = NIL;
    for (let sample = 0; sample < EARLY_DROP_SAMPLES; sample++) {
      const id = Math.floor(this.random() * this.capacity);
      if (this.isEvictable(id) && (victim === NIL || this.lastSeen(id) < this.lastSeen(victim))) victim = id;
    }
    if (victim === NIL) return false;
    this.release(victim, true);
    this.earlyDrops++;
    return true;
  }

  /** When the entry last saw a packet: its timeout runs from then. */
  private lastSeen(id: number): number {
    return this.expiry[id]! - this.timeoutMs[id]!;
  }

  /**
   * A connection that never got going: TCP that has not completed its handshake, UDP that never
   * had a reply. Templates, and everything else, stay.
   */
  private isEvictable(id: number): boolean {
    const flags = this.flags[id]!;
    if ((flags & (F_LIVE | F_TEMPLATE | F_ORPHAN)) !== F_LIVE) return false;
    const protocol = this.protocol(id);
    if (protocol === IPPROTO_TCP) return isHalfOpen(this.states[id]!);
    return protocol === IPPROTO_UDP && !(flags & F_REPLIED);
  }

  /**
   * drop_entry's scan: evicts the half-open entries chained in `count` buckets picked at random,
   * sparing those that saw a packet within HANDSHAKE_GRACE_MS (a handshake under way).
   */
  dropHalfOpen(count: number): number {
    const spareSince = this.clock.now() - HANDSHAKE_GRACE_MS;
    let dropped = 0;
    for (let i = 0; i < count; i++) {
      let id = this.inBuckets[Math.floor(this.random() * this.buckets)]!;
      while (id !== NIL) {
        const next = this.links[id * ENTRY_WORDS + IN_NEXT]!;
        if (this.isEvictable(id) && this.lastSeen(id) <= spareSince) {
          this.release(id, true);
          dropped++;
        }
        id = next;
      }
    }
    return dropped;
  }

  /** The client-side key: `afAndTemplate` is the family, with META_TEMPLATE for templates. */
  // prettier-ignore
  private fill(
    id: number, protocol: number, afAndTemplate: number, caddr: Addr, cport: number,
    v0: number, v1: number, v2: number, v3: number, vport: number,
  ): void {
    const { keys } = this;
    const k = id * ENTRY_WORDS;
    keys[k + CADDR] = caddr.a;
    keys[k + CADDR + 1] = caddr.b;
    keys[k + CADDR + 2] = caddr.c;
    keys[k + CADDR + 3] = caddr.d;
    keys[k + VADDR] = v0;
    keys[k + VADDR + 1] = v1;
    keys[k + VADDR + 2] = v2;
    keys[k + VADDR + 3] = v3;
    keys[k + PORTS] = portsWord(cport, vport);
    keys[k + META] = metaWord(protocol, afAndTemplate, 0);
  }

  private fillDest(id: number, daddr: Addr, dport: number): void {
    const { keys } = this;
    const k = id * ENTRY_WORDS;
    keys[k + DADDR] = daddr.a;
    keys[k + DADDR + 1] = daddr.b;
    keys[k + DADDR + 2] = daddr.c;
    keys[k + DADDR + 3] = daddr.d;
    keys[k + META] = (keys[k + META]! | dport) >>> 0;
  }

  private inBucket(id: number): number {
    const { keys } = this;
    const k = id * ENTRY_WORDS;
    const ports = keys[k + PORTS]!;
    // prettier-ignore
    return keyHash(
      this.seed, this.af(id), this.protocol(id),
      keys[k + CADDR]!, keys[k + CADDR + 1]!, keys[k + CADDR + 2]!, keys[k + CADDR + 3]!, ports >>> 16,
      keys[k + VADDR]!, keys[k + VADDR + 1]!, keys[k + VADDR + 2]!, keys[k + VADDR + 3]!, ports & 0xffff,
    ) & this.bucketMask;
  }

  private outBucket(id: number): number {
    const { keys } = this;
    const k = id * ENTRY_WORDS;
    // prettier-ignore
    return keyHash(
      this.seed, this.af(id), this.protocol(id),
      keys[k + DADDR]!, keys[k + DADDR + 1]!, keys[k + DADDR + 2]!, keys[k + DADDR + 3]!, this.dport(id),
      keys[k + CADDR]!, keys[k + CADDR + 1]!, keys[k + CADDR + 2]!, keys[k + CADDR + 3]!, this.cport(id),
    ) & this.bucketMask;
  }

  /** Pushes `id` on a bucket's chain; `link` is the entry word (IN_NEXT or OUT_NEXT) that chains it. */
  private hash(buckets: Int32Array, link: number, bucket: number, id: number): void {
    this.links[id * ENTRY_WORDS + link] = buckets[bucket]!;
    buckets[bucket] = id;
  }

  private unhash(buckets: Int32Array, link: number, bucket: number, id: number): void {
    const { links } = this;
    const next = links[id * ENTRY_WORDS + link]!;
    let at = buckets[bucket]!;
    if (at === id) {
      buckets[bucket] = next;
      return;
    }
    while (at !== NIL) {
      const following = links[at * ENTRY_WORDS + link]!;
      if (following === id) {
        links[at * ENTRY_WORDS + link] = next;
        return;
      }
      at = following;
    }
  }

  // ---- state and timers ----

  /**
   * A packet of connection `id` crossed the director. TCP moves through the IPVS state table and
   * between the destination's active and inactive counts; every protocol re-arms its timeout and
   * that of its controlling template.
   */
  onPacket(id: number, direction: Direction, tcpFlags: number): void {
    const flags = this.flags[id]!;
    if (flags & F_TEMPLATE) {
      this.rearm(id);
      return;
    }
    let state = S_UDP;
    if (this.protocol(id) === IPPROTO_TCP) {
      const old = this.states[id]!;
      state = nextTcpState(old, direction, tcpFlags, this.secureTcp);
      if (state !== old) {
        if (state === S_ESTABLISHED && isHalfOpen(old)) this.handshakes++;
        this.moveState(id, flags, state);
      }
    } else if (direction === 'out' && !(flags & F_REPLIED)) {
      this.flags[id] = flags | F_REPLIED;
    }
    this.timeoutMs[id] = this.timeouts.stateMs(state, this.secureTcp);
    this.rearm(id);
    const fromClient = direction !== 'out';
    if (fromClient) this.inPkts[id]++;
    const template = this.controllers[id]!;
    if (template !== NIL && !(this.flags[template]! & F_ORPHAN)) {
      this.rearm(template);
      if (fromClient) this.inPkts[template]++;
    }
  }

  private moveState(id: number, flags: number, state: number): void {
    this.states[id] = state;
    const dest = this.dest(id);
    if (state === S_ESTABLISHED) {
      if (flags & F_INACTIVE) {
        this.flags[id] = flags & ~F_INACTIVE;
        dest.inactConns--;
        dest.activeConns++;
      }
    } else if (!(flags & F_INACTIVE)) {
      this.flags[id] = flags | F_INACTIVE;
      dest.activeConns--;
      dest.inactConns++;
    }
  }

  private arm(id: number, timeoutMs: number): void {
    this.timeoutMs[id] = timeoutMs;
    const expiry = this.clock.now() + timeoutMs;
    this.expiry[id] = expiry;
    this.wheel.insert(id, expiry);
  }

  /** Restarts the entry's timeout. Filed at an earlier expiry, it is refiled only when shortened. */
  private rearm(id: number): void {
    const expiry = this.clock.now() + this.timeoutMs[id]!;
    if (expiry < this.expiry[id]!) {
      this.wheel.remove(id);
      this.wheel.insert(id, expiry);
    }
    this.expiry[id] = expiry;
  }

  /** Expires every entry due now; returns how many were removed. Call it every tick or so. */
  advance(): number {
    this.advanceNow = this.clock.now();
    this.advanceExpired = 0;
    this.wheel.advance(this.advanceNow, this.visitDue);
    return this.advanceExpired;
  }

  /** A wheel entry whose slot came round: refile it, re-arm a busy template, or remove it. */
  private settle(id: number): void {
    const now = this.advanceNow;
    if (this.expiry[id]! > now) {
      this.wheel.insert(id, this.expiry[id]!);
    } else if (this.flags[id]! & F_TEMPLATE && this.controlled[id]! > 0) {
      // A template never expires while it controls connections (IPVS re-arms it).
      this.expiry[id] = now + this.timeoutMs[id]!;
      this.wheel.insert(id, this.expiry[id]!);
    } else {
      this.release(id, false);
      this.advanceExpired++;
    }
  }

  // ---- removal ----

  /** Removes a live entry now; false if `id` is not one. */
  expire(id: number): boolean {
    if (!this.isLive(id)) return false;
    this.release(id, true);
    return true;
  }

  /** Ends every connection and template bound to `dest` (a deleted real server). */
  dropDest(dest: Dest): number {
    return this.removeWhere((id) => this.destIds[id] === dest.id);
  }

  /** Ends every connection and template of these services, in one pass over the table. */
  dropServices(serviceIds: ReadonlySet<number>): number {
    return this.removeWhere((id) => serviceIds.has(this.serviceIds[id]!));
  }

  flush(): number {
    return this.removeWhere(() => true);
  }

  /** Connections before templates, so the templates they name go at once rather than orphaned. */
  private removeWhere(matches: (id: number) => boolean): number {
    let removed = 0;
    for (const templates of [false, true]) {
      for (let id = 0; id < this.unused; id++) {
        if (this.isLive(id) && this.isTemplate(id) === templates && matches(id)) {
          this.release(id, true);
          removed++;
        }
      }
    }
    return removed;
  }

  /** Unhashes, unbinds and frees a live entry; `filed` when it is still on the wheel. */
  private release(id: number, filed: boolean): void {
    const flags = this.flags[id]!;
    const template = (flags & F_TEMPLATE) !== 0;
    this.unhash(this.inBuckets, IN_NEXT, this.inBucket(id), id);
    if (!template) this.unhash(this.outBuckets, OUT_NEXT, this.outBucket(id), id);
    if (filed) this.wheel.remove(id);
    this.unbind(id);
    this.size--;
    if (template) {
      this.templates--;
      if (this.controlled[id]! > 0) {
        this.flags[id] = flags | F_ORPHAN;
        return;
      }
    } else {
      const controller = this.controllers[id]!;
      if (controller !== NIL && --this.controlled[controller]! === 0 && this.flags[controller]! & F_ORPHAN) {
        this.free(controller);
      }
    }
    this.free(id);
  }

  private free(id: number): void {
    this.flags[id] = 0;
    this.links[id * ENTRY_WORDS + IN_NEXT] = this.freeHead;
    this.freeHead = id;
  }

  // ---- destination counters (ip_vs_bind_dest / ip_vs_unbind_dest) ----

  private bind(id: number, dest: Dest): void {
    this.destIds[id] = dest.id;
    this.boundDests[dest.id] = dest;
    if (this.flags[id]! & F_TEMPLATE) dest.persistConns++;
    else dest.inactConns++;
    if (dest.uThreshold && dest.activeConns + dest.inactConns >= dest.uThreshold) dest.overloaded = true;
  }

  private unbind(id: number): void {
    const dest = this.dest(id);
    const flags = this.flags[id]!;
    if (flags & F_TEMPLATE) dest.persistConns--;
    else if (flags & F_INACTIVE) dest.inactConns--;
    else dest.activeConns--;
    const total = dest.activeConns + dest.inactConns;
    if (total + dest.persistConns === 0) this.boundDests[dest.id] = undefined;
    if (dest.lThreshold) {
      if (total < dest.lThreshold) dest.overloaded = false;
    } else if (dest.uThreshold) {
      if (total * 4 < dest.uThreshold * 3) dest.overloaded = false;
    } else {
      dest.overloaded = false;
    }
  }

  // ---- the SYN proxy's connections (syn-proxy.ts) ----

  /** A connection the SYN proxy opened on a client's ACK: half-open (SYN_RECV) until the real server answers. */
  beginProxied(id: number): void {
    this.moveState(id, this.flags[id]!, S_SYN_RECV);
    this.flags[id]! |= F_PROXY_WAIT;
    this.timeoutMs[id] = this.timeouts.stateMs(S_SYN_RECV, this.secureTcp);
    this.rearm(id);
  }

  /** The real server answered: from now on its sequence numbers reach the client shifted by `offset`. */
  joinProxied(id: number, offset: number): void {
    this.flags[id] = (this.flags[id]! & ~F_PROXY_WAIT) | F_PROXIED;
    this.controlled[id] = offset >>> 0;
  }

  isProxyWaiting(id: number): boolean {
    return (this.flags[id]! & F_PROXY_WAIT) !== 0;
  }

  isProxied(id: number): boolean {
    return (this.flags[id]! & F_PROXIED) !== 0;
  }

  /** The offset a SYN-proxied connection adds to the real server's sequence numbers. */
  proxyOffset(id: number): number {
    return this.controlled[id]!;
  }

  // ---- accessors ----

  /** A connection or template that can be found and used. */
  isLive(id: number): boolean {
    return id >= 0 && id < this.capacity && (this.flags[id]! & (F_LIVE | F_ORPHAN)) === F_LIVE;
  }

  isTemplate(id: number): boolean {
    return (this.flags[id]! & F_TEMPLATE) !== 0;
  }

  dest(id: number): Dest {
    return this.boundDests[this.destIds[id]!]!;
  }

  serviceId(id: number): number {
    return this.serviceIds[id]!;
  }

  /** The forwarding method bound to a connection when it was created. */
  method(id: number): number {
    return this.methods[id]!;
  }

  /** The controlling template, or -1. */
  template(id: number): number {
    return this.controllers[id]!;
  }

  /** Packets from the client side so far (for a template: its connections' packets). */
  inPackets(id: number): number {
    return this.inPkts[id]!;
  }

  /** The state as a code (TCP_STATE_NAMES' index, the kernel's IP_VS_TCP_S_* numbers; S_UDP for UDP). */
  stateCode(id: number): number {
    return this.states[id]!;
  }

  /** The full timeout of the entry's current state, in ms (what a packet restarts). */
  timeoutOf(id: number): number {
    return this.timeoutMs[id]!;
  }

  /** Connections a template controls. */
  controlledCount(id: number): number {
    return this.controlled[id]!;
  }

  state(id: number): ConnStateName {
    const protocol = this.protocol(id);
    if (protocol !== IPPROTO_TCP && !(this.flags[id]! & F_TEMPLATE)) {
      return protocol === IPPROTO_UDP ? 'UDP' : 'NONE';
    }
    return STATE_NAMES[this.states[id]!]!;
  }

  af(id: number): Family {
    return ((this.keys[id * ENTRY_WORDS + META]! >>> 16) & 7) as Family;
  }

  protocol(id: number): number {
    return this.keys[id * ENTRY_WORDS + META]! >>> 24;
  }

  cport(id: number): number {
    return this.keys[id * ENTRY_WORDS + PORTS]! >>> 16;
  }

  vport(id: number): number {
    return this.keys[id * ENTRY_WORDS + PORTS]! & 0xffff;
  }

  dport(id: number): number {
    return this.keys[id * ENTRY_WORDS + META]! & 0xffff;
  }

  /** Word `word` (0..3) of the client address. */
  caddrWord(id: number, word: number): number {
    return this.keys[id * ENTRY_WORDS + CADDR + word]!;
  }

  /** Word `word` of the virtual address (the mark, in word 0, for firewall-mark templates). */
  vaddrWord(id: number, word: number): number {
    return this.keys[id * ENTRY_WORDS + VADDR + word]!;
  }

  daddrWord(id: number, word: number): number {
    return this.keys[id * ENTRY_WORDS + DADDR + word]!;
  }

  caddr(id: number): Addr {
    return this.addrAt(id, CADDR);
  }

  vaddr(id: number): Addr {
    return this.addrAt(id, VADDR);
  }

  daddr(id: number): Addr {
    return this.addrAt(id, DADDR);
  }

  private addrAt(id: number, field: number): Addr {
    const k = id * ENTRY_WORDS + field;
    const { keys } = this;
    return this.af(id) === 4 ? addr4(keys[k]!) : addr6(keys[k]!, keys[k + 1]!, keys[k + 2]!, keys[k + 3]!);
  }

  /** Milliseconds until the entry expires if nothing refreshes it. */
  expiresIn(id: number): number {
    return Math.max(0, this.expiry[id]! - this.clock.now());
  }

  /** Slots ever used: every live entry's id is below it. */
  get usedSlots(): number {
    return this.unused;
  }

  /** The ids of the live entries, in slot order. */
  *liveIds(): IterableIterator<number> {
    for (let id = 0; id < this.unused; id++) if (this.isLive(id)) yield id;
  }

  /**
   * Gives an imported entry (created a moment ago) the state and remaining time it had where it
   * came from; the real server's active/inactive counts follow the state.
   */
  restore(id: number, state: ConnStateName, expiresInMs: number): void {
    const code = STATE_NAMES.indexOf(state);
    if (!(this.flags[id]! & F_TEMPLATE) && this.protocol(id) === IPPROTO_TCP && code >= 0 && code !== S_UDP) {
      this.moveState(id, this.flags[id]!, code);
      this.timeoutMs[id] = this.timeouts.stateMs(code, this.secureTcp);
    }
    this.wheel.remove(id);
    this.expiry[id] = this.clock.now() + expiresInMs;
    this.wheel.insert(id, this.expiry[id]!);
  }

  /** The live entries, as ipvsadm -Lnc lists them. */
  *entries(): IterableIterator<ConnSnapshot> {
    for (const id of this.liveIds()) yield this.snapshotOf(id);
  }

  /**
   * Up to `limit` live entries from slot `from` on, and the slot to go on from (-1 at the end).
   * Entries made or removed between pages are listed or not, as a read of /proc/net/ip_vs_conn.
   */
  page(from: number, limit: number): ConnPage {
    const entries: ConnSnapshot[] = [];
    let id = Math.max(0, from);
    for (; id < this.unused && entries.length < limit; id++) {
      if (this.isLive(id)) entries.push(this.snapshotOf(id));
    }
    return { entries, next: id < this.unused ? id : -1 };
  }

  /** A live entry as plain data. */
  snapshotOf(id: number): ConnSnapshot {
    return {
      af: this.af(id),
      protocol: this.protocol(id) as Protocol | 0,
      caddr: this.caddr(id),
      cport: this.cport(id),
      vaddr: this.vaddr(id),
      vport: this.vport(id),
      daddr: this.daddr(id),
      dport: this.dport(id),
      state: this.state(id),
      expiresMs: this.expiresIn(id),
      template: this.isTemplate(id),
    };
  }
}
