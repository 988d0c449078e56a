// LVS-TUN (ipvsadm -i) through the real daemon: a router in front, lvsd encapsulating to two real
// servers that hold the VIP on their tunnel devices and answer the client through the router,
// never through the director. Checked as an operator would, for each tunnel type: round robin,
// the client's address in nginx's log, 50 MB intact, path MTU discovery through the tunnel (each
// type's headers taking their share), the listings, and the director's host left as found.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildTunnelLab, type Lab } from '../../src/lab/lab.js';
import {
  assertDownloadBypassesDirector,
  assertRoundRobinSeesClient,
  assertUploadStoredOnce,
  stopForGood,
} from './answers-directly.js';
import { hostState, Lvsd, ROOT_SKIP } from './harness.js';

const BULK_MB = 50;
const GUE_PORT = 6080;
/** What the stand-in decapsulators count as handed over; any other count is a drop, by reason. */
const HANDED_OVER = ['ipip', 'gre', 'gre+csum', 'gue', 'gue+csum'];
const DECAP = fileURLToPath(new URL('./tunnel-decap.js', import.meta.url));
const escaped = (text: string): string => text.replace(/[+.]/g, '\\$&');

describe('LVS-TUN end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let lab: Lab;
  let director: Lvsd;
  let stateBefore: string;
  /** The stand-ins for tunnel drivers the kernel lacks, with the drivers each stands in for. */
  const decapsulators: { child: ChildProcess; drivers: string[] }[] = [];

  /** Packets the stand-ins handed over by kind and dropped by reason, summed; null where the kernel decapsulates `driver`. */
  async function decapsulated(driver: string): Promise<Record<string, number> | null> {
    const standIns = decapsulators.filter((d) => d.drivers.includes(driver));
    if (standIns.length === 0) return null;
    const total: Record<string, number> = {};
    for (const { child } of standIns) {
      child.stdin!.write('stats\n');
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      for (const [what, n] of Object.entries(JSON.parse(line.toString()) as Record<string, number>))
        total[what] = (total[what] ?? 0) + n;
    }
    return total;
  }

  /** Every real server switched to `options` (an -e of each, as an operator would). */
  function tunnelWith(options: string): void {
    for (const rs of lab.addr.realServers) director.adm(`-e -t ${lab.addr.vip}:80 -r ${rs} -i ${options}`);
  }

  before(async () => {
    lab = await buildTunnelLab({
      prefix: 'lvsqt',
      bulkFileMb: BULK_MB,
      guePort: GUE_PORT,
      driverFallback: async (ns, missing) => {
        const args = missing.flatMap((d) => (d === 'fou' ? ['fou', String(GUE_PORT)] : [d]));
        const child = spawn('ip', ['netns', 'exec', ns, process.execPath, DECAP, ...args], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        decapsulators.push({ child, drivers: missing });
        const [line] = (await once(child.stdout!, 'data')) as [Buffer];
        assert.equal(line.toString().trim(), 'ready');
      },
    });
    stateBefore = hostState(lab);
    // No restart hold: the stop at the end is for good, and must leave the host as found.
    director = new Lvsd(lab, ['--restart-hold', '0']);
    await director.ready();
    director.adm(`-A -t ${lab.addr.vip}:80 -s rr`);
    for (const rs of lab.addr.realServers) director.adm(`-a -t ${lab.addr.vip}:80 -r ${rs} -i`);
  });

  after(() =>
    stopForGood(lab, director, stateBefore, () => {
      for (const { child } of decapsulators) child.stdin!.end();
    }),
  );

  it('lists both real servers as Tunnel', () => {
    const [service] = director.list();
    assert.deepEqual(
      service!.dests.map((d) => [d.dest, d.forward]),
      lab.addr.realServers.map((rs) => [`${rs}:80`, 'Tunnel']),
    );
    assert.match(
      director.adm('-S -n'),
      /-a -t 198\.18\.2\.1:80 -r 198\.18\.1\.1[12]:80 -i -w 1 --tun-type ipip/,
    );
  });

  it('round-robins over both, and each real server sees the client itself', () => {
    assertRoundRobinSeesClient(lab);
  });

  it('carries 50 MB to the client intact; the replies never cross the director', () => {
    assertDownloadBypassesDirector(lab, director);
  });

  it('carries 50 MB from the client intact, learning the tunnel MTU from ICMP fragmentation needed', () => {
    // Before: the client's path to the VIP is its interface's 1500 bytes, which the tunnel exceeds.
    assert.doesNotMatch(lab.run(lab.ns.client, ['ip', 'route', 'get', lab.addr.vip]), /mtu/);
    assertUploadStoredOnce(lab);
    // The director told the client 1500 - 20 bytes fit; the kernel keeps it as the route's MTU.
    assert.match(lab.run(lab.ns.client, ['ip', 'route', 'get', lab.addr.vip]), /mtu 1480/);
  });

  // Each type's headers are larger than the last's, so each step teaches the client a smaller MTU
  // (or keeps it: both gue steps have 32 bytes of headers).
  for (const { options, driver, kind, info, mtu } of [
    { options: '--tun-type gre --tun-nocsum', driver: 'gre', kind: 'gre', info: 'gre:-c', mtu: 1476 },
    { options: '--tun-type gre --tun-csum', driver: 'gre', kind: 'gre+csum', info: 'gre:+c', mtu: 1472 },
    {
      options: `--tun-type gue --tun-port ${GUE_PORT} --tun-nocsum`,
      driver: 'fou',
      kind: 'gue',
      info: `gue:${GUE_PORT}:-c`,
      mtu: 1468,
    },
    {
      options: `--tun-type gue --tun-port ${GUE_PORT} --tun-csum`,
      driver: 'fou',
      kind: 'gue+csum',
      info: `gue:${GUE_PORT}:+c`,
      mtu: 1468,
    },
  ]) {
    it(`${options}: listed so, the client seen, 50 MB from it intact through MTU ${mtu}`, async () => {
      tunnelWith(options);
      assert.match(director.adm('-S -n'), new RegExp(`-r 198\\.18\\.1\\.11:80 -i -w 1 ${options}\n`));
      assert.match(
        director.adm('-Ln --tun-info'),
        new RegExp(`198\\.18\\.1\\.12:80 +Tunnel +${escaped(info)} `),
      );
      const before = (await decapsulated(driver))?.[kind] ?? 0;
      assertRoundRobinSeesClient(lab);
      assertUploadStoredOnce(lab, lab.addr, `${kind.replace('+', '-')}.bin`);
      assert.match(lab.run(lab.ns.client, ['ip', 'route', 'get', lab.addr.vip]), new RegExp(`mtu ${mtu}`));
      const after = await decapsulated(driver);
      if (after !== null) {
        // The stand-in checks what the kernel's driver would: every packet of this kind, none dropped.
        assert.ok(
          after[kind]! - before > (BULK_MB * 1024 * 1024) / mtu,
          `${kind} packets: ${JSON.stringify(after)}`,
        );
        const drops = Object.keys(after).filter((what) => !HANDED_OVER.includes(what));
        assert.deepEqual(drops, [], 'nothing dropped by the real servers');
      }
    });
  }
});
