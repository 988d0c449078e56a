// ip_vs_ovf.c: overflow. The highest-weight available dest whose active connections do not
// exceed its weight; the next one takes over when it fills up.

import type { Dest } from '../model.js';
import { isAvailable } from './common.js';
import type { Scheduler } from './types.js';

/** A dest ovf may pick: available and not holding more active connections than its weight. */
export function hasOverflowRoom(dest: Dest): boolean {
  return isAvailable(dest) && dest.activeConns <= dest.weight;
}

export const ovfScheduler: Scheduler<null> = {
  name: 'ovf',
  initService: () => null,
  schedule(_state, svc) {
    let highest: Dest | null = null;
    for (const dest of svc.dests) {
      if (hasOverflowRoom(dest) && (highest === null || dest.weight > highest.weight)) highest = dest;
    }
    return highest;
  },
};
