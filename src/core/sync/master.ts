// The master's side of connection sync, as ip_vs_sync_conn / ip_vs_sync_conn_needed decide it:
// on every packet from a client the connection may be queued for the backups, by packet count
// (sync_threshold / sync_period), on TCP and SCTP state changes, with its persistence template,
// and (with sync_refresh_period) again before the backup's copy would expire. Entries fill
// messages of at most sync_maxlen bytes; a message goes out when full or 2 s after its first entry.

import type { Clock } from '../clock.js';
import { addrKey, IPPROTO_SCTP, IPPROTO_TCP } from '../inet.js';
import { S_CLOSE, S_CLOSE_WAIT, S_ESTABLISHED, S_FIN_WAIT, S_TIME_WAIT } from '../conn/tcp-state.js';
import {
  CONN_F_ONE_PACKET,
  CONN_F_TEMPLATE,
  SCTP_S_CLOSED,
  SCTP_S_ESTABLISHED,
  SCTP_S_SHUTDOWN_ACK_SENT,
  SCTP_S_SHUTDOWN_RECEIVED,
  SCTP_S_SHUTDOWN_SENT,
  type SyncConn,
} from './conn.js';
import { SyncMessageBuilder, syncConnProblem } from './message.js';

/** The net.ipv4.vs sync sysctls and sync thread constants (include/net/ip_vs.h), in milliseconds. */
export interface SyncTuning {
  /** sync_threshold[0]: sync when the packet count modulo syncPeriod reaches it (default 3). */
  syncThreshold: number;
  /** sync_threshold[1] (default 50); 0: only once, at syncThreshold packets. */
  syncPeriod: number;
  /** sync_refresh_period (default 0, off): resend only when the backup's timer would drift this much. */
  syncRefreshPeriodMs: number;
  /** sync_retries (0..3, default 0): resends of one refresh at syncRefreshPeriodMs / 8. */
  syncRetries: number;
  /** sync_persist_mode (default off): do not sync connections controlled by a template. */
  syncPersistMode: boolean;
  /** IPVS_SYNC_FLUSH_TIME: an open message waits at most this long. */
  flushMs: number;
  /** sync_qlen_max: full messages waiting to be sent; more are dropped and counted. */
  queueMax: number;
}

export const DEFAULT_SYNC_TUNING: SyncTuning = {
  syncThreshold: 3,
  syncPeriod: 50,
  syncRefreshPeriodMs: 0,
  syncRetries: 0,
  syncPersistMode: false,
  flushMs: 2000,
  queueMax: 1024,
};

/** The kernel's per-connection sync bookkeeping (struct ip_vs_conn's old_state and sync_endtime). */
export interface SyncTrack {
  oldState: number;
  /** When the backup's copy expires if the last sync reached it (ms, the master's clock). */
  syncEndtime: number;
  /** Resends of the current refresh (the low two bits of the kernel's sync_endtime). */
  retries: number;
  /** For a template: the packet count the kernel keeps in its in_pkts, advanced by each controlled packet. */
  inPkts: number;
}

export function newSyncTrack(now: number): SyncTrack {
  return { oldState: 0, syncEndtime: now, retries: 0, inPkts: 0 };
}

const TCP_SYNC_STATES =
  (1 << S_ESTABLISHED) | (1 << S_FIN_WAIT) | (1 << S_CLOSE) | (1 << S_CLOSE_WAIT) | (1 << S_TIME_WAIT);
const SCTP_SYNC_STATES =
  (1 << SCTP_S_ESTABLISHED) |
  (1 << SCTP_S_SHUTDOWN_SENT) |
  (1 << SCTP_S_SHUTDOWN_RECEIVED) |
  (1 << SCTP_S_SHUTDOWN_ACK_SENT) |
  (1 << SCTP_S_CLOSED);

/**
 * ip_vs_sync_conn_needed: whether this packet (the connection's `pkts`-th from the client) sends
 * the connection to the backups; updates `track` when it does.
 */
export function syncNeeded(
  tuning: SyncTuning,
  track: SyncTrack,
  conn: Pick<SyncConn, 'protocol' | 'flags' | 'state' | 'timeoutSec'>,
  pkts: number,
  now: number,
  inPersistence: boolean,
): boolean {
  const template = (conn.flags & CONN_F_TEMPLATE) !== 0;
  const timeoutMs = conn.timeoutSec * 1000;
  let force = false;
  let due = false;
  if (template) {
    force = false;
  } else if (tuning.syncPersistMode && inPersistence) {
    return false;
  } else if (conn.protocol === IPPROTO_TCP || conn.protocol === IPPROTO_SCTP) {
    const states = conn.protocol === IPPROTO_TCP ? TCP_SYNC_STATES : SCTP_SYNC_STATES;
    if (!((1 << conn.state) & states)) return false;
    force = conn.state !== track.oldState;
    const established = conn.protocol === IPPROTO_TCP ? S_ESTABLISHED : SCTP_S_ESTABLISHED;
    // Closing states go out at once; reaching ESTABLISHED waits for the packet count below.
    due = force && conn.state !== established;
  }
  const endtime = now + timeoutMs;
  let retries = 0;
  if (!due) {
    const refresh = tuning.syncRefreshPeriodMs;
    if (refresh > 0) {
      const diff = endtime - track.syncEndtime;
      const minDiff = Math.max(timeoutMs / 2, 10_000);
      // The backup's timer is close enough: resend only as a retry of the last refresh.
      if (Math.abs(diff) < Math.min(refresh, minDiff)) {
        if (track.retries >= tuning.syncRetries) return false;
        if (now < track.syncEndtime - timeoutMs + refresh / 8) return false;
        retries = track.retries + 1;
      }
    }
    if (tuning.syncPeriod > 0) {
      if (!template && pkts % tuning.syncPeriod !== tuning.syncThreshold) return false;
    } else if (refresh === 0 && pkts !== tuning.syncThreshold) {
      return false;
    }
  }
  track.oldState = conn.state;
  track.syncEndtime = endtime;
  track.retries = retries;
  return true;
}

