// lvsd's /metrics as a pure function of the director's Snapshot (the one `lvsadm -L --json` prints).
// Two sets: node_exporter's eight node_ipvs_* series with its exact names, labels and label value
// formats, so Grafana panels made for IPVS hosts work on an lvsd host; and lvsd_* series for what
// /proc/net/ip_vs never showed. Every series is one row of SERIES, reading what the snapshot has:
// a new snapshot field becomes a new series by adding a row (docs/metrics.md lists them all).

import { formatAddr, formatIPv4, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../core/inet.js';
import type { Addr } from '../core/inet.js';
import type { AdminState, HealthState, Rates, ServiceKey } from '../core/model.js';
import { SVC_F_PERSISTENT } from '../core/model.js';
import type {
  ConnTableSnapshot,
  DestChecks,
  DestSnapshot,
  DeviceCounters,
  ServiceSnapshot,
  Snapshot,
  StatsSnapshot,
  SyncDaemonStats,
  SyncDaemonStatus,
} from '../core/ops.js';
import { orderedServices } from '../ipvsadm/format.js';
import { renderExposition } from './exposition.js';
import type { Labels, MetricType, Sample } from './exposition.js';

/** What lvsd says about itself in lvsd_build_info. */
export interface BuildInfo {
  version: string;
  nodeVersion: string;
}

/** One scrape's input: the snapshot with its services in listing order (real servers sorted too). */
export interface MetricsInput {
  readonly snapshot: Snapshot;
  readonly services: readonly ServiceSnapshot[];
  readonly build: BuildInfo;
  /** The sync daemons as `-L --daemon --json` lists them (ControlApi.syncDaemons). */
  readonly syncDaemons: readonly SyncDaemonStatus[];
  /** What several series share, built once per scrape. */
  readonly cache: ScrapeCache;
}

export interface ScrapeCache {
  /** lvsd_* labels of a service, and of a real server. */
  service(svc: ServiceSnapshot): Labels;
  server(svc: ServiceSnapshot, dest: DestSnapshot): Labels;
  ipvsBackends(): readonly IpvsBackendRow[];
}

export interface SeriesSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  samples(input: MetricsInput): Sample[];
}

// ---- label values as node_exporter writes them ----

/** Go's net.IP String(): RFC 5952 text, except that an IPv4-mapped address prints as IPv4. */
export function addressLabel(addr: Addr): string {
  if (addr.af === 6 && addr.a === 0 && addr.b === 0 && addr.c === 0xffff) return formatIPv4(addr.d);
  return formatAddr(addr);
}

/** The kernel's `%08X` of a firewall mark, as /proc/net/ip_vs prints it. */
export function markLabel(fwmark: number): string {
  return (fwmark >>> 0).toString(16).toUpperCase().padStart(8, '0');
}

function protoLabel(key: ServiceKey): string {
  if (key.fwmark) return 'FWM';
  if (key.protocol === IPPROTO_TCP) return 'TCP';
  if (key.protocol === IPPROTO_UDP) return 'UDP';
  return 'SCTP';
}

type AddressFormat = (addr: Addr) => string;

/** A virtual service as node_exporter labels it: fwmark services have no address and port 0. */
function ipvsServiceLabels(key: ServiceKey, address: AddressFormat = addressLabel): [string, string][] {
  return [
    ['local_address', key.fwmark ? '' : address(key.addr)],
    ['local_mark', key.fwmark ? markLabel(key.fwmark) : ''],
    ['local_port', key.fwmark ? '0' : String(key.port)],
    ['proto', protoLabel(key)],
  ];
}

/**
 * lvsd's series add the family (fwmark services of both families may share a mark) and write an
 * IPv4-mapped address as such (::ffff:a.b.c.d), so that no two services or real servers share labels.
 */
function serviceLabels(key: ServiceKey): Labels {
  return [['family', key.af === 6 ? 'inet6' : 'inet'], ...ipvsServiceLabels(key, formatAddr)];
}

function withRemote(labels: Labels, dest: DestSnapshot, address: AddressFormat = addressLabel): Labels {
  return [...labels, ['remote_address', address(dest.addr)], ['remote_port', String(dest.port)]];
}

