// LVS-DR (ipvsadm -g, the default method) through the real daemon on the layer-2 data plane
// (--dataplane packet): a router in front, lvsd handing the client's packets, unchanged, to two
// real servers on its LAN that hold the VIP on lo and answer the client through the router.
// Checked as an operator would: Route in -Ln, round robin, the client's address in nginx's log,
// 50 MB both ways intact with no reply through lvsd, the connection states in -Lnc, a real
// server whose MAC changes mid-transfer, the TUN data plane refusing -g, the host left as found.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildDirectRoutingLab, until, type Lab } from '../../src/lab/lab.js';
import {
  assertDownloadBypassesDirector,
  assertRoundRobinSeesClient,
  assertUploadStoredOnce,
  sha256,
  stopForGood,
  vipUrl,
} from './answers-directly.js';
import { hostState, Lvsd, ROOT_SKIP } from './harness.js';

const BULK_MB = 50;

/** lvsd on the packet plane with an rr service on the VIP's port 80. */
async function startDirector(lab: Lab): Promise<Lvsd> {
  // No restart hold: the stop at the end is for good, and must leave the host as found.
  const director = new Lvsd(lab, ['--dataplane', 'packet', '--restart-hold', '0']);
  await director.ready();
  director.adm(`-A -t ${lab.addr.vip}:80 -s rr`);
  return director;
}

describe(
  'LVS-DR end to end on --dataplane packet (root, netns)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    let lab: Lab;
    let director: Lvsd;
    let stateBefore: string;

    before(async () => {
      lab = await buildDirectRoutingLab({ prefix: 'lvsdr', bulkFileMb: BULK_MB });
      stateBefore = hostState(lab);
      director = await startDirector(lab);
      // -g on one, no method (ipvsadm's default, direct routing) on the other.
      director.adm(`-a -t ${lab.addr.vip}:80 -r ${lab.addr.realServers[0]} -g`);
      director.adm(`-a -t ${lab.addr.vip}:80 -r ${lab.addr.realServers[1]}`);
    });

    after(() => stopForGood(lab, director, stateBefore));

    it('lists both real servers as Route, saved as -g', () => {
      const [service] = director.list();
      assert.deepEqual(
        service!.dests.map((d) => [d.dest, d.forward]),
        lab.addr.realServers.map((rs) => [`${rs}:80`, 'Route']),
      );
      assert.match(director.adm('-S -n'), /-a -t 198\.18\.2\.1:80 -r 198\.18\.1\.11:80 -g -w 1/);
    });

    it('round-robins over both, and each real server sees the client itself', () => {
      assertRoundRobinSeesClient(lab);
    });

    it('-Lnc shows the connections, as a director that sees only the client has them', () => {
      const rows = director.connections();
      assert.ok(rows.length >= 4, `${rows.length} entries`);
      for (const row of rows) {
        assert.equal(row.virtual, `${lab.addr.vip}:80`);
        assert.ok(lab.addr.realServers.some((rs) => row.destination === `${rs}:80`));
        // INPUT_ONLY: the client's FIN and last ACK leave it in FIN_WAIT (NAT would say TIME_WAIT).
        assert.equal(row.state, 'FIN_WAIT');
      }
    });

    it('carries 50 MB to the client intact; the replies never cross the director', () => {
      assertDownloadBypassesDirector(lab, director);
    });

    it('carries 50 MB from the client intact', () => {
      assertUploadStoredOnce(lab);
    });

    it('a real server whose MAC changes mid-transfer keeps its download: the neighbour table follows', async () => {
      const expected = sha256(readFileSync(lab.bulkFile!));
      // About 5 s at this rate: time to change the serving real server's MAC under it.
      const script = `curl -sS --max-time 120 --limit-rate 10M ${vipUrl(lab, '/files/bulk.bin')} | sha256sum`;
      const download = lab.spawn(lab.ns.client, ['sh', '-c', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let output = '';
      download.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const done = new Promise<number | null>((resolve) => download.once('exit', resolve));
      const serving = await until(
        'the download to be established',
        () => director.connections().find((row) => row.state === 'ESTABLISHED')?.destination,
        10_000,
      );
      const i = lab.addr.realServers.findIndex((rs) => serving === `${rs}:80`);
      const rs = lab.ns.realServers[i]!;
      const before = lab.run(rs, ['cat', '/sys/class/net/eth0/address']).trim();
      lab.run(rs, ['ip', 'link', 'set', 'eth0', 'address', '02:dd:00:00:01:0' + (i + 1)]);
      // As a host with a new interface does: it asks for its neighbours, and they learn its MAC.
      lab.run(rs, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
      // Any packet to the director does (a refused connection is enough; no ping on the machine).
      lab.run(rs, ['sh', '-c', `curl -s --max-time 2 http://${lab.addr.dip}:9/ || true`]);
      assert.notEqual(lab.run(rs, ['cat', '/sys/class/net/eth0/address']).trim(), before);
      assert.equal(await done, 0);
      assert.equal(output.split(' ')[0], expected);
    });

    it('the TUN data plane refuses -g at once, naming --dataplane packet', () => {
      const dir = join(lab.tmpDir, 'tun-lvsd');
      const tun = new Lvsd(lab, ['--dataplane', 'tun'], { ns: lab.ns.client, dir });
      return tun
        .ready()
        .then(() => {
          tun.adm(`-A -t 198.18.0.2:8080 -s rr`);
          assert.throws(
            () => tun.adm(`-a -t 198.18.0.2:8080 -r 198.18.0.254:8080 -g`),
            /lvsd's tun data plane cannot forward by direct routing .*--dataplane packet/,
          );
        })
        .finally(async () => {
          await tun.stop();
          tun.kill();
        });
    });
  },
);

// Seed 000's director with -g: the VIP is the director's own address and the real servers' default
// gateway is the director, so their replies (from the VIP) cross it. For the director's kernel those
// are martians, its own address as a source (accept_local=0); kernel IPVS operators turn on
// accept_local (and loosen rp_filter) on the real servers' interface. lvsd takes them off the wire
// instead and hands them to the kernel through its own device, and the interface's sysctls stay as found.
describe(
  'LVS-DR with the VIP on the director itself, the real servers routing through it (root, netns)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    let lab: Lab;
    let director: Lvsd;
    let stateBefore: string;

    before(async () => {
      lab = await buildDirectRoutingLab({ prefix: 'lvsqp', bulkFileMb: 5, vipOnDirector: true });
      stateBefore = hostState(lab);
      director = await startDirector(lab);
      for (const rs of lab.addr.realServers) director.adm(`-a -t ${lab.addr.vip}:80 -r ${rs} -g`);
    });

    after(() => stopForGood(lab, director, stateBefore));

    it('curl through the director works, both real servers see the client, with accept_local left off', () => {
      assertRoundRobinSeesClient(lab);
      const expected = sha256(readFileSync(lab.bulkFile!));
      const script = `curl -sS --max-time 60 ${vipUrl(lab, '/files/bulk.bin')} | sha256sum`;
      assert.equal(
        lab.run(lab.ns.client, ['sh', '-c', script], { timeoutMs: 70_000 }).split(' ')[0],
        expected,
      );
      for (const conf of ['all', 'eth0'])
        assert.equal(
          lab.run(lab.ns.director, ['sysctl', '-n', `net.ipv4.conf.${conf}.accept_local`]).trim(),
          '0',
        );
    });
  },
);
