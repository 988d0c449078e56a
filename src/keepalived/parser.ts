// keepalived.conf's keywords (check_parser.c, check_api.c, check_{tcp,http,dns,misc,udp,ping}.c,
// global_parser.c) read into raw records: what the file says, nothing defaulted yet (resolve.ts
// does that, with keepalived's warnings). A bad value is an error where keepalived would log it and
// carry on; what lvsd cannot carry out is refused; blocks lvsd has no use for are skipped.

import type { Addr, Protocol } from '../core/inet.js';
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, netmaskPrefix, parseIPv4 } from '../core/inet.js';
import {
  MAX_PERSISTENT_TIMEOUT,
  MAX_WEIGHT,
  SVC_F_ONEPACKET,
  SVC_F_SCHED1,
  SVC_F_SCHED2,
  SVC_F_SCHED3,
} from '../core/model.js';
import type { ForwardMethod, TunnelSettings } from '../core/model.js';
import { BUILTIN_SCHEDULER_NAMES } from '../core/sched/index.js';
import type { HttpUrl } from '../health/config.js';
import { ConfigError, splitQuoted, type Diagnostic, type SourcePos } from './lexer.js';
import type { ScriptConfig } from './model.js';
import type { ConfigNode } from './tree.js';
import { readAddr, readBool, readHex, readPort, readTimerMs, readUnsigned, TIMER_MAX_US } from './values.js';

const UINT_MAX = 0xffffffff;
/** The connection table's bound (src/core/conn/timeouts.ts: milliseconds in 31 bits), below keepalived's 31 days. */

/** Timing keywords a virtual server, a real server and a checker may each set. */
export interface RawTiming {
  delayLoopMs?: number;
  connectTimeoutMs?: number;
  retry?: number;
  delayBeforeRetryMs?: number;
  warmupMs?: number;
  alpha?: boolean;
}

/** The forwarding methods a keepalived.conf may name here: NAT, DR and TUN. */
export type KeepalivedMethod = Extract<ForwardMethod, 'masq' | 'route' | 'tunnel'>;

/** lb_kind / lvs_method as read: the method, and a tunnel's encapsulation (null for NAT and DR). */
export interface KeepalivedForward {
  method: KeepalivedMethod;
  tunnel: TunnelSettings | null;
}

export type DnsType = 'A' | 'NS' | 'CNAME' | 'SOA' | 'MX' | 'TXT' | 'AAAA';

export interface RawChecker {
  kind: 'TCP_CHECK' | 'HTTP_GET' | 'SSL_GET' | 'UDP_CHECK' | 'DNS_CHECK' | 'PING_CHECK' | 'MISC_CHECK';
  pos: SourcePos;
  timing: RawTiming;
  logAllFailures?: boolean;
  connectIp?: Addr;
  connectPort?: number;
  bindAddr?: Addr;
  bindPort?: number;
  bindInterface?: string;
  fwmark?: number;
  urls: HttpUrl[];
  virtualhost?: string;
  httpProtocol?: '1.0' | '1.0C' | '1.1';
  enableSni?: boolean;
  fastRecovery?: boolean;
  payload?: Uint8Array;
  requireReply?: Uint8Array;
  minReplyLength?: number;
  maxReplyLength?: number;
  dnsType?: DnsType;
  dnsName?: string;
  misc?: ScriptConfig;
  miscTimeoutMs?: number;
  miscDynamic?: boolean;
}

export interface RawRealServer {
  pos: SourcePos;
  addr: Addr;
  port: number;
  methodSet: boolean;
  /** lvs_method, else the virtual server's lb_kind when the real server began. */
  method: KeepalivedMethod;
  tunnel: TunnelSettings | null;
  weight?: number;
  uThreshold: number;
  lThreshold: number;
  inhibit?: boolean;
  notifyUp: ScriptConfig | null;
  notifyDown: ScriptConfig | null;
  timing: RawTiming;
  virtualhost?: string;
  checkers: RawChecker[];
}

export interface RawVirtualServer {
  pos: SourcePos;
  addr: Addr | null;
  port: number;
  fwmark: number;
  group: string | null;
  af?: 4 | 6;
  protocol?: Protocol;
  scheduler?: string;
  flags: number;
  persistenceTimeout: number;
  /** persistence_granularity as a prefix length. */
  granularity?: number;
  pe: string | null;
  methodSet: boolean;
  /** lb_kind (lvs_method): what real servers begun after it take. */
  method: KeepalivedMethod;
  tunnel: TunnelSettings | null;
  timing: RawTiming;
  inhibit: boolean;
  omega: boolean;
  quorum: number;
  hysteresis: number;
  quorumUp: ScriptConfig | null;
  quorumDown: ScriptConfig | null;
  weight: number;
  virtualhost?: string;
  sorry: ({ pos: SourcePos; addr: Addr; port: number; inhibit: boolean } & KeepalivedForward) | null;
  realServers: RawRealServer[];
}

export type GroupEntry =
  | { kind: 'addr'; pos: SourcePos; addrs: Addr[]; port: number }
  | { kind: 'fwmark'; pos: SourcePos; fwmark: number; af?: 4 | 6 };

export interface RawGroup {
  pos: SourcePos;
  name: string;
  entries: GroupEntry[];
}

export interface RawGlobals {
  timeouts: { tcp: number; tcpfin: number; udp: number } | null;
  flush: boolean;
  checkerLogAllFailures: boolean;
  rsInitNotifies: boolean;
  notifyFifo: { path: string; script: ScriptConfig | null } | null;
  lvsNotifyFifo: { path: string; script: ScriptConfig | null } | null;
  scriptUser: { user: string; group: string | null } | null;
  scriptSecurity: boolean;
}

export interface RawConfig {
  globals: RawGlobals;
  groups: Map<string, RawGroup>;
  virtualServers: RawVirtualServer[];
}