function series(
  name: string,
  type: MetricType,
  help: string,
  samples: (input: MetricsInput) => Sample[],
): SeriesSpec {
  return { name, type, help, samples };
}

// ---- node_exporter's ipvs collector ----

/** /proc/net/ip_vs_stats counts every service's traffic, SCTP included. */
function ipvsTotal(field: keyof StatsSnapshot, name: string, help: string): SeriesSpec {
  // Summed exactly and wrapped at 2^64, as the kernel's u64 total: past 2^53 a double sum would round.
  return series(name, 'counter', help, ({ services }) => [
    {
      labels: [],
      value: BigInt.asUintN(
        64,
        services.reduce((sum, svc) => sum + BigInt(svc.stats[field]), 0n),
      ),
    },
  ]);
}

type BackendField = 'activeConns' | 'inactConns' | 'weight';

/** One /proc/net/ip_vs row as node_exporter reports it: rows whose labels coincide are summed. */
export type IpvsBackendRow = { labels: Labels } & Record<BackendField, number>;

function ipvsBackendRows(services: readonly ServiceSnapshot[]): IpvsBackendRow[] {
  const rows = new Map<string, IpvsBackendRow>();
  for (const svc of services) {
    if (svc.key.fwmark === 0 && svc.key.protocol === IPPROTO_SCTP) continue; // as procfs
    const local = ipvsServiceLabels(svc.key);
    for (const dest of svc.dests) {
      // A real server out of scheduling (maint, failed) is gone from IPVS after keepalived's DELDEST.
      if (!dest.scheduled) continue;
      const labels = withRemote(local, dest);
      const key = labels.map(([, value]) => value).join('\0');
      const row = rows.get(key);
      if (row) {
        row.activeConns += dest.activeConns;
        row.inactConns += dest.inactConns;
        row.weight += dest.weight;
      } else {
        const { activeConns, inactConns, weight } = dest;
        rows.set(key, { labels, activeConns, inactConns, weight });
      }
    }
  }
  return [...rows.values()];
}

function ipvsBackend(field: BackendField, name: string, help: string): SeriesSpec {
  return series(name, 'gauge', help, ({ cache }) =>
    cache.ipvsBackends().map((row) => ({ labels: row.labels, value: row[field] })),
  );
}

// ---- lvsd's own ----

const STATS_SERIES: readonly [keyof StatsSnapshot, string, string][] = [
  ['conns', 'connections_total', 'Connections scheduled'],
  ['inPkts', 'incoming_packets_total', 'Packets from clients'],
  ['outPkts', 'outgoing_packets_total', 'Packets from real servers'],
  ['inBytes', 'incoming_bytes_total', 'Bytes from clients'],
  ['outBytes', 'outgoing_bytes_total', 'Bytes from real servers'],
];

const RATE_SERIES: readonly [keyof Rates, string, string][] = [
  ['cps', 'estimated_connections_per_second', 'Connections per second'],
  ['inpps', 'estimated_incoming_packets_per_second', 'Packets per second from clients'],
  ['outpps', 'estimated_outgoing_packets_per_second', 'Packets per second from real servers'],
  ['inbps', 'estimated_incoming_bytes_per_second', 'Bytes per second from clients'],
  ['outbps', 'estimated_outgoing_bytes_per_second', 'Bytes per second from real servers'],
];

const ESTIMATOR_NOTE = "(the kernel's 2-second estimator, as ipvsadm --rate)";

/** A value per virtual service; null leaves that service out. */
function perService(
  name: string,
  type: MetricType,
  help: string,
  value: (svc: ServiceSnapshot) => number | bigint | null,
): SeriesSpec {
  return series(name, type, help, (input) =>
    input.services.flatMap((svc) => {
      const v = value(svc);
      return v === null ? [] : [{ labels: input.cache.service(svc), value: v }];
    }),
  );
}

/** A value per real server; null leaves that real server out. */
function perServer(
  name: string,
  type: MetricType,
  help: string,
  value: (dest: DestSnapshot) => number | bigint | null,
): SeriesSpec {
  return series(name, type, help, ({ services, cache }) =>
    services.flatMap((svc) =>
      svc.dests.flatMap((dest) => {
        const v = value(dest);
        return v === null ? [] : [{ labels: cache.server(svc, dest), value: v }];
      }),
    ),
  );
}

