// lvsd's desired configuration as a versioned JSON document (`lvsd.json` in the state directory):
// services with their real servers, the IPVS timeouts and the sync daemons. Pure: the document is
// checked field by field on read (every refusal names the field), rendered canonically, derived
// from an engine snapshot (configuration only: no counters, connections or other runtime state),
// and turned into control operations. docs/configuration.md describes the format.
//
// The check is written by hand on the model of the control protocol's (src/control/checks.ts)
// rather than with a schema library: it shares that module's bounds, so one rule holds in both
// places, and its messages name the JSON path and the entry, which is what an operator editing
// the file needs.

import {
  formatAddr,
  formatAddrPort,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  parseAddr,
} from '../core/inet.js';
import type { Addr, Protocol } from '../core/inet.js';
import {
  IPIP_TUNNEL,
  MAX_PERSISTENT_TIMEOUT,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  SVC_F_SCHED1,
  SVC_F_SCHED2,
  SVC_F_SCHED3,
  MAX_TIMEOUT,
  MAX_WEIGHT,
} from '../core/model.js';
import type {
  DestRuntimeChange,
  DestSettings,
  ForwardMethod,
  ServiceKey,
  ServiceSettings,
  TunnelSettings,
} from '../core/model.js';
import type { ControlOp, IpvsTimeouts, Snapshot, SyncDaemonConfig, SyncState } from '../core/ops.js';
import { DEFAULT_MCAST_GROUP, DEFAULT_MCAST_PORT, DEFAULT_MCAST_TTL } from '../ipvsadm/parse.js';
import {
  check,
  IFNAME,
  int,
  Invalid,
  MAX_SYNC_LEN,
  MAX_THRESHOLD,
  NAME,
  record,
  str,
  tunnelSettings,
  U32,
} from './checks.js';

export const CONFIG_VERSION = 1;
export const CONFIG_FILE_NAME = 'lvsd.json';

export type ProtocolName = 'tcp' | 'udp' | 'sctp';
export type SchedulerFlagName = 'flag-1' | 'flag-2' | 'flag-3';

export interface RealServerConfig {
  address: string;
  port: number;
  method: ForwardMethod;
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
  /** A tunnel's encapsulation; absent for ipip, the default (and for other methods). */
  tunnel?: TunnelSettings;
}

export interface PersistenceConfig {
  /** Seconds. */
  timeout: number;
  /** Prefix length of the persistence netmask. */
  netmask: number;
  engine: string | null;
}

interface ServiceCommon {
  scheduler: string;
  schedulerFlags: SchedulerFlagName[];
  onePacket: boolean;
  persistence: PersistenceConfig | null;
  /** In the order they were added (the listing shows the newest first). */
  realServers: RealServerConfig[];
}

export type ServiceIdentity =
  { protocol: ProtocolName; address: string; port: number } | { fwmark: number; family: 'inet' | 'inet6' };

export type ServiceConfig = ServiceCommon & ServiceIdentity;

export interface SyncDaemonEntry {
  state: SyncState;
  interface: string;
  syncId: number;
  maxLength: number;
  group: string;
  port: number;
  ttl: number;
}

export interface LvsdConfig {
  version: typeof CONFIG_VERSION;
  timeouts: IpvsTimeouts;
  services: ServiceConfig[];
  syncDaemons: SyncDaemonEntry[];
}

/** IPVS's defaults, what an empty director runs with. */
export const DEFAULT_TIMEOUTS: IpvsTimeouts = { tcp: 900, tcpfin: 120, udp: 300 };

export function emptyConfig(): LvsdConfig {
  return { version: CONFIG_VERSION, timeouts: { ...DEFAULT_TIMEOUTS }, services: [], syncDaemons: [] };
}

/** A document that cannot be read; the message names the field (a JSON path) and what is wrong. */
export class ConfigError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ConfigError';
  }
}

