// The SYN proxy's handshakes under way. Under a SYN flood the director answers SYNs itself with
// SYN cookies (packet/syn-cookie.ts), so a spoofed source costs one SYN-ACK and no entry. A
// client whose ACK brings a good cookie back gets a connection, and the director opens its own
// handshake with the real server on the client's behalf: SYN with the client's initial sequence
// number, and once the real server's SYN-ACK is in, the ACK. From then on the real server's
// sequence numbers differ from the cookie's by a fixed offset, which the director adds to what
// the real server sends and takes from what the client acknowledges (conn/table.ts keeps it).
// What the handshake needs until the real server answers lives here, for the few connections
// that are at that point; and which SYNs are still answered while the data plane cannot keep up.

import { RecentSyns } from './conn/recent-syns.js';

/** A handshake with a real server, from the client's validated ACK until the real server's SYN-ACK. */
export interface ProxyHandshake {
  /** The client's initial sequence number. */
  readonly isn: number;
  /** The director's, the cookie it answered with. */
  readonly cookie: number;
  readonly mss: number;
  readonly sack: boolean;
  /** The client's receive window, as its ACK announced it (no scaling is ever agreed). */
  readonly window: number;
  /** The client's first segment with data, held (as a whole frame) until the real server answers. */
  data: Uint8Array | null;
  /** When the SYN to the real server was last sent. */
  sentAt: number;
}

/** The SYN to the real server again if the client is still talking after this long without an answer. */
export const PROXY_SYN_RETRY_MS = 1000;
/** After the data plane's receive queue last overflowed, this long shedding first SYNs. */
export const SHED_AFTER_OVERFLOW_MS = 1000;
/**
 * While the data plane's receive queue overflows, it drops the flood's packets and the clients'
 * alike: a SYN is answered when it is a retransmission (conn/recent-syns.ts), a first one at a
 * share that grows from none, at the overflow, to all a second later. When the queue overflows
 * again the share starts over, so it settles at what the director can answer.
 */
export class SynShedding {
  private overflowAt = -Infinity;
  /** Made on the first overflow: 2 MB that a director never flooded does not need. */
  private recent: RecentSyns | null = null;

  constructor(
    private readonly random: () => number,
    private readonly seed: number,
  ) {}

  overflowed(nowMs: number): void {
    this.overflowAt = nowMs;
  }

  /** Whether the SYN from caddr:cport to vaddr:vport (`ports` = cport << 16 | vport) with `isn` is answered. */
  answers(caddr: number, ports: number, vaddr: number, isn: number, nowMs: number): boolean {
    const sinceOverflow = nowMs - this.overflowAt;
    if (sinceOverflow >= SHED_AFTER_OVERFLOW_MS) return true;
    this.recent ??= new RecentSyns(this.seed, nowMs);
    const seen = this.recent.seenBefore(caddr, ports, vaddr, isn, nowMs);
    return seen || this.random() * SHED_AFTER_OVERFLOW_MS < sinceOverflow;
  }
}

/** Handshakes with real servers under way at once, at most: each holds up to a frame. */
export const MAX_PROXY_HANDSHAKES = 65536;

export class ProxyHandshakes {
  private readonly handshakes = new Map<number, ProxyHandshake>();

  /** `waiting(id)`: whether connection `id` still waits for its real server (a slot freed and reused does not). */
  constructor(
    private readonly waiting: (id: number) => boolean,
    private readonly limit = MAX_PROXY_HANDSHAKES,
  ) {}

  get size(): number {
    return this.handshakes.size;
  }

  /** Whether one more can begin: when full, those whose connections have ended are let go first. */
  hasRoom(): boolean {
    if (this.handshakes.size < this.limit) return true;
    for (const id of this.handshakes.keys()) if (!this.waiting(id)) this.handshakes.delete(id);
    return this.handshakes.size < this.limit;
  }

  begin(id: number, handshake: ProxyHandshake): void {
    this.handshakes.set(id, handshake);
  }

  /** Connection `id`'s handshake, if it still waits for its real server. */
  get(id: number): ProxyHandshake | undefined {
    const handshake = this.handshakes.get(id);
    if (handshake === undefined || this.waiting(id)) return handshake;
    this.handshakes.delete(id);
    return undefined;
  }

  end(id: number): void {
    this.handshakes.delete(id);
  }
}
