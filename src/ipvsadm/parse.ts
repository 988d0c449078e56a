// ipvsadm 1.31's command line, as popt reads it and as ipvsadm.c validates it: the first option
// must be a command, options are checked against a command x option matrix, and every refusal
// has ipvsadm's text and exit status. Pure: host and service names come from an injected lookup.

import {
  addr4,
  addr6,
  formatAddr,
  netmaskPrefix,
  parseInetAton,
  parseIPv4,
  parseIPv6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from '../core/inet.js';
import type { Addr, Family, Protocol } from '../core/inet.js';
import {
  IPIP_TUNNEL,
  DEFAULT_PERSISTENT_TIMEOUT,
  DEFAULT_SCHEDULER,
  MAX_PERSISTENT_TIMEOUT,
  MAX_TIMEOUT,
  MAX_WEIGHT,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  SVC_F_SCHED1,
  SVC_F_SCHED2,
  SVC_F_SCHED3,
} from '../core/model.js';
import type {
  DestRuntimeChange,
  DestSettings,
  ForwardMethod,
  ServiceKey,
  ServiceSettings,
  TunnelCsum,
  TunnelSettings,
  TunnelType,
} from '../core/model.js';
import { ErrorCodes } from '../core/errors.js';
import type { ControlOp, SyncDaemonConfig, SyncState } from '../core/ops.js';
import { REFUSED_EXIT, refusalMessage } from './messages.js';
import { isMulticastAddr } from '../core/sync/config.js';

/** Name lookups ipvsadm does through the C library (gethostbyname, getservbyname). */
export interface NameLookup {
  hostToAddr(name: string): Addr | null;
  serviceToPort(name: string, protocol: Protocol): number | null;
}

export const NO_NAMES: NameLookup = { hostToAddr: () => null, serviceToPort: () => null };

export interface ListFormat {
  numeric: boolean;
  stats: boolean;
  rate: boolean;
  thresholds: boolean;
  persistentConn: boolean;
  exact: boolean;
  nosort: boolean;
  tunInfo: boolean;
  json: boolean;
}

export type Command =
  | { kind: 'execute'; op: ControlOp }
  | {
      kind: 'list';
      what: 'services' | 'connections' | 'timeout' | 'daemon';
      service?: ServiceKey;
      format: ListFormat;
    }
  | { kind: 'save'; format: ListFormat }
  /** lvsadm's own runtime commands (--drain, --ready, --maint, --set-weight, --clear-weight). */
  | { kind: 'runtime'; op: Extract<ControlOp, { op: 'set-dest-runtime' }>; json: boolean }
  | { kind: 'restore' }
  | { kind: 'start-daemon'; config: SyncDaemonConfig }
  | { kind: 'stop-daemon'; state: SyncState }
  /** `-h`/`--help`: ipvsadm's usage; `--lvsadm-help`: what lvsadm adds to it. */
  | { kind: 'help'; lvsadm: boolean }
  | { kind: 'version' };

/** A refusal: the whole text for stderr (no trailing newline) and the exit status. */
export interface UsageError {
  kind: 'usage-error';
  text: string;
  exit: number;
  /**
   * Whether `-R` stops here: ipvsadm's fail() and tryhelp_exit() end the process, a popt syntax
   * error after the command only ends that line (parse_options returns -1 and restore goes on).
   */
  endsRestore: boolean;
}

export type ParseResult = Command | UsageError;

// ipvsadm's command names (its cmdnames[]), the rows of the option matrix.
type CommandName =
  | 'add-service'
  | 'edit-service'
  | 'delete-service'
  | 'flush'
  | 'list'
  | 'add-server'
  | 'delete-server'
  | 'edit-server'
  | 'set'
  | 'start-daemon'
  | 'stop-daemon'
  | 'restore'
  | 'save'
  | 'zero'
  // lvsadm's own: a real server's runtime state, never saved.
  | 'drain'
  | 'ready'
  | 'maint'
  | 'set-weight'
  | 'clear-weight';

// ipvsadm's options, in its optnames[] order (the matrix columns); 'json' is lvsadm's own.
const OPTIONS = [
  'numeric',
  'connection',
  'service-address',
  'scheduler',
  'persistent',
  'netmask',
  'real-server',
  'forwarding-method',
  'weight',
  'u-threshold',
  'l-threshold',
  'mcast-interface',
  'timeout',
  'daemon',
  'stats',
  'rate',
  'thresholds',
  'persistent-conn',
  'nosort',
  'syncid',
  'exact',
  'ops',
  'pe',
  'sched-flags',
  'mcast-group',
  'mcast-port',
  'mcast-ttl',
  'sync-maxlen',
  'tun-info',
  'tun-type',
  'tun-port',
  'tun-nocsum',
  'tun-csum',
  'tun-remcsum',
  'json',
] as const;
type OptionName = (typeof OPTIONS)[number];

// ipvsadm's commands_v_options table, one row per command; unlisted options are illegal ('x').
// '+' compulsory, '1' at most one of the '1's, ' ' optional.
type Rule = '+' | '1' | ' ';
const SERVICE_OPTIONS = {
  'service-address': '+',
  scheduler: ' ',
  persistent: ' ',
  netmask: ' ',
  ops: ' ',
  pe: ' ',
  'sched-flags': ' ',
} as const;
const SERVER_OPTIONS = {
  'service-address': '+',
  'real-server': '+',
  'forwarding-method': ' ',
  weight: ' ',
  'u-threshold': ' ',
  'l-threshold': ' ',
  'tun-type': ' ',
  'tun-port': ' ',
  'tun-nocsum': ' ',
  'tun-csum': ' ',
  'tun-remcsum': ' ',
} as const;
const RUNTIME_OPTIONS = { 'service-address': '+', 'real-server': '+', json: ' ' } as const;
const MATRIX: Record<CommandName, Partial<Record<OptionName, Rule>>> = {
  'add-service': SERVICE_OPTIONS,
  'edit-service': SERVICE_OPTIONS,
  'delete-service': { 'service-address': '+' },
  flush: {},
  list: {
    numeric: ' ',
    connection: '1',
    'service-address': '1',
    timeout: '1',
    daemon: '1',
    stats: ' ',
    rate: ' ',
    thresholds: ' ',
    'persistent-conn': ' ',
    nosort: ' ',
    syncid: ' ',
    exact: ' ',
    'tun-info': ' ',
    json: ' ',
  },
  'add-server': SERVER_OPTIONS,
  'delete-server': { 'service-address': '+', 'real-server': '+' },
  'edit-server': SERVER_OPTIONS,
  set: {},
  'start-daemon': {
    'mcast-interface': ' ',
    syncid: ' ',
    'mcast-group': ' ',
    'mcast-port': ' ',
    'mcast-ttl': ' ',
    'sync-maxlen': ' ',
  },
  'stop-daemon': { syncid: ' ' },
  restore: {},
  save: { numeric: ' ', json: ' ' },
  zero: { 'service-address': ' ' },
  drain: RUNTIME_OPTIONS,
  ready: RUNTIME_OPTIONS,
  maint: RUNTIME_OPTIONS,
  'set-weight': RUNTIME_OPTIONS,
  'clear-weight': RUNTIME_OPTIONS,
};

type ArgKind = 'none' | 'required' | 'optional';
interface OptionSpec {
  long: string | null;
  short: string | null;
  arg: ArgKind;
  tag: string;
}

// The popt table: a command option's tag is a command name, any other's is its own.
const SPECS: OptionSpec[] = [
  { long: 'add-service', short: 'A', arg: 'none', tag: 'cmd:add-service' },
  { long: 'edit-service', short: 'E', arg: 'none', tag: 'cmd:edit-service' },
  { long: 'delete-service', short: 'D', arg: 'none', tag: 'cmd:delete-service' },
  { long: 'clear', short: 'C', arg: 'none', tag: 'cmd:flush' },
  { long: 'list', short: 'L', arg: 'none', tag: 'cmd:list' },
  { long: null, short: 'l', arg: 'none', tag: 'cmd:list' },
  { long: 'zero', short: 'Z', arg: 'none', tag: 'cmd:zero' },
  { long: 'add-server', short: 'a', arg: 'none', tag: 'cmd:add-server' },
  { long: 'edit-server', short: 'e', arg: 'none', tag: 'cmd:edit-server' },
  { long: 'delete-server', short: 'd', arg: 'none', tag: 'cmd:delete-server' },
  { long: 'set', short: null, arg: 'none', tag: 'cmd:set' },
  { long: 'help', short: 'h', arg: 'none', tag: 'help' },
  { long: 'version', short: 'v', arg: 'none', tag: 'version' },
  { long: 'lvsadm-help', short: null, arg: 'none', tag: 'lvsadm-help' },
  { long: 'restore', short: 'R', arg: 'none', tag: 'cmd:restore' },
  { long: 'save', short: 'S', arg: 'none', tag: 'cmd:save' },
  { long: 'start-daemon', short: null, arg: 'required', tag: 'cmd:start-daemon' },
  { long: 'stop-daemon', short: null, arg: 'required', tag: 'cmd:stop-daemon' },
  { long: 'tcp-service', short: 't', arg: 'required', tag: 'tcp' },
  { long: 'udp-service', short: 'u', arg: 'required', tag: 'udp' },
  { long: 'sctp-service', short: null, arg: 'required', tag: 'sctp' },
  { long: 'fwmark-service', short: 'f', arg: 'required', tag: 'fwmark' },
  { long: 'scheduler', short: 's', arg: 'required', tag: 'scheduler' },
  { long: 'persistent', short: 'p', arg: 'optional', tag: 'persistent' },
  { long: 'netmask', short: 'M', arg: 'required', tag: 'netmask' },
  { long: 'real-server', short: 'r', arg: 'required', tag: 'real-server' },
  { long: 'masquerading', short: 'm', arg: 'none', tag: 'masq' },
  { long: 'ipip', short: 'i', arg: 'none', tag: 'tunnel' },
  { long: 'gatewaying', short: 'g', arg: 'none', tag: 'route' },
  { long: 'weight', short: 'w', arg: 'required', tag: 'weight' },
  { long: 'u-threshold', short: 'x', arg: 'required', tag: 'u-threshold' },
  { long: 'l-threshold', short: 'y', arg: 'required', tag: 'l-threshold' },
  { long: 'numeric', short: 'n', arg: 'none', tag: 'numeric' },
  { long: 'connection', short: 'c', arg: 'none', tag: 'connection' },
  { long: 'mcast-interface', short: null, arg: 'required', tag: 'mcast-interface' },
  { long: 'syncid', short: null, arg: 'required', tag: 'syncid' },
  { long: 'timeout', short: null, arg: 'none', tag: 'timeout' },
  { long: 'daemon', short: null, arg: 'none', tag: 'daemon' },
  { long: 'stats', short: null, arg: 'none', tag: 'stats' },
  { long: 'rate', short: null, arg: 'none', tag: 'rate' },
  { long: 'thresholds', short: null, arg: 'none', tag: 'thresholds' },
  { long: 'persistent-conn', short: null, arg: 'none', tag: 'persistent-conn' },
  { long: 'nosort', short: null, arg: 'none', tag: 'nosort' },
  { long: 'sort', short: null, arg: 'none', tag: 'sort' },
  { long: 'exact', short: 'X', arg: 'none', tag: 'exact' },
  { long: 'ipv6', short: '6', arg: 'none', tag: 'ipv6' },
  { long: 'ops', short: 'o', arg: 'none', tag: 'ops' },
  { long: 'pe', short: null, arg: 'required', tag: 'pe' },
  { long: 'sched-flags', short: 'b', arg: 'required', tag: 'sched-flags' },
  { long: 'mcast-group', short: null, arg: 'required', tag: 'mcast-group' },
  { long: 'mcast-port', short: null, arg: 'required', tag: 'mcast-port' },
  { long: 'mcast-ttl', short: null, arg: 'required', tag: 'mcast-ttl' },
  { long: 'sync-maxlen', short: null, arg: 'required', tag: 'sync-maxlen' },
  { long: 'tun-info', short: null, arg: 'none', tag: 'tun-info' },
  { long: 'tun-type', short: null, arg: 'required', tag: 'tun-type' },
  { long: 'tun-port', short: null, arg: 'required', tag: 'tun-port' },
  { long: 'tun-nocsum', short: null, arg: 'none', tag: 'tun-nocsum' },
  { long: 'tun-csum', short: null, arg: 'none', tag: 'tun-csum' },
  { long: 'tun-remcsum', short: null, arg: 'none', tag: 'tun-remcsum' },
  { long: 'json', short: null, arg: 'none', tag: 'json' },
  { long: 'drain', short: null, arg: 'none', tag: 'cmd:drain' },
  { long: 'ready', short: null, arg: 'none', tag: 'cmd:ready' },
  { long: 'maint', short: null, arg: 'none', tag: 'cmd:maint' },
  { long: 'set-weight', short: null, arg: 'required', tag: 'cmd:set-weight' },
  { long: 'clear-weight', short: null, arg: 'none', tag: 'cmd:clear-weight' },
];

/** Scheduler and persistence engine names lvsd's control protocol carries. */
const SENDABLE_NAME = /^[\x21-\x7e]{1,15}$/;
/** No --sync-maxlen: the kernel derives it from the interface MTU when the daemon starts. */
const DEFAULT_SYNC_MAXLEN = 0;
export const DEFAULT_MCAST_GROUP = addr4(0xe0000051); // 224.0.0.81
export const DEFAULT_MCAST_PORT = 8848;
export const DEFAULT_MCAST_TTL = 1;
const DEFAULT_MCAST_INTERFACE = 'eth0';

/** Thrown inside the parser to unwind to parseArgs, which turns it into a UsageError. */
class Refusal {
  constructor(
    readonly text: string,
    readonly exit: number,
    readonly endsRestore = true,
  ) {}
}

function fail(text: string): never {
  throw new Refusal(text, 2);
}

type Token =
  | { type: 'option'; spec: OptionSpec; arg: string | null; argvElement: string }
  | { type: 'error'; argvElement: string; reason: string };

/** popt's option scanner: clustering, `--name=value`, optional arguments, `--` and leftover arguments. */
class OptionScanner {
  private index = 0;
  private cluster: { element: string; rest: string } | null = null;
  readonly leftovers: string[] = [];
  private onlyArgs = false;

  constructor(private readonly argv: readonly string[]) {}

  next(): Token | null {
    if (this.cluster) return this.shortOption(this.cluster.element, this.cluster.rest);
    while (this.index < this.argv.length) {
      const element = this.argv[this.index++]!;
      if (this.onlyArgs || element === '-' || !element.startsWith('-')) {
        this.leftovers.push(element);
        continue;
      }
      if (element === '--') {
        this.onlyArgs = true;
        continue;
      }
      if (element.startsWith('--')) return this.longOption(element);
      return this.shortOption(element, element.slice(1));
    }
    return null;
  }

  private longOption(element: string): Token {
    const eq = element.indexOf('=');
    const name = element.slice(2, eq < 0 ? undefined : eq);
    const spec = SPECS.find((s) => s.long === name);
    if (!spec) return { type: 'error', argvElement: element, reason: 'unknown option' };
    if (eq >= 0) {
      if (spec.arg === 'none')
        return { type: 'error', argvElement: element, reason: 'option does not take an argument' };
      return { type: 'option', spec, arg: element.slice(eq + 1), argvElement: element };
    }
    return this.withSeparateArg(spec, element);
  }

  private shortOption(element: string, chars: string): Token {
    const ch = chars[0]!;
    const attached = chars.slice(1);
    // popt skips one '=' after a short option: `-s=rr` is `-s rr`, `-p=600` is `-p 600`.
    const rest = attached.startsWith('=') ? attached.slice(1) : attached;
    this.cluster = null;
    const spec = SPECS.find((s) => s.short === ch);
    if (!spec) return { type: 'error', argvElement: element, reason: 'unknown option' };
    if (spec.arg === 'none') {
      if (rest !== '') this.cluster = { element, rest };
      return { type: 'option', spec, arg: null, argvElement: element };
    }
    if (attached !== '') return { type: 'option', spec, arg: rest, argvElement: element };
    return this.withSeparateArg(spec, element);
  }

  private withSeparateArg(spec: OptionSpec, element: string): Token {
    if (spec.arg === 'none') return { type: 'option', spec, arg: null, argvElement: element };
    const following = this.argv[this.index];
    if (spec.arg === 'optional') {
      if (following === undefined || following.startsWith('-'))
        return { type: 'option', spec, arg: null, argvElement: element };
    } else if (following === undefined) {
      return { type: 'error', argvElement: element, reason: 'missing argument' };
    }
    this.index++;
    return { type: 'option', spec, arg: following!, argvElement: following! };
  }
}

/** strtol(s, &end, 10) accepting the whole string, within [min, max]; null otherwise. */
export function stringToNumber(text: string, min: number, max: number): number | null {
  if (!/^[ \t\n\v\f\r]*[+-]?[0-9]+$/.test(text)) return null;
  const value = Number(text.trim());
  return value >= min && value <= max ? value : null;
}

interface ParsedAddress {
  addr: Addr;
  port: number | null;
}

/** What a parse needs from outside: name lookups, and where warnings go (stderr). */
interface ParseEnv {
  names: NameLookup;
  warn(text: string): void;
}

/** inet_aton, then the host name; says so when a zero-padded part was read as octal. */
function parseHost(text: string, env: ParseEnv): Addr | null {
  const parsed = parseInetAton(text);
  if (!parsed) {
    const byName = env.names.hostToAddr(text);
    return byName && byName.af === 4 ? byName : null;
  }
  if (parsed.octal)
    env.warn(
      `warning: ${text.trim()} read as ${formatAddr(parsed.addr)}: a part with a leading 0 is octal, as in ipvsadm`,
    );
  return parsed.addr;
}

/**
 * parse_service(): host[:port], v6 or [v6]:port; null when the address or the port is not usable.
 * As in ipvsadm, brackets around an IPv4 address or a host name lose the port after them
 * (`[1.2.3.4]:80` is 1.2.3.4 without a port): only a ':' inside the brackets counts.
 */
function parseAddressPort(text: string, protocol: Protocol, env: ParseEnv): ParsedAddress | null {
  if (/^[0-9]*$/.test(text)) return null;
  let host = text;
  let portText: string | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
  }
  const v6 = parseIPv6(host);
  if (v6) return portText === null ? { addr: v6, port: null } : withPort(v6, portText, protocol, env);
  const colon = host.lastIndexOf(':');
  portText = colon < 0 ? null : host.slice(colon + 1);
  const v4 = parseHost(colon < 0 ? host : host.slice(0, colon), env);
  if (!v4) return null;
  return portText === null ? { addr: v4, port: null } : withPort(v4, portText, protocol, env);
}

