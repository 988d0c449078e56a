// The running sync daemons: the pure master and backup roles (src/core/sync) on real sockets and
// timers. A master takes the engine's connection changes and multicasts sync messages on the
// kernel's schedule (a full message 20 ms after it fills, any other within 2 s, checked every 1 s);
// a backup receives, checks and counts datagrams and hands good connections to a callback.
// Beyond the kernel (docs/ha.md): a backup announces itself with a JOIN when it starts and when it
// hears a new lvsd master, and a master that hears a JOIN (or starts) sends its whole table, paced
// (FullSyncWalk); a master also listens on its group for another master on its syncid (split brain).

import { randomInt } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { SyncDaemonConfig } from '../core/ops.js';
import { SyncBackup, type SyncBackupStats } from '../core/sync/backup.js';
import { isMulticastAddr, resolveSyncMaxLen } from '../core/sync/config.js';
import type { SyncConn } from '../core/sync/conn.js';
import {
  FullSyncWalk,
  type FullSyncPageRequest,
  type FullSyncSettings,
  type FullSyncStats,
} from '../core/sync/full-sync.js';
import { SyncMaster, type SyncChange, type SyncMasterStats, type SyncTuning } from '../core/sync/master.js';
import { encodePeerNotice, MasterPeers, type MasterPeerStats } from '../core/sync/peer.js';
import type { SyncPage } from '../core/sync/source.js';
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

/** How often a master announces itself on the group (a MASTER notice). */
const ANNOUNCE_MS = 2000;
/** How often a running full sync reads its next page. */
const FULL_SYNC_TICK_MS = 50;

const systemClock: Clock = { now: () => performance.now() };

/** What a daemon reports for the log: a backup that joined, a full sync done, another master heard. */
export type SyncDaemonLog = (level: 'error' | 'warn' | 'info', message: string) => void;

/** A daemon's instance number, new at every start, in its peer notices. */
function newInstance(): number {
  return randomInt(1, 0xffffffff);
}

export interface SyncRunOptions {
  clock?: Clock;
  interfaces?: InterfaceLookup;
  transport?: SyncTransport;
  log?: SyncDaemonLog;
  /** The daemon's instance in its peer notices (tests); a random one otherwise. */
  instance?: number;
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
  /** Full-table syncs, and the pages the engine refused. */
  fullSync: FullSyncStats & { pageErrors: number };
  /** What the master heard on its group: JOINs, other masters. */
  peers: MasterPeerStats;
}

/** Reads a stretch of the connection table as sync records (the engine's syncPage). */
export type SyncPageReader = (request: FullSyncPageRequest) => Promise<SyncPage>;

export interface MasterDaemonOptions extends SyncRunOptions {
  tuning?: Partial<SyncTuning>;
  maxTracked?: number;
  /**
   * Where the whole table is read for a backup that joins; without it a JOIN is counted and
   * nothing more is sent (the kernel's behaviour).
   */
  readPage?: SyncPageReader;
  fullSync?: Partial<FullSyncSettings>;
}

export class MasterSyncDaemon {
  private readonly timers: NodeJS.Timeout[];
  private sendTimer: NodeJS.Timeout | null = null;
  private sending: Promise<void> = Promise.resolve();
  /** Messages handed to the sending chain and not yet sent: with the master's queue, the backlog. */
  private unsent = 0;
  private stopped = false;
  private receiver: SyncReceiver | null = null;
  private readonly counters = { sent: 0, sentBytes: 0, sendFailures: 0, lastSentAt: null as number | null };
  private readonly walk: FullSyncWalk;
  private pageErrors = 0;
  private readonly peers: MasterPeers;
  private splitBrain = false;
  private readonly log: SyncDaemonLog;

