// Two lvsd directors under real keepalived (VRRP only, the shipped notify script): a client holds
// keep-alive connections and a long rate-limited download through the VIP; the backup lists them
// over connection sync; director a dies (every process SIGKILLed, its links down); b's keepalived
// takes the VIP and the DIP over and the same connections carry on through b's lvsd. The
// download must arrive byte for byte. The failover time and the share of connections that
// survived are printed for the record (they are measured, not asserted against a bound).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  buildHaLab,
  clientVipMac,
  failoverFigures,
  HA_CLIENT_ADDR,
  HA_PORT,
  HA_VIP,
  HaTraffic,
  sha256,
  startHaPair,
  until,
  type HaLab,
} from '../../src/lab/ha-lab.js';
import { cleanupStaleLabs } from '../../src/lab/lab.js';
import { checkDataplane, DATAPLANE, dataplaneArgs, ROOT_SKIP } from './harness.js';

const PREFIX = 'lvv11';
const CONNS = 8;
const BULK_MB = 40;
/** 40 MB at 4 MB/s: about 10 s, so that the failover falls in the middle of it. */
const RATE = '4M';
const CLIENT_MS = 25_000;

const keepalivedSkip = (() => {
  try {
    execFileSync('keepalived', ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'keepalived is not installed (scripts/setup.sh)';
  }
})();

/** Director a dies; once b holds the VIP and runs the master sync role, returns when a died (wall clock). */
async function crashMasterA(lab: HaLab): Promise<number> {
  const [a, b] = lab.directors;
  a.crash();
  // From here on, whatever reaches the client came through b.
  const killedAt = Date.now();
  await until('director b takes the VIP over', () => (b.holdsVip() ? true : undefined)).catch(
    (error: Error) => {
      throw new Error(
        `${error.message}; b's keepalived log:\n${readFileSync(b.keepalivedLog, 'utf8').slice(-3000)}`,
      );
    },
  );
  await until('director b runs the master sync role', () =>
    b.syncRoles().join() === 'master' ? true : undefined,
  );
  return killedAt;
}

async function assertDownloadIntact(lab: HaLab, traffic: HaTraffic): Promise<void> {
  const download = await traffic.download;
  assert.equal(download.status, 0, `curl: ${download.stderr}`);
  assert.equal(await sha256(traffic.downloadPath), await sha256(lab.bulkFile), 'the file arrived intact');
}

describe('the shipped keepalived.conf (root, netns)', { skip: ROOT_SKIP || keepalivedSkip }, () => {
  it('passes keepalived -t on a director with eth0 and eth1', () => {
    const ns = `${PREFIX}${process.pid}-conf`;
    const conf = fileURLToPath(new URL('../../../packaging/keepalived/keepalived.conf', import.meta.url));
    const run = (...argv: string[]) =>
      execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: 'pipe' });
    cleanupStaleLabs(PREFIX);
    run('ip', 'netns', 'add', ns);
    try {
      run('ip', '-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1');
      // Exits non-zero on errors and on warnings such as a script run without script security.
      run('ip', 'netns', 'exec', ns, 'keepalived', '-t', '-f', conf);
    } finally {
      run('ip', 'netns', 'del', ns);
    }
  });
});

describe(
  'VRRP failover of a pair of lvsd directors with keepalived (root, netns)',
  { skip: ROOT_SKIP || keepalivedSkip },
  () => {
    let lab: HaLab;
    let traffic: HaTraffic;
    let ports: number[] = [];

    before(async () => {
      lab = buildHaLab({ prefix: PREFIX, bulkFileMb: BULK_MB, lvsdArgs: dataplaneArgs() });
      await startHaPair(lab);
      for (const d of lab.directors) checkDataplane((args) => d.adm(args), DATAPLANE);
    });

    after(async () => {
      await lab?.teardown();
    });

    it('the backup lists the keep-alive connections and the download the client holds through the master', async () => {
      const [a, b] = lab.directors;
      assert.equal(b.holdsVip(), false, 'the backup holds no VIP');
      traffic = new HaTraffic(lab, { conns: CONNS, durationMs: CLIENT_MS, rate: RATE });
      ports = await until('the keep-alive connections are open', () => traffic.ports(CONNS));
      const ours = (rows: string) =>
        ports.every((port) =>
          rows
            .split('\n')
            .some((row) => row.includes(`${HA_CLIENT_ADDR}:${port} `) && row.includes('ESTABLISHED')),
        );
      await until('the master lists them', () => (ours(a.adm('-Lnc')) ? true : undefined));
      const listed = await until('the backup lists them and the download', () => {
        const rows = b.adm('-Lnc');
        const toVip = rows
          .split('\n')
          .filter((row) => row.includes('ESTABLISHED') && row.includes(` ${HA_VIP}:${HA_PORT} `));
        return ours(rows) && toVip.length >= CONNS + 1 ? toVip : undefined;
      });
      assert.ok(listed.length >= CONNS + 1);
      // Only the master answers ARP for the VIP: the backup's lvsd (--floating-vips) has no proxy entry.
      assert.equal(clientVipMac(lab), a.publicMac());
      assert.equal(lab.run(b.ns, ['ip', 'neigh', 'show', 'proxy']), '');
    });

    it('director a dies; b takes over, the download completes intact and the connections carry on', async (t) => {
      assert.equal(ports.length, CONNS, 'the first test opened the connections');
      const [, b] = lab.directors;
      const killedAt = await crashMasterA(lab);
      // Those that carry on are b's now (the figures below say how many did).
      await until('every keep-alive connection answers through b', () =>
        traffic.allAnsweredSince(killedAt, CONNS),
      ).catch(() => undefined);
      const rows = b.adm('-Lnc');
      const download = await traffic.download;
      await traffic.clientDone;
      const figures = failoverFigures(traffic.events, killedAt, CONNS);
      const share = ((100 * figures.survived) / figures.conns).toFixed(0);
      t.diagnostic(
        `VRRP failover: ${figures.failoverMs} ms from the kill to the first reply through the backup; ` +
          `${figures.survived}/${figures.conns} keep-alive connections survived (${share}%), ` +
          `the ${BULK_MB} MB download ${download.status === 0 ? 'completed' : 'failed'}`,
      );
      await assertDownloadIntact(lab, traffic);
      assert.equal(clientVipMac(lab), b.publicMac(), "b's gratuitous ARP moved the VIP");
      assert.notEqual(figures.failoverMs, null, 'a reply came through the backup');
      assert.deepEqual(figures.lost, []);
      assert.equal(figures.survived, CONNS);
      for (const port of ports) assert.match(rows, new RegExp(`ESTABLISHED\\s+${HA_CLIENT_ADDR}:${port} `));
    });
  },
);

