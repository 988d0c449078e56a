// keepalived's validate_check_config and the checkers' defaults: raw records become lvsd's
// services, real servers and CheckerConfig, with keepalived's corrections and their warnings
// ("no protocol set - defaulting to UDP", "no scheduler set", quorum and hysteresis clamps, ...).

import {
  addr4,
  addr6,
  addrEquals,
  formatAddr,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
} from '../core/inet.js';
import type { Addr, Family } from '../core/inet.js';
import {
  DEFAULT_PERSISTENT_TIMEOUT,
  DEFAULT_SCHEDULER,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  type DestSettings,
  type ForwardMethod,
  type ServiceKey,
} from '../core/model.js';
import type { CheckerConfig, CheckTarget, CheckTiming } from '../health/config.js';
import { ConfigError, type Diagnostic, type SourcePos } from './lexer.js';
import {
  realServerPort,
  type KeepalivedConfig,
  type RealServerConfig,
  type SorryServerConfig,
  type VirtualServerConfig,
} from './model.js';
import type { RawChecker, RawConfig, RawRealServer, RawTiming, RawVirtualServer } from './parser.js';

/** keepalived's per-VS defaults (alloc_vs), in ms. */
const DEFAULT_DELAY_LOOP_MS = 60_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** default_retry and default_delay_before_retry per checker (queue_checker and the handlers). */
function checkerDefaults(kind: RawChecker['kind']): { retry: number; delayBeforeRetryMs: number } {
  if (kind === 'HTTP_GET' || kind === 'SSL_GET') return { retry: 1, delayBeforeRetryMs: 3000 };
  // 0: the DNS checker waits delay_loop between retries.
  if (kind === 'DNS_CHECK') return { retry: 3, delayBeforeRetryMs: 0 };
  if (kind === 'MISC_CHECK') return { retry: 0, delayBeforeRetryMs: 1000 };
  return { retry: 1, delayBeforeRetryMs: 1000 };
}

function protocolName(protocol: number | undefined): string {
  if (protocol === IPPROTO_TCP) return 'tcp';
  if (protocol === IPPROTO_UDP) return 'udp';
  if (protocol === IPPROTO_SCTP) return 'sctp';
  return 'none';
}

/** inet_sockaddrtotrio: `[addr]:proto:port`. */
function trio(addr: Addr, protocol: number | undefined, port: number): string {
  return `[${formatAddr(addr)}]:${protocolName(protocol)}:${port}`;
}

/** FMT_VS: how keepalived names a virtual server in its messages. */
function vsName(vs: RawVirtualServer): string {
  if (vs.group !== null) return `[${vs.group}]:0`;
  if (vs.fwmark > 0) return `FWM ${vs.fwmark}`;
  return trio(vs.addr!, vs.protocol, vs.port);
}

function zeroAddr(af: Family): Addr {
  return af === 4 ? addr4(0) : addr6(0, 0, 0, 0);
}

/** How keepalived fixes a real (or sorry) server's port; a pure rule, with its warning if any. */
export function resolveServerPort(
  method: ForwardMethod,
  vs: { fwmark: number; port: number; group: boolean },
  port: number,
): { port: number; warning: 'clearing' | 'resetting' | null } {
  if (vs.group) return { port, warning: null };
  if (method === 'masq') return { port: vs.fwmark === 0 && port === 0 ? vs.port : port, warning: null };
  if (vs.fwmark > 0) return { port: 0, warning: port !== 0 ? 'clearing' : null };
  if (port === 0) return { port: vs.port, warning: null };
  return { port: vs.port, warning: port !== vs.port ? 'resetting' : null };
}

class Resolver {
  constructor(
    private readonly raw: RawConfig,
    private readonly warnings: Diagnostic[],
  ) {}

  private warn(pos: SourcePos, message: string): void {
    this.warnings.push({ file: pos.file, line: pos.line, message });
  }

  virtualServers(): VirtualServerConfig[] {
    const out: VirtualServerConfig[] = [];
    const seen = new Map<string, SourcePos>();
    for (const vs of this.raw.virtualServers) {
      const resolved = this.virtualServer(vs);
      if (!resolved) continue;
      for (const key of resolved.services) {
        const id = serviceId(key);
        const first = seen.get(id);
        if (first) {
          throw new ConfigError(
            vs.pos,
            `virtual server ${resolved.name}: its service is already defined at ${first.file}:${first.line}`,
          );
        }
        seen.set(id, vs.pos);
      }
      out.push(resolved);
    }
    return out;
  }

