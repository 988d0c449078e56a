// `lvsadm doctor`'s diagnosis, pure: from what the director sees (its counters and connection
// states, the host's routes, neighbours, sysctls and firewall rules, and the answers to probes it
// sent the real servers) to a verdict per service and real server, each with its evidence. The
// facts are collected by src/cli/doctor.ts; the pitfalls are the seeds' (docs/doctor.md).

import {
  addrEquals,
  addrMask,
  formatAddr,
  formatAddrPort,
  IPPROTO_TCP,
  IPPROTO_UDP,
  parseAddr,
} from './inet.js';
import type { Addr, Family, Protocol } from './inet.js';
import type { ConnSnapshot, DataplaneKind, DestSnapshot, ServiceSnapshot, Snapshot } from './ops.js';

/** `ip -j route get ADDR`, reduced: where the director sends packets for an address. */
export interface RouteFact {
  dev: string;
  /** The next hop; absent when the address is on a directly connected subnet. */
  gateway?: string;
  /** The source the director uses towards it (its DIP for real servers). */
  prefsrc?: string;
  /** 'local' for the director's own addresses. */
  type?: string;
  /** Who made the route: 'ra' for one learned from IPv6 router advertisements. */
  protocol?: string;
}

/** `ip -j neigh`, reduced. */
export interface NeighbourFact {
  dst: string;
  dev: string;
  state: string[];
}

/** `ip -j link`, reduced: an interface the packet plane reads. */
export interface LinkFact {
  /** Administratively up (flag UP). */
  up: boolean;
  /** The link has a carrier (flag LOWER_UP). */
  carrier: boolean;
  /** The kernel's operstate, for the evidence. */
  state: string;
}

/** What the doctor reads of the packet plane's own plumbing (lvsd --dataplane packet). */
export interface PacketPlaneFacts {
  /** The interfaces with an ingress chain in lvsd's `table netdev`; null when the table is gone. */
  netdevIngress: readonly string[] | null;
  /** Each interface the plane reads (Snapshot.dataPath.interfaces), as the host has it; null when gone. */
  links: Readonly<Record<string, LinkFact | null>>;
}

/** A probe the director sends a real server: a TCP connect, or a UDP datagram. */
export interface ProbeTarget {
  protocol: 'TCP' | 'UDP';
  addr: Addr;
  port: number;
}

/** How probes are keyed in the facts: "TCP 198.18.1.11:80". */
export function probeKey(target: ProbeTarget): string {
  return `${target.protocol} ${formatAddrPort(target.addr, target.port)}`;
}

/** What a probe from the director to a real server's port got back. */
export type ProbeFact =
  /** TCP: a SYN-ACK; UDP: a datagram back, both from the address and port probed. */
  | { result: 'open'; ms: number }
  /** The answer came from another address or port ("198.18.1.21:80"): clients would drop it. */
  | { result: 'other-address'; from: string; ms: number }
  /** TCP: a RST; UDP: an ICMP port unreachable. */
  | { result: 'refused' }
  | { result: 'timeout'; ms: number }
  | { result: 'error'; message: string };

/** One packet a rule is tried on: lvsd's flows between clients, the director and a real server. */
export interface FlowFact {
  protocol: Protocol;
  /** Unknown (any client) when absent: a rule matching on it is not taken as matching. */
  saddr?: string;
  daddr?: string;
  sport?: number;
  dport?: number;
  /** lvsd notracks its packets: conntrack's state for them is 'untracked', never 'established'. */
  ctstate: 'untracked';
}

/** A firewall rule as the doctor understands it: each match on a field, then its verdict. */
export interface FirewallRule {
  /** The rule as nft lists it (or iptables-save writes it), for the evidence. */
  text: string;
  /** Values the field must equal (any of). */
  matches: Array<{ field: keyof FlowFact; values: Array<string | number | { prefix: string; len: number }> }>;
  /** The rule also matches on what the doctor cannot evaluate (interfaces, marks, ranges). */
  opaque: boolean;
  /** 'continue' for a rule without a verdict (counter, log); 'unknown' for queue, nat and the like. */
  verdict: 'accept' | 'drop' | 'continue' | 'jump' | 'goto' | 'return' | 'unknown';
  /** The chain a jump or goto goes to, by its name (FirewallChain.name). */
  target?: string;
}

export interface FirewallChain {
  /** e.g. "ip filter forward" (family, table, chain), or "iptables-legacy filter FORWARD". */
  name: string;
  /** The packets it sees: nftables' inet family sees both. */
  family: Family | 'both';
  /** The hook of a base chain; null for a chain reached only by jumps and gotos. */
  hook: string | null;
  policy: 'accept' | 'drop';
  rules: FirewallRule[];
}