function withPort(addr: Addr, portText: string, protocol: Protocol, env: ParseEnv): ParsedAddress | null {
  const port = stringToNumber(portText, 0, 65535) ?? env.names.serviceToPort(portText, protocol);
  return port === null ? null : { addr, port };
}

/** atoi(3): leading blanks, a sign, then digits up to the first other character; 0 without any. */
function atoi(text: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?[0-9]+)/.exec(text);
  return m ? Number(m[1]) : 0;
}

function zeroAddr(af: Family): Addr {
  return af === 4 ? addr4(0) : addr6(0, 0, 0, 0);
}

function parseTimeout(text: string, min: number, max: number): number {
  const value = stringToNumber(text, min, max);
  if (value === null) fail(`invalid timeout value \`${text}' specified`);
  return value;
}

const SCHED_FLAG_BITS: Record<string, { bit: number; scheduler: string | null }> = {
  'flag-1': { bit: SVC_F_SCHED1, scheduler: null },
  'flag-2': { bit: SVC_F_SCHED2, scheduler: null },
  'flag-3': { bit: SVC_F_SCHED3, scheduler: null },
  'sh-fallback': { bit: SVC_F_SCHED1, scheduler: 'sh' },
  'sh-port': { bit: SVC_F_SCHED2, scheduler: 'sh' },
  'mh-fallback': { bit: SVC_F_SCHED1, scheduler: 'mh' },
  'mh-port': { bit: SVC_F_SCHED2, scheduler: 'mh' },
};

