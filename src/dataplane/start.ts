// What lvsd calls to get its data plane: clean up after a crashed run, then start the worker
// with its TUN device and the host plumbing that steers service traffic through it, and keep
// that plumbing in place while the host changes under it (a firewall reload, a device bounced).

import type { DefenseSettings } from '../core/conn/defense.js';
import type { ExpirySettings } from '../core/conn/expiry.js';
import { DATAPLANE_FORWARDING, type DataplaneKind } from './forwarding.js';
import { NetlinkHostEvents, type HostEvents } from './host-events.js';
import { HostNetwork, RealSystem, type HostRepair } from './host.js';
import { DEFAULT_TUN_MTU, DEFAULT_TUN_NAME } from './tun.js';
import { WorkerEngine } from './worker-engine.js';

export type HostLog = (level: 'warn' | 'error', message: string) => void;

export interface DataplaneOptions {
  /** Where the host journal lives (host-journal.json). */
  stateDir: string;
  tunName?: string;
  mtu?: number;
  connCapacity?: number;
  defense?: Partial<DefenseSettings>;
  expiry?: Partial<ExpirySettings>;
  /** How often the host plumbing is checked against the journal and repaired; 0 never. */
  repairIntervalMs?: number;
  /** Where repairs are reported. */
  log?: HostLog;
  /** The VIPs come and go with VRRP (HostNetworkOptions.floatingVips). */
  floatingVips?: boolean;
  /** 'packet': AF_PACKET rings on the interfaces; 'tun': every service packet through the TUN device. */
  kind: DataplaneKind;
}

export type { DataplaneKind };
export const DATAPLANE_KINDS: readonly DataplaneKind[] = ['packet', 'tun'];

export async function startDataplaneEngine(options: DataplaneOptions): Promise<WorkerEngine> {
  const tunName = options.tunName ?? DEFAULT_TUN_NAME;
  const host = new HostNetwork({
    system: new RealSystem(),
    stateDir: options.stateDir,
    tunName,
    floatingVips: options.floatingVips,
    linkLayer: options.kind === 'packet',
  });
  host.recover();
  const engine = await WorkerEngine.start({
    tun: { name: tunName, mtu: options.mtu ?? DEFAULT_TUN_MTU },
    link: options.kind === 'packet',
    host,
    connCapacity: options.connCapacity,
    defense: options.defense,
    expiry: options.expiry,
    forwarding: DATAPLANE_FORWARDING[options.kind],
  });
  if (options.repairIntervalMs && options.log)
    watchHost(host, options.repairIntervalMs, options.log, new NetlinkHostEvents());
  return engine;
}

/**
 * The kernel does not announce proxy neighbour entries (`ip neigh del proxy` is silent): without
 * an announcement, the whole host is still compared this often.
 */
export const FULL_CHECK_MS = 30_000;

/**
 * Repairs the host every `intervalMs`, logging each change put back, and each change that cannot
 * be put back when that list changes (not every tick). With `events`, a tick compares everything
 * (listing the host: forks of ip and nft) only when the kernel announced a change, or every
 * FULL_CHECK_MS, or while something could not be put back; otherwise only the sysctls, which
 * cost a file read each. After stop() the journal
 * is empty and a tick does nothing, so the timer needs no stopping; it does not keep the process alive.
 */
export function watchHost(host: HostRepair, intervalMs: number, log: HostLog, events?: HostEvents): void {
  let failing = '';
  let sinceFull = Infinity;
  const tick = (): void => {
    sinceFull += intervalMs;
    const announced = events ? events.changed() : true;
    // What could not be put back is tried again every tick.
    const full = announced || failing !== '' || sinceFull >= FULL_CHECK_MS;
    if (full) sinceFull = 0;
    const { repaired, failed } = host.repair(full ? 'all' : 'sysctls');
    for (const what of repaired) log('warn', `host: put back ${what}`);
    const now = failed.join('\n');
    if (now !== failing) for (const what of failed) log('error', `host: cannot put back ${what}`);
    failing = now;
  };
  setInterval(tick, intervalMs).unref();
}