export interface DoctorFacts {
  snapshot: Snapshot;
  /**
   * The data plane that moves lvsd's packets (Snapshot.dataPath.plane); null without one, and then
   * the host checks do not apply.
   */
  dataplane: DataplaneKind | null;
  /** lvsd's TUN device (lvs0). */
  tunDevice: string;
  /** Present on the packet plane. */
  packetPlane?: PacketPlaneFacts;
  /** /proc/sys values by path under /proc/sys ('net/ipv4/ip_forward'); null where unreadable. */
  sysctls: Readonly<Record<string, string | null>>;
  /** By address (as formatAddr prints it); null when there is no route. */
  routes: Readonly<Record<string, RouteFact | null>>;
  neighbours: readonly NeighbourFact[];
  /** By probeKey. */
  probes: Readonly<Record<string, ProbeFact>>;
  /**
   * The host's firewall: the base chains on the forward and prerouting hooks and every chain they
   * may jump to, of nftables (lvsd's own table left out) and of the legacy iptables.
   */
  firewall: readonly FirewallChain[];
}

export type Severity = 'problem' | 'warning';

export interface Finding {
  severity: Severity;
  /** A stable name for scripts: replies-bypass, same-subnet, refused, silent, ip-forward, ... */
  check: string;
  message: string;
  evidence: string[];
}

export type Verdict = 'ok' | Severity;

export interface DestReport {
  dest: string;
  verdict: Verdict;
  findings: Finding[];
  /** What was looked at, also when all is well. */
  evidence: string[];
}

export interface ServiceReport {
  service: string;
  verdict: Verdict;
  findings: Finding[];
  dests: DestReport[];
}

export interface DoctorReport {
  verdict: Verdict;
  /** The data plane the host checks were made for; null: none ran (lvsd moves no packets). */
  dataplane: DataplaneKind | null;
  /** What the host checks looked at, in words ("forwarding, rp_filter, send_redirects"). */
  hostChecked: string;
  host: Finding[];
  services: ServiceReport[];
}

/** The sysctls the checks read, for the collector: global ones and those of each device named. */
export function sysctlsWanted(devices: readonly string[], ipv6: boolean): string[] {
  const paths = ['net/ipv4/ip_forward', 'net/ipv4/conf/all/rp_filter', 'net/ipv4/conf/all/send_redirects'];
  if (ipv6) paths.push('net/ipv6/conf/all/forwarding');
  for (const dev of devices) {
    paths.push(
      `net/ipv4/conf/${dev}/forwarding`,
      `net/ipv4/conf/${dev}/rp_filter`,
      `net/ipv4/conf/${dev}/send_redirects`,
    );
    if (ipv6) {
      paths.push(
        `net/ipv6/conf/${dev}/forwarding`,
        `net/ipv6/conf/${dev}/accept_ra`,
        `net/ipv6/conf/${dev}/disable_ipv6`,
      );
    }
  }
  return paths;
}

/** Whether any service is IPv6 (then the IPv6 settings matter). */
export function hasIPv6(snapshot: Snapshot): boolean {
  return snapshot.services.some((svc) => svc.key.af === 6);
}

/** The client addresses in the connection table (templates and all). */
export function clientAddresses(snapshot: Snapshot): string[] {
  return [...new Set((snapshot.connections ?? []).map((c) => formatAddr(c.caddr)))].sort();
}

/** Every address whose route the checks read: real servers, clients, VIPs. */
export function addressesToRoute(snapshot: Snapshot): string[] {
  const addrs = new Set<string>(clientAddresses(snapshot));
  for (const svc of snapshot.services) {
    if (!svc.key.fwmark) addrs.add(formatAddr(svc.key.addr));
    for (const d of svc.dests) addrs.add(formatAddr(d.addr));
  }
  return [...addrs].sort();
}

export function serviceName(svc: ServiceSnapshot): string {
  const { key } = svc;
  if (key.fwmark) return `FWM ${key.fwmark}${key.af === 6 ? ' IPv6' : ''}`;
  const proto = key.protocol === IPPROTO_TCP ? 'TCP' : key.protocol === IPPROTO_UDP ? 'UDP' : 'SCTP';
  return `${proto} ${formatAddrPort(key.addr, key.port)}`;
}

export function destName(dest: DestSnapshot): string {
  return formatAddrPort(dest.addr, dest.port);
}

