// Fragments without reassembly. Only the first fragment of a datagram carries the ports, so the
// decision taken for it (which real server, or drop) is remembered per datagram and applied to
// the later fragments. Later fragments that overtake the first are held, within bounds, and
// handed back when the first arrives; over a bound they are refused (the caller drops them) and
// when their datagram expires they are dropped. Everything is bounded and driven by the clock.

import type { Clock } from '../clock.js';
import { addrKey } from '../inet.js';
import type { ParsedPacket } from './parse.js';

export interface FragmentTrackerOptions {
  /** How long a datagram is remembered after its first fragment is seen (Linux ipfrag_time: 30 s). */
  timeoutMs?: number;
  /** Datagrams remembered at once; the oldest is forgotten to make room. */
  maxDatagrams?: number;
  /** Fragments held across all datagrams while waiting for their first fragment. */
  maxHeldPackets?: number;
  maxHeldBytes?: number;
}

interface Datagram<T> {
  readonly expiresAt: number;
  decided: boolean;
  decision: T | undefined;
  held: Uint8Array[];
}

const NONE: readonly Uint8Array[] = Object.freeze([]);

/** The datagram a fragment belongs to (RFC 791 / RFC 8200: addresses, identification, protocol). */
export function fragmentKey(p: ParsedPacket): string {
  return `${p.af}|${addrKey(p.saddr)}|${addrKey(p.daddr)}|${p.fragmentId}|${p.protocol}`;
}

export class FragmentTracker<T> {
  private readonly datagrams = new Map<string, Datagram<T>>();
  private readonly timeoutMs: number;
  private readonly maxDatagrams: number;
  private readonly maxHeldPackets: number;
  private readonly maxHeldBytes: number;
  private heldPacketCount = 0;
  private heldByteCount = 0;
  private droppedCount = 0;

  constructor(
    private readonly clock: Clock,
    options: FragmentTrackerOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxDatagrams = options.maxDatagrams ?? 4096;
    this.maxHeldPackets = options.maxHeldPackets ?? 256;
    this.maxHeldBytes = options.maxHeldBytes ?? 1 << 20;
  }

  /** Datagrams remembered. */
  get size(): number {
    return this.datagrams.size;
  }

  get heldPackets(): number {
    return this.heldPacketCount;
  }

  get heldBytes(): number {
    return this.heldByteCount;
  }

  /** Held fragments dropped so far because their datagram expired or was evicted. */
  get droppedHeld(): number {
    return this.droppedCount;
  }

  /**
   * Records the decision for the datagram whose first fragment `p` is, and returns the later
   * fragments held for it (in arrival order), now to be handled with that decision.
   */
  decide(p: ParsedPacket, decision: T): readonly Uint8Array[] {
    const key = fragmentKey(p);
    const datagram = this.lookup(key);
    if (!datagram) {
      this.insert(key, { expiresAt: this.clock.now() + this.timeoutMs, decided: true, decision, held: [] });
      return NONE;
    }
    datagram.decided = true;
    datagram.decision = decision;
    return this.release(datagram);
  }

  /** The decision for the datagram of the later fragment `p`, or undefined if its first has not been seen. */
  decisionFor(p: ParsedPacket): T | undefined {
    const datagram = this.lookup(fragmentKey(p));
    return datagram?.decided ? datagram.decision : undefined;
  }

  /**
   * Holds a later fragment that came before its first one. `packet` must be the caller's own copy:
   * it is kept as is. False when a bound is reached (or the datagram is already decided): drop it.
   */
  hold(p: ParsedPacket, packet: Uint8Array): boolean {
    if (
      this.heldPacketCount + 1 > this.maxHeldPackets ||
      this.heldByteCount + packet.length > this.maxHeldBytes
    ) {
      return false;
    }
    const key = fragmentKey(p);
    let datagram = this.lookup(key);
    if (datagram?.decided) return false;
    if (!datagram) {
      datagram = {
        expiresAt: this.clock.now() + this.timeoutMs,
        decided: false,
        decision: undefined,
        held: [],
      };
      this.insert(key, datagram);
    }
    datagram.held.push(packet);
    this.heldPacketCount++;
    this.heldByteCount += packet.length;
    return true;
  }

  /** Forgets expired datagrams; returns how many held fragments were dropped with them. */
  expire(): number {
    const now = this.clock.now();
    let dropped = 0;
    // Insertion order is expiry order: every datagram lives the same fixed time from its creation.
    for (const [key, datagram] of this.datagrams) {
      if (datagram.expiresAt > now) break;
      dropped += this.forget(key, datagram);
    }
    return dropped;
  }

  private lookup(key: string): Datagram<T> | undefined {
    const datagram = this.datagrams.get(key);
    if (datagram && datagram.expiresAt <= this.clock.now()) {
      this.forget(key, datagram);
      return undefined;
    }
    return datagram;
  }

  private insert(key: string, datagram: Datagram<T>): void {
    if (this.datagrams.size >= this.maxDatagrams) {
      const oldest = this.datagrams.entries().next().value;
      if (oldest) this.forget(oldest[0], oldest[1]);
    }
    this.datagrams.set(key, datagram);
  }

  private release(datagram: Datagram<T>): readonly Uint8Array[] {
    const held = datagram.held;
    if (held.length === 0) return NONE;
    datagram.held = [];
    this.uncount(held);
    return held;
  }

  private forget(key: string, datagram: Datagram<T>): number {
    this.datagrams.delete(key);
    this.uncount(datagram.held);
    this.droppedCount += datagram.held.length;
    return datagram.held.length;
  }

  private uncount(held: readonly Uint8Array[]): void {
    this.heldPacketCount -= held.length;
    for (const packet of held) this.heldByteCount -= packet.length;
  }
}
