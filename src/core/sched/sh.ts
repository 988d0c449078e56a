// ip_vs_sh.c: source hashing. The client address (and source port with sh-port) picks one of
// 256 buckets; each dest holds `weight` consecutive buckets per round. With sh-fallback an
// unavailable bucket's neighbours in hash order are tried; without it there is no destination.

import type { Dest } from '../model.js';
import { SVC_F_SCHED_SH_FALLBACK, SVC_F_SCHED_SH_PORT } from '../model.js';
import { isAvailable } from './common.js';
import { BUCKET_BITS, BUCKET_COUNT, BUCKET_MASK, fillBuckets } from './buckets.js';
import { foldAddr, hash32, hashablePort } from './hash.js';
import type { Scheduler } from './types.js';

export interface ShState {
  buckets: (Dest | null)[];
}

const byWeight = (dest: Dest): number => dest.weight;

export const shScheduler: Scheduler<ShState> = {
  name: 'sh',
  initService: (svc) => ({ buckets: fillBuckets(svc.dests, byWeight) }),
  updateService(state, svc) {
    state.buckets = fillBuckets(svc.dests, byWeight);
  },
  schedule(state, svc, flow) {
    const port = svc.flags & SVC_F_SCHED_SH_PORT ? hashablePort(flow.protocol, flow.sport) : 0;
    // ip_vs_sh_hashkey: hash_32(port + addr), then offset by the probe number.
    const hash = hash32((port + foldAddr(flow.saddr)) >>> 0, BUCKET_BITS);
    const dest = state.buckets[hash]!;
    if (dest === null) return null;
    if (isAvailable(dest)) return dest;
    if (!(svc.flags & SVC_F_SCHED_SH_FALLBACK)) return null;
    // ip_vs_sh_get_fallback: probe offsets ihash, ihash+1, ... so bucket (2*ihash + k) & mask.
    for (let offset = 0; offset < BUCKET_COUNT; offset++) {
      const probe = state.buckets[(((offset + hash) & BUCKET_MASK) + hash) & BUCKET_MASK]!;
      if (probe === null) return null;
      if (isAvailable(probe)) return probe;
    }
    return null;
  },
};