/** The non-template connections the director made to this real server (its port, or any with port 0). */
function destConnections(dest: DestSnapshot, connections: readonly ConnSnapshot[]): ConnSnapshot[] {
  return connections.filter(
    (c) => !c.template && addrEquals(c.daddr, dest.addr) && (dest.port === 0 || c.dport === dest.port),
  );
}

const PROBED: Record<number, ProbeTarget['protocol']> = { [IPPROTO_TCP]: 'TCP', [IPPROTO_UDP]: 'UDP' };

/**
 * The probes this real server gets: its service's protocol on its port. A fwmark service says
 * neither, nor does a port of 0: they are read from its connections in the table (protocol and
 * port the clients used); with none there, the real server is not probed (the reason is returned).
 */
export function probePlan(
  svc: ServiceSnapshot,
  dest: DestSnapshot,
  connections: readonly ConnSnapshot[],
): { targets: ProbeTarget[] } | { skipped: string } {
  if (!svc.key.fwmark && !PROBED[svc.key.protocol]) return { skipped: 'not probed: SCTP' };
  if (!svc.key.fwmark && dest.port !== 0) {
    return { targets: [{ protocol: PROBED[svc.key.protocol]!, addr: dest.addr, port: dest.port }] };
  }
  const seen = new Map<string, ProbeTarget>();
  for (const c of destConnections(dest, connections)) {
    const protocol = PROBED[c.protocol];
    if (!protocol || (!svc.key.fwmark && c.protocol !== svc.key.protocol)) continue;
    const target = { protocol, addr: dest.addr, port: c.dport };
    seen.set(probeKey(target), target);
  }
  if (seen.size === 0) {
    return {
      skipped: `not probed: ${svc.key.fwmark ? 'a fwmark service' : 'port 0'}, and no connection in the table shows the protocol and port its clients use`,
    };
  }
  return { targets: [...seen.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => t) };
}

/** Every probe the real servers get, once each. */
export function probeTargets(snapshot: Snapshot): ProbeTarget[] {
  const targets = new Map<string, ProbeTarget>();
  for (const svc of snapshot.services) {
    for (const d of svc.dests) {
      const plan = probePlan(svc, d, snapshot.connections ?? []);
      if ('targets' in plan) for (const t of plan.targets) targets.set(probeKey(t), t);
    }
  }
  return [...targets.values()];
}

const worst = (verdicts: Verdict[]): Verdict =>
  verdicts.includes('problem') ? 'problem' : verdicts.includes('warning') ? 'warning' : 'ok';

const verdictOf = (findings: readonly Finding[]): Verdict => worst(findings.map((f) => f.severity));

/**
 * Whether the service's packets go through the TUN device and the kernel's forwarding: every
 * service on the TUN plane; on the packet plane, fwmark services only (the kernel's rules set the
 * mark, so they stay on the TUN path), the others' frames being taken before the kernel sees them.
 */
function ridesTun(svc: ServiceSnapshot, dataplane: DataplaneKind | null): boolean {
  return dataplane === 'tun' || (dataplane === 'packet' && svc.key.fwmark > 0);
}

const TUN_CHECKS = 'forwarding, rp_filter, send_redirects';

/** The host checks' scope in words, for the report. */
function hostChecked(facts: DoctorFacts): string {
  if (facts.dataplane === null) return 'not checked (lvsd runs without a data plane)';
  if (facts.dataplane === 'tun') return TUN_CHECKS;
  const interfaces = facts.snapshot.dataPath.interfaces ?? [];
  const plane = `the packet plane's netdev ingress drop and link on ${interfaces.join(', ') || 'no interface'}`;
  return tunServices(facts).length > 0 ? `${plane}; for the fwmark services: ${TUN_CHECKS}` : plane;
}

const tunServices = (facts: DoctorFacts): ServiceSnapshot[] =>
  facts.snapshot.services.filter((svc) => ridesTun(svc, facts.dataplane));

/** The whole diagnosis. */
export function diagnose(facts: DoctorFacts): DoctorReport {
  const host = facts.dataplane ? hostFindings(facts) : [];
  const services = facts.snapshot.services.map((svc) => serviceReport(svc, facts));
  return {
    verdict: worst([verdictOf(host), ...services.map((s) => s.verdict)]),
    dataplane: facts.dataplane,
    hostChecked: hostChecked(facts),
    host,
    services,
  };
}

