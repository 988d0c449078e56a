// An Engine that runs the Director in this thread: for lvsd without a data plane, and for
// tests. The data-plane worker's engine takes its place in lvsd when packets are forwarded.

import type { Director } from '../core/director.js';
import type { Engine } from '../core/engine.js';
import type { ConnPage, ConnRecord, ControlOp, HandOver, ImportResult, Snapshot } from '../core/ops.js';
import type { SyncConn } from '../core/sync/conn.js';
import type { FullSyncPageRequest } from '../core/sync/full-sync.js';
import type { SyncTuning } from '../core/sync/master.js';
import type { SyncPage } from '../core/sync/source.js';

export class InProcessEngine implements Engine {
  private readonly ticker: NodeJS.Timeout | null;

  /** With tickIntervalMs, runs the director's housekeeping (expiry, rate estimator) that often. */
  constructor(
    private readonly director: Director,
    options: { tickIntervalMs?: number } = {},
  ) {
    this.ticker = options.tickIntervalMs ? setInterval(() => director.tick(), options.tickIntervalMs) : null;
    this.ticker?.unref();
  }

  async execute(op: ControlOp): Promise<void> {
    this.director.execute(op);
  }

  async snapshot(options: { connections: boolean }): Promise<Snapshot> {
    return this.director.snapshot(options);
  }

  async connections(from: number, limit: number): Promise<ConnPage> {
    return this.director.connections(from, limit);
  }

  /** No packets move through this engine, so no connection ever needs syncing. */
  async setSyncSource(tuning: Partial<SyncTuning> | null): Promise<void> {
    if (tuning) this.director.startSyncSource(tuning);
    else this.director.stopSyncSource();
  }

  async syncPage(request: FullSyncPageRequest): Promise<SyncPage> {
    return this.director.syncPage(request);
  }

  async importSynced(conns: SyncConn[]): Promise<ImportResult> {
    return this.director.importSynced(conns);
  }

  /** No host traffic goes through this engine: there is nothing to hold. */
  async handOver(_holdMs: number): Promise<HandOver> {
    return { records: this.director.exportConnections(), held: false, holdError: null };
  }

  async takeOver(records: ConnRecord[]): Promise<ImportResult> {
    return this.director.importConnections(records);
  }

  /** The director in this thread cannot fail apart from the daemon: there is nothing to report. */
  onEvent(): () => void {
    return () => undefined;
  }

  async close(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
  }
}
