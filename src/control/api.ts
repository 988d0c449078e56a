// What lvsadm asks of lvsd, as one interface: the socket client implements it on the CLI side,
// ControlService implements it in the daemon (and in tests, without a socket).

import type {
  ConnPage,
  ControlOp,
  Snapshot,
  SyncDaemonConfig,
  SyncDaemonStatus,
  SyncState,
} from '../core/ops.js';

export interface ControlApi {
  /** Rejects with an LvsError-shaped error ({ code, message }) when the director refuses. */
  execute(op: ControlOp): Promise<void>;
  snapshot(options: { connections: boolean }): Promise<Snapshot>;
  /** A page of the connection table, so a listing streams it (Director.connections). */
  connections(from: number, limit: number): Promise<ConnPage>;
  startSyncDaemon(config: SyncDaemonConfig): Promise<void>;
  stopSyncDaemon(state: SyncState): Promise<void>;
  /** The running daemons, with their counters where they run. */
  syncDaemons(): Promise<SyncDaemonStatus[]>;
}