  private virtualServer(vs: RawVirtualServer): VirtualServerConfig | null {
    const pos = vs.pos;
    if (vs.realServers.length === 0) {
      this.warn(pos, `Virtual server ${vsName(vs)} has no real servers - ignoring`);
      return null;
    }
    let sorry = vs.sorry;
    const af: Family = vs.af ?? 4;
    if (sorry && sorry.addr.af !== af) {
      this.warn(
        sorry.pos,
        `Address family of virtual server and sorry server ${formatAddr(sorry.addr)} don't match - skipping sorry server.`,
      );
      sorry = null;
    }
    const group = vs.group === null ? null : this.raw.groups.get(vs.group);
    if (vs.group !== null && !group) {
      throw new ConfigError(pos, `virtual server group ${vs.group} is not defined`);
    }
    const addrEntries = group ? group.entries.filter((e) => e.kind === 'addr') : [];
    const byAddress = group ? addrEntries.length > 0 : vs.fwmark === 0;
    let persistence = vs.persistenceTimeout;
    let flags = vs.flags;
    let protocol = vs.protocol;
    if (byAddress) {
      if (protocol === undefined) {
        this.warn(pos, `Virtual server ${vsName(vs)}: no protocol set - defaulting to UDP`);
        protocol = IPPROTO_UDP;
      }
      if (flags & SVC_F_ONEPACKET && protocol !== IPPROTO_UDP) {
        this.warn(
          pos,
          `Virtual server ${vsName({ ...vs, protocol })}: one packet scheduling requires UDP - resetting`,
        );
        flags &= ~SVC_F_ONEPACKET;
      }
      if (persistence === 0 && !group && vs.port === 0) {
        this.warn(
          pos,
          `Virtual server ${vsName({ ...vs, protocol })}: zero port only valid for persistent services - setting`,
        );
        persistence = DEFAULT_PERSISTENT_TIMEOUT;
      }
    }
    if (persistence === 0 && group && addrEntries.some((e) => e.port === 0)) {
      this.warn(pos, `Virtual server ${vsName(vs)}: zero port only valid for persistent services - setting`);
      persistence = DEFAULT_PERSISTENT_TIMEOUT;
    }
    if (protocol !== undefined && !byAddress) {
      this.warn(
        pos,
        `Warning: Virtual server ${vsName({ ...vs, protocol })}: protocol specified for fwmark - protocol will be ignored`,
      );
      protocol = undefined;
    }
    const named = { ...vs, protocol };
    const name = vsName(named);
    let scheduler = vs.scheduler;
    if (scheduler === undefined) {
      this.warn(pos, `Virtual server ${name}: no scheduler set, setting default '${DEFAULT_SCHEDULER}'`);
      scheduler = DEFAULT_SCHEDULER;
    }

    const services: ServiceKey[] = [];
    if (group) {
      for (const entry of group.entries) {
        if (entry.kind === 'addr') {
          for (const addr of entry.addrs) {
            services.push({ af: addr.af, protocol: protocol!, addr, port: entry.port, fwmark: 0 });
          }
        } else {
          const entryAf = entry.af ?? af;
          services.push({ af: entryAf, protocol: 0, addr: zeroAddr(entryAf), port: 0, fwmark: entry.fwmark });
        }
      }
    } else if (vs.fwmark > 0) {
      services.push({ af, protocol: 0, addr: zeroAddr(af), port: 0, fwmark: vs.fwmark });
    } else {
      services.push({ af, protocol: protocol!, addr: vs.addr!, port: vs.port, fwmark: 0 });
    }

    // A group's addresses carry their own family; IPVS takes no real server of another (NAT).
    for (const server of [...vs.realServers, ...(sorry ? [sorry] : [])]) {
      const other = services.find((key) => key.af !== server.addr.af);
      if (other) {
        throw new ConfigError(
          server.pos,
          `Address family of virtual server ${name} (${formatAddr(other.addr)}) and real server ${formatAddr(server.addr)} don't match`,
        );
      }
    }

    let methodWarned = vs.methodSet;
    const portRule = { fwmark: vs.fwmark, port: vs.port, group: group !== null && group !== undefined };
    const realServers: RealServerConfig[] = [];
    let weightSum = 0;
    for (const rs of vs.realServers) {
      // keepalived compares the ports as written; lvsd also catches `IP` next to `IP PORT`.
      const resolvedPort = resolveServerPort('masq', portRule, rs.port).port;
      if (realServers.some((r) => addrEquals(r.addr, rs.addr) && r.port === resolvedPort)) {
        this.warn(
          rs.pos,
          `VS ${name}: real server ${trio(rs.addr, protocol, rs.port)} is duplicated - removing second rs`,
        );
        continue;
      }
      if (!rs.methodSet && !methodWarned) {
        this.warn(pos, `Virtual server ${name}: no forwarding method set, setting default NAT`);
        methodWarned = true;
      }
      const weight = rs.weight ?? vs.weight;
      weightSum += weight;
      const inhibit = rs.inhibit ?? vs.inhibit;
      if (sorry && addrEquals(sorry.addr, rs.addr) && sorry.port === rs.port && sorry.inhibit !== inhibit) {
        this.warn(
          pos,
          `Virtual server ${name}: real server ${trio(rs.addr, protocol, rs.port)} matches sorry server, but inhibit setting differs, ${inhibit ? 'sett' : 'clear'}ing on sorry server`,
        );
        sorry = { ...sorry, inhibit };
      }
      const port = this.serverPort(
        rs.pos,
        name,
        portRule,
        rs.method,
        rs.port,
        `real server ${trio(rs.addr, protocol, rs.port)}`,
      );
      const settings: DestSettings = {
        method: rs.method,
        weight,
        uThreshold: rs.uThreshold,
        lThreshold: rs.lThreshold,
        ...(rs.tunnel ? { tunnel: { ...rs.tunnel } } : {}),
      };
      const checkPort = port !== 0 ? port : services[0]!.port;
      const checkers = rs.checkers
        .map((c) => this.checker(c, rs, vs, checkPort))
        .filter((c): c is CheckerConfig => c !== null);
      realServers.push({
        addr: rs.addr,
        port,
        settings,
        checkers,
        inhibitOnFailure: inhibit,
        notifyUp: rs.notifyUp,
        notifyDown: rs.notifyDown,
        pos: rs.pos,
      });
    }
    // In a group, a real server without a port takes each service's: it may meet one with that port.
    for (const key of services) {
      const seen = new Set<string>();
      for (const rs of realServers) {
        const id = `${formatAddr(rs.addr)}:${realServerPort(key, rs.port)}`;
        if (seen.has(id)) {
          throw new ConfigError(
            rs.pos,
            `real server ${id} would be in service ${formatAddr(key.addr)}:${key.port} twice`,
          );
        }
        seen.add(id);
      }
    }
    if (sorry && !methodWarned) {
      this.warn(pos, `Virtual server ${name}: no forwarding method set, setting default NAT`);
    }

    let quorum = vs.quorum;
    let hysteresis = vs.hysteresis;
    if (quorum > weightSum) {
      this.warn(
        pos,
        `Warning - quorum ${quorum} for ${name} exceeds total weight of real servers ${weightSum}, reducing quorum to ${weightSum}`,
      );
      quorum = weightSum;
    }
    if (hysteresis >= quorum) {
      const lowered = Math.max(0, quorum - 1);
      this.warn(
        pos,
        `Virtual server ${name}: hysteresis ${hysteresis} >= quorum ${quorum}; setting hysteresis to ${lowered}`,
      );
      hysteresis = lowered;
    }

    let sorryServer: SorryServerConfig | null = null;
    if (sorry) {
      const port = this.serverPort(sorry.pos, name, portRule, sorry.method, sorry.port, 'sorry server');
      sorryServer = {
        addr: sorry.addr,
        port,
        settings: {
          method: sorry.method,
          weight: 1,
          uThreshold: 0,
          lThreshold: 0,
          ...(sorry.tunnel ? { tunnel: { ...sorry.tunnel } } : {}),
        },
        inhibit: sorry.inhibit,
        pos: sorry.pos,
      };
    }
    const prefix = vs.granularity ?? (af === 6 ? 128 : 32);
    return {
      name,
      group: vs.group,
      services,
      settings: {
        scheduler,
        flags: flags | (persistence > 0 ? SVC_F_PERSISTENT : 0),
        timeout: persistence,
        netmaskPrefix: prefix,
        pe: vs.pe,
      },
      realServers,
      sorryServer,
      quorum,
      hysteresis,
      quorumUp: vs.quorumUp,
      quorumDown: vs.quorumDown,
      omega: vs.omega,
      pos,
    };
  }