/** Top-level blocks and keywords of keepalived that lvsd has no use for: skipped without a word. */
const SKIPPED_TOP = new Set([
  'vrrp_instance',
  'vrrp_sync_group',
  'vrrp_script',
  'vrrp_track_file',
  'track_file',
  'track_process',
  'vrrp_track_process',
  'static_ipaddress',
  'static_routes',
  'static_rules',
  'bfd_instance',
  'garp_group',
  'linkbeat_use_polling',
  'use_pid_dir',
  'instance',
  'child_wait_time',
  'namespace_with_ipsets',
]);

/** Refused wherever they appear, with the reason. */
const REFUSED: Record<string, string> = {
  net_namespace: 'lvsd runs in its own network namespace: start it inside the namespace instead',
  net_namespace_ipvs: 'lvsd keeps its services itself, not in another namespace',
  SSL: 'SSL client certificates for SSL_GET are not supported by lvsd yet',
  lvs_sync_daemon:
    'the sync daemon would follow a VRRP instance, which lvsd does not run: ' +
    'start it from notify_master/notify_backup with lvsadm --start-daemon',
  lvs_sync_daemon_interface: 'the sync daemon would follow a VRRP instance, which lvsd does not run',
  lvs_flush_on_stop: 'lvsd removes its services on stop itself; lvs_flush_on_stop is not supported',
  nftables: 'lvsd sets no nftables rules for keepalived',
  nftables_ipvs: 'lvsd sets no nftables rules for keepalived',
  ha_suspend: 'ha_suspend follows VRRP, which lvsd does not run',
  smtp_alert: 'lvsd sends no SMTP alerts',
  snmp_name: 'lvsd has no SNMP agent',
  SMTP_CHECK: 'SMTP_CHECK is not supported by lvsd yet',
  FILE_CHECK: 'FILE_CHECK is not supported by lvsd yet',
  BFD_CHECK: 'BFD_CHECK is not supported by lvsd yet',
  track_bfd: 'BFD is not supported by lvsd yet',
  sni_name: 'sni_name is not supported by lvsd yet (enable_sni sends the virtualhost)',
  tls_compliant: 'tls_compliant is not supported by lvsd yet',
  regex: 'HTTP_GET regex is not supported by lvsd yet',
  regex_no_match: 'HTTP_GET regex is not supported by lvsd yet',
  regex_options: 'HTTP_GET regex is not supported by lvsd yet',
  regex_min_offset: 'HTTP_GET regex is not supported by lvsd yet',
  regex_max_offset: 'HTTP_GET regex is not supported by lvsd yet',
  regex_stack: 'HTTP_GET regex is not supported by lvsd yet',
};

const CHECKER_KINDS = new Set<RawChecker['kind']>([
  'TCP_CHECK',
  'HTTP_GET',
  'SSL_GET',
  'UDP_CHECK',
  'DNS_CHECK',
  'PING_CHECK',
  'MISC_CHECK',
]);

const DNS_TYPES = new Set<DnsType>(['A', 'NS', 'CNAME', 'SOA', 'MX', 'TXT', 'AAAA']);

/** The flags that stand alone (lbflags_handler). */
const PLAIN_FLAGS: Record<string, number> = {
  ops: SVC_F_ONEPACKET,
  'flag-1': SVC_F_SCHED1,
  'flag-2': SVC_F_SCHED2,
  'flag-3': SVC_F_SCHED3,
};

const SCHEDULERS: ReadonlySet<string> = new Set(BUILTIN_SCHEDULER_NAMES);
const PERSISTENCE_ENGINES = new Set(['sip']);

function fail(pos: SourcePos, reason: string): never {
  throw new ConfigError(pos, reason);
}

class Parser {
  constructor(private readonly warnings: Diagnostic[]) {}

  readonly globals: RawGlobals = {
    timeouts: null,
    flush: false,
    checkerLogAllFailures: false,
    rsInitNotifies: false,
    notifyFifo: null,
    lvsNotifyFifo: null,
    scriptUser: null,
    scriptSecurity: false,
  };
  readonly groups = new Map<string, RawGroup>();
  readonly virtualServers: RawVirtualServer[] = [];

  /** Blocks read, and blocks skipped whole: any other block stands after a keyword that takes none. */
  readonly blocksRead = new Set<ConfigNode>();
  readonly blocksSkipped = new Set<ConfigNode>();

  warn(pos: SourcePos, message: string): void {
    this.warnings.push({ file: pos.file, line: pos.line, message });
  }

  /** The block of a keyword that must have one. */
  block(node: ConfigNode): ConfigNode[] {
    if (!node.block) fail(node, `Missing '{' at beginning of configuration block '${node.keyword}'`);
    this.blocksRead.add(node);
    return node.block;
  }

  private skip(node: ConfigNode): void {
    this.blocksSkipped.add(node);
  }

  /** A keyword lvsd refuses, an unknown one (skipped whole, with a warning), or false. */
  private other(node: ConfigNode): void {
    const refusal = REFUSED[node.keyword];
    if (refusal !== undefined && Object.hasOwn(REFUSED, node.keyword))
      fail(node, `${node.keyword}: ${refusal}`);
    this.warn(node, `Unknown keyword '${node.keyword}'`);
    this.skip(node);
  }

  top(nodes: readonly ConfigNode[]): void {
    for (const node of nodes) {
      switch (node.keyword) {
        case 'global_defs':
          this.globalDefs(this.block(node));
          break;
        case 'virtual_server_group':
          this.group(node);
          break;
        case 'virtual_server':
          this.virtualServer(node);
          break;
        default:
          if (SKIPPED_TOP.has(node.keyword)) this.skip(node);
          else this.other(node);
      }
    }
  }

