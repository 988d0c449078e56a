// `lvsadm doctor`'s diagnosis, pure: from what the director sees (its counters and connection
// states, the host's routes, neighbours, sysctls and firewall rules, and the answers to probes it
// sent the real servers) to a verdict per service and real server, each with its evidence. The
// facts are collected by src/cli/doctor.ts; the pitfalls are the seeds' (docs/doctor.md).

import { formatAddr, formatAddrPort, IPPROTO_TCP, IPPROTO_UDP } from './inet.js';
import type { Protocol } from './inet.js';
import type { DestSnapshot, ServiceSnapshot, Snapshot } from './ops.js';

/** `ip -j route get ADDR`, reduced: where the director sends packets for an address. */
export interface RouteFact {
  dev: string;
  /** The next hop; absent when the address is on a directly connected subnet. */
  gateway?: string;
  /** The source the director uses towards it (its DIP for real servers). */
  prefsrc?: string;
  /** 'local' for the director's own addresses. */
  type?: string;
}

/** `ip -j neigh`, reduced. */
export interface NeighbourFact {
  dst: string;
  dev: string;
  state: string[];
}

/** What a probe from the director to a real server's port got back. */
export type ProbeFact =
  | { result: 'open'; ms: number }
  | { result: 'refused' }
  | { result: 'timeout'; ms: number }
  | { result: 'error'; message: string }
  /** Not probed: the protocol has no handshake to probe (UDP), or the port is not known (fwmark, 0). */
  | { result: 'skipped'; reason: string };

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
  /** e.g. "ip filter forward" (family, table, chain), for the evidence. */
  chain: string;
  hook: string;
  /** The rule as nft lists it, for the evidence. */
  text: string;
  /** Values the field must equal (any of). */
  matches: Array<{ field: keyof FlowFact; values: Array<string | number | { prefix: string; len: number }> }>;
  /** The rule also matches on what the doctor cannot evaluate (interfaces, marks, ranges). */
  opaque: boolean;
  /** 'continue' for a rule without a verdict (counter, log); 'unknown' for jumps and the like. */
  verdict: 'accept' | 'drop' | 'continue' | 'unknown';
}

export interface FirewallChain {
  name: string;
  hook: string;
  policy: 'accept' | 'drop';
  rules: FirewallRule[];
}

export interface DoctorFacts {
  snapshot: Snapshot;
  /** Whether lvsd moves packets (a TUN data plane); without one, the host checks do not apply. */
  dataplane: boolean;
  /** lvsd's TUN device (lvs0). */
  tunDevice: string;
  /** /proc/sys values by path under /proc/sys ('net/ipv4/ip_forward'); null where unreadable. */
  sysctls: Readonly<Record<string, string | null>>;
  /** By address (as formatAddr prints it); null when there is no route. */
  routes: Readonly<Record<string, RouteFact | null>>;
  neighbours: readonly NeighbourFact[];
  /** By "addr:port" (formatAddrPort). */
  probes: Readonly<Record<string, ProbeFact>>;
  /** The host's firewall chains on the forward and prerouting hooks, lvsd's own table left out. */
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
  host: Finding[];
  services: ServiceReport[];
}