  private serverPort(
    pos: SourcePos,
    name: string,
    vs: { fwmark: number; port: number; group: boolean },
    method: ForwardMethod,
    port: number,
    what: string,
  ): number {
    const fixed = resolveServerPort(method, vs, port);
    if (fixed.warning === 'clearing')
      this.warn(pos, `WARNING - fwmark virtual server ${name}, ${what} has port specified - clearing`);
    if (fixed.warning === 'resetting')
      this.warn(pos, `WARNING - virtual server ${name} and ${what} ports don't match - resetting`);
    return fixed.port;
  }

  private checker(
    c: RawChecker,
    rs: RawRealServer,
    vs: RawVirtualServer,
    port: number,
  ): CheckerConfig | null {
    const timing = resolveTiming(c, rs.timing, vs.timing, this.raw.globals.checkerLogAllFailures);
    const target: CheckTarget = {
      addr: c.connectIp ?? rs.addr,
      port: c.connectPort ?? port,
      bindAddr: c.bindAddr ?? null,
      bindPort: c.bindPort ?? 0,
      bindInterface: c.bindInterface ?? null,
      fwmark: c.fwmark ?? 0,
    };
    if (
      c.kind !== 'MISC_CHECK' &&
      target.addr.af === 6 &&
      target.addr.a >>> 22 === 0x3fa &&
      !target.bindInterface
    ) {
      this.warn(c.pos, `Checker link local address ${formatAddr(target.addr)} requires a bind_if`);
      return null;
    }
    switch (c.kind) {
      case 'TCP_CHECK':
      case 'PING_CHECK':
        return { ...timing, kind: c.kind, target };
      case 'HTTP_GET':
      case 'SSL_GET':
        return {
          ...timing,
          kind: c.kind,
          target,
          urls: c.urls,
          virtualhost: c.virtualhost ?? rs.virtualhost ?? vs.virtualhost ?? null,
          httpProtocol: c.httpProtocol ?? '1.0',
          enableSni: c.enableSni ?? false,
          fastRecovery: c.fastRecovery ?? false,
        };
      case 'UDP_CHECK':
        return {
          ...timing,
          kind: c.kind,
          target,
          payload: c.payload ?? null,
          requireReply: c.requireReply ?? null,
          minReplyLength: c.minReplyLength ?? 0,
          maxReplyLength: c.maxReplyLength ?? 255,
        };
      case 'DNS_CHECK':
        return { ...timing, kind: c.kind, target, type: c.dnsType ?? 'SOA', name: c.dnsName ?? '.' };
      case 'MISC_CHECK': {
        const misc = c.misc!;
        const scriptUser = this.raw.globals.scriptUser;
        return {
          ...timing,
          kind: c.kind,
          argv: misc.argv,
          timeoutMs: c.miscTimeoutMs || timing.delayLoopMs,
          dynamic: c.miscDynamic ?? false,
          user: misc.user ?? scriptUser?.user ?? null,
          group: misc.user !== null ? misc.group : (scriptUser?.group ?? null),
        };
      }
    }
  }
}

