// ip_vs_lblcr.c: locality-based least connections with replication. Each destination address
// maps to a set of dests; the least loaded member serves it, and when that one is overloaded
// (or none is usable) the service-wide wlc pick joins the set. A set unchanged for the
// expiration time sheds its most loaded member.

import type { Clock } from '../clock.js';
import type { Dest } from '../model.js';
import { connOverhead, leastWeightedLoad } from './common.js';
import {
  isLocallyOverloaded,
  LOCALITY_EXPIRATION_MS,
  LocalityCache,
  type LocalityEntry,
} from './locality.js';
import type { Scheduler } from './types.js';

interface LblcrEntry extends LocalityEntry {
  /** Newest member first. */
  readonly members: Dest[];
  lastModified: number;
}

export interface LblcrState {
  readonly clock: Clock;
  readonly cache: LocalityCache<LblcrEntry>;
  /** The service's dests: set members no longer among them are not picked. */
  serviceDests: Set<Dest>;
  readonly inService: (dest: Dest) => boolean;
}

/** ip_vs_dest_set_max: the member with the most overhead/weight, among weights > 0. */
function mostLoaded(members: readonly Dest[]): Dest | null {
  let most: Dest | null = null;
  let mostLoad = 0;
  for (const dest of members) {
    if (dest.weight <= 0) continue;
    const load = connOverhead(dest);
    if (most === null || mostLoad * dest.weight < load * most.weight) {
      most = dest;
      mostLoad = load;
    }
  }
  return most;
}

export const lblcrScheduler: Scheduler<LblcrState> = {
  name: 'lblcr',

  initService(svc, env) {
    const state: LblcrState = {
      clock: env.clock,
      cache: new LocalityCache(env.clock),
      serviceDests: new Set(svc.dests),
      inService: (dest) => state.serviceDests.has(dest),
    };
    return state;
  },

  updateService(state, svc) {
    state.serviceDests = new Set(svc.dests);
  },

  schedule(state, svc, flow) {
    const now = state.clock.now();
    const entry = state.cache.use(flow.daddr);
    if (entry === undefined) {
      const dest = leastWeightedLoad(svc.dests, connOverhead);
      if (dest !== null) state.cache.add(flow.daddr, { members: [dest], lastModified: now, lastUse: now });
      return dest;
    }
    const least = leastWeightedLoad(entry.members, connOverhead, state.inService);
    if (entry.members.length > 1 && now > entry.lastModified + LOCALITY_EXPIRATION_MS) {
      const most = mostLoaded(entry.members);
      if (most !== null) {
        entry.members.splice(entry.members.indexOf(most), 1);
        entry.lastModified = now;
      }
    }
    if (least !== null && !isLocallyOverloaded(least, svc.dests)) return least;
    const dest = leastWeightedLoad(svc.dests, connOverhead);
    if (dest === null) return null;
    if (!entry.members.includes(dest)) {
      entry.members.unshift(dest);
      entry.lastModified = now;
    }
    return dest;
  },
};
