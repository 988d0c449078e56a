// LVS-TUN (ipvsadm -i) through the real daemon: a router in front, lvsd encapsulating to two real
// servers that hold the VIP on tunl0 and answer the client through the router, never through the
// director. Checked as an operator would: round robin, the client's address in nginx's log, 50 MB
// both ways intact, path MTU discovery through the tunnel, and the director's host left as found.

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
const DECAP = fileURLToPath(new URL('./ipip-decap.js', import.meta.url));

describe('LVS-TUN end to end (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let lab: Lab;
  let director: Lvsd;
  let stateBefore: string;
  const decapsulators: ChildProcess[] = [];

  before(async () => {
    lab = await buildTunnelLab({
      prefix: 'lvt9',
      bulkFileMb: BULK_MB,
      tunl0Fallback: async (ns) => {
        const child = spawn('ip', ['netns', 'exec', ns, process.execPath, DECAP], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        decapsulators.push(child);
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
      for (const child of decapsulators) child.stdin!.end();
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
});
