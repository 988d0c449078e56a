// Puts a Stats counter at any value, as only tests need (the director only adds to them): how a
// test gets a counter past 2^53 or next to 2^64 without counting that many packets.

import { COUNTERS, type Counter, type Stats } from '../../src/core/model.js';

/** Sets `counter` to `value` modulo 2^64, as its two words. */
export function setCounter(stats: Stats, counter: Counter, value: bigint): void {
  const u64 = BigInt.asUintN(64, value);
  const i = COUNTERS.indexOf(counter) * 2;
  stats.words[i] = Number(u64 & 0xffff_ffffn);
  stats.words[i + 1] = Number(u64 >> 32n);
}
