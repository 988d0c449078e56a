// What the director does when its connection table fills up, after IPVS's defense strategies
// (ip_vs_ctl.c's update_defense_level and defense_work) and conntrack's early drop:
// - drop_entry: once a second, evict the half-open entries found in 1/32 of the hash buckets,
//   chosen at random (ip_vs_random_dropentry), sparing handshakes under way;
// - secure_tcp: track TCP with the stricter state table (tcp_states_dos) and short half-open
//   timeouts;
// - early drop: a new connection that finds the table full evicts the idlest of a few half-open
//   entries sampled at random instead of being refused (nf_conntrack's early_drop);
// - the SYN proxy: answer SYNs with cookies, so that a flood reaches neither the table nor the
//   real servers (src/core/syn-proxy.ts); switched on by unanswered handshakes, not by the table.
// The kernel switches its automatic modes on when free memory runs low; lvsd's table is bounded,
// so the pressure here is the share of the table in use. Established connections are never evicted.

import { ErrorCodes, LvsError } from '../errors.js';

/**
 * A strategy's mode, as the kernel's sysctls: 0 never, 1 automatic and off now, 2 automatic and
 * on now (the table is under pressure), 3 always on.
 */
export type DefenseMode = 0 | 1 | 2 | 3;

export interface DefenseSettings {
  dropEntry: DefenseMode;
  secureTcp: DefenseMode;
  /** Share of the capacity in use, in percent, at which the automatic modes switch on. */
  thresholdPercent: number;
  /** Evict a half-open entry for a new connection when the table is full. */
  earlyDrop: boolean;
  /** Answer the SYNs of IPv4 NAT services with SYN cookies. */
  synProxy: DefenseMode;
  /** Handshakes left unanswered within a defense period that switch the SYN proxy's mode 1 on. */
  synProxyThreshold: number;
}

/**
 * The kernel ships drop_entry and secure_tcp off, since its table only ends with memory; lvsd's
 * table has a fixed size, so both are automatic by default.
 */
export const DEFAULT_DEFENSE: Readonly<DefenseSettings> = {
  dropEntry: 1,
  secureTcp: 1,
  thresholdPercent: 90,
  earlyDrop: true,
  synProxy: 1,
  synProxyThreshold: 1000,
};

/** The defense as `lvsadm -L --json` shows it. */
export interface DefenseSnapshot extends DefenseSettings {
  /** Half-open entries evicted by drop_entry's random scans. */
  droppedEntries: number;
  /** Times secure_tcp switched on by itself. */
  secureTcpActivations: number;
  /** SYNs answered with a cookie, ACKs that returned a good one, and ACKs of no connection whose cookie was wrong or old. */
  cookiesSent: number;
  cookiesAccepted: number;
  cookiesRejected: number;
  /** SYNs left unanswered while the data plane could not keep up, to be answered on their retransmission. */
  synsShed: number;
  /** Times the SYN proxy switched on by itself. */
  synProxyActivations: number;
}

/** How often the defense level is checked, as the kernel's DEFENSE_TIMER_PERIOD. */
export const DEFENSE_PERIOD_MS = 1000;

/** What the defense needs of the connection table. */
export interface DefendedTable {
  readonly capacity: number;
  readonly size: number;
  readonly buckets: number;
  secureTcp: boolean;
  earlyDrop: boolean;
  /** TCP connections created so far, and those of them that completed their handshake. */
  readonly tcpOpened: number;
  readonly handshakes: number;
  /** Evicts the half-open entries chained in `count` random buckets; returns how many. */
  dropHalfOpen(count: number): number;
}

function isMode(value: unknown): value is DefenseMode {
  return value === 0 || value === 1 || value === 2 || value === 3;
}

/** Settings from a partial set over the defaults, or an INVALID error naming what is wrong. */
export function defenseSettings(partial: Partial<DefenseSettings> = {}): DefenseSettings {
  const settings = { ...DEFAULT_DEFENSE, ...partial };
  for (const [name, sysctl] of [
    ['dropEntry', 'drop_entry'],
    ['secureTcp', 'secure_tcp'],
    ['synProxy', 'syn_proxy'],
  ] as const) {
    // 2 is a state the automatic mode reaches, not a setting.
    if (!isMode(settings[name]) || settings[name] === 2) {
      throw new LvsError(ErrorCodes.INVALID, `${sysctl} must be 0 (off), 1 (automatic) or 3 (always)`);
    }
  }
  const { thresholdPercent } = settings;
  if (!Number.isInteger(thresholdPercent) || thresholdPercent < 1 || thresholdPercent > 100) {
    throw new LvsError(ErrorCodes.INVALID, 'the defense threshold must be a percentage, 1..100');
  }
  const { synProxyThreshold } = settings;
  if (!Number.isInteger(synProxyThreshold) || synProxyThreshold < 1 || synProxyThreshold > 1e9) {
    throw new LvsError(
      ErrorCodes.INVALID,
      'the SYN proxy threshold must be a whole number of handshakes, 1..1000000000',
    );
  }
  if (typeof settings.earlyDrop !== 'boolean') {
    throw new LvsError(ErrorCodes.INVALID, 'earlyDrop must be true or false');
  }
  return settings;
}

