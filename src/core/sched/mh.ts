// ip_vs_mh.c: Maglev hashing. Each dest walks its own permutation of the M = 4093 table slots
// (offset and skip from keyed hashes of its address and port) and takes the next free slot in
// turn, `weight / gcd` slots per round. The client address (and source port with mh-port)
// hashes to a slot. The keys are the kernel's fixed ones, so two directors with the same dests
// build the same table, and it matches a 64-bit Linux director's table.
//
// Slots follow the dest's last non-zero weight (dest->last_weight): quiescing a dest keeps its
// slots, and its clients get no destination, or with mh-fallback a dest further along.

import type { Dest } from '../model.js';
import { SVC_F_SCHED_MH_FALLBACK, SVC_F_SCHED_MH_PORT } from '../model.js';
import { gcdOfPositive, isAvailable } from './common.js';
import { foldAddr, hashablePort, hsiphashU32, sipKeyOfWord, type SipKey } from './hash.js';
import type { Scheduler } from './types.js';

/** primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with the default index 12. */
export const MH_TABLE_SIZE = 4093;
/** IP_VS_MH_TAB_BITS: large weights are shifted down to about this many bits. */
const MH_WEIGHT_BITS = 6;
const OFFSET_KEY = sipKeyOfWord(2654435761);
const SKIP_KEY = sipKeyOfWord(2654446892);

export interface MhState {
  /** Per slot, an index into `slotDests`, or -1 for no dest (the service has none). */
  readonly slots: Int32Array;
  /** The dest list the table was built from. */
  slotDests: Dest[];
  /** dest->last_weight: the weight at add time, then the latest non-zero one. */
  readonly lastWeight: Map<Dest, number>;
}

/** ip_vs_mh_hashkey: hsiphash of (offset + port + folded address) summed as one u32. */
function mhHash(addrWord: number, port: number, offset: number, key: SipKey): number {
  return hsiphashU32((offset + port + addrWord) >>> 0, key);
}

/** The table slot a client (address word, port) starts from after `offset` fallback steps. */
function clientSlot(addrWord: number, port: number, offset: number): number {
  return mhHash(addrWord, port, offset, OFFSET_KEY) % MH_TABLE_SIZE;
}

function rememberWeights(lastWeight: Map<Dest, number>, dests: readonly Dest[]): void {
  const present = new Set(dests);
  for (const dest of lastWeight.keys()) if (!present.has(dest)) lastWeight.delete(dest);
  for (const dest of dests) {
    if (!lastWeight.has(dest) || dest.weight !== 0) lastWeight.set(dest, dest.weight);
  }
}

/** fls(): the 1-based index of the highest set bit, 0 for 0. */
function highestBit(value: number): number {
  return 32 - Math.clz32(value);
}

/** ip_vs_mh_permutate + ip_vs_mh_populate. */
function buildTable(state: MhState, dests: readonly Dest[]): void {
  const { slots, lastWeight } = state;
  state.slotDests = [...dests];
  slots.fill(-1);
  const weights = dests.map((d) => lastWeight.get(d)!);
  const divisor = gcdOfPositive(weights);
  if (divisor < 1) return;
  let maxWeight = 0;
  for (const w of weights) if (w > maxWeight) maxWeight = w;
  const shift = Math.max(0, highestBit(Math.floor(maxWeight / divisor)) - MH_WEIGHT_BITS);

  const n = dests.length;
  const next = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const turns = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const dest = dests[i]!;
    const word = foldAddr(dest.addr);
    next[i] = mhHash(word, dest.port, 0, OFFSET_KEY) % MH_TABLE_SIZE;
    skip[i] = (mhHash(word, dest.port, 0, SKIP_KEY) % (MH_TABLE_SIZE - 1)) + 1;
    const w = weights[i]!;
    turns[i] = Math.floor(w / divisor) >> shift || (w !== 0 ? 1 : 0);
  }

  const taken = new Uint8Array(MH_TABLE_SIZE);
  let filled = 0;
  let count = 0;
  for (;;) {
    for (let i = 0; i < n;) {
      if (turns[i]! < 1) {
        i++;
        continue;
      }
      let slot = next[i]!;
      while (taken[slot]) {
        slot += skip[i]!;
        if (slot >= MH_TABLE_SIZE) slot -= MH_TABLE_SIZE;
      }
      next[i] = slot;
      taken[slot] = 1;
      slots[slot] = i;
      if (++filled === MH_TABLE_SIZE) return;
      if (++count >= turns[i]!) {
        count = 0;
        i++;
      }
    }
  }
}

function createState(dests: readonly Dest[]): MhState {
  const state: MhState = { slots: new Int32Array(MH_TABLE_SIZE), slotDests: [], lastWeight: new Map() };
  rememberWeights(state.lastWeight, dests);
  buildTable(state, dests);
  return state;
}

export const mhScheduler: Scheduler<MhState> = {
  name: 'mh',
  initService: (svc) => createState(svc.dests),
  updateService(state, svc) {
    rememberWeights(state.lastWeight, svc.dests);
    buildTable(state, svc.dests);
  },
  schedule(state, svc, flow) {
    const port = svc.flags & SVC_F_SCHED_MH_PORT ? hashablePort(flow.protocol, flow.sport) : 0;
    const word = foldAddr(flow.saddr);
    const home = clientSlot(word, port, 0);
    const index = state.slots[home]!;
    if (index < 0) return null;
    const dest = state.slotDests[index]!;
    if (isAvailable(dest)) return dest;
    if (!(svc.flags & SVC_F_SCHED_MH_FALLBACK)) return null;
    // ip_vs_mh_get_fallback: rehash with offsets home, home+1, ... until a usable slot.
    for (let offset = 0; offset < MH_TABLE_SIZE; offset++) {
      const probe = state.slots[clientSlot(word, port, (offset + home) % MH_TABLE_SIZE)]!;
      if (probe < 0) return null;
      const candidate = state.slotDests[probe]!;
      if (isAvailable(candidate)) return candidate;
    }
    return null;
  },
};
