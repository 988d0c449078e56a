// ip_vs_nq.c: never queue. The first available idle dest (no active connections) if there is
// one, else the shortest expected delay pick: the kernel's single walk returns exactly that.

import { isAvailable, leastWeightedLoad } from './common.js';
import { expectedDelay } from './sed.js';
import type { Scheduler } from './types.js';

export const nqScheduler: Scheduler<null> = {
  name: 'nq',
  initService: () => null,
  schedule(_state, svc) {
    for (const dest of svc.dests) if (isAvailable(dest) && dest.activeConns === 0) return dest;
    return leastWeightedLoad(svc.dests, expectedDelay);
  },
};