interface MasterDaemonJson {
  state: string;
  stats: {
    fullSync: { requested: number; completed: number; entries: number };
    joins: { heard: number; served: number } | { sent: number };
    peerMasters: { splitBrains: number };
  };
}

const daemonsOf = (director: { adm(args: string): string }): MasterDaemonJson[] =>
  (JSON.parse(director.adm('-L --daemon --json')) as { daemons: MasterDaemonJson[] }).daemons;

describe(
  'a director that comes back is sent the whole table, and a failover back to it keeps idle connections (root, netns)',
  { skip: ROOT_SKIP || keepalivedSkip },
  () => {
    let lab: HaLab;
    let traffic: HaTraffic;
    let ports: number[] = [];
    const idleRows = (rows: string) =>
      ports.filter((port) =>
        rows
          .split('\n')
          .some((row) => row.includes(`${HA_CLIENT_ADDR}:${port} `) && row.includes('ESTABLISHED')),
      );

    before(async () => {
      lab = buildHaLab({ prefix: 'lvsfs', bulkFileMb: 6, lvsdArgs: dataplaneArgs() });
      await startHaPair(lab);
      for (const d of lab.directors) checkDataplane((args) => d.adm(args), DATAPLANE);
    });

    after(async () => {
      await lab?.teardown();
    });

    it('connections opened while b was down are on b once it rejoins as backup', async () => {
      const [a, b] = lab.directors;
      b.crash();
      // Idle long-lived connections (one request each, then nothing), and a slow download: all
      // through a while b hears nothing.
      traffic = new HaTraffic(lab, { conns: CONNS, durationMs: 90_000, rate: '256K', idle: true });
      ports = await until('the idle connections are open', () => traffic.ports(CONNS));
      await until('a lists them', () => (idleRows(a.adm('-Lnc')).length === CONNS ? true : undefined));
      await b.revive();
      await until('b rejoins as VRRP backup with the backup sync role', () =>
        b.syncRoles().join() === 'backup' ? true : undefined,
      );
      // Only the whole table can bring them: idle, they are never synced again on the kernel's schedule.
      await until('b lists every idle connection', () =>
        idleRows(b.adm('-Lnc')).length === CONNS ? true : undefined,
      );
      const [onA] = daemonsOf(a);
      assert.equal(onA!.state, 'master');
      assert.ok('served' in onA!.stats.joins && onA!.stats.joins.served >= 1, JSON.stringify(onA!.stats));
      assert.ok(onA!.stats.fullSync.completed >= 2, 'its own start and b JOIN');
      assert.equal(onA!.stats.peerMasters.splitBrains, 0);
      const [onB] = daemonsOf(b);
      assert.ok('sent' in onB!.stats.joins && onB!.stats.joins.sent >= 1, JSON.stringify(onB!.stats));
    });

    it('a dies; b takes over and every idle connection answers through it', async (t) => {
      assert.equal(ports.length, CONNS, 'the first test opened the connections');
      const killedAt = await crashMasterA(lab);
      traffic.ask();
      await until('every idle connection answers through b', () => traffic.allAnsweredSince(killedAt, CONNS));
      const figures = failoverFigures(traffic.events, killedAt, CONNS);
      t.diagnostic(
        `failover back to the returned director: ${figures.survived}/${figures.conns} idle connections answered, ` +
          `first reply ${figures.failoverMs} ms after the kill`,
      );
      assert.deepEqual(figures.lost, []);
      assert.equal(figures.survived, CONNS);
      await assertDownloadIntact(lab, traffic);
    });
  },
);
