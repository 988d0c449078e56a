// The director's host plumbing against the real kernel, in a namespace lab: taking a VIP's port
// over from a local server (TIME_WAIT sockets and TCP early demux), failing closed when lvsd is
// killed mid-transfer, and verify/repair after a firewall reload or a device going down and up.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import { HostNetwork, RealSystem, type System } from '../../src/dataplane/host.js';
import { NftSession } from '../../src/dataplane/nft-session.js';
import { buildLab, nginxCommand, nginxConfig, type Lab } from '../../src/lab/lab.js';
import { serviceSnapshot } from '../helpers/snapshots.js';
import { hostState, Lvsd, nftCounters, ROOT_SKIP } from './harness.js';

const PREFIX = 'lvshost';
const VIP = '198.18.0.1';
/** The client ports of the requests to the real servers' own addresses. */
const DIRECT_PORTS = '50000-50009';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A System whose commands and /proc/sys reads and writes happen inside a namespace. */
class NetnsSystem implements System {
  private readonly real = new RealSystem();
  private readonly nft: NftSession;

  constructor(private readonly ns: string) {
    this.nft = new NftSession(['ip', 'netns', 'exec', ns, 'nft']);
  }

  nftOwned(script: string): void {
    this.nft.run(script);
  }

  run(argv: readonly string[], input?: string): string {
    return this.real.run(['ip', 'netns', 'exec', this.ns, ...argv], input);
  }

  readFile(path: string): string | null {
    if (!path.startsWith('/proc/')) return this.real.readFile(path);
    try {
      return this.run(['cat', path]);
    } catch {
      return null;
    }
  }

  writeFile(path: string, data: string): void {
    if (!path.startsWith('/proc/')) return this.real.writeFile(path, data);
    this.run(['sh', '-c', 'printf %s "$1" > "$2"', 'sh', data, path]);
  }

  removeFile(path: string): void {
    this.real.removeFile(path);
  }
}

/** Responses of `count` new connections from the client, `parallel` at a time, each short, and curl's errors. */
function connect(lab: Lab, count: number, parallel: number): string {
  const curl =
    `curl -sS -Z --parallel-max ${parallel} --connect-timeout 1 --max-time 3 ` +
    `-H 'Connection: close' 'http://${VIP}/?n=[1-${count}]' 2>&1`;
  // Failed connections are what is counted, not an error of the command.
  return lab.run(lab.ns.client, ['sh', '-c', `${curl} || true`], { timeoutMs: 120_000 });
}

