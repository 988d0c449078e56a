// What crosses the boundary between the WorkerEngine and the data-plane worker thread:
// plain, structured-clone-safe data only.

import type { MessagePort } from 'node:worker_threads';
import type { DefenseSettings } from '../core/conn/defense.js';
import type { ExpirySettings } from '../core/conn/expiry.js';
import type { ForwardingCapability, RealServerRoute } from '../core/forward/types.js';
import type { Addr } from '../core/inet.js';
import type { ConnPage, ConnRecord, ControlOp, EngineEvent, ImportResult, Snapshot } from '../core/ops.js';
import type { ErrorCode } from '../core/errors.js';
import type { SyncConn } from '../core/sync/conn.js';
import type { FullSyncPageRequest } from '../core/sync/full-sync.js';
import type { SyncTuning } from '../core/sync/master.js';
import type { LinkPlan } from './link-path.js';
import type { SyncPage } from '../core/sync/source.js';

/** What the worker needs of the director (src/core/director.ts): control and the packet entry point. */
export interface PacketDirector {
  execute(op: ControlOp): void;
  snapshot(options: { connections: boolean }): Snapshot;
  connections(from: number, limit: number): ConnPage;
  /**
   * Rewrites buf[offset..offset+length) in place; bytes to write back, or 0 to drop. `fwmark` is
   * the mark of the device the frame came from (0 for none); `fromWire`, whether it was read off an
   * interface rather than steered to the device by the kernel.
   */
  process(buf: Uint8Array, offset: number, length: number, fwmark: number, fromWire?: boolean): number;
  /** Frames ready besides the one process() returned (held fragments released): send, then empty it. */
  readonly pending: Uint8Array[];
  /**
   * After process() returned a frame for a real server: the address the frame (and what it added
   * to `pending`) must be delivered to on the link when that is not its IP destination (direct
   * routing: the real server, while the packet still says VIP); null otherwise.
   */
  readonly nextHop: Addr | null;
  /**
   * After process() returned a frame: it answers the packet's sender (the SYN proxy's SYN-ACK),
   * so a link sends it back to the hop the packet came from; a TUN device leaves it to the kernel.
   */
  readonly replyToSender: boolean;
  /** The receive queue overflowed (the kernel dropped frames for lack of room): the director sheds what it can. */
  receiveOverflowed(): void;
  tick(): void;
  /** The host's route to a real server, for tunnels (the adapter looks it up; null: none). */
  setRealServerRoute(addr: Addr, route: RealServerRoute | null): void;
  /** The master sync role: decide on every client packet (startSyncSource), taken once a turn. */
  startSyncSource(tuning?: Partial<SyncTuning>): void;
  stopSyncSource(): void;
  takeSyncConns(): SyncConn[];
  /** A full-table sync's stretch of the table (one bounded page between two turns). */
  syncPage(request: FullSyncPageRequest): SyncPage;
  /** The backup sync role: hold a master's connections. */
  importSynced(conns: readonly SyncConn[]): ImportResult;
  /** A restart: every connection out, and back into the next run's director. */
  exportConnections(): ConnRecord[];
  importConnections(records: readonly ConnRecord[]): ImportResult;
}

export interface WorkerSettings {
  /** The control channel; the worker reads it between packet batches. */
  port: MessagePort;
  /** null: no device, the worker only serves control (tests, a director without root). */
  tun: { name: string; mtu: number } | null;
  /** The layer-2 plane (--dataplane packet) beside the TUN device, which then carries the host's side only. */
  link: boolean;
  /**
   * URL of a module exporting `Director`, constructed as
   * `new Director({ clock, connCapacity, defense, expiry, forwarding })`.
   */
  directorModule: string;
  /** What the data plane delivers (null: every method, for a worker that moves no packets). */
  forwarding: ForwardingCapability | null;
  connCapacity?: number;
  defense?: Partial<DefenseSettings>;
  expiry?: Partial<ExpirySettings>;
  /** How long poll() waits when no packet is queued; bounds control latency when idle. */
  idlePollMs: number;
  tickMs: number;
}

export type RequestBody =
  | { kind: 'execute'; op: ControlOp }
  | { kind: 'snapshot'; connections: boolean }
  | { kind: 'connections'; from: number; limit: number }
  | { kind: 'stats' }
  /** The layer-2 plane's interfaces and frames, after each change of the services. */
  | { kind: 'link-plan'; plan: LinkPlan }
  /** Start (with the tuning) or stop (null) reporting connections to sync: the master role. */
  | { kind: 'sync-source'; tuning: Partial<SyncTuning> | null }
  /** A stretch of the table as sync records, for a backup that joined. */
  | { kind: 'sync-page'; request: FullSyncPageRequest }
  /** Connections a backup received from its master. */
  | { kind: 'sync-import'; conns: SyncConn[] }
  /** A restart's hand-over and take-over of the connection table. */
  | { kind: 'export-conns' }
  | { kind: 'import-conns'; records: ConnRecord[] }
  | { kind: 'stop' };

export type Request = RequestBody & { id: number };

export interface SerializedError {
  message: string;
  code?: ErrorCode;
}

export type Reply =
  { id: number; ok: true; value: unknown } | { id: number; ok: false; error: SerializedError };

/** Sent by the worker unasked: what it has to report (a packet-path exception, say). */
export interface WorkerEventMessage {
  event: EngineEvent;
}

/** The worker's first message: the device is open (with the name the kernel gave it), or it failed. */
export type Startup = { kind: 'ready'; tunName: string | null } | { kind: 'failed'; error: SerializedError };

export function serializeError(error: unknown): SerializedError {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && code.startsWith('LVS_ERR_')
      ? { message: error.message, code: code as ErrorCode }
      : { message: error.message };
  }
  return { message: String(error) };
}
