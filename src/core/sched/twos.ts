// ip_vs_twos.c: power of two choices. Two weighted random picks among the available dests; the
// second wins only if its overhead/weight is strictly lower.

import type { Dest } from '../model.js';
import { connOverhead, isAvailable } from './common.js';
import type { Scheduler, SchedulerEnv } from './types.js';

export interface TwosState {
  readonly env: SchedulerEnv;
}

/** get_random_u32_below(bound). */
function randomBelow(env: SchedulerEnv, bound: number): number {
  return Math.floor(env.random() * bound);
}

export const twosScheduler: Scheduler<TwosState> = {
  name: 'twos',
  initService: (_svc, env) => ({ env }),
  schedule(state, svc) {
    let totalWeight = 0;
    for (const dest of svc.dests) if (isAvailable(dest)) totalWeight += dest.weight;
    if (totalWeight === 0) return null;
    // The kernel draws from [0, total] inclusive.
    let r1 = randomBelow(state.env, totalWeight + 1);
    let r2 = randomBelow(state.env, totalWeight + 1);
    let first: Dest | null = null;
    let second: Dest | null = null;
    for (const dest of svc.dests) {
      if (!isAvailable(dest)) continue;
      r1 -= dest.weight;
      r2 -= dest.weight;
      if (r1 <= 0 && first === null) first = dest;
      if (r2 <= 0 && second === null) second = dest;
      if (first !== null && second !== null) break;
    }
    // Both draws are at most the total, so the walk always makes both picks.
    const a = first!;
    const b = second!;
    return b.weight * connOverhead(a) > a.weight * connOverhead(b) ? b : a;
  },
};
