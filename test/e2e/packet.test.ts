// --dataplane packet in a namespace lab: the services' frames are read off the interfaces by
// AF_PACKET rings and never cross lvsd's TUN device, the host keeps the VIP's other ports, a real
// server whose MAC changes is found again, a crash and the next start leave the host as found,
// and a real server lvsd cannot place on an interface is refused.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { until } from '../../src/lab/lab.js';
import { hostState, Lvsd, ROOT_SKIP, setupLab, type Setup } from './harness.js';

const VIP = '198.18.0.1';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';

describe('the AF_PACKET data plane (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  const served = (n: number): number[] => {
    const urls = Array.from({ length: n }, () => `http://${VIP}/`);
    const out = s.curl(urls[0]!, ['-H', 'Connection: close', ...urls.slice(1)]);
    return [...out.matchAll(/This is Real Server (\d+)/g)].map((m) => Number(m[1]));
  };
  /** Frames the kernel handed to lvsd's TUN device so far. */
  const tunFrames = (): number =>
    Number(s.lab.run(s.lab.ns.director, ['cat', '/sys/class/net/lvs0/statistics/tx_packets']).trim());
  const addService = (): void => {
    s.director.adm(`-A -t ${VIP}:80 -s rr`);
    s.director.adm(`-a -t ${VIP}:80 -r ${RS1}:80 -m`);
    s.director.adm(`-a -t ${VIP}:80 -r ${RS2}:80 -m`);
  };

  before(async () => {
    s = await setupLab({ prefix: 'lvsaf', lvsdArgs: () => ['--dataplane', 'packet', '--restart-hold', '0'] });
  });
  after(async () => {
    await s?.teardown();
  });
  afterEach(() => {
    if (!s.director.closed) s.director.adm('-C');
  });

  it("reads the services' frames off pub0 and br0, not through the TUN device; the VIP's other ports stay the host's", async () => {
    addService();
    const table = s.lab.run(s.lab.ns.director, ['nft', 'list', 'table', 'netdev', 'lvsd']);
    assert.deepEqual([...table.matchAll(/hook ingress device "([^"]+)"/g)].map((m) => m[1]).sort(), [
      'br0',
      'pub0',
    ]);
    const before = tunFrames();
    const seen = served(20);
    assert.equal(seen.length, 20);
    assert.deepEqual([seen.filter((n) => n === 1).length, seen.filter((n) => n === 2).length], [10, 10]);
    // 20 connections are 200+ packets; the TUN device saw none of them (a stray IPv6 frame at most).
    assert.ok(tunFrames() - before < 10, `TUN frames: ${tunFrames() - before}`);
    const device = (
      JSON.parse(s.director.adm('-L --json')) as { dataPath: { device: { rxPackets: number } } }
    ).dataPath.device;
    assert.ok(device.rxPackets >= 20 * 8, JSON.stringify(device));
    // A port of the VIP that is no service's: the host's own listener answers, lvsd never sees it.
    const listener = s.lab.spawn(s.lab.ns.director, [
      'socat',
      `TCP-LISTEN:8080,bind=${VIP},reuseaddr`,
      'SYSTEM:echo host',
    ]);
    try {
      const answer = await until(
        'the host listener on the VIP',
        () =>
          s.lab.run(s.lab.ns.client, ['socat', '-T', '2', '-', `TCP:${VIP}:8080`], { input: '' }) ||
          undefined,
        5000,
      );
      assert.equal(answer.trim(), 'host');
    } finally {
      listener.kill();
    }
  });

  it("follows a real server whose MAC changed (the kernel's neighbour table, announced by netlink)", async () => {
    addService();
    assert.equal(served(2).length, 2);
    const rs = s.lab.ns.realServers[0]!;
    // A new NIC (or a moved VM): the real server's first packet ARPs for the DIP, and the
    // director's kernel learns the new MAC from it; lvsd hears of it over netlink.
    const script =
      'ip link set eth0 down; ip link set eth0 address 02:00:5e:00:af:01; ip link set eth0 up; ' +
      `ip route add default via ${s.lab.addr.dip}; ` +
      `socat -T1 /dev/null TCP:${s.lab.addr.dip}:9,connect-timeout=1 || true`;
    s.lab.run(rs, ['sh', '-c', script]);
    // rr alternates: two requests reach real server 1 once it is found again.
    const seen = await until(
      'real server 1 with its new MAC',
      () => {
        const got = s.curl(`http://${VIP}/`, [
          '-H',
          'Connection: close',
          '--max-time',
          '2',
          `http://${VIP}/`,
        ]);
        return got.includes('This is Real Server 1') ? got : undefined;
      },
      20_000,
    );
    assert.match(seen, /This is Real Server 1/);
    const neigh = s.lab.run(s.lab.ns.director, ['ip', 'neigh', 'show', RS1]);
    assert.match(neigh, /02:00:5e:00:af:01/);
  });

  it('refuses a real server it cannot place on an interface, and changes nothing', () => {
    s.director.adm(`-A -t ${VIP}:80 -s rr`);
    assert.throws(
      () => s.director.adm(`-a -t ${VIP}:80 -r 198.19.200.1:80 -m`),
      /cannot tell which interface reaches real server 198\.19\.200\.1/,
    );
    assert.deepEqual(s.director.list()[0]!.dests, []);
  });

  it('a crash takes the netdev table with it and leaves inet lvsd failing closed; the next start serves, its stop leaves the host as found', async () => {
    addService();
    s.director.kill();
    await s.director.exitCode(10_000).catch(() => undefined);
    // The netdev table belongs to lvsd's own nft session (docs/host.md): the kernel removes it when
    // that session ends with lvsd, and the frames fall to table inet lvsd, which drops lvsd's flows.
    const tables = (): string => s.lab.run(s.lab.ns.director, ['nft', 'list', 'tables']);
    await until(
      "the dead lvsd's netdev table to go",
      () => (/netdev lvsd/.test(tables()) ? undefined : true),
      10_000,
    );
    assert.match(tables(), /table inet lvsd/);
    // The dead lvsd's socket file: ready() must wait for the next one's.
    rmSync(s.director.socket, { force: true });
    const next = new Lvsd(s.lab, ['--dataplane', 'packet', '--restart-hold', '0']);
    try {
      await next.ready();
      // The saved configuration comes back: its services are served again.
      assert.equal(
        await until('the restarted lvsd serving', () => (served(2).length === 2 ? true : undefined), 10_000),
        true,
      );
      next.adm('-C');
      assert.equal(await next.stop(), 0);
    } finally {
      next.kill();
    }
    assert.equal(hostState(s.lab), s.stateBefore);
  });
});
