// The director's control operations and its state as plain data: what crosses the control
// socket and the boundary to the data-plane worker thread (structured-clone safe).

import type { DefenseSnapshot } from './conn/defense.js';
import type { ExpirySettings } from './conn/expiry.js';
import type { Addr, Family, Protocol } from './inet.js';
import type { SyncConn } from './sync/conn.js';
import type {
  AdminState,
  Counter,
  DestRuntimeChange,
  DestSettings,
  ForwardMethod,
  HealthState,
  Rates,
  ServiceKey,
  ServiceSettings,
  TunnelSettings,
} from './model.js';

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

/** What a running sync daemon has done (`-L --daemon --json`). */
export interface SyncDaemonStats {
  /** Master: messages sent. */
  sent: number;
  /** Backup: datagrams received, good or not. */
  received: number;
  /** Master: messages not sent (queue full, socket refused); backup: datagrams refused. */
  dropped: number;
  /** The drops by reason. */
  droppedBy: Record<string, number>;
  /** Master: connections put into messages; backup: connections received and held or updated. */
  conns: number;
  /** Milliseconds since the last message sent (master) or accepted (backup); null before the first. */
  lastMessageAgeMs: number | null;
  /**
   * Master (lvsd only, docs/ha.md): whole-table syncs for backups that joined. `requested` counts
   * the walks asked for (the master's start and each new backup's JOIN), `entries` the connections
   * they sent, `active` whether one is under way.
   */
  fullSync?: { requested: number; completed: number; entries: number; active: boolean; pageErrors: number };
  /**
   * Master: another master heard on this syncid (split brain). `active` while one was heard in the
   * last 10 s; `last` its address.
   */
  peerMasters?: {
    messages: number;
    splitBrains: number;
    active: boolean;
    last: string | null;
    lastAgeMs: number | null;
  };
  /** Master: JOINs heard (and served); backup: JOINs sent. */
  joins?: { heard: number; served: number } | { sent: number };
}

