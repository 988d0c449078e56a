// The connection-sync daemons `--start-daemon`/`--stop-daemon` run: at most one master and one
// backup, refused as the kernel refuses (a missing interface is "No such device"), with
// sync_maxlen settled from the interface MTU as start_sync_thread does. A master multicasts the
// connections the engine reports (chosen on the kernel's schedule where the table lives); a backup
// hands what it receives to the engine, whose director holds them until traffic arrives.

import type { Clock } from '../core/clock.js';
import type { Engine } from '../core/engine.js';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { SyncDaemonConfig, SyncDaemonStats, SyncDaemonStatus, SyncState } from '../core/ops.js';
import type { SyncConn } from '../core/sync/conn.js';
import { BackupSyncDaemon, MasterSyncDaemon, resolveSyncConfig } from '../sync/daemon.js';
import { systemInterfaces, type InterfaceLookup } from '../sync/interfaces.js';
import type { SyncTransport } from '../sync/transport.js';
import type { Logger } from './log.js';

export interface SyncDaemonsOptions {
  interfaces?: InterfaceLookup;
  /**
   * The engine whose connections are synced. Without one the daemons are only recorded: for a
   * scratch service that reads a configuration file and runs nothing.
   */
  engine?: Engine | null;
  transport?: SyncTransport;
  clock?: Clock;
  log?: Logger;
}

interface Running {
  config: SyncDaemonConfig;
  master?: MasterSyncDaemon;
  backup?: BackupSyncDaemon;
}

const systemClock: Clock = { now: () => performance.now() };

export class SyncDaemons {
  private readonly running = new Map<SyncState, Running>();
  private readonly interfaces: InterfaceLookup;
  private readonly engine: Engine | null;
  private readonly clock: Clock;
  private readonly log: Logger;
  /** What the backup's deliveries made of the connections (the engine's ImportResult, summed). */
  private readonly imports = { refused: 0, failed: 0 };

  constructor(private readonly options: SyncDaemonsOptions = {}) {
    this.interfaces = options.interfaces ?? systemInterfaces;
    this.engine = options.engine ?? null;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? (() => undefined);
    this.engine?.onEvent((event) => {
      if (event.kind === 'sync') this.running.get('master')?.master?.queue(event.conns);
    });
  }

  async start(config: SyncDaemonConfig): Promise<void> {
    // The kernel looks the device up before it checks for a running daemon.
    const { config: resolved } = resolveSyncConfig(config, this.interfaces);
    if (this.running.has(config.state)) {
      throw new LvsError(ErrorCodes.DAEMON_RUNNING, `${config.state} sync daemon already running`);
    }
    const engine = this.engine;
    if (!engine) {
      this.running.set(config.state, { config: resolved });
      return;
    }
    const run = {
      interfaces: this.interfaces,
      transport: this.options.transport,
      clock: this.clock,
      log: this.log,
    };
    // Taken before the first await: a second start while this one opens its socket is refused.
    const entry: Running = { config: resolved };
    this.running.set(config.state, entry);
    try {
      if (config.state === 'master') {
        entry.master = await MasterSyncDaemon.start(config, {
          ...run,
          readPage: (request) => engine.syncPage(request),
        });
        await engine.setSyncSource({}).catch(async (error: unknown) => {
          await entry.master!.stop();
          throw error;
        });
      } else {
        entry.backup = await BackupSyncDaemon.start(config, (conns) => this.deliver(engine, conns), run);
      }
    } catch (error) {
      this.running.delete(config.state);
      throw error;
    }
  }

  async stop(state: SyncState): Promise<void> {
    const entry = this.running.get(state);
    if (!entry) throw new LvsError(ErrorCodes.NO_DAEMON, `no ${state} sync daemon is running`);
    this.running.delete(state);
    if (entry.master) {
      await this.engine?.setSyncSource(null).catch(() => undefined);
      await entry.master.stop();
    }
    await entry.backup?.stop();
  }

  /** Stops every daemon (lvsd shutting down); what is pending is sent first. */
  async close(): Promise<void> {
    for (const state of [...this.running.keys()]) await this.stop(state);
  }

  list(): SyncDaemonConfig[] {
    return [...this.running.values()].map((r) => r.config);
  }

  /** The daemons with what each has done so far. */
  status(): SyncDaemonStatus[] {
    return [...this.running.values()].map((r) => {
      const stats = r.master ? this.masterStats(r.master) : r.backup ? this.backupStats(r.backup) : null;
      return stats ? { ...r.config, stats } : { ...r.config };
    });
  }

  private ageOf(at: number | null): number | null {
    return at === null ? null : Math.max(0, Math.round(this.clock.now() - at));
  }

  private masterStats(daemon: MasterSyncDaemon): SyncDaemonStats {
    const s = daemon.stats();
    const droppedBy = { queueFull: s.queueDropped, sendFailed: s.sendFailures, invalid: s.invalid };
    const { requested, completed, entries, active, pageErrors } = s.fullSync;
    return {
      sent: s.sent,
      received: 0,
      dropped: s.queueDropped + s.sendFailures,
      droppedBy,
      conns: s.entries,
      lastMessageAgeMs: this.ageOf(s.lastSentAt),
      fullSync: { requested, completed, entries, active, pageErrors },
      peerMasters: {
        messages: s.peers.peerMasterMessages,
        splitBrains: s.peers.splitBrains,
        active: s.peers.peerMasterActive,
        last: s.peers.lastPeerMaster,
        lastAgeMs: this.ageOf(s.peers.lastPeerMasterAt),
      },
      joins: { heard: s.peers.joins, served: s.peers.joinsServed },
    };
  }

  private backupStats(daemon: BackupSyncDaemon): SyncDaemonStats {
    const s = daemon.stats();
    const droppedBy: Record<string, number> = {
      ...s.dropped,
      receiveErrors: s.receiveErrors,
      wrongInterface: s.wrongInterface,
    };
    const dropped = Object.values(droppedBy).reduce((a, b) => a + b, 0);
    // Connections received but not held (no such service or real server here, table full).
    droppedBy.connsNotHeld = this.imports.refused;
    droppedBy.importFailed = this.imports.failed + s.deliverErrors;
    return {
      sent: 0,
      // Datagrams: those from off the link never reached the message checks.
      received: s.received + s.wrongInterface,
      dropped,
      droppedBy,
      conns: s.conns,
      lastMessageAgeMs: this.ageOf(s.lastMessageAt),
      joins: { sent: s.joinsSent },
    };
  }

  private deliver(engine: Engine, conns: SyncConn[]): void {
    engine.importSynced(conns).then(
      (result) => {
        const { noService, noDest, tableFull } = result.skipped;
        this.imports.refused += noService + noDest + tableFull;
      },
      (error: unknown) => {
        this.imports.failed++;
        this.log('warn', `sync backup: the engine refused received connections: ${(error as Error).message}`);
      },
    );
  }
}
