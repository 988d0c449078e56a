// ip_vs_dh.c: destination hashing. The packet's destination address picks one of 256 buckets,
// dealt to the dests one each in turn; an unavailable bucket means no destination.

import type { Dest } from '../model.js';
import { isAvailable } from './common.js';
import { BUCKET_BITS, fillBuckets } from './buckets.js';
import { foldAddr, hash32 } from './hash.js';
import type { Scheduler } from './types.js';

export interface DhState {
  buckets: (Dest | null)[];
}

const oneEach = (): number => 1;

export const dhScheduler: Scheduler<DhState> = {
  name: 'dh',
  initService: (svc) => ({ buckets: fillBuckets(svc.dests, oneEach) }),
  updateService(state, svc) {
    state.buckets = fillBuckets(svc.dests, oneEach);
  },
  schedule(state, _svc, flow) {
    const dest = state.buckets[hash32(foldAddr(flow.daddr), BUCKET_BITS)]!;
    return dest !== null && isAvailable(dest) ? dest : null;
  },
};
