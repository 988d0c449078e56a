// lvsd's own notices between sync peers, inside messages the kernel accepts and ignores: a v1 sync
// message with no entries (nr_conns 0) whose size field covers a short lvsd payload after the
// header. A kernel backup checks the size and syncid, reads zero entries and stops, without a log
// line (ip_vs_process_message); a kernel master never reads the group. Two notices:
//   JOIN   a backup daemon started: a master that hears it sends its whole table (FullSyncWalk);
//   MASTER a master daemon runs (at its start, then every few seconds): a backup that hears a new
//          master asks it with a JOIN, and a master that hears another on its syncid has a split brain.
//
// Layout after the 8-byte v1 header: "lvsd" (4 bytes), kind u8, version u8 (1), spare u16 (0),
// the sender's instance u32 (random per daemon start): 20 bytes in all.

import type { Clock } from '../clock.js';
import { decode, SYNC_HEADER_V1, SYNC_PROTO_VER } from './message.js';

export const PEER_NOTICE_LENGTH = SYNC_HEADER_V1 + 12;
const MAGIC = [0x6c, 0x76, 0x73, 0x64]; // "lvsd"
const NOTICE_VERSION = 1;

export type PeerNoticeKind = 'join' | 'master';
const KIND_CODES: Record<PeerNoticeKind, number> = { join: 1, master: 2 };

export interface PeerNotice {
  kind: PeerNoticeKind;
  /** The sender's syncid: a backup's (0: it takes every master's), or the master's. */
  syncId: number;
  /** The sending daemon's instance: a new one for every start. */
  instance: number;
}

export function encodePeerNotice(notice: PeerNotice): Uint8Array {
  const buf = new Uint8Array(PEER_NOTICE_LENGTH);
  const view = new DataView(buf.buffer);
  buf[1] = notice.syncId;
  view.setUint16(2, PEER_NOTICE_LENGTH);
  buf[4] = 0; // no entries: what makes a kernel backup read nothing further
  buf[5] = SYNC_PROTO_VER;
  buf.set(MAGIC, SYNC_HEADER_V1);
  buf[SYNC_HEADER_V1 + 4] = KIND_CODES[notice.kind];
  buf[SYNC_HEADER_V1 + 5] = NOTICE_VERSION;
  view.setUint32(SYNC_HEADER_V1 + 8, notice.instance >>> 0);
  return buf;
}

/** The notice a datagram is, or null for anything else (a sync message, or bytes of no meaning to lvsd). */
export function decodePeerNotice(datagram: Uint8Array): PeerNotice | null {
  if (datagram.length !== PEER_NOTICE_LENGTH) return null;
  const view = new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  if (datagram[0] !== 0 || datagram[4] !== 0 || datagram[5] !== SYNC_PROTO_VER || view.getUint16(6) !== 0)
    return null;
  if (view.getUint16(2) !== PEER_NOTICE_LENGTH) return null;
  for (let i = 0; i < MAGIC.length; i++) if (datagram[SYNC_HEADER_V1 + i] !== MAGIC[i]) return null;
  if (datagram[SYNC_HEADER_V1 + 5] !== NOTICE_VERSION || view.getUint16(SYNC_HEADER_V1 + 6) !== 0)
    return null;
  const code = datagram[SYNC_HEADER_V1 + 4];
  const kind = (Object.keys(KIND_CODES) as PeerNoticeKind[]).find((k) => KIND_CODES[k] === code);
  if (!kind) return null;
  return { kind, syncId: datagram[1]!, instance: view.getUint32(SYNC_HEADER_V1 + 8) };
}

/** Whether a backup takes a master's messages: the kernel's syncid check (a backup's 0 takes every master's). */
export function backupTakes(backupSyncId: number, masterSyncId: number): boolean {
  return backupSyncId === 0 || backupSyncId === masterSyncId;
}

/** A master hears another master on its syncid this recently: two masters (split brain). */
export const PEER_MASTER_WINDOW_MS = 10_000;

/** What a master heard on the group. */
export type MasterHeard =
  /** A backup joined and should get the whole table (a JOIN not served before). */
  | { kind: 'join'; instance: number }
  /** Another master sends on this syncid; `started` when none had been heard within the window. */
  | { kind: 'peer-master'; source: string; started: boolean }
  | { kind: 'none' };

export interface MasterPeerStats {
  /** JOINs heard, and those that started or extended a full sync. */
  joins: number;
  joinsServed: number;
  /** Datagrams from another master on this syncid (its sync messages or its MASTER notices). */
  peerMasterMessages: number;
  /** Times another master appeared while none had been heard within the window. */
  splitBrains: number;
  /** Whether another master was heard within the window, and the last one's address and when. */
  peerMasterActive: boolean;
  lastPeerMaster: string | null;
  lastPeerMasterAt: number | null;
}

/**
 * What a master makes of the datagrams on its group: backups' JOINs (each backup instance served
 * once) and other masters on its syncid (their notices, or any sync message: a kernel master's).
 */
export class MasterPeers {
  private readonly served = new Set<number>();
  private readonly counters = { joins: 0, joinsServed: 0, peerMasterMessages: 0, splitBrains: 0 };
  private lastPeerMaster: string | null = null;
  private lastPeerMasterAt: number | null = null;

  constructor(
    private readonly syncId: number,
    private readonly instance: number,
    private readonly clock: Clock,
  ) {}

  heard(datagram: Uint8Array, source: string): MasterHeard {
    const notice = decodePeerNotice(datagram);
    if (notice?.kind === 'join') {
      this.counters.joins++;
      if (!backupTakes(notice.syncId, this.syncId) || this.served.has(notice.instance))
        return { kind: 'none' };
      // Bounded: the oldest backup instances are forgotten (a forgotten one that asks again is served again).
      if (this.served.size >= 256) this.served.delete(this.served.values().next().value!);
      this.served.add(notice.instance);
      this.counters.joinsServed++;
      return { kind: 'join', instance: notice.instance };
    }
    if (notice && notice.instance === this.instance) return { kind: 'none' };
    const message = notice ? null : decode(datagram);
    const masterSyncId = notice ? notice.syncId : message?.ok ? message.syncId : null;
    if (masterSyncId !== this.syncId) return { kind: 'none' };
    const now = this.clock.now();
    const started = !this.peerMasterActiveAt(now);
    this.counters.peerMasterMessages++;
    if (started) this.counters.splitBrains++;
    this.lastPeerMaster = source;
    this.lastPeerMasterAt = now;
    return { kind: 'peer-master', source, started };
  }

  stats(): MasterPeerStats {
    return {
      ...this.counters,
      peerMasterActive: this.peerMasterActiveAt(this.clock.now()),
      lastPeerMaster: this.lastPeerMaster,
      lastPeerMasterAt: this.lastPeerMasterAt,
    };
  }

  private peerMasterActiveAt(now: number): boolean {
    return this.lastPeerMasterAt !== null && now - this.lastPeerMasterAt < PEER_MASTER_WINDOW_MS;
  }
}
