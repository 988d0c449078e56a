// The things the client's load goes through, each started in the lab's director namespace for
// its turn and stopped after it, so none of them sees another's traffic or rules. Every target
// but direct serves the director's own public address, 198.18.0.1, as the seed's director does.

import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernelNatRuleset, type Lab } from '../src/lab/lab.js';
import type { TargetName } from './summary.js';

export const TCP_PORT = 80;
export const UDP_PORT = 9000;
/**
 * The client that talks to rs1 directly has an address of its own (see prepareLab): its
 * connections reach rs1's own address, so its TCP timestamps run on another per-(source,
 * destination) clock than the clients of the VIP, and a real server's TIME_WAIT socket left by
 * one would refuse the other's SYNs (PAWS). Two clients, as in a real deployment.
 */
export const DIRECT_CLIENT = '198.18.0.3';
export const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export interface Target {
  readonly name: TargetName;
  /** Where the client sends its TCP load. */
  readonly tcp: string;
  /** Where the client sends UDP, or null when the target cannot carry it. */
  readonly udp: string | null;
  /** The client's address for this target's traffic. */
  readonly client: string;
  /** Whose address the real servers should see: the client's (NAT) or the director's (proxies). */
  readonly realServersSee: 'client' | 'director';
  /** False for direct: one real server, no balancing. */
  readonly balances: boolean;
  start(): Promise<void>;
  /** lvsd's packet drops so far, by reason (lvsadm -L --json); absent for the others. */
  drops?(): Record<string, number>;
  /** Stops what start() began; safe to call when start() failed half-way. */
  stop(): Promise<void>;
}

export interface TargetOptions {
  /** Prefix for director-side commands, e.g. ['taskset', '-c', '0']; empty for no pinning. */
  pin: readonly string[];
  /** Extra node options for lvsd (e.g. --cpu-prof). */
  lvsdNodeArgs: readonly string[];
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A child in the director namespace whose stderr is kept for error messages. */
class DirectorProcess {
  private child: ChildProcess | null = null;
  private stderr = '';

  constructor(
    private readonly lab: Lab,
    private readonly what: string,
  ) {}

  start(argv: readonly string[]): void {
    this.stderr = '';
    const child = this.lab.spawn(this.lab.ns.director, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on(
      'data',
      (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString()).slice(-2000)),
    );
    this.child = child;
  }

  /** Throws with the process's last words when it has exited. */
  checkAlive(): void {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) return;
    throw new Error(
      `${this.what} exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ') || 'no output'}`,
    );
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)])) === false) {
      child.kill('SIGKILL');
      await exited;
    }
  }
}

function directTarget(lab: Lab): Target {
  return {
    name: 'direct',
    tcp: `${lab.addr.realServers[0]}:${TCP_PORT}`,
    udp: `${lab.addr.realServers[0]}:${UDP_PORT}`,
    client: DIRECT_CLIENT,
    realServersSee: 'client',
    balances: false,
    start: async () => undefined,
    stop: async () => undefined,
  };
}

/** nftables DNAT with a round-robin counter: the kernel's own equivalent of LVS-NAT. */
function kernelNatTarget(lab: Lab): Target {
  const table = 'lvsbench_nat';
  const ruleset = kernelNatRuleset(table, lab.addr.vip, lab.addr.realServers, [
    `tcp dport ${TCP_PORT}`,
    `udp dport ${UDP_PORT}`,
  ]);
  return {
    name: 'nat',
    tcp: `${lab.addr.vip}:${TCP_PORT}`,
    udp: `${lab.addr.vip}:${UDP_PORT}`,
    client: lab.addr.client,
    realServersSee: 'client',
    balances: true,
    start: async () => {
      lab.run(lab.ns.director, ['nft', '-f', '-'], { input: ruleset });
    },
    stop: async () => {
      try {
        lab.run(lab.ns.director, ['nft', 'delete', 'table', 'ip', table]);
      } catch {
        // Never added.
      }
    },
  };
}

