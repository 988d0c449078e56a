// The director's control operations and its state as plain data: what crosses the control
// socket and the boundary to the data-plane worker thread (structured-clone safe).

import type { Addr, Family, Protocol } from './inet.js';
import type { DestSettings, ForwardMethod, Rates, ServiceKey, ServiceSettings } from './model.js';

export type SyncState = 'master' | 'backup';

/** A connection-sync daemon as `--start-daemon` configures it; defaults filled in as the kernel does. */
export interface SyncDaemonConfig {
  state: SyncState;
  mcastInterface: string;
  syncId: number;
  /** 0 asks for the kernel's default (from the interface MTU); a running daemon shows the settled value. */
  syncMaxLen: number;
  mcastGroup: Addr;
  mcastPort: number;
  mcastTtl: number;
}

export interface IpvsTimeouts {
  tcp: number;
  tcpfin: number;
  udp: number;
}

export type ControlOp =
  | { op: 'add-service'; key: ServiceKey; settings: ServiceSettings }
  | { op: 'edit-service'; key: ServiceKey; settings: ServiceSettings }
  | { op: 'delete-service'; key: ServiceKey }
  | { op: 'clear' }
  | { op: 'add-dest'; key: ServiceKey; addr: Addr; port: number; settings: DestSettings }
  | { op: 'edit-dest'; key: ServiceKey; addr: Addr; port: number; settings: DestSettings }
  | { op: 'delete-dest'; key: ServiceKey; addr: Addr; port: number }
  /** Without a key: every service. */
  | { op: 'zero'; key?: ServiceKey }
  /** 0 leaves a value unchanged, as ipvsadm --set. */
  | { op: 'set-timeouts'; timeouts: IpvsTimeouts };

export interface StatsSnapshot {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
}

export interface DestSnapshot {
  addr: Addr;
  port: number;
  method: ForwardMethod;
  weight: number;
  uThreshold: number;
  lThreshold: number;
  activeConns: number;
  inactConns: number;
  persistConns: number;
  stats: StatsSnapshot;
  rates: Rates;
}

export interface ServiceSnapshot {
  key: ServiceKey;
  settings: ServiceSettings;
  stats: StatsSnapshot;
  rates: Rates;
  /** In the director's list order: newest first. */
  dests: DestSnapshot[];
}

export interface ConnSnapshot {
  af: Family;
  protocol: Protocol | 0;
  caddr: Addr;
  cport: number;
  vaddr: Addr;
  vport: number;
  daddr: Addr;
  dport: number;
  /** IPVS state name: ESTABLISHED, SYN_RECV, ..., UDP, or NONE for templates. */
  state: string;
  expiresMs: number;
  template: boolean;
}

/** What the packet path did besides forwarding: every drop by reason (see Director.process). */
export interface DataPathCounters {
  /** Packets forwarded towards the real servers (in) and back to the clients (out). */
  forwardedIn: number;
  forwardedOut: number;
  /** ICMP errors the director sent itself (port unreachable when no real server is available). */
  icmpSent: number;
  drops: Record<string, number>;
}

export interface Snapshot {
  /** Hash buckets of the connection table, shown as "size=" in the list header. */
  connTableBuckets: number;
  timeouts: IpvsTimeouts;
  /** In the order they were added; listings sort them as libipvs does. */
  services: ServiceSnapshot[];
  /** Present when asked for (ipvsadm -c). */
  connections?: ConnSnapshot[];
  dataPath: DataPathCounters;
}