function parseSchedFlags(text: string, scheduler: string): number {
  let flags = 0;
  for (const name of text.split(',').filter((f) => f !== '')) {
    const known = SCHED_FLAG_BITS[name];
    if (!known) fail(`invalid scheduler flag \`${name}'`);
    if (known.scheduler !== null && known.scheduler !== scheduler)
      fail(`incompatible scheduler flag \`${name}'`);
    flags |= known.bit;
  }
  return flags;
}

/** Everything ipvsadm's struct ipvs_command_entry collects, with its initial values. */
interface Entry {
  command: CommandName;
  options: Set<OptionName>;
  service: { af: Family; protocol: Protocol | 0; addr: Addr; port: number; fwmark: number };
  scheduler: string;
  flags: number;
  persistTimeout: number;
  netmaskPrefix: number | null;
  pe: string | null;
  schedFlagsText: string | null;
  dest: {
    addr: Addr;
    port: number;
    af: Family;
    method: ForwardMethod;
    weight: number;
    uThreshold: number;
    lThreshold: number;
    tunnel: TunnelSettings;
  };
  daemon: {
    state: SyncState;
    mcastInterface: string;
    syncId: number;
    syncMaxLen: number;
    group: Addr;
    port: number;
    ttl: number;
  };
  format: ListFormat;
}

