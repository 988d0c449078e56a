// ip_vs_wlc.c: weighted least connections, the least overhead/weight (compared as products).

import { connOverhead, leastWeightedLoad } from './common.js';
import type { Scheduler } from './types.js';

export const wlcScheduler: Scheduler<null> = {
  name: 'wlc',
  initService: () => null,
  schedule: (_state, svc) => leastWeightedLoad(svc.dests, connOverhead),
};
