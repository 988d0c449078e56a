// ip_vs_fo.c: weighted failover, the available dest with the highest weight (the earliest of
// equals).

import type { Dest } from '../model.js';
import type { Scheduler } from './types.js';

export const foScheduler: Scheduler<null> = {
  name: 'fo',
  initService: () => null,
  schedule(_state, svc) {
    let highest: Dest | null = null;
    let highestWeight = 0;
    for (const dest of svc.dests) {
      if (!dest.overloaded && dest.weight > highestWeight) {
        highest = dest;
        highestWeight = dest.weight;
      }
    }
    return highest;
  },
};