function setOption(entry: Entry, option: OptionName): void {
  if (entry.options.has(option)) fail(`multiple '${option}' options specified`);
  entry.options.add(option);
}

/** ipvsadm's check of a '+'/'1'/'x' table row; `what` names the row ("the 'add-service' command"). */
function checkOptionRow<O extends string>(
  columns: readonly O[],
  row: Partial<Record<O, Rule>>,
  given: ReadonlySet<string>,
  what: string,
): void {
  let exclusive: O | null = null;
  for (const option of columns) {
    const rule = row[option] ?? 'x';
    if (!given.has(option)) {
      if (rule === '+') fail(`You need to supply the '${option}' option for ${what}`);
      continue;
    }
    if (rule === 'x') fail(`Illegal '${option}' option with ${what}`);
    if (rule === '1') {
      if (exclusive === null) exclusive = option;
      else fail(`The option '${option}' conflicts with the '${exclusive}' option in ${what}`);
    }
  }
}

function genericOptCheck(entry: Entry): void {
  checkOptionRow(OPTIONS, MATRIX[entry.command], entry.options, `the '${entry.command}' command`);
}

// ipvsadm's tunnel_types_v_options: which tunnel options each tunnel type takes.
const TUNNEL_OPTIONS = ['tun-port', 'tun-nocsum', 'tun-csum', 'tun-remcsum'] as const;
const TUNNEL_MATRIX: Record<TunnelType, Partial<Record<(typeof TUNNEL_OPTIONS)[number], Rule>>> = {
  ipip: {},
  gue: { 'tun-port': '+', 'tun-nocsum': '1', 'tun-csum': '1', 'tun-remcsum': '1' },
  gre: { 'tun-nocsum': '1', 'tun-csum': '1' },
};
const TUNNEL_TYPES = Object.keys(TUNNEL_MATRIX) as TunnelType[];