const PROTOCOLS: Record<ProtocolName, Protocol> = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, sctp: IPPROTO_SCTP };
const SCHED_FLAGS: Record<SchedulerFlagName, number> = {
  'flag-1': SVC_F_SCHED1,
  'flag-2': SVC_F_SCHED2,
  'flag-3': SVC_F_SCHED3,
};
const METHODS: readonly ForwardMethod[] = ['masq', 'local', 'tunnel', 'route'];

// ---- reading ----

function only(o: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(o)) {
    if (key === 'healthCheck' || key === 'healthChecks')
      throw new Invalid(`${what}.${key}: health checks are not supported in lvsd.json yet`);
    check(allowed.includes(key), `${what}.${key}: unknown field`);
  }
}

function optional<T>(o: Record<string, unknown>, key: string, fallback: T, read: (v: unknown) => T): T {
  return o[key] === undefined ? fallback : read(o[key]);
}

function bool(value: unknown, what: string): boolean {
  check(typeof value === 'boolean', `${what} must be true or false`);
  return value;
}

function address(value: unknown, what: string, family?: 4 | 6): Addr {
  const a = typeof value === 'string' ? parseAddr(value) : null;
  check(a !== null, `${what} must be an IPv4 or IPv6 address`);
  if (family !== undefined) check(a.af === family, `${what} must be an IPv${family} address`);
  return a;
}

function readRealServer(value: unknown, what: string): RealServerConfig {
  const o = record(value, what);
  only(o, ['address', 'port', 'method', 'weight', 'upperThreshold', 'lowerThreshold', 'tunnel'], what);
  const method = optional(o, 'method', 'masq', (v) => v);
  check(METHODS.includes(method as ForwardMethod), `${what}.method must be one of ${METHODS.join(', ')}`);
  if (o.tunnel !== undefined) check(method === 'tunnel', `${what}.tunnel is only for method tunnel`);
  return {
    address: formatAddr(address(o.address, `${what}.address`)),
    port: int(o.port, 0, 65535, `${what}.port`),
    method: method as ForwardMethod,
    weight: optional(o, 'weight', 1, (v) => int(v, 0, MAX_WEIGHT, `${what}.weight`)),
    upperThreshold: optional(o, 'upperThreshold', 0, (v) =>
      int(v, 0, MAX_THRESHOLD, `${what}.upperThreshold`),
    ),
    lowerThreshold: optional(o, 'lowerThreshold', 0, (v) =>
      int(v, 0, MAX_THRESHOLD, `${what}.lowerThreshold`),
    ),
    ...(o.tunnel === undefined ? {} : { tunnel: tunnelSettings(o.tunnel, `${what}.tunnel`) }),
  };
}

function readPersistence(value: unknown, what: string, family: 4 | 6): PersistenceConfig | null {
  if (value === null) return null;
  const o = record(value, what);
  only(o, ['timeout', 'netmask', 'engine'], what);
  return {
    timeout: int(o.timeout, 1, MAX_PERSISTENT_TIMEOUT, `${what}.timeout`),
    netmask: optional(o, 'netmask', family === 6 ? 128 : 32, (v) =>
      int(v, 1, family === 6 ? 128 : 32, `${what}.netmask`),
    ),
    engine: optional(o, 'engine', null, (v) => (v === null ? null : str(v, NAME, `${what}.engine`))),
  };
}

const SERVICE_FIELDS = ['scheduler', 'schedulerFlags', 'onePacket', 'persistence', 'realServers'];

