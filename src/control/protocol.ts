// lvsd's control protocol: newline-delimited JSON over a Unix socket, version 1.
//   request  {"v":1,"id":N,"op":"execute","command":ControlOp}
//            {"v":1,"id":N,"op":"snapshot","connections":bool}
//            {"v":1,"id":N,"op":"connections","from":SLOT,"limit":N}   a page of the table
//            {"v":1,"id":N,"op":"start-sync","config":SyncDaemonConfig}
//            {"v":1,"id":N,"op":"stop-sync","state":"master"|"backup"}
//            {"v":1,"id":N,"op":"sync-daemons"}
//   response {"v":1,"id":N,"ok":true,"result":...} | {"v":1,"id":N,"ok":false,"error":{"code","message"}}
// A snapshot's u64 counters travel as decimal strings (U64Text), which JSON keeps exact.
// Every request is checked field by field (types and ranges) and rebuilt from scratch, so
// nothing unchecked reaches the engine.

import { addr4, addr6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../core/inet.js';
import type { Addr, Protocol } from '../core/inet.js';
import {
  MAX_PERSISTENT_TIMEOUT,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  SVC_F_SCHED_MASK,
  MAX_TIMEOUT,
  MAX_WEIGHT,
} from '../core/model.js';
import type {
  AdminState,
  DestRuntimeChange,
  DestSettings,
  ForwardMethod,
  HealthState,
  ServiceKey,
  ServiceSettings,
} from '../core/model.js';
import { MAX_CAPACITY } from '../core/conn/table.js';
import {
  MAX_CONN_PAGE,
  type ControlOp,
  type IpvsTimeouts,
  type SyncDaemonConfig,
  type SyncState,
} from '../core/ops.js';
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

export const PROTOCOL_VERSION = 1;
/** Larger requests are refused and the connection closed: no legitimate request comes near. */
export const MAX_REQUEST_BYTES = 64 * 1024;

/** Protocol-level refusals, beside the director's LvsError codes. */
export const ProtocolErrorCodes = {
  BAD_REQUEST: 'LVSD_ERR_BAD_REQUEST',
  TOO_LARGE: 'LVSD_ERR_TOO_LARGE',
  INTERNAL: 'LVSD_ERR_INTERNAL',
  /** The change could not be saved in the state directory (a full disk, a write error): not made. */
  STATE_WRITE: 'LVSD_ERR_STATE_WRITE',
  /** lvsd runs from a keepalived.conf: configuration changes go through that file, not lvsadm. */
  CONFIG_OWNED: 'LVSD_ERR_CONFIG_OWNED',
} as const;

export type Request =
  | { v: 1; id: number; op: 'execute'; command: ControlOp }
  | { v: 1; id: number; op: 'snapshot'; connections: boolean }
  | { v: 1; id: number; op: 'connections'; from: number; limit: number }
  | { v: 1; id: number; op: 'start-sync'; config: SyncDaemonConfig }
  | { v: 1; id: number; op: 'stop-sync'; state: SyncState }
  | { v: 1; id: number; op: 'sync-daemons' };

export type Response =
  | { v: 1; id: number | null; ok: true; result?: unknown }
  | { v: 1; id: number | null; ok: false; error: { code: string; message: string } };

function addr(value: unknown, what: string): Addr {
  const o = record(value, what);
  check(o.af === 4 || o.af === 6, `${what}.af must be 4 or 6`);
  const words = (['a', 'b', 'c', 'd'] as const).map((w) => int(o[w], 0, U32, `${what}.${w}`));
  if (o.af === 4) {
    check(
      words[1] === 0 && words[2] === 0 && words[3] === 0,
      `${what}: an IPv4 address has only its first word`,
    );
    return addr4(words[0]!);
  }
  return addr6(words[0]!, words[1]!, words[2]!, words[3]!);
}

function isZero(a: Addr): boolean {
  return a.a === 0 && a.b === 0 && a.c === 0 && a.d === 0;
}

function serviceKey(value: unknown): ServiceKey {
  const o = record(value, 'key');
  const a = addr(o.addr, 'key.addr');
  check(o.af === a.af, 'key.af must match key.addr.af');
  const protocol = o.protocol;
  check(
    protocol === 0 || protocol === IPPROTO_TCP || protocol === IPPROTO_UDP || protocol === IPPROTO_SCTP,
    'key.protocol is not valid',
  );
  const port = int(o.port, 0, 65535, 'key.port');
  const fwmark = int(o.fwmark, 0, U32, 'key.fwmark');
  if (fwmark > 0)
    check(protocol === 0 && port === 0 && isZero(a), 'a fwmark service has no protocol, address or port');
  else check(protocol !== 0, 'key.protocol is required without a fwmark');
  return { af: a.af, protocol: protocol as Protocol | 0, addr: a, port, fwmark };
}

const KNOWN_SERVICE_FLAGS = SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED_MASK;

function serviceSettings(value: unknown, af: 4 | 6): ServiceSettings {
  const o = record(value, 'settings');
  const flags = int(o.flags, 0, KNOWN_SERVICE_FLAGS, 'settings.flags');
  check((flags & ~KNOWN_SERVICE_FLAGS) === 0, 'settings.flags has unknown bits');
  return {
    scheduler: str(o.scheduler, NAME, 'settings.scheduler'),
    flags,
    timeout: int(o.timeout, 0, MAX_PERSISTENT_TIMEOUT, 'settings.timeout'),
    netmaskPrefix: int(o.netmaskPrefix, 1, af === 4 ? 32 : 128, 'settings.netmaskPrefix'),
    pe: o.pe === null ? null : str(o.pe, NAME, 'settings.pe'),
  };
}

const METHODS: readonly ForwardMethod[] = ['masq', 'local', 'tunnel', 'route'];

function destSettings(value: unknown): DestSettings {
  const o = record(value, 'settings');
  check(METHODS.includes(o.method as ForwardMethod), 'settings.method is not valid');
  const settings: DestSettings = {
    method: o.method as ForwardMethod,
    weight: int(o.weight, 0, MAX_WEIGHT, 'settings.weight'),
    uThreshold: int(o.uThreshold, 0, MAX_THRESHOLD, 'settings.uThreshold'),
    lThreshold: int(o.lThreshold, 0, MAX_THRESHOLD, 'settings.lThreshold'),
  };
  if (o.tunnel !== undefined) {
    check(settings.method === 'tunnel', 'settings.tunnel is only for method tunnel');
    settings.tunnel = tunnelSettings(o.tunnel, 'settings.tunnel');
  }
  return settings;
}

function timeouts(value: unknown): IpvsTimeouts {
  const o = record(value, 'timeouts');
  return {
    tcp: int(o.tcp, 0, MAX_TIMEOUT, 'timeouts.tcp'),
    tcpfin: int(o.tcpfin, 0, MAX_TIMEOUT, 'timeouts.tcpfin'),
    udp: int(o.udp, 0, MAX_TIMEOUT, 'timeouts.udp'),
  };
}

function destTarget(o: Record<string, unknown>): { key: ServiceKey; addr: Addr; port: number } {
  return { key: serviceKey(o.key), addr: addr(o.addr, 'addr'), port: int(o.port, 0, 65535, 'port') };
}

const ADMIN_STATES: readonly AdminState[] = ['ready', 'drain', 'maint'];
const HEALTH_STATES: readonly HealthState[] = ['up', 'down', 'down-inhibited'];

function optionalWeight(value: unknown, what: string): number | null {
  return value === null ? null : int(value, 0, MAX_WEIGHT, what);
}

function runtimeChange(value: unknown): DestRuntimeChange {
  const o = record(value, 'change');
  const change: DestRuntimeChange = {};
  if (o.admin !== undefined) {
    check(ADMIN_STATES.includes(o.admin as AdminState), 'change.admin is not valid');
    change.admin = o.admin as AdminState;
  }
  if (o.health !== undefined) {
    check(HEALTH_STATES.includes(o.health as HealthState), 'change.health is not valid');
    change.health = o.health as HealthState;
  }
  if (o.operatorWeight !== undefined)
    change.operatorWeight = optionalWeight(o.operatorWeight, 'change.operatorWeight');
  if (o.dynamicWeight !== undefined)
    change.dynamicWeight = optionalWeight(o.dynamicWeight, 'change.dynamicWeight');
  check(Object.keys(change).length > 0, 'change must change something');
  return change;
}

export function validateControlOp(value: unknown): ControlOp {
  const o = record(value, 'command');
  switch (o.op) {
    case 'add-service':
    case 'edit-service': {
      const key = serviceKey(o.key);
      return { op: o.op, key, settings: serviceSettings(o.settings, key.af) };
    }
    case 'delete-service':
      return { op: 'delete-service', key: serviceKey(o.key) };
    case 'clear':
      return { op: 'clear' };
    case 'add-dest':
    case 'edit-dest':
      return { op: o.op, ...destTarget(o), settings: destSettings(o.settings) };
    case 'delete-dest':
      return { op: 'delete-dest', ...destTarget(o) };
    case 'set-dest-runtime': {
      check(
        o.endConnections === undefined || typeof o.endConnections === 'boolean',
        'endConnections must be a boolean',
      );
      const target = destTarget(o);
      const change = runtimeChange(o.change);
      return o.endConnections === true
        ? { op: 'set-dest-runtime', ...target, change, endConnections: true }
        : { op: 'set-dest-runtime', ...target, change };
    }
    case 'zero':
      return o.key === undefined ? { op: 'zero' } : { op: 'zero', key: serviceKey(o.key) };
    case 'set-timeouts':
      return { op: 'set-timeouts', timeouts: timeouts(o.timeouts) };
    default:
      throw new Invalid('command.op is not a known operation');
  }
}

function syncState(value: unknown): SyncState {
  check(value === 'master' || value === 'backup', 'state must be master or backup');
  return value;
}

export function validateSyncConfig(value: unknown): SyncDaemonConfig {
  const o = record(value, 'config');
  return {
    state: syncState(o.state),
    mcastInterface: str(o.mcastInterface, IFNAME, 'config.mcastInterface'),
    syncId: int(o.syncId, 0, 255, 'config.syncId'),
    // 0: the default, settled from the interface MTU when the daemon starts (as the kernel).
    syncMaxLen: int(o.syncMaxLen, 0, MAX_SYNC_LEN, 'config.syncMaxLen'),
    mcastGroup: addr(o.mcastGroup, 'config.mcastGroup'),
    mcastPort: int(o.mcastPort, 1, 65535, 'config.mcastPort'),
    mcastTtl: int(o.mcastTtl, 1, 255, 'config.mcastTtl'),
  };
}

/** A request, or the reason it is refused (with its id when one could be read). */
export function decodeRequest(line: string): { request: Request } | { error: string; id: number | null } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { error: 'request is not JSON', id: null };
  }
  const rawId = (parsed as { id?: unknown } | null)?.id;
  const id =
    typeof rawId === 'number' && Number.isInteger(rawId) && rawId >= 0 && rawId <= 0x7fffffff ? rawId : null;
  try {
    const o = record(parsed, 'request');
    check(o.v === PROTOCOL_VERSION, `unsupported protocol version (this lvsd speaks v${PROTOCOL_VERSION})`);
    check(id !== null, 'id must be an integer in 0..2147483647');
    switch (o.op) {
      case 'execute':
        return { request: { v: 1, id, op: 'execute', command: validateControlOp(o.command) } };
      case 'snapshot':
        check(typeof o.connections === 'boolean', 'connections must be a boolean');
        return { request: { v: 1, id, op: 'snapshot', connections: o.connections } };
      case 'connections':
        return {
          request: {
            v: 1,
            id,
            op: 'connections',
            from: int(o.from, 0, MAX_CAPACITY - 1, 'from'),
            limit: int(o.limit, 1, MAX_CONN_PAGE, 'limit'),
          },
        };
      case 'start-sync':
        return { request: { v: 1, id, op: 'start-sync', config: validateSyncConfig(o.config) } };
      case 'stop-sync':
        return { request: { v: 1, id, op: 'stop-sync', state: syncState(o.state) } };
      case 'sync-daemons':
        return { request: { v: 1, id, op: 'sync-daemons' } };
      default:
        throw new Invalid('op is not a known request');
    }
  } catch (err) {
    if (err instanceof Invalid) return { error: err.message, id };
    throw err;
  }
}

export function encodeResponse(response: Response): string {
  return JSON.stringify(response) + '\n';
}
