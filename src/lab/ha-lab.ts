// A lab for a pair of lvsd directors under VRRP, for `lvsd demo --ha` and the failover test.
// A LAN namespace holds the two switches; each director has a fixed address on both sides, runs
// lvsd with --floating-vips and keepalived -P with packaging/keepalived's notify script, exactly
// as packaging/keepalived/keepalived.conf describes. VRRP owns the VIP (clients' side) and the DIP
// (the real servers' gateway); the VRRP adverts and the connection-sync multicast share int0.
//
//   client 198.18.0.2 --[brpub]-- pub0 198.18.0.3 [director a] int0 198.18.1.3 --[brint]-- rs1 198.18.1.11
//                           `---- pub0 198.18.0.4 [director b] int0 198.18.1.4 ----'     rs2 198.18.1.12
//   VRRP: VIP 198.18.0.1/32 on pub0, DIP 198.18.1.1/32 on int0 of the master

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  writeFileSync,
  chmodSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HaClientEvent } from './ha-client.js';
import {
  cleanupStaleLabs,
  nginxCommand,
  nginxConfig,
  nsExec,
  removeLab,
  sh,
  until as pollUntil,
} from './lab.js';

const LVSD = fileURLToPath(new URL('../bin/lvsd.js', import.meta.url));
const LVSADM = fileURLToPath(new URL('../bin/lvsadm.js', import.meta.url));
const HA_CLIENT = fileURLToPath(new URL('./ha-client.js', import.meta.url));
const NOTIFY = fileURLToPath(new URL('../../../packaging/keepalived/lvsd-vrrp-notify', import.meta.url));

export const HA_VIP = '198.18.0.1';
export const HA_DIP = '198.18.1.1';
export const HA_CLIENT_ADDR = '198.18.0.2';
export const HA_PORT = 80;
const REAL_SERVERS = ['198.18.1.11', '198.18.1.12'];
const SYNC_ID = 51;
const VRID = 51;
const WAIT_MS = 20_000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a value, for at most `timeoutMs` (20 s unless told). */
export function until<T>(what: string, probe: () => T | undefined, timeoutMs = WAIT_MS): Promise<T> {
  return pollUntil(what, probe, timeoutMs);
}

/**
 * The keepalived.conf of one director: packaging/keepalived/keepalived.conf with the lab's names,
 * less enable_script_security (the scripts here live in a checkout and a temporary directory,
 * which keepalived would have to find writable by root only).
 */
export function haKeepalivedConf(name: string, priority: number, notify: string): string {
  return `global_defs {
  router_id lvsd-${name}
}
vrrp_instance VI_LVSD {
  state BACKUP
  nopreempt
  interface int0
  virtual_router_id ${VRID}
  priority ${priority}
  advert_int 1
  track_interface {
    pub0
  }
  virtual_ipaddress {
    ${HA_VIP}/32 dev pub0
    ${HA_DIP}/32 dev int0
  }
  notify "${notify} int0 ${SYNC_ID}"
}
`;
}

/** One director of the pair: its namespace, lvsd, keepalived. */
export class HaDirector {
  readonly socket: string;
  readonly lvsdLog: string;
  readonly keepalivedLog: string;
  private lvsd: ChildProcess | null = null;
  private keepalived: ChildProcess | null = null;

  constructor(
    readonly name: string,
    readonly ns: string,
    readonly addr: { pub: string; int: string },
    readonly priority: number,
    private readonly dir: string,
    private readonly lvsdArgs: readonly string[] = [],
  ) {
    mkdirSync(join(dir, 'state'), { recursive: true });
    this.socket = join(dir, 'lvsd.sock');
    this.lvsdLog = join(dir, 'lvsd.log');
    this.keepalivedLog = join(dir, 'keepalived.log');
  }

  /** lvsadm's argv on this director (node, the script, the socket, then `args`). */
  admArgv(args: string): string[] {
    return [process.execPath, LVSADM, '--socket', this.socket, ...args.split(' ')];
  }

  /** One lvsadm command; throws with its stderr when it fails. */
  adm(args: string): string {
    return sh(nsExec(this.ns, this.admArgv(args)));
  }

  async startLvsd(): Promise<void> {
    const log = openSync(this.lvsdLog, 'a');
    const argv = [
      LVSD,
      '--socket',
      this.socket,
      '--state-dir',
      join(this.dir, 'state'),
      '--floating-vips',
      ...this.lvsdArgs,
    ];
    this.lvsd = spawn('ip', ['netns', 'exec', this.ns, process.execPath, ...argv], {
      stdio: ['ignore', log, log],
    });
    for (const end = Date.now() + WAIT_MS; !existsSync(this.socket); await sleep(50)) {
      if (this.lvsd.exitCode !== null || Date.now() > end)
        throw new Error(
          `lvsd on director ${this.name} did not start:\n${readFileSync(this.lvsdLog, 'utf8')}`,
        );
    }
  }