function serviceReport(svc: ServiceSnapshot, facts: DoctorFacts): ServiceReport {
  const findings: Finding[] = [];
  if (svc.dests.length === 0) {
    findings.push({
      severity: 'problem',
      check: 'no-real-server',
      message: 'no real server: every new connection is refused',
      evidence: [],
    });
  }
  // The packet plane's frames cross no firewall hook: taken off the ring before ingress, sent past the qdisc.
  if (ridesTun(svc, facts.dataplane)) findings.push(...firewallFindings(svc, facts));
  const dests = svc.dests.map((d) => destReport(svc, d, facts));
  return {
    service: serviceName(svc),
    verdict: worst([verdictOf(findings), ...dests.map((d) => d.verdict)]),
    findings,
    dests,
  };
}

function probeText(probe: ProbeFact | undefined, target: ProbeTarget): string {
  const name = probeKey(target);
  const udp = target.protocol === 'UDP';
  if (!probe) return `no probe of ${name}`;
  switch (probe.result) {
    case 'open':
      return `the director's probe of ${name} was answered${udp ? '' : ' (SYN-ACK)'} in ${probe.ms} ms`;
    case 'other-address':
      return `the director's probe of ${name} was answered from ${probe.from} in ${probe.ms} ms`;
    case 'refused':
      return `the director's probe of ${name} was refused (${udp ? 'ICMP port unreachable' : 'RST'})`;
    case 'timeout':
      return udp
        ? `the director's probe of ${name} got no answer and no ICMP error in ${probe.ms} ms ` +
            `(a UDP server may not answer a datagram it does not understand)`
        : `the director's probe of ${name} got no answer in ${probe.ms} ms`;
    case 'error':
      return `the director's probe of ${name} failed: ${probe.message}`;
  }
}

/** What the probes of one real server say, as findings. */
function probeFindings(
  target: ProbeTarget,
  probe: ProbeFact | undefined,
  neighbour: NeighbourFact | undefined,
  evidence: string[],
): Finding[] {
  const addr = formatAddr(target.addr);
  const udp = target.protocol === 'UDP';
  const neighbourFailed = neighbour?.state.some((s) => s === 'FAILED' || s === 'INCOMPLETE') ?? false;
  switch (probe?.result) {
    case 'refused':
      return [
        {
          severity: 'problem',
          check: 'refused',
          message: udp
            ? `refuses datagrams on UDP port ${target.port} (ICMP port unreachable): nothing listens there`
            : `refuses connections on port ${target.port} (RST): nothing listens there, or a firewall on it rejects`,
          evidence,
        },
      ];
    case 'other-address':
      return [
        {
          severity: 'problem',
          check: 'other-address',
          message:
            `answers from ${probe.from}, not ${formatAddrPort(target.addr, target.port)}: the director does ` +
            `not take that reply for the connection, and clients drop a reply from an address they did ` +
            `not call. It answers from a second address (a server bound to all addresses replies from ` +
            `the route's source: bind it to ${addr}), or it rewrites its replies (NAT)`,
          evidence,
        },
      ];
    case 'timeout':
    case 'error':
      // UDP's silence is no verdict (a server may ignore the probe); without ARP/ND it is one.
      if (udp && probe.result === 'timeout' && !neighbourFailed) return [];
      return [
        {
          severity: 'problem',
          check: 'silent',
          message: neighbourFailed
            ? `does not answer: no ARP/ND reply from ${addr} (down, or not on ${neighbour!.dev})`
            : `does not answer on ${target.protocol} port ${target.port} (silence): down, or a firewall on it drops`,
          evidence,
        },
      ];
    default:
      return [];
  }
}

function destReport(svc: ServiceSnapshot, dest: DestSnapshot, facts: DoctorFacts): DestReport {
  const name = destName(dest);
  const addr = formatAddr(dest.addr);
  const plan = probePlan(svc, dest, facts.snapshot.connections ?? []);
  const targets = 'targets' in plan ? plan.targets : [];
  const conns = destConnections(dest, facts.snapshot.connections ?? []);
  const synRecv = conns.filter((c) => c.state === 'SYN_RECV').length;
  const { inPkts, outPkts, conns: total } = dest.stats;
  const route = facts.routes[addr];
  const neighbour = facts.neighbours.find((n) => n.dst === addr);
  const evidence = [
    `${total} connections, ${inPkts} packets forwarded to it, ${outPkts} packets back through the director`,
    `${conns.length} in the connection table, ${synRecv} in SYN_RECV`,
    ...('skipped' in plan ? [plan.skipped] : targets.map((t) => probeText(facts.probes[probeKey(t)], t))),
  ];
  if (route) {
    evidence.push(
      `route: dev ${route.dev}${route.gateway ? ` via ${route.gateway}` : ''}${route.prefsrc ? ` src ${route.prefsrc}` : ''}`,
    );
  }
  if (neighbour) evidence.push(`neighbour: ${neighbour.state.join(',')} on ${neighbour.dev}`);
  const around = ANSWERS_AROUND[dest.method];
  if (around)
    evidence.push(`${around}: its replies go to the clients directly, around the director, as they should`);
  const findings = targets.flatMap((t) => probeFindings(t, facts.probes[probeKey(t)], neighbour, evidence));
  // Only a masquerading real server's replies must come back through the director.
  if (!around && findings.length === 0 && outPkts === '0' && synRecv > 0) {
    // Clients' SYNs went out and nothing came back, yet the server answers the director itself
    // (or, unprobed, answers nothing we saw): its replies to clients take another way.
    findings.push({
      severity: 'problem',
      check: 'replies-bypass',
      message:
        `replies do not come back through the director: SYNs were forwarded, no SYN-ACK was seen. ` +
        `Its default gateway must be the director (${route?.prefsrc ?? 'the DIP'}), and it must answer ` +
        `through that interface only (a second interface answers around the director)`,
      evidence,
    });
  }
  if (!around) findings.push(...sameSubnetFindings(dest, facts));
  return { dest: name, verdict: verdictOf(findings), findings, evidence };
}

