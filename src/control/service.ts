// The daemon's side of ControlApi: one Engine plus the sync-daemon records, every call
// serialized (whatever client it comes from), and a hook run after each change while still
// inside the critical section, so the state file always matches the table it describes.

import type { Engine } from '../core/engine.js';
import type { ControlOp, Snapshot, SyncDaemonConfig, SyncState } from '../core/ops.js';
import type { ControlApi } from './api.js';
import { SyncDaemons } from './sync-daemons.js';

export class ControlService implements ControlApi {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly daemons = new SyncDaemons();
  /** Called after each successful change (not after zeroing counters) with the new state. */
  afterChange: ((snapshot: Snapshot, daemons: SyncDaemonConfig[]) => Promise<void>) | null = null;

  constructor(private readonly engine: Engine) {}

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async changed(): Promise<void> {
    if (!this.afterChange) return;
    await this.afterChange(await this.engine.snapshot({ connections: false }), this.daemons.list());
  }

  execute(op: ControlOp): Promise<void> {
    return this.serialize(async () => {
      await this.engine.execute(op);
      if (op.op !== 'zero') await this.changed();
    });
  }

  snapshot(options: { connections: boolean }): Promise<Snapshot> {
    return this.serialize(() => this.engine.snapshot(options));
  }

  startSyncDaemon(config: SyncDaemonConfig): Promise<void> {
    return this.serialize(async () => {
      this.daemons.start(config);
      await this.changed();
    });
  }

  stopSyncDaemon(state: SyncState): Promise<void> {
    return this.serialize(async () => {
      this.daemons.stop(state);
      await this.changed();
    });
  }

  async syncDaemons(): Promise<SyncDaemonConfig[]> {
    return this.daemons.list();
  }

  /** Waits for the calls already queued. */
  drain(): Promise<void> {
    return this.serialize(async () => undefined);
  }
}
