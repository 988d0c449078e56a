// LVS-DR (ipvsadm -g, the default method) through the real daemon on the layer-2 data plane
// (--dataplane packet): a router in front, lvsd handing the client's packets, unchanged, to two
// real servers on its LAN that hold the VIP on lo and answer the client through the router.
// Checked as an operator would: Route in -Ln, round robin, the client's address in nginx's log,
// 50 MB both ways intact with no reply through lvsd, the connection states in -Lnc, the doctor, a real
// server whose MAC changes mid-transfer, the TUN data plane refusing -g, the host left as found.
// Then the same over IPv6 (ND instead of ARP), curl -6 against nginx on the real servers' [::]:80.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DoctorReport } from '../../src/core/doctor.js';
import {
  buildDirectRoutingLab,
  until,
  type DirectRoutingLabOptions,
  type Lab,
  type LabAddresses,
} from '../../src/lab/lab.js';
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

/** `[address]:port` for IPv6, as lvsadm takes and prints it. */
const at = (address: string, port: number): string =>
  address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;

/**
 * lvsd on the director of a direct-routing lab, serving the family's VIP:80 by round robin: -g
 * on one real server, no method (ipvsadm's default, direct routing) on the other.
 */
async function serveByDirectRouting(lab: Lab, addr: LabAddresses): Promise<Lvsd> {
  // No restart hold: the stop at the end is for good, and must leave the host as found.
  const director = new Lvsd(lab, ['--dataplane', 'packet', '--restart-hold', '0']);
  await director.ready();
  director.adm(`-A -t ${at(addr.vip, 80)} -s rr`);
  director.adm(`-a -t ${at(addr.vip, 80)} -r ${at(addr.realServers[0]!, 80)} -g`);
  director.adm(`-a -t ${at(addr.vip, 80)} -r ${at(addr.realServers[1]!, 80)}`);
  return director;
}

/** -Ln lists both real servers as Route. */
function assertListedAsRoute(director: Lvsd, addr: LabAddresses): void {
  const [service] = director.list();
  assert.deepEqual(
    service!.dests.map((d) => [d.dest, d.forward]),
    addr.realServers.map((rs) => [at(rs, 80), 'Route']),
  );
}

interface DirectRoutingSuite {
  lab: Lab;
  director: Lvsd;
  /** The family's addresses the service is on. */
  addr: LabAddresses;
}

/**
 * The describe's lab and its director serving `addressesOf(lab)` by direct routing
 * (serveByDirectRouting), stopped for good after it, the host left as found.
 */
function directRoutingSuite(
  options: DirectRoutingLabOptions,
  addressesOf = (lab: Lab): LabAddresses => lab.addr,
): DirectRoutingSuite {
  const suite = {} as DirectRoutingSuite;
  let stateBefore = '';
  before(async () => {
    suite.lab = await buildDirectRoutingLab(options);
    suite.addr = addressesOf(suite.lab);
    stateBefore = hostState(suite.lab);
    suite.director = await serveByDirectRouting(suite.lab, suite.addr);
  });
  after(() => stopForGood(suite.lab, suite.director, stateBefore));
  return suite;
}

