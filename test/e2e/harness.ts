// Shared by the e2e tests: a lab whose director namespace runs the real daemon (`lvsd`), driven
// and read with `lvsadm` exactly as an operator would, through its control socket.

import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLab, type Lab } from '../../src/lab/lab.js';
import { DEFAULT_DATAPLANE, type DataplaneKind } from '../../src/dataplane/forwarding.js';

export const isRoot = process.getuid?.() === 0;

/** A keepalived.conf checker of a real server's page `/` (status 200), failed after one attempt of 1 s. */
export const pageChecker = (kind: 'HTTP_GET' | 'SSL_GET'): string => `${kind} {
            url {
                path /
                status_code 200
            }
            connect_timeout 1
            retry 0
        }`;
export const ROOT_SKIP = isRoot ? false : 'needs root for network namespaces';

const LVSD = fileURLToPath(new URL('../../src/bin/lvsd.js', import.meta.url));
const LVSADM = fileURLToPath(new URL('../../src/bin/lvsadm.js', import.meta.url));
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

/**
 * The data plane the suites run on: LVSD_DATAPLANE=packet|tun (unset: lvsd's default), given to
 * every lvsd the harness starts with a data plane.
 */
export const DATAPLANE: DataplaneKind = dataplaneFromEnv(process.env.LVSD_DATAPLANE);

function dataplaneFromEnv(value: string | undefined): DataplaneKind {
  if (!value) return DEFAULT_DATAPLANE;
  if (value !== 'packet' && value !== 'tun') throw new Error(`LVSD_DATAPLANE=${value} is not packet or tun`);
  return value;
}

/**
 * Throws unless the lvsd behind `adm` (lvsadm's arguments to its output) runs the data plane
 * `plane` (null: any): a suite asked for one plane must not go on, silently, on another.
 */
export function checkDataplane(adm: (args: string) => string, plane: string | null): void {
  if (plane === null) return;
  const { dataPath } = JSON.parse(adm('-L --json')) as { dataPath: { plane?: string } };
  if (dataPath.plane !== plane)
    throw new Error(`lvsd was asked for --dataplane ${plane} and runs ${dataPath.plane ?? 'none'}`);
}

