// The kernel plumbing that brings a service's traffic to the TUN device and takes it back out:
// sysctls, an nftables table of our own that marks only configured VIP/proto/port packets and
// the real servers' replies, and policy routing from that mark to the device.
//
// Every change is journaled in the state directory before it is made, so stop() undoes exactly
// what was added (sysctls restored to the values found) and the next start cleans up after a crash.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { formatAddr, IPPROTO_TCP, IPPROTO_UDP, type Addr, type Family } from '../core/inet.js';
import type { ServiceSnapshot } from '../core/ops.js';

/** What the WorkerEngine asks of the host. */
export interface HostSteering {
  /** Brings the kernel in line with these services (idempotent; a diff against what is in place). */
  sync(services: readonly ServiceSnapshot[]): void;
  /** Undoes every change, in reverse order. */
  stop(): void;
}

/** The privileged operations, behind an interface so the logic runs in tests without root. */
export interface System {
  /** Runs a command; throws with its stderr when it fails. */
  run(argv: readonly string[], input?: string): string;
  readFile(path: string): string | null;
  writeFile(path: string, data: string): void;
  removeFile(path: string): void;
}

export class RealSystem implements System {
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

type JournalEntry =
  /** A sysctl we changed, with the value to put back. */
  | { key: string; kind: 'sysctl'; path: string; previous: string }
  /** Something we added, with the commands that remove it (run in reverse order). */
  | { key: string; kind: 'added'; undo: string[][] };

export interface HostNetworkOptions {
  system: System;
  stateDir: string;
  tunName: string;
  /** Our nftables table, in family inet. */
  nftTable?: string;
  /** The packet mark our rules set and the routing table that mark selects. */
  mark?: number;
  table?: number;
  /** Priority of the fwmark rule; the local-table rule moves to localPref so the mark wins. */
  rulePref?: number;
  localPref?: number;
}

const JOURNAL = 'host-journal.json';

function sysctlPath(name: string): string {
  return `/proc/sys/${name.replaceAll('.', '/')}`;
}

function protocolName(protocol: number): string {
  return protocol === IPPROTO_TCP ? 'tcp' : protocol === IPPROTO_UDP ? 'udp' : 'sctp';
}

function ipCmd(family: Family): string[] {
  return family === 4 ? ['ip', '-4'] : ['ip', '-6'];
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
  fwmarks: Map<string, { family: Family; mark: number }>;
  /** Addresses whose outgoing interface must not send redirects. */
  peers: Map<string, Addr>;
}

export class HostNetwork implements HostSteering {
  private readonly system: System;
  private readonly journalPath: string;
  private readonly tunName: string;
  private readonly nftTable: string;
  private readonly mark: number;
  private readonly table: number;
  private readonly rulePref: number;
  private readonly localPref: number;
  private journal: JournalEntry[] = [];
  /** Set elements in place, by set name. */
  private readonly elements = new Map<string, Set<string>>();

  constructor(options: HostNetworkOptions) {
    this.system = options.system;
    this.journalPath = join(options.stateDir, JOURNAL);
    this.tunName = options.tunName;
    this.nftTable = options.nftTable ?? 'lvsd';
    this.mark = options.mark ?? 0x4c56;
    this.table = options.table ?? 0x4c56;
    this.rulePref = options.rulePref ?? 90;
    this.localPref = options.localPref ?? 100;
  }

  /** Undoes what a previous run left in its journal (it crashed or was killed). */
  recover(): number {
    const text = this.system.readFile(this.journalPath);
    if (text === null) return 0;
    let entries: JournalEntry[];
    try {
      entries = JSON.parse(text) as JournalEntry[];
    } catch {
      entries = [];
    }
    this.journal = entries;
    this.stop();
    return entries.length;
  }

  stop(): void {
    for (const entry of [...this.journal].reverse()) this.undo(entry);
    this.journal = [];
    this.elements.clear();
    this.system.removeFile(this.journalPath);
  }

