import {
  SVC_F_SCHED_MH_FALLBACK,
  SVC_F_SCHED_MH_PORT,
  SVC_F_SCHED_SH_FALLBACK,
  SVC_F_SCHED_SH_PORT,
} from '../../../src/core/model.js';
import { BUILTIN_SCHEDULER_NAMES } from '../../../src/core/sched/index.js';
import { hasOverflowRoom } from '../../../src/core/sched/ovf.js';
import { runSchedulerConformance, type ConformanceOptions } from './conformance.js';

const options: Record<(typeof BUILTIN_SCHEDULER_NAMES)[number], ConformanceOptions> = {
  rr: { complete: true },
  wrr: { complete: true },
  lc: { complete: true },
  wlc: { complete: true },
  lblc: { complete: true },
  lblcr: { complete: true },
  dh: { complete: false },
  sh: { complete: false },
  sed: { complete: true },
  nq: { complete: true },
  fo: { complete: true },
  ovf: { complete: true, eligible: hasOverflowRoom },
  mh: { complete: false },
  twos: { complete: true },
  none: { complete: false },
};

for (const name of BUILTIN_SCHEDULER_NAMES) runSchedulerConformance(name, options[name]);
runSchedulerConformance('sh', { complete: false, flags: SVC_F_SCHED_SH_FALLBACK | SVC_F_SCHED_SH_PORT });
runSchedulerConformance('mh', { complete: false, flags: SVC_F_SCHED_MH_FALLBACK | SVC_F_SCHED_MH_PORT });