/** The checker's timing: its own keyword, else the real server's, else the virtual server's, else the default. */
function resolveTiming(c: RawChecker, rs: RawTiming, vs: RawTiming, logAllFailures: boolean): CheckTiming {
  const defaults = checkerDefaults(c.kind);
  const t = c.timing;
  const delayLoopMs = t.delayLoopMs ?? rs.delayLoopMs ?? vs.delayLoopMs ?? DEFAULT_DELAY_LOOP_MS;
  return {
    delayLoopMs,
    connectTimeoutMs:
      t.connectTimeoutMs ?? rs.connectTimeoutMs ?? vs.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retry: t.retry ?? rs.retry ?? vs.retry ?? defaults.retry,
    delayBeforeRetryMs:
      t.delayBeforeRetryMs ??
      rs.delayBeforeRetryMs ??
      vs.delayBeforeRetryMs ??
      (defaults.delayBeforeRetryMs || delayLoopMs),
    warmupMs: t.warmupMs ?? rs.warmupMs ?? vs.warmupMs ?? delayLoopMs,
    alpha: t.alpha ?? rs.alpha ?? vs.alpha ?? false,
    logAllFailures: c.logAllFailures ?? logAllFailures,
  };
}

function serviceId(key: ServiceKey): string {
  return key.fwmark > 0
    ? `fwm:${key.af}:${key.fwmark}`
    : `${key.protocol}:${formatAddr(key.addr)}:${key.port}`;
}

/** The raw records resolved into lvsd's model; throws ConfigError. */
export function resolveConfig(
  raw: RawConfig,
  warnings: Diagnostic[],
): Omit<KeepalivedConfig, 'warnings' | 'files'> {
  const g = raw.globals;
  return {
    virtualServers: new Resolver(raw, warnings).virtualServers(),
    timeouts: g.timeouts,
    flush: g.flush,
    notifyFifo: g.notifyFifo,
    lvsNotifyFifo: g.lvsNotifyFifo,
    rsInitNotifies: g.rsInitNotifies,
    scriptUser: g.scriptUser,
    scriptSecurity: g.scriptSecurity,
  };
}
