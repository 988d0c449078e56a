// The route lookup for tunnelled real servers (against canned `ip -j route get` answers), and the
// packet loop giving the director those routes: when a real server is added, and again later.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { formatAddr, IPPROTO_TCP, type Addr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import { VNET_HDR_LEN } from '../../src/core/packet/vnet.js';
import { PacketLoop, ROUTE_REFRESH_MS } from '../../src/dataplane/packet-loop.js';
import { IpRouteLookup, type RouteLookup } from '../../src/dataplane/routes.js';
import { addr, buildPacket, withVnet } from '../helpers/packets.js';
import { FakeDriver } from './fake-device.js';

function lookupWith(answer: unknown, mtu = '1500\n'): IpRouteLookup {
  return new IpRouteLookup({
    run: () => JSON.stringify(answer),
    readFile: (path) => (path === '/sys/class/net/eth1/mtu' ? mtu : null),
  });
}

test('the route gives the source the host would pick and the MTU of the route, else of its interface', () => {
  const rip = addr('198.18.1.11');
  const route = { dst: '198.18.1.11', dev: 'eth1', prefsrc: '198.18.1.1' };
  assert.deepEqual(lookupWith(route && [route]).lookup(rip), { source: addr('198.18.1.1'), mtu: 1500 });
  assert.deepEqual(lookupWith([{ ...route, metrics: [{ mtu: 1400 }] }]).lookup(rip)?.mtu, 1400);
  // One of the host's own addresses, no route at all, or nonsense: no route.
  assert.equal(lookupWith([{ ...route, type: 'local', dev: 'lo' }]).lookup(rip), null);
  assert.equal(lookupWith([]).lookup(rip), null);
  assert.equal(lookupWith([{ ...route, prefsrc: 'bogus' }]).lookup(rip), null);
  assert.equal(lookupWith([route], 'x').lookup(rip), null);
  const failing = new IpRouteLookup({
    run: () => {
      throw new Error('RTNETLINK answers: Network is unreachable');
    },
    readFile: () => null,
  });
  assert.equal(failing.lookup(rip), null);
});

test('the packet loop routes a tunnelled real server when it is added, and looks again later', () => {
  const clock = new ManualClock(0);
  const driver = new FakeDriver();
  const looked: string[] = [];
  let mtu = 1500;
  const routes: RouteLookup = {
    lookup: (a: Addr) => {
      looked.push(formatAddr(a));
      return { source: addr('198.18.1.1'), mtu };
    },
  };
  const director = new Director({ clock, random: () => 0.5, connCapacity: 64 });
  const loop = new PacketLoop({
    director,
    driver,
    clock,
    frameMax: 65546,
    mainDevice: 'lvs0',
    idlePollMs: 0,
    tickMs: 100,
    report: () => undefined,
    routes,
  });
  const key: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: addr('198.18.0.1'), port: 80, fwmark: 0 };
  loop.execute({
    op: 'add-service',
    key,
    settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
  });
  const settings = { method: 'tunnel' as const, weight: 1, uThreshold: 0, lThreshold: 0 };
  loop.execute({ op: 'add-dest', key, addr: addr('198.18.1.11'), port: 80, settings });
  assert.deepEqual(looked, ['198.18.1.11']);
  const device = driver.opened.get('lvs0')!;
  const syn = buildPacket({ src: '198.18.0.2', dst: '198.18.0.1', sport: 40000, dport: 80, tcpFlags: 0x02 });
  device.inbox.push(withVnet(syn));
  loop.turn();
  const [frame] = device.outbox;
  assert.equal(frame![VNET_HDR_LEN + 9], 4, 'sent encapsulated');
  assert.deepEqual([...frame!.subarray(VNET_HDR_LEN + 12, VNET_HDR_LEN + 16)], [198, 18, 1, 1]);
  // The path's MTU shrinks; the next refresh brings it to the director.
  mtu = 100;
  clock.advance(ROUTE_REFRESH_MS);
  loop.turn();
  assert.deepEqual(looked, ['198.18.1.11', '198.18.1.11']);
  device.inbox.push(
    withVnet(
      buildPacket({
        src: '198.18.0.2',
        dst: '198.18.0.1',
        sport: 40001,
        dport: 80,
        tcpFlags: 0x02,
        payload: new Uint8Array(200),
        dontFragment: true,
      }),
    ),
  );
  loop.turn();
  // The DF packet no longer fits: the client hears "fragmentation needed" for an MTU of 80.
  const reply = device.outbox[1]!;
  assert.deepEqual([reply[VNET_HDR_LEN + 20], reply[VNET_HDR_LEN + 21]], [3, 4]);
  assert.equal((reply[VNET_HDR_LEN + 26]! << 8) | reply[VNET_HDR_LEN + 27]!, 80);
});