  private globalDefs(nodes: readonly ConfigNode[]): void {
    const g = this.globals;
    for (const node of nodes) {
      const [a0, a1] = node.args;
      switch (node.keyword) {
        case 'lvs_timeouts':
          g.timeouts = readLvsTimeouts(node);
          break;
        case 'lvs_flush':
          g.flush = true;
          break;
        case 'checker_log_all_failures':
          g.checkerLogAllFailures = need(
            readBool(a0),
            node,
            'Invalid value for checker_log_all_failures specified',
          );
          break;
        case 'rs_init_notifies':
          g.rsInitNotifies = need(
            readBool(a0),
            node,
            `Invalid value '${a0}' for global rs_init_notifies specified`,
          );
          break;
        case 'notify_fifo':
        case 'lvs_notify_fifo': {
          if (a0 === undefined) fail(node, `${node.keyword} requires a path`);
          const key = node.keyword === 'notify_fifo' ? 'notifyFifo' : 'lvsNotifyFifo';
          g[key] = { path: a0, script: g[key]?.script ?? null };
          break;
        }
        case 'notify_fifo_script':
        case 'lvs_notify_fifo_script': {
          const key = node.keyword === 'notify_fifo_script' ? 'notifyFifo' : 'lvsNotifyFifo';
          const fifo = g[key];
          if (!fifo) fail(node, `${node.keyword} needs ${node.keyword.replace('_script', '')} first`);
          fifo.script = readScript(node);
          break;
        }
        case 'script_user':
          if (a0 === undefined) fail(node, 'script_user requires a user');
          g.scriptUser = { user: a0, group: a1 ?? null };
          break;
        case 'enable_script_security':
          g.scriptSecurity = true;
          break;
        default:
          // The rest of global_defs is VRRP, SMTP, SNMP and process tuning: not lvsd's business,
          // except what it refuses.
          if (Object.hasOwn(REFUSED, node.keyword)) this.other(node);
          this.skip(node);
      }
    }
  }

  private group(node: ConfigNode): void {
    const name = node.args[0];
    if (name === undefined) fail(node, 'virtual_server_group requires a name');
    const entries: GroupEntry[] = [];
    for (const entry of this.block(node)) entries.push(readGroupEntry(entry, name));
    if (entries.length === 0) {
      this.warn(node, `virtual server group ${name} has no entries - removing`);
      return;
    }
    if (this.groups.has(name)) fail(node, `virtual server group ${name} is defined twice`);
    this.groups.set(name, { pos: node, name, entries });
  }

  private virtualServer(node: ConfigNode): void {
    const [p1, p2] = node.args;
    const vs: RawVirtualServer = {
      pos: { file: node.file, line: node.line },
      addr: null,
      port: 0,
      fwmark: 0,
      group: null,
      flags: 0,
      persistenceTimeout: 0,
      pe: null,
      methodSet: false,
      method: 'masq',
      tunnel: null,
      timing: {},
      inhibit: false,
      omega: false,
      quorum: 1,
      hysteresis: 0,
      quorumUp: null,
      quorumDown: null,
      weight: 1,
      sorry: null,
      realServers: [],
    };
    if (p1 === 'group') {
      if (p2 === undefined) fail(node, 'virtual_server group requires a group name');
      vs.group = p2;
    } else if (p1 === 'fwmark') {
      vs.fwmark = need(
        readUnsigned(p2, 1, UINT_MAX),
        node,
        `virtual server fwmark '${p2}' must be in [1, ${UINT_MAX}]`,
      );
    } else {
      const addr = readAddr(p1);
      const port = readPort(p2);
      if (!addr || port === null) {
        fail(node, `Invalid virtual server IP address${p2 ? '/port' : ''} ${p1 ?? ''}${p2 ? `/${p2}` : ''}`);
      }
      vs.addr = addr;
      vs.port = port;
      vs.af = addr.af;
    }
    for (const child of this.block(node)) this.vsKeyword(vs, child);
    this.virtualServers.push(vs);
  }

