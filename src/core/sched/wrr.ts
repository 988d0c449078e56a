// ip_vs_wrr.c: weighted round robin. Pass after pass over the list with a falling weight bar cw
// (from mw down by di = gcd of the weights), picking each dest whose weight reaches the bar.
// Any dest change moves the cursor back to the head and keeps cw where the kernel keeps it.

import type { Dest } from '../model.js';
import { cursorIndex, gcdOfPositive } from './common.js';
import type { Scheduler } from './types.js';

export interface WrrState {
  /** The last dest picked; null is the list head. */
  cursor: Dest | null;
  cursorHint: number;
  /** Current weight bar. */
  cw: number;
  /** Highest bar: max weight - (di - 1), so the last pass has bar 1. */
  mw: number;
  /** Step between passes: gcd of the positive weights, or 1. */
  di: number;
}

function weightStep(dests: readonly Dest[]): number {
  return gcdOfPositive(dests.map((d) => d.weight)) || 1;
}

function maxWeight(dests: readonly Dest[]): number {
  let max = 0;
  for (const d of dests) if (d.weight > max) max = d.weight;
  return max;
}

export const wrrScheduler: Scheduler<WrrState> = {
  name: 'wrr',

  initService(svc) {
    const di = weightStep(svc.dests);
    const mw = maxWeight(svc.dests) - (di - 1);
    return { cursor: null, cursorHint: -1, cw: mw, mw, di };
  },

  updateService(state, svc) {
    state.cursor = null;
    state.cursorHint = -1;
    state.di = weightStep(svc.dests);
    state.mw = maxWeight(svc.dests) - (state.di - 1);
    // ip_vs_wrr_dest_changed keeps the bar unless it is out of range, then aligns it to the step.
    if (state.cw > state.mw || state.cw === 0) state.cw = state.mw;
    else if (state.di > 1) state.cw = Math.floor(state.cw / state.di) * state.di + 1;
  },

  schedule(state, svc) {
    if (state.mw === 0) return null;
    const dests = svc.dests;
    const last = cursorIndex(dests, state.cursor, state.cursorHint);
    // Once the bar has wrapped to mw and come down to the last pass, check the dests before the
    // starting point too, but stop at it: every dest has then been offered bar 1.
    let stop = -2;
    let lastPass = false;
    let restarted = false;
    let i = last;
    for (;;) {
      for (i = i + 1; i < dests.length; i++) {
        const dest = dests[i]!;
        if (!dest.overloaded && dest.weight >= state.cw) {
          state.cursor = dest;
          state.cursorHint = i;
          return dest;
        }
        if (i === stop) {
          state.cursor = dest;
          state.cursorHint = i;
          return null;
        }
      }
      i = -1;
      state.cw -= state.di;
      if (state.cw <= 0) {
        state.cw = state.mw;
        if (lastPass || last === -1) {
          state.cursor = null;
          state.cursorHint = -1;
          return null;
        }
        restarted = true;
      }
      lastPass = state.cw <= state.di;
      if (lastPass && restarted && last !== -1) stop = last;
    }
  },
};
