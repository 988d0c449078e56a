// The kernel plumbing that brings a service's traffic to the TUN device and takes it back out:
// sysctls, an nftables table of our own that marks only configured VIP/proto/port packets and
// the real servers' replies, and policy routing from that mark to the device (and from each
// fwmark service's mark to that service's own device).
//
// Every change is journaled in the state directory (as data, see host-journal.ts) before it is
// made, so stop() undoes exactly what was added (sysctls restored to the values found), the next
// start cleans up after a crash, and verify()/repair() can put back what the host lost since
// (a firewall reload flushing the ruleset, a device going down and taking its routes).
//
// Fail closed: each of our routing tables ends in a blackhole of the lowest priority, so marked
// packets are dropped, never routed un-NATed, while the device is gone (lvsd killed, restarting).
// A stop for a restart goes further (hold()): the services' traffic, both ways, is dropped by a
// table of its own until the next lvsd takes over (releaseHold()) or the kernel expires it, so
// that the host never answers a VIP's port with a reset in between and clients retransmit.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatAddr, IPPROTO_TCP, IPPROTO_UDP, parseAddr, type Addr, type Family } from '../core/inet.js';
import type { ServiceSnapshot } from '../core/ops.js';
import { fwmarkDeviceName } from './device.js';
import {
  describeChange,
  holdTableName,
  isInterfaceName,
  parseJournal,
  serializeJournal,
  type HostChange,
  type JournalEntry,
  type JournalLimits,
} from './host-journal.js';
import { EMPTY_FILTER, netdevScript, type FilterSpec } from './l2-filter.js';
import { NftSession } from './nft-session.js';
import type { LinkPlan } from './link-path.js';

/** What the WorkerEngine asks of the host. */
export interface HostSteering {
  /** Brings the kernel in line with these services (idempotent; a diff against what is in place). */
  sync(services: readonly ServiceSnapshot[]): void;
  /** Undoes every change, in reverse order; with keepHold, all but the restart hold. */
  stop(options?: { keepHold?: boolean }): void;
  /**
   * Before a stop for a restart: drops the steered services' traffic (to the VIPs' ports, the
   * real servers' replies, fwmark services' marks) for at most holdMs, kernel-timed, so that
   * nothing answers it while no lvsd runs. Journaled: the next lvsd keeps it until releaseHold().
   */
  hold(holdMs: number): void;
  /** Ends a restart hold (this run's or the one a previous run left); nothing when there is none. */
  releaseHold(): void;
  /**
   * The layer-2 plane's interfaces and frames as of the last sync (--dataplane packet only); none
   * while a restart hold is in place, since the plane reads its frames before the hold's chains.
   */
  linkPlan?(): LinkPlan;
}

/** The privileged operations, behind an interface so the logic runs in tests without root. */
export interface System {
  /** Runs a command; throws with its stderr when it fails. */
  run(argv: readonly string[], input?: string): string;
  /**
   * Runs an nft script as one transaction in lvsd's own nft session (nft-session.ts): a table it
   * makes with `flags owner` is removed by the kernel when lvsd dies. Throws with nft's error.
   */
  nftOwned(script: string): void;
  readFile(path: string): string | null;
  writeFile(path: string, data: string): void;
  removeFile(path: string): void;
}

export class RealSystem implements System {
  private readonly nft = new NftSession();

  nftOwned(script: string): void {
    this.nft.run(script);
  }

  run(argv: readonly string[], input?: string): string {
    try {
      return execFileSync(argv[0]!, argv.slice(1), { input, encoding: 'utf8', stdio: 'pipe' });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new Error(`${argv.join(' ')}: ${stderr || (error as Error).message}`, { cause: error });
    }
  }

  readFile(path: string): string | null {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  }