/** The forwarding methods whose real servers answer the clients themselves (-g, -i), in words. */
const ANSWERS_AROUND: Partial<Record<DestSnapshot['method'], string>> = {
  route: 'direct routing',
  tunnel: 'IP-in-IP tunnelling',
};

/** Seed 001: a client on the real servers' own subnet gets their replies directly, not through the director. */
function sameSubnetFindings(dest: DestSnapshot, facts: DoctorFacts): Finding[] {
  const toDest = facts.routes[formatAddr(dest.addr)];
  if (!toDest || toDest.gateway || toDest.type === 'local') return [];
  const clients = clientAddresses(facts.snapshot).filter((client) => {
    const toClient = facts.routes[client];
    return toClient && !toClient.gateway && toClient.type !== 'local' && toClient.dev === toDest.dev;
  });
  if (clients.length === 0) return [];
  return [
    {
      severity: 'problem',
      check: 'same-subnet',
      message:
        `clients share its subnet (on ${toDest.dev}): it replies to them directly, around the director, ` +
        `and they drop replies from an address they did not call`,
      evidence: clients.map(
        (c) => `client ${c}: directly connected on ${toDest.dev}, as ${formatAddr(dest.addr)}`,
      ),
    },
  ];
}

const sysctlValue = (facts: DoctorFacts, path: string): number | null => {
  const value = facts.sysctls[path];
  return value === null || value === undefined ? null : Number(value);
};

/**
 * The devices towards the real servers (of `services`, every one unless told) and towards the
 * clients seen (of one family, if given), from the routes.
 */
function pathDevices(
  facts: DoctorFacts,
  family?: Family,
  services: readonly ServiceSnapshot[] = facts.snapshot.services,
): { toServers: string[]; toClients: string[] } {
  const devOf = (addr: string) => {
    const route = facts.routes[addr];
    const inFamily = family === undefined || parseAddr(addr)?.af === family;
    return route && route.type !== 'local' && inFamily ? route.dev : null;
  };
  const toServers = new Set<string>();
  for (const svc of services)
    for (const d of svc.dests) {
      const dev = devOf(formatAddr(d.addr));
      if (dev) toServers.add(dev);
    }
  const toClients = new Set<string>();
  for (const c of clientAddresses(facts.snapshot)) {
    const dev = devOf(c);
    if (dev) toClients.add(dev);
  }
  return { toServers: [...toServers].sort(), toClients: [...toClients].sort() };
}

/** The host settings that break lvsd's data plane, for the plane that runs. */
function hostFindings(facts: DoctorFacts): Finding[] {
  const findings = facts.packetPlane ? packetPlaneFindings(facts, facts.packetPlane) : [];
  const tun = tunServices(facts);
  if (tun.length > 0) findings.push(...tunHostFindings(facts, tun));
  if (hasIPv6(facts.snapshot)) findings.push(...ipv6HostFindings(facts, tun));
  return findings;
}

/**
 * The packet plane's own plumbing: each interface it reads is there and up, and has lvsd's ingress
 * drop (without it, the kernel handles the services' frames too, beside lvsd).
 */