describe(
  'LVS-DR end to end on --dataplane packet (root, netns)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    const s = directRoutingSuite({ prefix: 'lvsdr', bulkFileMb: BULK_MB });

    it('lists both real servers as Route, saved as -g', () => {
      assertListedAsRoute(s.director, s.lab.addr);
      assert.match(s.director.adm('-S -n'), /-a -t 198\.18\.2\.1:80 -r 198\.18\.1\.11:80 -g -w 1/);
    });

    it('round-robins over both, and each real server sees the client itself', () => {
      assertRoundRobinSeesClient(s.lab);
    });

    it('-Lnc shows the connections, as a director that sees only the client has them', () => {
      const rows = s.director.connections();
      assert.ok(rows.length >= 4, `${rows.length} entries`);
      for (const row of rows) {
        assert.equal(row.virtual, `${s.lab.addr.vip}:80`);
        assert.ok(s.lab.addr.realServers.some((rs) => row.destination === `${rs}:80`));
        // INPUT_ONLY: the client's FIN and last ACK leave it in FIN_WAIT (NAT would say TIME_WAIT).
        assert.equal(row.state, 'FIN_WAIT');
      }
    });

    it("lvsadm doctor: a clean report, the replies around the director being direct routing's design", () => {
      const report = JSON.parse(s.director.adm('doctor --json')) as DoctorReport;
      assert.equal(report.verdict, 'ok', JSON.stringify(report, null, 2));
      assert.equal(report.dataplane, 'packet');
      for (const dest of report.services[0]!.dests) {
        assert.ok(
          dest.evidence.includes(
            'direct routing: its replies go to the clients directly, around the director, as they should',
          ),
          dest.evidence.join('\n'),
        );
      }
    });

    it('carries 50 MB to the client intact; the replies never cross the director', () => {
      assertDownloadBypassesDirector(s.lab, s.director);
    });

    it('carries 50 MB from the client intact', () => {
      assertUploadStoredOnce(s.lab);
    });

    it('a real server whose MAC changes mid-transfer keeps its download: the neighbour table follows', async () => {
      const expected = sha256(readFileSync(s.lab.bulkFile!));
      // About 5 s at this rate: time to change the serving real server's MAC under it.
      const script = `curl -sS --max-time 120 --limit-rate 10M ${vipUrl(s.lab, '/files/bulk.bin')} | sha256sum`;
      const download = s.lab.spawn(s.lab.ns.client, ['sh', '-c', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let output = '';
      download.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const done = new Promise<number | null>((resolve) => download.once('exit', resolve));
      const serving = await until(
        'the download to be established',
        () => s.director.connections().find((row) => row.state === 'ESTABLISHED')?.destination,
        10_000,
      );
      const i = s.lab.addr.realServers.findIndex((rs) => serving === `${rs}:80`);
      const rs = s.lab.ns.realServers[i]!;
      const before = s.lab.run(rs, ['cat', '/sys/class/net/eth0/address']).trim();
      s.lab.run(rs, ['ip', 'link', 'set', 'eth0', 'address', '02:dd:00:00:01:0' + (i + 1)]);
      // As a host with a new interface does: it asks for its neighbours, and they learn its MAC.
      s.lab.run(rs, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
      // Any packet to the director does (a refused connection is enough; no ping on the machine).
      s.lab.run(rs, ['sh', '-c', `curl -s --max-time 2 http://${s.lab.addr.dip}:9/ || true`]);
      assert.notEqual(s.lab.run(rs, ['cat', '/sys/class/net/eth0/address']).trim(), before);
      assert.equal(await done, 0);
      assert.equal(output.split(' ')[0], expected);
    });

    it('the TUN data plane refuses -g at once, naming --dataplane packet', () => {
      const dir = join(s.lab.tmpDir, 'tun-lvsd');
      const tun = new Lvsd(s.lab, ['--dataplane', 'tun'], { ns: s.lab.ns.client, dir });
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

describe(
  'LVS-DR over IPv6 end to end on --dataplane packet (root, netns)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    const s = directRoutingSuite({ prefix: 'lvsq6', bulkFileMb: BULK_MB, ipv6: true }, (lab) => lab.addr6!);

    it('lists both real servers as Route, saved as -g', () => {
      assertListedAsRoute(s.director, s.addr);
      assert.match(s.director.adm('-S -n'), /-a -t \[2001:db8:2::1\]:80 -r \[2001:db8:1::11\]:80 -g -w 1/);
    });

    it('round-robins over both with curl -6, and each real server sees the client itself', () => {
      assertRoundRobinSeesClient(s.lab, s.addr);
      // The director found each real server's MAC by neighbour discovery.
      for (const rs of s.addr.realServers)
        assert.match(s.lab.run(s.lab.ns.director, ['ip', '-6', 'neigh', 'show', rs]), /lladdr/);
    });

    it('no real server answers neighbour discovery for the VIP it holds on lo', async () => {
      // The router asks the LAN for the VIP itself, as it would with the VIP on the link.
      const r = s.lab.ns.router!;
      const route = ['ip', '-6', 'route', 'replace', `${s.addr.vip}/128`, 'dev', 'lan0'];
      s.lab.run(r, route);
      try {
        s.lab.run(r, ['sh', '-c', `curl -6 -s --max-time 2 ${vipUrl(s.lab, '/', s.addr)} || true`]);
        const macs = s.lab.ns.realServers.map((rs) =>
          s.lab.run(rs, ['cat', '/sys/class/net/eth0/address']).trim(),
        );
        const entry = s.lab.run(r, ['ip', '-6', 'neigh', 'show', s.addr.vip, 'dev', 'lan0']);
        for (const mac of macs) assert.doesNotMatch(entry, new RegExp(mac), entry);
      } finally {
        s.lab.run(r, ['ip', '-6', 'route', 'replace', `${s.addr.vip}/128`, 'via', s.addr.dip]);
        s.lab.run(r, ['ip', '-6', 'neigh', 'flush', 'dev', 'lan0', 'to', s.addr.vip]);
      }
    });

    it('carries 50 MB to the client intact; the replies never cross the director', () => {
      assertDownloadBypassesDirector(s.lab, s.director, s.addr);
    });

    it('carries 50 MB from the client intact', () => {
      assertUploadStoredOnce(s.lab, s.addr);
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
    const s = directRoutingSuite({ prefix: 'lvsqp', bulkFileMb: 5, vipOnDirector: true });

    it('curl through the director works, both real servers see the client, with accept_local left off', () => {
      assertRoundRobinSeesClient(s.lab);
      const expected = sha256(readFileSync(s.lab.bulkFile!));
      const script = `curl -sS --max-time 60 ${vipUrl(s.lab, '/files/bulk.bin')} | sha256sum`;
      assert.equal(
        s.lab.run(s.lab.ns.client, ['sh', '-c', script], { timeoutMs: 70_000 }).split(' ')[0],
        expected,
      );
      for (const conf of ['all', 'eth0'])
        assert.equal(
          s.lab.run(s.lab.ns.director, ['sysctl', '-n', `net.ipv4.conf.${conf}.accept_local`]).trim(),
          '0',
        );
    });
  },
);