/** update_defense_level for one strategy: the automatic modes follow the pressure. */
export function nextMode(mode: DefenseMode, pressure: boolean): DefenseMode {
  if (mode === 1 || mode === 2) return pressure ? 2 : 1;
  return mode;
}

export class Defense {
  private readonly settings: DefenseSettings;
  private droppedEntries = 0;
  private secureTcpActivations = 0;
  private synProxyActivations = 0;
  private lastCheckMs = -Infinity;
  cookiesSent = 0;
  cookiesAccepted = 0;
  cookiesRejected = 0;
  synsShed = 0;
  /** Whether SYNs are answered with cookies now (mode 2 or 3). */
  synProxyOn: boolean;
  /** The counters at the last check: what a period added is the difference. */
  private seen = { opened: 0, handshakes: 0, cookiesSent: 0, cookiesAccepted: 0, synsShed: 0 };

  constructor(
    private readonly table: DefendedTable,
    settings: DefenseSettings,
  ) {
    this.settings = { ...settings };
    table.earlyDrop = settings.earlyDrop;
    table.secureTcp = settings.secureTcp === 3;
    this.synProxyOn = settings.synProxy === 3;
  }

  /** defense_work: at most once a period, re-evaluate the modes, then scan if drop_entry is on. */
  tick(nowMs: number): void {
    if (nowMs - this.lastCheckMs < DEFENSE_PERIOD_MS) return;
    this.lastCheckMs = nowMs;
    const { table, settings } = this;
    const pressure = table.size * 100 >= table.capacity * settings.thresholdPercent;
    settings.dropEntry = nextMode(settings.dropEntry, pressure);
    const secureTcp = nextMode(settings.secureTcp, pressure);
    if (secureTcp === 2 && settings.secureTcp !== 2) this.secureTcpActivations++;
    settings.secureTcp = secureTcp;
    table.secureTcp = secureTcp >= 2;
    const flood = this.unansweredHandshakes() >= settings.synProxyThreshold;
    this.seen = {
      opened: table.tcpOpened,
      handshakes: table.handshakes,
      cookiesSent: this.cookiesSent,
      cookiesAccepted: this.cookiesAccepted,
      synsShed: this.synsShed,
    };
    this.setSynProxy(nextMode(settings.synProxy, flood));
    // ip_vs_random_dropentry scans 1/32 of the table every second.
    if (settings.dropEntry >= 2) this.droppedEntries += table.dropHalfOpen(Math.max(1, table.buckets >> 5));
  }

  /** Whether cookies are ever sent (and so ACKs bringing one back are looked at): mode 1, 2 or 3. */
  get synProxyEnabled(): boolean {
    return this.settings.synProxy !== 0;
  }

  /**
   * Handshakes begun since the last check and not completed: SYNs that made an entry but no
   * established connection, and cookies sent that no ACK brought back. A flood's spoofed sources
   * never answer; real clients do, within a round trip.
   */
  private unansweredHandshakes(): number {
    const { table, seen } = this;
    return (
      table.tcpOpened -
      seen.opened -
      (table.handshakes - seen.handshakes) +
      (this.cookiesSent - seen.cookiesSent) -
      (this.cookiesAccepted - seen.cookiesAccepted) +
      (this.synsShed - seen.synsShed)
    );
  }

  /**
   * Mode 1 between checks, on a SYN that opened a connection: on as soon as the period's
   * unanswered handshakes reach the threshold (a flood at 100,000 a second takes 10 ms to), not
   * at the next check. Off again only at a check, after a quiet period.
   */
  checkSynProxy(): void {
    if (this.settings.synProxy === 1 && this.unansweredHandshakes() >= this.settings.synProxyThreshold) {
      this.setSynProxy(2);
    }
  }

  private setSynProxy(mode: DefenseMode): void {
    if (mode === 2 && this.settings.synProxy !== 2) this.synProxyActivations++;
    this.settings.synProxy = mode;
    this.synProxyOn = mode >= 2;
  }

  snapshot(): DefenseSnapshot {
    return {
      ...this.settings,
      droppedEntries: this.droppedEntries,
      secureTcpActivations: this.secureTcpActivations,
      cookiesSent: this.cookiesSent,
      cookiesAccepted: this.cookiesAccepted,
      cookiesRejected: this.cookiesRejected,
      synsShed: this.synsShed,
      synProxyActivations: this.synProxyActivations,
    };
  }
}
