// Two lvsd directors speaking the kernel's sync protocol over real multicast: the lab's director
// runs `--start-daemon master`, a second director namespace runs `--start-daemon backup`, both with
// the same service configured by lvsadm. A client holds a TCP connection open through the master
// to a socat echo server; the backup lists it, and once the client's and the real server's routes
// point at the backup (the master killed), the same connection carries on through the backup.
//
//   client eth0 198.18.0.2 --- pub0 [master] br0 198.18.1.1 --- rs1 198.18.1.11 (echo on :7000)
//          eth1 198.18.3.2 --- pub0 198.18.3.1 [backup] int0 198.18.1.3 ---'  (int0 on br0 too)

import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildLab, until, type Lab } from '../../src/lab/lab.js';
import { Lvsd, ROOT_SKIP, type ConnRow } from './harness.js';

const PREFIX = 'lvsw11';
const VIP = '198.18.0.1';
const CLIENT = '198.18.0.2';
const RS = '198.18.1.11';
const BACKUP_INT = '198.18.1.3';
const BACKUP_PUB = '198.18.3.1';
const CLIENT_ETH1 = '198.18.3.2';
const PORT = 7000;
const WAIT_MS = 15_000;

/** Polls `probe` until it returns a value, for at most WAIT_MS. */
const eventually = <T>(what: string, probe: () => T | undefined): Promise<T> => until(what, probe, WAIT_MS);

/** A line-echo client: socat in the client namespace, its stdin and stdout as a conversation. */
class EchoClient {
  private output = '';
  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  /** Sends a line and waits for it to come back. */
  async say(line: string): Promise<void> {
    this.child.stdin!.write(`${line}\n`);
    await eventually(`echo of "${line}"`, () => (this.output.includes(`${line}\n`) ? true : undefined));
  }
}

interface DaemonJson {
  daemons: Array<{
    state: string;
    stats: {
      sent: number;
      received: number;
      dropped: number;
      conns: number;
      lastMessageAgeMs: number | null;
    };
  }>;
}

const daemonStats = (director: Lvsd) =>
  (JSON.parse(director.adm('-L --daemon --json')) as DaemonJson).daemons[0]!.stats;

const isOurConnection = (row: ConnRow, clientPort: string) =>
  row.proto === 'TCP' &&
  row.source === `${CLIENT}:${clientPort}` &&
  row.virtual === `${VIP}:${PORT}` &&
  row.destination === `${RS}:${PORT}`;

describe(
  'a master and a backup lvsd: connection sync and takeover (root, netns)',
  { skip: ROOT_SKIP },
  () => {
    let lab: Lab;
    let master: Lvsd;
    let backup: Lvsd;
    let client: EchoClient;
    let clientPort = '';
    const backupNs = `${PREFIX}${process.pid}-backup`;

    before(async () => {
      lab = buildLab({ prefix: PREFIX, realServers: 1 });
      const sh = (ns: string, command: string) => lab.run(ns, command.split(' '));
      const { director, client: clientNs } = lab.ns;
      const rs = lab.ns.realServers[0]!;
      // The backup director: a namespace the lab's teardown does not know, removed in after()
      // (and, after a crash, by the next run's stale-lab cleanup: it carries the lab's prefix and pid).
      execHost(['ip', 'netns', 'add', backupNs]);
      sh(backupNs, 'ip link set lo up');
      sh(director, `ip link add bk0 type veth peer name int0 netns ${backupNs}`);
      sh(director, 'ip link set bk0 master br0 up');
      // Multicast reaches every port whatever IGMP the bridge has seen.
      sh(director, 'ip link set br0 type bridge mcast_snooping 0');
      sh(backupNs, `ip addr add ${BACKUP_INT}/24 dev int0`);
      sh(backupNs, 'ip link set int0 up');
      sh(clientNs, `ip link add eth1 type veth peer name pub0 netns ${backupNs}`);
      sh(clientNs, `ip addr add ${CLIENT_ETH1}/24 dev eth1`);
      sh(clientNs, 'ip link set eth1 up');
      sh(backupNs, `ip addr add ${BACKUP_PUB}/24 dev pub0`);
      sh(backupNs, `ip addr add ${VIP}/32 dev pub0`);
      sh(backupNs, 'ip link set pub0 up');
      sh(backupNs, `ip route add ${CLIENT}/32 via ${CLIENT_ETH1}`);
      lab.spawn(rs, ['socat', `TCP-LISTEN:${PORT},fork,reuseaddr`, 'EXEC:cat']);

      master = new Lvsd(lab);
      backup = new Lvsd(lab, [], { ns: backupNs, dir: join(lab.tmpDir, 'backup') });
      await Promise.all([master.ready(), backup.ready()]);
      for (const d of [master, backup]) {
        d.adm(`-A -t ${VIP}:${PORT} -s rr`);
        d.adm(`-a -t ${VIP}:${PORT} -r ${RS}:${PORT} -m`);
      }
      master.adm('--start-daemon master --mcast-interface br0 --syncid 11');
      backup.adm('--start-daemon backup --mcast-interface int0 --syncid 11');
    });

    after(async () => {
      client?.child.kill();
      for (const d of [master, backup]) {
        await d?.stop().catch(() => undefined);
        d?.kill();
      }
      try {
        execHost(['ip', 'netns', 'pids', backupNs])
          .split(/\s+/)
          .filter(Boolean)
          .forEach((pid) => process.kill(Number(pid), 'SIGKILL'));
        execHost(['ip', 'netns', 'del', backupNs]);
      } catch {
        // Not made, or gone already.
      }
      lab?.teardown();
    });

    it('the backup lists the connection the client holds open through the master', async () => {
      client = new EchoClient(
        lab.spawn(lab.ns.client, ['socat', '-', `TCP:${VIP}:${PORT}`], { stdio: ['pipe', 'pipe', 'ignore'] }),
      );
      await client.say('through the master');
      const onMaster = await eventually('the master lists the connection', () =>
        master.connections().find((r) => r.virtual === `${VIP}:${PORT}` && r.state === 'ESTABLISHED'),
      );
      clientPort = onMaster.source.split(':')[1]!;
      // The master syncs the entry as it changes state: its SYN_RECV may be listed first.
      await eventually('the backup lists the connection ESTABLISHED', () =>
        backup.connections().find((r) => isOurConnection(r, clientPort) && r.state === 'ESTABLISHED'),
      );
      const sent = daemonStats(master);
      assert.ok(sent.sent >= 1 && sent.conns >= 1, JSON.stringify(sent));
      assert.equal(sent.dropped, 0);
      assert.notEqual(sent.lastMessageAgeMs, null);
      const received = daemonStats(backup);
      assert.ok(received.received >= 1 && received.conns >= 1, JSON.stringify(received));
      assert.equal(received.dropped, 0);
    });

    it('with the master gone and the routes on the backup, the open connection carries on', async () => {
      assert.ok(clientPort, 'the first test made the connection');
      master.kill();
      const { client: clientNs } = lab.ns;
      lab.run(clientNs, ['ip', 'route', 'replace', `${VIP}/32`, 'via', BACKUP_PUB, 'src', CLIENT]);
      lab.run(lab.ns.realServers[0]!, ['ip', 'route', 'replace', 'default', 'via', BACKUP_INT]);
      await client.say('through the backup');
      const row = backup.connections().find((r) => isOurConnection(r, clientPort));
      assert.equal(row?.state, 'ESTABLISHED');
      const [service] = backup.stats();
      assert.ok(service!.inPkts > 0 && service!.outPkts > 0, JSON.stringify(service));
    });
  },
);

function execHost(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: 'pipe', timeout: 10_000 });
}
