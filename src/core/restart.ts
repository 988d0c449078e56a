// A restarted director takes over the connection table its previous run saved on stop: the time
// spent down comes off every entry's timer (entries that ran out meanwhile are left out, as they
// would have expired), and the table is taken whole or not at all: one record that this
// configuration cannot hold (its service or real server is gone), or an age that makes no sense
// (saved in the future, or longer ago than any entry could live), refuses all of it.

import { addrEquals, formatAddrPort, IPPROTO_TCP, IPPROTO_UDP } from './inet.js';
import type { ServiceKey } from './model.js';
import type { ConnRecord, ServiceSnapshot } from './ops.js';
import { sameServiceKey } from './services.js';

/** A table as the previous run saved it: its entries' time left counted from savedAtMs (wall clock). */
export interface SavedConnections {
  savedAtMs: number;
  records: readonly ConnRecord[];
}

export interface RestorePlan {
  /** The entries to import, each with the time it has left now. */
  records: ConnRecord[];
  /** Entries whose time ran out while no lvsd ran. */
  expired: number;
  downMs: number;
}

export type RestoreDecision = { ok: true; plan: RestorePlan } | { ok: false; reason: string };

/** What the restarted director is, when it takes the table. */
export interface RestoreTarget {
  /** Wall clock, ms since the epoch. */
  nowMs: number;
  /** Its services, already configured. */
  services: readonly ServiceSnapshot[];
  /** Entries its connection table can still take. */
  room: number;
  /** A table saved longer ago than this is stale. */
  maxAgeMs: number;
}

/**
 * Decides what a restarted director takes over of `saved`; refuses the whole table when any of
 * it cannot be taken.
 */
export function planRestore(saved: SavedConnections, target: RestoreTarget): RestoreDecision {
  const { nowMs, services, room, maxAgeMs } = target;
  const downMs = nowMs - saved.savedAtMs;
  if (downMs < 0) {
    return {
      ok: false,
      reason: `it was saved ${Math.ceil(-downMs / 1000)} s in the future (the clock went back?)`,
    };
  }
  if (downMs > maxAgeMs) {
    return {
      ok: false,
      reason: `it is stale: saved ${Math.floor(downMs / 1000)} s ago, more than ${Math.floor(maxAgeMs / 1000)} s`,
    };
  }
  const records: ConnRecord[] = [];
  let expired = 0;
  for (const [i, r] of saved.records.entries()) {
    const service = services.find((s) => sameServiceKey(s.key, r.service));
    if (!service) {
      return { ok: false, reason: `entry ${i + 1}: no service ${describeService(r.service)} any more` };
    }
    if (!service.dests.some((d) => addrEquals(d.addr, r.daddr) && (d.port === r.dport || d.port === 0))) {
      return {
        ok: false,
        reason: `entry ${i + 1}: service ${describeService(r.service)} has no real server ${formatAddrPort(r.daddr, r.dport)} any more`,
      };
    }
    const expiresMs = r.expiresMs - downMs;
    if (expiresMs <= 0) expired++;
    else records.push({ ...r, expiresMs });
  }
  if (records.length > room) {
    return {
      ok: false,
      reason: `it holds ${records.length} live entries and the connection table has room for ${room} (--conn-capacity)`,
    };
  }
  return { ok: true, plan: { records, expired, downMs } };
}

/** A service as ipvsadm lists it: "TCP 198.18.0.1:80", "FWM 7". */
function describeService(key: ServiceKey): string {
  if (key.fwmark > 0) return `FWM ${key.fwmark}`;
  const protocol = key.protocol === IPPROTO_TCP ? 'TCP' : key.protocol === IPPROTO_UDP ? 'UDP' : 'SCTP';
  return `${protocol} ${formatAddrPort(key.addr, key.port)}`;
}
