// The 256-bucket tables of the dh and sh schedulers (IP_VS_{DH,SH}_TAB_BITS = 8), filled by
// walking the dest list round and round from its head.

import type { Dest } from '../model.js';

export const BUCKET_BITS = 8;
export const BUCKET_COUNT = 1 << BUCKET_BITS;
export const BUCKET_MASK = BUCKET_COUNT - 1;

/**
 * Each dest takes `share(dest)` consecutive buckets per round (at least one, as the kernel's
 * `++count >= share` test gives one to a weight-0 dest); an empty list leaves every bucket empty.
 */
export function fillBuckets(dests: readonly Dest[], share: (dest: Dest) => number): (Dest | null)[] {
  const buckets = new Array<Dest | null>(BUCKET_COUNT).fill(null);
  if (dests.length === 0) return buckets;
  let i = 0;
  let count = 0;
  for (let b = 0; b < BUCKET_COUNT; b++) {
    const dest = dests[i]!;
    buckets[b] = dest;
    if (++count >= share(dest)) {
      i = (i + 1) % dests.length;
      count = 0;
    }
  }
  return buckets;
}