  /** keepalived -P on this director's keepalived.conf; the notify script drives lvsadm on our socket. */
  startKeepalived(): void {
    // The notify script runs `lvsadm`: here, the one of this checkout, on this director's socket.
    const wrapper = join(this.dir, 'lvsadm');
    writeFileSync(wrapper, `#!/bin/sh\nexec ${process.execPath} ${LVSADM} --socket ${this.socket} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const conf = join(this.dir, 'keepalived.conf');
    writeFileSync(conf, haKeepalivedConf(this.name, this.priority, `${NOTIFY} --lvsadm ${wrapper}`));
    const log = openSync(this.keepalivedLog, 'a');
    const argv = [
      'keepalived',
      '-P',
      '-n',
      '-l',
      '-D',
      '-f',
      conf,
      '-p',
      this.pidFile('keepalived'),
      '-r',
      this.pidFile('vrrp'),
    ];
    this.keepalived = spawn('ip', ['netns', 'exec', this.ns, ...argv], { stdio: ['ignore', log, log] });
  }

  /** Where keepalived keeps the pid of its parent ('keepalived') or its VRRP child ('vrrp'). */
  private pidFile(what: 'keepalived' | 'vrrp'): string {
    return join(this.dir, `${what}.pid`);
  }

  /** Whether VRRP has put the VIP on this director. */
  holdsVip(): boolean {
    const listed = JSON.parse(sh(nsExec(this.ns, ['ip', '-4', '-j', 'addr', 'show', 'dev', 'pub0']))) as {
      addr_info: { local: string }[];
    }[];
    return listed.some((link) => link.addr_info.some((a) => a.local === HA_VIP));
  }

  /** The MAC address of the director's interface towards the clients. */
  publicMac(): string {
    const [link] = JSON.parse(sh(nsExec(this.ns, ['ip', '-j', 'link', 'show', 'dev', 'pub0']))) as {
      address: string;
    }[];
    return link!.address;
  }

  /** The sync roles lvsd runs now (`lvsadm -L --daemon --json`), "master" and/or "backup". */
  syncRoles(): string[] {
    const { daemons } = JSON.parse(this.adm('-L --daemon --json')) as { daemons: { state: string }[] };
    return daemons.map((d) => d.state).sort();
  }

  /** The machine dies: every process of the namespace gets SIGKILL, then its links go down. */
  crash(): void {
    for (const pid of sh(['ip', 'netns', 'pids', this.ns]).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    for (const dev of ['pub0', 'int0']) sh(nsExec(this.ns, ['ip', 'link', 'set', dev, 'down']));
  }

  /**
   * The machine comes back after crash(): its links up, lvsd (with the configuration it saved)
   * and keepalived started again; VRRP and the notify script give it its sync role.
   */
  async revive(): Promise<void> {
    for (const dev of ['pub0', 'int0']) sh(nsExec(this.ns, ['ip', 'link', 'set', dev, 'up']));
    rmSync(this.socket, { force: true }); // the dead lvsd's: startLvsd waits for a new one
    // A machine that comes back has a fresh /run: the dead keepalived's pid files are gone (left
    // here, a pid reused since makes keepalived refuse to start, "daemon is already running").
    for (const what of ['keepalived', 'vrrp'] as const) rmSync(this.pidFile(what), { force: true });
    await this.startLvsd();
    this.startKeepalived();
  }

  /** keepalived then lvsd, with SIGTERM, as an operator stops them. */
  async stop(): Promise<void> {
    for (const child of [this.keepalived, this.lvsd]) {
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
  }
}

export interface HaLab {
  readonly ns: { client: string; lan: string; realServers: string[] };
  readonly directors: [a: HaDirector, b: HaDirector];
  readonly tmpDir: string;
  readonly bulkFile: string;
  run(ns: string, argv: readonly string[]): string;
  /** A process in `ns`, its stdout and stderr piped (and its stdin, with `stdin: 'pipe'`). */
  spawn(ns: string, argv: readonly string[], stdin?: 'pipe'): ChildProcess;
  /** Stops what runs gracefully, then removes every namespace and file. */
  teardown(): Promise<void>;
}

export interface HaLabOptions {
  prefix: string;
  /** Size of /files/bulk.bin on the real servers, in MB. */
  bulkFileMb: number;
  /** More of both lvsds' command line (--dataplane packet, say). */
  lvsdArgs?: readonly string[];
}

export function buildHaLab(options: HaLabOptions): HaLab {
  cleanupStaleLabs(options.prefix);
  const base = `${options.prefix}${process.pid}`;
  const ns = {
    client: `${base}-client`,
    lan: `${base}-lan`,
    a: `${base}-dira`,
    b: `${base}-dirb`,
    realServers: REAL_SERVERS.map((_, i) => `${base}-rs${i + 1}`),
  };
  const tmpDir = mkdtempSync(join(tmpdir(), `${base}-`));
  chmodSync(tmpDir, 0o755);
  const created: string[] = [];
  const removeAll = (): void => removeLab(created, tmpDir);
  const lvsdArgs = options.lvsdArgs ?? [];
  const ip = (name: string, ...argv: string[]) => sh(['ip', '-n', name, ...argv]);
  /** A host's interface `dev` with `addr`, plugged into the LAN's switch `bridge` as `port`. */
  const plug = (host: string, dev: string, addr: string, bridge: string, port: string) => {
    ip(ns.lan, 'link', 'add', port, 'type', 'veth', 'peer', 'name', dev, 'netns', host);
    ip(ns.lan, 'link', 'set', port, 'master', bridge, 'up');
    ip(host, 'addr', 'add', addr, 'dev', dev);
    ip(host, 'link', 'set', dev, 'up');
  };
  try {
    for (const name of [ns.lan, ns.client, ns.a, ns.b, ...ns.realServers]) {
      sh(['ip', 'netns', 'add', name]);
      created.push(name);
      ip(name, 'link', 'set', 'lo', 'up');
    }
    for (const bridge of ['brpub', 'brint']) {
      ip(ns.lan, 'link', 'add', bridge, 'type', 'bridge');
      ip(ns.lan, 'link', 'set', bridge, 'up');
    }
    plug(ns.client, 'eth0', `${HA_CLIENT_ADDR}/24`, 'brpub', 'client');
    plug(ns.a, 'pub0', '198.18.0.3/24', 'brpub', 'apub');
    plug(ns.a, 'int0', '198.18.1.3/24', 'brint', 'aint');
    plug(ns.b, 'pub0', '198.18.0.4/24', 'brpub', 'bpub');
    plug(ns.b, 'int0', '198.18.1.4/24', 'brint', 'bint');
    const bulkFile = join(tmpDir, 'bulk.bin');
    sh(['sh', '-c', `head -c ${options.bulkFileMb * 1024 * 1024} /dev/urandom > ${bulkFile}`]);
    ns.realServers.forEach((rs, i) => {
      plug(rs, 'eth0', `${REAL_SERVERS[i]}/24`, 'brint', `rs${i + 1}`);
      // Their gateway is the DIP, wherever VRRP puts it.
      ip(rs, 'route', 'add', 'default', 'via', HA_DIP);
      const dir = join(tmpDir, `rs${i + 1}`);
      mkdirSync(join(dir, 'www'), { recursive: true });
      copyFileSync(bulkFile, join(dir, 'www', 'bulk.bin'));
      writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, `Real Server ${i + 1}`));
      sh(nsExec(rs, nginxCommand(dir)));
    });
    const directors: [HaDirector, HaDirector] = [
      new HaDirector('a', ns.a, { pub: '198.18.0.3', int: '198.18.1.3' }, 150, join(tmpDir, 'a'), lvsdArgs),
      new HaDirector('b', ns.b, { pub: '198.18.0.4', int: '198.18.1.4' }, 100, join(tmpDir, 'b'), lvsdArgs),
    ];
    return {
      ns: { client: ns.client, lan: ns.lan, realServers: ns.realServers },
      directors,
      tmpDir,
      bulkFile,
      run: (name, argv) => sh(nsExec(name, argv)),
      spawn: (name, argv, stdin) =>
        spawn('ip', nsExec(name, argv).slice(1), { stdio: [stdin ?? 'ignore', 'pipe', 'pipe'] }),
      teardown: async () => {
        await Promise.all(directors.map((d) => d.stop().catch(() => undefined)));
        removeAll();
      },
    };
  } catch (error) {
    removeAll();
    throw error;
  }
}

/** The same round-robin NAT service on both directors, as the operator configures the pair. */
export const HA_SERVICE_COMMANDS = [
  `-A -t ${HA_VIP}:${HA_PORT} -s rr`,
  ...REAL_SERVERS.map((rs) => `-a -t ${HA_VIP}:${HA_PORT} -r ${rs}:${HA_PORT} -m`),
];

/**
 * Starts lvsd on both directors with the service, then keepalived on a, and once a is VRRP
 * master with lvsd's master sync role, keepalived on b, until b runs the backup role.
 */
export async function startHaPair(lab: HaLab, say: (line: string) => void = () => undefined): Promise<void> {
  const [a, b] = lab.directors;
  await Promise.all([a.startLvsd(), b.startLvsd()]);
  for (const d of lab.directors) {
    for (const command of HA_SERVICE_COMMANDS) {
      say(`[${d.name}] $ lvsadm ${command}`);
      d.adm(command);
    }
  }
  say(`[a] $ keepalived -P -n -f ${join(lab.tmpDir, 'a', 'keepalived.conf')}   (priority ${a.priority})`);
  a.startKeepalived();
  await until('director a becomes VRRP master', () =>
    a.holdsVip() && a.syncRoles().join() === 'master' ? true : undefined,
  );
  say('director a: VRRP MASTER, holds the VIP and the DIP, lvsd runs the master sync role');
  say(`[b] $ keepalived -P -n -f ${join(lab.tmpDir, 'b', 'keepalived.conf')}   (priority ${b.priority})`);
  b.startKeepalived();
  await until('director b runs the backup sync role', () =>
    b.syncRoles().join() === 'backup' ? true : undefined,
  );
  say('director b: VRRP BACKUP, lvsd runs the backup sync role');
}

/** The client's traffic: keep-alive connections and probes (ha-client.ts), and one long download. */
export class HaTraffic {
  readonly events: HaClientEvent[] = [];
  readonly clientDone: Promise<unknown>;
  readonly download: Promise<{ status: number | null; stderr: string }>;
  readonly downloadPath: string;
  private readonly client: ChildProcess;

  /** With `idle`, the keep-alive connections ask once, then at each ask() only. */
  constructor(lab: HaLab, options: { conns: number; durationMs: number; rate: string; idle?: boolean }) {
    const argv = [
      process.execPath,
      HA_CLIENT,
      HA_VIP,
      `${HA_PORT}`,
      `${options.conns}`,
      `${options.durationMs}`,
    ];
    const client = lab.spawn(lab.ns.client, options.idle ? [...argv, 'idle'] : argv, 'pipe');
    this.client = client;
    let pending = '';
    client.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line) this.events.push(JSON.parse(line) as HaClientEvent);
    });
    this.clientDone = once(client, 'exit');
    this.downloadPath = join(lab.tmpDir, 'download.bin');
    const curl = lab.spawn(lab.ns.client, [
      'curl',
      '-sS',
      '--max-time',
      '120',
      '--limit-rate',
      options.rate,
      '-o',
      this.downloadPath,
      `http://${HA_VIP}/files/bulk.bin`,
    ]);
    let stderr = '';
    curl.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    this.download = once(curl, 'exit').then(([status]) => ({ status: status as number | null, stderr }));
  }

  /** Every (idle) keep-alive connection asks once more. */
  ask(): void {
    this.client.stdin!.write('\n');
  }

  /** True once every keep-alive connection has had a reply after `since` (wall clock, ms). */
  allAnsweredSince(since: number, conns: number): true | undefined {
    const answered = new Set(
      this.events.flatMap((e) => (e.kind === 'reply' && e.at > since ? [e.conn] : [])),
    );
    return answered.size === conns ? true : undefined;
  }

  /** The client's local port of each keep-alive connection, once all are open. */
  ports(conns: number): number[] | undefined {
    const open = this.events.filter((e) => e.kind === 'open');
    return open.length === conns ? open.map((e) => e.port) : undefined;
  }
}

