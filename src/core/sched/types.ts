// A scheduler is a table of operations registered by name, as IPVS's struct ip_vs_scheduler.
// Its per-service state is built by initService and rebuilt by updateService whenever the
// service's real servers change (added, removed, weight edited), never on each pick.

import type { Clock } from '../clock.js';
import type { Addr, Family } from '../inet.js';
import type { Dest, ServiceView } from '../model.js';

/** The packet fields a scheduler may hash or cache on. */
export interface FlowKey {
  readonly af: Family;
  readonly protocol: number;
  readonly saddr: Addr;
  readonly sport: number;
  readonly daddr: Addr;
  readonly dport: number;
}

/** What a scheduler may use besides the service: time (lblc, lblcr) and randomness (twos). */
export interface SchedulerEnv {
  readonly clock: Clock;
  /** Uniform in [0, 1). */
  random(): number;
}

export interface Scheduler<S = unknown> {
  readonly name: string;
  initService(svc: ServiceView, env: SchedulerEnv): S;
  /** After any change to svc.dests or a dest's weight or thresholds. */
  updateService?(state: S, svc: ServiceView): void;
  /** The chosen real server, or null: "no destination available". */
  schedule(state: S, svc: ServiceView, flow: FlowKey): Dest | null;
}