  private constructor(
    readonly config: SyncDaemonConfig,
    private readonly master: SyncMaster,
    private readonly sender: SyncSender,
    private readonly clock: Clock,
    private readonly instance: number,
    private readonly options: MasterDaemonOptions,
  ) {
    this.log = options.log ?? (() => undefined);
    this.walk = new FullSyncWalk(clock, options.fullSync);
    this.peers = new MasterPeers(config.syncId, instance, clock);
    master.onReady = () => {
      this.sendTimer ??= setTimeout(() => {
        this.sendTimer = null;
        this.sendDue();
      }, SEND_DELAY_MS).unref();
    };
    this.timers = [
      setInterval(() => this.sendDue(), CHECK_PERIOD_MS),
      setInterval(() => this.announce(), ANNOUNCE_MS),
      setInterval(() => this.pumpFullSync(), FULL_SYNC_TICK_MS),
    ];
    for (const t of this.timers) t.unref();
  }

  /**
   * Opens the sending socket and the one that hears the group (JOINs, other masters); rejects
   * (nothing left open) when the interface or a socket cannot serve. With `readPage`, the whole
   * table goes out once from the start (a backup may be waiting: this master was just made one).
   */
  static async start(config: SyncDaemonConfig, options: MasterDaemonOptions = {}): Promise<MasterSyncDaemon> {
    if (config.state !== 'master') throw new LvsError(ErrorCodes.INVALID, 'not a master sync daemon');
    const clock = options.clock ?? systemClock;
    const resolved = resolveSyncConfig(config, options.interfaces);
    const transport = options.transport ?? udpTransport;
    const endpoint = endpointOf(resolved.config, resolved.iface);
    const sender = await transport.openSender(endpoint);
    const master = new SyncMaster({
      syncId: resolved.config.syncId,
      maxLen: resolved.config.syncMaxLen,
      clock,
      tuning: options.tuning,
      maxTracked: options.maxTracked,
    });
    const daemon = new MasterSyncDaemon(
      resolved.config,
      master,
      sender,
      clock,
      options.instance ?? newInstance(),
      options,
    );
    // Hearing the group is lvsd's addition: without it the master is the kernel's, and says so.
    daemon.receiver = await transport
      .openReceiver(
        endpoint,
        (datagram, source) => {
          // Our own sends, where the group loops them back (the fake bus; not the kernel with loop off).
          if (source !== resolved.iface.ipv4) daemon.heard(datagram, source);
        },
        () => undefined, // a receive error loses one notice; the next announcement or JOIN repeats it
      )
      .catch((error: unknown) => {
        daemon.log(
          'warn',
          `sync master: cannot hear the group (${(error as Error).message}): ` +
            'backups that join get no whole table, and another master goes unnoticed',
        );
        return null;
      });
    daemon.announce();
    if (options.readPage) daemon.walk.request();
    return daemon;
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
    return {
      ...this.master.stats(),
      ...this.counters,
      fullSync: { ...this.walk.stats(), pageErrors: this.pageErrors },
      peers: this.peers.stats(),
    };
  }

  /** Sends what is pending, then closes the sockets. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    for (const t of this.timers) clearInterval(t);
    if (this.sendTimer) clearTimeout(this.sendTimer);
    this.walk.cancel();
    this.sendAll();
    this.stopped = true;
    await this.sending;
    await this.receiver?.close();
    await this.sender.close();
  }

  private heard(datagram: Uint8Array, source: string): void {
    if (this.stopped) return;
    const heard = this.peers.heard(datagram, source);
    if (heard.kind === 'join') {
      if (!this.options.readPage) return;
      this.log('info', `sync master: a backup joined from ${source}: sending it the whole connection table`);
      this.walk.request();
    } else if (heard.kind === 'peer-master' && heard.started) {
      this.splitBrain = true;
      this.log(
        'error',
        `sync master: SPLIT BRAIN: another master at ${source} sends on syncid ${this.config.syncId}; ` +
          'both directors forward and each keeps its own table (check VRRP between them)',
      );
    }
  }

  /** The MASTER notice; also where a split brain is seen to be over. */
  private announce(): void {
    if (this.splitBrain && !this.peers.stats().peerMasterActive) {
      this.splitBrain = false;
      this.log(
        'warn',
        `sync master: split brain over: no other master heard on syncid ${this.config.syncId}`,
      );
    }
    this.sendNotice(
      encodePeerNotice({ kind: 'master', syncId: this.config.syncId, instance: this.instance }),
    );
  }