function haproxyTarget(lab: Lab, options: TargetOptions): Target {
  const dir = join(lab.tmpDir, 'haproxy');
  const proc = new DirectorProcess(lab, 'haproxy');
  const servers = lab.addr.realServers.map((rs, i) => `  server rs${i + 1} ${rs}:${TCP_PORT}`).join('\n');
  const config = `global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend bench
  bind ${lab.addr.vip}:${TCP_PORT}
  default_backend realservers
backend realservers
  balance roundrobin
${servers}
`;
  return {
    name: 'haproxy',
    tcp: `${lab.addr.vip}:${TCP_PORT}`,
    udp: null,
    client: lab.addr.client,
    realServersSee: 'director',
    balances: true,
    start: async () => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'haproxy.cfg'), config);
      proc.start([...options.pin, 'haproxy', '-db', '-f', join(dir, 'haproxy.cfg')]);
      await sleep(200);
      proc.checkAlive();
    },
    stop: () => proc.stop(),
  };
}

function nginxStreamTarget(lab: Lab, options: TargetOptions): Target {
  const dir = join(lab.tmpDir, 'nginx-stream');
  const proc = new DirectorProcess(lab, 'nginx stream');
  const upstream = (port: number) => lab.addr.realServers.map((rs) => `    server ${rs}:${port};`).join('\n');
  const config = `load_module ${STREAM_MODULE};
worker_processes 1;
daemon off;
user root;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 9000; }
worker_rlimit_nofile 19000;
stream {
  upstream tcp_realservers {
${upstream(TCP_PORT)}
  }
  upstream udp_realservers {
${upstream(UDP_PORT)}
  }
  server {
    listen ${lab.addr.vip}:${TCP_PORT} backlog=8192;
    proxy_pass tcp_realservers;
  }
  server {
    listen ${lab.addr.vip}:${UDP_PORT} udp;
    proxy_pass udp_realservers;
    proxy_timeout 2s;
  }
}
`;
  return {
    name: 'nginx',
    tcp: `${lab.addr.vip}:${TCP_PORT}`,
    udp: `${lab.addr.vip}:${UDP_PORT}`,
    client: lab.addr.client,
    realServersSee: 'director',
    balances: true,
    start: async () => {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'nginx.conf'), config);
      proc.start([
        ...options.pin,
        'nginx',
        '-c',
        join(dir, 'nginx.conf'),
        '-p',
        dir,
        '-e',
        join(dir, 'error.log'),
      ]);
      await sleep(300);
      proc.checkAlive();
    },
    stop: () => proc.stop(),
  };
}

/** Sets sysctls in a namespace; returns what undoes it (the values found before). */
function setSysctls(lab: Lab, ns: string, settings: readonly string[]): () => void {
  const before = settings.map((setting) => {
    const key = setting.split('=')[0]!;
    return `${key}=${lab.run(ns, ['sysctl', '-n', key]).trim()}`;
  });
  lab.run(ns, ['sysctl', '-qw', ...settings]);
  return () => lab.run(ns, ['sysctl', '-qw', ...before]);
}

/**
 * What an operator sets up for LVS-DR in this topology, undone after the turn: each real server
 * holds the VIP on lo and neither answers ARP for it nor uses it as an ARP source (arp_ignore=1,
 * arp_announce=2); it answers the client itself, through its default gateway, the director's
 * DIP. Their source is the VIP, one of the director's own addresses, a spoof for the director's
 * kernel (accept_local stays 0): lvsd takes them off the wire and hands them to the kernel through
 * its own device, which forwards them as any router would. The director does not track them
 * (notrack, as IPVS directors commonly exempt their traffic from conntrack): it sees only one
 * direction, and the half-connections it would keep would take a reused client port's SYN to
 * VIP:80 for a reply and leave it un-NATed in kernel NAT's next turn.
 */
