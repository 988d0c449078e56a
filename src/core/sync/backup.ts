// The backup's side of connection sync (sync_thread_backup / ip_vs_process_message): every
// datagram is checked, messages of another syncid are ignored unless the backup's own is 0, each
// refusal is counted by reason, and the connections of a good message are handed on with the flags
// a backup keeps (IP_VS_CONN_F_BACKUP_MASK plus IP_VS_CONN_F_SYNC).

import type { Clock } from '../clock.js';
import { CONN_F_BACKUP_MASK, CONN_F_SYNC, type SyncConn } from './conn.js';
import { decode, type SyncEntryError, type SyncMessageError } from './message.js';
import { backupTakes, decodePeerNotice, type PeerNotice } from './peer.js';

/** Why a whole datagram was dropped. */
export type SyncDropReason =
  | SyncMessageError
  /** Longer than the backup's sync_maxlen: the kernel's receive buffer would cut it. */
  | 'oversized'
  /** A syncid other than the backup's (which is not 0). */
  | 'wrong-syncid';

/** Why one entry of an accepted message was left out. */
export type SyncSkipReason = SyncEntryError | 'unknown-pe';

export const SYNC_DROP_REASONS: readonly SyncDropReason[] = [
  'short',
  'bad-size',
  'bad-version',
  'truncated-entry',
  'bad-entry-version',
  'bad-entry-type',
  'bad-entry-length',
  'bad-option',
  'oversized',
  'wrong-syncid',
];
export const SYNC_SKIP_REASONS: readonly SyncSkipReason[] = [
  'unknown-option',
  'unsupported-protocol',
  'bad-state',
  'bad-pe',
  'unknown-pe',
];

export interface SyncBackupStats {
  /** Datagrams received, good or not (lvsd's peer notices apart). */
  received: number;
  /** Messages accepted. */
  accepted: number;
  /** Connections handed on. */
  conns: number;
  dropped: Record<SyncDropReason, number>;
  skipped: Record<SyncSkipReason, number>;
  /** Clock time of the last accepted message, or null before the first. */
  lastMessageAt: number | null;
  /** lvsd's peer notices (src/core/sync/peer.ts) heard: not sync messages, not counted above. */
  notices: number;
}

export interface SyncBackupOptions {
  /** 0 accepts every syncid, as the kernel. */
  syncId: number;
  /** The backup's sync_maxlen: longer datagrams are dropped. */
  maxLen: number;
  clock: Clock;
  /** Receives the connections of each accepted message (never an empty array). */
  deliver: (conns: SyncConn[]) => void;
  /** Persistence engines this director has (a record of another is skipped, as the kernel does). */
  knownPe?: (name: string) => boolean;
  /** An lvsd master this backup had not heard before announced itself (it should be sent a JOIN). */
  onNewMaster?: (notice: PeerNotice) => void;
}

function zeroed<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

export class SyncBackup {
  private readonly counters: SyncBackupStats = {
    received: 0,
    accepted: 0,
    conns: 0,
    dropped: zeroed(SYNC_DROP_REASONS),
    skipped: zeroed(SYNC_SKIP_REASONS),
    lastMessageAt: null,
    notices: 0,
  };
  /** The lvsd master instances heard (the last few): a new one is asked for its table. */
  private readonly masters = new Set<number>();

  constructor(private readonly options: SyncBackupOptions) {}

  /** Takes one datagram; never throws for any content. */
  receive(datagram: Uint8Array): void {
    const c = this.counters;
    const notice = decodePeerNotice(datagram);
    if (notice) {
      c.notices++;
      this.noticed(notice);
      return;
    }
    c.received++;
    if (datagram.length > this.options.maxLen) {
      c.dropped.oversized++;
      return;
    }
    const result = decode(datagram);
    if (!result.ok) {
      c.dropped[result.reason]++;
      return;
    }
    if (!backupTakes(this.options.syncId, result.syncId)) {
      c.dropped['wrong-syncid']++;
      return;
    }
    c.accepted++;
    c.lastMessageAt = this.options.clock.now();
    for (const skip of result.skipped) c.skipped[skip.reason]++;
    const knownPe = this.options.knownPe ?? (() => false);
    const conns: SyncConn[] = [];
    for (const conn of result.conns) {
      if (conn.pe && !knownPe(conn.pe.name)) {
        c.skipped['unknown-pe']++;
        continue;
      }
      // v1 keeps only the bits a backup may take; v0's 16-bit flags are taken as they are.
      const kept = result.version === 1 ? conn.flags & CONN_F_BACKUP_MASK : conn.flags;
      conns.push({ ...conn, flags: (kept | CONN_F_SYNC) >>> 0 });
    }
    c.conns += conns.length;
    if (conns.length > 0) this.options.deliver(conns);
  }

  private noticed(notice: PeerNotice): void {
    if (notice.kind !== 'master' || !backupTakes(this.options.syncId, notice.syncId)) return;
    if (this.masters.has(notice.instance)) return;
    if (this.masters.size >= 16) this.masters.delete(this.masters.values().next().value!);
    this.masters.add(notice.instance);
    this.options.onNewMaster?.(notice);
  }

  stats(): SyncBackupStats {
    const c = this.counters;
    return { ...c, dropped: { ...c.dropped }, skipped: { ...c.skipped } };
  }
}