  writeFile(path: string, data: string): void {
    if (path.startsWith('/proc/')) {
      writeFileSync(path, data);
      return;
    }
    // Journal writes are atomic: a crash leaves the old journal or the new one, never half of one.
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.tmp`, data);
    renameSync(`${path}.tmp`, path);
  }

  removeFile(path: string): void {
    rmSync(path, { force: true });
  }
}

/** What the daemon runs on a timer so that the host keeps what lvsd put in place. */
export interface HostRepair {
  /** What the journal says is in place and the kernel lacks, one line each (empty when all is there). */
  verify(): string[];
  /**
   * Re-applies exactly what verify() would report; says what it put back and what it could not.
   * 'sysctls' looks only at the sysctls (files to read, no listing to fork for): what the kernel
   * never announces, checked when nothing else was announced to have changed (HostEvents).
   */
  repair(scope?: RepairScope): RepairReport;
}

export type RepairScope = 'all' | 'sysctls';

export interface RepairReport {
  repaired: string[];
  /** "<what>: <error>" for each change that could not be re-applied (a device that is gone, say). */
  failed: string[];
}

/** Whether a device name is one fwmarkDeviceName gives (for a mark of 1 .. 2^32-1). */
function isFwmarkDevice(name: string): boolean {
  const mark = /^lvsf([1-9]\d{0,9})$/.exec(name)?.[1];
  return mark !== undefined && Number(mark) <= 0xffff_ffff;
}

export interface HostNetworkOptions {
  system: System;
  stateDir: string;
  tunName: string;
  /** Our nftables table, in family inet. */
  nftTable?: string;
  /** The packet mark our rules set and the routing table that mark selects. */
  mark?: number;
  table?: number;
  /**
   * The routing tables of fwmark services, one per service, allocated in this range (journaled).
   * The default, 0x4c560000 .. 0x4c56ffff, stays clear of the main table (0x4c56) and of the
   * kernel's (253-255).
   */
  fwmarkTables?: { first: number; count: number };
  /** Priority of the fwmark rules; the local-table rule moves to localPref so the marks win. */
  rulePref?: number;
  localPref?: number;
  /**
   * The VIPs belong to VRRP (keepalived adds and removes them): lvsd never routes one to its
   * device nor answers ARP/ND for it, and steers its service packets whether it is present or not.
   */
  floatingVips?: boolean;
  /**
   * The layer-2 plane (--dataplane packet) reads the services' frames off the VIPs' and the real
   * servers' interfaces: a `table netdev` ingress chain on each drops them for the kernel.
   */
  linkLayer?: boolean;
}

const EMPTY_PLAN: LinkPlan = { interfaces: [], spec: EMPTY_FILTER };

const JOURNAL = 'host-journal.json';
/** The journal entry of the restart hold. */
const HOLD_KEY = 'hold';
/**
 * How many direct flows to real servers the kernel remembers, and for how long once idle. Few:
 * nft lists a table with every element of its sets, and verify() lists ours every 2 s (4096 flows
 * take nft about 0.5 s on a loaded 2-core machine, 65,536 took 9 s).
 */
const PASS_FLOWS = 4096;
const PASS_NEW_TIMEOUT = '60s';
const PASS_TIMEOUT = '300s';
/** A direct flow as `nft -j list set` shows it. */
interface PassElement {
  val?: { concat?: unknown[] };
  expires?: number;
}

/** The sets of direct flows: a real server's address, protocol and port, then its client's. */
const PASS_SETS: readonly [name: string, type: string][] = [
  ['pass4', 'ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service'],
  ['pass6', 'ipv6_addr . inet_proto . inet_service . ipv6_addr . inet_service'],
];
/** The blackhole that keeps marked packets from leaking when a device is gone: the last resort. */
const FAIL_CLOSED_METRIC = 0xffff_ffff;
/** The ICMP errors that belong to a flow (nft's names). */
const ICMP4_ERRORS = 'destination-unreachable, time-exceeded, parameter-problem';
const ICMP6_ERRORS = 'destination-unreachable, packet-too-big, time-exceeded, parameter-problem';

function procPath(sysctl: string): string {
  return `/proc/sys/${sysctl}`;
}

function protocolName(protocol: number): string {
  return protocol === IPPROTO_TCP ? 'tcp' : protocol === IPPROTO_UDP ? 'udp' : 'sctp';
}

/** An `addr . proto . port` set element, as nft writes it. */
function element(addr: Addr, protocol: number, port: number): string {
  return `${formatAddr(addr)} . ${protocolName(protocol)} . ${port}`;
}

interface Desired {
  families: Set<Family>;
  /** Set name -> elements. */
  sets: Map<string, Set<string>>;
  vips: Map<string, Addr>;
  /** Keys of the VIPs that carry a TCP service. */
  tcpVips: Set<string>;
  fwmarks: Map<string, { family: Family; mark: number }>;
  /** Addresses whose outgoing interface must not send redirects. */
  peers: Map<string, Addr>;
}

interface IpRule {
  priority: number;
  fwmark?: string;
  table: string;
}

interface IpRoute {
  type?: string;
  dst: string;
  dev?: string;
  table?: string;
  metric?: number;
}

interface IpNeigh {
  dst: string;
  dev: string;
}

/** What `ip -j` and `nft -j` list, fetched once per verify or repair pass. */
class HostListing {
  private readonly cache = new Map<string, unknown>();

  constructor(
    private readonly system: System,
    private readonly nftTable: string,
  ) {}

  private list<T>(argv: string[], fallback: T, input?: string): T {
    const key = argv.join(' ');
    if (!this.cache.has(key)) {
      let value: unknown = fallback;
      try {
        const out = this.system.run(argv, input);
        value =
          input === undefined
            ? JSON.parse(out)
            : out
                .split('\n')
                .filter(Boolean)
                .map((line) => JSON.parse(line));
      } catch {
        // Nothing listed (nft: no such table): everything under it is missing.
      }
      this.cache.set(key, value);
    }
    return this.cache.get(key) as T;
  }

  /** A family's rules, routes and proxy neighbours in one `ip -batch` (one JSON document a line). */
  private ip(family: Family): [rules: IpRule[], routes: IpRoute[], proxies: IpNeigh[]] {
    const listed = this.list<unknown[]>(
      ['ip', `-${family}`, '-j', '-batch', '-'],
      [],
      'rule show\nroute show table all\nneigh show proxy\n',
    );
    return listed.length === 3 ? (listed as [IpRule[], IpRoute[], IpNeigh[]]) : [[], [], []];
  }

  rules(family: Family): IpRule[] {
    return this.ip(family)[0];
  }

  routes(family: Family): IpRoute[] {
    return this.ip(family)[1];
  }

  proxies(family: Family): IpNeigh[] {
    return this.ip(family)[2];
  }

  /** Our table's chains, rules and set sizes; null when the table is gone. */
  nft(): { chains: number; rules: number; sets: Map<string, number> } | null {
    const listing = this.list<{ nftables?: Record<string, { name?: string; elem?: unknown[] }>[] } | null>(
      ['nft', '-j', 'list', 'table', 'inet', this.nftTable],
      null,
    );
    if (listing?.nftables === undefined) return null;
    const shape = { chains: 0, rules: 0, sets: new Map<string, number>() };
    for (const object of listing.nftables) {
      if (object.chain) shape.chains++;
      if (object.rule) shape.rules++;
      if (object.set) shape.sets.set(object.set.name ?? '', object.set.elem?.length ?? 0);
    }
    return shape;
  }
}

export class HostNetwork implements HostSteering, HostRepair {
  private readonly system: System;
  private readonly journalPath: string;
  private readonly tunName: string;
  private readonly nftTable: string;
  private readonly mark: number;
  private readonly table: number;
  private readonly fwmarkTables: { first: number; count: number };
  private readonly rulePref: number;
  private readonly localPref: number;
  private readonly floatingVips: boolean;
  private readonly linkLayer: boolean;
  private plan: LinkPlan = EMPTY_PLAN;
  private journal: JournalEntry[] = [];
  /** Set elements in place, by set name. */
  private readonly elements = new Map<string, Set<string>>();
  /** How the kernel listed our nft table right after we made it: what verify() compares with. */
  private nftShape: { chains: number; rules: number } | null = null;

  constructor(options: HostNetworkOptions) {
    this.system = options.system;
    this.journalPath = join(options.stateDir, JOURNAL);
    this.tunName = options.tunName;
    this.nftTable = options.nftTable ?? 'lvsd';
    this.mark = options.mark ?? 0x4c56;
    this.table = options.table ?? 0x4c56;
    this.fwmarkTables = options.fwmarkTables ?? { first: 0x4c56_0000, count: 0x1_0000 };
    this.rulePref = options.rulePref ?? 90;
    this.localPref = options.localPref ?? 100;
    this.floatingVips = options.floatingVips ?? false;
    this.linkLayer = options.linkLayer ?? false;
    const { first, count } = this.fwmarkTables;
    if (this.table >= first && this.table < first + count) {
      throw new Error(`routing table ${this.table} lies in the fwmark tables ${first}..${first + count - 1}`);
    }
  }

  private limits(): JournalLimits {
    return {
      nftTable: this.nftTable,
      table: this.table,
      fwmarkTables: this.fwmarkTables,
      ownDevice: (name) => name === this.tunName || isFwmarkDevice(name),
    };
  }

  /**
   * Undoes what a previous run left in its journal (it crashed or was killed), except a restart
   * hold, which stays until releaseHold(). A journal that is not one this lvsd could have written
   * throws HostJournalError before anything is run.
   */
  recover(): number {
    const text = this.system.readFile(this.journalPath);
    if (text === null) return 0;
    this.journal = parseJournal(this.journalPath, text, this.limits());
    const count = this.journal.length;
    this.stop({ keepHold: true });
    return count;
  }

  stop(options: { keepHold?: boolean } = {}): void {
    const kept = options.keepHold ? this.journal.filter((e) => e.key === HOLD_KEY) : [];
    for (const entry of [...this.journal].reverse()) if (!kept.includes(entry)) this.undoEntry(entry);
    this.journal = kept;
    this.elements.clear();
    this.nftShape = null;
    this.plan = EMPTY_PLAN;
    if (kept.length > 0) this.system.writeFile(this.journalPath, serializeJournal(kept));
    else this.system.removeFile(this.journalPath);
  }

  hold(holdMs: number): void {
    const script = this.holdScript(holdMs);
    if (script === null) return;
    const entry: JournalEntry = {
      key: HOLD_KEY,
      changes: [{ kind: 'nft-hold', table: holdTableName(this.nftTable) }],
    };
    const held = this.has(HOLD_KEY);
    if (!held) this.record(entry);
    try {
      this.system.run(['nft', '-f', '-'], script);
    } catch (error) {
      if (!held) this.forget(this.journal.find((e) => e.key === HOLD_KEY)!);
      throw error;
    }
  }

  releaseHold(): void {
    const entry = this.journal.find((e) => e.key === HOLD_KEY);
    if (!entry) return;
    this.undoEntry(entry);
    this.forget(entry);
  }

  sync(services: readonly ServiceSnapshot[]): void {
    if (services.length === 0) {
      this.stop();
      return;
    }
    // Planned first: an interface lvsd cannot tell refuses the change before anything is made.
    const plan = this.linkLayer ? this.planLink(services) : null;
    const desired = this.desired(services);
    for (const family of desired.families) this.activate(family);
    this.syncKeyed('vip:', desired.vips, (key, vip) => this.steerVip(key, vip));
    // A local server that served a VIP's port leaves TIME_WAIT sockets; TCP early demux attaches
    // them to new SYNs from reused client ports, and the kernel never forwards a packet with a
    // socket (ip_forward, ip6_forward). This sysctl governs IPv6's early demux too. A fwmark
    // service may carry TCP to any local address.
    const catchable = desired.fwmarks.size > 0 || [...desired.tcpVips].some((key) => this.isLocalVip(key));
    this.syncKeyed('early-demux', new Map(catchable ? [['early-demux', null]] : []), (key) =>
      this.addEntry(key, this.sysctlChanges([['net/ipv4/tcp_early_demux', '0']])),
    );
    this.syncKeyed('fwmark:', desired.fwmarks, (key, { family, mark }) =>
      this.steerFwmark(key, family, mark),
    );
    for (const [name, want] of desired.sets) this.syncSet(name, want);
    for (const [, peer] of desired.peers) {
      const dev = this.routeDevice(peer);
      if (dev && dev !== this.tunName) this.setSysctl(`net/ipv4/conf/${dev}/send_redirects`, '0');
    }
    if (plan) this.syncLink(plan);
  }

  linkPlan(): LinkPlan {
    // Held, the netdev rules still keep the frames from the host: nobody answers them.
    return this.has(HOLD_KEY) ? EMPTY_PLAN : this.plan;
  }

  /** Our netdev table, remade whole (one transaction) when the plan changed. */
  private syncLink(plan: LinkPlan): void {
    const previous = this.plan;
    this.plan = plan;
    try {
      if (!this.has('netdev')) this.addEntry('netdev', [{ kind: 'nft-netdev', table: this.nftTable }]);
      else if (JSON.stringify(previous) !== JSON.stringify(plan))
        this.apply({ kind: 'nft-netdev', table: this.nftTable });
    } catch (error) {
      this.plan = previous;
      throw error;
    }
  }

  /**
   * Which frames the layer-2 plane takes, and on which interfaces: each VIP's (the interface that
   * holds it, or faces its clients) and each masquerading real server's (the route to it). A
   * fwmark service's packets stay on the TUN path (the mark is set by the kernel's rules).
   */
  private planLink(services: readonly ServiceSnapshot[]): LinkPlan {
    const held = this.localAddresses();
    const interfaces = new Set<string>();
    const spec: FilterSpec = { services: [], realServers: [], locals: [], directReplies: [] };
    const vips = new Set<string>();
    const own = (dev: string): boolean => dev === 'lo' || this.limits().ownDevice(dev);
    for (const { key, dests } of services) {
      if (key.fwmark > 0) continue;
      const vip = formatAddr(key.addr);
      vips.add(vip);
      const dev = held.get(vip) ?? this.proxyDevice(vip) ?? this.routeDevice(key.addr);
      if (!dev || own(dev))
        throw new Error(
          `--dataplane packet cannot tell which interface the clients of ${vip} come in on` +
            `${dev ? ` (it is on ${dev})` : ''}: put the VIP on that interface, or run lvsd with --dataplane tun`,
        );
      interfaces.add(dev);
      spec.services.push({ addr: key.addr, protocol: key.protocol, port: key.port });
      for (const dest of dests) {
        if (dest.method !== 'masq') {
          // Its replies carry the VIP as source: routed back through a director that holds the VIP,
          // they are martians for its kernel unless lvsd takes them (FilterSpec.directReplies).
          const rdev = held.has(vip) ? this.routeDevice(dest.addr) : null;
          if (!rdev || own(rdev)) continue;
          interfaces.add(rdev);
          const reply = { addr: key.addr, protocol: key.protocol, port: key.port };
          if (!spec.directReplies.some((r) => JSON.stringify(r) === JSON.stringify(reply)))
            spec.directReplies.push(reply);
          continue;
        }
        const rdev = this.routeDevice(dest.addr);
        if (!rdev || own(rdev))
          throw new Error(
            `--dataplane packet cannot tell which interface reaches real server ${formatAddr(dest.addr)}` +
              ': the host needs a route to it on an interface (or run lvsd with --dataplane tun)',
          );
        interfaces.add(rdev);
        spec.realServers.push({ addr: dest.addr, protocol: key.protocol, port: dest.port });
      }
    }
    for (const [text] of held) if (!vips.has(text)) spec.locals.push(parseAddr(text)!);
    return { interfaces: [...interfaces].sort(), spec };
  }

  /** The host's addresses, each with the interface that holds it. */
  private localAddresses(): Map<string, string> {
    const held = new Map<string, string>();
    const listed = JSON.parse(this.system.run(['ip', '-j', 'addr', 'show'])) as {
      ifname?: string;
      addr_info?: { local?: string }[];
    }[];
    for (const link of listed) {
      for (const info of link.addr_info ?? []) {
        const addr = info.local === undefined ? null : parseAddr(info.local);
        if (addr && link.ifname && isInterfaceName(link.ifname)) held.set(formatAddr(addr), link.ifname);
      }
    }
    return held;
  }

  /** The interface lvsd answers ARP/ND for a VIP on (a VIP that is no local address). */
  private proxyDevice(vip: string): string | null {
    for (const change of this.journal.find((e) => e.key === `vip:${vip}`)?.changes ?? [])
      if (change.kind === 'proxy-neigh') return change.dev;
    return null;
  }

  verify(): string[] {
    const listing = new HostListing(this.system, this.nftTable);
    return this.changes()
      .filter((change) => !this.inPlace(change, listing))
      .map(describeChange);
  }

  repair(scope: RepairScope = 'all'): RepairReport {
    const listing = new HostListing(this.system, this.nftTable);
    const report: RepairReport = { repaired: [], failed: [] };
    // In journal order: a table before its rules, ip_forward (which resets conf/*) before conf/*.
    for (const change of this.changes()) {
      if (scope === 'sysctls' && change.kind !== 'sysctl') continue;
      if (this.inPlace(change, listing)) continue;
      try {
        this.apply(change);
        report.repaired.push(describeChange(change));
      } catch (error) {
        report.failed.push(`${describeChange(change)}: ${(error as Error).message}`);
      }
    }
    return report;
  }

  /** What verify() and repair() keep in place: everything but the restart hold, which only expires. */
  private changes(): HostChange[] {
    return this.journal.flatMap((entry) => entry.changes).filter((change) => change.kind !== 'nft-hold');
  }

  private desired(services: readonly ServiceSnapshot[]): Desired {
    const d: Desired = {
      families: new Set(),
      sets: new Map([
        ['svc4', new Set()],
        ['svc6', new Set()],
        ['real4', new Set()],
        ['real6', new Set()],
        ['vip4', new Set()],
        ['vip6', new Set()],
        ['rip4', new Set()],
        ['rip6', new Set()],
      ]),
      vips: new Map(),
      tcpVips: new Set(),
      fwmarks: new Map(),
      peers: new Map(),
    };
    for (const { key, dests } of services) {
      d.families.add(key.af);
      if (key.fwmark > 0) {
        if (key.fwmark === this.mark) {
          throw new Error(`fwmark ${key.fwmark} is the mark lvsd's own steering sets: use another mark`);
        }
        d.fwmarks.set(`fwmark:${key.af}:${key.fwmark}`, { family: key.af, mark: key.fwmark });
      } else {
        const vipKey = `vip:${formatAddr(key.addr)}`;
        d.sets.get(`svc${key.af}`)!.add(element(key.addr, key.protocol, key.port));
        d.sets.get(`vip${key.af}`)!.add(formatAddr(key.addr));
        d.vips.set(vipKey, key.addr);
        if (key.protocol === IPPROTO_TCP) d.tcpVips.add(vipKey);
        if (key.af === 4) d.peers.set(formatAddr(key.addr), key.addr);
      }
      // A fwmark service carries any protocol: match its real servers' TCP and UDP replies.
      const protocols = key.fwmark > 0 ? [IPPROTO_TCP, IPPROTO_UDP] : [key.protocol];
      for (const dest of dests) {
        // A tunnelled real server answers the client itself: its replies are not the director's,
        // even when they cross this host's forwarding on their way.
        if (dest.method === 'tunnel') continue;
        for (const protocol of protocols)
          d.sets.get(`real${dest.addr.af}`)!.add(element(dest.addr, protocol, dest.port));
        d.sets.get(`rip${dest.addr.af}`)!.add(formatAddr(dest.addr));
        if (dest.addr.af === 4) d.peers.set(formatAddr(dest.addr), dest.addr);
      }
    }
    return d;
  }

  /** First service of a family: forwarding, the nft table, the route to the device, the rules. */
  private activate(family: Family): void {
    if (this.has(`active:${family}`)) return;
    if (family === 4) {
      this.setSysctl('net/ipv4/ip_forward', '1');
      for (const dev of ['all', 'default']) this.setSysctl(`net/ipv4/conf/${dev}/send_redirects`, '0');
      this.deviceSysctls(this.tunName).forEach(([path, value]) => this.setSysctl(path, value));
    } else {
      this.setSysctl('net/ipv6/conf/all/forwarding', '1');
    }
    if (!this.has('nft')) this.addEntry('nft', [{ kind: 'nft-table', table: this.nftTable }]);
    this.addEntry(`fail-closed:${family}`, [this.failClosed(family, this.table)]);
    this.addEntry(`route:${family}`, [this.deviceRoute(family, this.tunName, this.table)]);
    // The local table is consulted at priority 0, before any rule we could add: move it after
    // ours so a marked packet to a VIP that is a local address still reaches the device. The
    // new local rule goes in before the old one leaves, so local delivery never lapses.
    this.addEntry(`local-moved:${family}`, [
      { kind: 'rule', family, pref: this.localPref, fwmark: null, lookup: 'local' },
    ]);
    this.addEntry(`local-removed:${family}`, [{ kind: 'rule-removed', family, pref: 0, lookup: 'local' }]);
    this.addEntry(`rule:${family}`, [
      { kind: 'rule', family, pref: this.rulePref, fwmark: this.mark, lookup: this.table },
    ]);
    this.addEntry(`active:${family}`, []);
  }

  /** A device the kernel forwards into and out of, whose rewritten packets have local sources. */
  private deviceSysctls(dev: string): [path: string, value: string][] {
    return [
      [`net/ipv4/conf/${dev}/send_redirects`, '0'],
      // Rewritten packets come out of the device with a local source (the VIP, or a local client).
      [`net/ipv4/conf/${dev}/accept_local`, '1'],
      [`net/ipv4/conf/${dev}/rp_filter`, '0'],
    ];
  }

  private deviceRoute(family: Family, dev: string, table: number): HostChange {
    return { kind: 'route', family, blackhole: false, dst: 'default', dev, table, metric: null };
  }

  private failClosed(family: Family, table: number): HostChange {
    return {
      kind: 'route',
      family,
      blackhole: true,
      dst: 'default',
      dev: null,
      table,
      metric: FAIL_CLOSED_METRIC,
    };
  }

  /**
   * A fwmark service's packets (marked by the operator's own rules) go to its own device, through
   * a routing table of its own, so that the director learns the mark from the device.
   */
  private steerFwmark(key: string, family: Family, mark: number): void {
    const dev = fwmarkDeviceName(mark);
    const table = this.freeFwmarkTable(family);
    const changes = family === 4 ? this.sysctlChanges(this.deviceSysctls(dev)) : [];
    changes.push(this.failClosed(family, table), this.deviceRoute(family, dev, table), {
      kind: 'rule',
      family,
      pref: this.rulePref,
      fwmark: mark,
      lookup: table,
    });
    this.addEntry(key, changes);
  }

  private freeFwmarkTable(family: Family): number {
    const used = new Set(
      this.journal
        .filter((e) => e.key.startsWith(`fwmark:${family}:`))
        .flatMap((e) => e.changes.map((c) => (c.kind === 'route' ? c.table : null))),
    );
    const { first, count } = this.fwmarkTables;
    for (let table = first; table < first + count; table++) if (!used.has(table)) return table;
    throw new Error(`no free routing table for another IPv${family} fwmark service (${count} in use)`);
  }

  private nftRuleset(): string {
    const t = this.nftTable;
    const tun = JSON.stringify(this.tunName);
    const mark = `meta mark set ${this.mark} notrack`;
    // A direct flow as its replies see it: the real server's address, protocol and port, then the client's.
    // Every device of lvsd's: the main one and the fwmark services' (fwmarkDeviceName).
    const fwmarkDevices = '"lvsf*"';
    const devices = `{ ${tun}, ${fwmarkDevices} }`;
    const forward4 = 'ip daddr . meta l4proto . th dport . ip saddr . th sport';
    const forward6 = 'ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport';
    return [
      `table inet ${t} {`,
      '  set svc4 { type ipv4_addr . inet_proto . inet_service; }',
      '  set svc6 { type ipv6_addr . inet_proto . inet_service; }',
      '  set real4 { type ipv4_addr . inet_proto . inet_service; }',
      '  set real6 { type ipv6_addr . inet_proto . inet_service; }',
      '  set vip4 { type ipv4_addr; }',
      '  set vip6 { type ipv6_addr; }',
      '  set rip4 { type ipv4_addr; }',
      '  set rip6 { type ipv6_addr; }',
      // Flows that reach a real server's port directly through the director (an operator's curl
      // to its address, a monitoring probe), keyed as their replies are: those are not lvsd's.
      ...PASS_SETS.map(
        ([name, type]) => `  set ${name} { type ${type}; size ${PASS_FLOWS}; flags dynamic, timeout; }`,
      ),
      // Never jumped to: a rule using conntrack turns on the kernel's defragmentation, which a
      // datagram larger than the MTU needs to be steered whole by its port. Our own packets are
      // notracked before conntrack sees them.
      '  chain defragment {',
      '    ct state untracked counter',
      '  }',
      '  chain prerouting {',
      '    type filter hook prerouting priority raw; policy accept;',
      // What the director writes back is routed normally and never tracked or steered again. A
      // connection lvsd opens to a real server ends any direct flow remembered on its addresses
      // and ports (one that closed, its client port now reused): its replies are the director's.
      `    iifname ${devices} delete @pass4 { ${forward4} }`,
      `    iifname ${devices} delete @pass6 { ${forward6} }`,
      // What the director read off the wire and gave back as no connection of its own (--dataplane
      // packet): a real server's packet or ICMP error, maybe a direct flow's reply. Tracked, so
      // that `errors` lets it pass only as one (lvsd's own flows are never tracked).
      `    iifname ${tun} ip saddr . meta l4proto . th sport @real4 return`,
      `    iifname ${tun} ip6 saddr . meta l4proto . th sport @real6 return`,
      `    iifname ${tun} ip saddr @rip4 icmp type { ${ICMP4_ERRORS} } fib daddr type != local return`,
      `    iifname ${tun} ip6 saddr @rip6 icmpv6 type { ${ICMP6_ERRORS} } fib daddr type != local return`,
      `    iifname ${tun} notrack return`,
      `    iifname ${fwmarkDevices} return`,
      `    ip daddr . meta l4proto . th dport @svc4 ${mark}`,
      `    ip6 daddr . meta l4proto . th dport @svc6 ${mark}`,
      // A direct flow's replies pass untouched, tracked by conntrack as its requests are.
      `    ip saddr . meta l4proto . th sport . ip daddr . th dport @pass4 return`,
      `    ip6 saddr . meta l4proto . th sport . ip6 daddr . th dport @pass6 return`,
      // Real servers' replies go to the director, except those to the host's own connections
      // (a health check from the DIP): those are addressed to a local address that is no VIP.
      `    ip saddr . meta l4proto . th sport @real4 fib daddr type != local ${mark}`,
      `    ip saddr . meta l4proto . th sport @real4 ip daddr @vip4 ${mark}`,
      `    ip6 saddr . meta l4proto . th sport @real6 fib daddr type != local ${mark}`,
      `    ip6 saddr . meta l4proto . th sport @real6 ip6 daddr @vip6 ${mark}`,
      // ICMP errors to a VIP (path MTU for the replies, mostly) belong to the real server's flow.
      `    ip daddr @vip4 icmp type { ${ICMP4_ERRORS} } ${mark}`,
      `    ip6 daddr @vip6 icmpv6 type { ${ICMP6_ERRORS} } ${mark}`,
      // A request that reaches a real server's port directly (not from the device, not steered):
      // its flow is remembered briefly, and for longer once a second packet shows it is a flow,
      // so that a flood of one-packet flows ages out soon. When the set is full, the replies of a
      // new direct flow are steered and dropped: fail closed.
      ...(['4', '6'] as const).flatMap((f) => {
        const ip = f === '4' ? 'ip' : 'ip6';
        const key = f === '4' ? forward4 : forward6;
        return [
          `    meta mark != ${this.mark} ${key} @pass${f} update @pass${f} { ${key} timeout ${PASS_TIMEOUT} } return`,
          `    meta mark != ${this.mark} ${ip} daddr . meta l4proto . th dport @real${f} add @pass${f} { ${key} timeout ${PASS_NEW_TIMEOUT} }`,
        ];
      }),
      '  }',
      // After conntrack: a real server's ICMP error to a client (a UDP port unreachable, say)
      // belongs to lvsd's flow unless conntrack relates it to a direct one (lvsd's own flows are
      // never tracked). Conntrack creates no entry for an error it cannot relate, and notrack
      // still applies to a packet that has none, so a firewall's `ct state invalid drop` does not
      // see it.
      '  chain errors {',
      '    type filter hook prerouting priority mangle - 10; policy accept;',
      // A real server's packet the director gave back (above) leaves only as a direct flow's:
      // conntrack saw its request pass (or, for an error, relates it to one). A reply of lvsd's
      // (its connection lost, say after a crash) is new to conntrack and never leaves un-NATed.
      `    iifname ${tun} ip saddr . meta l4proto . th sport @real4 ct state != established drop`,
      `    iifname ${tun} ip6 saddr . meta l4proto . th sport @real6 ct state != established drop`,
      `    iifname ${tun} ip saddr @rip4 icmp type { ${ICMP4_ERRORS} } fib daddr type != local ct state != related drop`,
      `    iifname ${tun} ip6 saddr @rip6 icmpv6 type { ${ICMP6_ERRORS} } fib daddr type != local ct state != related drop`,
      // (Anything else lvsd gives back to the kernel comes out of its devices: never steered again.)
      `    iifname ${devices} return`,
      `    ip saddr @rip4 icmp type { ${ICMP4_ERRORS} } fib daddr type != local ct state != related ${mark}`,
      `    ip6 saddr @rip6 icmpv6 type { ${ICMP6_ERRORS} } fib daddr type != local ct state != related ${mark}`,
      '  }',
      '  chain output {',
      // Locally generated packets to a VIP (a client on the director): type route re-routes them.
      '    type route hook output priority raw; policy accept;',
      `    ip daddr . meta l4proto . th dport @svc4 ${mark}`,
      `    ip6 daddr . meta l4proto . th dport @svc6 ${mark}`,
      // The host's own errors to a VIP: its forwarding refusing a rewritten reply (too big for
      // the client's link) tells the reply's source, the VIP. Through lo they would keep the
      // local route they were given here: steered now, they reach the real server as path MTU.
      `    ip daddr @vip4 icmp type { ${ICMP4_ERRORS} } ${mark}`,
      `    ip6 daddr @vip6 icmpv6 type { ${ICMP6_ERRORS} } ${mark}`,
      '  }',
      '}',
    ].join('\n');
  }

  /**
   * The restart hold as one nft transaction: a table beside ours, hooked just before it, whose
   * sets hold what ours steers, each element dropped by the kernel holdMs after it was added (the
   * table itself stays, empty, until an lvsd starts). Null when nothing is steered.
   */
  private holdScript(holdMs: number): string | null {
    const marks = new Set(
      this.journal.filter((e) => e.key.startsWith('fwmark:')).map((e) => e.key.split(':')[2]!),
    );
    const sets: [name: string, type: string, elements: string[]][] = [
      ['svc4', 'ipv4_addr . inet_proto . inet_service', [...(this.elements.get('svc4') ?? [])]],
      ['svc6', 'ipv6_addr . inet_proto . inet_service', [...(this.elements.get('svc6') ?? [])]],
      ['real4', 'ipv4_addr . inet_proto . inet_service', [...(this.elements.get('real4') ?? [])]],
      ['real6', 'ipv6_addr . inet_proto . inet_service', [...(this.elements.get('real6') ?? [])]],
      ['marks', 'mark', [...marks]],
    ];
    if (sets.every(([, , elements]) => elements.length === 0)) return null;
    const timeout = `${Math.max(1, Math.ceil(holdMs / 1000))}s`;
    const hold = holdTableName(this.nftTable);
    const table = `inet ${hold}`;
    const lines = [
      `table ${table} {}`,
      `delete table ${table}`,
      `table ${table} {`,
      ...sets.map(([name, type]) => `  set ${name} { type ${type}; timeout ${timeout}; }`),
      // The direct flows our table remembers, each for the time it had left there: they are not
      // held, and the next lvsd's table takes them over.
      ...PASS_SETS.map(([name, type]) => `  set ${name} { type ${type}; flags timeout; }`),
      // Before our own raw chain, so that it holds the traffic while the next lvsd sets up.
      '  chain prerouting {',
      '    type filter hook prerouting priority raw - 10; policy accept;',
      '    ip daddr . meta l4proto . th dport @svc4 drop',
      '    ip6 daddr . meta l4proto . th dport @svc6 drop',
      '    ip saddr . meta l4proto . th sport . ip daddr . th dport @pass4 accept',
      '    ip6 saddr . meta l4proto . th sport . ip6 daddr . th dport @pass6 accept',
      // Real servers' replies to clients: forwarded un-NATed, the client would reset them.
      '    ip saddr . meta l4proto . th sport @real4 fib daddr type != local drop',
      '    ip6 saddr . meta l4proto . th sport @real6 fib daddr type != local drop',
      '  }',
      // The operator's own rules mark fwmark services' packets, in mangle.
      '  chain marked {',
      '    type filter hook prerouting priority mangle + 10; policy accept;',
      '    meta mark @marks drop',
      '  }',
      '  chain output {',
      '    type filter hook output priority raw - 10; policy accept;',
      '    ip daddr . meta l4proto . th dport @svc4 drop',
      '    ip6 daddr . meta l4proto . th dport @svc6 drop',
      '  }',
      '}',
    ];
    for (const [name, , elements] of sets) {
      if (elements.length > 0) lines.push(`add element ${table} ${name} { ${elements.join(', ')} }`);
    }
    lines.push(...this.passElements([this.nftTable], hold));
    return `${lines.join('\n')}\n`;
  }

  /**
   * `add element` lines that copy the direct flows remembered in the tables `from` into table
   * `to`, each once, with the time it has left; nothing from a table that is gone.
   */
  private passElements(from: readonly string[], to: string): string[] {
    return PASS_SETS.flatMap(([name]) => {
      const flows = new Map<string, number>();
      for (const table of from) {
        let listing: { nftables?: { set?: { elem?: { elem?: PassElement }[] } }[] };
        try {
          listing = JSON.parse(this.system.run(['nft', '-j', 'list', 'set', 'inet', table, name]));
        } catch {
          continue;
        }
        for (const { elem } of (listing.nftables ?? []).flatMap((object) => object.set?.elem ?? [])) {
          const parts = elem?.val?.concat;
          // The kernel's own listing, but it becomes nft input: only addresses, names and numbers.
          if (!Array.isArray(parts) || !parts.every((part) => /^[\w.:]+$/.test(String(part)))) continue;
          const flow = parts.join(' . ');
          if (!flows.has(flow)) flows.set(flow, Math.max(1, Math.floor(Number(elem?.expires) || 0)));
        }
      }
      if (flows.size === 0) return [];
      const elements = [...flows].map(([flow, seconds]) => `${flow} timeout ${seconds}s`);
      return [`add element inet ${to} ${name} { ${elements.join(', ')} }`];
    });
  }

  /**
   * One nft transaction that (re)creates our table whole with the elements in place: the first
   * time, and again when a firewall reload flushed it or part of it.
   */
  private nftScript(): string {
    const table = `inet ${this.nftTable}`;
    const lines = [`table ${table} {}`, `delete table ${table}`, this.nftRuleset()];
    for (const [name, set] of this.elements) {
      if (set.size > 0) lines.push(`add element ${table} ${name} { ${[...set].join(', ')} }`);
    }
    // The direct flows go on: those our table remembered (a repair recreates it) or, after a
    // restart, those the hold kept.
    const held = this.has(HOLD_KEY) ? [holdTableName(this.nftTable)] : [];
    lines.push(...this.passElements([this.nftTable, ...held], this.nftTable));
    return `${lines.join('\n')}\n`;
  }

  private syncSet(name: string, want: Set<string>): void {
    const have = this.elements.get(name) ?? new Set<string>();
    const added = [...want].filter((e) => !have.has(e));
    const removed = [...have].filter((e) => !want.has(e));
    const table = ['inet', this.nftTable, name];
    if (added.length > 0) this.system.run(['nft', 'add', 'element', ...table, `{ ${added.join(', ')} }`]);
    if (removed.length > 0)
      this.system.run(['nft', 'delete', 'element', ...table, `{ ${removed.join(', ')} }`]);
    this.elements.set(name, new Set(want));
  }

  /** Adds what `want` has and the journal lacks; undoes journaled keys with the prefix it lacks. */
  private syncKeyed<T>(prefix: string, want: Map<string, T>, apply: (key: string, value: T) => void): void {
    for (const [key, value] of want) if (!this.has(key)) apply(key, value);
    for (const entry of this.journal.filter((e) => e.key.startsWith(prefix) && !want.has(e.key))) {
      this.undoEntry(entry);
      this.forget(entry);
    }
  }

  /**
   * A VIP that is not a local address needs a route to the device (for its other ports) and
   * answers to ARP/ND on the interface facing the clients; a local VIP needs neither (its
   * entry stays empty, which is how isLocalVip knows it). A floating VIP is treated as local
   * whatever it is now: it is local on whichever director VRRP made master, and a backup that
   * answered ARP for it would draw the clients' traffic away from the master.
   */
  private steerVip(key: string, vip: Addr): void {
    const route = this.floatingVips ? null : this.routeGet(vip);
    if (route === null || route.type === 'local') {
      this.addEntry(key, []);
      return;
    }
    const dev = route.dev;
    if (vip.af === 6) this.setSysctl(`net/ipv6/conf/${dev}/proxy_ndp`, '1');
    this.addEntry(key, [
      {
        kind: 'route',
        family: vip.af,
        blackhole: false,
        dst: `${formatAddr(vip)}/${vip.af === 4 ? 32 : 128}`,
        dev: this.tunName,
        table: null,
        metric: null,
      },
      { kind: 'proxy-neigh', family: vip.af, addr: formatAddr(vip), dev },
    ]);
  }

  private isLocalVip(key: string): boolean {
    return this.journal.some((e) => e.key === key && e.changes.length === 0);
  }

  private routeGet(addr: Addr): { type: string; dev: string } | null {
    try {
      const out = this.system.run(['ip', `-${addr.af}`, '-j', 'route', 'get', formatAddr(addr)]);
      const [route] = JSON.parse(out) as { type?: string; dev: string }[];
      if (!route) return null;
      // Our journal must hold only what it can validate when read back.
      if (!isInterfaceName(route.dev)) throw new Error(`unexpected interface name ${route.dev}`);
      return { type: route.type ?? 'unicast', dev: route.dev };
    } catch {
      return null;
    }
  }

  private routeDevice(addr: Addr): string | null {
    const route = this.routeGet(addr);
    return route && route.type !== 'local' ? route.dev : null;
  }

  private has(key: string): boolean {
    return this.journal.some((e) => e.key === key);
  }

  private record(entry: JournalEntry): void {
    this.journal.push(entry);
    this.system.writeFile(this.journalPath, serializeJournal(this.journal));
  }

  private forget(entry: JournalEntry): void {
    this.journal = this.journal.filter((e) => e !== entry);
    this.system.writeFile(this.journalPath, serializeJournal(this.journal));
  }

  /**
   * Journals first, then changes: a crash in between leaves an undo that fails harmlessly.
   * When a change fails, the ones before it under the same key are undone.
   */
  private addEntry(key: string, changes: HostChange[]): void {
    if (this.has(key)) return;
    const entry: JournalEntry = { key, changes };
    this.record(entry);
    const done: HostChange[] = [];
    try {
      for (const change of changes) {
        this.apply(change);
        done.push(change);
      }
    } catch (error) {
      for (const change of done.reverse()) this.undoQuietly(change);
      this.forget(entry);
      throw error;
    }
  }

  private setSysctl(path: string, value: string): void {
    const key = `sysctl:${path}`;
    if (!this.has(key)) this.addEntry(key, this.sysctlChanges([[path, value]]));
  }

  /** The sysctls that differ from the values wanted, with the values found. */
  private sysctlChanges(wanted: [path: string, value: string][]): HostChange[] {
    const changes: HostChange[] = [];
    for (const [path, value] of wanted) {
      const previous = this.system.readFile(procPath(path));
      if (previous !== null && previous.trim() !== value)
        changes.push({ kind: 'sysctl', path, value, previous });
    }
    return changes;
  }

  private apply(change: HostChange): void {
    switch (change.kind) {
      case 'sysctl':
        this.system.writeFile(procPath(change.path), change.value);
        return;
      case 'nft-table':
        this.system.run(['nft', '-f', '-'], this.nftScript());
        this.nftShape = new HostListing(this.system, this.nftTable).nft();
        return;
      case 'nft-netdev':
        this.system.nftOwned(netdevScript(change.table, this.plan.interfaces, this.plan.spec));
        return;
      case 'rule-removed':
        this.system.run(this.argv(change, 'del'));
        return;
      default:
        this.system.run(this.argv(change, 'add'));
    }
  }

  private undo(change: HostChange): void {
    switch (change.kind) {
      case 'sysctl':
        this.system.writeFile(procPath(change.path), change.previous);
        return;
      case 'nft-table':
      case 'nft-hold':
        this.system.run(['nft', 'delete', 'table', 'inet', change.table]);
        return;
      case 'nft-netdev':
        // Only its owner may; after a crash the kernel removed it already.
        this.system.nftOwned(`delete table netdev ${change.table}\n`);
        return;
      case 'rule-removed':
        this.system.run(this.argv(change, 'add'));
        return;
      default:
        this.system.run(this.argv(change, 'del'));
    }
  }

  /** The ip command that adds or deletes a rule, route or proxy neighbour. */
  private argv(change: HostChange, verb: 'add' | 'del'): string[] {
    const ip = (family: Family, object: string) => ['ip', `-${family}`, object, verb];
    switch (change.kind) {
      case 'rule':
      case 'rule-removed': {
        const mark = change.kind === 'rule' && change.fwmark !== null ? ['fwmark', `${change.fwmark}`] : [];
        return [
          ...ip(change.family, 'rule'),
          'pref',
          `${change.pref}`,
          ...mark,
          'lookup',
          `${change.lookup}`,
        ];
      }
      case 'route':
        return [
          ...ip(change.family, 'route'),
          ...(change.blackhole ? ['blackhole'] : []),
          change.dst,
          ...(change.dev !== null ? ['dev', change.dev] : []),
          ...(change.table !== null ? ['table', `${change.table}`] : []),
          ...(change.metric !== null ? ['metric', `${change.metric}`] : []),
        ];
      case 'proxy-neigh':
        return [...ip(change.family, 'neigh'), 'proxy', change.addr, 'dev', change.dev];
      default:
        throw new Error(`no ip command for ${change.kind}`);
    }
  }

  /** Whether the kernel still has this change, as listed (sysctls are read as they are). */
  private inPlace(change: HostChange, listing: HostListing): boolean {
    switch (change.kind) {
      case 'sysctl':
        return this.system.readFile(procPath(change.path))?.trim() === change.value;
      case 'nft-table': {
        const now = listing.nft();
        if (now === null) return false;
        if (this.nftShape && (now.chains !== this.nftShape.chains || now.rules !== this.nftShape.rules))
          return false;
        return [...this.elements].every(([name, set]) => (now.sets.get(name) ?? 0) === set.size);
      }
      case 'rule':
      case 'rule-removed': {
        const mark = change.kind === 'rule' ? change.fwmark : null;
        const found = listing
          .rules(change.family)
          .some(
            (r) =>
              r.priority === change.pref &&
              r.table === `${change.lookup}` &&
              (r.fwmark === undefined ? mark === null : Number(r.fwmark) === mark),
          );
        return change.kind === 'rule' ? found : !found;
      }
      case 'route': {
        // The kernel lists a host route without its prefix length, and the main table unnamed.
        const dst = change.dst.replace(/\/(32|128)$/, '');
        const table = change.table === null ? 'main' : `${change.table}`;
        return listing
          .routes(change.family)
          .some(
            (r) =>
              r.dst === dst &&
              (r.table ?? 'main') === table &&
              (r.type ?? 'unicast') === (change.blackhole ? 'blackhole' : 'unicast') &&
              (change.blackhole || r.dev === change.dev) &&
              (change.metric === null || r.metric === change.metric),
          );
      }
      case 'proxy-neigh':
        return listing.proxies(change.family).some((n) => n.dst === change.addr && n.dev === change.dev);
      case 'nft-hold':
        // Never compared: its elements expire by design (changes() leaves it out).
        return true;
      case 'nft-netdev':
        try {
          this.system.run(['nft', 'list', 'table', 'netdev', change.table]);
          return true;
        } catch {
          return false;
        }
    }
  }

  private undoEntry(entry: JournalEntry): void {
    for (const change of [...entry.changes].reverse()) this.undoQuietly(change);
  }

  private undoQuietly(change: HostChange): void {
    try {
      this.undo(change);
    } catch {
      // Already gone: the device vanished with its routes (or its /proc entry), or a crash came
      // before the change.
    }
  }
}
