// The connection-sync daemons as `--start-daemon`/`--stop-daemon` record them: at most one
// master and one backup, refused as the kernel refuses (a missing interface is "No such device"),
// with sync_maxlen settled from the interface MTU as start_sync_thread does. No sync traffic is
// sent from here yet: src/sync/daemon.ts runs the roles once the engine is wired to them.

import { ErrorCodes, LvsError } from '../core/errors.js';
import type { SyncDaemonConfig, SyncState } from '../core/ops.js';
import { resolveSyncConfig } from '../sync/daemon.js';
import { systemInterfaces, type InterfaceLookup } from '../sync/interfaces.js';

export class SyncDaemons {
  private readonly running = new Map<SyncState, SyncDaemonConfig>();

  constructor(private readonly interfaces: InterfaceLookup = systemInterfaces) {}

  start(config: SyncDaemonConfig): void {
    // The kernel looks the device up before it checks for a running daemon.
    const { config: resolved } = resolveSyncConfig(config, this.interfaces);
    if (this.running.has(config.state)) {
      throw new LvsError(ErrorCodes.DAEMON_RUNNING, `${config.state} sync daemon already running`);
    }
    this.running.set(config.state, resolved);
  }

  stop(state: SyncState): void {
    if (!this.running.delete(state))
      throw new LvsError(ErrorCodes.NO_DAEMON, `no ${state} sync daemon is running`);
  }

  list(): SyncDaemonConfig[] {
    return [...this.running.values()];
  }
}
