// What lblc and lblcr share: a cache keyed by the packet's destination address whose entries
// expire when unused, and the "overloaded while another dest is half idle" rule.
//
// The kernel sweeps its tables from a timer (every 60 s, fully every 30 min). The core has no
// timers, so expiry is lazy: an expired entry is dead when looked up, and each lookup also
// collects a few of the least recently used entries. A Map re-inserted on every use keeps that
// order for free.

import type { Clock } from '../clock.js';
import type { Addr } from '../inet.js';
import type { Dest } from '../model.js';

/** lblc_expiration / lblcr_expiration defaults: an entry unused for a day goes. */
export const LOCALITY_EXPIRATION_MS = 24 * 60 * 60 * 1000;
/** ENTRY_TIMEOUT: once the table is over its size, entries unused for 6 minutes go. */
export const LOCALITY_FULL_TIMEOUT_MS = 6 * 60 * 1000;
/** max_size: 16 entries per bucket of the kernel's 1024-bucket table. */
export const LOCALITY_MAX_ENTRIES = 1024 * 16;
/** Stale entries collected per lookup, bounding the work of one schedule call. */
const COLLECT_PER_LOOKUP = 4;

export interface LocalityEntry {
  lastUse: number;
}

function cacheKey(addr: Addr): number | string {
  return addr.af === 4 ? addr.a : `${addr.a}:${addr.b}:${addr.c}:${addr.d}`;
}

export class LocalityCache<E extends LocalityEntry> {
  /** Least recently used first. */
  private readonly entries = new Map<number | string, E>();

  constructor(
    private readonly clock: Clock,
    private readonly expiration = LOCALITY_EXPIRATION_MS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The live entry for this destination address, marked used now. */
  use(addr: Addr): E | undefined {
    const now = this.clock.now();
    this.collect(now);
    const key = cacheKey(addr);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    if (now - entry.lastUse >= this.expiration) return undefined;
    entry.lastUse = now;
    this.entries.set(key, entry);
    return entry;
  }

  /** Stores an entry used now, unless the table is over its size: ip_vs_lblc_new refuses then. */
  add(addr: Addr, entry: E): void {
    if (this.entries.size > LOCALITY_MAX_ENTRIES) return;
    entry.lastUse = this.clock.now();
    this.entries.set(cacheKey(addr), entry);
  }

  delete(addr: Addr): void {
    this.entries.delete(cacheKey(addr));
  }

  private collect(now: number): void {
    let budget = COLLECT_PER_LOOKUP;
    for (const [key, entry] of this.entries) {
      const idle = now - entry.lastUse;
      const stale =
        idle >= this.expiration ||
        (this.entries.size > LOCALITY_MAX_ENTRIES && idle >= LOCALITY_FULL_TIMEOUT_MS);
      if (!stale || --budget < 0) return;
      this.entries.delete(key);
    }
  }
}

/**
 * lblc/lblcr is_overloaded: the dest holds more active connections than its weight while some
 * dest of the service is below half of its own.
 */
export function isLocallyOverloaded(dest: Dest, dests: readonly Dest[]): boolean {
  if (dest.activeConns <= dest.weight) return false;
  for (const d of dests) if (d.activeConns * 2 < d.weight) return true;
  return false;
}