  private vsKeyword(vs: RawVirtualServer, node: ConfigNode): void {
    const [a0] = node.args;
    switch (node.keyword) {
      case 'ip_family': {
        const af = a0 === 'inet' ? 4 : a0 === 'inet6' ? 6 : fail(node, `unknown address family ${a0}`);
        if (vs.af !== undefined && vs.af !== af) {
          fail(node, `Virtual server specified family ${a0} conflicts with server family`);
        }
        vs.af = af;
        return;
      }
      case 'lb_algo':
      case 'lvs_sched':
        if (a0 === undefined || !SCHEDULERS.has(a0)) fail(node, `Invalid lvs_scheduler '${a0 ?? ''}'`);
        vs.scheduler = a0;
        return;
      case 'ops':
      case 'flag-1':
      case 'flag-2':
      case 'flag-3':
        vs.flags |= PLAIN_FLAGS[node.keyword];
        return;
      case 'sh-port':
      case 'sh-fallback':
      case 'mh-port':
      case 'mh-fallback': {
        // lbflags_handler: the flag counts only if the scheduler named before it matches.
        const sched = node.keyword.slice(0, 2);
        if (vs.scheduler !== sched) fail(node, `${node.keyword} only applies to ${sched} scheduler`);
        vs.flags |= node.keyword.endsWith('-port') ? SVC_F_SCHED2 : SVC_F_SCHED1;
        return;
      }
      case 'hashed':
        fail(node, 'hashed is not an IPVS scheduler flag (keepalived ignores it): remove it');
        break;
      case 'lb_kind':
      case 'lvs_method':
        Object.assign(vs, readMethod(node, 'virtual'));
        vs.methodSet = true;
        return;
      case 'persistence_engine':
        if (a0 === undefined || !PERSISTENCE_ENGINES.has(a0)) {
          fail(node, `persistence_engine '${a0 ?? ''}' is not supported (lvsd has: sip)`);
        }
        vs.pe = a0;
        return;
      case 'persistence_timeout':
        vs.persistenceTimeout =
          a0 === undefined
            ? 360
            : need(readUnsigned(a0, 1, MAX_PERSISTENT_TIMEOUT), node, 'persistence_timeout invalid');
        return;
      case 'persistence_granularity':
        vs.granularity = readGranularity(node, vs.af);
        if (vs.af === undefined) vs.af = a0?.includes('.') ? 4 : 6;
        if (vs.persistenceTimeout === 0) vs.persistenceTimeout = 360;
        return;
      case 'protocol': {
        const p = a0?.toUpperCase();
        vs.protocol =
          p === 'TCP'
            ? IPPROTO_TCP
            : p === 'UDP'
              ? IPPROTO_UDP
              : p === 'SCTP'
                ? IPPROTO_SCTP
                : fail(node, `Unknown protocol ${a0 ?? ''}`);
        return;
      }
      case 'virtualhost':
        if (a0 === undefined) fail(node, 'virtual server virtualhost missing');
        vs.virtualhost = a0;
        return;
      case 'alpha':
        vs.timing.alpha = true;
        return;
      case 'omega':
        vs.omega = true;
        return;
      case 'inhibit_on_failure':
        vs.inhibit = true;
        return;
      case 'quorum_up':
      case 'quorum_down': {
        const key = node.keyword === 'quorum_up' ? 'quorumUp' : 'quorumDown';
        if (vs[key]) {
          this.warn(
            node,
            `(${vs.group ?? '(null)'}) ${node.keyword} script already specified - ignoring ${a0 ?? ''}`,
          );
          return;
        }
        vs[key] = readScript(node);
        return;
      }
      case 'quorum': {
        const q = readUnsigned(a0, 1, UINT_MAX);
        if (q === null) this.warn(node, `Quorum ${a0 ?? ''} must be in [1, ${UINT_MAX}]. Setting to 1.`);
        vs.quorum = q ?? 1;
        return;
      }
      case 'hysteresis':
        vs.hysteresis = need(
          readUnsigned(a0, 0, UINT_MAX),
          node,
          `Hysteresis ${a0 ?? ''} must be in [0, ${UINT_MAX}]`,
        );
        return;
      case 'weight':
        vs.weight = need(
          readUnsigned(a0, 1, MAX_WEIGHT),
          node,
          `Virtual server weight ${a0 ?? ''} is outside range 1-${MAX_WEIGHT}`,
        );
        return;
      case 'sorry_server': {
        const addr = readAddr(a0);
        const port = readPort(node.args[1]);
        if (!addr || port === null) fail(node, `Invalid sorry server IP address ${a0 ?? ''}`);
        vs.sorry = { pos: node, addr, port, inhibit: false, method: vs.method, tunnel: vs.tunnel };
        return;
      }
      case 'sorry_server_inhibit':
        if (vs.sorry) vs.sorry.inhibit = true;
        else this.warn(node, 'Ignoring sorry_server inhibit used before or without sorry_server');
        return;
      case 'sorry_server_lvs_method':
        if (!vs.sorry) fail(node, 'sorry_server forwarding used without sorry_server');
        Object.assign(vs.sorry, readMethod(node, 'sorry'));
        return;
      case 'real_server':
        this.realServer(vs, node);
        return;
      default:
        if (!readTiming(vs.timing, node, 'virtual server')) this.other(node);
    }
  }

  private realServer(vs: RawVirtualServer, node: ConfigNode): void {
    const [ip, portText] = node.args;
    const addr = readAddr(ip);
    const port = readPort(portText);
    if (!addr || port === null)
      fail(node, `Invalid real server ip address/port ${ip ?? ''}/${portText ?? ''}`);
    const rs: RawRealServer = {
      pos: { file: node.file, line: node.line },
      addr,
      port,
      methodSet: vs.methodSet,
      method: vs.method,
      tunnel: vs.tunnel,
      uThreshold: 0,
      lThreshold: 0,
      notifyUp: null,
      notifyDown: null,
      timing: {},
      checkers: [],
    };
    for (const child of this.block(node)) this.rsKeyword(rs, child, vs.group);
    // The kernel refuses this (ERANGE), also with no uthreshold at all.
    if (rs.lThreshold > rs.uThreshold) {
      fail(node, `real server lthreshold ${rs.lThreshold} is above its uthreshold ${rs.uThreshold}`);
    }
    // rs_end_handler: the first real server gives a fwmark or group service its family.
    if (vs.af === undefined) vs.af = addr.af;
    else if (vs.af !== addr.af) {
      this.warn(
        node,
        `Address family of virtual server and real server ${ip} don't match - skipping real server.`,
      );
      return;
    }
    vs.realServers.push(rs);
  }

  private rsKeyword(rs: RawRealServer, node: ConfigNode, group: string | null): void {
    const [a0] = node.args;
    switch (node.keyword) {
      case 'weight':
        rs.weight = need(
          readUnsigned(a0, 0, MAX_WEIGHT),
          node,
          `Real server weight ${a0 ?? ''} is outside range 0-${MAX_WEIGHT}`,
        );
        return;
      case 'lvs_method':
        Object.assign(rs, readMethod(node, 'real'));
        rs.methodSet = true;
        return;
      case 'uthreshold':
      case 'lthreshold': {
        const value = need(
          readUnsigned(a0, 0, UINT_MAX),
          node,
          `Invalid real_server ${node.keyword} '${a0 ?? ''}'`,
        );
        if (node.keyword === 'uthreshold') rs.uThreshold = value;
        else rs.lThreshold = value;
        return;
      }
      case 'inhibit_on_failure':
        rs.inhibit = need(readBool(a0), node, `Invalid inhibit_on_failure parameter ${a0}`);
        return;
      case 'alpha':
        rs.timing.alpha = need(readBool(a0), node, `Invalid alpha parameter ${a0}`);
        return;
      case 'notify_up':
      case 'notify_down': {
        const key = node.keyword === 'notify_up' ? 'notifyUp' : 'notifyDown';
        if (rs[key]) {
          this.warn(
            node,
            `(${group ?? '(null)'}) ${node.keyword} script already specified - ignoring ${a0 ?? ''}`,
          );
          return;
        }
        rs[key] = readScript(node);
        return;
      }
      case 'virtualhost':
        if (a0 === undefined) fail(node, 'real server virtualhost missing');
        rs.virtualhost = a0;
        return;
      default:
        if (CHECKER_KINDS.has(node.keyword as RawChecker['kind'])) {
          const checker = this.checker(node);
          if (checker) rs.checkers.push(checker);
        } else if (!readTiming(rs.timing, node, 'real server')) {
          this.other(node);
        }
    }
  }