function readService(value: unknown, what: string): ServiceConfig {
  const o = record(value, what);
  let identity: ServiceIdentity;
  let family: 4 | 6;
  if (o.fwmark !== undefined) {
    only(o, ['fwmark', 'family', ...SERVICE_FIELDS], what);
    const fwmark = int(o.fwmark, 1, U32, `${what}.fwmark`);
    const name = optional(o, 'family', 'inet', (v) => v);
    check(name === 'inet' || name === 'inet6', `${what}.family must be inet or inet6`);
    identity = { fwmark, family: name };
    family = name === 'inet6' ? 6 : 4;
  } else {
    only(o, ['protocol', 'address', 'port', ...SERVICE_FIELDS], what);
    check(
      typeof o.protocol === 'string' && Object.hasOwn(PROTOCOLS, o.protocol),
      `${what}.protocol must be tcp, udp or sctp (or give a fwmark instead)`,
    );
    const addr = address(o.address, `${what}.address`);
    identity = {
      protocol: o.protocol as ProtocolName,
      address: formatAddr(addr),
      port: int(o.port, 0, 65535, `${what}.port`),
    };
    family = addr.af;
  }
  const flags = optional(o, 'schedulerFlags', [] as unknown[], (v) => {
    check(Array.isArray(v), `${what}.schedulerFlags must be a list`);
    return v;
  });
  const schedulerFlags = flags.map((f, i) => {
    check(
      typeof f === 'string' && Object.hasOwn(SCHED_FLAGS, f),
      `${what}.schedulerFlags[${i}] must be flag-1, flag-2 or flag-3`,
    );
    return f as SchedulerFlagName;
  });
  const realServers = optional(o, 'realServers', [] as unknown[], (v) => {
    check(Array.isArray(v), `${what}.realServers must be a list`);
    return v;
  }).map((d, i) => readRealServer(d, `${what}.realServers[${i}]`));
  const seen = new Map<string, number>();
  realServers.forEach((d, i) => {
    const key = realServerKey(d);
    const first = seen.get(key);
    check(first === undefined, `${what}.realServers[${i}]: ${key} is already realServers[${first}]`);
    seen.set(key, i);
  });
  return {
    ...identity,
    scheduler: optional(o, 'scheduler', 'wlc', (v) => str(v, NAME, `${what}.scheduler`)),
    schedulerFlags: [...new Set(schedulerFlags)].sort(),
    onePacket: optional(o, 'onePacket', false, (v) => bool(v, `${what}.onePacket`)),
    persistence: optional(o, 'persistence', null, (v) => readPersistence(v, `${what}.persistence`, family)),
    realServers,
  };
}

function readTimeouts(value: unknown): IpvsTimeouts {
  const o = record(value, 'timeouts');
  only(o, ['tcp', 'tcpfin', 'udp'], 'timeouts');
  return {
    tcp: int(o.tcp, 1, MAX_TIMEOUT, 'timeouts.tcp'),
    tcpfin: int(o.tcpfin, 1, MAX_TIMEOUT, 'timeouts.tcpfin'),
    udp: int(o.udp, 1, MAX_TIMEOUT, 'timeouts.udp'),
  };
}

function readSyncDaemon(value: unknown, what: string): SyncDaemonEntry {
  const o = record(value, what);
  only(o, ['state', 'interface', 'syncId', 'maxLength', 'group', 'port', 'ttl'], what);
  check(o.state === 'master' || o.state === 'backup', `${what}.state must be master or backup`);
  return {
    state: o.state,
    interface: str(o.interface, IFNAME, `${what}.interface`),
    syncId: optional(o, 'syncId', 0, (v) => int(v, 0, 255, `${what}.syncId`)),
    // 0: settled from the interface when the daemon starts, as the kernel does.
    maxLength: optional(o, 'maxLength', 0, (v) => int(v, 0, MAX_SYNC_LEN, `${what}.maxLength`)),
    group: optional(o, 'group', formatAddr(DEFAULT_MCAST_GROUP), (v) =>
      formatAddr(address(v, `${what}.group`)),
    ),
    port: optional(o, 'port', DEFAULT_MCAST_PORT, (v) => int(v, 1, 65535, `${what}.port`)),
    ttl: optional(o, 'ttl', DEFAULT_MCAST_TTL, (v) => int(v, 1, 255, `${what}.ttl`)),
  };
}

