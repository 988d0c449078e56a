// ipvsadm 1.31's listings, byte for byte: `-L` in its formats, `-S`, `-c`, `--timeout`,
// `--daemon`, plus lvsadm's JSON. Pure: names come pre-resolved through a NameTable.

import { formatAddr, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../core/inet.js';
import type { Addr } from '../core/inet.js';
import {
  IPIP_TUNNEL,
  COUNTERS,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  SVC_F_SCHED1,
  SVC_F_SCHED2,
  SVC_F_SCHED3,
  SVC_F_SCHED_MASK,
} from '../core/model.js';
import type { DestSettings, ForwardMethod, ServiceKey, TunnelCsum, TunnelSettings } from '../core/model.js';
import { prefixNetmask } from '../core/inet.js';
import type {
  ConnSnapshot,
  DestSnapshot,
  IpvsTimeouts,
  DestChecks,
  ServiceSnapshot,
  Snapshot,
  StatsSnapshot,
  SyncDaemonConfig,
  SyncDaemonStatus,
} from '../core/ops.js';
import type { ListFormat } from './parse.js';

/** The IPVS version lvsd reports, as the kernel's IP_VS_VERSION_CODE 1.2.1. */
export const IPVS_VERSION = '1.2.1';

/** Names for `-L` without `-n`: reverse host lookups and /etc/services, resolved beforehand. */
export interface NameTable {
  host(addr: Addr): string | null;
  service(port: number, protocol: number): string | null;
}

export const NUMERIC_NAMES: NameTable = { host: () => null, service: () => null };

// printf helpers: %-Ns and %Ns.
function left(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}
function right(text: string, width: number): string {
  return text.length >= width ? text : ' '.repeat(width - text.length) + text;
}

/** libipvs compares 32-bit words by subtracting them into an int: differences past 2^31 wrap. */
function wrappedDiff(x: number, y: number): number {
  return (x - y) | 0;
}

function compareAddrWords(x: Addr, y: Addr): number {
  if (x.af === 6) {
    return wrappedDiff(x.a, y.a) || wrappedDiff(x.b, y.b) || wrappedDiff(x.c, y.c) || wrappedDiff(x.d, y.d);
  }
  return wrappedDiff(x.a, y.a);
}

const AF_NUMBER = { 4: 2, 6: 10 } as const;

/** ipvs_cmp_services: fwmark, family, protocol, address, port. */
export function compareServices(x: ServiceKey, y: ServiceKey): number {
  return (
    wrappedDiff(x.fwmark, y.fwmark) ||
    AF_NUMBER[x.af] - AF_NUMBER[y.af] ||
    x.protocol - y.protocol ||
    compareAddrWords(x.addr, y.addr) ||
    x.port - y.port
  );
}

/** ipvs_cmp_dests: address, port. */
export function compareDests(x: DestSnapshot, y: DestSnapshot): number {
  return compareAddrWords(x.addr, y.addr) || x.port - y.port;
}

/** The services and their real servers in listing order. */
export function orderedServices(snapshot: Snapshot, nosort: boolean): ServiceSnapshot[] {
  if (nosort) return snapshot.services;
  return [...snapshot.services]
    .sort((x, y) => compareServices(x.key, y.key))
    .map((svc) => ({ ...svc, dests: [...svc.dests].sort(compareDests) }));
}

export function serviceKeyEquals(x: ServiceKey, y: ServiceKey): boolean {
  return compareServices(x, y) === 0 && x.af === y.af;
}

function protocolLabel(protocol: number): string {
  if (protocol === IPPROTO_TCP) return 'TCP';
  if (protocol === IPPROTO_UDP) return 'UDP';
  if (protocol === IPPROTO_SCTP) return 'SCTP';
  return 'IP';
}

function protocolSwitch(protocol: number): string {
  if (protocol === IPPROTO_TCP) return '-t';
  if (protocol === IPPROTO_UDP) return '-u';
  return '--sctp-service';
}

/** addrport_to_anyname: numeric, or host and service names where known. */
export function addrPortName(
  addr: Addr,
  port: number,
  protocol: number,
  numeric: boolean,
  names: NameTable,
): string {
  const host = (!numeric && names.host(addr)) || formatAddr(addr);
  const service = (!numeric && names.service(port, protocol)) || String(port);
  return addr.af === 4 ? `${host}:${service}` : `[${host}]:${service}`;
}

const FORWARD_NAMES: Record<ForwardMethod, string> = {
  masq: 'Masq',
  local: 'Local',
  tunnel: 'Tunnel',
  route: 'Route',
};
const FORWARD_SWITCHES: Record<ForwardMethod, string> = {
  masq: '-m',
  local: '-g',
  tunnel: '-i',
  route: '-g',
};

/** A real server as listed; `tunnel` where the snapshot carries a tunnel's settings. */
type ListedDest = DestSnapshot & Pick<DestSettings, 'tunnel'>;

function tunnelOf(d: ListedDest): TunnelSettings {
  return d.tunnel ?? IPIP_TUNNEL;
}

const CSUM_SWITCHES: Record<TunnelCsum, string> = {
  nocsum: '--tun-nocsum',
  csum: '--tun-csum',
  remcsum: '--tun-remcsum',
};
const CSUM_MARKS: Record<TunnelCsum, string> = { nocsum: '-c', csum: '+c', remcsum: 'r+c' };

/** print_tunnel_rule: ipip names its type, gue its port and checksum, gre its checksum. */
function tunnelRule(t: TunnelSettings): string {
  if (t.type === 'gue') return ` --tun-type gue --tun-port ${t.port} ${CSUM_SWITCHES[t.csum]}`;
  if (t.type === 'gre') return ` --tun-type gre ${CSUM_SWITCHES[t.csum]}`;
  return ' --tun-type ipip';
}

/** fwd_tun_info: the TunnelInfo column of --tun-info. */
function tunnelInfo(t: TunnelSettings): string {
  if (t.type === 'gue') return `gue:${t.port}:${CSUM_MARKS[t.csum]}`;
  if (t.type === 'gre') return `gre:${CSUM_MARKS[t.csum]}`;
  return 'ipip';
}

/** print_largenum (a u64): 9 columns, scaled with K/M/G/T unless --exact. */
export function largeNum(value: bigint, exact: boolean): string {
  const digits = value.toString();
  if (exact) return right(digits, digits.length <= 8 ? 9 : digits.length + 1);
  if (value < 100_000_000n) return right(digits, 9);
  if (value < 1_000_000_000n) return right((value / 1_000n).toString(), 8) + 'K';
  if (value < 100_000_000_000n) return right((value / 1_000_000n).toString(), 8) + 'M';
  if (value < 100_000_000_000_000n) return right((value / 1_000_000_000n).toString(), 8) + 'G';
  return right((value / 1_000_000_000_000n).toString(), 8) + 'T';
}

/** --stats columns: the five counters, exact. */
function statsColumns(st: StatsSnapshot, exact: boolean): string {
  return COUNTERS.map((c) => largeNum(BigInt(st[c]), exact)).join('');
}

/** A rate as the u64 the kernel reports (the estimator's rates are whole). */
const rateNum = (rate: number): bigint => BigInt(Math.max(0, Math.floor(rate)));

function schedFlagNames(scheduler: string, flags: number): string {
  const names: string[] = [];
  const prefix = scheduler === 'sh' || scheduler === 'mh' ? scheduler : null;
  if (flags & SVC_F_SCHED1) names.push(prefix ? `${prefix}-fallback` : 'flag-1');
  if (flags & SVC_F_SCHED2) names.push(prefix ? `${prefix}-port` : 'flag-2');
  if (flags & SVC_F_SCHED3) names.push('flag-3');
  return names.join(',');
}

function netmaskText(svc: ServiceSnapshot): string | null {
  const prefix = svc.settings.netmaskPrefix;
  if (svc.key.af === 4) return prefix === 32 ? null : formatAddr(prefixNetmask(prefix));
  return prefix === 128 ? null : String(prefix);
}

function title(format: ListFormat): string {
  const head = 'Prot LocalAddress:Port';
  const columns = (names: string[], width: number, alignLeft: boolean) =>
    names.map((n) => ' ' + (alignLeft ? left(n, width) : right(n, width))).join('');
  if (format.stats)
    return `${left(head, 33)}${columns(['Conns', 'InPkts', 'OutPkts', 'InBytes', 'OutBytes'], 8, false)}\n  -> RemoteAddress:Port\n`;
  if (format.rate)
    return `${left(head, 33)}${columns(['CPS', 'InPPS', 'OutPPS', 'InBPS', 'OutBPS'], 8, false)}\n  -> RemoteAddress:Port\n`;
  if (format.thresholds)
    return `${left(head, 33)}${columns(['Uthreshold', 'Lthreshold', 'ActiveConn', 'InActConn'], 10, true)}\n  -> RemoteAddress:Port\n`;
  if (format.persistentConn)
    return (
      `${left(head, 33)} ${left('Weight', 9)} ${left('PersistConn', 11)} ${left('ActiveConn', 10)} ${left('InActConn', 10)}\n` +
      '  -> RemoteAddress:Port\n'
    );
  if (format.tunInfo)
    return 'Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n';
  return 'Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n';
}

interface Style {
  format: ListFormat;
  /** -S: ipvsadm rules instead of a table. */
  rule: boolean;
  names: NameTable;
  /** lvsd's state file also keeps thresholds, which `-S` does not print. */
  thresholdsInRules?: boolean;
}

function serviceName(svc: ServiceSnapshot, style: Style): string {
  const key = svc.key;
  if (key.fwmark) {
    if (style.rule) return key.af === 6 ? `-f ${key.fwmark} -6` : `-f ${key.fwmark}`;
    return key.af === 6 ? `FWM  ${key.fwmark} IPv6` : `FWM  ${key.fwmark}`;
  }
  const name = addrPortName(key.addr, key.port, key.protocol, style.format.numeric, style.names);
  if (style.rule) return `${protocolSwitch(key.protocol)} ${name}`;
  const text = `${left(protocolLabel(key.protocol), 4)} ${name}`;
  return key.af === 4 ? text.slice(0, 33) : text;
}

function serviceLine(svc: ServiceSnapshot, svcName: string, style: Style): string {
  const s = svc.settings;
  const f = style.format;
  if (style.rule) {
    let line = `-A ${svcName} -s ${s.scheduler}`;
    if (s.flags & SVC_F_PERSISTENT) {
      line += ` -p ${s.timeout}`;
      const mask = netmaskText(svc);
      if (mask !== null) line += ` -M ${mask}`;
    }
    // Unlike the listing, -S saves the engine of a non-persistent service too.
    if (s.pe) line += ` --pe ${s.pe}`;
    if (s.flags & SVC_F_ONEPACKET) line += ' -o';
    if (s.flags & SVC_F_SCHED_MASK) line += ` -b ${schedFlagNames(s.scheduler, s.flags)}`;
    return line;
  }
  if (f.stats) return left(svcName, 33) + statsColumns(svc.stats, f.exact);
  if (f.rate) {
    const r = svc.rates;
    return (
      left(svcName, 33) +
      [r.cps, r.inpps, r.outpps, r.inbps, r.outbps].map((v) => largeNum(rateNum(v), f.exact)).join('')
    );
  }
  let line = `${svcName} ${s.scheduler}`;
  if (s.flags & SVC_F_SCHED_MASK) line += ` (${schedFlagNames(s.scheduler, s.flags)})`;
  if (s.flags & SVC_F_PERSISTENT) {
    line += ` persistent ${s.timeout}`;
    const mask = netmaskText(svc);
    if (mask !== null) line += ` mask ${mask}`;
    if (s.pe) line += ` pe ${s.pe}`;
  }
  if (s.flags & SVC_F_ONEPACKET) line += ' ops';
  return line;
}

function destLine(svc: ServiceSnapshot, svcName: string, d: ListedDest, style: Style): string {
  const f = style.format;
  let name = addrPortName(d.addr, d.port, svc.key.protocol, f.numeric, style.names);
  if (style.rule) {
    // A save holds the configuration: the configured weight, whatever health or drain made of it.
    let line = `-a ${svcName} -r ${name} ${FORWARD_SWITCHES[d.method]} -w ${d.configuredWeight}`;
    if (d.method === 'tunnel') line += tunnelRule(tunnelOf(d));
    if (style.thresholdsInRules) {
      if (d.uThreshold) line += ` -x ${d.uThreshold}`;
      if (d.lThreshold) line += ` -y ${d.lThreshold}`;
    }
    return line;
  }
  if (d.addr.af === 4) name = name.slice(0, 28);
  const prefix = `  -> ${left(name, 28)}`;
  if (f.stats) return prefix + statsColumns(d.stats, f.exact);
  if (f.rate) {
    const r = d.rates;
    const small = [r.cps, r.inpps, r.outpps].map((v) => ' ' + right(rateNum(v).toString(), 8)).join('');
    return prefix + small + largeNum(rateNum(r.inbps), f.exact) + largeNum(rateNum(r.outbps), f.exact);
  }
  if (f.thresholds)
    return `${prefix} ${[d.uThreshold, d.lThreshold, d.activeConns, d.inactConns].map((v) => left(String(v), 10)).join(' ')}`;
  if (f.persistentConn)
    return `${prefix} ${left(String(d.weight), 9)} ${left(String(d.persistConns), 11)} ${left(String(d.activeConns), 10)} ${left(String(d.inactConns), 10)}`;
  if (f.tunInfo) {
    const info = d.method === 'tunnel' ? tunnelInfo(tunnelOf(d)) : 'n/a';
    return `${prefix} ${left(FORWARD_NAMES[d.method], 7)} ${left(info, 13)} ${left(String(d.weight), 6)} ${left(String(d.activeConns), 10)} ${left(String(d.inactConns), 10)}`;
  }
  return `${prefix} ${left(FORWARD_NAMES[d.method], 7)} ${left(String(d.weight), 6)} ${left(String(d.activeConns), 10)} ${left(String(d.inactConns), 10)}`;
}

function serviceEntry(svc: ServiceSnapshot, style: Style): string {
  const name = serviceName(svc, style);
  let out = serviceLine(svc, name, style) + '\n';
  // A listing shows what IPVS would hold: a failed or maintained real server is out of it, as
  // after keepalived's DELDEST; a save keeps every configured one.
  for (const d of svc.dests) if (style.rule || d.scheduled) out += destLine(svc, name, d, style) + '\n';
  return out;
}

/** `-L` (all services, with the version header) or `-L -t VIP:port` (one service, no header). */
export function formatServiceList(
  snapshot: Snapshot,
  format: ListFormat,
  names: NameTable,
  only?: ServiceKey,
): string {
  const style: Style = { format, rule: false, names };
  const services = orderedServices(snapshot, format.nosort);
  if (only) {
    const svc = services.find((s) => serviceKeyEquals(s.key, only));
    return svc ? title(format) + serviceEntry(svc, style) : '';
  }
  let out = `IP Virtual Server version ${IPVS_VERSION} (size=${snapshot.connTableBuckets})\n` + title(format);
  for (const svc of services) out += serviceEntry(svc, style);
  return out;
}

/** `-S` / `-S -n`: rules `-R` reads back. */
export function formatRules(
  snapshot: Snapshot,
  format: ListFormat,
  names: NameTable,
  options: { thresholds?: boolean } = {},
): string {
  const style: Style = { format, rule: true, names, thresholdsInRules: options.thresholds ?? false };
  return orderedServices(snapshot, false)
    .map((svc) => serviceEntry(svc, style))
    .join('');
}

export function formatTimeouts(t: IpvsTimeouts): string {
  return `Timeout (tcp tcpfin udp): ${t.tcp} ${t.tcpfin} ${t.udp}\n`;
}

/** Master first, then backup, as the kernel reports them. */
function orderedDaemons<T extends SyncDaemonConfig>(daemons: readonly T[]): T[] {
  return ['master', 'backup']
    .map((state) => daemons.find((d) => d.state === state))
    .filter((d): d is T => d !== undefined);
}

/** `--daemon`: master first, then backup; every field the kernel reports. */
export function formatSyncDaemons(daemons: readonly SyncDaemonConfig[]): string {
  return orderedDaemons(daemons)
    .map(
      (d) =>
        `${d.state} sync daemon (mcast=${d.mcastInterface}, syncid=${d.syncId}, maxlen=${d.syncMaxLen}, ` +
        `group=${formatAddr(d.mcastGroup)}, port=${d.mcastPort}, ttl=${d.mcastTtl})\n`,
    )
    .join('');
}

/** `--daemon --json`: the settings, and what each daemon has sent, received and dropped. */
export function formatSyncDaemonsJson(daemons: readonly SyncDaemonStatus[]): string {
  const body = orderedDaemons(daemons).map((d) => ({
    ...d,
    mcastGroup: formatAddr(d.mcastGroup),
    stats: d.stats ?? null,
  }));
  return JSON.stringify({ daemons: body }, null, 2) + '\n';
}

function expireText(expiresMs: number): string {
  const seconds = Math.max(0, Math.floor(expiresMs / 1000));
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(Math.floor(seconds / 60))}:${two(seconds % 60)}`;
}

/** `-L -c`: the connection table as /proc/net/ip_vs_conn shows it, read back by ipvsadm. */
/** -Lc's title lines; the rows follow, a page at a time (formatConnectionRows). */
export function formatConnectionsHeader(format: ListFormat): string {
  // --persistent-conn adds persistence engine columns; a row fills them only for a connection
  // with engine data (lvsd keeps none), as ipvsadm prints /proc/net/ip_vs_conn's rows.
  const columns = format.persistentConn
    ? `${left('destination', 18)} ${left('pe name', 16)} pe_data`
    : 'destination';
  return (
    'IPVS connection entries\n' +
    `pro expire ${left('state', 11)} ${left('source', 18)} ${left('virtual', 18)} ${columns}\n`
  );
}

export function formatConnectionRows(
  conns: readonly ConnSnapshot[],
  format: ListFormat,
  names: NameTable,
): string {
  let out = '';
  for (const c of conns) {
    const name = (a: Addr, port: number) => addrPortName(a, port, c.protocol, format.numeric, names);
    out +=
      `${left(protocolLabel(c.protocol), 3)} ${left(expireText(c.expiresMs), 6)} ${left(c.state, 11)} ` +
      `${left(name(c.caddr, c.cport), 18)} ${left(name(c.vaddr, c.vport), 18)} ${name(c.daddr, c.dport)}\n`;
  }
  return out;
}

// ---- JSON (lvsadm's own) ----

function serviceJson(svc: ServiceSnapshot, withCounters: boolean): object {
  const key = svc.key;
  const s = svc.settings;
  const identity = key.fwmark
    ? { fwmark: key.fwmark, family: key.af === 6 ? 'inet6' : 'inet' }
    : { protocol: protocolLabel(key.protocol).toLowerCase(), address: formatAddr(key.addr), port: key.port };
  return {
    ...identity,
    scheduler: s.scheduler,
    persistent:
      s.flags & SVC_F_PERSISTENT ? { timeout: s.timeout, netmask: s.netmaskPrefix, pe: s.pe } : null,
    ops: (s.flags & SVC_F_ONEPACKET) !== 0,
    schedFlags: s.flags & SVC_F_SCHED_MASK ? schedFlagNames(s.scheduler, s.flags).split(',') : [],
    ...(withCounters ? { stats: svc.stats, rates: svc.rates } : {}),
    realServers: svc.dests.map((d) => ({
      address: formatAddr(d.addr),
      port: d.port,
      forward: FORWARD_NAMES[d.method].toLowerCase(),
      weight: withCounters ? d.weight : d.configuredWeight,
      uThreshold: d.uThreshold,
      lThreshold: d.lThreshold,
      ...(withCounters
        ? {
            configuredWeight: d.configuredWeight,
            scheduled: d.scheduled,
            admin: d.admin,
            health: d.health,
            operatorWeight: d.operatorWeight,
            dynamicWeight: d.dynamicWeight,
            activeConns: d.activeConns,
            inactConns: d.inactConns,
            persistConns: d.persistConns,
            stats: d.stats,
            rates: d.rates,
            ...(d.checks ? { checks: checksJson(d.checks) } : {}),
          }
        : {}),
    })),
  };
}

const isoTime = (ms: number): string => new Date(ms).toISOString();

function checksJson(checks: DestChecks) {
  return {
    alive: checks.alive,
    checkers: checks.checkers.map((c) => ({
      kind: c.kind,
      up: c.up,
      last: c.last && { ...c.last, time: isoTime(c.last.time) },
    })),
    lastChange: checks.lastChange && { ...checks.lastChange, time: isoTime(checks.lastChange.time) },
  };
}

/** `-L --json` (with counters) and `-S --json` (configuration only). */
export function formatJson(snapshot: Snapshot, options: { counters: boolean; nosort?: boolean }): string {
  const services = orderedServices(snapshot, options.nosort ?? false).map((s) =>
    serviceJson(s, options.counters),
  );
  const body = options.counters
    ? {
        version: IPVS_VERSION,
        connTableSize: snapshot.connTableBuckets,
        ...(snapshot.connTable && { connTable: snapshot.connTable }),
        timeouts: snapshot.timeouts,
        services,
        dataPath: snapshot.dataPath,
      }
    : { timeouts: snapshot.timeouts, services };
  return JSON.stringify(body, null, 2) + '\n';
}
