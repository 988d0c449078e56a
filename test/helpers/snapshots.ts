// Snapshots built by hand for tests of what reads them (listings, metrics, host plumbing):
// every field filled with the director's defaults, overridable per test.

import { parseAddr } from '../../src/core/inet.js';
import type { Addr, Family } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import type {
  DataPathCounters,
  DestSnapshot,
  ServiceSnapshot,
  Snapshot,
  StatsSnapshot,
} from '../../src/core/ops.js';
import type { Rates } from '../../src/core/model.js';

export const ip = (text: string): Addr => parseAddr(text)!;

/** Counters as the snapshot carries them (decimal text); bigints for values past 2^53. */
type CounterValue = number | bigint;
export const stats = (
  conns: CounterValue = 0,
  inPkts: CounterValue = 0,
  outPkts: CounterValue = 0,
  inBytes: CounterValue = 0,
  outBytes: CounterValue = 0,
): StatsSnapshot => ({
  conns: String(conns),
  inPkts: String(inPkts),
  outPkts: String(outPkts),
  inBytes: String(inBytes),
  outBytes: String(outBytes),
});
export const rates = (cps = 0, inpps = 0, outpps = 0, inbps = 0, outbps = 0): Rates => ({
  cps,
  inpps,
  outpps,
  inbps,
  outbps,
});

export function dest(addr: string, port: number, extra: Partial<DestSnapshot> = {}): DestSnapshot {
  return {
    addr: ip(addr),
    port,
    method: 'masq',
    weight: extra.weight ?? 1,
    configuredWeight: extra.weight ?? 1,
    scheduled: true,
    admin: 'ready',
    operatorWeight: null,
    health: 'up',
    dynamicWeight: null,
    uThreshold: 0,
    lThreshold: 0,
    activeConns: 0,
    inactConns: 0,
    persistConns: 0,
    stats: stats(),
    rates: rates(),
    ...extra,
  };
}

export function addrKey(protocol: number, addr: string, port: number): ServiceKey {
  const a = ip(addr);
  return { af: a.af, protocol: protocol as ServiceKey['protocol'], addr: a, port, fwmark: 0 };
}

export function markKey(fwmark: number, af: Family): ServiceKey {
  return { af, protocol: 0, addr: af === 4 ? ip('0.0.0.0') : ip('::'), port: 0, fwmark };
}

export function service(
  key: ServiceKey,
  dests: DestSnapshot[],
  extra: Partial<ServiceSnapshot> = {},
): ServiceSnapshot {
  return {
    key,
    settings: { scheduler: 'wlc', flags: 0, timeout: 0, netmaskPrefix: key.af === 4 ? 32 : 128, pe: null },
    stats: stats(),
    rates: rates(),
    dests,
    ...extra,
  };
}

/** The data path's counters, all zero unless given. */
export function dataPath(extra: Partial<DataPathCounters> = {}): DataPathCounters {
  return { forwardedIn: 0, forwardedOut: 0, icmpSent: 0, drops: {}, passed: {}, ...extra };
}

export function snapshot(services: ServiceSnapshot[], extra: Partial<Snapshot> = {}): Snapshot {
  return {
    connTableBuckets: 4096,
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    services,
    dataPath: dataPath(),
    ...extra,
  };
}

/** A masq service on vip:port (or fwmark `fwmark`) with its real servers, as the host plumbing sees it. */
export function serviceSnapshot(
  vip: string,
  protocol: number,
  port: number,
  reals: [string, number][],
  fwmark = 0,
): ServiceSnapshot {
  const key = fwmark > 0 ? markKey(fwmark, ip(vip).af) : addrKey(protocol, vip, port);
  return service(
    key,
    reals.map(([rip, rport]) => dest(rip, rport)),
  );
}
