// The control plane talks to the director through an Engine: in the same thread (tests, a
// director without a data plane) or in the data-plane worker that owns the connection table.

import type {
  ConnPage,
  ConnRecord,
  ControlOp,
  EngineEvent,
  HandOver,
  ImportResult,
  Snapshot,
} from './ops.js';
import type { SyncConn } from './sync/conn.js';
import type { FullSyncPageRequest } from './sync/full-sync.js';
import type { SyncTuning } from './sync/master.js';
import type { SyncPage } from './sync/source.js';

export interface Engine {
  /** Applies one operation; rejects with an LvsError (its code intact) and changes nothing when refused. */
  execute(op: ControlOp): Promise<void>;
  snapshot(options: { connections: boolean }): Promise<Snapshot>;
  /** A page of the connection table (Director.connections): rejects with INVALID out of range. */
  connections(from: number, limit: number): Promise<ConnPage>;
  /** Calls `listener` with each event from now on; returns the unsubscribe function. */
  onEvent(listener: (event: EngineEvent) => void): () => void;
  /**
   * The master sync role: from now on, connections to sync (chosen on the kernel's schedule with
   * `tuning`) come as 'sync' events; null stops them.
   */
  setSyncSource(tuning: Partial<SyncTuning> | null): Promise<void>;
  /**
   * A stretch of the connection table as sync records (Director.syncPage), for a full-table sync
   * to a backup that joined: rejects with INVALID out of range.
   */
  syncPage(request: FullSyncPageRequest): Promise<SyncPage>;
  /** The backup sync role: the director holds these connections of a master's. */
  importSynced(conns: SyncConn[]): Promise<ImportResult>;
  /**
   * A stop for a restart, first half: where the engine steers the host's traffic, that traffic is
   * held for at most holdMs (dropped, so that the host does not answer it while no lvsd runs;
   * close() then leaves the hold in place); and every connection and template, as records.
   */
  handOver(holdMs: number): Promise<HandOver>;
  /**
   * The second half, in the next run once its services are in: re-creates the records'
   * connections (Director.importConnections), then ends the hold a previous run left.
   */
  takeOver(records: ConnRecord[]): Promise<ImportResult>;
  close(): Promise<void>;
}
