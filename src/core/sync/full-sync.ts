// The master's full-table sync, beyond the kernel (keepalived#1966): when a backup (re)joins, the
// master walks its whole connection table and sends every entry as ordinary sync messages. This is
// the walk's plan, pure: which stretch of table slots to read next and how many entries, paced by
// a token bucket (entries per second, at most one page a tick) and held back while the messages
// already queued are not out, so that neither the packet loop nor the sync socket is swamped.
//
// The walk goes round the slots once from where it is when asked: a request during a walk does
// not start over but goes on to the end of the table and round again to the slot it was at, so
// that every entry alive from the request to the end of the walk is read exactly once, and the
// backups that asked earlier get no entry twice.

import type { Clock } from '../clock.js';
import { MAX_CONN_PAGE } from '../ops.js';

/** The most slots one page may scan (Director.syncPage refuses more). */
export const MAX_SCAN_SLOTS = 1 << 16;

export interface FullSyncSettings {
  /** Entries sent per second at most (the bucket's rate). */
  entriesPerSecond: number;
  /** Entries read in one page at most (the bucket's depth): one page is one turn's work. */
  maxPerPage: number;
  /** Messages waiting to be sent above which no page is read (the socket is behind). */
  maxBacklog: number;
  /** Slots a page scans at most per entry it may take: bounds a page's work on a sparse table. */
  scanFactor: number;
}

export const DEFAULT_FULL_SYNC: FullSyncSettings = {
  entriesPerSecond: 20_000,
  maxPerPage: 1024,
  maxBacklog: 64,
  scanFactor: 16,
};

/** What to read next: live entries in slots [from, to) (to -1: to the table's end), at most `limit`. */
export interface FullSyncPageRequest {
  from: number;
  to: number;
  limit: number;
  /** Slots to scan at most. */
  maxSlots: number;
}

/** What a page gave: how many entries, and the slot to go on from (-1: the range is done). */
export interface FullSyncPageResult {
  count: number;
  next: number;
}

export interface FullSyncStats {
  /** Walks asked for (a request during a walk extends it and counts too). */
  requested: number;
  /** Walks that went round the whole table. */
  completed: number;
  /** Entries read by walks. */
  entries: number;
  pages: number;
  /** Whether a walk is under way. */
  active: boolean;
}

export class FullSyncWalk {
  readonly settings: FullSyncSettings;
  private active = false;
  /** The next slot to read. */
  private cursor = 0;
  /** The slot the walk ends at once it has gone round (it began there). */
  private start = 0;
  /** Whether the walk passed the table's end and is on its second stretch, [0, start). */
  private wrapped = false;
  /** The page asked for and not yet given back. */
  private out: FullSyncPageRequest | null = null;
  private tokens: number;
  private filledAt: number;
  private readonly counters = { requested: 0, completed: 0, entries: 0, pages: 0 };

  constructor(
    private readonly clock: Clock,
    settings: Partial<FullSyncSettings> = {},
  ) {
    const s = { ...DEFAULT_FULL_SYNC, ...settings };
    if (!(s.entriesPerSecond > 0)) throw new RangeError('entriesPerSecond must be > 0');
    if (!Number.isInteger(s.maxPerPage) || s.maxPerPage < 1 || s.maxPerPage > MAX_CONN_PAGE)
      throw new RangeError(`maxPerPage must be 1..${MAX_CONN_PAGE}`);
    if (!Number.isInteger(s.scanFactor) || s.scanFactor < 1) throw new RangeError('scanFactor must be >= 1');
    this.settings = s;
    this.tokens = s.maxPerPage;
    this.filledAt = clock.now();
  }

  /** A backup (re)joined: every entry from now on goes out once, from where the walk is. */
  request(): void {
    this.counters.requested++;
    if (!this.active) {
      this.active = true;
      this.cursor = 0;
    }
    this.start = this.cursor;
    this.wrapped = false;
  }

  get walking(): boolean {
    return this.active;
  }

  /**
   * The page to read now, or null: no walk, a page still out, the socket behind (`backlog`
   * messages waiting), or the rate spent. Call advance() with what the page gave.
   */
  next(backlog: number): FullSyncPageRequest | null {
    if (!this.active || this.out || backlog > this.settings.maxBacklog) return null;
    this.refill();
    const limit = Math.floor(this.tokens);
    if (limit < 1) return null;
    this.out = {
      from: this.cursor,
      to: this.wrapped ? this.start : -1,
      limit,
      maxSlots: Math.min(MAX_SCAN_SLOTS, limit * this.settings.scanFactor),
    };
    return this.out;
  }

  /** What the page asked for by next() gave. */
  advance(result: FullSyncPageResult): void {
    const page = this.out;
    if (!page) return;
    this.out = null;
    this.tokens -= result.count;
    this.counters.entries += result.count;
    this.counters.pages++;
    // Where the page stopped; a request while it was out may have moved the stretch's end past it.
    const reached = result.next >= 0 ? result.next : page.to >= 0 ? page.to : Infinity;
    const stretchEnd = this.wrapped ? this.start : Infinity;
    if (reached < stretchEnd) {
      this.cursor = reached;
      return;
    }
    if (!this.wrapped && this.start > 0) {
      this.wrapped = true;
      this.cursor = 0;
      return;
    }
    this.active = false;
    this.counters.completed++;
  }

  /** The page asked for could not be read (the engine refused): the same page is asked for again. */
  failed(): void {
    this.out = null;
  }

  /** Ends any walk (the master role stops). */
  cancel(): void {
    this.active = false;
    this.out = null;
  }

  stats(): FullSyncStats {
    return { ...this.counters, active: this.active };
  }

  private refill(): void {
    const now = this.clock.now();
    const elapsed = Math.max(0, now - this.filledAt);
    this.filledAt = now;
    this.tokens = Math.min(
      this.settings.maxPerPage,
      this.tokens + (elapsed * this.settings.entriesPerSecond) / 1000,
    );
  }
}
