// The daemon's side of ControlApi: one Engine plus the sync-daemon records, every call
// serialized (whatever client it comes from), and the configuration document kept equal to what
// the engine runs. A change is saved in the same critical section, in the order that keeps the
// two together when the disk or the engine fails:
//   - a removal (-D, -d, -C, --stop-daemon) is saved first and then applied: a failed write
//     changes nothing; an engine refusal puts the saved document back;
//   - an addition or an edit is applied first and then saved: a failed write is undone through
//     the engine (deleting what was just added, editing back what was edited), so nothing is ever
//     recreated and no connection is lost by the undo.
// Either way the client gets the error and what runs, what is listed and what is saved agree.

import type { Engine } from '../core/engine.js';
import type { DestRuntimeChange } from '../core/model.js';
import type {
  ConnPage,
  ControlOp,
  Snapshot,
  SyncDaemonConfig,
  SyncDaemonStatus,
  SyncState,
} from '../core/ops.js';
import type { ControlApi } from './api.js';
import { afterRemoval, afterSyncStop, configFromSnapshot, emptyConfig, planChanges } from './config.js';
import type { ConfigChange, LvsdConfig } from './config.js';
import type { Logger } from './log.js';
import { ProtocolErrorCodes } from './protocol.js';
import { SyncDaemons, type SyncDaemonsOptions } from './sync-daemons.js';

/** Where the configuration is saved (ConfigStore, or a fake). */
export interface ConfigSink {
  readonly file: string;
  save(config: LvsdConfig): Promise<void>;
}

/** The configuration could not be saved, so the change was not made. */
export class StateWriteError extends Error {
  readonly code = ProtocolErrorCodes.STATE_WRITE;

  constructor(file: string, cause: unknown) {
    super(
      `cannot save the configuration to ${file}: ${(cause as Error).message ?? String(cause)}; nothing was changed`,
      {
        cause,
      },
    );
    this.name = 'StateWriteError';
  }
}

/** One entry of a configuration the engine refused; nothing of that configuration was kept. */
export class ConfigApplyError extends Error {
  constructor(
    readonly entry: string,
    readonly change: ConfigChange,
    cause: unknown,
  ) {
    super(`${entry}: ${(cause as Error).message ?? String(cause)}`, { cause });
    this.name = 'ConfigApplyError';
  }
}

export interface ControlServiceOptions {
  /** Without one (tests, the migration's scratch director) nothing is saved. */
  store?: ConfigSink | null;
  log?: Logger;
  /**
   * Run the sync daemons on the engine (lvsd itself); without it they are only recorded, for a
   * scratch service that reads a configuration and runs nothing.
   */
  runSyncDaemons?: boolean;
  /** Options of the sync daemons (tests give fake interfaces and a fake multicast bus). */
  sync?: Omit<SyncDaemonsOptions, 'engine' | 'log'>;
  /** Adds what the engine does not know to snapshots (the health checker's view of real servers). */
  annotateSnapshot?: (snapshot: Snapshot) => Snapshot;
}

export class ControlService implements ControlApi {
  private tail: Promise<unknown> = Promise.resolve();
  private readonly daemons: SyncDaemons;
  private readonly store: ConfigSink | null;
  private readonly log: Logger;
  private readonly annotate: (snapshot: Snapshot) => Snapshot;
  /** The configuration the engine runs, as last committed (saved, when there is a store). */
  private running: LvsdConfig = emptyConfig();

  constructor(
    private readonly engine: Engine,
    options: ControlServiceOptions = {},
  ) {
    this.store = options.store ?? null;
    this.log = options.log ?? (() => undefined);
    this.daemons = new SyncDaemons({
      ...options.sync,
      engine: options.runSyncDaemons ? engine : null,
      log: this.log,
    });
    this.annotate = options.annotateSnapshot ?? ((snapshot) => snapshot);
  }

  private serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async actual(): Promise<LvsdConfig> {
    return configFromSnapshot(await this.engine.snapshot({ connections: false }), this.daemons.list());
  }

