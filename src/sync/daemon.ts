// The running sync daemons: the pure master and backup roles (src/core/sync) on real sockets and
// timers. A master takes the engine's connection changes and multicasts sync messages on the
// kernel's schedule (a full message 20 ms after it fills, any other within 2 s, checked every 1 s);
// a backup receives, checks and counts datagrams and hands good connections to a callback.

import type { Clock } from '../core/clock.js';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { SyncDaemonConfig } from '../core/ops.js';
import { SyncBackup, type SyncBackupStats } from '../core/sync/backup.js';
import { isMulticastAddr, resolveSyncMaxLen } from '../core/sync/config.js';
import type { SyncConn } from '../core/sync/conn.js';
import { SyncMaster, type SyncChange, type SyncMasterStats, type SyncTuning } from '../core/sync/master.js';
import { onLink, systemInterfaces, type InterfaceLookup, type NetInterface } from './interfaces.js';
import {
  udpTransport,
  type SyncEndpoint,
  type SyncReceiver,
  type SyncSender,
  type SyncTransport,
} from './transport.js';

/** IPVS_SYNC_CHECK_PERIOD: how often the master looks for a message that has waited long enough. */
const CHECK_PERIOD_MS = 1000;
/** IPVS_SYNC_SEND_DELAY: a full message goes out this soon. */
const SEND_DELAY_MS = 20;

const systemClock: Clock = { now: () => performance.now() };

export interface SyncRunOptions {
  clock?: Clock;
  interfaces?: InterfaceLookup;
  transport?: SyncTransport;
}

/**
 * A daemon's settings as start_sync_thread settles them: the interface must exist (else
 * LVS_ERR_NO_DEVICE, "No such device"), the group must be multicast, and a sync_maxlen of 0
 * becomes the default for the interface's MTU while a given one is clamped.
 */
export function resolveSyncConfig(
  config: SyncDaemonConfig,
  interfaces: InterfaceLookup = systemInterfaces,
): { config: SyncDaemonConfig; iface: NetInterface } {
  const iface = interfaces(config.mcastInterface);
  if (!iface) throw new LvsError(ErrorCodes.NO_DEVICE, `no such device: ${config.mcastInterface}`);
  if (!isMulticastAddr(config.mcastGroup))
    throw new LvsError(ErrorCodes.INVALID, 'the sync group must be a multicast address');
  const syncMaxLen = resolveSyncMaxLen(config.state, config.syncMaxLen, iface.mtu, config.mcastGroup.af);
  return { config: { ...config, syncMaxLen }, iface };
}

function endpointOf(config: SyncDaemonConfig, iface: NetInterface): SyncEndpoint {
  return { iface, group: config.mcastGroup, port: config.mcastPort, ttl: config.mcastTtl };
}

export interface MasterDaemonStats extends SyncMasterStats {
  /** Messages and bytes the socket took; messages it refused. */
  sent: number;
  sentBytes: number;
  sendFailures: number;
  /** Clock time of the last message sent, or null. */
  lastSentAt: number | null;
}

export interface MasterDaemonOptions extends SyncRunOptions {
  tuning?: Partial<SyncTuning>;
  maxTracked?: number;
}

export class MasterSyncDaemon {
  private readonly timer: NodeJS.Timeout;
  private sendTimer: NodeJS.Timeout | null = null;
  private sending: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly counters = { sent: 0, sentBytes: 0, sendFailures: 0, lastSentAt: null as number | null };

  private constructor(
    readonly config: SyncDaemonConfig,
    private readonly master: SyncMaster,
    private readonly sender: SyncSender,
    private readonly clock: Clock,
  ) {
    master.onReady = () => {
      this.sendTimer ??= setTimeout(() => {
        this.sendTimer = null;
        this.sendDue();
      }, SEND_DELAY_MS).unref();
    };
    this.timer = setInterval(() => this.sendDue(), CHECK_PERIOD_MS).unref();
  }

  /** Opens the sending socket; rejects (nothing left open) when the interface or socket cannot serve. */
  static async start(config: SyncDaemonConfig, options: MasterDaemonOptions = {}): Promise<MasterSyncDaemon> {
    if (config.state !== 'master') throw new LvsError(ErrorCodes.INVALID, 'not a master sync daemon');
    const clock = options.clock ?? systemClock;
    const resolved = resolveSyncConfig(config, options.interfaces);
    const sender = await (options.transport ?? udpTransport).openSender(
      endpointOf(resolved.config, resolved.iface),
    );
    const master = new SyncMaster({
      syncId: resolved.config.syncId,
      maxLen: resolved.config.syncMaxLen,
      clock,
      tuning: options.tuning,
      maxTracked: options.maxTracked,
    });
    return new MasterSyncDaemon(resolved.config, master, sender, clock);
  }

  /** A connection change from the engine (see SyncChange); cheap, never throws for a record. */
  handle(change: SyncChange): void {
    if (!this.stopped) this.master.handle(change);
  }

