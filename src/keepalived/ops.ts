// A keepalived configuration as what builds it in the director: ControlOps to apply in order,
// and the Snapshot those ops would leave (what `lvsd check-config` lists as `lvsadm -S -n`).

import type { ControlOp, ServiceSnapshot, Snapshot } from '../core/ops.js';
import { zeroRates } from '../core/model.js';
import { realServerPort, type KeepalivedConfig } from './model.js';

/** A fresh director's connection table size (rules listings do not show it). */
const CONN_TABLE_BUCKETS = 4096;

/**
 * Every service and every real server at its configured weight, as keepalived starts without
 * alpha: lvs_flush first, then lvs_timeouts, then each service followed by its real servers.
 * The sorry server is not among them: it is added only while a quorum is lost.
 */
export function toControlOps(config: KeepalivedConfig): ControlOp[] {
  const ops: ControlOp[] = [];
  if (config.flush) ops.push({ op: 'clear' });
  if (config.timeouts) ops.push({ op: 'set-timeouts', timeouts: { ...config.timeouts } });
  for (const vs of config.virtualServers) {
    for (const key of vs.services) {
      ops.push({ op: 'add-service', key, settings: { ...vs.settings } });
      for (const rs of vs.realServers) {
        ops.push({
          op: 'add-dest',
          key,
          addr: rs.addr,
          port: realServerPort(key, rs.port),
          settings: { ...rs.settings },
        });
      }
    }
  }
  return ops;
}

/** What the director would list after toControlOps on a fresh start: zero counters, no connections. */
export function toSnapshot(config: KeepalivedConfig): Snapshot {
  const zeroStats = () => ({ conns: 0, inPkts: 0, outPkts: 0, inBytes: 0, outBytes: 0 });
  const services: ServiceSnapshot[] = config.virtualServers.flatMap((vs) =>
    vs.services.map((key) => ({
      key,
      settings: { ...vs.settings },
      stats: zeroStats(),
      rates: zeroRates(),
      // Newest first, as the director lists them before sorting.
      dests: vs.realServers
        .map((rs) => ({
          addr: rs.addr,
          port: realServerPort(key, rs.port),
          ...rs.settings,
          configuredWeight: rs.settings.weight,
          scheduled: true,
          admin: 'ready' as const,
          operatorWeight: null,
          health: 'up' as const,
          dynamicWeight: null,
          activeConns: 0,
          inactConns: 0,
          persistConns: 0,
          stats: zeroStats(),
          rates: zeroRates(),
        }))
        .reverse(),
    })),
  );
  return {
    connTableBuckets: CONN_TABLE_BUCKETS,
    timeouts: config.timeouts ?? { tcp: 0, tcpfin: 0, udp: 0 },
    services,
    dataPath: { forwardedIn: 0, forwardedOut: 0, icmpSent: 0, drops: {}, passed: {} },
  };
}