  /** A checker block; null when keepalived would drop it (with its warning). */
  private checker(node: ConfigNode): RawChecker | null {
    const kind = node.keyword as RawChecker['kind'];
    const c: RawChecker = { kind, pos: { file: node.file, line: node.line }, timing: {}, urls: [] };
    for (const child of this.block(node)) this.checkerKeyword(c, child);
    if ((kind === 'HTTP_GET' || kind === 'SSL_GET') && c.urls.length === 0) {
      this.warn(node, 'HTTP/SSL_GET checker has no urls specified - ignoring');
      return null;
    }
    if (kind === 'MISC_CHECK' && !c.misc) {
      this.warn(node, 'No script path has been specified for MISC_CHECKER - skipping');
      return null;
    }
    if (kind === 'UDP_CHECK') {
      const min = c.minReplyLength ?? 0;
      const max = c.maxReplyLength ?? 255;
      if (min > max) {
        this.warn(node, `UDP_CHECK min_reply length ${min} > max_reply_length ${max} - will always fail`);
      }
    }
    return c;
  }

  private checkerKeyword(c: RawChecker, node: ConfigNode): void {
    const [a0] = node.args;
    const http = c.kind === 'HTTP_GET' || c.kind === 'SSL_GET';
    const connects = c.kind !== 'MISC_CHECK';
    // A MISC_CHECK has no connection, hence no connect_timeout.
    if ((connects || node.keyword !== 'connect_timeout') && readTiming(c.timing, node, 'checker')) return;
    switch (connects ? node.keyword : `misc:${node.keyword}`) {
      case 'connect_ip':
      case 'bindto': {
        const connect = node.keyword === 'connect_ip';
        const addr = need(readAddr(a0), node, `Invalid ${node.keyword} address ${a0 ?? ''}`);
        const other = connect ? c.bindAddr : c.connectIp;
        if (other && other.af !== addr.af) {
          fail(
            node,
            `${node.keyword} address ${a0} does not match address family of ${connect ? 'bindto' : 'connect_ip'}`,
          );
        }
        if (connect) c.connectIp = addr;
        else c.bindAddr = addr;
        return;
      }
      case 'connect_port':
      case 'bind_port': {
        const port = need(readUnsigned(a0, 1, 65535), node, `Invalid checker ${node.keyword} '${a0 ?? ''}'`);
        if (node.keyword === 'connect_port') c.connectPort = port;
        else c.bindPort = port;
        return;
      }
      case 'bind_if':
        if (a0 === undefined || a0.length > 15) fail(node, `Interface name ${a0 ?? ''} is too long`);
        c.bindInterface = a0;
        return;
      case 'fwmark':
        c.fwmark = need(readUnsigned(a0, 0, UINT_MAX), node, `Invalid fwmark connection value '${a0 ?? ''}'`);
        return;
      case 'alpha':
      case 'misc:alpha':
        c.timing.alpha = need(readBool(a0), node, `Invalid alpha parameter ${a0}`);
        return;
      case 'log_all_failures':
      case 'misc:log_all_failures':
        c.logAllFailures = need(readBool(a0), node, `Invalid log_all_failures parameter ${a0}`);
        return;
    }
    if (http && this.httpKeyword(c, node)) return;
    if (c.kind === 'UDP_CHECK' && udpKeyword(c, node)) return;
    if (c.kind === 'DNS_CHECK' && this.dnsKeyword(c, node)) return;
    if (c.kind === 'MISC_CHECK' && miscKeyword(c, node)) return;
    this.other(node);
  }

  private httpKeyword(c: RawChecker, node: ConfigNode): boolean {
    const [a0] = node.args;
    switch (node.keyword) {
      case 'nb_get_retry':
        this.warn(node, "nb_get_retry is deprecated - please use 'retry'");
        c.timing.retry = need(
          readUnsigned(a0, 0, UINT_MAX),
          node,
          `Invalid nb_get_retry value '${a0 ?? ''}'`,
        );
        return true;
      case 'virtualhost':
        if (a0 === undefined) fail(node, 'HTTP_GET virtualhost name missing');
        c.virtualhost = a0;
        return true;
      case 'http_protocol':
        if (a0 === undefined) fail(node, 'Missing http_protocol version');
        if (a0 === '1.0' || a0 === '1.1') c.httpProtocol = a0;
        else if (a0 === '1.0C' || a0 === '1.0c') c.httpProtocol = '1.0C';
        else fail(node, `Invalid http_protocol version ${a0}`);
        return true;
      case 'enable_sni':
        if (c.kind !== 'SSL_GET') fail(node, 'enable_sni applies to SSL_GET only');
        c.enableSni = need(readBool(a0), node, `Invalid enable_sni parameter ${a0}`);
        return true;
      case 'fast_recovery':
        c.fastRecovery = need(readBool(a0), node, `Invalid fast_recovery parameter ${a0}`);
        return true;
      case 'url': {
        const url = this.url(node);
        if (url) c.urls.push(url);
        return true;
      }
    }
    return false;
  }