/** A change the engine reports to the master. */
export type SyncChange =
  /**
   * A packet from the client went through `conn` (after its state transition); `inPkts` is the
   * connection's packet count including it, `control` the persistence template it belongs to.
   */
  | { kind: 'packet'; conn: SyncConn; inPkts: number; control?: SyncConn | null }
  /** The connection left the table: its sync bookkeeping goes too. */
  | { kind: 'expired'; conn: SyncConn };

export interface SyncMasterStats {
  /** Entries put into messages. */
  entries: number;
  /** Messages handed out for sending. */
  messages: number;
  /** Full messages dropped because queueMax were already waiting. */
  queueDropped: number;
  /** Records refused as unsendable (syncConnProblem). */
  invalid: number;
  /** Connections whose bookkeeping is held. */
  tracked: number;
  /** Full messages waiting to be taken. */
  queued: number;
}

export interface SyncMasterOptions {
  syncId: number;
  maxLen: number;
  clock: Clock;
  tuning?: Partial<SyncTuning>;
  /** Bound on the bookkeeping held (oldest forgotten first); the connection table's size fits. */
  maxTracked?: number;
}

/** A connection's identity as the kernel looks it up (ip_vs_conn_in_get / ip_vs_ct_in_get). */
export function syncConnKey(c: SyncConn): string {
  const base = `${c.af}|${c.protocol}|${addrKey(c.caddr)}|${c.cport}|${addrKey(c.vaddr)}|${c.vport}`;
  return c.flags & CONN_F_TEMPLATE ? `t|${base}|${addrKey(c.daddr)}|${c.dport}|${c.fwmark}` : base;
}

export class SyncMaster {
  readonly tuning: SyncTuning;
  private readonly tracks = new Map<string, SyncTrack>();
  private readonly maxTracked: number;
  private readonly builder: SyncMessageBuilder;
  private readonly queue: Uint8Array[] = [];
  /** When the open message got its first entry, or null when it is empty. */
  private openedAt: number | null = null;
  private readonly counters = { entries: 0, messages: 0, queueDropped: 0, invalid: 0 };
  /** Called when a message is full and waiting: the sender should send soon (the kernel's wakeup). */
  onReady: (() => void) | null = null;

  constructor(private readonly options: SyncMasterOptions) {
    this.tuning = { ...DEFAULT_SYNC_TUNING, ...options.tuning };
    this.maxTracked = options.maxTracked ?? 1 << 20;
    this.builder = new SyncMessageBuilder(options.syncId, options.maxLen);
  }

  handle(change: SyncChange): void {
    if (change.kind === 'expired') {
      this.tracks.delete(syncConnKey(change.conn));
      return;
    }
    const { conn, control } = change;
    // One-packet connections are never synced themselves; their template is (ip_vs_sync_conn).
    if (!(conn.flags & CONN_F_ONE_PACKET)) {
      const pkts = change.inPkts;
      if (syncNeeded(this.tuning, this.track(conn), conn, pkts, this.now(), !!control)) this.append(conn);
    }
    if (!control) return;
    // The controller's count: a template's own, advanced by each packet of its connections.
    const track = this.track(control);
    const pkts = control.flags & CONN_F_TEMPLATE ? ++track.inPkts : this.tuning.syncThreshold;
    if (syncNeeded(this.tuning, track, control, pkts, this.now(), false)) this.append(control);
  }

  /** Queues every given connection regardless of the schedule (a whole table for a returning backup). */
  syncAll(conns: Iterable<SyncConn>): void {
    for (const conn of conns) this.append(conn);
  }

  /** Messages due now: the full ones, then the open one once it has waited flushMs (next_sync_buff). */
  takeReady(): Uint8Array[] {
    const aged = this.openedAt !== null && this.now() - this.openedAt >= this.tuning.flushMs;
    return this.take(aged);
  }

  /** Every pending message, the open one included (on stop, or when asked to send now). */
  takeAll(): Uint8Array[] {
    return this.take(true);
  }

  stats(): SyncMasterStats {
    return { ...this.counters, tracked: this.tracks.size, queued: this.queue.length };
  }

  private now(): number {
    return this.options.clock.now();
  }

  private track(conn: SyncConn): SyncTrack {
    const key = syncConnKey(conn);
    let track = this.tracks.get(key);
    if (!track) {
      if (this.tracks.size >= this.maxTracked) this.tracks.delete(this.tracks.keys().next().value!);
      track = newSyncTrack(this.now());
      this.tracks.set(key, track);
    }
    return track;
  }

  private append(conn: SyncConn): void {
    if (syncConnProblem(conn) !== null) {
      this.counters.invalid++;
      return;
    }
    const closed = this.builder.add(conn);
    this.counters.entries++;
    if (this.openedAt === null || closed) this.openedAt = this.now();
    if (closed) {
      this.enqueue(closed);
      this.onReady?.();
    }
  }

  private enqueue(message: Uint8Array): void {
    if (this.queue.length >= this.tuning.queueMax) {
      this.counters.queueDropped++;
      return;
    }
    this.queue.push(message);
  }

  /** The queue, then (with `open`) the message being filled, which is taken directly as the kernel does. */
  private take(open: boolean): Uint8Array[] {
    const out = this.queue.splice(0);
    if (open) {
      const last = this.builder.flush();
      this.openedAt = null;
      if (last) out.push(last);
    }
    this.counters.messages += out.length;
    return out;
  }
}