/** -a/-e: tunnel options only with -i, and only those its tunnel type takes. */
function tunnelOptCheck(entry: Entry): void {
  const given = entry.options;
  if ((given.has('tun-type') || TUNNEL_OPTIONS.some((o) => given.has(o))) && entry.dest.method !== 'tunnel')
    fail('Tunnel options conflict with forward method');
  const type = entry.dest.tunnel.type;
  checkOptionRow(TUNNEL_OPTIONS, TUNNEL_MATRIX[type], given, `the '${type}' tunnel type`);
}

function parseSyncState(text: string, command: 'start-daemon' | 'stop-daemon'): SyncState {
  if (text === 'master' || text === 'backup') return text;
  return fail(
    // (sic) ipvsadm 1.31 names the wrong command for --stop-daemon.
    command === 'start-daemon'
      ? 'illegal start-daemon parameter specified'
      : 'illegal start_daemon specified',
  );
}

function handleOption(entry: Entry, tag: string, arg: string | null, env: ParseEnv): void {
  const svc = entry.service;
  switch (tag) {
    case 'tcp':
    case 'udp':
    case 'sctp': {
      setOption(entry, 'service-address');
      svc.protocol = tag === 'tcp' ? IPPROTO_TCP : tag === 'udp' ? IPPROTO_UDP : IPPROTO_SCTP;
      const parsed = parseAddressPort(arg!, svc.protocol, env);
      if (parsed === null) fail('illegal virtual server address[:port] specified');
      svc.af = parsed.addr.af;
      svc.addr = parsed.addr;
      svc.port = parsed.port ?? 0;
      if (svc.af === 6) entry.netmaskPrefix = 128;
      return;
    }
    case 'fwmark': {
      setOption(entry, 'service-address');
      const mark = /^[ \t\n\v\f\r]*[+-]?[0-9]+$/.test(arg!) ? Number(arg!.trim()) : NaN;
      if (!(mark > 0 && mark <= 0xffffffff)) fail(`invalid fwmark value \`${arg}' specified`);
      svc.af = 4;
      svc.protocol = 0;
      svc.addr = zeroAddr(4);
      svc.port = 0;
      svc.fwmark = mark;
      return;
    }
    case 'ipv6':
      if (!svc.fwmark) fail('-6 used before -f\n');
      svc.af = 6;
      svc.addr = zeroAddr(6);
      entry.netmaskPrefix = 128;
      return;
    case 'scheduler':
      setOption(entry, 'scheduler');
      entry.scheduler = arg!.slice(0, 15);
      return;
    case 'persistent':
      setOption(entry, 'persistent');
      entry.flags |= SVC_F_PERSISTENT;
      entry.persistTimeout =
        arg === null ? DEFAULT_PERSISTENT_TIMEOUT : parseTimeout(arg, 1, MAX_PERSISTENT_TIMEOUT);
      return;
    case 'netmask': {
      setOption(entry, 'netmask');
      if (svc.af !== 6) {
        // parse_netmask: inet_aton or a host name, so `-M 24` is 0.0.0.24.
        const mask = parseHost(arg!, env);
        if (!mask) fail('illegal virtual server persistent mask specified');
        const prefix = netmaskPrefix(mask);
        if (prefix < 0)
          fail(
            `persistent mask ${formatAddr(mask)} is not contiguous: lvsd masks clients by prefix length (as 255.255.255.0)`,
          );
        entry.netmaskPrefix = prefix;
      } else {
        const prefix = atoi(arg!);
        if (prefix < 1 || prefix > 128) fail('illegal ipv6 netmask specified');
        entry.netmaskPrefix = prefix;
      }
      return;
    }
    case 'pe':
      setOption(entry, 'pe');
      // An empty name is no persistence engine, as libipvs leaves the attribute out.
      entry.pe = arg!.slice(0, 15) || null;
      return;
    case 'sched-flags':
      setOption(entry, 'sched-flags');
      entry.schedFlagsText = arg;
      return;
    case 'ops':
      setOption(entry, 'ops');
      entry.flags |= SVC_F_ONEPACKET;
      return;
    case 'real-server': {
      setOption(entry, 'real-server');
      const parsed = parseAddressPort(arg!, svc.protocol === 0 ? IPPROTO_TCP : svc.protocol, env);
      if (parsed === null) fail('illegal real server address[:port] specified');
      entry.dest.addr = parsed.addr;
      entry.dest.af = parsed.addr.af;
      entry.dest.port = parsed.port ?? svc.port;
      return;
    }
    case 'masq':
    case 'tunnel':
    case 'route':
      setOption(entry, 'forwarding-method');
      entry.dest.method = tag;
      return;
    case 'weight': {
      setOption(entry, 'weight');
      const weight = stringToNumber(arg!, 0, MAX_WEIGHT);
      if (weight === null) fail('illegal weight specified');
      entry.dest.weight = weight;
      return;
    }
    case 'u-threshold':
    case 'l-threshold': {
      setOption(entry, tag);
      const value = stringToNumber(arg!, 0, 0x7fffffff);
      if (value === null) fail(`illegal ${tag.replace('-', '_')} specified`);
      if (tag === 'u-threshold') entry.dest.uThreshold = value;
      else entry.dest.lThreshold = value;
      return;
    }
    case 'mcast-interface':
      setOption(entry, 'mcast-interface');
      entry.daemon.mcastInterface = arg!.slice(0, 15);
      return;
    case 'syncid': {
      setOption(entry, 'syncid');
      const id = stringToNumber(arg!, 0, 255);
      if (id === null) fail('illegal syncid specified');
      entry.daemon.syncId = id;
      return;
    }
    case 'sync-maxlen': {
      setOption(entry, 'sync-maxlen');
      const len = stringToNumber(arg!, 1, 65535 - 20 - 8);
      if (len === null) fail('illegal sync-maxlen specified');
      entry.daemon.syncMaxLen = len;
      return;
    }
    case 'mcast-group': {
      setOption(entry, 'mcast-group');
      // As ipvsadm: a ':' means IPv6; either way the address must be a multicast group.
      const v6 = arg!.includes(':');
      const group = v6 ? parseIPv6(arg!) : parseIPv4(arg!);
      if (!group || !isMulticastAddr(group)) fail(`invalid IPv${v6 ? 6 : 4} mcast-group \`${arg}'`);
      entry.daemon.group = group;
      return;
    }
    case 'mcast-port': {
      setOption(entry, 'mcast-port');
      const port = stringToNumber(arg!, 1, 65535);
      if (port === null) fail('illegal mcast-port specified');
      entry.daemon.port = port;
      return;
    }
    case 'mcast-ttl': {
      setOption(entry, 'mcast-ttl');
      const ttl = stringToNumber(arg!, 1, 255);
      if (ttl === null) fail('illegal mcast-ttl specified');
      entry.daemon.ttl = ttl;
      return;
    }
    case 'tun-type':
      setOption(entry, 'tun-type');
      if (!TUNNEL_TYPES.includes(arg as TunnelType)) fail('illegal tunnel type specified');
      entry.dest.tunnel.type = arg as TunnelType;
      return;
    case 'tun-port': {
      setOption(entry, 'tun-port');
      const port = stringToNumber(arg!, 1, 65535);
      if (port === null) fail('illegal tunnel port specified');
      entry.dest.tunnel.port = port;
      return;
    }
    case 'tun-nocsum':
    case 'tun-csum':
    case 'tun-remcsum':
      setOption(entry, tag);
      entry.dest.tunnel.csum = tag.slice('tun-'.length) as TunnelCsum;
      return;
    case 'sort':
      // ipvsadm's no-op, kept for backwards compatibility.
      return;
    default:
      // Flag-only options whose name is their matrix column (and list format switch).
      setOption(entry, tag as OptionName);
      setFormatFlag(entry.format, tag);
  }
}