  private url(node: ConfigNode): HttpUrl | null {
    let path: string | null = null;
    let digest: string | null = null;
    let virtualhost: string | null = null;
    const statusCodes: Array<[number, number]> = [];
    for (const child of this.block(node)) {
      const [a0] = child.args;
      switch (child.keyword) {
        case 'path':
          if (a0 === undefined) fail(child, 'url path missing');
          if (path !== null) this.warn(child, `Duplicate path - overwriting ${path} with ${a0}`);
          path = a0;
          break;
        case 'digest':
          if (a0 === undefined) fail(child, 'digest missing');
          if (digest !== null) {
            this.warn(child, `Digest '${a0}' is a duplicate`);
            break;
          }
          if (a0.length !== 32)
            fail(child, `digest '${a0}' character length should be 32 rather than ${a0.length}`);
          if (!/^[0-9A-Fa-f]{32}$/.test(a0)) fail(child, `Unable to interpret hex digit in '${a0}'`);
          digest = a0.toLowerCase();
          break;
        case 'status_code':
          for (const code of child.args) statusCodes.push(readStatusCode(code, child));
          break;
        case 'virtualhost':
          if (a0 === undefined) fail(child, 'Missing HTTP_GET virtualhost name');
          virtualhost = a0;
          break;
        default:
          this.other(child);
      }
    }
    if (path === null) {
      this.warn(node, 'HTTP/SSL_GET checker url has no path - ignoring');
      return null;
    }
    return { path, digest, statusCodes: statusCodes.length > 0 ? statusCodes : [[200, 299]], virtualhost };
  }

  private dnsKeyword(c: RawChecker, node: ConfigNode): boolean {
    const [a0] = node.args;
    if (node.keyword === 'type') {
      const type = a0?.toUpperCase() as DnsType | undefined;
      if (!type || !DNS_TYPES.has(type)) fail(node, `Unknown DNS check type ${a0 ?? ''}`);
      c.dnsType = type;
      return true;
    }
    if (node.keyword === 'name') {
      if (a0 === undefined) fail(node, 'DNS_CHECK name missing');
      if (c.dnsName !== undefined) {
        this.warn(node, 'DNS_CHECK name already specified - ignoring');
        return true;
      }
      if ((a0.startsWith('.') && a0 !== '.') || a0.includes('..'))
        fail(node, `DNS_CHECK name '${a0}' has empty label`);
      c.dnsName = a0;
      return true;
    }
    return false;
  }
}

function udpKeyword(c: RawChecker, node: ConfigNode): boolean {
  const hex = node.args.join(' ');
  const [a0] = node.args;
  switch (node.keyword) {
    case 'payload':
      if (node.args.length === 0) fail(node, 'UDP_CHECK payload requires a payload');
      c.payload = need(readHex(hex), node, 'Invalid hex string for UDP_CHECK payload');
      return true;
    case 'require_reply':
      if (/x/i.test(hex) && /^[0-9A-Fa-fXx \t]+$/.test(hex)) {
        fail(node, 'UDP_CHECK require_reply with X wildcards is not supported by lvsd yet');
      }
      c.requireReply =
        node.args.length === 0
          ? new Uint8Array(0)
          : need(readHex(hex), node, 'Invalid hex string for UDP_CHECK reply');
      return true;
    case 'min_reply_length':
    case 'max_reply_length': {
      const which = node.keyword.slice(0, 3);
      const value = need(
        readUnsigned(a0, 0, 65535),
        node,
        `UDP_CHECK ${which} length ${a0 ?? ''} not valid - must be between 0 & 65535`,
      );
      if (which === 'min') c.minReplyLength = value;
      else c.maxReplyLength = value;
      return true;
    }
  }
  return false;
}

function miscKeyword(c: RawChecker, node: ConfigNode): boolean {
  const [a0, a1] = node.args;
  switch (node.keyword) {
    case 'misc_path':
      c.misc = { ...readScript(node), user: c.misc?.user ?? null, group: c.misc?.group ?? null };
      return true;
    case 'misc_timeout':
      c.miscTimeoutMs =
        1000 *
        need(
          readUnsigned(a0, 0, Math.floor(UINT_MAX / 1e6)),
          node,
          `Invalid misc_timeout value '${a0 ?? ''}'`,
        );
      return true;
    case 'misc_dynamic':
      c.miscDynamic = true;
      return true;
    case 'user':
      if (a0 === undefined) fail(node, 'No user specified for misc checker script');
      c.misc = { argv: c.misc?.argv ?? [], user: a0, group: a1 ?? null };
      return true;
  }
  return false;
}

type TimingLevel = 'virtual server' | 'real server' | 'checker';
type TimingKeyword = 'connect_timeout' | 'delay_loop' | 'delay_before_retry' | 'retry' | 'warmup';

/** The timing keywords: field, bounds (µs for timers), and keepalived's message at each level. */
const TIMING: Record<
  TimingKeyword,
  {
    field: Exclude<keyof RawTiming, 'alpha'>;
    timer: boolean;
    min: number;
    max: number;
    says: Record<TimingLevel, (v: string) => string>;
  }
