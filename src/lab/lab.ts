// A network-namespace lab for the demo, the end-to-end tests and the benchmark:
//
//   client 198.18.0.2 --- pub0 198.18.0.1 [director] br0 198.18.1.1 --- rs1 198.18.1.11, rs2 198.18.1.12
//
// With `ipv6`, every host is dual-stack, the same shape in 2001:db8::/32:
//
//   client 2001:db8::2 --- pub0 2001:db8::1 [director] br0 2001:db8:1::1 --- rs1 2001:db8:1::11, ...
//
// buildTunnelLab builds LVS-TUN's site instead: a router in front, the director and the real
// servers on one LAN behind it, the VIP on each real server's tunl0 and gre0 (see there);
// buildDirectRoutingLab the same site for LVS-DR, the VIP on lo, dual-stack with `ipv6`.
//
// Each real server runs nginx answering "This is Real Server N, you are <client>". Namespaces
// are named <prefix><pid>-<role>, so leftovers of a dead run can be recognised and removed.

import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface LabOptions {
  /** Namespace name prefix; the pid follows it. */
  prefix?: string;
  realServers?: number;
  /** Size of /files/bulk.bin on every real server, in MB; 0 for none. */
  bulkFileMb?: number;
  /** Dual-stack: IPv6 addresses and routes beside the IPv4 ones, nginx listening on [::]:80 too. */
  ipv6?: boolean;
}

/** A lab's addresses in one family. */
export interface LabAddresses {
  client: string;
  vip: string;
  dip: string;
  realServers: string[];
}

export interface Lab {
  readonly prefix: string;
  /** `router` in a tunnel lab only. */
  readonly ns: { client: string; director: string; realServers: string[]; router?: string };
  readonly addr: LabAddresses;
  /** The IPv6 addresses, in a lab built with `ipv6`. */
  readonly addr6?: LabAddresses;
  /** Director interfaces: towards the client and towards the real servers. */
  readonly dev: { public: string; internal: string };
  readonly tmpDir: string;
  /** Path of the bulk file served as /files/bulk.bin, when one was made. */
  readonly bulkFile: string | null;
  /** Runs a command in a namespace; returns its stdout, throws with its stderr on failure. */
  run(ns: string, argv: readonly string[], options?: { input?: string | Buffer; timeoutMs?: number }): string;
  spawn(ns: string, argv: readonly string[], options?: SpawnOptions): ChildProcess;
  /** The access log of real server i (0-based): one "<client address> <uri> <status>" line per request. */
  accessLog(i: number): string[];
  teardown(): void;
}

/** Runs a command; returns its stdout, throws with its stderr on failure. */
export function sh(argv: readonly string[], input?: string | Buffer, timeoutMs = 30_000): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), {
      input,
      encoding: 'utf8',
      stdio: 'pipe',
      timeout: timeoutMs,
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`${argv.join(' ')}: ${stderr || (error as Error).message}`, { cause: error });
  }
}