function setFormatFlag(format: ListFormat, tag: string): void {
  const formatFlags: Record<string, keyof ListFormat> = {
    numeric: 'numeric',
    stats: 'stats',
    rate: 'rate',
    thresholds: 'thresholds',
    'persistent-conn': 'persistentConn',
    exact: 'exact',
    nosort: 'nosort',
    'tun-info': 'tunInfo',
    json: 'json',
  };
  const key = formatFlags[tag];
  if (key) format[key] = true;
}

export function emptyListFormat(): ListFormat {
  return {
    numeric: false,
    stats: false,
    rate: false,
    thresholds: false,
    persistentConn: false,
    exact: false,
    nosort: false,
    tunInfo: false,
    json: false,
  };
}

function newEntry(command: CommandName): Entry {
  return {
    command,
    options: new Set(),
    service: { af: 4, protocol: 0, addr: zeroAddr(4), port: 0, fwmark: 0 },
    scheduler: '',
    flags: 0,
    persistTimeout: 0,
    netmaskPrefix: null,
    pe: null,
    schedFlagsText: null,
    dest: {
      addr: zeroAddr(4),
      port: 0,
      af: 4,
      method: 'route',
      weight: 1,
      uThreshold: 0,
      lThreshold: 0,
      tunnel: { ...IPIP_TUNNEL },
    },
    daemon: {
      state: 'master',
      mcastInterface: '',
      syncId: 0,
      syncMaxLen: DEFAULT_SYNC_MAXLEN,
      group: DEFAULT_MCAST_GROUP,
      port: DEFAULT_MCAST_PORT,
      ttl: DEFAULT_MCAST_TTL,
    },
    format: emptyListFormat(),
  };
}