const ADMIN_STATES: readonly AdminState[] = ['ready', 'drain', 'maint'];
const HEALTH_STATES: readonly HealthState[] = ['up', 'down', 'down-inhibited'];

/** One series per state, 1 for the real server's and 0 for the others (HAProxy's haproxy_server_status). */
function perServerState<S extends string>(
  name: string,
  help: string,
  states: readonly S[],
  state: (dest: DestSnapshot) => S,
): SeriesSpec {
  return series(name, 'gauge', help, ({ services, cache }) =>
    services.flatMap((svc) =>
      svc.dests.flatMap((dest) => {
        const labels = cache.server(svc, dest);
        const current = state(dest);
        return states.map((s) => ({
          labels: [...labels, ['state', s] as const],
          value: s === current ? 1 : 0,
        }));
      }),
    ),
  );
}

/** The five counters and the five estimator rates of a virtual service or a real server. */
function trafficSeries<T extends { stats: StatsSnapshot; rates: Rates }>(
  prefix: string,
  per: string,
  make: (name: string, type: MetricType, help: string, value: (x: T) => number | bigint) => SeriesSpec,
): SeriesSpec[] {
  return [
    ...STATS_SERIES.map(([field, suffix, help]) =>
      make(`${prefix}_${suffix}`, 'counter', `${help}, per ${per}.`, (x) => BigInt(x.stats[field])),
    ),
    ...RATE_SERIES.map(([field, suffix, help]) =>
      make(`${prefix}_${suffix}`, 'gauge', `${help}, per ${per} ${ESTIMATOR_NOTE}.`, (x) => x.rates[field]),
    ),
  ];
}

/** The packet loop's device counters (frames: a GSO super-packet counts once); absent without a data plane. */
const DEVICE_SERIES: readonly [string, string, (device: DeviceCounters) => number][] = [
  ['lvsd_device_received_packets_total', 'Frames the packet loop read from its devices.', (d) => d.rxPackets],
  ['lvsd_device_received_bytes_total', 'Bytes the packet loop read from its devices.', (d) => d.rxBytes],
  [
    'lvsd_device_transmitted_packets_total',
    'Frames the packet loop wrote to its devices.',
    (d) => d.txPackets,
  ],
  ['lvsd_device_transmitted_bytes_total', 'Bytes the packet loop wrote to its devices.', (d) => d.txBytes],
];

type Checker = DestChecks['checkers'][number];

/**
 * A value per health checker of a real server a keepalived.conf checks (`check` is the checker's
 * place in the real_server block, `kind` its keyword); null leaves that checker out.
 */
function perChecker(name: string, help: string, value: (checker: Checker) => number | null): SeriesSpec {
  return series(name, 'gauge', help, ({ services, cache }) =>
    services.flatMap((svc) =>
      svc.dests.flatMap((dest) => {
        const labels = cache.server(svc, dest);
        return (dest.checks?.checkers ?? []).flatMap((checker, index) => {
          const v = value(checker);
          if (v === null) return [];
          return [
            { labels: [...labels, ['check', String(index)], ['kind', checker.kind]] as const, value: v },
          ];
        });
      }),
    ),
  );
}

/** A value of the connection table; absent from snapshots made without one. */
function connTable(
  name: string,
  type: MetricType,
  help: string,
  value: (table: ConnTableSnapshot) => number,
): SeriesSpec {
  return series(name, type, help, ({ snapshot }) =>
    snapshot.connTable ? [{ labels: [], value: value(snapshot.connTable) }] : [],
  );
}

/** A value per running sync daemon (label `state`: master or backup); null leaves one out. */
function perSyncDaemon(
  name: string,
  type: MetricType,
  help: string,
  value: (stats: SyncDaemonStats, daemon: SyncDaemonStatus) => number | null,
): SeriesSpec {
  return series(name, type, help, ({ syncDaemons }) =>
    syncDaemons.flatMap((daemon) => {
      const v = daemon.stats ? value(daemon.stats, daemon) : null;
      return v === null ? [] : [{ labels: [['state', daemon.state]] as const, value: v }];
    }),
  );
}

