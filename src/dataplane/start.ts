// What lvsd calls to get its data plane: clean up after a crashed run, then start the worker
// with its TUN device and the host plumbing that steers service traffic through it.

import { HostNetwork, RealSystem } from './host.js';
import { DEFAULT_TUN_MTU, DEFAULT_TUN_NAME } from './tun.js';
import { WorkerEngine } from './worker-engine.js';

export interface DataplaneOptions {
  /** Where the host journal lives (host-journal.json). */
  stateDir: string;
  tunName?: string;
  mtu?: number;
  connCapacity?: number;
}

export async function startDataplaneEngine(options: DataplaneOptions): Promise<WorkerEngine> {
  const tunName = options.tunName ?? DEFAULT_TUN_NAME;
  const host = new HostNetwork({ system: new RealSystem(), stateDir: options.stateDir, tunName });
  host.recover();
  return WorkerEngine.start({
    tun: { name: tunName, mtu: options.mtu ?? DEFAULT_TUN_MTU },
    host,
    connCapacity: options.connCapacity,
  });
}
