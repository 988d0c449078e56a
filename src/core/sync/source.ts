// The master's side of connection sync where the connection table lives: after each packet from a
// client, ip_vs_sync_conn's decision (syncNeeded, on the kernel's schedule) for the connection and
// its persistence template, with the per-connection bookkeeping in typed arrays indexed like the
// table, so the packet path allocates nothing. The connections to send wait in a bounded ring of
// ids and are turned into SyncConn records only when taken (once per packet-loop turn).

import { IPPROTO_TCP } from '../inet.js';
import { S_ESTABLISHED, S_UDP } from '../conn/tcp-state.js';
import type { ConnTable } from '../conn/table.js';
import type { Clock } from '../clock.js';
import {
  CONN_F_INACTIVE,
  CONN_F_MASQ,
  CONN_F_OUT_SEQ,
  CONN_F_TEMPLATE,
  syncStateName,
  type SyncConn,
} from './conn.js';
import { DEFAULT_SYNC_TUNING, syncNeeded, type SyncTrack, type SyncTuning } from './master.js';

/** Connections waiting between two takes; more are dropped and counted (the next sync resends them). */
const DEFAULT_RING = 8192;

export interface SyncSourceOptions {
  table: ConnTable;
  clock: Clock;
  /** The firewall mark of a service by id (0 for none), or undefined when the service is gone. */
  serviceFwmark: (serviceId: number) => number | undefined;
  tuning?: Partial<SyncTuning>;
  ringSize?: number;
}

export class SyncSource {
  readonly tuning: SyncTuning;
  /** Connections dropped because the ring was full. */
  overflows = 0;
  private readonly table: ConnTable;
  private readonly clock: Clock;
  private readonly oldState: Uint8Array;
  private readonly syncEndtime: Float64Array;
  private readonly retries: Uint8Array;
  private readonly ring: Int32Array;
  private ringLength = 0;
  /** Scratch objects for syncNeeded, reused for every packet. */
  private readonly track: SyncTrack = { oldState: 0, syncEndtime: 0, retries: 0, inPkts: 0 };
  private readonly conn = { protocol: 0, flags: 0, state: 0, timeoutSec: 0 };

  constructor(private readonly options: SyncSourceOptions) {
    const capacity = options.table.capacity;
    this.table = options.table;
    this.clock = options.clock;
    this.tuning = { ...DEFAULT_SYNC_TUNING, ...options.tuning };
    this.oldState = new Uint8Array(capacity);
    this.syncEndtime = new Float64Array(capacity);
    this.retries = new Uint8Array(capacity);
    this.ring = new Int32Array(options.ringSize ?? DEFAULT_RING);
  }

  /**
   * A packet from the client went through connection `id` (after its state transition);
   * `onePacket` for a one-packet-scheduling connection, which is never synced itself (its template is).
   */
  onClientPacket(id: number, onePacket: boolean): void {
    const table = this.table;
    if (!onePacket) this.consider(id, table.inPackets(id), table.template(id) >= 0);
    const template = table.template(id);
    if (template >= 0 && table.isLive(template)) this.consider(template, table.inPackets(template), false);
  }

  /** The connections chosen since the last take, as sync records (entries gone since are left out). */
  take(): SyncConn[] {
    const out: SyncConn[] = [];
    for (let i = 0; i < this.ringLength; i++) {
      const record = this.recordOf(this.ring[i]!);
      if (record) out.push(record);
    }
    this.ringLength = 0;
    return out;
  }

  /** Entry `id` as the kernel's sync entry describes it, or null when it is gone or cannot be sent. */
  recordOf(id: number): SyncConn | null {
    return syncRecordOf(this.table, id, this.options.serviceFwmark);
  }

