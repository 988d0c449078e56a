// The director's configuration objects, shaped as IPVS's: a virtual service keyed by
// (protocol, address, port) or by firewall mark, holding its real servers newest first.

import type { RealServerRoute } from './forward/types.js';
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
/** The largest IPVS timeout in seconds, for persistence and --set alike (ipvsadm's parse_timeout bound). */
export const MAX_TIMEOUT = 86400 * 31;
export const MAX_PERSISTENT_TIMEOUT = MAX_TIMEOUT;
/** A real server's weight, as the kernel bounds it. */
export const MAX_WEIGHT = 65535;
export const DEFAULT_SCHEDULER = 'wlc';

/** (protocol, address, port) with fwmark 0, or fwmark > 0 with protocol 0 and a zero address. */
export interface ServiceKey {
  readonly af: Family;
  readonly protocol: Protocol | 0;
  readonly addr: Addr;
  readonly port: number;
  readonly fwmark: number;
}

/** The counters of a Stats, in the order ipvsadm's --stats prints them. */
export const COUNTERS = ['conns', 'inPkts', 'outPkts', 'inBytes', 'outBytes'] as const;
export type Counter = (typeof COUNTERS)[number];

const WORD = 0x1_0000_0000;
const CONNS = 0;
const IN_PKTS = 1;
const OUT_PKTS = 2;
const IN_BYTES = 3;
const OUT_BYTES = 4;

/**
 * Counters as the kernel keeps them per service and per real server (struct ip_vs_stats): u64s
 * that wrap at 2^64. A JS number is exact only to 2^53, and BigInt arithmetic would allocate on
 * the packet path, so each counter is two uint32 words and adding to it is integer work plus a
 * rare carry.
 */
export class Stats {
  /** Counter i (COUNTERS order) has its low word at 2i and its high word at 2i + 1. */
  readonly words = new Uint32Array(COUNTERS.length * 2);

  /** A new connection. */
  countConn(): void {
    this.add(CONNS, 1);
  }

  /** Packets and their bytes from client to real server (`packets`, `bytes` below 2^32). */
  countIn(packets: number, bytes: number): void {
    this.add(IN_PKTS, packets);
    this.add(IN_BYTES, bytes);
  }

  /** Packets and their bytes from real server to client (`packets`, `bytes` below 2^32). */
  countOut(packets: number, bytes: number): void {
    this.add(OUT_PKTS, packets);
    this.add(OUT_BYTES, bytes);
  }

  /** A counter's exact value, 0 .. 2^64 - 1. */
  value(counter: Counter): bigint {
    const i = COUNTERS.indexOf(counter) * 2;
    return (BigInt(this.words[i + 1]!) << 32n) | BigInt(this.words[i]!);
  }

  reset(): void {
    this.words.fill(0);
  }

  private add(counter: number, n: number): void {
    const words = this.words;
    const i = counter * 2;
    const low = words[i]! + n;
    // The store keeps low modulo 2^32; the high word's store wraps too, so the counter wraps at 2^64.
    words[i] = low;
    if (low >= WORD) words[i + 1] = words[i + 1]! + 1;
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

/** The operator's say over a real server at run time (HAProxy's ready/drain/maint). */
export type AdminState = 'ready' | 'drain' | 'maint';

/** What a real server's runtime state may change, for the `set-dest-runtime` operation. */
export interface DestRuntimeChange {
  admin?: AdminState;
  /** The operator's weight, kept apart from the configured one; null goes back to it. */
  operatorWeight?: number | null;
  /** What the health checks say (a server without checks stays 'up'). */
  health?: HealthState;
  /** A weight the checks set (misc_dynamic), in place of the configured one; null clears it. */
  dynamicWeight?: number | null;
}

/** 'down-inhibited': failed, but kept listed at weight 0 (keepalived's inhibit_on_failure). */
export type HealthState = 'up' | 'down' | 'down-inhibited';

export class Dest {
  method: ForwardMethod;
  /** The effective weight, which the schedulers use and -Ln shows (see effectiveWeight). */
  weight: number;
  /** The weight the configuration gives (-w), which -S saves. */
  configuredWeight: number;
  admin: AdminState = 'ready';
  operatorWeight: number | null = null;
  health: HealthState = 'up';
  dynamicWeight: number | null = null;
  /** Whether schedulers see it: not in maintenance, not failed (without inhibit_on_failure). */
  scheduled = true;
  uThreshold: number;
  lThreshold: number;
  activeConns = 0;
  inactConns = 0;
  persistConns = 0;
  /** IP_VS_DEST_F_OVERLOAD: set when connections reach uThreshold. */
  overloaded = false;
  /** Cleared when the real server is deleted; its connections then end. */
  available = true;
  /** The host's path to it, for methods that need one (tunnels); set by the data plane's adapter. */
  route: RealServerRoute | null = null;
  /** A tunnelling real server's encapsulation, as configured; null for other methods. */
  tunnel: TunnelSettings | null;
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
    this.tunnel = tunnelOf(settings);
    this.weight = settings.weight;
    this.configuredWeight = settings.weight;
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

/** A tunnel without settings of its own: ipip, the kernel's default type. */
export const IPIP_TUNNEL: Readonly<TunnelSettings> = Object.freeze({ type: 'ipip', port: 0, csum: 'nocsum' });

/** The encapsulation a real server's settings ask for: ipip when a tunnel names none, null when not a tunnel. */
export function tunnelOf(settings: DestSettings): TunnelSettings | null {
  if (settings.method !== 'tunnel') return null;
  return { ...(settings.tunnel ?? IPIP_TUNNEL) };
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

export class Service {
  settings: ServiceSettings;
  scheduler: Scheduler;
  schedState: unknown;
  /** Every configured real server, newest first. */
  dests: Dest[] = [];
  /** What the scheduler sees: the scheduled real servers, in the same order. */
  readonly view: ServiceView & { dests: Dest[] };
  readonly stats = new Stats();
  rates: Rates = zeroRates();
  /** Every real server masquerades, and there is one: the replies cross the director (what the SYN proxy needs). */
  masqueradedOnly = false;

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
    const flags = () => this.settings.flags;
    this.view = {
      af: key.af,
      get flags() {
        return flags();
      },
      dests: [],
    };
  }

  /** After any change to its real servers: what the scheduler sees follows. */
  refreshView(): void {
    this.view.dests = this.dests.filter((d) => d.scheduled);
    this.masqueradedOnly = this.dests.length > 0 && this.dests.every((d) => d.method === 'masq');
  }
}

/**
 * A real server's effective weight and whether it is scheduled, from its configuration, the
 * operator's state and weight, and its health: maintenance and a failed check take it out;
 * drain and an inhibited failure keep it at weight 0; the operator's weight wins over the rest.
 */
export function applyRuntime(dest: Dest): void {
  const out = dest.admin === 'maint' || dest.health === 'down';
  dest.scheduled = !out;
  if (out || dest.admin === 'drain' || dest.health === 'down-inhibited') dest.weight = 0;
  else dest.weight = dest.operatorWeight ?? dest.dynamicWeight ?? dest.configuredWeight;
}

export function zeroRates(): Rates {
  return { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
}
