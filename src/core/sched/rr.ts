// ip_vs_rr.c: round robin over the dest list, skipping quiesced and overloaded dests. The cursor
// survives adds (they go to the list head); when its dest is deleted it steps back to the
// previous survivor, so the next pick is the deleted dest's successor.

import type { Dest, ServiceView } from '../model.js';
import { cursorIndex, isAvailable } from './common.js';
import type { Scheduler } from './types.js';

export interface RrState {
  /** The last dest picked; null is the list head. */
  cursor: Dest | null;
  cursorHint: number;
  /** The dest list as updateService last saw it, to find a deleted cursor's predecessor. */
  known: Dest[];
}

export const rrScheduler: Scheduler<RrState> = {
  name: 'rr',

  initService(svc) {
    return { cursor: null, cursorHint: -1, known: [...svc.dests] };
  },

  updateService(state, svc) {
    const { cursor, known } = state;
    if (cursor !== null && !svc.dests.includes(cursor)) {
      // ip_vs_rr_del_dest: p->next->prev, the entry before the deleted one.
      let i = known.indexOf(cursor) - 1;
      while (i >= 0 && !svc.dests.includes(known[i]!)) i--;
      state.cursor = i >= 0 ? known[i]! : null;
      state.cursorHint = -1;
    }
    state.known = [...svc.dests];
  },

  schedule(state, svc: ServiceView) {
    const dests = svc.dests;
    const n = dests.length;
    const last = cursorIndex(dests, state.cursor, state.cursorHint);
    // From the dest after the cursor round to the cursor itself; from the head, one pass.
    for (let k = 1; k <= n; k++) {
      const i = (last + k) % n;
      const dest = dests[i]!;
      if (isAvailable(dest)) {
        state.cursor = dest;
        state.cursorHint = i;
        return dest;
      }
    }
    return null;
  },
};
