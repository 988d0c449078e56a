// The built-in schedulers, registered once when this module is first imported, under their
// ipvsadm -s names.

import { dhScheduler } from './dh.js';
import { foScheduler } from './fo.js';
import { lblcScheduler } from './lblc.js';
import { lblcrScheduler } from './lblcr.js';
import { lcScheduler } from './lc.js';
import { mhScheduler } from './mh.js';
import { noneScheduler } from './none.js';
import { nqScheduler } from './nq.js';
import { ovfScheduler } from './ovf.js';
import { registerScheduler } from './registry.js';
import { rrScheduler } from './rr.js';
import { sedScheduler } from './sed.js';
import { shScheduler } from './sh.js';
import { twosScheduler } from './twos.js';
import { wlcScheduler } from './wlc.js';
import { wrrScheduler } from './wrr.js';

export { findScheduler, schedulerNames } from './registry.js';

/** In the order ipvsadm's man page lists them. */
export const BUILTIN_SCHEDULER_NAMES = [
  'rr',
  'wrr',
  'lc',
  'wlc',
  'lblc',
  'lblcr',
  'dh',
  'sh',
  'sed',
  'nq',
  'fo',
  'ovf',
  'mh',
  'twos',
  'none',
] as const;

registerScheduler(rrScheduler);
registerScheduler(wrrScheduler);
registerScheduler(lcScheduler);
registerScheduler(wlcScheduler);
registerScheduler(lblcScheduler);
registerScheduler(lblcrScheduler);
registerScheduler(dhScheduler);
registerScheduler(shScheduler);
registerScheduler(sedScheduler);
registerScheduler(nqScheduler);
registerScheduler(foScheduler);
registerScheduler(ovfScheduler);
registerScheduler(mhScheduler);
registerScheduler(twosScheduler);
registerScheduler(noneScheduler);
