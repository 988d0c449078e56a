// ip_vs_lblc.c: locality-based least connections. Each destination address (a cache server's
// origin, say) sticks to the dest it was last given, until that dest is quiesced, removed, or
// overloaded while another is half idle; then wlc picks again and the cache follows.
//
// One deliberate difference: the kernel's cached path ignores the upper-threshold overload flag;
// here an over-threshold dest is not reused, as for every other scheduler.

import type { Dest } from '../model.js';
import { connOverhead, isAvailable, leastWeightedLoad } from './common.js';
import { isLocallyOverloaded, LocalityCache, type LocalityEntry } from './locality.js';
import type { Scheduler } from './types.js';

interface LblcEntry extends LocalityEntry {
  dest: Dest;
}

export interface LblcState {
  readonly cache: LocalityCache<LblcEntry>;
  /** The service's dests: a cached dest no longer among them is not used. */
  members: Set<Dest>;
}

export const lblcScheduler: Scheduler<LblcState> = {
  name: 'lblc',

  initService: (svc, env) => ({ cache: new LocalityCache(env.clock), members: new Set(svc.dests) }),

  updateService(state, svc) {
    state.members = new Set(svc.dests);
  },

  schedule(state, svc, flow) {
    const entry = state.cache.use(flow.daddr);
    if (entry !== undefined) {
      const cached = entry.dest;
      if (state.members.has(cached) && isAvailable(cached) && !isLocallyOverloaded(cached, svc.dests)) {
        return cached;
      }
    }
    const dest = leastWeightedLoad(svc.dests, connOverhead);
    if (dest === null) return null;
    if (entry !== undefined) {
      // ip_vs_lblc_new replaces the entry, which it may not re-add to a full table.
      state.cache.delete(flow.daddr);
      entry.dest = dest;
      state.cache.add(flow.daddr, entry);
    } else {
      // The cache stamps lastUse when it stores the entry.
      state.cache.add(flow.daddr, { dest, lastUse: 0 });
    }
    return dest;
  },
};