function packetPlaneFindings(facts: DoctorFacts, plane: PacketPlaneFacts): Finding[] {
  const findings: Finding[] = [];
  const interfaces = facts.snapshot.dataPath.interfaces ?? [];
  for (const dev of interfaces) {
    const link = plane.links[dev];
    if (link && link.up && link.carrier) continue;
    findings.push({
      severity: 'problem',
      check: 'link-down',
      message: link
        ? `${dev} is down${link.up ? ' (no carrier)' : ''}: lvsd takes the services' frames off it, and sends on it`
        : `${dev} is gone: lvsd took the services' frames off it`,
      evidence: [
        link ? `ip link show ${dev}: state ${link.state}` : `ip link show ${dev}: no such interface`,
      ],
    });
  }
  const hooked = new Set(plane.netdevIngress ?? []);
  const missing = interfaces.filter((dev) => !hooked.has(dev));
  if (missing.length > 0) {
    findings.push({
      severity: 'problem',
      check: 'netdev-ingress',
      message:
        `lvsd's ingress drop is missing on ${missing.join(', ')}: the kernel handles the services' ` +
        `frames there as well as lvsd (it answers or forwards them unrewritten: clients see resets). ` +
        `lvsd puts its table back within seconds; its log says why when it cannot`,
      evidence: [
        plane.netdevIngress === null
          ? 'nft list table netdev lvsd: no such table'
          : `nft list table netdev lvsd: ingress chains on ${[...hooked].sort().join(', ') || 'no interface'}`,
      ],
    });
  }
  return findings;
}

/** The host settings that break the TUN path (of `services`): forwarding, rp_filter, redirects. */
function tunHostFindings(facts: DoctorFacts, services: readonly ServiceSnapshot[]): Finding[] {
  const findings: Finding[] = [];
  const forward = sysctlValue(facts, 'net/ipv4/ip_forward');
  if (forward === 0) {
    findings.push({
      severity: 'problem',
      check: 'ip-forward',
      message: 'forwarding is off: the kernel neither brings packets to lvsd nor sends its rewritten ones on',
      evidence: ['net.ipv4.ip_forward = 0'],
    });
  }
  const { toServers, toClients } = pathDevices(facts, 4, services);
  const devices = [...new Set([...toServers, ...toClients])].sort();
  for (const dev of devices) {
    if (forward !== 0 && sysctlValue(facts, `net/ipv4/conf/${dev}/forwarding`) === 0) {
      findings.push({
        severity: 'problem',
        check: 'ip-forward',
        message: `forwarding is off on ${dev}: packets arriving there are not forwarded`,
        evidence: [`net.ipv4.conf.${dev}.forwarding = 0`],
      });
    }
  }
  // The kernel takes the larger of conf/all and the device's value.
  const tun = facts.tunDevice;
  const rpAll = sysctlValue(facts, 'net/ipv4/conf/all/rp_filter') ?? 0;
  const rpTun = sysctlValue(facts, `net/ipv4/conf/${tun}/rp_filter`) ?? 0;
  if (Math.max(rpAll, rpTun) === 1) {
    findings.push({
      severity: 'problem',
      check: 'rp-filter',
      message:
        `strict reverse-path filtering on ${tun}: packets lvsd rewrites leave it with the clients' ` +
        `addresses, which route elsewhere, and are dropped (set net.ipv4.conf.all.rp_filter to 0 or 2)`,
      evidence: [`net.ipv4.conf.all.rp_filter = ${rpAll}`, `net.ipv4.conf.${tun}.rp_filter = ${rpTun}`],
    });
  }
  const redirectsAll = sysctlValue(facts, 'net/ipv4/conf/all/send_redirects') ?? 0;
  for (const dev of toServers) {
    const own = sysctlValue(facts, `net/ipv4/conf/${dev}/send_redirects`) ?? 0;
    if (redirectsAll === 1 || own === 1) {
      findings.push({
        severity: 'problem',
        check: 'send-redirects',
        message:
          `ICMP redirects may be sent on ${dev}: the director tells real servers to reach clients ` +
          `on that link directly, and their replies skip it (seed 001 sets send_redirects to 0)`,
        evidence: [
          `net.ipv4.conf.all.send_redirects = ${redirectsAll}`,
          `net.ipv4.conf.${dev}.send_redirects = ${own}`,
        ],
      });
    }
  }
  return findings;
}

/**
 * IPv6's own switches, for IPv6 services (there is no rp_filter or send_redirects for IPv6: the
 * kernel always may send redirects, and reverse-path filtering is a firewall rule, read as one).
 * Forwarding matters to the services on the TUN path (`tun`) only.
 */