  sync(services: readonly ServiceSnapshot[]): void {
    if (services.length === 0) {
      this.stop();
      return;
    }
    const desired = this.desired(services);
    for (const family of desired.families) this.activate(family);
    for (const [name, want] of desired.sets) this.syncSet(name, want);
    this.syncKeyed('vip:', desired.vips, (key, vip) => this.steerVip(key, vip));
    this.syncKeyed('fwmark:', desired.fwmarks, (key, { family, mark }) => {
      const rule = (verb: 'add' | 'del') => [
        ...ipCmd(family),
        ...['rule', verb, 'pref', `${this.rulePref}`, 'fwmark', `${mark}`, 'lookup', `${this.table}`],
      ];
      this.add(key, rule('add'), rule('del'));
    });
    for (const [, peer] of desired.peers) {
      const dev = this.routeDevice(peer);
      if (dev && dev !== this.tunName) this.setSysctl(`net.ipv4.conf.${dev}.send_redirects`, '0');
    }
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
      fwmarks: new Map(),
      peers: new Map(),
    };
    for (const { key, dests } of services) {
      d.families.add(key.af);
      if (key.fwmark > 0) {
        d.fwmarks.set(`fwmark:${key.af}:${key.fwmark}`, { family: key.af, mark: key.fwmark });
      } else {
        d.sets.get(`svc${key.af}`)!.add(element(key.addr, key.protocol, key.port));
        d.sets.get(`vip${key.af}`)!.add(formatAddr(key.addr));
        d.vips.set(`vip:${formatAddr(key.addr)}`, key.addr);
        if (key.af === 4) d.peers.set(formatAddr(key.addr), key.addr);
      }
      // A fwmark service carries any protocol: match its real servers' TCP and UDP replies.
      const protocols = key.fwmark > 0 ? [IPPROTO_TCP, IPPROTO_UDP] : [key.protocol];
      for (const dest of dests) {
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
      this.setSysctl('net.ipv4.ip_forward', '1');
      for (const dev of ['all', 'default', this.tunName])
        this.setSysctl(`net.ipv4.conf.${dev}.send_redirects`, '0');
      // Rewritten packets come out of the device with a local source (the VIP, or a local client).
      this.setSysctl(`net.ipv4.conf.${this.tunName}.accept_local`, '1');
      this.setSysctl(`net.ipv4.conf.${this.tunName}.rp_filter`, '0');
    } else {
      this.setSysctl('net.ipv6.conf.all.forwarding', '1');
    }
    if (!this.has('nft')) {
      this.add(
        'nft',
        ['nft', '-f', '-'],
        ['nft', 'delete', 'table', 'inet', this.nftTable],
        this.nftRuleset(),
      );
    }
    const ip = ipCmd(family);
    const route = ['route', 'add', 'default', 'dev', this.tunName, 'table', `${this.table}`];
    this.add(`route:${family}`, [...ip, ...route], [...ip, 'route', 'del', ...route.slice(2)]);
    // The local table is consulted at priority 0, before any rule we could add: move it after
    // ours so a marked packet to a VIP that is a local address still reaches the device. The
    // new local rule goes in before the old one leaves, so local delivery never lapses.
    const local = ['lookup', 'local'];
    this.add(
      `local-moved:${family}`,
      [...ip, 'rule', 'add', 'pref', `${this.localPref}`, ...local],
      [...ip, 'rule', 'del', 'pref', `${this.localPref}`, ...local],
    );
    this.add(
      `local-removed:${family}`,
      [...ip, 'rule', 'del', 'pref', '0', ...local],
      [...ip, 'rule', 'add', 'pref', '0', ...local],
    );
    const rule = ['pref', `${this.rulePref}`, 'fwmark', `${this.mark}`, 'lookup', `${this.table}`];
    this.add(`rule:${family}`, [...ip, 'rule', 'add', ...rule], [...ip, 'rule', 'del', ...rule]);
    this.record({ key: `active:${family}`, kind: 'added', undo: [] });
  }