  private sendNotice(notice: Uint8Array): void {
    if (this.stopped) return;
    this.sending = this.sending.then(() =>
      this.sender.send(notice).then(
        () => undefined,
        () => undefined,
      ),
    );
  }

  /** One page of a running full sync, when the rate and the socket allow. */
  private pumpFullSync(): void {
    const read = this.options.readPage;
    if (!read || this.stopped) return;
    const request = this.walk.next(this.master.stats().queued + this.unsent);
    if (!request) return;
    read(request).then(
      (page) => {
        if (this.stopped) return;
        this.master.syncAll(page.conns);
        this.walk.advance({ count: page.conns.length, next: page.next });
        if (!this.walk.walking) {
          // The last entries go out now rather than within the flush time.
          this.sendAll();
          const s = this.walk.stats();
          this.log(
            'info',
            `sync master: whole connection table sent (${s.entries} entries in ${s.pages} pages so far)`,
          );
        }
      },
      (error: unknown) => {
        this.pageErrors++;
        this.walk.cancel();
        this.log(
          'warn',
          `sync master: full sync stopped: the engine refused a page: ${(error as Error).message}`,
        );
      },
    );
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
    this.unsent += messages.length;
    this.sending = this.sending.then(async () => {
      for (const message of messages) {
        const sent = await this.sender.send(message).catch(() => false);
        this.unsent--;
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
  /** JOINs sent (asking lvsd masters for their whole table). */
  joinsSent: number;
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
  private sender: SyncSender | null = null;
  private sending: Promise<unknown> = Promise.resolve();
  /** JOINs sent: at the start, then one to each new lvsd master heard. */
  private joins = 0;
  private readonly backup: SyncBackup;
  private readonly join: Uint8Array;
  private readonly log: SyncDaemonLog;

  private constructor(
    readonly config: SyncDaemonConfig,
    clock: Clock,
    deliver: (conns: SyncConn[]) => void,
    options: BackupDaemonOptions,
  ) {
    const log = options.log ?? (() => undefined);
    this.log = log;
    this.join = encodePeerNotice({
      kind: 'join',
      syncId: config.syncId,
      instance: options.instance ?? newInstance(),
    });
    this.backup = new SyncBackup({
      syncId: config.syncId,
      maxLen: config.syncMaxLen,
      clock,
      knownPe: options.knownPe,
      onNewMaster: () => {
        log('info', 'sync backup: a new lvsd master is on the group: asking it for the whole table');
        this.sendJoin();
      },
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
    const clock = options.clock ?? systemClock;
    const daemon = new BackupSyncDaemon(resolved.config, clock, deliver, options);
    const lookup = options.interfaces ?? systemInterfaces;
    const transport = options.transport ?? udpTransport;
    const endpoint = endpointOf(resolved.config, resolved.iface);
    daemon.iface = resolved.iface;
    const v4 = resolved.config.mcastGroup.af === 4;
    daemon.receiver = await transport.openReceiver(
      endpoint,
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
    // Sending JOINs is lvsd's addition: without it the backup is the kernel's, and says so.
    daemon.sender = await transport.openSender(endpoint).catch((error: unknown) => {
      daemon.log(
        'warn',
        `sync backup: cannot send on the group (${(error as Error).message}): no master is asked for its whole table`,
      );
      return null;
    });
    // A master already running hears this and sends its whole table (a kernel master hears nothing).
    daemon.sendJoin();
    return daemon;
  }

  stats(): BackupDaemonStats {
    return { ...this.backup.stats(), ...this.errors, joinsSent: this.joins };
  }

  private sendJoin(): void {
    const sender = this.sender;
    if (!sender || this.stopped) return;
    this.joins++;
    this.sending = this.sending.then(() => sender.send(this.join).catch(() => false));
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
    await this.sending;
    await this.sender?.close();
  }
}