/** A sync daemon as `-L --daemon` lists it; stats are there while it runs in lvsd. */
export interface SyncDaemonStatus extends SyncDaemonConfig {
  stats?: SyncDaemonStats;
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
  /**
   * `runtime`: the runtime state the real server starts in, in place before any packet can be
   * scheduled to it (a health-checked server is added out of scheduling until its checks place it).
   */
  | {
      op: 'add-dest';
      key: ServiceKey;
      addr: Addr;
      port: number;
      settings: DestSettings;
      runtime?: DestRuntimeChange;
    }
  | { op: 'edit-dest'; key: ServiceKey; addr: Addr; port: number; settings: DestSettings }
  | { op: 'delete-dest'; key: ServiceKey; addr: Addr; port: number }
  /**
   * Runtime state of a real server (health results, drain/maint, the operator's weight): applied
   * at once, never saved as configuration. With endConnections, a server that leaves the
   * scheduling has its connections ended (else they drain).
   */
  | {
      op: 'set-dest-runtime';
      key: ServiceKey;
      addr: Addr;
      port: number;
      change: DestRuntimeChange;
      endConnections?: boolean;
    }
  /** Without a key: every service. */
  | { op: 'zero'; key?: ServiceKey }
  /** 0 leaves a value unchanged, as ipvsadm --set. */
  | { op: 'set-timeouts'; timeouts: IpvsTimeouts };

/**
 * A u64 counter as decimal digits ("18446744073709551615"): exact over its whole range, where a JS
 * number is not past 2^53, and carried as it is by JSON and between threads.
 */
export type U64Text = string;

/** A service's or real server's counters (Stats), each exact. */
export type StatsSnapshot = Record<Counter, U64Text>;

export interface DestSnapshot {
  addr: Addr;
  port: number;
  method: ForwardMethod;
  /** A tunnelling real server's encapsulation (method 'tunnel' only). */
  tunnel?: TunnelSettings;
  /** The effective weight (what -Ln shows); configuredWeight is what -S saves. */
  weight: number;
  configuredWeight: number;
  /** False while in maintenance or failed: -Ln leaves it out, as IPVS after keepalived's DELDEST. */
  scheduled: boolean;
  admin: AdminState;
  operatorWeight: number | null;
  health: HealthState;
  dynamicWeight: number | null;
  uThreshold: number;
  lThreshold: number;
  activeConns: number;
  inactConns: number;
  persistConns: number;
  stats: StatsSnapshot;
  rates: Rates;
  /** What the health checker last saw of it; only on real servers a keepalived.conf checks. */
  checks?: DestChecks;
}

/** A real server's health checks as operators read them (times: wall clock, ms since the epoch). */
export interface DestChecks {
  alive: boolean;
  checkers: Array<{
    kind: string;
    up: boolean;
    last: { ok: boolean; code: string; reason: string; durationMs: number; time: number } | null;
  }>;
  lastChange: { up: boolean; reason: string; time: number } | null;
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

/** A stretch of the connection table, for listings that stream it (lvsadm -Lc). */
export interface ConnPage {
  entries: ConnSnapshot[];
  /** Where the next page starts; -1 when this was the last. */
  next: number;
}

/** The most entries one page may hold: a page is built in one go on the packet thread. */
export const MAX_CONN_PAGE = 4096;

/**
 * A connection or template as plain data, with the service it belongs to: what a restarted
 * director or a sync peer needs to re-create it (Director.exportConnections/importConnections).
 */
export interface ConnRecord extends ConnSnapshot {
  service: ServiceKey;
  /** A SYN-proxied connection's offset from the real server's sequence numbers to the client's (src/core/syn-proxy.ts). */
  seqOffset?: number;
}

/** What a stop for a restart leaves the next run (Engine.handOver). */
export interface HandOver {
  records: ConnRecord[];
  /** Whether the services' traffic is held (dropped) until the next run takes over or the hold expires. */
  held: boolean;
  /** Why it could not be held (the host refused), or null. */
  holdError: string | null;
}

/** What importConnections made of a batch of records. */
export interface ImportResult {
  imported: number;
  /** Entries already there that took the record's state and time (importConnections' refresh). */
  refreshed: number;
  /** Records that found no service, no real server, a full table, or an entry already there. */
  skipped: { noService: number; noDest: number; tableFull: number; present: number };
}

/** The packet loop's own counters. Packets are device frames: a GSO super-packet counts once. */
export interface DeviceCounters {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  drops: {
    /** The director's verdict was drop (no service, no real server, bad packet, ...). */
    verdict: number;
    /**
     * The kernel refused the rewritten frame (write error, queue full), or, on the layer-2 plane,
     * a directly routed one was too big for the link.
     */
    writeFailed: number;
    /** The director threw: a bug, counted rather than allowed to stop the packet loop. */
    exception: number;
    /** The kernel found the device's queue full: lvsd fell behind the offered load. */
    queueFull: number;
    /** Layer-2 plane: the next hop's MAC is not known yet (its resolution was asked for). */
    noNeighbour: number;
    /** Layer-2 plane: the host has no route to the rewritten packet's destination. */
    noRoute: number;
    /** Layer-2 plane: a frame cut short by the ring or too short for its headers (a runt). */
    badFrame: number;
  };
}

export function zeroDeviceCounters(): DeviceCounters {
  return {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    drops: {
      verdict: 0,
      writeFailed: 0,
      exception: 0,
      queueFull: 0,
      noNeighbour: 0,
      noRoute: 0,
      badFrame: 0,
    },
  };
}

/** Director.process's verdict for a packet that is not the director's: give it back to the kernel unchanged. */
export const PASS_TO_HOST = -1;

/** What the packet path did besides forwarding: every drop by reason (see Director.process). */
export interface DataPathCounters {
  /** Packets forwarded towards the real servers (in) and back to the clients (out). */
  forwardedIn: number;
  forwardedOut: number;
  /** ICMP errors the director sent itself (port unreachable when no real server is available). */
  icmpSent: number;
  drops: Record<string, number>;
  /** Packets given back to the kernel unchanged because they were not the director's, by reason. */
  passed: Record<string, number>;
  /** Present when packets move: the packet loop's device counters, exceptions and write failures included. */
  device?: DeviceCounters;
  /** Present when packets move: the data plane that moves them (lvsd --dataplane). */
  plane?: DataplaneKind;
  /** The packet plane's interfaces: where it takes the services' frames (and drops them for the kernel). */
  interfaces?: string[];
}

/** How packets reach lvsd: through the TUN device, or off the interfaces on AF_PACKET rings. */
export type DataplaneKind = 'tun' | 'packet';

/** What an engine reports unasked. */
export type EngineEvent =
  /** The data plane stopped: no packets move any more, and the daemon must not go on as if they did. */
  | { kind: 'failed'; reason: string }
  /** The packet path threw (a bug): counted in device.drops.exception, reported at most every few seconds. */
  | { kind: 'exception'; message: string; count: number }
  /** Connections to send to the backups, chosen on the kernel's sync schedule (a master sync role runs). */
  | { kind: 'sync'; conns: SyncConn[] };

/** The connection table's occupancy and what it refused or evicted for want of room. */
export interface ConnTableStats {
  /** Most entries (connections and templates) it holds: lvsd --conn-capacity. */
  capacity: number;
  /** Entries in use, templates included. */
  entries: number;
  templates: number;
  /** New connections refused because the table was full (each also a table-full drop). */
  refusedFull: number;
  /** Half-open entries evicted to make room for a new connection (early drop). */
  earlyDrops: number;
}

/** The table, its defense under pressure (src/core/conn/defense.ts) and its expiry settings. */
export type ConnTableSnapshot = ConnTableStats & { defense: DefenseSnapshot; expiry: ExpirySettings };

export interface Snapshot {
  /** Hash buckets of the connection table, shown as "size=" in the list header. */
  connTableBuckets: number;
  /** What a director reports of its connection table (absent from snapshots made without one). */
  connTable?: ConnTableSnapshot;
  timeouts: IpvsTimeouts;
  /** In the order they were added; listings sort them as libipvs does. */
  services: ServiceSnapshot[];
  /** Present when asked for (ipvsadm -c). */
  connections?: ConnSnapshot[];
  dataPath: DataPathCounters;
}