/** The MAC address the client sends the VIP's traffic to (its ARP entry), or null. */
export function clientVipMac(lab: HaLab): string | null {
  const [entry] = JSON.parse(
    lab.run(lab.ns.client, ['ip', '-j', 'neigh', 'show', HA_VIP, 'dev', 'eth0']),
  ) as {
    lladdr?: string;
  }[];
  return entry?.lladdr ?? null;
}

/** What the client saw around a failover at `killedAt` (wall clock, ms). */
export interface FailoverFigures {
  /** From the kill to the first reply (on a keep-alive connection or a fresh probe) after it. */
  failoverMs: number | null;
  /** Keep-alive connections that answered after the kill without being closed or reset. */
  survived: number;
  conns: number;
  /** The errors of those that did not survive. */
  lost: string[];
}

export function failoverFigures(
  events: readonly HaClientEvent[],
  killedAt: number,
  conns: number,
): FailoverFigures {
  const firstAfter = events.find(
    (e) => e.at > killedAt && (e.kind === 'reply' || (e.kind === 'probe' && e.ok)),
  );
  const closed = new Map(events.flatMap((e) => (e.kind === 'closed' ? [[e.conn, e.error] as const] : [])));
  let survived = 0;
  for (let conn = 0; conn < conns; conn++) {
    const answered = events.some((e) => e.kind === 'reply' && e.conn === conn && e.at > killedAt);
    if (answered && !closed.has(conn)) survived++;
  }
  return {
    failoverMs: firstAfter ? firstAfter.at - killedAt : null,
    survived,
    conns,
    lost: [...closed].map(([conn, error]) => `connection ${conn}: ${error}`),
  };
}

/** The SHA-256 of a file, hex. */
export async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
