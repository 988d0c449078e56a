// What lvsadm asks of lvsd, as one interface: the socket client implements it on the CLI side,
// ControlService implements it in the daemon (and in tests, without a socket).

import type { Addr } from '../core/inet.js';
import type { ControlOp, Snapshot } from '../core/ops.js';

export type SyncState = 'master' | 'backup';

/** A connection-sync daemon as `--start-daemon` configures it; defaults filled in as the kernel does. */
export interface SyncDaemonConfig {
  state: SyncState;
  mcastInterface: string;
  syncId: number;
  syncMaxLen: number;
  mcastGroup: Addr;
  mcastPort: number;
  mcastTtl: number;
}

export interface ControlApi {
  /** Rejects with an LvsError-shaped error ({ code, message }) when the director refuses. */
  execute(op: ControlOp): Promise<void>;
  snapshot(options: { connections: boolean }): Promise<Snapshot>;
  startSyncDaemon(config: SyncDaemonConfig): Promise<void>;
  stopSyncDaemon(state: SyncState): Promise<void>;
  syncDaemons(): Promise<SyncDaemonConfig[]>;
}