  private consider(id: number, pkts: number, inPersistence: boolean): void {
    const table = this.table;
    // A new entry (or one imported from a peer) starts its bookkeeping afresh.
    if (pkts === 1) {
      this.oldState[id] = 0;
      this.syncEndtime[id] = this.clock.now();
      this.retries[id] = 0;
    }
    const { track, conn } = this;
    track.oldState = this.oldState[id]!;
    track.syncEndtime = this.syncEndtime[id]!;
    track.retries = this.retries[id]!;
    conn.protocol = table.protocol(id);
    conn.flags = table.isTemplate(id) ? CONN_F_TEMPLATE : 0;
    conn.state = kernelState(table, id);
    conn.timeoutSec = table.timeoutOf(id) / 1000;
    if (!syncNeeded(this.tuning, track, conn, pkts, this.clock.now(), inPersistence)) return;
    this.oldState[id] = track.oldState;
    this.syncEndtime[id] = track.syncEndtime;
    this.retries[id] = track.retries;
    if (this.ringLength < this.ring.length) this.ring[this.ringLength++] = id;
    else this.overflows++;
  }
}

/**
 * Entry `id` of `table` as the kernel's sync entry describes it, or null when it is gone or cannot
 * be sent (its service is gone, or its state has no IPVS name).
 */
export function syncRecordOf(
  table: ConnTable,
  id: number,
  serviceFwmark: (serviceId: number) => number | undefined,
): SyncConn | null {
  if (!table.isLive(id)) return null;
  const fwmark = serviceFwmark(table.serviceId(id));
  if (fwmark === undefined) return null;
  const template = table.isTemplate(id);
  const state = kernelState(table, id);
  const proxied = !template && table.isProxied(id);
  const flags =
    (template ? CONN_F_TEMPLATE : 0) |
    CONN_F_MASQ |
    (inactive(table, id) ? CONN_F_INACTIVE : 0) |
    (proxied ? CONN_F_OUT_SEQ : 0);
  const protocol = table.protocol(id);
  const stateName = syncStateName(protocol, flags, state);
  if (stateName === null) return null;
  return {
    af: table.af(id),
    protocol,
    flags,
    state,
    stateName,
    cport: table.cport(id),
    vport: table.vport(id),
    dport: table.dport(id),
    fwmark,
    timeoutSec: Math.round(table.timeoutOf(id) / 1000),
    caddr: table.caddr(id),
    vaddr: table.vaddr(id),
    daddr: table.daddr(id),
    // As the kernel's ftp helper: out_seq.delta onto the real server's sequence numbers, off the client's acknowledgments.
    ...(proxied ? { seq: { in: NO_SEQ, out: proxySeq(table.proxyOffset(id)) } } : {}),
  };
}

const NO_SEQ = { initSeq: 0, delta: 0, previousDelta: 0 };

/** A SYN-proxied connection's offset, for every sequence number (so previousDelta, for those before initSeq, is the same). */
function proxySeq(offset: number) {
  return { initSeq: 0, delta: offset, previousDelta: offset };
}

/** A stretch of the table as sync records (a full-table sync's page); `next` -1 when the stretch is done. */
export interface SyncPage {
  conns: SyncConn[];
  next: number;
}

/**
 * The live entries in slots [from, to) (to -1: the table's end) as sync records: at most `limit`
 * of them and `maxSlots` slots scanned, so that one page is a bounded share of a packet-loop turn.
 * Entries that cannot be sent are passed over.
 */
export function syncWalkPage(
  table: ConnTable,
  serviceFwmark: (serviceId: number) => number | undefined,
  request: { from: number; to: number; limit: number; maxSlots: number },
): SyncPage {
  const end = request.to >= 0 ? Math.min(request.to, table.usedSlots) : table.usedSlots;
  const stop = Math.min(end, request.from + request.maxSlots);
  const conns: SyncConn[] = [];
  let id = Math.max(0, request.from);
  for (; id < stop && conns.length < request.limit; id++) {
    const record = syncRecordOf(table, id, serviceFwmark);
    if (record) conns.push(record);
  }
  return { conns, next: id < end ? id : -1 };
}

/** The kernel's state number: IP_VS_TCP_S_* as lvsd numbers them, IP_VS_UDP_S_NORMAL (0), a template's NONE. */
function kernelState(table: ConnTable, id: number): number {
  if (table.isTemplate(id)) return 0;
  const code = table.stateCode(id);
  return code === S_UDP ? 0 : code;
}

/** IP_VS_CONN_F_INACTIVE: a connection not (or no longer) established; UDP ones always are. */
function inactive(table: ConnTable, id: number): boolean {
  if (table.isTemplate(id)) return false;
  return table.protocol(id) !== IPPROTO_TCP || table.stateCode(id) !== S_ESTABLISHED;
}