export function tryHelpText(program: string): string {
  return `Try \`${program} -h' or '${program} --help' for more information.`;
}

/**
 * Parses one ipvsadm command line (without the program name). Never throws: a malformed line
 * yields a UsageError with ipvsadm's text and exit status.
 */
export function parseArgs(
  argv: readonly string[],
  options: { program?: string; names?: NameLookup; warn?: (text: string) => void } = {},
): ParseResult {
  const program = options.program ?? 'lvsadm';
  const env: ParseEnv = {
    names: options.names ?? NO_NAMES,
    warn: (text) => options.warn?.(`${program}: ${text}`),
  };
  try {
    return parseOrThrow(argv, program, env);
  } catch (err) {
    if (err instanceof Refusal)
      return { kind: 'usage-error', text: err.text, exit: err.exit, endsRestore: err.endsRestore };
    throw err;
  }
}

function parseOrThrow(argv: readonly string[], program: string, env: ParseEnv): Command {
  const scanner = new OptionScanner(argv);
  const first = scanner.next();
  if (!first || first.type === 'error') throw new Refusal(tryHelpText(program), 255);
  const tag = first.spec.tag;
  if (tag === 'help' || tag === 'lvsadm-help') return { kind: 'help', lvsadm: tag === 'lvsadm-help' };
  if (tag === 'version') return { kind: 'version' };
  if (!tag.startsWith('cmd:')) throw new Refusal(tryHelpText(program), 255);
  const entry = newEntry(tag.slice(4) as CommandName);
  if (entry.command === 'start-daemon' || entry.command === 'stop-daemon')
    entry.daemon.state = parseSyncState(first.arg!, entry.command);
  if (entry.command === 'set-weight') {
    const weight = stringToNumber(first.arg!, 0, 65535);
    if (weight === null) fail('illegal weight specified');
    entry.dest.weight = weight;
  }

  for (let token = scanner.next(); token; token = scanner.next()) {
    if (token.type === 'error') throw new Refusal(`${token.argvElement}: ${token.reason}`, 255, false);
    const optTag = token.spec.tag;
    if (optTag.startsWith('cmd:') || optTag === 'help' || optTag === 'lvsadm-help' || optTag === 'version')
      fail(`invalid option \`${token.argvElement}'`);
    handleOption(entry, optTag, token.arg, env);
  }

  const leftovers = [...scanner.leftovers];
  let timeouts: [number, number, number] | null = null;
  if (entry.command === 'set') {
    if (leftovers.length < 3) fail('--set option requires 3 timeout values');
    const [tcp, tcpfin, udp] = leftovers.splice(0, 3) as [string, string, string];
    timeouts = [
      parseTimeout(tcp, 0, MAX_TIMEOUT),
      parseTimeout(tcpfin, 0, MAX_TIMEOUT),
      parseTimeout(udp, 0, MAX_TIMEOUT),
    ];
  }
  if (leftovers.length > 0) fail(`unexpected argument ${leftovers[0]}`);
  // ipvsadm reads -b here, before the command x option table; `-b ''` is no -b at all.
  if (entry.schedFlagsText)
    entry.flags |= parseSchedFlags(entry.schedFlagsText, entry.scheduler || DEFAULT_SCHEDULER);

  genericOptCheck(entry);
  return buildCommand(entry, timeouts);
}

function serviceKey(entry: Entry): ServiceKey {
  const s = entry.service;
  return { af: s.af, protocol: s.protocol, addr: s.addr, port: s.port, fwmark: s.fwmark };
}

