// ip_vs_lc.c: least connections by overhead, ignoring weights beyond "weight 0 is quiesced".
// Ties go to the earliest dest in the list (strict `<`).

import type { Dest } from '../model.js';
import { connOverhead, isAvailable } from './common.js';
import type { Scheduler } from './types.js';

export const lcScheduler: Scheduler<null> = {
  name: 'lc',
  initService: () => null,
  schedule(_state, svc) {
    let least: Dest | null = null;
    let leastOverhead = 0;
    for (const dest of svc.dests) {
      if (!isAvailable(dest)) continue;
      const overhead = connOverhead(dest);
      if (least === null || overhead < leastOverhead) {
        least = dest;
        leastOverhead = overhead;
      }
    }
    return least;
  },
};
