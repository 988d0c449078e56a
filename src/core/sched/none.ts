// The kernel's "none" (ip_vs_ctl.c, since Linux 4.x): a service bound to no scheduler. New
// clients get no destination; only connections that already exist, or a persistence template
// that names a real server, are forwarded. Listed as `none`, as the kernel reports it.

import type { Scheduler } from './types.js';

export const noneScheduler: Scheduler<null> = {
  name: 'none',

  initService() {
    return null;
  },

  schedule() {
    return null;
  },
};
