// Building blocks for scheduler tests and benchmarks: dests, services, flows and a seeded env.

import { ManualClock } from '../../../src/core/clock.js';
import { addr4, IPPROTO_TCP, type Addr } from '../../../src/core/inet.js';
import { Dest, type ServiceView } from '../../../src/core/model.js';
import type { FlowKey, SchedulerEnv } from '../../../src/core/sched/types.js';

export interface DestLoad {
  activeConns?: number;
  inactConns?: number;
  overloaded?: boolean;
}

let nextDestId = 1;

/** A masq dest at 10.0.x.y:80 (x.y from `host`), or at `addr` when given. */
export function makeDest(host: number, weight: number, load: DestLoad = {}, addr?: Addr): Dest {
  const dest = new Dest(nextDestId++, addr ?? addr4(0x0a000000 + host), 80, {
    method: 'masq',
    weight,
    uThreshold: 0,
    lThreshold: 0,
  });
  dest.activeConns = load.activeConns ?? 0;
  dest.inactConns = load.inactConns ?? 0;
  dest.overloaded = load.overloaded ?? false;
  return dest;
}

export interface MutableService extends ServiceView {
  flags: number;
  dests: Dest[];
}

/** A service holding `dests` in list order (newest first, as IPVS keeps them). */
export function makeService(dests: Dest[] = [], flags = 0): MutableService {
  return { af: 4, flags, dests };
}

/** What ipvsadm -a does to the list: the new dest goes first. */
export function addDest(svc: MutableService, dest: Dest): void {
  svc.dests.unshift(dest);
}

/** What ipvsadm -d does: the dest leaves the list and is no longer available. */
export function removeDest(svc: MutableService, dest: Dest): void {
  svc.dests.splice(svc.dests.indexOf(dest), 1);
  dest.available = false;
}

/** mulberry32: a small deterministic PRNG in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface TestEnv extends SchedulerEnv {
  readonly clock: ManualClock;
}

export function makeEnv(seed = 1): TestEnv {
  return { clock: new ManualClock(0), random: seededRandom(seed) };
}

/** A TCP flow from saddr:sport to daddr:80. */
export function makeFlow(saddr: number, sport = 40000, daddr = 0xc0a80001): FlowKey {
  return {
    af: 4,
    protocol: IPPROTO_TCP,
    saddr: addr4(saddr),
    sport,
    daddr: addr4(daddr),
    dport: 80,
  };
}