function ipv6HostFindings(facts: DoctorFacts, tun: readonly ServiceSnapshot[]): Finding[] {
  const findings: Finding[] = [];
  const forwards = tun.some((svc) => svc.key.af === 6);
  const all = sysctlValue(facts, 'net/ipv6/conf/all/forwarding');
  if (forwards && all === 0) {
    findings.push({
      severity: 'problem',
      check: 'ip-forward',
      message: 'IPv6 forwarding is off: IPv6 services get no packets through the director',
      evidence: ['net.ipv6.conf.all.forwarding = 0'],
    });
  }
  const devicesOf = (paths: { toServers: string[]; toClients: string[] }) =>
    new Set([...paths.toServers, ...paths.toClients]);
  const forwarded = devicesOf(pathDevices(facts, 6, tun));
  for (const dev of [...devicesOf(pathDevices(facts, 6))].sort()) {
    const setting = (name: string) => sysctlValue(facts, `net/ipv6/conf/${dev}/${name}`);
    if (setting('disable_ipv6') === 1) {
      findings.push({
        severity: 'problem',
        check: 'ipv6-disabled',
        message: `IPv6 is disabled on ${dev}, an interface towards IPv6 clients or real servers`,
        evidence: [`net.ipv6.conf.${dev}.disable_ipv6 = 1`],
      });
      continue;
    }
    const forwarding = setting('forwarding');
    if (forwards && forwarded.has(dev) && all !== 0 && forwarding === 0) {
      findings.push({
        severity: 'problem',
        check: 'ip-forward',
        message: `IPv6 forwarding is off on ${dev}: IPv6 packets arriving there are not forwarded`,
        evidence: [`net.ipv6.conf.${dev}.forwarding = 0`],
      });
    }
  }
  // A forwarding interface ignores router advertisements unless accept_ra is 2: a route to the
  // clients learned from them is not renewed, and the director loses its way to them.
  const raDevices = new Set(
    clientAddresses(facts.snapshot).flatMap((c) => {
      const route = facts.routes[c];
      return parseAddr(c)?.af === 6 && route?.protocol === 'ra' ? [route.dev] : [];
    }),
  );
  for (const dev of [...raDevices].sort()) {
    const forwarding = sysctlValue(facts, `net/ipv6/conf/${dev}/forwarding`);
    const acceptRa = sysctlValue(facts, `net/ipv6/conf/${dev}/accept_ra`);
    if (forwarding === 1 && acceptRa === 1) {
      findings.push({
        severity: 'warning',
        check: 'accept-ra',
        message:
          `the route to IPv6 clients on ${dev} was learned from router advertisements, which the ` +
          `kernel ignores there while it forwards (accept_ra = 1): it expires and is not renewed. ` +
          `Set accept_ra to 2, or use a static route`,
        evidence: [
          `net.ipv6.conf.${dev}.forwarding = 1`,
          `net.ipv6.conf.${dev}.accept_ra = 1`,
          `route to the clients: proto ra dev ${dev}`,
        ],
      });
    }
  }
  return findings;
}

/** The packets of a service through the director: client to VIP, to each real server, and back. */
export function serviceFlows(svc: ServiceSnapshot): Array<{ what: string; flow: FlowFact }> {
  if (svc.key.fwmark || (svc.key.protocol !== IPPROTO_TCP && svc.key.protocol !== IPPROTO_UDP)) return [];
  const protocol = svc.key.protocol;
  const ctstate = 'untracked';
  const vip = formatAddr(svc.key.addr);
  const flows: Array<{ what: string; flow: FlowFact }> = [
    {
      what: `client -> ${formatAddrPort(svc.key.addr, svc.key.port)}`,
      flow: { protocol, ctstate, daddr: vip, dport: svc.key.port },
    },
    {
      what: `${formatAddrPort(svc.key.addr, svc.key.port)} -> client`,
      flow: { protocol, ctstate, saddr: vip, sport: svc.key.port },
    },
  ];
  for (const d of svc.dests) {
    const rs = formatAddr(d.addr);
    flows.push(
      { what: `client -> ${destName(d)}`, flow: { protocol, ctstate, daddr: rs, dport: d.port } },
      { what: `${destName(d)} -> client`, flow: { protocol, ctstate, saddr: rs, sport: d.port } },
    );
  }
  return flows;
}

function valueMatches(
  value: string | number,
  wanted: string | number | { prefix: string; len: number },
): boolean {
  if (typeof wanted !== 'object') return String(value) === String(wanted);
  const a = parseAddr(String(value));
  const b = parseAddr(wanted.prefix);
  const bits = a?.af === 4 ? 32 : 128;
  if (!a || !b || a.af !== b.af || wanted.len < 0 || wanted.len > bits) return false;
  return addrEquals(addrMask(a, wanted.len), addrMask(b, wanted.len));
}