/** Checks a whole document; throws ConfigError naming the first field that is wrong. */
export function parseConfig(text: string): LvsdConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`not valid JSON (${(err as Error).message})`);
  }
  try {
    const o = record(parsed, 'the document');
    check(o.version !== undefined, 'version: missing (this lvsd reads version 1)');
    check(
      o.version === CONFIG_VERSION,
      `version: ${JSON.stringify(o.version)} is not a version this lvsd reads (it reads version ${CONFIG_VERSION})`,
    );
    only(o, ['version', 'timeouts', 'services', 'syncDaemons'], 'the document');
    const services = optional(o, 'services', [] as unknown[], (v) => {
      check(Array.isArray(v), 'services must be a list');
      return v;
    }).map((s, i) => readService(s, `services[${i}]`));
    const seen = new Map<string, number>();
    services.forEach((s, i) => {
      const key = serviceName(s);
      const first = seen.get(key);
      check(first === undefined, `services[${i}]: ${key} is already services[${first}]`);
      seen.set(key, i);
    });
    const syncDaemons = optional(o, 'syncDaemons', [] as unknown[], (v) => {
      check(Array.isArray(v), 'syncDaemons must be a list');
      return v;
    }).map((d, i) => readSyncDaemon(d, `syncDaemons[${i}]`));
    const states = syncDaemons.map((d) => d.state);
    check(new Set(states).size === states.length, 'syncDaemons: at most one master and one backup');
    return {
      version: CONFIG_VERSION,
      timeouts: optional(o, 'timeouts', { ...DEFAULT_TIMEOUTS }, readTimeouts),
      services,
      syncDaemons,
    };
  } catch (err) {
    if (err instanceof Invalid) throw new ConfigError(err.message);
    throw err;
  }
}

/** The canonical text: stable key order, two-space indent, a final newline. */
export function renderConfig(config: LvsdConfig): string {
  return JSON.stringify(config, null, 2) + '\n';
}

// ---- to and from the engine's terms ----

/** How operators name a service: `TCP 198.18.0.1:80`, `FWM 7` (`FWM 7 IPv6`). */
export function serviceName(s: ServiceIdentity): string {
  if ('fwmark' in s) return `FWM ${s.fwmark}${s.family === 'inet6' ? ' IPv6' : ''}`;
  return `${s.protocol.toUpperCase()} ${formatAddrPort(parseAddr(s.address)!, s.port)}`;
}

export function realServerKey(d: RealServerConfig): string {
  return formatAddrPort(parseAddr(d.address)!, d.port);
}

export function serviceKeyOf(s: ServiceIdentity): ServiceKey {
  if ('fwmark' in s) {
    const af = s.family === 'inet6' ? 6 : 4;
    const addr = parseAddr(af === 6 ? '::' : '0.0.0.0')!;
    return { af, protocol: 0, addr, port: 0, fwmark: s.fwmark };
  }
  const addr = parseAddr(s.address)!;
  return { af: addr.af, protocol: PROTOCOLS[s.protocol], addr, port: s.port, fwmark: 0 };
}

export function serviceSettingsOf(s: ServiceConfig): ServiceSettings {
  const af = serviceKeyOf(s).af;
  let flags = s.schedulerFlags.reduce((bits, f) => bits | SCHED_FLAGS[f], 0);
  if (s.onePacket) flags |= SVC_F_ONEPACKET;
  if (s.persistence) flags |= SVC_F_PERSISTENT;
  return {
    scheduler: s.scheduler,
    flags,
    timeout: s.persistence?.timeout ?? 0,
    netmaskPrefix: s.persistence?.netmask ?? (af === 6 ? 128 : 32),
    pe: s.persistence?.engine ?? null,
  };
}

export function destSettingsOf(d: RealServerConfig): DestSettings {
  const settings = {
    method: d.method,
    weight: d.weight,
    uThreshold: d.upperThreshold,
    lThreshold: d.lowerThreshold,
  };
  return d.tunnel ? { ...settings, tunnel: { ...d.tunnel } } : settings;
}

/** The document names a tunnel's settings only when they are not ipip's, the default (which takes no options). */
function tunnelConfig(tunnel: TunnelSettings | undefined): Pick<RealServerConfig, 'tunnel'> {
  return tunnel && tunnel.type !== IPIP_TUNNEL.type ? { tunnel: { ...tunnel } } : {};
}