/** Every series lvsd exports, in the order /metrics prints them. */
export const SERIES: readonly SeriesSpec[] = [
  ipvsTotal('conns', 'node_ipvs_connections_total', 'The total number of connections made.'),
  ipvsTotal('inPkts', 'node_ipvs_incoming_packets_total', 'The total number of incoming packets.'),
  ipvsTotal('outPkts', 'node_ipvs_outgoing_packets_total', 'The total number of outgoing packets.'),
  ipvsTotal('inBytes', 'node_ipvs_incoming_bytes_total', 'The total amount of incoming data.'),
  ipvsTotal('outBytes', 'node_ipvs_outgoing_bytes_total', 'The total amount of outgoing data.'),
  ipvsBackend(
    'activeConns',
    'node_ipvs_backend_connections_active',
    'The current active connections by local and remote address.',
  ),
  ipvsBackend(
    'inactConns',
    'node_ipvs_backend_connections_inactive',
    'The current inactive connections by local and remote address.',
  ),
  ipvsBackend(
    'weight',
    'node_ipvs_backend_weight',
    'The current backend weight by local and remote address.',
  ),

  series(
    'lvsd_build_info',
    'gauge',
    'Always 1; the labels say which lvsd and Node.js are running.',
    ({ build }) => [
      {
        labels: [
          ['node_version', build.nodeVersion],
          ['version', build.version],
        ],
        value: 1,
      },
    ],
  ),
  series(
    'lvsd_service_info',
    'gauge',
    'Always 1 per virtual service; the scheduler label names its scheduler.',
    ({ services, cache }) =>
      services.map((svc) => ({
        labels: [...cache.service(svc), ['scheduler', svc.settings.scheduler]],
        value: 1,
      })),
  ),
  perService(
    'lvsd_service_persistence_timeout_seconds',
    'gauge',
    'Persistence timeout of a persistent virtual service (ipvsadm -p); absent when not persistent.',
    (svc) => (svc.settings.flags & SVC_F_PERSISTENT ? svc.settings.timeout : null),
  ),
  ...trafficSeries('lvsd_service', 'virtual service', perService),
  perServer(
    'lvsd_server_weight',
    'gauge',
    'Configured weight of a real server (ipvsadm -w; what -S saves).',
    (d) => d.configuredWeight,
  ),
  perServer(
    'lvsd_server_effective_weight',
    'gauge',
    'Weight the schedulers use (what -Ln shows): the operator, the checks, drain and health applied.',
    (d) => d.weight,
  ),
  perServer(
    'lvsd_server_operator_weight',
    'gauge',
    "The operator's run-time weight of a real server; absent when none is set.",
    (d) => d.operatorWeight,
  ),
  perServer(
    'lvsd_server_dynamic_weight',
    'gauge',
    'The weight the health checks set (misc_dynamic); absent when none is set.',
    (d) => d.dynamicWeight,
  ),
  perServer(
    'lvsd_server_scheduled',
    'gauge',
    '1 while the schedulers may pick the real server, 0 in maintenance or when failed.',
    (d) => (d.scheduled ? 1 : 0),
  ),
  perServerState(
    'lvsd_server_admin_state',
    "1 for the real server's admin state (ready, drain, maint), 0 for the others.",
    ADMIN_STATES,
    (d) => d.admin,
  ),
  perServerState(
    'lvsd_server_health_state',
    "1 for the real server's health (up, down, down-inhibited), 0 for the others.",
    HEALTH_STATES,
    (d) => d.health,
  ),
  perServer(
    'lvsd_server_connections_active',
    'gauge',
    'Connections of a real server in an active state (ESTABLISHED for TCP).',
    (d) => d.activeConns,
  ),
  perServer(
    'lvsd_server_connections_inactive',
    'gauge',
    'Connections of a real server in any other state.',
    (d) => d.inactConns,
  ),
  perServer(
    'lvsd_server_connections_persistent',
    'gauge',
    'Persistence templates pointing at a real server (ipvsadm --persistent-conn).',
    (d) => d.persistConns,
  ),
  ...trafficSeries('lvsd_server', 'real server', perServer),
  perServer(
    'lvsd_server_check_alive',
    'gauge',
    "1 while a checked real server's health checks say it is alive; only on real servers a keepalived.conf checks.",
    (d) => (d.checks ? (d.checks.alive ? 1 : 0) : null),
  ),
  perServer(
    'lvsd_server_health_last_change_timestamp_seconds',
    'gauge',
    'When the health checks last changed their verdict on a real server (Unix time); absent before the first change.',
    (d) => (d.checks?.lastChange ? d.checks.lastChange.time / 1000 : null),
  ),
  perChecker(
    'lvsd_server_check_up',
    '1 while one health checker of a real server counts it up (after its retries), 0 while down.',
    (c) => (c.up ? 1 : 0),
  ),
  perChecker(
    'lvsd_server_check_last_success',
    "1 if a health checker's last check passed, 0 if it failed; absent before its first check.",
    (c) => (c.last ? (c.last.ok ? 1 : 0) : null),
  ),
  perChecker(
    'lvsd_server_check_last_duration_seconds',
    "How long a health checker's last check took.",
    (c) => (c.last ? c.last.durationMs / 1000 : null),
  ),
  perChecker(
    'lvsd_server_check_last_timestamp_seconds',
    "When a health checker's last check ended (Unix time).",
    (c) => (c.last ? c.last.time / 1000 : null),
  ),
  series(
    'lvsd_datapath_forwarded_packets_total',
    'counter',
    'Packets the data path forwarded, towards real servers (in) and back to clients (out).',
    ({ snapshot }) => [
      { labels: [['direction', 'in']], value: snapshot.dataPath.forwardedIn },
      { labels: [['direction', 'out']], value: snapshot.dataPath.forwardedOut },
    ],
  ),
  series(
    'lvsd_datapath_icmp_errors_sent_total',
    'counter',
    'ICMP errors the director sent itself (port unreachable when no real server is available).',
    ({ snapshot }) => [{ labels: [], value: snapshot.dataPath.icmpSent }],
  ),
  series(
    'lvsd_datapath_dropped_packets_total',
    'counter',
    'Packets the data path dropped, by reason (only reasons seen since start appear).',
    ({ snapshot }) =>
      Object.keys(snapshot.dataPath.drops)
        .sort()
        .map((reason) => ({ labels: [['reason', reason]], value: snapshot.dataPath.drops[reason]! })),
  ),
  series(
    'lvsd_datapath_passed_to_host_packets_total',
    'counter',
    "Packets given back to the host's own stack unchanged (not the director's), by reason.",
    ({ snapshot }) =>
      Object.keys(snapshot.dataPath.passed)
        .sort()
        .map((reason) => ({ labels: [['reason', reason]], value: snapshot.dataPath.passed[reason]! })),
  ),
  ...DEVICE_SERIES.map(([name, help, value]) =>
    series(name, 'counter', help, ({ snapshot }) =>
      snapshot.dataPath.device ? [{ labels: [], value: value(snapshot.dataPath.device) }] : [],
    ),
  ),
  series(
    'lvsd_device_dropped_packets_total',
    'counter',
    "Frames dropped on the packet loop: the director's verdict, a write the kernel refused, an exception, the kernel's full device queue; on the layer-2 plane a next hop with no MAC yet, no route, a frame cut short.",
    ({ snapshot }) => {
      const device = snapshot.dataPath.device;
      if (!device) return [];
      return [
        { labels: [['reason', 'verdict']], value: device.drops.verdict },
        { labels: [['reason', 'write-failed']], value: device.drops.writeFailed },
        { labels: [['reason', 'exception']], value: device.drops.exception },
        { labels: [['reason', 'queue-full']], value: device.drops.queueFull },
        { labels: [['reason', 'no-neighbour']], value: device.drops.noNeighbour },
        { labels: [['reason', 'no-route']], value: device.drops.noRoute },
        { labels: [['reason', 'bad-frame']], value: device.drops.badFrame },
      ];
    },
  ),
  series(
    'lvsd_connection_table_buckets',
    'gauge',
    "Hash buckets of the connection table (ipvsadm -L's size=).",
    ({ snapshot }) => [{ labels: [], value: snapshot.connTableBuckets }],
  ),
  connTable(
    'lvsd_connection_table_capacity',
    'gauge',
    'Most entries (connections and persistence templates) the table holds (lvsd --conn-capacity).',
    (t) => t.capacity,
  ),
  connTable(
    'lvsd_connection_table_entries',
    'gauge',
    'Entries in the connection table, persistence templates included.',
    (t) => t.entries,
  ),
  connTable(
    'lvsd_connection_table_templates',
    'gauge',
    'Persistence templates in the connection table.',
    (t) => t.templates,
  ),
  connTable(
    'lvsd_connection_table_refused_total',
    'counter',
    'New connections refused because the table was full (each also a table-full drop).',
    (t) => t.refusedFull,
  ),
  connTable(
    'lvsd_connection_table_early_drops_total',
    'counter',
    'Half-open entries evicted to make room for a new connection on a full table (early drop).',
    (t) => t.earlyDrops,
  ),
  connTable(
    'lvsd_connection_table_defense_dropped_entries_total',
    'counter',
    "Half-open entries evicted by drop_entry's random scans.",
    (t) => t.defense.droppedEntries,
  ),
  connTable(
    'lvsd_connection_table_secure_tcp_activations_total',
    'counter',
    'Times secure_tcp switched itself on because the table was under pressure.',
    (t) => t.defense.secureTcpActivations,
  ),
  series(
    'lvsd_syn_proxy_cookies_total',
    'counter',
    "The SYN proxy's cookies: sent (SYNs answered), accepted (ACKs that brought one back), rejected (ACKs of no connection with a wrong or old one).",
    ({ snapshot }) => {
      const defense = snapshot.connTable?.defense;
      if (!defense) return [];
      return [
        { labels: [['result', 'sent']], value: defense.cookiesSent },
        { labels: [['result', 'accepted']], value: defense.cookiesAccepted },
        { labels: [['result', 'rejected']], value: defense.cookiesRejected },
      ];
    },
  ),
  connTable(
    'lvsd_syn_proxy_activations_total',
    'counter',
    'Times the SYN proxy switched itself on because handshakes went unanswered (lvsd --syn-proxy 1).',
    (t) => t.defense.synProxyActivations,
  ),
  series(
    'lvsd_connection_table_defense_mode',
    'gauge',
    "Mode of a defense strategy as the kernel's sysctls: 0 never, 1 automatic and off, 2 automatic and on, 3 always.",
    ({ snapshot }) => {
      const defense = snapshot.connTable?.defense;
      if (!defense) return [];
      return [
        { labels: [['strategy', 'drop_entry']], value: defense.dropEntry },
        { labels: [['strategy', 'secure_tcp']], value: defense.secureTcp },
        { labels: [['strategy', 'syn_proxy']], value: defense.synProxy },
      ];
    },
  ),
  connTable(
    'lvsd_connection_table_defense_threshold_ratio',
    'gauge',
    'Share of the capacity in use at which the automatic defense modes switch on.',
    (t) => t.defense.thresholdPercent / 100,
  ),
  connTable(
    'lvsd_connection_table_early_drop_enabled',
    'gauge',
    '1 when a new connection on a full table may evict a half-open entry (lvsd --early-drop).',
    (t) => (t.defense.earlyDrop ? 1 : 0),
  ),
  series(
    'lvsd_connection_timeout_seconds',
    'gauge',
    'Connection timeouts as ipvsadm --set sets them: tcp, tcpfin, udp.',
    ({ snapshot }) =>
      (['tcp', 'tcpfin', 'udp'] as const).map((name) => ({
        labels: [['timeout', name]],
        value: snapshot.timeouts[name],
      })),
  ),
  series(
    'lvsd_sync_daemon_info',
    'gauge',
    'Always 1 per configured sync daemon; labels give its role, interface and sync id (ipvsadm --start-daemon).',
    ({ syncDaemons }) =>
      syncDaemons.map((d) => ({
        labels: [
          ['interface', d.mcastInterface],
          ['state', d.state],
          ['sync_id', String(d.syncId)],
        ],
        value: 1,
      })),
  ),
  perSyncDaemon(
    'lvsd_sync_messages_sent_total',
    'counter',
    'Sync messages the master daemon sent.',
    (s, d) => (d.state === 'master' ? s.sent : null),
  ),
  perSyncDaemon(
    'lvsd_sync_datagrams_received_total',
    'counter',
    'Datagrams the backup daemon received, good or not.',
    (s, d) => (d.state === 'backup' ? s.received : null),
  ),
  perSyncDaemon(
    'lvsd_sync_connections_total',
    'counter',
    'Master: connections put into sync messages; backup: connections received and held or updated.',
    (s) => s.conns,
  ),
  series(
    'lvsd_sync_dropped_total',
    'counter',
    'Master: messages not sent; backup: datagrams or connections refused; by reason.',
    ({ syncDaemons }) =>
      syncDaemons.flatMap((d) =>
        Object.keys(d.stats?.droppedBy ?? {})
          .sort()
          .map((reason) => ({
            labels: [
              ['reason', reason],
              ['state', d.state],
            ] as const,
            value: d.stats!.droppedBy[reason]!,
          })),
      ),
  ),
  perSyncDaemon(
    'lvsd_sync_last_message_age_seconds',
    'gauge',
    'Seconds since the master last sent, or the backup last accepted, a message; absent before the first.',
    (s) => (s.lastMessageAgeMs === null ? null : s.lastMessageAgeMs / 1000),
  ),
  perSyncDaemon(
    'lvsd_sync_full_syncs_total',
    'counter',
    'Whole-table syncs the master completed (at its start and for each backup that joined).',
    (s) => s.fullSync?.completed ?? null,
  ),
  perSyncDaemon(
    'lvsd_sync_full_sync_connections_total',
    'counter',
    'Connections the master sent in whole-table syncs.',
    (s) => s.fullSync?.entries ?? null,
  ),
  perSyncDaemon(
    'lvsd_sync_joins_total',
    'counter',
    'Master: JOINs of backups served with the whole table; backup: JOINs sent.',
    (s) => (!s.joins ? null : 'served' in s.joins ? s.joins.served : s.joins.sent),
  ),
  perSyncDaemon(
    'lvsd_sync_split_brains_total',
    'counter',
    'Times the master heard another master on its syncid after none for 10 s (two masters: split brain).',
    (s) => s.peerMasters?.splitBrains ?? null,
  ),
  perSyncDaemon(
    'lvsd_sync_split_brain',
    'gauge',
    '1 while the master hears another master on its syncid (within the last 10 s), else 0.',
    (s) => (s.peerMasters ? (s.peerMasters.active ? 1 : 0) : null),
  ),
];