/** Whether the rule matches the flow: surely, surely not, or maybe (a field the doctor cannot read). */
export function ruleMatches(rule: FirewallRule, flow: FlowFact): 'yes' | 'no' | 'maybe' {
  let sure = !rule.opaque;
  for (const { field, values } of rule.matches) {
    const value = flow[field];
    if (value === undefined) sure = false;
    else if (!values.some((v) => valueMatches(value, v))) return 'no';
  }
  return sure ? 'yes' : 'maybe';
}

/** The kernel's limit on nested jumps (NFT_JUMP_STACK_SIZE); deeper ones the doctor does not follow. */
const MAX_JUMP_DEPTH = 16;

export interface ChainVerdict {
  verdict: 'accept' | 'drop';
  /** The rule that decided, or null for the base chain's policy. */
  rule: FirewallRule | null;
  /** Rules that might have decided first, but on what the doctor cannot evaluate. */
  unknownBefore: number;
  /** The chains jumped or gone to, in order, down to the deciding rule. */
  via: string[];
}

/**
 * The base chain's verdict on the flow: its first rule that surely matches with a verdict, jumps
 * and gotos followed (a chain that ends, or returns, goes back to where it was jumped from; one gone
 * to, to its caller's caller), else the policy.
 */
export function chainVerdict(
  chain: FirewallChain,
  flow: FlowFact,
  chains: readonly FirewallChain[] = [],
): ChainVerdict {
  const byName = new Map(chains.map((c) => [c.name, c]));
  const walked = walk(chain, flow, byName, 0);
  if (walked.verdict) return { ...walked, verdict: walked.verdict };
  return { verdict: chain.policy, rule: null, unknownBefore: walked.unknownBefore, via: [] };
}

function walk(
  chain: FirewallChain,
  flow: FlowFact,
  byName: ReadonlyMap<string, FirewallChain>,
  depth: number,
): Omit<ChainVerdict, 'verdict'> & { verdict: 'accept' | 'drop' | null } {
  let unknownBefore = 0;
  for (const rule of chain.rules) {
    if (rule.verdict === 'continue') continue;
    const match = ruleMatches(rule, flow);
    if (match === 'no') continue;
    const target = rule.target === undefined ? undefined : byName.get(rule.target);
    const jumps = rule.verdict === 'jump' || rule.verdict === 'goto';
    const unfollowed = jumps && (!target || depth >= MAX_JUMP_DEPTH);
    if (match === 'maybe' || rule.verdict === 'unknown' || unfollowed) {
      unknownBefore++;
      continue;
    }
    if (rule.verdict === 'accept' || rule.verdict === 'drop')
      return { verdict: rule.verdict, rule, unknownBefore, via: [] };
    if (rule.verdict === 'return') return { verdict: null, rule: null, unknownBefore, via: [] };
    const sub = walk(target!, flow, byName, depth + 1);
    unknownBefore += sub.unknownBefore;
    if (sub.verdict) return { ...sub, unknownBefore, via: [target!.name, ...sub.via] };
    if (rule.verdict === 'goto') return { verdict: null, rule: null, unknownBefore, via: [] };
  }
  return { verdict: null, rule: null, unknownBefore, via: [] };
}

/** Whether a chain sees a service's packets: its family, and a hook they cross. */
function chainSees(chain: FirewallChain, family: Family): boolean {
  return (chain.family === 'both' || chain.family === family) && chain.hook !== null;
}

/** A firewall chain on the path that drops this service's packets (seed 000: "turn off iptables or set rules"). */
function firewallFindings(svc: ServiceSnapshot, facts: DoctorFacts): Finding[] {
  const findings: Finding[] = [];
  for (const chain of facts.firewall) {
    if (!chainSees(chain, svc.key.af)) continue;
    const dropped = serviceFlows(svc)
      .map(({ what, flow }) => ({ what, ...chainVerdict(chain, flow, facts.firewall) }))
      .filter((v) => v.verdict === 'drop');
    if (dropped.length === 0) continue;
    // A drop after rules the doctor cannot read may follow an accept it did not see: a warning.
    const sure = dropped.some((d) => d.unknownBefore === 0);
    findings.push({
      severity: sure ? 'problem' : 'warning',
      check: 'firewall',
      message: `the firewall chain ${chain.name} (hook ${chain.hook}) drops this service's packets`,
      evidence: dropped.map(
        (d) =>
          `${d.what}: ${d.rule ? `rule "${d.rule.text}"` : `policy drop`}` +
          (d.via.length ? ` (in ${d.via.join(' -> ')})` : '') +
          (d.unknownBefore ? ` (after ${d.unknownBefore} rules the doctor cannot evaluate)` : ''),
      ),
    });
  }
  return findings;
}