function directRoutingHosts(lab: Lab): { setUp(): void; tearDown(): void } {
  let undo: (() => void)[] = [];
  return {
    setUp: () => {
      for (const ns of lab.ns.realServers) {
        undo.push(
          setSysctls(lab, ns, [
            'net.ipv4.conf.all.arp_ignore=1',
            'net.ipv4.conf.all.arp_announce=2',
            'net.ipv4.conf.eth0.arp_ignore=1',
            'net.ipv4.conf.eth0.arp_announce=2',
          ]),
        );
        lab.run(ns, ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
        undo.push(() => lab.run(ns, ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']));
      }
      const table = 'lvsbench_dr';
      lab.run(lab.ns.director, ['nft', '-f', '-'], {
        input: `table ip ${table} {
  chain prerouting {
    type filter hook prerouting priority raw; policy accept;
    iifname ${lab.dev.internal} ip saddr ${lab.addr.vip} notrack
  }
}
`,
      });
      undo.push(() => lab.run(lab.ns.director, ['nft', 'delete', 'table', 'ip', table]));
    },
    tearDown: () => {
      for (const step of undo.reverse()) {
        try {
          step();
        } catch {
          // Keep undoing the rest.
        }
      }
      undo = [];
    },
  };
}

type LvsdName = Extract<TargetName, 'lvsd' | 'lvsd-packet' | 'lvsd-dr'>;

const LVSD_VARIANTS: Record<LvsdName, { plane: 'tun' | 'packet'; method: '-m' | '-g' }> = {
  lvsd: { plane: 'tun', method: '-m' },
  'lvsd-packet': { plane: 'packet', method: '-m' },
  'lvsd-dr': { plane: 'packet', method: '-g' },
};

/**
 * lvsd as a user runs it: the daemon in the director namespace, configured with lvsadm, its VIP
 * the director's own public address (which a proxy served in its turn just before).
 */
function lvsdTarget(lab: Lab, options: TargetOptions, name: LvsdName): Target {
  const { plane, method } = LVSD_VARIANTS[name];
  const vip = lab.addr.vip;
  const bin = new URL('../src/bin/', import.meta.url).pathname;
  const dir = join(lab.tmpDir, 'lvsd');
  const socket = join(dir, 'lvsd.sock');
  const proc = new DirectorProcess(lab, 'lvsd');
  const hosts = method === '-g' ? directRoutingHosts(lab) : null;
  const lvsadm = (args: string) =>
    lab.run(
      lab.ns.director,
      [process.execPath, join(bin, 'lvsadm.js'), '--socket', socket, ...args.split(' ')],
      {
        timeoutMs: 10_000,
      },
    );
  return {
    name,
    tcp: `${vip}:${TCP_PORT}`,
    udp: `${vip}:${UDP_PORT}`,
    client: lab.addr.client,
    realServersSee: 'client',
    balances: true,
    start: async () => {
      hosts?.setUp();
      // A fresh state directory: lvsd would restore the previous turn's services, and an old
      // socket file would look like a daemon ready to answer.
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir, { recursive: true });
      proc.start([
        ...options.pin,
        process.execPath,
        ...options.lvsdNodeArgs,
        join(bin, 'lvsd.js'),
        '--socket',
        socket,
        '--state-dir',
        join(dir, 'state'),
        '--dataplane',
        plane,
        // Stopped for good after the turn: no restart hold over the next target's.
        '--restart-hold',
        '0',
      ]);
      for (let waited = 0; !existsSync(socket); waited += 50) {
        proc.checkAlive();
        if (waited > 10_000) throw new Error(`lvsd: no control socket at ${socket} after 10 s`);
        await sleep(50);
      }
      for (const [flag, port] of [
        ['-t', TCP_PORT],
        ['-u', UDP_PORT],
      ] as const) {
        lvsadm(`-A ${flag} ${vip}:${port} -s rr`);
        for (const rs of lab.addr.realServers) lvsadm(`-a ${flag} ${vip}:${port} -r ${rs}:${port} ${method}`);
      }
    },
    drops: () => {
      const { dataPath } = JSON.parse(lvsadm('-L -n --json')) as {
        dataPath: { drops: Record<string, number>; device: { drops: Record<string, number> } };
      };
      return { ...dataPath.drops, ...dataPath.device.drops };
    },
    stop: async () => {
      try {
        await proc.stop();
      } finally {
        hosts?.tearDown();
      }
    },
  };
}

export function makeTargets(lab: Lab, names: readonly TargetName[], options: TargetOptions): Target[] {
  const all: Record<TargetName, () => Target> = {
    direct: () => directTarget(lab),
    nat: () => kernelNatTarget(lab),
    haproxy: () => haproxyTarget(lab, options),
    nginx: () => nginxStreamTarget(lab, options),
    'lvsd-packet': () => lvsdTarget(lab, options, 'lvsd-packet'),
    lvsd: () => lvsdTarget(lab, options, 'lvsd'),
    'lvsd-dr': () => lvsdTarget(lab, options, 'lvsd-dr'),
  };
  return names.map((name) => all[name]());
}