  private async save(config: LvsdConfig): Promise<void> {
    if (!this.store) return;
    try {
      await this.store.save(config);
    } catch (err) {
      throw new StateWriteError(this.store.file, err);
    }
  }

  private async applyChange(change: ConfigChange): Promise<void> {
    if (change.kind === 'execute') await this.engine.execute(change.op);
    else if (change.kind === 'start-sync') await this.daemons.start(change.config);
    else await this.daemons.stop(change.state);
  }

  /** Brings the engine back to `target`; what cannot be undone is logged (it should not happen). */
  private async revertTo(target: LvsdConfig): Promise<void> {
    for (const change of planChanges(await this.actual(), target)) {
      await this.applyChange(change).catch((err: unknown) =>
        this.log(
          'error',
          `could not undo ${change.entry}: ${(err as Error).message}; lvsd and its saved configuration differ`,
        ),
      );
    }
  }

  /** Saves what the engine now runs; when that fails, undoes the change through the engine. */
  private async commit(): Promise<void> {
    const next = await this.actual();
    try {
      await this.save(next);
    } catch (err) {
      await this.revertTo(this.running);
      throw err;
    }
    this.running = next;
  }

  /** Saves `predicted` before the removal runs; puts the saved document back if the engine refuses. */
  private async removal(predicted: LvsdConfig, run: () => Promise<void>): Promise<void> {
    await this.save(predicted);
    try {
      await run();
    } catch (err) {
      await this.save(this.running).catch((e: unknown) => this.log('error', (e as Error).message));
      throw err;
    }
    await this.commit();
  }

  execute(op: ControlOp): Promise<void> {
    return this.serialize(async () => {
      // Counters and runtime state (health, drain, the operator's weight) are not configuration.
      if (op.op === 'zero' || op.op === 'set-dest-runtime') return this.engine.execute(op);
      const predicted = afterRemoval(this.running, op);
      if (predicted) return this.removal(predicted, () => this.engine.execute(op));
      await this.engine.execute(op);
      await this.commit();
    });
  }

  snapshot(options: { connections: boolean }): Promise<Snapshot> {
    return this.serialize(async () => this.annotate(await this.engine.snapshot(options)));
  }

  connections(from: number, limit: number): Promise<ConnPage> {
    return this.serialize(() => this.engine.connections(from, limit));
  }

  startSyncDaemon(config: SyncDaemonConfig): Promise<void> {
    return this.serialize(async () => {
      await this.daemons.start(config);
      await this.commit();
    });
  }

  stopSyncDaemon(state: SyncState): Promise<void> {
    return this.serialize(async () => {
      const predicted = afterSyncStop(this.running, state);
      if (predicted) return this.removal(predicted, () => this.daemons.stop(state));
      await this.daemons.stop(state);
      await this.commit();
    });
  }

  async syncDaemons(): Promise<SyncDaemonStatus[]> {
    return this.daemons.status();
  }

  /** Stops the sync daemons (what a master has pending is sent first); the engine is the caller's. */
  close(): Promise<void> {
    return this.serialize(() => this.daemons.close());
  }

  /**
   * Makes the engine run `desired` (at start, and on reload), all or nothing: only what differs
   * is changed (unchanged services and real servers keep their connections and counters); when
   * the engine refuses an entry, or the result cannot be saved, everything goes back to what ran
   * before and the error names the entry. Resolves to the changes made. `addedRuntime`: the
   * runtime state added real servers start in (out of scheduling until their checks place them).
   */
  apply(desired: LvsdConfig, options: { addedRuntime?: DestRuntimeChange } = {}): Promise<ConfigChange[]> {
    return this.serialize(async () => {
      const plan = planChanges(await this.actual(), desired, options);
      for (const change of plan) {
        try {
          await this.applyChange(change);
        } catch (err) {
          await this.revertTo(this.running);
          throw new ConfigApplyError(change.entry, change, err);
        }
      }
      await this.commit();
      return plan;
    });
  }

  /** Waits for the calls already queued. */
  drain(): Promise<void> {
    return this.serialize(async () => undefined);
  }
}
