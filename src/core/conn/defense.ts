// What the director does when its connection table fills up, after IPVS's defense strategies
// (ip_vs_ctl.c's update_defense_level and defense_work) and conntrack's early drop:
// - drop_entry: once a second, evict the half-open entries found in 1/32 of the hash buckets,
//   chosen at random (ip_vs_random_dropentry), sparing handshakes under way;
// - secure_tcp: track TCP with the stricter state table (tcp_states_dos) and short half-open
//   timeouts;
// - early drop: a new connection that finds the table full evicts the idlest of a few half-open
//   entries sampled at random instead of being refused (nf_conntrack's early_drop).
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
};

/** The defense as `lvsadm -L --json` shows it. */
export interface DefenseSnapshot extends DefenseSettings {
  /** Half-open entries evicted by drop_entry's random scans. */
  droppedEntries: number;
  /** Times secure_tcp switched on by itself. */
  secureTcpActivations: number;
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
  private lastCheckMs = -Infinity;

  constructor(
    private readonly table: DefendedTable,
    settings: DefenseSettings,
  ) {
    this.settings = { ...settings };
    table.earlyDrop = settings.earlyDrop;
    table.secureTcp = settings.secureTcp === 3;
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
    // ip_vs_random_dropentry scans 1/32 of the table every second.
    if (settings.dropEntry >= 2) this.droppedEntries += table.dropHalfOpen(Math.max(1, table.buckets >> 5));
  }

  snapshot(): DefenseSnapshot {
    return {
      ...this.settings,
      droppedEntries: this.droppedEntries,
      secureTcpActivations: this.secureTcpActivations,
    };
  }
}