export function syncConfigOf(d: SyncDaemonEntry): SyncDaemonConfig {
  return {
    state: d.state,
    mcastInterface: d.interface,
    syncId: d.syncId,
    syncMaxLen: d.maxLength,
    mcastGroup: parseAddr(d.group)!,
    mcastPort: d.port,
    mcastTtl: d.ttl,
  };
}

function protocolName(protocol: number): ProtocolName {
  const name = (Object.keys(PROTOCOLS) as ProtocolName[]).find((n) => PROTOCOLS[n] === protocol);
  if (!name) throw new Error(`no protocol name for ${protocol}`);
  return name;
}

function identityOf(key: ServiceKey): ServiceIdentity {
  return key.fwmark
    ? { fwmark: key.fwmark, family: key.af === 6 ? 'inet6' : 'inet' }
    : { protocol: protocolName(key.protocol), address: formatAddr(key.addr), port: key.port };
}

/** What the engine runs, as configuration: settings only, never counters or connections. */
export function configFromSnapshot(snapshot: Snapshot, daemons: readonly SyncDaemonConfig[]): LvsdConfig {
  const services = snapshot.services.map((svc): ServiceConfig => {
    const { key, settings } = svc;
    return {
      ...identityOf(key),
      scheduler: settings.scheduler,
      schedulerFlags: (Object.keys(SCHED_FLAGS) as SchedulerFlagName[]).filter(
        (f) => settings.flags & SCHED_FLAGS[f],
      ),
      onePacket: (settings.flags & SVC_F_ONEPACKET) !== 0,
      persistence:
        settings.flags & SVC_F_PERSISTENT
          ? { timeout: settings.timeout, netmask: settings.netmaskPrefix, engine: settings.pe }
          : null,
      // The snapshot lists the newest first; the document keeps the order of addition.
      realServers: [...svc.dests].reverse().map((d) => ({
        address: formatAddr(d.addr),
        port: d.port,
        method: d.method,
        weight: d.configuredWeight,
        upperThreshold: d.uThreshold,
        lowerThreshold: d.lThreshold,
        ...tunnelConfig(d.tunnel),
      })),
    };
  });
  const syncDaemons = [...daemons]
    .sort((a, b) => a.state.localeCompare(b.state))
    .map((d) => ({
      state: d.state,
      interface: d.mcastInterface,
      syncId: d.syncId,
      maxLength: d.syncMaxLen,
      group: formatAddr(d.mcastGroup),
      port: d.mcastPort,
      ttl: d.mcastTtl,
    }));
  return { version: CONFIG_VERSION, timeouts: { ...snapshot.timeouts }, services, syncDaemons };
}

// ---- the difference between two configurations ----

/** One step from one configuration towards another, with the entry of the target it comes from. */
export type ConfigChange = { entry: string } & (
  | { kind: 'execute'; op: ControlOp }
  | { kind: 'start-sync'; config: SyncDaemonConfig }
  | { kind: 'stop-sync'; state: SyncState }
);

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function serviceSettingsPart(s: ServiceConfig): unknown {
  return [s.scheduler, s.schedulerFlags, s.onePacket, s.persistence];
}

/**
 * The operations that turn `from` into `to`, touching nothing that is the same in both: an
 * unchanged service or real server keeps its connections and counters. Additions and edits come
 * first and removals last, so that when one step is refused, undoing the steps before it never
 * has to recreate something (and lose its connections); a sync daemon whose settings change is
 * stopped before it is started again.
 * `addedRuntime`: the runtime state every added real server starts in.
 */