/** The sysctls the checks read, for the collector: global ones and those of each device named. */
export function sysctlsWanted(devices: readonly string[]): string[] {
  const paths = ['net/ipv4/ip_forward', 'net/ipv4/conf/all/rp_filter', 'net/ipv4/conf/all/send_redirects'];
  for (const dev of devices) {
    paths.push(
      `net/ipv4/conf/${dev}/forwarding`,
      `net/ipv4/conf/${dev}/rp_filter`,
      `net/ipv4/conf/${dev}/send_redirects`,
    );
  }
  return paths;
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

/** What a probe to this real server should be, given its service: TCP with a known port only. */
export function probeTarget(svc: ServiceSnapshot, dest: DestSnapshot): ProbeFact | null {
  const protocol = svc.key.fwmark ? 0 : svc.key.protocol;
  if (protocol !== IPPROTO_TCP) {
    return { result: 'skipped', reason: `not probed: ${svc.key.fwmark ? 'fwmark service' : 'no handshake'}` };
  }
  if (dest.port === 0) return { result: 'skipped', reason: 'not probed: no port' };
  return null;
}

const worst = (verdicts: Verdict[]): Verdict =>
  verdicts.includes('problem') ? 'problem' : verdicts.includes('warning') ? 'warning' : 'ok';

const verdictOf = (findings: readonly Finding[]): Verdict => worst(findings.map((f) => f.severity));

/** The whole diagnosis. */
export function diagnose(facts: DoctorFacts): DoctorReport {
  const host = facts.dataplane ? hostFindings(facts) : [];
  const services = facts.snapshot.services.map((svc) => serviceReport(svc, facts));
  return {
    verdict: worst([verdictOf(host), ...services.map((s) => s.verdict)]),
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
  if (facts.dataplane) findings.push(...firewallFindings(svc, facts));
  const dests = svc.dests.map((d) => destReport(svc, d, facts));
  return {
    service: serviceName(svc),
    verdict: worst([verdictOf(findings), ...dests.map((d) => d.verdict)]),
    findings,
    dests,
  };
}

function probeText(probe: ProbeFact | undefined, target: string): string {
  if (!probe) return `no probe of ${target}`;
  switch (probe.result) {
    case 'open':
      return `the director's probe of ${target} was answered (SYN-ACK) in ${probe.ms} ms`;
    case 'refused':
      return `the director's probe of ${target} was refused (RST)`;
    case 'timeout':
      return `the director's probe of ${target} got no answer in ${probe.ms} ms`;
    case 'error':
      return `the director's probe of ${target} failed: ${probe.message}`;
    case 'skipped':
      return probe.reason;
  }
}

function destReport(svc: ServiceSnapshot, dest: DestSnapshot, facts: DoctorFacts): DestReport {
  const name = destName(dest);
  const addr = formatAddr(dest.addr);
  const probe = facts.probes[name] ?? probeTarget(svc, dest) ?? undefined;
  const conns = (facts.snapshot.connections ?? []).filter(
    (c) => !c.template && formatAddr(c.daddr) === addr && c.dport === dest.port,
  );
  const synRecv = conns.filter((c) => c.state === 'SYN_RECV').length;
  const { inPkts, outPkts, conns: total } = dest.stats;
  const route = facts.routes[addr];
  const neighbour = facts.neighbours.find((n) => n.dst === addr);
  const evidence = [
    `${total} connections, ${inPkts} packets forwarded to it, ${outPkts} packets back through the director`,
    `${conns.length} in the connection table, ${synRecv} in SYN_RECV`,
    probeText(probe, name),
  ];
  if (route) {
    evidence.push(
      `route: dev ${route.dev}${route.gateway ? ` via ${route.gateway}` : ''}${route.prefsrc ? ` src ${route.prefsrc}` : ''}`,
    );
  }
  if (neighbour) evidence.push(`neighbour: ${neighbour.state.join(',')} on ${neighbour.dev}`);
  const findings: Finding[] = [];
  const neighbourFailed = neighbour?.state.some((s) => s === 'FAILED' || s === 'INCOMPLETE') ?? false;

  if (probe?.result === 'refused') {
    findings.push({
      severity: 'problem',
      check: 'refused',
      message: `refuses connections on port ${dest.port} (RST): nothing listens there, or a firewall on it rejects`,
      evidence,
    });
  } else if (probe?.result === 'timeout' || probe?.result === 'error') {
    findings.push({
      severity: 'problem',
      check: 'silent',
      message: neighbourFailed
        ? `does not answer: no ARP/ND reply from ${addr} (down, or not on ${neighbour!.dev})`
        : `does not answer on port ${dest.port} (silence): down, or a firewall on it drops`,
      evidence,
    });
  } else if (outPkts === '0' && synRecv > 0) {
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
  findings.push(...sameSubnetFindings(dest, facts));
  return { dest: name, verdict: verdictOf(findings), findings, evidence };
}

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

/** The devices towards the real servers and towards the clients seen, from the routes. */
function pathDevices(facts: DoctorFacts): { toServers: string[]; toClients: string[] } {
  const devOf = (addr: string) => {
    const route = facts.routes[addr];
    return route && route.type !== 'local' ? route.dev : null;
  };
  const toServers = new Set<string>();
  for (const svc of facts.snapshot.services)
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

/** The host settings that break lvsd's TUN data plane. */
function hostFindings(facts: DoctorFacts): Finding[] {
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
  const { toServers, toClients } = pathDevices(facts);
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

function ipv4Number(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return null;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

function valueMatches(
  value: string | number,
  wanted: string | number | { prefix: string; len: number },
): boolean {
  if (typeof wanted !== 'object') return String(value) === String(wanted);
  const a = ipv4Number(String(value));
  const b = ipv4Number(wanted.prefix);
  if (a === null || b === null || wanted.len < 0 || wanted.len > 32) return false;
  const size = 2 ** (32 - wanted.len);
  return Math.floor(a / size) === Math.floor(b / size);
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

/** The chain's verdict on the flow: its first rule that surely matches with a verdict, else its policy. */
export function chainVerdict(
  chain: FirewallChain,
  flow: FlowFact,
): { verdict: 'accept' | 'drop'; rule: FirewallRule | null; unknownBefore: number } {
  let unknownBefore = 0;
  for (const rule of chain.rules) {
    if (rule.verdict === 'continue') continue;
    const match = ruleMatches(rule, flow);
    if (match === 'no') continue;
    if (match === 'maybe' || rule.verdict === 'unknown') {
      unknownBefore++;
      continue;
    }
    return { verdict: rule.verdict, rule, unknownBefore };
  }
  return { verdict: chain.policy, rule: null, unknownBefore };
}

/** A firewall chain on the path that drops this service's packets (seed 000: "turn off iptables or set rules"). */
function firewallFindings(svc: ServiceSnapshot, facts: DoctorFacts): Finding[] {
  const findings: Finding[] = [];
  for (const chain of facts.firewall) {
    const dropped = serviceFlows(svc)
      .map(({ what, flow }) => ({ what, ...chainVerdict(chain, flow) }))
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
          (d.unknownBefore ? ` (after ${d.unknownBefore} rules the doctor cannot evaluate)` : ''),
      ),
    });
  }
  return findings;
}
