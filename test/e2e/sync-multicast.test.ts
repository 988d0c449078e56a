// Connection sync over real multicast: a master and a backup in two network namespaces joined by a
// veth pair, each a separate node process with the real dgram adapter (IP_MULTICAST_IF by
// interface, group membership, TTL), for an IPv4 and an IPv6 group.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { IPPROTO_TCP, IPPROTO_UDP, type Addr } from '../../src/core/inet.js';
import type { SyncDaemonConfig } from '../../src/core/ops.js';
import { CONN_F_INACTIVE, CONN_F_SYNC, type SyncConn } from '../../src/core/sync/conn.js';
import { cleanupStaleLabs } from '../../src/lab/lab.js';
import { addr } from '../helpers/packets.js';
import { exampleConn } from '../core/sync/arbitrary.js';
import { ROOT_SKIP } from './harness.js';

const PREFIX = 'lvssync';
const PEER = fileURLToPath(new URL('./sync-peer.js', import.meta.url));
const NS = { master: `${PREFIX}${process.pid}-m`, backup: `${PREFIX}${process.pid}-b` };
const DEV = { master: 'syncm0', backup: 'syncb0' };
const ADDR = { master: '198.18.40.1', backup: '198.18.40.2' };
const OFF_LINK = '198.18.41.1';

function sh(...argv: string[]): void {
  execFileSync(argv[0]!, argv.slice(1), { stdio: 'pipe', timeout: 10_000 });
}

function conn(protocol: number, cport: number, daddr: Addr, vaddr: Addr, caddr: Addr): SyncConn {
  const tcp = protocol === IPPROTO_TCP;
  const fields = { protocol, cport, vport: 80, dport: 8080, timeoutSec: 900, caddr, vaddr, daddr };
  return exampleConn({ ...fields, flags: tcp ? 0 : CONN_F_INACTIVE, state: tcp ? 1 : 0 });
}

/** JSON lines of a peer process, awaited one by one. */
class Peer {
  private readonly lines: unknown[] = [];
  private waiter: (() => void) | null = null;
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      this.lines.push(JSON.parse(line));
      this.waiter?.();
    });
    child.stderr!.on('data', (c: Buffer) => (this.stderr += c.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** The next line with `key`, within 10 s. */
  async next<T>(key: string): Promise<T> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const i = this.lines.findIndex((l) => typeof l === 'object' && l !== null && key in l);
      if (i >= 0) return (this.lines.splice(i, 1)[0] as Record<string, T>)[key]!;
      if (Date.now() > deadline || this.child.exitCode !== null)
        throw new Error(`peer gave no "${key}" line (exit ${this.child.exitCode}): ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 100);
      });
    }
  }
}

function peer(role: 'master' | 'backup', config: SyncDaemonConfig, conns: SyncConn[] = []): Peer {
  const args = ['netns', 'exec', NS[role], process.execPath, PEER, role, JSON.stringify(config)];
  if (role === 'master') args.push(JSON.stringify(conns));
  return new Peer(
    spawn('ip', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SYNC_PEER_ADDR: ADDR[role], SYNC_PEER_OFFLINK_ADDR: OFF_LINK },
    }),
  );
}

function daemonConfig(role: 'master' | 'backup', group: string): SyncDaemonConfig {
  return {
    state: role,
    mcastInterface: DEV[role],
    syncId: 7,
    syncMaxLen: 0,
    mcastGroup: addr(group),
    mcastPort: 8848,
    mcastTtl: 1,
  };
}

describe('connection sync over multicast between two namespaces (root, netns)', { skip: ROOT_SKIP }, () => {
  before(() => {
    cleanupStaleLabs(PREFIX);
    for (const ns of Object.values(NS)) {
      sh('ip', 'netns', 'add', ns);
      sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    }
    sh(
      'ip',
      '-n',
      NS.master,
      'link',
      'add',
      DEV.master,
      'type',
      'veth',
      'peer',
      'name',
      DEV.backup,
      'netns',
      NS.backup,
    );
    for (const role of ['master', 'backup'] as const) {
      sh('ip', '-n', NS[role], 'addr', 'add', `${ADDR[role]}/24`, 'dev', DEV[role]);
      const v6 = role === 'master' ? '2001:db8:40::1/64' : '2001:db8:40::2/64';
      sh('ip', '-n', NS[role], 'addr', 'add', v6, 'dev', DEV[role], 'nodad');
      sh('ip', '-n', NS[role], 'link', 'set', DEV[role], 'up');
    }
    // An address of the master's on none of the backup's networks, for a sender off the link.
    sh('ip', '-n', NS.master, 'addr', 'add', `${OFF_LINK}/32`, 'dev', DEV.master);
    // Node lists an interface's addresses only once it is running (carrier up on both ends).
    const deadline = Date.now() + 10_000;
    const running = (role: 'master' | 'backup') =>
      execFileSync('ip', ['-n', NS[role], 'link', 'show', 'dev', DEV[role]], { encoding: 'utf8' }).includes(
        'LOWER_UP',
      );
    while (!(running('master') && running('backup'))) {
      assert.ok(Date.now() < deadline, 'veth pair did not come up');
      execFileSync('sleep', ['0.05']);
    }
  });

  after(() => {
    for (const ns of Object.values(NS)) {
      try {
        sh('ip', 'netns', 'del', ns);
      } catch {
        // Not created.
      }
    }
  });

  for (const [family, group] of [
    ['IPv4', '224.0.0.81'],
    ['IPv6', 'ff02::81'],
  ] as const) {
    it(`a backup receives the master's connections on a ${family} group and drops what is foreign`, async () => {
      const conns = [
        conn(IPPROTO_TCP, 40001, addr('198.18.1.11'), addr('198.18.0.1'), addr('198.18.0.2')),
        conn(IPPROTO_UDP, 40002, addr('198.18.1.12'), addr('198.18.0.1'), addr('198.18.0.2')),
        conn(IPPROTO_TCP, 40003, addr('2001:db8:1::11'), addr('2001:db8::1'), addr('2001:db8::2')),
      ];
      const backup = peer('backup', daemonConfig('backup', group));
      try {
        const settled = await backup.next<SyncDaemonConfig>('ready');
        // A veth's MTU is 1500: the backup's default maxlen is 1500 minus the IP and UDP headers.
        assert.equal(settled.syncMaxLen, family === 'IPv4' ? 1472 : 1452);
        const master = peer('master', daemonConfig('master', group), conns);
        const masterStats = await master.next<{ sent: number; entries: number; sendFailures: number }>(
          'stats',
        );
        assert.equal(await master.exited, 0, master.stderr);
        assert.deepEqual([masterStats.entries, masterStats.sent, masterStats.sendFailures], [3, 1, 0]);
        const delivered = await backup.next<SyncConn[]>('conns');
        assert.deepEqual(
          delivered,
          conns.map((c) => ({ ...c, flags: c.flags | CONN_F_SYNC })),
        );
        backup.child.kill('SIGTERM');
        const stats = await backup.next<{
          received: number;
          accepted: number;
          dropped: Record<string, number>;
          wrongInterface: number;
        }>('stats');
        assert.deepEqual(
          [stats.received, stats.accepted, stats.dropped['bad-size'], stats.dropped['wrong-syncid']],
          [3, 1, 1, 1],
        );
        assert.equal(stats.wrongInterface, family === 'IPv4' ? 1 : 0);
      } finally {
        backup.child.kill('SIGKILL');
        await backup.exited;
      }
    });
  }
});