export function planChanges(
  from: LvsdConfig,
  to: LvsdConfig,
  options: { addedRuntime?: DestRuntimeChange } = {},
): ConfigChange[] {
  const changes: ConfigChange[] = [];
  const removals: ConfigChange[] = [];
  const exec = (entry: string, op: ControlOp) => changes.push({ entry, kind: 'execute', op });
  const before = new Map(from.services.map((s) => [serviceName(s), s]));
  const after = new Set(to.services.map(serviceName));

  if (!sameJson(from.timeouts, to.timeouts))
    exec('timeouts', { op: 'set-timeouts', timeouts: { ...to.timeouts } });
  to.services.forEach((s, i) => {
    const name = serviceName(s);
    const where = `services[${i}] (${name})`;
    const key = serviceKeyOf(s);
    const old = before.get(name);
    if (!old) exec(where, { op: 'add-service', key, settings: serviceSettingsOf(s) });
    else if (!sameJson(serviceSettingsPart(old), serviceSettingsPart(s)))
      exec(where, { op: 'edit-service', key, settings: serviceSettingsOf(s) });
    const oldDests = new Map((old?.realServers ?? []).map((d) => [realServerKey(d), d]));
    s.realServers.forEach((d, j) => {
      const destWhere = `services[${i}].realServers[${j}] (${name} -> ${realServerKey(d)})`;
      const target = { key, addr: parseAddr(d.address)!, port: d.port, settings: destSettingsOf(d) };
      const previous = oldDests.get(realServerKey(d));
      if (!previous)
        exec(
          destWhere,
          options.addedRuntime
            ? { op: 'add-dest', ...target, runtime: { ...options.addedRuntime } }
            : { op: 'add-dest', ...target },
        );
      else if (!sameJson(previous, d)) exec(destWhere, { op: 'edit-dest', ...target });
    });
    const kept = new Set(s.realServers.map(realServerKey));
    for (const [destKey, d] of oldDests) {
      if (kept.has(destKey)) continue;
      const op: ControlOp = { op: 'delete-dest', key, addr: parseAddr(d.address)!, port: d.port };
      removals.push({ entry: `${where}: ${destKey} (removed)`, kind: 'execute', op });
    }
  });
  for (const [name, s] of before) {
    if (after.has(name)) continue;
    removals.push({
      entry: `${name} (removed)`,
      kind: 'execute',
      op: { op: 'delete-service', key: serviceKeyOf(s) },
    });
  }
  changes.push(...removals);
  for (const d of from.syncDaemons) {
    const kept = to.syncDaemons.find((n) => n.state === d.state);
    if (!kept || !sameJson(kept, d))
      changes.push({ entry: `${d.state} sync daemon`, kind: 'stop-sync', state: d.state });
  }
  to.syncDaemons.forEach((d, i) => {
    const old = from.syncDaemons.find((o) => o.state === d.state);
    if (!old || !sameJson(old, d))
      changes.push({ entry: `syncDaemons[${i}] (${d.state})`, kind: 'start-sync', config: syncConfigOf(d) });
  });
  return changes;
}

/**
 * What `config` becomes after a removal (delete-service, delete-dest, clear), so that it can be
 * saved before the engine is touched; null for any other operation, or when the entry is not
 * there (the engine then refuses it, as it refuses from lvsadm).
 */
export function afterRemoval(config: LvsdConfig, op: ControlOp): LvsdConfig | null {
  if (op.op === 'clear') return { ...config, services: [] };
  if (op.op !== 'delete-service' && op.op !== 'delete-dest') return null;
  const name = serviceName(identityOf(op.key));
  const index = config.services.findIndex((s) => serviceName(s) === name);
  if (index < 0) return null;
  const services = [...config.services];
  if (op.op === 'delete-service') {
    services.splice(index, 1);
    return { ...config, services };
  }
  const dest = formatAddrPort(op.addr, op.port);
  const svc = services[index]!;
  const realServers = svc.realServers.filter((d) => realServerKey(d) !== dest);
  if (realServers.length === svc.realServers.length) return null;
  services[index] = { ...svc, realServers };
  return { ...config, services };
}

/** What removal -- a sync daemon stopped -- leaves of `config`; null when none runs in that state. */
export function afterSyncStop(config: LvsdConfig, state: SyncState): LvsdConfig | null {
  const syncDaemons = config.syncDaemons.filter((d) => d.state !== state);
  return syncDaemons.length === config.syncDaemons.length ? null : { ...config, syncDaemons };
}
