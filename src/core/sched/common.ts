// Helpers every IPVS scheduler shares: the connection overhead, what "available" means, the
// weighted least-load walk, and the list cursor that rr and wrr keep between picks.

import type { Dest } from '../model.js';

/** ip_vs_dest_conn_overhead: an active connection costs 256 inactive ones. */
export function connOverhead(dest: Dest): number {
  // A multiplication, not `<< 8`, so that huge counters do not wrap to negative int32.
  return dest.activeConns * 256 + dest.inactConns;
}

/** May receive new connections: not quiesced (weight 0) and not over its upper threshold. */
export function isAvailable(dest: Dest): boolean {
  return dest.weight > 0 && !dest.overloaded;
}

export function gcd(a: number, b: number): number {
  while (b !== 0) {
    const r = a % b;
    a = b;
    b = r;
  }
  return a;
}

/** Greatest common divisor of the positive values, 0 when there are none. */
export function gcdOfPositive(values: Iterable<number>): number {
  let g = 0;
  for (const v of values) if (v > 0) g = g > 0 ? gcd(v, g) : v;
  return g;
}

/**
 * The available dest with the least load/weight, as wlc: the first available dest is the
 * candidate, a later one replaces it only when strictly less loaded (`loh*dw > doh*lw`), so ties
 * go to the earliest in the list. Integers stay below 2^53, so the products are exact.
 */
export function leastWeightedLoad(
  dests: readonly Dest[],
  load: (dest: Dest) => number,
  eligible?: (dest: Dest) => boolean,
): Dest | null {
  let least: Dest | null = null;
  let leastLoad = 0;
  for (let i = 0; i < dests.length; i++) {
    const dest = dests[i]!;
    if (!isAvailable(dest) || (eligible !== undefined && !eligible(dest))) continue;
    const destLoad = load(dest);
    if (least === null || leastLoad * dest.weight > destLoad * least.weight) {
      least = dest;
      leastLoad = destLoad;
    }
  }
  return least;
}

/**
 * Where a list cursor stands now: IPVS keeps a pointer into the dest list; here it is a dest and
 * the index where it was last seen, re-found if the list moved (adds go to the front). -1 is the
 * list head, also returned when the dest has left the list.
 */
export function cursorIndex(dests: readonly Dest[], dest: Dest | null, hint: number): number {
  if (dest === null) return -1;
  if (dests[hint] === dest) return hint;
  return dests.indexOf(dest);
}