function scrapeCache(services: readonly ServiceSnapshot[]): ScrapeCache {
  const serviceLabelsOf = new Map<ServiceSnapshot, Labels>();
  const serverLabelsOf = new Map<DestSnapshot, Labels>();
  let backends: IpvsBackendRow[] | null = null;
  const service = (svc: ServiceSnapshot): Labels => {
    let labels = serviceLabelsOf.get(svc);
    if (!labels) serviceLabelsOf.set(svc, (labels = serviceLabels(svc.key)));
    return labels;
  };
  return {
    service,
    server(svc, dest) {
      let labels = serverLabelsOf.get(dest);
      if (!labels) serverLabelsOf.set(dest, (labels = withRemote(service(svc), dest, formatAddr)));
      return labels;
    },
    ipvsBackends: () => (backends ??= ipvsBackendRows(services)),
  };
}

/** The /metrics body for one snapshot and the sync daemons' status. */
export function renderMetrics(
  snapshot: Snapshot,
  build: BuildInfo,
  syncDaemons: readonly SyncDaemonStatus[] = [],
): string {
  const services = orderedServices(snapshot, false);
  const input: MetricsInput = { snapshot, services, build, syncDaemons, cache: scrapeCache(services) };
  return renderExposition(
    SERIES.map((spec) => ({
      name: spec.name,
      type: spec.type,
      help: spec.help,
      samples: spec.samples(input),
    })),
  );
}