/** The argv that runs `argv` in namespace `ns`. */
export function nsExec(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills what runs in a namespace, then deletes it. */
export function removeNamespace(ns: string): void {
  const pids = sh(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  sh(['ip', 'netns', 'del', ns]);
}

/** Removes the namespaces made (last first, emptying the list), then the lab's directory. */
export function removeLab(created: string[], tmpDir: string): void {
  for (const name of created.splice(0).reverse()) {
    try {
      removeNamespace(name);
    } catch {
      // Keep tearing down the rest.
    }
  }
  rmSync(tmpDir, { recursive: true, force: true });
}

/** Polls `probe` every 100 ms until it returns a value, for at most `timeoutMs`. */
export async function until<T>(what: string, probe: () => T | undefined, timeoutMs: number): Promise<T> {
  let last: unknown;
  for (const end = Date.now() + timeoutMs; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
    try {
      const value = probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${(last as Error).message})` : ''}`);
}

/** Removes namespaces of earlier runs with this prefix whose process is dead; returns their names. */
export function cleanupStaleLabs(prefix: string): string[] {
  const pattern = new RegExp(`^${prefix.replace(/[^\w-]/g, '\\$&')}(\\d+)-`);
  const removed: string[] = [];
  for (const line of sh(['ip', 'netns', 'list']).split('\n')) {
    const name = line.split(' ')[0]!;
    const m = pattern.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    try {
      removeNamespace(name);
      removed.push(name);
    } catch {
      // Another cleaner got it first.
    }
  }
  return removed;
}

/**
 * An nginx in `dir` answering "This is <name>, you are <client>" on `listen` (one address or
 * several; and /files/ from dir/www); `moreServers`: further `server { ... }` blocks of the http
 * section (a TLS one, say).
 */
export function nginxConfig(
  dir: string,
  name: string,
  listen: string | readonly string[] = '80',
  moreServers = '',
): string {
  const listens = (typeof listen === 'string' ? [listen] : listen)
    .map((address) => `    listen ${address} backlog=8192;`)
    .join('\n');
  return `worker_processes 1;
user root;
daemon on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 8192; }
http {
  log_format addr '$remote_addr $request_uri $status';
  access_log ${dir}/access.log addr;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 100000;
  server {
${listens}
    location = / {
      default_type text/plain;
      return 200 "This is ${name}, you are $remote_addr\\n";
    }
    location /files/ {
      alias ${dir}/www/;
    }
    # The same files at 2 MB/s, paced by the server: a client that reads at once sends nothing
    # between the server's bursts.
    location /slow/ {
      alias ${dir}/www/;
      limit_rate 2m;
    }
  }
${moreServers}}
`;
}

/** The command that starts the nginx configured in `dir`; it daemonizes, its pid in dir/nginx.pid. */
/**
 * The kernel's own equivalent of LVS-NAT, for labs that compare with it: an nftables table that
 * DNATs `vip` (each of `rules`, "tcp dport 80" say) round robin over the real servers.
 */
export function kernelNatRuleset(
  table: string,
  vip: string,
  realServers: readonly string[],
  rules: readonly string[],
): string {
  const map = `{ ${realServers.map((rs, i) => `${i} : ${rs}`).join(', ')} }`;
  const pick = `numgen inc mod ${realServers.length} map ${map}`;
  return `table ip ${table} {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
${rules.map((rule) => `    ip daddr ${vip} ${rule} dnat to ${pick}\n`).join('')}  }
}
`;
}

export function nginxCommand(dir: string): string[] {
  return ['nginx', '-c', join(dir, 'nginx.conf'), '-p', dir, '-e', join(dir, 'error.log')];
}

/** A veth from `host`'s `dev` (address `gateway`/24) to the client's eth0, the client's default route through it. */
function wireClient(host: string, dev: string, gateway: string, client: string, clientAddr: string): void {
  sh(['ip', '-n', host, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client]);
  sh(['ip', '-n', host, 'addr', 'add', `${gateway}/24`, 'dev', dev]);
  sh(['ip', '-n', host, 'link', 'set', dev, 'up']);
  sh(['ip', '-n', client, 'addr', 'add', `${clientAddr}/24`, 'dev', 'eth0']);
  sh(['ip', '-n', client, 'link', 'set', 'eth0', 'up']);
  sh(['ip', '-n', client, 'route', 'add', 'default', 'via', gateway]);
}

/**
 * An IPv6 address (/64) on `dev` in `host`, usable at once: a lab's addresses are unique by
 * construction, and duplicate address detection would hold each one tentative for a second or more.
 */
function addAddress6(host: string, dev: string, address: string): void {
  sh(['ip', '-n', host, 'addr', 'add', `${address}/64`, 'dev', dev, 'nodad']);
}

/** A bridge in `host` with the address `address`/24, up. */
function addBridge(host: string, name: string, address: string): void {
  sh(['ip', '-n', host, 'link', 'add', name, 'type', 'bridge']);
  sh(['ip', '-n', host, 'addr', 'add', `${address}/24`, 'dev', name]);
  sh(['ip', '-n', host, 'link', 'set', name, 'up']);
}

/** A lab's temporary directory and its namespaces (loopback up in each), with the teardown removing both. */
function makeNamespaces(base: string, names: readonly string[]): { tmpDir: string; teardown: () => void } {
  const tmpDir = mkdtempSync(join(tmpdir(), `${base}-`));
  chmodSync(tmpDir, 0o755);
  const created: string[] = [];
  const teardown = (): void => removeLab(created, tmpDir);
  try {
    for (const name of names) {
      sh(['ip', 'netns', 'add', name]);
      created.push(name);
      sh(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    }
  } catch (error) {
    teardown();
    throw error;
  }
  return { tmpDir, teardown };
}

export function buildLab(options: LabOptions = {}): Lab {
  const prefix = options.prefix ?? 'lvslab';
  cleanupStaleLabs(prefix);
  const base = `${prefix}${process.pid}`;
  const count = options.realServers ?? 2;
  const ns = {
    client: `${base}-client`,
    director: `${base}-director`,
    realServers: Array.from({ length: count }, (_, i) => `${base}-rs${i + 1}`),
  };
  const addr = {
    client: '198.18.0.2',
    vip: '198.18.0.1',
    dip: '198.18.1.1',
    realServers: Array.from({ length: count }, (_, i) => `198.18.1.${11 + i}`),
  };
  const addr6: LabAddresses | undefined = options.ipv6
    ? {
        client: '2001:db8::2',
        vip: '2001:db8::1',
        dip: '2001:db8:1::1',
        realServers: Array.from({ length: count }, (_, i) => `2001:db8:1::${11 + i}`),
      }
    : undefined;
  const { tmpDir, teardown } = makeNamespaces(base, [ns.client, ns.director, ...ns.realServers]);
  let bulkFile: string | null = null;

  try {
    const d = ns.director;
    wireClient(d, 'pub0', addr.vip, ns.client, addr.client);
    addBridge(d, 'br0', addr.dip);
    if (addr6) {
      addAddress6(d, 'pub0', addr6.vip);
      addAddress6(d, 'br0', addr6.dip);
      addAddress6(ns.client, 'eth0', addr6.client);
      sh(['ip', '-n', ns.client, '-6', 'route', 'add', 'default', 'via', addr6.vip]);
    }
    if (options.bulkFileMb) {
      bulkFile = join(tmpDir, 'bulk.bin');
      execFileSync('sh', ['-c', `head -c ${options.bulkFileMb * 1024 * 1024} /dev/urandom > ${bulkFile}`]);
    }
    ns.realServers.forEach((rs, i) => {
      const port = `rs${i + 1}`;
      sh(['ip', '-n', d, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', rs]);
      sh(['ip', '-n', d, 'link', 'set', port, 'master', 'br0', 'up']);
      sh(['ip', '-n', rs, 'addr', 'add', `${addr.realServers[i]}/24`, 'dev', 'eth0']);
      sh(['ip', '-n', rs, 'link', 'set', 'eth0', 'up']);
      sh(['ip', '-n', rs, 'route', 'add', 'default', 'via', addr.dip]);
      if (addr6) {
        addAddress6(rs, 'eth0', addr6.realServers[i]!);
        sh(['ip', '-n', rs, '-6', 'route', 'add', 'default', 'via', addr6.dip]);
      }
      const dir = join(tmpDir, `rs${i + 1}`);
      mkdirSync(join(dir, 'www'), { recursive: true });
      if (bulkFile) copyFileSync(bulkFile, join(dir, 'www', 'bulk.bin'));
      const listen = addr6 ? ['80', '[::]:80'] : '80';
      writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, `Real Server ${i + 1}`, listen));
      sh(nsExec(rs, nginxCommand(dir)));
    });
  } catch (error) {
    teardown();
    throw error;
  }

  return labHandle(
    prefix,
    ns,
    { addr, addr6 },
    { public: 'pub0', internal: 'br0' },
    tmpDir,
    bulkFile,
    teardown,
  );
}

function labHandle(
  prefix: string,
  ns: Lab['ns'],
  { addr, addr6 }: Pick<Lab, 'addr' | 'addr6'>,
  dev: Lab['dev'],
  tmpDir: string,
  bulkFile: string | null,
  teardown: () => void,
): Lab {
  return {
    prefix,
    ns,
    addr,
    ...(addr6 ? { addr6 } : {}),
    dev,
    tmpDir,
    bulkFile,
    run: (name, argv, opts) => sh(nsExec(name, argv), opts?.input, opts?.timeoutMs),
    spawn: (name, argv, opts) => spawn('ip', nsExec(name, argv).slice(1), opts ?? { stdio: 'ignore' }),
    accessLog: (i) => {
      try {
        return readFileSync(join(tmpDir, `rs${i + 1}`, 'access.log'), 'utf8')
          .split('\n')
          .filter(Boolean);
      } catch {
        return [];
      }
    },
    teardown,
  };
}

export interface RoutedLabOptions {
  prefix?: string;
  bulkFileMb?: number;
  /**
   * Seed 000's director: the VIP is the director's own address (on its eth0), and the real servers'
   * default gateway is the director (DIP), so that their replies, from the VIP, cross it.
   */
  vipOnDirector?: boolean;
}

/** A kernel driver a tunnel lab's real servers decapsulate with. */
export type TunnelDriver = 'ipip' | 'gre' | 'fou';

export interface TunnelLabOptions extends RoutedLabOptions {
  /** The UDP port every real server takes GUE on (`ip fou add port N gue`). */
  guePort: number;
  /**
   * Stands in, in a real server's namespace, for the tunnel drivers the kernel lacks: it must make
   * tunl0 for ipip (into which fou's GUE also goes) and gre0 for gre, and take GUE on guePort;
   * the lab then puts the VIP on those devices and sets them up as with the kernel's.
   */
  driverFallback(ns: string, missing: TunnelDriver[]): Promise<void>;
}

/**
 * LVS-TUN as operators build it:
 *
 *   client 198.18.0.2 --- 198.18.0.254 [router] 198.18.1.254 --- LAN: director 198.18.1.1 (DIP),
 *                                                                     rs1 198.18.1.11, rs2 198.18.1.12
 *
 * The router sends the VIP 198.18.2.1 to the director; everyone's default gateway is the router.
 * Each real server decapsulates ipip on tunl0 (the kernel's fallback IPIP device), gre on gre0
 * (the fallback GRE device) and GUE with `ip fou add port N gue` (into tunl0), holds the VIP on
 * tunl0 and gre0, answers ARP only for its own addresses (arp_ignore=1, arp_announce=2), accepts
 * on them packets whose source it routes elsewhere (rp_filter=0), and answers the client through
 * the router: the director sees only the client's side. nginx on each also takes PUT /upload/
 * (WebDAV), to check uploads.
 */
export function buildTunnelLab(options: TunnelLabOptions): Promise<Lab> {
  return buildRoutedLab(options, async (rs) => {
    const missing: TunnelDriver[] = [];
    // With ipip and ip_gre in the kernel every namespace has tunl0 and gre0.
    for (const [driver, device] of [
      ['ipip', 'tunl0'],
      ['gre', 'gre0'],
    ] as const) {
      try {
        sh(['ip', '-n', rs, 'link', 'show', device]);
      } catch {
        missing.push(driver);
      }
    }
    try {
      sh(nsExec(rs, ['ip', 'fou', 'add', 'port', String(options.guePort), 'gue']));
    } catch {
      missing.push('fou');
    }
    if (missing.length > 0) await options.driverFallback(rs, missing);
    return ['tunl0', 'gre0'];
  });
}

export interface DirectRoutingLabOptions extends RoutedLabOptions {
  /**
   * Dual-stack, the same shape in 2001:db8::/32 (the VIP 2001:db8:2::1 on each real server's lo,
   * nginx listening on [::]:80 too). Nothing replaces arp_ignore/arp_announce for it: Linux answers
   * a neighbour solicitation only for an address of the interface it came in on, and solicits
   * from one of that interface's own, so the VIP on lo stays unannounced as it is.
   */
  ipv6?: boolean;
}

/**
 * LVS-DR as operators build it: buildTunnelLab's network, each real server holding the VIP on
 * lo (arp_ignore=1, arp_announce=2: it neither answers ARP for the VIP nor uses it as an ARP
 * source) and answering the client through the router, not through the director. The director
 * and the real servers share the LAN: direct routing only changes the link-layer destination.
 */
export function buildDirectRoutingLab(options: DirectRoutingLabOptions): Promise<Lab> {
  return buildRoutedLab(options, async () => ['lo'], options.ipv6 ?? false);
}

/**
 * The router-in-front lab shared by LVS-TUN and LVS-DR; `vipDevices` readies, in a real server's
 * namespace, the devices that will hold the VIP, and names them.
 */
async function buildRoutedLab(
  options: RoutedLabOptions,
  vipDevices: (rs: string) => Promise<string[]>,
  ipv6 = false,
): Promise<Lab> {
  const prefix = options.prefix ?? 'lvslab';
  cleanupStaleLabs(prefix);
  const base = `${prefix}${process.pid}`;
  const ns = {
    client: `${base}-client`,
    router: `${base}-router`,
    director: `${base}-director`,
    realServers: [`${base}-rs1`, `${base}-rs2`],
  };
  const addr = {
    client: '198.18.0.2',
    vip: '198.18.2.1',
    dip: '198.18.1.1',
    realServers: ['198.18.1.11', '198.18.1.12'],
  };
  const router = { client: '198.18.0.254', lan: '198.18.1.254' };
  const addr6: LabAddresses | undefined = ipv6
    ? {
        client: '2001:db8::2',
        vip: '2001:db8:2::1',
        dip: '2001:db8:1::1',
        realServers: ['2001:db8:1::11', '2001:db8:1::12'],
      }
    : undefined;
  const router6 = { client: '2001:db8::254', lan: '2001:db8:1::254' };
  const { tmpDir, teardown } = makeNamespaces(base, [ns.client, ns.router, ns.director, ...ns.realServers]);
  let bulkFile: string | null = null;
  try {
    const r = ns.router;
    sh(['ip', 'netns', 'exec', r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    wireClient(r, 'cli0', router.client, ns.client, addr.client);
    addBridge(r, 'lan0', router.lan);
    sh(['ip', '-n', r, 'route', 'add', `${addr.vip}/32`, 'via', addr.dip]);
    if (addr6) {
      sh(['ip', 'netns', 'exec', r, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
      addAddress6(r, 'cli0', router6.client);
      addAddress6(ns.client, 'eth0', addr6.client);
      sh(['ip', '-n', ns.client, '-6', 'route', 'add', 'default', 'via', router6.client]);
      addAddress6(r, 'lan0', router6.lan);
      sh(['ip', '-n', r, '-6', 'route', 'add', `${addr6.vip}/128`, 'via', addr6.dip]);
    }
    const hosts: [string, string, string | undefined, string][] = [
      [ns.director, addr.dip, addr6?.dip, 'dir'],
      ...ns.realServers.map((rs, i): [string, string, string | undefined, string] => [
        rs,
        addr.realServers[i]!,
        addr6?.realServers[i],
        `rs${i + 1}`,
      ]),
    ];
    for (const [host, address, address6, port] of hosts) {
      sh(['ip', '-n', r, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host]);
      sh(['ip', '-n', r, 'link', 'set', port, 'master', 'lan0', 'up']);
      sh(['ip', '-n', host, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      sh(['ip', '-n', host, 'link', 'set', 'eth0', 'up']);
      const gateway = options.vipOnDirector && host !== ns.director ? addr.dip : router.lan;
      sh(['ip', '-n', host, 'route', 'add', 'default', 'via', gateway]);
      if (address6) {
        addAddress6(host, 'eth0', address6);
        sh(['ip', '-n', host, '-6', 'route', 'add', 'default', 'via', router6.lan]);
      }
    }
    if (options.vipOnDirector) sh(['ip', '-n', ns.director, 'addr', 'add', `${addr.vip}/32`, 'dev', 'eth0']);
    if (options.bulkFileMb) {
      bulkFile = join(tmpDir, 'bulk.bin');
      execFileSync('sh', ['-c', `head -c ${options.bulkFileMb * 1024 * 1024} /dev/urandom > ${bulkFile}`]);
    }
    for (const [i, rs] of ns.realServers.entries()) {
      const devices = await vipDevices(rs);
      for (const dev of devices) {
        sh(['ip', '-n', rs, 'addr', 'add', `${addr.vip}/32`, 'dev', dev]);
        if (addr6) sh(['ip', '-n', rs, 'addr', 'add', `${addr6.vip}/128`, 'dev', dev]);
        sh(['ip', '-n', rs, 'link', 'set', dev, 'up']);
      }
      const sysctls = [
        'net.ipv4.conf.all.arp_ignore=1',
        'net.ipv4.conf.all.arp_announce=2',
        'net.ipv4.conf.eth0.arp_ignore=1',
        'net.ipv4.conf.eth0.arp_announce=2',
        'net.ipv4.conf.all.rp_filter=0',
        ...devices.map((dev) => `net.ipv4.conf.${dev}.rp_filter=0`),
      ];
      sh(['ip', 'netns', 'exec', rs, 'sysctl', '-qw', ...sysctls]);
      const dir = join(tmpDir, `rs${i + 1}`);
      mkdirSync(join(dir, 'www', 'upload'), { recursive: true });
      if (bulkFile) copyFileSync(bulkFile, join(dir, 'www', 'bulk.bin'));
      const listen = addr6 ? ['80', '[::]:80'] : '80';
      const config = nginxConfig(dir, `Real Server ${i + 1}`, listen).replace(
        '    location /files/ {',
        `    location /upload/ {\n      root ${dir}/www;\n      dav_methods PUT;\n      client_max_body_size 0;\n    }\n    location /files/ {`,
      );
      writeFileSync(join(dir, 'nginx.conf'), config);
      sh(nsExec(rs, nginxCommand(dir)));
    }
  } catch (error) {
    teardown();
    throw error;
  }
  const dev = { public: 'eth0', internal: 'eth0' };
  return labHandle(prefix, ns, { addr, addr6 }, dev, tmpDir, bulkFile, teardown);
}

/** Tears the lab down when the process is interrupted or terminated, then exits as the signal would. */
export function teardownOnSignals(lab: Pick<Lab, 'teardown'>): () => void {
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((signal) => {
    const handler = (): void => {
      lab.teardown();
      process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const)[signal]);
    };
    process.once(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) process.off(signal, handler);
  };
}