function serviceSettings(entry: Entry): ServiceSettings {
  const svc = entry.service;
  if (!svc.fwmark && !svc.port && !(entry.flags & SVC_F_PERSISTENT))
    fail('Zero port specified for non-persistent service');
  if (entry.flags & SVC_F_ONEPACKET && !svc.fwmark && svc.protocol !== IPPROTO_UDP)
    fail('One-Packet Scheduling is only for UDP virtual services');
  const scheduler = entry.scheduler === '' ? DEFAULT_SCHEDULER : entry.scheduler;
  // The kernel looks such names up and finds nothing; lvsd's protocol cannot carry them.
  if (!SENDABLE_NAME.test(scheduler) || (entry.pe !== null && !SENDABLE_NAME.test(entry.pe)))
    throw new Refusal(refusalMessage('add-service', ErrorCodes.NO_SCHEDULER, ''), REFUSED_EXIT, false);
  return {
    scheduler,
    flags: entry.flags,
    timeout: entry.persistTimeout,
    netmaskPrefix: entry.netmaskPrefix ?? (svc.af === 6 ? 128 : 32),
    pe: entry.pe,
  };
}

function destSettings(entry: Entry): DestSettings {
  const d = entry.dest;
  const settings = { method: d.method, weight: d.weight, uThreshold: d.uThreshold, lThreshold: d.lThreshold };
  return d.method === 'tunnel' ? { ...settings, tunnel: { ...d.tunnel } } : settings;
}

/** The real server a command names; for -a/-e, with ipvsadm's checks and port rule. */
function destTarget(entry: Entry, adding: boolean): { key: ServiceKey; addr: Addr; port: number } {
  const svc = entry.service;
  const d = entry.dest;
  if (!adding) return { key: serviceKey(entry), addr: d.addr, port: d.port };
  if (d.af !== svc.af && d.method !== 'tunnel')
    fail('Different address family is allowed only for tunneling servers');
  tunnelOptCheck(entry);
  // Direct routing and tunnels cannot change the port: the real server sees the VIP's.
  const port = !svc.fwmark && (d.method === 'tunnel' || d.method === 'route') ? svc.port : d.port;
  return { key: serviceKey(entry), addr: d.addr, port };
}

function buildCommand(entry: Entry, timeouts: [number, number, number] | null): Command {
  switch (entry.command) {
    case 'add-service':
      return {
        kind: 'execute',
        op: { op: 'add-service', key: serviceKey(entry), settings: serviceSettings(entry) },
      };
    case 'edit-service':
      return {
        kind: 'execute',
        op: { op: 'edit-service', key: serviceKey(entry), settings: serviceSettings(entry) },
      };
    case 'delete-service':
      return { kind: 'execute', op: { op: 'delete-service', key: serviceKey(entry) } };
    case 'flush':
      return { kind: 'execute', op: { op: 'clear' } };
    case 'add-server':
      return {
        kind: 'execute',
        op: { op: 'add-dest', ...destTarget(entry, true), settings: destSettings(entry) },
      };
    case 'edit-server':
      return {
        kind: 'execute',
        op: { op: 'edit-dest', ...destTarget(entry, true), settings: destSettings(entry) },
      };
    case 'delete-server':
      return { kind: 'execute', op: { op: 'delete-dest', ...destTarget(entry, false) } };
    case 'zero':
      return entry.options.has('service-address')
        ? { kind: 'execute', op: { op: 'zero', key: serviceKey(entry) } }
        : { kind: 'execute', op: { op: 'zero' } };
    case 'set': {
      const [tcp, tcpfin, udp] = timeouts!;
      return { kind: 'execute', op: { op: 'set-timeouts', timeouts: { tcp, tcpfin, udp } } };
    }
    case 'drain':
    case 'ready':
    case 'maint':
      return runtimeCommand(entry, { admin: entry.command });
    case 'set-weight':
      return runtimeCommand(entry, { operatorWeight: entry.dest.weight });
    case 'clear-weight':
      return runtimeCommand(entry, { operatorWeight: null });
    case 'list':
      return listCommand(entry);
    case 'save':
      return { kind: 'save', format: entry.format };
    case 'restore':
      return { kind: 'restore' };
    case 'start-daemon': {
      const d = entry.daemon;
      return {
        kind: 'start-daemon',
        config: {
          state: d.state,
          mcastInterface: d.mcastInterface || DEFAULT_MCAST_INTERFACE,
          syncId: d.syncId,
          syncMaxLen: d.syncMaxLen,
          mcastGroup: d.group,
          mcastPort: d.port,
          mcastTtl: d.ttl,
        },
      };
    }
    case 'stop-daemon':
      return { kind: 'stop-daemon', state: entry.daemon.state };
  }
}

function runtimeCommand(entry: Entry, change: DestRuntimeChange): Command {
  return {
    kind: 'runtime',
    op: { op: 'set-dest-runtime', ...destTarget(entry, false), change },
    json: entry.format.json,
  };
}

function listCommand(entry: Entry): Command {
  const o = entry.options;
  const counters = o.has('stats') || o.has('rate') || o.has('thresholds');
  // -c takes --persistent-conn (pe name and data columns); --timeout and --daemon do not.
  if (
    ((o.has('connection') || o.has('timeout') || o.has('daemon')) && counters) ||
    ((o.has('timeout') || o.has('daemon')) && o.has('persistent-conn'))
  )
    fail('options conflicts in the list command');
  if (o.has('connection')) return { kind: 'list', what: 'connections', format: entry.format };
  if (o.has('service-address'))
    return { kind: 'list', what: 'services', service: serviceKey(entry), format: entry.format };
  if (o.has('timeout')) return { kind: 'list', what: 'timeout', format: entry.format };
  if (o.has('daemon')) return { kind: 'list', what: 'daemon', format: entry.format };
  return { kind: 'list', what: 'services', format: entry.format };
}