  private nftRuleset(): string {
    const t = this.nftTable;
    const tun = JSON.stringify(this.tunName);
    const mark = `meta mark set ${this.mark} notrack`;
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
      // Never jumped to: a rule using conntrack turns on the kernel's defragmentation, which a
      // datagram larger than the MTU needs to be steered whole by its port. Our own packets are
      // notracked before conntrack sees them.
      '  chain defragment {',
      '    ct state untracked counter',
      '  }',
      '  chain prerouting {',
      '    type filter hook prerouting priority raw; policy accept;',
      // What the director writes back is routed normally and never tracked or steered again.
      `    iifname ${tun} notrack return`,
      `    ip daddr . meta l4proto . th dport @svc4 ${mark}`,
      `    ip6 daddr . meta l4proto . th dport @svc6 ${mark}`,
      // Real servers' replies go to the director, except those to the host's own connections
      // (a health check from the DIP): those are addressed to a local address that is no VIP.
      `    ip saddr . meta l4proto . th sport @real4 fib daddr type != local ${mark}`,
      `    ip saddr . meta l4proto . th sport @real4 ip daddr @vip4 ${mark}`,
      `    ip6 saddr . meta l4proto . th sport @real6 fib daddr type != local ${mark}`,
      `    ip6 saddr . meta l4proto . th sport @real6 ip6 daddr @vip6 ${mark}`,
      // ICMP errors to a VIP (path MTU for the replies, mostly) belong to the real server's flow.
      `    ip daddr @vip4 icmp type { destination-unreachable, time-exceeded, parameter-problem } ${mark}`,
      `    ip6 daddr @vip6 icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } ${mark}`,
      // ...and so do a real server's errors to a client (a UDP port unreachable, say).
      `    ip saddr @rip4 icmp type { destination-unreachable, time-exceeded, parameter-problem } fib daddr type != local ${mark}`,
      `    ip6 saddr @rip6 icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem } fib daddr type != local ${mark}`,
      '  }',
      '  chain output {',
      // Locally generated packets to a VIP (a client on the director): type route re-routes them.
      '    type route hook output priority raw; policy accept;',
      `    ip daddr . meta l4proto . th dport @svc4 ${mark}`,
      `    ip6 daddr . meta l4proto . th dport @svc6 ${mark}`,
      '  }',
      '}',
      '',
    ].join('\n');
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
      this.undo(entry);
      this.forget(entry);
    }
  }

  /**
   * A VIP that is not a local address needs a route to the device (for its other ports) and
   * answers to ARP/ND on the interface facing the clients; a local VIP needs neither.
   */
  private steerVip(key: string, vip: Addr): void {
    const route = this.routeGet(vip);
    if (route === null || route.type === 'local') {
      this.record({ key, kind: 'added', undo: [] });
      return;
    }
    const ip = ipCmd(vip.af);
    const host = `${formatAddr(vip)}/${vip.af === 4 ? 32 : 128}`;
    const dev = route.dev;
    if (vip.af === 6) this.setSysctl(`net.ipv6.conf.${dev}.proxy_ndp`, '1');
    const proxy = ['proxy', formatAddr(vip), 'dev', dev];
    this.addAll(key, [
      [
        [...ip, 'route', 'add', host, 'dev', this.tunName],
        [...ip, 'route', 'del', host, 'dev', this.tunName],
      ],
      [
        [...ip, 'neigh', 'add', ...proxy],
        [...ip, 'neigh', 'del', ...proxy],
      ],
    ]);
  }

  private routeGet(addr: Addr): { type: string; dev: string } | null {
    try {
      const out = this.system.run([...ipCmd(addr.af), '-j', 'route', 'get', formatAddr(addr)]);
      const [route] = JSON.parse(out) as { type?: string; dev: string }[];
      return route ? { type: route.type ?? 'unicast', dev: route.dev } : null;
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
    this.system.writeFile(this.journalPath, JSON.stringify(this.journal, null, 1));
  }

  private forget(entry: JournalEntry): void {
    this.journal = this.journal.filter((e) => e !== entry);
    this.system.writeFile(this.journalPath, JSON.stringify(this.journal, null, 1));
  }

  private add(key: string, argv: string[], undo: string[], input?: string): void {
    this.addAll(key, [[argv, undo]], input);
  }

  /**
   * Journals first, then changes: a crash in between leaves an undo that fails harmlessly.
   * When a change fails, the ones before it under the same key are undone.
   */
  private addAll(key: string, changes: [argv: string[], undo: string[]][], input?: string): void {
    if (this.has(key)) return;
    const entry: JournalEntry = { key, kind: 'added', undo: changes.map(([, undo]) => undo) };
    this.record(entry);
    try {
      for (const [argv] of changes) this.system.run(argv, input);
    } catch (error) {
      this.undo(entry);
      this.forget(entry);
      throw error;
    }
  }

  private setSysctl(name: string, value: string): void {
    const path = sysctlPath(name);
    const key = `sysctl:${name}`;
    if (this.has(key)) return;
    const previous = this.system.readFile(path);
    if (previous === null || previous.trim() === value) return;
    this.record({ key, kind: 'sysctl', path, previous });
    this.system.writeFile(path, value);
  }

  private undo(entry: JournalEntry): void {
    try {
      if (entry.kind === 'sysctl') this.system.writeFile(entry.path, entry.previous);
      else for (const argv of [...entry.undo].reverse()) this.runQuietly(argv);
    } catch {
      // A /proc entry of an interface that is gone.
    }
  }

  private runQuietly(argv: string[]): void {
    try {
      this.system.run(argv);
    } catch {
      // Already gone: the device vanished with its routes, or a crash came before the change.
    }
  }
}