  /**
   * Connections already chosen on the kernel's schedule where the table lives (the engine's
   * SyncSource): put into messages as they come, sent when full or within the flush time.
   */
  queue(conns: Iterable<SyncConn>): void {
    if (!this.stopped) this.master.syncAll(conns);
  }

  /** Sends every given connection now, whatever the schedule (a whole table). */
  syncAll(conns: Iterable<SyncConn>): void {
    if (this.stopped) return;
    this.master.syncAll(conns);
    this.sendAll();
  }

  stats(): MasterDaemonStats {
    return { ...this.master.stats(), ...this.counters };
  }

  /** Sends what is pending, then closes the socket. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    clearInterval(this.timer);
    if (this.sendTimer) clearTimeout(this.sendTimer);
    this.sendAll();
    this.stopped = true;
    await this.sending;
    await this.sender.close();
  }

  private sendDue(): void {
    this.send(this.master.takeReady());
  }

  private sendAll(): void {
    this.send(this.master.takeAll());
  }

  /** Messages go out one after another, in order. */
  private send(messages: Uint8Array[]): void {
    if (messages.length === 0 || this.stopped) return;
    this.sending = this.sending.then(async () => {
      for (const message of messages) {
        const sent = await this.sender.send(message).catch(() => false);
        if (sent) {
          this.counters.sent++;
          this.counters.sentBytes += message.length;
          this.counters.lastSentAt = this.clock.now();
        } else {
          this.counters.sendFailures++;
        }
      }
    });
  }
}

export interface BackupDaemonStats extends SyncBackupStats {
  /** Socket errors while receiving; deliveries the callback threw on. */
  receiveErrors: number;
  deliverErrors: number;
  /** IPv4 datagrams from a source on none of the sync interface's networks, dropped unread. */
  wrongInterface: number;
}

/** A source off the interface's networks looks the interface up again, at most this often. */
const RELOOK_MS = 1000;

export interface BackupDaemonOptions extends SyncRunOptions {
  knownPe?: (name: string) => boolean;
}

export class BackupSyncDaemon {
  private readonly errors = { receiveErrors: 0, deliverErrors: 0, wrongInterface: 0 };
  private iface: NetInterface | null = null;
  private lookedUpAt = -Infinity;
  private stopped = false;
  private receiver: SyncReceiver | null = null;
  private readonly backup: SyncBackup;

  private constructor(
    readonly config: SyncDaemonConfig,
    clock: Clock,
    deliver: (conns: SyncConn[]) => void,
    knownPe: ((name: string) => boolean) | undefined,
  ) {
    this.backup = new SyncBackup({
      syncId: config.syncId,
      maxLen: config.syncMaxLen,
      clock,
      knownPe,
      deliver: (conns) => {
        try {
          deliver(conns);
        } catch {
          this.errors.deliverErrors++;
        }
      },
    });
  }

  /** Joins the group; `deliver` gets the connections of each good message. */
  static async start(
    config: SyncDaemonConfig,
    deliver: (conns: SyncConn[]) => void,
    options: BackupDaemonOptions = {},
  ): Promise<BackupSyncDaemon> {
    if (config.state !== 'backup') throw new LvsError(ErrorCodes.INVALID, 'not a backup sync daemon');
    const resolved = resolveSyncConfig(config, options.interfaces);
    const daemon = new BackupSyncDaemon(
      resolved.config,
      options.clock ?? systemClock,
      deliver,
      options.knownPe,
    );
    const clock = options.clock ?? systemClock;
    const lookup = options.interfaces ?? systemInterfaces;
    daemon.iface = resolved.iface;
    const v4 = resolved.config.mcastGroup.af === 4;
    daemon.receiver = await (options.transport ?? udpTransport).openReceiver(
      endpointOf(resolved.config, resolved.iface),
      (datagram, source) => {
        if (daemon.stopped) return;
        if (v4 && !daemon.fromSyncLink(source, lookup, clock)) {
          daemon.errors.wrongInterface++;
          return;
        }
        daemon.backup.receive(datagram);
      },
      () => daemon.errors.receiveErrors++,
    );
    return daemon;
  }

  stats(): BackupDaemonStats {
    return { ...this.backup.stats(), ...this.errors };
  }

  /**
   * Whether a datagram's source is on the sync interface's link. The socket hears the group on
   * every interface where it is joined; the kernel's backup binds its socket to the device. The
   * interface's addresses can change (VRRP adds and removes some): a miss looks them up again.
   */
  private fromSyncLink(source: string, lookup: InterfaceLookup, clock: Clock): boolean {
    if (this.iface && onLink(this.iface, source)) return true;
    if (clock.now() - this.lookedUpAt < RELOOK_MS) return false;
    this.lookedUpAt = clock.now();
    this.iface = lookup(this.config.mcastInterface) ?? this.iface;
    return this.iface !== null && onLink(this.iface, source);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.receiver?.close();
  }
}
