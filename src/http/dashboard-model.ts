// What the live dashboard shows, as pure functions of the director's snapshots: one frame per tick
// (services, real servers, weights, checks, drops, the connection table, the sync daemons), the
// events read from the difference between two frames (config changes, health changes, the
// operator's drains, sync roles), each real server's recent check results, and the operator's
// actions checked and turned into `set-dest-runtime` operations. No I/O: src/http/dashboard.ts
// polls and serves.

import { formatAddrPort, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../core/inet.js';
import type { DestRuntimeChange, Rates, ServiceKey } from '../core/model.js';
import { SVC_F_PERSISTENT } from '../core/model.js';
import type {
  ConnSnapshot,
  ConnTableSnapshot,
  ControlOp,
  DataPathCounters,
  DestChecks,
  DestSnapshot,
  ServiceSnapshot,
  Snapshot,
  StatsSnapshot,
  SyncDaemonStats,
  SyncDaemonStatus,
} from '../core/ops.js';
import { orderedServices } from '../ipvsadm/format.js';

/** One check result as the history keeps it. */
export interface CheckResult {
  time: number;
  kind: string;
  ok: boolean;
  reason: string;
  durationMs: number;
}

/** A real server as -L --json has it, with its id, its checks (null without) and their history. */
export interface ServerView extends Omit<DestSnapshot, 'checks'> {
  /** The real server's address as ipvsadm prints it: its id within the service. */
  id: string;
  checks: DestChecks | null;
  /** Newest last. */
  history: CheckResult[];
}

export interface ServiceView {
  /** `TCP 198.18.0.1:80`, `UDP [2001:db8::1]:53`, `FWM 23`, `FWM 23 IPv6`. */
  id: string;
  scheduler: string;
  persistentTimeout: number | null;
  stats: StatsSnapshot;
  rates: Rates;
  activeConns: number;
  inactConns: number;
  servers: ServerView[];
}

export interface ConnRow {
  proto: string;
  client: string;
  virtual: string;
  server: string;
  state: string;
  expiresS: number;
}

export interface SyncView {
  state: SyncDaemonStatus['state'];
  interface: string;
  syncId: number;
  stats: SyncDaemonStats | null;
}

/** Connections of the table in a frame: a sample, and how many entries it was chosen from. */
export interface ConnSample {
  rows: ConnRow[];
  /** Entries of the page the rows were chosen from (the table's first CONN_SAMPLE_PAGE). */
  sampledFrom: number;
}

export interface Frame {
  /** Wall clock, ms since the epoch. */
  time: number;
  /** Whether POST /api/action is open (a token is configured). */
  actions: boolean;
  services: ServiceView[];
  dataPath: DataPathCounters;
  connTable: ConnTableSnapshot | null;
  sync: SyncView[];
  connections: ConnSample;
}

export type EventKind = 'config' | 'health' | 'admin' | 'weight' | 'sync' | 'engine';

export interface DashboardEvent {
  time: number;
  kind: EventKind;
  text: string;
}

const PROTOCOL_NAMES: Record<number, string> = {
  [IPPROTO_TCP]: 'TCP',
  [IPPROTO_UDP]: 'UDP',
  [IPPROTO_SCTP]: 'SCTP',
};

function protocolName(protocol: number): string {
  return PROTOCOL_NAMES[protocol] ?? 'IP';
}

/** A virtual service as the dashboard names it (and as POST /api/action names it back). */
export function serviceId(key: ServiceKey): string {
  if (key.fwmark) return key.af === 6 ? `FWM ${key.fwmark} IPv6` : `FWM ${key.fwmark}`;
  return `${protocolName(key.protocol)} ${formatAddrPort(key.addr, key.port)}`;
}

export function serverId(dest: Pick<DestSnapshot, 'addr' | 'port'>): string {
  return formatAddrPort(dest.addr, dest.port);
}

/** Most check results kept per real server. */
export const CHECK_HISTORY_LENGTH = 20;
/** Rows of the connection table a frame carries. */
export const CONN_SAMPLE_ROWS = 30;
/**
 * Entries the dashboard reads each tick to choose them from: one page of the paged listing
 * (ControlApi.connections), so a table of a million entries costs a frame no more than a small one.
 */
export const CONN_SAMPLE_PAGE = 256;

/**
 * Each real server's last check results, gathered from frame to frame (a snapshot holds only each
 * checker's last one). Real servers that are gone are forgotten.
 */
export class CheckHistory {
  private readonly byServer = new Map<string, CheckResult[]>();

  /** Records the results in `snapshot` not seen yet; returns the history of every real server. */
  update(services: readonly ServiceSnapshot[]): Map<string, CheckResult[]> {
    const seen = new Set<string>();
    for (const svc of services) {
      for (const dest of svc.dests) {
        const key = `${serviceId(svc.key)} ${serverId(dest)}`;
        seen.add(key);
        if (!dest.checks) continue;
        let history = this.byServer.get(key);
        if (!history) this.byServer.set(key, (history = []));
        for (const checker of dest.checks.checkers) {
          const last = checker.last;
          if (!last) continue;
          const known = history.some((r) => r.time === last.time && r.kind === checker.kind);
          if (known) continue;
          const { time, ok, reason, durationMs } = last;
          history.push({ time, kind: checker.kind, ok, reason, durationMs });
        }
        history.sort((x, y) => x.time - y.time);
        history.splice(0, Math.max(0, history.length - CHECK_HISTORY_LENGTH));
      }
    }
    for (const key of this.byServer.keys()) if (!seen.has(key)) this.byServer.delete(key);
    return this.byServer;
  }
}

function connRow(conn: ConnSnapshot): ConnRow {
  return {
    proto: conn.template ? 'template' : protocolName(conn.protocol),
    client: formatAddrPort(conn.caddr, conn.cport),
    virtual: formatAddrPort(conn.vaddr, conn.vport),
    server: formatAddrPort(conn.daddr, conn.dport),
    state: conn.state,
    expiresS: Math.max(0, Math.round(conn.expiresMs / 1000)),
  };
}

/** The sample of the connection table a frame carries, chosen from one page of it. */
export function connSample(page: readonly ConnSnapshot[]): ConnSample {
  // Connections before templates, the longest-lived first: what an operator looks for.
  const rows = [...page]
    .sort((x, y) => Number(x.template) - Number(y.template) || y.expiresMs - x.expiresMs)
    .slice(0, CONN_SAMPLE_ROWS)
    .map(connRow);
  return { rows, sampledFrom: page.length };
}

export function buildFrame(
  snapshot: Snapshot,
  syncDaemons: readonly SyncDaemonStatus[],
  history: CheckHistory,
  options: { time: number; actions: boolean; connections: readonly ConnSnapshot[] },
): Frame {
  const services = orderedServices(snapshot, false);
  const histories = history.update(services);
  return {
    time: options.time,
    actions: options.actions,
    services: services.map((svc) => {
      const id = serviceId(svc.key);
      const servers = svc.dests.map((d): ServerView => {
        const sid = serverId(d);
        const history = [...(histories.get(`${id} ${sid}`) ?? [])];
        return { ...d, id: sid, checks: d.checks ?? null, history };
      });
      return {
        id,
        scheduler: svc.settings.scheduler,
        persistentTimeout: svc.settings.flags & SVC_F_PERSISTENT ? svc.settings.timeout : null,
        stats: svc.stats,
        rates: svc.rates,
        activeConns: servers.reduce((sum, s) => sum + s.activeConns, 0),
        inactConns: servers.reduce((sum, s) => sum + s.inactConns, 0),
        servers,
      };
    }),
    dataPath: snapshot.dataPath,
    connTable: snapshot.connTable ?? null,
    sync: syncDaemons.map((d) => ({
      state: d.state,
      interface: d.mcastInterface,
      syncId: d.syncId,
      stats: d.stats ?? null,
    })),
    connections: connSample(options.connections),
  };
}

function serverChanges(svc: string, before: ServerView, after: ServerView, time: number): DashboardEvent[] {
  const name = `${svc} -> ${after.id}`;
  const events: DashboardEvent[] = [];
  if (before.health !== after.health) {
    const reason = after.checks?.lastChange?.reason;
    const because = reason ? `: ${reason}` : '';
    events.push({
      time,
      kind: 'health',
      text: `${name} is ${after.health} (was ${before.health})${because}`,
    });
  }
  if (before.admin !== after.admin) {
    events.push({ time, kind: 'admin', text: `${name} set to ${after.admin} (was ${before.admin})` });
  }
  if (before.configuredWeight !== after.configuredWeight) {
    const text = `${name} configured weight ${after.configuredWeight} (was ${before.configuredWeight})`;
    events.push({ time, kind: 'config', text });
  }
  if (before.operatorWeight !== after.operatorWeight) {
    const text =
      after.operatorWeight === null
        ? `${name} operator weight cleared (was ${before.operatorWeight})`
        : `${name} operator weight ${after.operatorWeight}`;
    events.push({ time, kind: 'weight', text });
  }
  return events;
}

/** What changed from one frame to the next, as lines of the event log. */
export function frameEvents(before: Frame, after: Frame): DashboardEvent[] {
  const time = after.time;
  const events: DashboardEvent[] = [];
  const old = new Map(before.services.map((s) => [s.id, s]));
  for (const svc of after.services) {
    const was = old.get(svc.id);
    old.delete(svc.id);
    if (!was) {
      events.push({ time, kind: 'config', text: `service ${svc.id} added (${svc.scheduler})` });
      for (const s of svc.servers) {
        events.push({
          time,
          kind: 'config',
          text: `${svc.id} -> ${s.id} added, weight ${s.configuredWeight}`,
        });
      }
      continue;
    }
    if (was.scheduler !== svc.scheduler) {
      events.push({
        time,
        kind: 'config',
        text: `${svc.id} scheduler ${svc.scheduler} (was ${was.scheduler})`,
      });
    }
    const oldServers = new Map(was.servers.map((s) => [s.id, s]));
    for (const s of svc.servers) {
      const prev = oldServers.get(s.id);
      oldServers.delete(s.id);
      if (prev) events.push(...serverChanges(svc.id, prev, s, time));
      else
        events.push({
          time,
          kind: 'config',
          text: `${svc.id} -> ${s.id} added, weight ${s.configuredWeight}`,
        });
    }
    for (const s of oldServers.values()) {
      events.push({ time, kind: 'config', text: `${svc.id} -> ${s.id} removed` });
    }
  }
  for (const svc of old.values()) events.push({ time, kind: 'config', text: `service ${svc.id} removed` });
  const roles = (frame: Frame) =>
    new Set(frame.sync.map((d) => `${d.state} on ${d.interface} (id ${d.syncId})`));
  const [rolesBefore, rolesAfter] = [roles(before), roles(after)];
  for (const role of rolesAfter) {
    if (!rolesBefore.has(role)) events.push({ time, kind: 'sync', text: `sync daemon ${role} started` });
  }
  for (const role of rolesBefore) {
    if (!rolesAfter.has(role)) events.push({ time, kind: 'sync', text: `sync daemon ${role} stopped` });
  }
  return events;
}

/** The last `capacity` events, oldest first. */
export class EventLog {
  private readonly entries: DashboardEvent[] = [];

  constructor(readonly capacity = 200) {}

  push(...events: DashboardEvent[]): void {
    this.entries.push(...events);
    this.entries.splice(0, Math.max(0, this.entries.length - this.capacity));
  }

  list(): DashboardEvent[] {
    return [...this.entries];
  }
}

/** What the page may ask of a real server (lvsadm --drain, --ready, --maint, --set-weight, --clear-weight). */
export type DashboardAction = 'drain' | 'ready' | 'maint' | 'set-weight' | 'clear-weight';

const ACTIONS: readonly DashboardAction[] = ['drain', 'ready', 'maint', 'set-weight', 'clear-weight'];

export interface ActionRequest {
  service: string;
  server: string;
  action: DashboardAction;
  weight?: number;
}

/** A POST /api/action body, checked; anything else is an error saying what is wrong. */
export function parseActionRequest(body: unknown): ActionRequest | { error: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return { error: 'the body is not a JSON object' };
  const { service, server, action, weight, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) return { error: `unknown field ${JSON.stringify(unknown[0])}` };
  if (typeof service !== 'string') return { error: 'service: a service id such as "TCP 198.18.0.1:80"' };
  if (typeof server !== 'string') return { error: 'server: a real server such as "198.18.1.11:80"' };
  if (typeof action !== 'string' || !ACTIONS.includes(action as DashboardAction)) {
    return { error: `action: one of ${ACTIONS.join(', ')}` };
  }
  if (action === 'set-weight') {
    if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 0 || weight > 65535) {
      return { error: 'weight: a whole number 0..65535' };
    }
    return { service, server, action, weight };
  }
  if (weight !== undefined) return { error: `weight is only for set-weight` };
  return { service, server, action: action as DashboardAction };
}

/** The operation an action asks for, on the real server the snapshot has under those ids; null if none. */
export function actionOp(snapshot: Snapshot, request: ActionRequest): ControlOp | null {
  const svc = snapshot.services.find((s) => serviceId(s.key) === request.service);
  const dest = svc?.dests.find((d) => serverId(d) === request.server);
  if (!svc || !dest) return null;
  const change: DestRuntimeChange =
    request.action === 'set-weight'
      ? { operatorWeight: request.weight! }
      : request.action === 'clear-weight'
        ? { operatorWeight: null }
        : { admin: request.action };
  return { op: 'set-dest-runtime', key: svc.key, addr: dest.addr, port: dest.port, change };
}