> = {
  connect_timeout: {
    field: 'connectTimeoutMs',
    timer: true,
    min: 1,
    max: UINT_MAX,
    says: {
      'virtual server': (v) => `virtual server connect_timeout ${v} invalid`,
      'real server': (v) => `real server connect_timeout ${v} invalid`,
      checker: (v) => `connect_timeout ${v} invalid`,
    },
  },
  delay_loop: {
    field: 'delayLoopMs',
    timer: true,
    min: 1,
    max: TIMER_MAX_US,
    says: {
      'virtual server': (v) => `virtual server delay loop '${v}' invalid`,
      'real server': (v) => `real server delay_loop '${v}' invalid`,
      checker: (v) => `delay_loop '${v}' is invalid`,
    },
  },
  delay_before_retry: {
    field: 'delayBeforeRetryMs',
    timer: true,
    min: 0,
    max: TIMER_MAX_US,
    says: {
      'virtual server': (v) => `virtual server delay before retry '${v}' invalid`,
      'real server': (v) => `real server delay_before_retry '${v}' invalid`,
      checker: (v) => `Invalid delay_before_retry connection value '${v}'`,
    },
  },
  retry: {
    field: 'retry',
    timer: false,
    min: 1,
    max: UINT_MAX,
    says: {
      'virtual server': (v) => `retry value invalid - ${v}`,
      'real server': (v) => `retry value invalid - ${v}`,
      checker: (v) => `Invalid retry connection value '${v}'`,
    },
  },
  warmup: {
    field: 'warmupMs',
    timer: true,
    min: 0,
    max: TIMER_MAX_US,
    says: {
      'virtual server': (v) => `virtual server warmup '${v}' invalid`,
      'real server': (v) => `real server warmup '${v}' invalid`,
      checker: (v) => `Invalid warmup connection value '${v}'`,
    },
  },
};

/** A timing keyword at a level (a checker's retry may be 0); false if the keyword is not one. */
function readTiming(t: RawTiming, node: ConfigNode, level: TimingLevel): boolean {
  if (!Object.hasOwn(TIMING, node.keyword)) return false;
  const rule = TIMING[node.keyword as TimingKeyword];
  const [a0] = node.args;
  const min = level === 'checker' && rule.field === 'retry' ? 0 : rule.min;
  const value = rule.timer ? readTimerMs(a0, min, rule.max) : readUnsigned(a0, min, rule.max);
  t[rule.field] = need(value, node, rule.says[level](a0 ?? ''));
  return true;
}

/**
 * lb_kind / lvs_method: NAT, DR, or TUN with its tunnel options, as keepalived's
 * forwarding_handler reads them: `TUN [type ipip|gue|gre] [port N] [nocsum|csum|remcsum]`, each at
 * most once, gue needing a port and taking any checksum option, gre nocsum or csum, ipip none
 * (ipvsadm's tunnel matrix). Whether the data plane delivers the method, and lvsd the type and
 * option, is the service table's to say when the file is applied.
 */
function readMethod(node: ConfigNode, server: 'virtual' | 'real' | 'sorry'): KeepalivedForward {
  const [method, ...options] = node.args;
  if (method === 'NAT' || method === 'DR') {
    if (options.length > 0) fail(node, `Invalid tunnel option ${options[0]} for ${server} server.`);
    return { method: method === 'NAT' ? 'masq' : 'route', tunnel: null };
  }
  if (method !== 'TUN') fail(node, `PARSER : unknown [${method ?? ''}] routing method for ${server} server.`);
  const tunnel: TunnelSettings = { type: 'ipip', port: 0, csum: 'nocsum' };
  const seen = new Set<string>();
  for (let i = 0; i < options.length; i++) {
    const option = options[i]!;
    const which = option === 'csum' || option === 'remcsum' ? 'nocsum' : option;
    if (seen.has(which)) fail(node, `${node.keyword} TUN: ${option} given twice`);
    seen.add(which);
    if (option === 'type') {
      const type = options[++i];
      if (type !== 'ipip' && type !== 'gue' && type !== 'gre')
        fail(node, `${node.keyword} TUN: unknown tunnel type '${type ?? ''}' (ipip, gue or gre)`);
      tunnel.type = type;
    } else if (option === 'port') {
      const port = readPort(options[++i]);
      if (port === null || port === 0)
        fail(node, `${node.keyword} TUN: invalid tunnel port '${options[i] ?? ''}'`);
      tunnel.port = port;
    } else if (option === 'nocsum' || option === 'csum' || option === 'remcsum') tunnel.csum = option;
    else fail(node, `Invalid tunnel option ${option} for ${server} server.`);
  }
  if (tunnel.type === 'gue' && tunnel.port === 0) fail(node, `${node.keyword} TUN type gue needs a port`);
  if (tunnel.type !== 'gue' && tunnel.port !== 0)
    fail(node, `${node.keyword} TUN: port is for type gue only`);
  if (tunnel.type === 'ipip' && seen.has('nocsum'))
    fail(node, `${node.keyword} TUN: type ipip takes no checksum option`);
  if (tunnel.type === 'gre' && tunnel.csum === 'remcsum')
    fail(node, `${node.keyword} TUN: type gre takes nocsum or csum, not remcsum`);
  return { method: 'tunnel', tunnel };
}

function readLvsTimeouts(node: ConfigNode): { tcp: number; tcpfin: number; udp: number } {
  const t = { tcp: 0, tcpfin: 0, udp: 0 };
  if (node.args.length < 2) fail(node, 'lvs_timeouts requires at least one option');
  for (let i = 0; i < node.args.length; i += 2) {
    const name = node.args[i]!;
    if (name !== 'tcp' && name !== 'tcpfin' && name !== 'udp') {
      fail(node, `Unknown option ${name} specified for lvs_timeouts`);
    }
    const value = node.args[i + 1];
    if (value === undefined) fail(node, `No value specified for lvs_timeout ${name}`);
    t[name] = need(
      readUnsigned(value, 0, MAX_PERSISTENT_TIMEOUT),
      node,
      `Invalid lvs_timeout ${name} (${value})`,
    );
  }
  return t;
}

function readGranularity(node: ConfigNode, af: 4 | 6 | undefined): number {
  const [a0] = node.args;
  const family = af ?? (a0?.includes('.') ? 4 : 6);
  if (family === 6) {
    return need(
      readUnsigned(a0, 1, 128),
      node,
      `Invalid IPv6 persistence_granularity specified - ${a0 ?? ''}`,
    );
  }
  const mask = a0 === undefined ? null : parseIPv4(a0);
  if (!mask) fail(node, `Invalid IPv4 persistence_granularity specified - ${a0 ?? ''}`);
  const prefix = netmaskPrefix(mask);
  if (prefix < 1) fail(node, `persistence_granularity ${a0}: lvsd needs a contiguous netmask`);
  return prefix;
}