/** The TCP sockets in TIME_WAIT in a namespace, to or from the VIP's port 80. */
function timeWaits(lab: Lab, ns: string, side: 'src' | 'dst'): number {
  return lab
    .run(ns, ['ss', '-Htn', 'state', 'time-wait', side, `${VIP}:80`])
    .split('\n')
    .filter(Boolean).length;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const answers = (output: string, pattern: RegExp): number => output.match(pattern)?.length ?? 0;

describe('host plumbing end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let lab: Lab;
  let stateBefore: string;

  before(() => {
    lab = buildLab({ prefix: PREFIX, bulkFileMb: 20 });
    stateBefore = hostState(lab);
  });
  after(() => lab?.teardown());

  it('a VIP:80 that a local nginx served takes new connections from the same client at once', async () => {
    // Few client ports, so that the lvsd connections reuse ports the local server just closed.
    lab.run(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.ip_local_port_range=40000 40999']);
    const dir = join(lab.tmpDir, 'local-nginx');
    mkdirSync(dir);
    writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, 'the local server', `${VIP}:80`));
    lab.run(lab.ns.director, nginxCommand(dir));
    // The setup, not lvsd: the local server answers (a few may miss a reused port on a loaded machine).
    const served = connect(lab, 2000, 1);
    assert.ok(answers(served, /This is the local server/g) >= 1500, 'the local server answered');
    const pid = Number(readFileSync(join(dir, 'nginx.pid'), 'utf8'));
    process.kill(pid, 'SIGQUIT');
    while (alive(pid)) await sleep(50);
    // The server closed the connections first: the director holds their TIME_WAIT sockets, on
    // most of the client ports that the next connections will take again.
    const waiting = timeWaits(lab, lab.ns.director, 'src');
    assert.ok(waiting >= 200, `${waiting} TIME_WAIT sockets`);
    // Where the client closed first (or both at once), the client holds the TIME_WAIT and cannot
    // take that port again for a minute: widened, the range leaves it free ports beside the reused.
    lab.run(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.ip_local_port_range=40000 41999']);
    const clientWaiting = timeWaits(lab, lab.ns.client, 'dst');

    // No restart hold: this stop must leave the host exactly as found.
    const director = new Lvsd(lab, ['--restart-hold', '0']);
    try {
      await director.ready();
      director.adm(`-A -t ${VIP}:80 -s rr`);
      for (const rs of lab.addr.realServers) director.adm(`-a -t ${VIP}:80 -r ${rs}:80 -m`);
      const balanced = connect(lab, 200, 20);
      assert.equal(
        answers(balanced, /This is Real Server \d, you are 198\.18\.0\.2/g),
        200,
        `${balanced}\n(the director held ${waiting} TIME_WAIT sockets, the client ${clientWaiting})\n` +
          `${director.adm('-Ln --stats')}\n${director.log}`,
      );
      assert.equal(lab.run(lab.ns.director, ['sysctl', '-n', 'net.ipv4.tcp_early_demux']).trim(), '0');
      assert.equal(await director.stop(), 0);
    } finally {
      director.kill();
    }
    assert.equal(lab.run(lab.ns.director, ['sysctl', '-n', 'net.ipv4.tcp_early_demux']).trim(), '1');
    assert.equal(hostState(lab), stateBefore);
  });

  it('lvsd killed mid-transfer: no packet of its flows from a real server address reaches the client', async () => {
    const watch = 'lvshostwatch';
    lab.run(lab.ns.client, ['nft', '-f', '-'], {
      input: `table inet ${watch} {
  chain in {
    type filter hook prerouting priority -300; policy accept;
    ip saddr 198.18.1.0/24 tcp dport ${DIRECT_PORTS} counter accept comment "direct"
    ip saddr 198.18.1.0/24 counter comment "from-real-servers"
    ip saddr ${VIP} tcp sport 80 counter comment "from-vip"
  }
}
`,
    });
    for (const rs of lab.ns.realServers) {
      lab.run(rs, ['nft', '-f', '-'], {
        input: `table inet ${watch} {
  chain out {
    type filter hook output priority 0; policy accept;
    tcp sport 80 counter comment "sent"
  }
}
`,
      });
    }
    /** The client asks each real server's own address through the director, from ports the watch tells apart. */
    const direct = (): string =>
      lab.run(lab.ns.client, [
        'curl',
        '-sS',
        '--max-time',
        '5',
        '--local-port',
        DIRECT_PORTS,
        '-H',
        'Connection: close',
        ...lab.addr.realServers.map((rs) => `http://${rs}/`),
      ]);
    const directPages = /This is Real Server \d, you are 198\.18\.0\.2/g;
    const sent = (): number =>
      lab.ns.realServers.reduce((sum, rs) => sum + nftCounters(lab, rs, watch).get('sent')!, 0);

    const director = new Lvsd(lab);
    try {
      await director.ready();
      director.adm('-C');
      director.adm(`-A -t ${VIP}:80 -s rr`);
      for (const rs of lab.addr.realServers) director.adm(`-a -t ${VIP}:80 -r ${rs}:80 -m`);
      // Replies of flows that reach a real server directly pass untouched, beside lvsd's.
      assert.equal(answers(direct(), directPages), 2);
      const download = lab.spawn(lab.ns.client, [
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '--limit-rate',
        '2M',
        '--max-time',
        '6',
        `http://${VIP}/files/bulk.bin`,
      ]);
      const exited = once(download, 'exit');
      while ((nftCounters(lab, lab.ns.client, watch).get('from-vip') ?? 0) < 200) await sleep(50);
      director.kill();
      const atKill = sent();
      // The real server keeps sending (retransmissions, window probes) into a dead director; on a
      // loaded machine its retransmission timeout can be long, so wait for that (bounded), then a
      // little more for the packets to cross the director.
      for (let waited = 0; sent() <= atKill && waited < 15_000; waited += 250) await sleep(250);
      assert.ok(sent() > atKill, 'the real server sent after the kill, so a leak was possible');
      await sleep(1000);
      // ...and, being the kernel's, while no lvsd runs, when lvsd's own replies are held back.
      assert.equal(answers(direct(), directPages), 2);
      const seen = nftCounters(lab, lab.ns.client, watch);
      assert.equal(seen.get('from-real-servers'), 0);
      assert.ok(seen.get('direct')! >= 4, `${seen.get('direct')} direct replies`);
      // While no lvsd runs, a new connection waits (curl: timeout, 28) rather than being refused
      // by the host itself (7).
      const attempt = lab.run(lab.ns.client, [
        'sh',
        '-c',
        `curl -s -o /dev/null --connect-timeout 1 http://${VIP}/; echo $?`,
      ]);
      assert.equal(attempt.trim(), '28');
      download.kill();
      await exited;
    } finally {
      director.kill();
      lab.run(lab.ns.client, ['nft', 'delete', 'table', 'inet', watch]);
      // The next start undoes what the killed one left (also for the tests after this one, when
      // an assertion above failed), and a clean stop leaves the host as found.
      rmSync(director.socket, { force: true });
      const next = new Lvsd(lab, ['--restart-hold', '0']);
      try {
        await next.ready();
        next.adm('-C');
        assert.equal(await next.stop(), 0);
      } finally {
        next.kill();
      }
    }
    assert.equal(hostState(lab), stateBefore);
  });

  it('the host changes under lvsd (nft flush ruleset, lvs0 down and up): lvsd repairs, traffic recovers', async () => {
    const director = new Lvsd(lab);
    /** Bounded: one short connection a second until one succeeds, then how many it took. */
    const recovered = async (): Promise<number> => {
      for (let attempt = 1; attempt <= 20; attempt++) {
        const out = connect(lab, 1, 1);
        if (/This is Real Server/.test(out)) return attempt;
        await sleep(1000);
      }
      return 0;
    };
    try {
      await director.ready();
      director.adm('-C');
      director.adm(`-A -t ${VIP}:80 -s rr`);
      director.adm(`-a -t ${VIP}:80 -r ${lab.addr.realServers[0]}:80 -m`);
      assert.match(connect(lab, 1, 1), /This is Real Server 1/);

      lab.run(lab.ns.director, ['nft', 'flush', 'ruleset']);
      assert.ok((await recovered()) > 0, director.log);
      assert.match(
        await director.logged(/warn host: put back nft table inet lvsd/),
        /warn host: put back nft table inet lvsd/,
      );

      lab.run(lab.ns.director, ['sh', '-c', 'ip link set lvs0 down; ip link set lvs0 up']);
      assert.ok((await recovered()) > 0, director.log);
      assert.match(
        await director.logged(/warn host: put back ip -4 route default dev lvs0 table 19542/),
        /warn host: put back ip -4 route default dev lvs0 table 19542/,
      );
      director.adm('-C');
      assert.equal(await director.stop(), 0);
    } finally {
      director.kill();
    }
    assert.equal(hostState(lab), stateBefore);
  });

  it('verify and repair against the kernel: a firewall reload, the device down and up', () => {
    const ns = lab.ns.director;
    lab.run(ns, ['ip', 'tuntap', 'add', 'dev', 'lvs0', 'mode', 'tun']);
    lab.run(ns, ['ip', 'link', 'set', 'lvs0', 'up']);
    const before = hostState(lab);
    const stateDir = join(lab.tmpDir, 'repair-state');
    const host = new HostNetwork({ system: new NetnsSystem(ns), stateDir, tunName: 'lvs0' });
    const service = (vip: string) => serviceSnapshot(vip, IPPROTO_TCP, 80, [[lab.addr.realServers[0]!, 80]]);
    try {
      host.sync([service(VIP), service('198.18.0.9')]);
      assert.deepEqual(host.verify(), []);
      const table = (): string => lab.run(ns, ['nft', 'list', 'table', 'inet', 'lvsd']);
      const steered = table();

      lab.run(ns, ['nft', 'flush', 'ruleset']);
      assert.deepEqual(host.verify(), ['nft table inet lvsd']);
      assert.deepEqual(host.repair(), { repaired: ['nft table inet lvsd'], failed: [] });
      assert.equal(table(), steered);
      assert.deepEqual(host.verify(), []);

      lab.run(ns, ['ip', 'link', 'set', 'lvs0', 'down']);
      lab.run(ns, ['ip', 'link', 'set', 'lvs0', 'up']);
      const lost = ['ip -4 route default dev lvs0 table 19542', 'ip -4 route 198.18.0.9/32 dev lvs0'];
      assert.deepEqual(host.verify(), lost);
      assert.deepEqual(host.repair(), { repaired: lost, failed: [] });
      assert.deepEqual(host.verify(), []);
    } finally {
      host.stop();
    }
    assert.equal(hostState(lab), before);
    lab.run(ns, ['ip', 'link', 'del', 'lvs0']);
  });

  it('a crafted host journal stops lvsd at start with a clear log line, and nothing in it runs', async () => {
    const pwned = join(lab.tmpDir, 'pwned');
    const stateDir = join(lab.tmpDir, 'state');
    mkdirSync(stateDir, { recursive: true });
    const journal = [{ key: 'x', kind: 'added', undo: [['touch', pwned]] }];
    writeFileSync(join(stateDir, 'host-journal.json'), JSON.stringify(journal));
    const director = new Lvsd(lab);
    try {
      await assert.rejects(director.ready(), /lvsd exited \(1\)/);
      assert.match(director.log, /refusing the host journal .*host-journal\.json: it holds command lines/);
    } finally {
      director.kill();
    }
    assert.equal(existsSync(pwned), false);
    assert.equal(hostState(lab), stateBefore);
    rmSync(join(stateDir, 'host-journal.json'));
  });
});
