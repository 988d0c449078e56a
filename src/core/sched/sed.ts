// ip_vs_sed.c: shortest expected delay, (active connections + 1) / weight. Inactive
// connections do not count.

import type { Dest } from '../model.js';
import { leastWeightedLoad } from './common.js';
import type { Scheduler } from './types.js';

/** ip_vs_sed_dest_overhead: the delay a new connection would see, counting itself. */
export function expectedDelay(dest: Dest): number {
  return dest.activeConns + 1;
}

export const sedScheduler: Scheduler<null> = {
  name: 'sed',
  initService: () => null,
  schedule: (_state, svc) => leastWeightedLoad(svc.dests, expectedDelay),
};
