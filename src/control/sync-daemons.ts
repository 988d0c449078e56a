// The connection-sync daemons as `--start-daemon`/`--stop-daemon` record them: at most one
// master and one backup, refused as the kernel refuses. No sync traffic is sent yet.

import { ErrorCodes, LvsError } from '../core/errors.js';
import type { SyncDaemonConfig, SyncState } from '../core/ops.js';

export class SyncDaemons {
  private readonly running = new Map<SyncState, SyncDaemonConfig>();

  start(config: SyncDaemonConfig): void {
    if (this.running.has(config.state)) {
      throw new LvsError(ErrorCodes.DAEMON_RUNNING, `${config.state} sync daemon already running`);
    }
    this.running.set(config.state, config);
  }

  stop(state: SyncState): void {
    if (!this.running.delete(state))
      throw new LvsError(ErrorCodes.NO_DAEMON, `no ${state} sync daemon is running`);
  }

  list(): SyncDaemonConfig[] {
    return [...this.running.values()];
  }
}
