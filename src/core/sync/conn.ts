// One connection as the IPVS sync protocol carries it (ip_vs_sync.c), as plain data: what a master
// sends and a backup hands on to its connection table. Flags and states use the kernel's numbers
// (include/uapi/linux/ip_vs.h, include/net/ip_vs.h), so that lvsd and a kernel director agree.

import type { Addr, Family } from '../inet.js';
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../inet.js';
import { TCP_STATE_NAMES } from '../conn/tcp-state.js';

// IP_VS_CONN_F_* (include/uapi/linux/ip_vs.h).
export const CONN_F_FWD_MASK = 0x0007;
export const CONN_F_MASQ = 0x0000;
export const CONN_F_LOCALNODE = 0x0001;
export const CONN_F_TUNNEL = 0x0002;
export const CONN_F_DROUTE = 0x0003;
export const CONN_F_BYPASS = 0x0004;
export const CONN_F_SYNC = 0x0020;
export const CONN_F_HASHED = 0x0040;
export const CONN_F_NOOUTPUT = 0x0080;
export const CONN_F_INACTIVE = 0x0100;
export const CONN_F_OUT_SEQ = 0x0200;
export const CONN_F_IN_SEQ = 0x0400;
export const CONN_F_SEQ_MASK = 0x0600;
export const CONN_F_NO_CPORT = 0x0800;
export const CONN_F_TEMPLATE = 0x1000;
export const CONN_F_ONE_PACKET = 0x2000;
/** The bits a backup takes from a v1 entry; it adds CONN_F_SYNC itself. */
export const CONN_F_BACKUP_MASK =
  CONN_F_FWD_MASK | CONN_F_NOOUTPUT | CONN_F_INACTIVE | CONN_F_SEQ_MASK | CONN_F_NO_CPORT | CONN_F_TEMPLATE;
/** The bits a backup updates on a connection it already has. */
export const CONN_F_BACKUP_UPD_MASK = CONN_F_INACTIVE | CONN_F_SEQ_MASK;

/** struct ip_vs_seq: TCP sequence adjustment of one direction (used by the ftp helper in the kernel). */
export interface SyncSeq {
  initSeq: number;
  delta: number;
  previousDelta: number;
}

/** Persistence-engine data (IPVS_OPT_PE_DATA) with the engine's name (IPVS_OPT_PE_NAME), e.g. sip's Call-ID. */
export interface SyncPeData {
  name: string;
  data: Uint8Array;
}

export interface SyncConn {
  af: Family;
  /** IPPROTO_TCP / UDP / SCTP; a template of a fwmark service carries 0 (IPPROTO_IP). */
  protocol: number;
  /** IP_VS_CONN_F_* bits as on the wire; CONN_F_TEMPLATE marks a persistence template. */
  flags: number;
  /** The kernel's state number for the protocol (templates: 0 NONE, 1 ASSURED). */
  state: number;
  /** The state's IPVS name, as -Lnc shows it. */
  stateName: string;
  cport: number;
  vport: number;
  dport: number;
  fwmark: number;
  /**
   * The connection's timeout in its state (the kernel's cp->timeout / HZ: the full period a packet
   * restarts, not the time left), in seconds; 0 (v0 messages) means the protocol's timeout for the state.
   */
  timeoutSec: number;
  caddr: Addr;
  vaddr: Addr;
  daddr: Addr;
  /** Sequence adjustments, sent when CONN_F_IN_SEQ or CONN_F_OUT_SEQ is set. */
  seq?: { in: SyncSeq; out: SyncSeq };
  pe?: SyncPeData;
}

// enum IP_VS_SCTP_S_* (include/net/ip_vs.h) and ip_vs_proto_sctp.c's sctp_state_name_table.
const SCTP_STATE_NAMES = [
  'NONE',
  'INIT1',
  'INIT',
  'COOKIE_SENT',
  'COOKIE_REPLIED',
  'COOKIE_WAIT',
  'COOKIE',
  'COOKIE_ECHOED',
  'ESTABLISHED',
  'SHUTDOWN_SENT',
  'SHUTDOWN_RECEIVED',
  'SHUTDOWN_ACK_SENT',
  'REJECTED',
  'CLOSED',
] as const;
// IP_VS_UDP_S_NORMAL is 0, named "UDP"; templates use IP_VS_CTPL_S_NONE / ASSURED.
const UDP_STATE_NAMES = ['UDP'] as const;
const TEMPLATE_STATE_NAMES = ['NONE', 'ASSURED'] as const;

export const SCTP_S_ESTABLISHED = 8;
export const SCTP_S_SHUTDOWN_SENT = 9;
export const SCTP_S_SHUTDOWN_RECEIVED = 10;
export const SCTP_S_SHUTDOWN_ACK_SENT = 11;
export const SCTP_S_CLOSED = 13;

/** The names of a connection's states, or null for a protocol IPVS has no state table for. */
function stateNames(protocol: number, flags: number): readonly string[] | null {
  if (flags & CONN_F_TEMPLATE) return TEMPLATE_STATE_NAMES;
  switch (protocol) {
    case IPPROTO_TCP:
      return TCP_STATE_NAMES;
    case IPPROTO_UDP:
      return UDP_STATE_NAMES;
    case IPPROTO_SCTP:
      return SCTP_STATE_NAMES;
    default:
      return null;
  }
}

/**
 * The IPVS name of a state, or null when the kernel would refuse the entry: a protocol it does not
 * sync, or a state beyond the protocol's table (ip_vs_proc_sync_conn's num_states check).
 */
export function syncStateName(protocol: number, flags: number, state: number): string | null {
  const names = stateNames(protocol, flags);
  if (names === null) return null;
  return names[state] ?? null;
}
