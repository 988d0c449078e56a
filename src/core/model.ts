// The director's configuration objects, shaped as IPVS's: a virtual service keyed by
// (protocol, address, port) or by firewall mark, holding its real servers newest first.

import type { Addr, Family, Protocol } from './inet.js';
import type { Scheduler } from './sched/types.js';

export type ForwardMethod = 'masq' | 'local' | 'tunnel' | 'route';

// IP_VS_SVC_F_* as the kernel numbers them; the scheduler flags print by scheduler name.
export const SVC_F_PERSISTENT = 0x0001;
export const SVC_F_HASHED = 0x0002;
export const SVC_F_ONEPACKET = 0x0004;
export const SVC_F_SCHED1 = 0x0008;
export const SVC_F_SCHED2 = 0x0010;
export const SVC_F_SCHED3 = 0x0020;
export const SVC_F_SCHED_SH_FALLBACK = SVC_F_SCHED1;
export const SVC_F_SCHED_SH_PORT = SVC_F_SCHED2;
export const SVC_F_SCHED_MH_FALLBACK = SVC_F_SCHED1;
export const SVC_F_SCHED_MH_PORT = SVC_F_SCHED2;
export const SVC_F_SCHED_MASK = SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3;

/** Bare `-p`: IPVS_SVC_PERSISTENT_TIMEOUT, six minutes. */
export const DEFAULT_PERSISTENT_TIMEOUT = 360;
export const MAX_PERSISTENT_TIMEOUT = 86400 * 31;
export const DEFAULT_SCHEDULER = 'wlc';

/** (protocol, address, port) with fwmark 0, or fwmark > 0 with protocol 0 and a zero address. */
export interface ServiceKey {
  readonly af: Family;
  readonly protocol: Protocol | 0;
  readonly addr: Addr;
  readonly port: number;
  readonly fwmark: number;
}

/** Counters as the kernel keeps them per service and per real server (struct ip_vs_stats). */
export class Stats {
  conns = 0;
  inPkts = 0;
  outPkts = 0;
  inBytes = 0;
  outBytes = 0;

  reset(): void {
    this.conns = this.inPkts = this.outPkts = this.inBytes = this.outBytes = 0;
  }
}

/** Rates from the estimator, already smoothed, per second. */
export interface Rates {
  cps: number;
  inpps: number;
  outpps: number;
  inbps: number;
  outbps: number;
}

export class Dest {
  method: ForwardMethod;
  weight: number;
  uThreshold: number;
  lThreshold: number;
  activeConns = 0;
  inactConns = 0;
  persistConns = 0;
  /** IP_VS_DEST_F_OVERLOAD: set when connections reach uThreshold. */
  overloaded = false;
  /** Cleared when the real server is deleted; its connections then end. */
  available = true;
  readonly stats = new Stats();
  rates: Rates = zeroRates();

  constructor(
    /** Index in the director's destination registry, referenced by connections. */
    readonly id: number,
    readonly addr: Addr,
    readonly port: number,
    settings: DestSettings,
  ) {
    this.method = settings.method;
    this.weight = settings.weight;
    this.uThreshold = settings.uThreshold;
    this.lThreshold = settings.lThreshold;
  }
}

/** IP_VS_CONN_F_TUNNEL_TYPE_*: the encapsulation of a tunnelling (-i) real server. */
export type TunnelType = 'ipip' | 'gue' | 'gre';
/** IP_VS_TUNNEL_ENCAP_FLAG_*: no checksum (the default), checksum, remote checksum offload. */
export type TunnelCsum = 'nocsum' | 'csum' | 'remcsum';

export interface TunnelSettings {
  type: TunnelType;
  /** gue's UDP destination port; 0 for ipip and gre. */
  port: number;
  csum: TunnelCsum;
}

export interface DestSettings {
  method: ForwardMethod;
  weight: number;
  uThreshold: number;
  lThreshold: number;
  /** With method 'tunnel' only; absent means ipip, the kernel's default. */
  tunnel?: TunnelSettings;
}

export interface ServiceSettings {
  scheduler: string;
  /** SVC_F_* bits: persistent, one-packet and the scheduler flags. */
  flags: number;
  /** Persistence timeout in seconds (meaningful with SVC_F_PERSISTENT). */
  timeout: number;
  /** Persistence netmask as a prefix length (32 or 128 for none). */
  netmaskPrefix: number;
  pe: string | null;
}

/** What a scheduler sees of a service. */
export interface ServiceView {
  readonly af: Family;
  readonly flags: number;
  /** Newest first, as IPVS's list_add_rcu leaves them. */
  readonly dests: readonly Dest[];
}

export class Service implements ServiceView {
  settings: ServiceSettings;
  scheduler: Scheduler;
  schedState: unknown;
  /** Newest first. */
  dests: Dest[] = [];
  readonly stats = new Stats();
  rates: Rates = zeroRates();

  constructor(
    readonly id: number,
    readonly key: ServiceKey,
    settings: ServiceSettings,
    scheduler: Scheduler,
    schedState: unknown,
  ) {
    this.settings = settings;
    this.scheduler = scheduler;
    this.schedState = schedState;
  }

  get af(): Family {
    return this.key.af;
  }

  get flags(): number {
    return this.settings.flags;
  }
}

export function zeroRates(): Rates {
  return { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
}