/** The options that put an lvsd started with `args` on DATAPLANE (none when args choose already). */
export function dataplaneArgs(args: readonly string[] = []): string[] {
  return !args.includes('--no-dataplane') && !args.includes('--dataplane') ? ['--dataplane', DATAPLANE] : [];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One line of `-Ln` / `-Ln --stats`: the first column, then the rest split on blanks. */
export interface Row {
  key: string;
  fields: string[];
}

export interface ServiceRows extends Row {
  dests: Row[];
}

/** Splits ipvsadm's service listings into services (key "TCP 198.18.0.1:80") and their real servers. */
export function parseServices(output: string): ServiceRows[] {
  const services: ServiceRows[] = [];
  for (const line of output.split('\n')) {
    const service = /^(TCP|UDP|SCTP|FWM)\s+(\S+)\s*(.*)$/.exec(line);
    const dest = /^\s+->\s+(\S+)\s*(.*)$/.exec(line);
    if (service) {
      services.push({ key: `${service[1]} ${service[2]}`, fields: words(service[3]!), dests: [] });
    } else if (dest && dest[1] !== 'RemoteAddress:Port') {
      services.at(-1)!.dests.push({ key: dest[1]!, fields: words(dest[2]!) });
    }
  }
  return services;
}

const words = (text: string): string[] => text.split(/\s+/).filter(Boolean);

export interface DestList {
  dest: string;
  forward: string;
  weight: number;
  activeConns: number;
  inactConns: number;
}

export interface ServiceList {
  service: string;
  /** Scheduler and flags, e.g. "rr persistent 60". */
  flags: string;
  dests: DestList[];
}

export interface Counters {
  conns: number;
  inPkts: number;
  outPkts: number;
  inBytes: number;
  outBytes: number;
}

export interface ServiceStats extends Counters {
  service: string;
  dests: Map<string, Counters>;
}

/** One row of `-Lnc`. */
export interface ConnRow {
  proto: string;
  expire: string;
  state: string;
  source: string;
  virtual: string;
  destination: string;
}

function counters(fields: string[]): Counters {
  const [conns, inPkts, outPkts, inBytes, outBytes] = fields.map(Number) as [
    number,
    number,
    number,
    number,
    number,
  ];
  return { conns, inPkts, outPkts, inBytes, outBytes };
}

/** Where an lvsd runs: a namespace, and a directory for its socket, state and log. */
export interface LvsdSite {
  ns: string;
  dir: string;
  /** A command lvsd runs under (setpriv with capabilities, say): its argv before node's. */
  launcher?: readonly string[];
}

/** lvsd running in the lab's director namespace (or another namespace of the lab's). */
export class Lvsd {
  readonly socket: string;
  readonly stateDir: string;
  readonly logPath: string;
  private readonly ns: string;
  /** The data plane it was asked to run on; null for lvsd's default, or none. */
  private readonly plane: string | null;
  private readonly child: ChildProcess;
  private readonly exited: Promise<unknown>;

  /** `args`: more lvsd options (--conn-capacity 2000, say); `site`: where it runs, for labs with two directors. */
  constructor(
    lab: Lab,
    args: readonly string[] = [],
    site: LvsdSite = { ns: lab.ns.director, dir: lab.tmpDir },
  ) {
    this.ns = site.ns;
    const chosen = [...dataplaneArgs(args), ...args];
    const at = chosen.indexOf('--dataplane');
    this.plane = at >= 0 && !chosen.includes('--no-dataplane') ? chosen[at + 1]! : null;
    mkdirSync(site.dir, { recursive: true });
    this.socket = join(site.dir, 'lvsd.sock');
    this.stateDir = join(site.dir, 'state');
    this.logPath = join(site.dir, 'lvsd.log');
    // A restart in the same lab reuses the state directory, as a restarted daemon does.
    mkdirSync(this.stateDir, { recursive: true });
    const log = openSync(this.logPath, 'a');
    // `ip netns exec` execs lvsd: signals to this pid reach the daemon itself.
    this.child = lab.spawn(
      site.ns,
      [
        ...(site.launcher ?? []),
        process.execPath,
        LVSD,
        '--socket',
        this.socket,
        '--state-dir',
        this.stateDir,
        ...dataplaneArgs(args),
        ...args,
      ],
      { stdio: ['ignore', log, log] },
    );
    this.exited = once(this.child, 'exit');
  }

  get log(): string {
    return readFileSync(this.logPath, 'utf8');
  }

  get closed(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Resolves once the log has a line matching `pattern` (bounded); the log as read then. */
  async logged(pattern: RegExp, timeoutMs = 5000): Promise<string> {
    for (const end = Date.now() + timeoutMs; !pattern.test(this.log) && Date.now() < end;) await sleep(50);
    return this.log;
  }

  /** Resolves once the control socket exists (the daemon listens only after the data plane is up). */
  async ready(): Promise<void> {
    for (const end = Date.now() + START_TIMEOUT_MS; Date.now() < end;) {
      if (this.closed) throw new Error(`lvsd exited (${this.child.exitCode}):\n${this.log}`);
      if (existsSync(this.socket)) return checkDataplane((command) => this.adm(command), this.plane);
      await sleep(50);
    }
    throw new Error(`lvsd did not open ${this.socket}:\n${this.log}`);
  }

  /** One lvsadm command, e.g. adm('-A -t 198.18.0.1:80 -s rr'); throws unless it exits 0 silently on stderr. */
  adm(args: string): string {
    const argv = [process.execPath, LVSADM, '--socket', this.socket, ...words(args)];
    const result = spawnSync('ip', ['netns', 'exec', this.ns, ...argv], {
      encoding: 'utf8',
      timeout: 15_000,
    });
    if (result.status !== 0 || result.stderr !== '') {
      throw new Error(`lvsadm ${args}: exit ${result.status ?? result.signal}, stderr: ${result.stderr}`);
    }
    return result.stdout;
  }

  /** `-Ln`. */
  list(): ServiceList[] {
    return parseServices(this.adm('-Ln')).map((svc) => ({
      service: svc.key,
      flags: svc.fields.join(' '),
      dests: svc.dests.map(({ key, fields: [forward, weight, active, inact] }) => ({
        dest: key,
        forward: forward!,
        weight: Number(weight),
        activeConns: Number(active),
        inactConns: Number(inact),
      })),
    }));
  }

  /** `-Ln --stats --exact`. */
  stats(): ServiceStats[] {
    return parseServices(this.adm('-Ln --stats --exact')).map((svc) => ({
      service: svc.key,
      ...counters(svc.fields),
      dests: new Map(svc.dests.map((d) => [d.key, counters(d.fields)])),
    }));
  }

  /** `-Lnc`. */
  connections(): ConnRow[] {
    const rows = this.adm('-Lnc').split('\n').slice(2).filter(Boolean);
    return rows.map((line) => {
      const [proto, expire, state, source, virtual, destination] = words(line) as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      return { proto, expire, state, source, virtual, destination };
    });
  }

  /** `-L --json`. */
  json(): { services: Array<{ address: string; port: number; persistent: { timeout: number } | null }> } {
    return JSON.parse(this.adm('-L --json')) as ReturnType<Lvsd['json']>;
  }

  /** SIGTERM, as an operator stops it; resolves to the exit code once it has exited. */
  async stop(): Promise<number | null> {
    if (!this.closed) {
      this.child.kill('SIGTERM');
      const timedOut = sleep(STOP_TIMEOUT_MS).then(() => {
        throw new Error(`lvsd did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM:\n${this.log}`);
      });
      await Promise.race([this.exited, timedOut]);
    }
    return this.child.exitCode;
  }

  kill(): void {
    if (!this.closed) this.child.kill('SIGKILL');
  }

  /** SIGHUP, as an operator asks for a reload. */
  reload(): void {
    this.child.kill('SIGHUP');
  }

  /** SIGSTOP or SIGCONT: lvsd stalls as a starved or swapped-out process would. */
  signal(signal: 'SIGSTOP' | 'SIGCONT'): void {
    this.child.kill(signal);
  }

  /** Resolves to the exit code once lvsd has exited by itself; rejects after `timeoutMs`. */
  async exitCode(timeoutMs: number): Promise<number | null> {
    const timedOut = sleep(timeoutMs).then(() => {
      throw new Error(`lvsd still running after ${timeoutMs} ms:\n${this.log}`);
    });
    await Promise.race([this.exited, timedOut]);
    return this.child.exitCode;
  }
}

/** nft counters by comment, from a table the test made in a namespace. */
export function nftCounters(lab: Lab, ns: string, table: string): Map<string, number> {
  const listing = JSON.parse(lab.run(ns, ['nft', '-j', 'list', 'table', 'inet', table])) as {
    nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[];
  };
  const found = new Map<string, number>();
  for (const { rule } of listing.nftables) {
    const counter = rule?.expr.find((e) => e.counter)?.counter;
    if (rule?.comment && counter) found.set(rule.comment, counter.packets);
  }
  return found;
}

/**
 * A Python program for the client that sends one datagram on a UDP socket connected to host:port
 * and prints what followed: "answered", "refused" or "timeout". A connected socket hears
 * ECONNREFUSED only from an ICMP error quoting its own flow: through the director, one whose
 * source and quoted packet were rewritten back to the VIP.
 */
export function udpProbe(host: string, port: number): string {
  return [
    'import socket',
    `s = socket.socket(socket.${host.includes(':') ? 'AF_INET6' : 'AF_INET'}, socket.SOCK_DGRAM)`,
    's.settimeout(3)',
    `s.connect(('${host}', ${port}))`,
    "s.send(b'anyone?')",
    'try:',
    '    s.recv(64)',
    "    print('answered')",
    'except ConnectionRefusedError:',
    "    print('refused')",
    'except socket.timeout:',
    "    print('timeout')",
  ].join('\n');
}

/** What lvsd may change in the director namespace, as text to compare before and after. */
export function hostState(lab: Lab): string {
  const script = [
    'ip -4 rule',
    'ip -6 rule',
    'ip -4 route show table all',
    // IPv6 link-local and multicast routes come and go with address autoconfiguration.
    "ip -6 route show table all | grep -vE 'fe80::|ff00::'",
    'ip neigh show proxy',
    'nft list ruleset',
    // IPv6's forwarding is per interface, all.forwarding sets every one of them.
    "sysctl -a 2>/dev/null | grep -E 'ip_forward|\\.forwarding|send_redirects|accept_local|rp_filter|proxy_ndp|early_demux'",
  ].join('; ');
  return lab.run(lab.ns.director, ['sh', '-c', script]);
}

export interface Setup {
  lab: Lab;
  /** hostState() before lvsd started. */
  stateBefore: string;
  director: Lvsd;
  /** curl from the client; returns the body. */
  curl(url: string, extra?: string[]): string;
  teardown(): Promise<void>;
}

export interface SetupOptions {
  bulkFileMb?: number;
  /** Namespace prefix (default lvse2e). */
  prefix?: string;
  /** How many real servers (default 2). */
  realServers?: number;
  /** More of lvsd's command line, given the lab (to write a file into lab.tmpDir first). */
  lvsdArgs?: (lab: Lab) => string[];
  /** A dual-stack lab (lab.addr6). */
  ipv6?: boolean;
}

export async function setupLab(options: SetupOptions = {}): Promise<Setup> {
  const lab = buildLab({
    prefix: options.prefix ?? 'lvse2e',
    bulkFileMb: options.bulkFileMb ?? 0,
    realServers: options.realServers ?? 2,
    ipv6: options.ipv6 ?? false,
  });
  let director: Lvsd | undefined;
  const teardown = async (): Promise<void> => {
    try {
      await director?.stop();
    } finally {
      director?.kill();
      lab.teardown();
    }
  };
  try {
    const stateBefore = hostState(lab);
    director = new Lvsd(lab, options.lvsdArgs?.(lab) ?? []);
    await director.ready();
    return {
      lab,
      stateBefore,
      director,
      curl: (url, extra = []) => lab.run(lab.ns.client, ['curl', '-sS', '--max-time', '10', ...extra, url]),
      teardown,
    };
  } catch (error) {
    await teardown().catch(() => undefined);
    throw error;
  }
}