function readStatusCode(text: string, node: ConfigNode): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  const min = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2] ?? m[1]) : NaN;
  if (!(min >= 100 && max <= 599 && min <= max)) fail(node, `Invalid HTTP_GET status code '${text}'`);
  return [min, max];
}

const MAX_GROUP_ADDRS = 1024;

function readGroupEntry(node: ConfigNode, group: string): GroupEntry {
  const pos = { file: node.file, line: node.line };
  if (node.block) fail(node, `unexpected block in virtual server group ${group}`);
  if (node.keyword === 'fwmark') {
    const [mark, family] = node.args;
    const fwmark = need(
      readUnsigned(mark, 1, UINT_MAX),
      node,
      `(${group}): fwmark '${mark ?? ''}' must be in [1, ${UINT_MAX}]`,
    );
    if (family === undefined) return { kind: 'fwmark', pos, fwmark };
    if (family !== 'inet' && family !== 'inet6')
      fail(node, `(${group}): fwmark '${fwmark}' family ${family} unknown`);
    return { kind: 'fwmark', pos, fwmark, af: family === 'inet' ? 4 : 6 };
  }
  const port = readPort(node.args[0]);
  const addrs = expandRange(node.keyword);
  if (!addrs || port === null || node.args.length > 1) {
    fail(node, `Invalid virtual server group IP address ${node.keyword} ${node.args.join(' ')}`.trimEnd());
  }
  if (addrs.length > MAX_GROUP_ADDRS) {
    fail(
      node,
      `${node.keyword} makes ${addrs.length} services: lvsd takes at most ${MAX_GROUP_ADDRS} from one entry`,
    );
  }
  return { kind: 'addr', pos, addrs, port };
}

/** IP, IP-LAST (last octet or group), IP-IP, IP/nn: every address, one IPVS service each. */
function expandRange(text: string): Addr[] | null {
  const slash = /^(.*)\/(\d{1,3})$/.exec(text);
  if (slash) {
    const base = readAddr(slash[1]);
    const bits = Number(slash[2]);
    const width = base?.af === 4 ? 32 : 128;
    if (!base || bits > width || bits < width - 20) return null;
    const count = 2 ** (width - bits);
    if ((lastWord(base) & (count - 1)) !== 0) return null;
    return rangeOf(base, lastWord(base) + count - 1);
  }
  const dash = text.indexOf('-');
  if (dash < 0) {
    const addr = readAddr(text);
    return addr ? [addr] : null;
  }
  const first = readAddr(text.slice(0, dash));
  const endText = text.slice(dash + 1);
  if (!first) return null;
  const endAddr = readAddr(endText);
  let last: number;
  if (endAddr) {
    if (endAddr.af !== first.af) return null;
    const sameHigh =
      first.af === 4
        ? (first.a ^ endAddr.a) >>> 8 === 0
        : first.a === endAddr.a &&
          first.b === endAddr.b &&
          first.c === endAddr.c &&
          (first.d ^ endAddr.d) >>> 16 === 0;
    if (!sameHigh) return null;
    last = lastWord(endAddr);
  } else {
    const n =
      first.af === 4
        ? readUnsigned(endText, 0, 255)
        : /^[0-9A-Fa-f]{1,4}$/.test(endText)
          ? parseInt(endText, 16)
          : null;
    if (n === null) return null;
    last = first.af === 4 ? ((first.a & ~0xff) >>> 0) + n : ((first.d & ~0xffff) >>> 0) + n;
  }
  if (last < lastWord(first)) return null;
  return rangeOf(first, last);
}

function lastWord(addr: Addr): number {
  return addr.af === 4 ? addr.a : addr.d;
}

function rangeOf(first: Addr, last: number): Addr[] | null {
  if (last - lastWord(first) >= MAX_GROUP_ADDRS * 64)
    return Array.from({ length: MAX_GROUP_ADDRS + 1 }, () => first);
  const out: Addr[] = [];
  for (let w = lastWord(first); w <= last; w++) {
    out.push(first.af === 4 ? { ...first, a: w >>> 0 } : { ...first, d: w >>> 0 });
  }
  return out;
}

/** A script keyword's command: the line re-split with quotes, then the command with escapes. */
function readScript(node: ConfigNode): ScriptConfig {
  const words = splitQuoted(node.text, false, node);
  const command = words[1];
  if (command === undefined) fail(node, `${node.keyword} requires a script`);
  const argv = splitQuoted(command, true, node);
  if (argv.length === 0) fail(node, `${node.keyword} requires a script`);
  return { argv, user: words[2] ?? null, group: words[3] ?? null };
}

/** A `{` after a keyword that takes no block would swallow what follows: refuse it. */
function checkBlocks(nodes: readonly ConfigNode[], parser: Parser): void {
  for (const node of nodes) {
    if (!node.block || parser.blocksSkipped.has(node)) continue;
    if (!parser.blocksRead.has(node))
      fail(node, `Unexpected '{' after '${node.keyword}', which takes no block`);
    checkBlocks(node.block, parser);
  }
}

function need<T>(value: T | null, pos: SourcePos, reason: string): T {
  if (value === null) fail(pos, reason);
  return value;
}

/** The file's keywords as raw records; warnings go to `warnings`; throws ConfigError. */
export function parseTree(nodes: readonly ConfigNode[], warnings: Diagnostic[]): RawConfig {
  const parser = new Parser(warnings);
  parser.top(nodes);
  checkBlocks(nodes, parser);
  return { globals: parser.globals, groups: parser.groups, virtualServers: parser.virtualServers };
}
