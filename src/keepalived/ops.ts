// A keepalived configuration as what builds it in the director: ControlOps to apply in order,
// and the Snapshot those ops would leave (what `lvsd check-config` lists as `lvsadm -S -n`).

import { Director } from '../core/director.js';
import type { ControlOp, Snapshot } from '../core/ops.js';
import { realServerPort, type KeepalivedConfig } from './model.js';

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

/**
 * What the director lists after toControlOps on a fresh start: the ops run through a real, empty
 * Director, so the listing cannot drift from what lvsd will hold. The timeouts are those the file
 * sets (0: left as they are, as `--set` reads them), not the fresh director's.
 */
export function toSnapshot(config: KeepalivedConfig): Snapshot {
  // It holds no connection: the smallest table will do.
  const director = new Director({ clock: { now: () => 0 }, connCapacity: 1 });
  for (const op of toControlOps(config)) director.execute(op);
  return {
    ...director.snapshot({ connections: false }),
    timeouts: config.timeouts ?? { tcp: 0, tcpfin: 0, udp: 0 },
  };
}
