import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { formatAddr, IPPROTO_TCP, type Addr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import type { EngineEvent } from '../../src/core/ops.js';
import { parsePacket } from '../../src/core/packet/parse.js';
import { VNET_HDR_LEN } from '../../src/core/packet/vnet.js';
import { PacketLoop, ROUTE_REFRESH_MS } from '../../src/dataplane/packet-loop.js';
import type { RouteLookup } from '../../src/dataplane/routes.js';
import { addr, buildPacket, withVnet } from '../helpers/packets.js';
import { FakeDriver } from './fake-device.js';

const markService = (fwmark: number): ServiceKey => ({
  af: 4,
  protocol: 0,
  addr: addr('0.0.0.0'),
  port: 0,
  fwmark,
});
const settings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };
const syn = (dst: string, dport: number) =>
  withVnet(buildPacket({ src: '198.18.0.2', dst, protocol: 'tcp', sport: 40000, dport, tcpFlags: 0x02 }));

function makeLoop(routes?: RouteLookup) {
  const clock = new ManualClock(0);
  const driver = new FakeDriver();
  const director = new Director({ clock, random: () => 0.5, connCapacity: 64 });
  const events: EngineEvent[] = [];
  const loop = new PacketLoop({
    report: (event) => events.push(event),
    director,
    driver,
    clock,
    frameMax: 65546,
    mainDevice: 'lvs0',
    idlePollMs: 0,
    tickMs: 100,
    routes,
  });
  return { loop, driver, director, events, clock };
}

test('a fwmark service has a device of its own: marked traffic on any address and port is balanced', () => {
  const { loop, driver } = makeLoop();
  loop.execute({ op: 'add-service', key: markService(7), settings });
  loop.execute({ op: 'add-dest', key: markService(7), addr: addr('198.18.1.11'), port: 0, settings: masq });
  const marked = driver.opened.get('lvsf7')!;
  assert.equal(marked.fwmark, 7);
  marked.inbox.push(syn('198.18.0.1', 443), syn('198.18.0.9', 8443));
  // The same packet without the mark belongs to no service.
  driver.opened.get('lvs0')!.inbox.push(syn('198.18.0.1', 443));
  loop.turn();
  const out = marked.outbox.map((frame) => parsePacket(frame, VNET_HDR_LEN, frame.length - VNET_HDR_LEN));
  assert.deepEqual(
    out.map((p) => (p.ok ? `${formatAddr(p.daddr)}:${p.dport}` : p.reason)),
    ['198.18.1.11:443', '198.18.1.11:8443'],
  );
  // ...and is given back to the kernel as it came.
  assert.deepEqual(driver.opened.get('lvs0')!.outbox, [syn('198.18.0.1', 443)]);
  assert.equal(loop.snapshot(false).dataPath.passed['not-a-service'], 1);
});

test("a fwmark service's device goes with the service, and with -C", () => {
  const { loop, driver } = makeLoop();
  loop.execute({ op: 'add-service', key: markService(7), settings });
  loop.execute({ op: 'add-service', key: markService(8), settings });
  loop.execute({ op: 'delete-service', key: markService(7) });
  assert.equal(driver.opened.get('lvsf7')!.closed, true);
  assert.equal(driver.opened.get('lvsf8')!.closed, false);
  loop.execute({ op: 'clear' });
  assert.equal(driver.opened.get('lvsf8')!.closed, true);
  assert.equal(driver.opened.get('lvs0')!.closed, false);
});

test("the kernel's queue drops on every device are counted, a closed fwmark device's too", () => {
  const { loop, driver } = makeLoop();
  loop.execute({ op: 'add-service', key: markService(7), settings });
  driver.opened.get('lvs0')!.dropped = 40;
  driver.opened.get('lvsf7')!.dropped = 2;
  assert.equal(loop.snapshot(false).dataPath.device?.drops.queueFull, 42);
  loop.execute({ op: 'delete-service', key: markService(7) });
  driver.opened.get('lvs0')!.dropped = 41;
  assert.equal(loop.counters().drops.queueFull, 43);
});

test('a device that cannot be opened refuses the service and changes nothing', () => {
  const { loop, driver, director } = makeLoop();
  driver.refuse.add('lvsf9');
  assert.throws(() => loop.execute({ op: 'add-service', key: markService(9), settings }), /busy/);
  assert.equal(director.snapshot({ connections: false }).services.length, 0);
  // And a service the director refuses closes the device opened for it.
  loop.execute({ op: 'add-service', key: markService(7), settings });
  assert.throws(() => loop.execute({ op: 'add-service', key: markService(7), settings }), /exists/);
  assert.equal(driver.opened.get('lvsf7')!.closed, false, 'the existing service keeps its device');
});

test('a packet-path exception is counted, shown in the snapshot and reported, at most every 10 s', () => {
  const { loop, driver, director, events, clock } = makeLoop();
  director.process = () => {
    throw new Error('boom');
  };
  const main = driver.opened.get('lvs0')!;
  main.inbox.push(syn('198.18.0.1', 80), syn('198.18.0.1', 81));
  loop.turn();
  clock.advance(10_000);
  main.inbox.push(syn('198.18.0.1', 82));
  loop.turn();
  assert.equal(loop.snapshot(false).dataPath.device?.drops.exception, 3);
  assert.deepEqual(
    events.map((e) => (e.kind === 'exception' ? [e.count, e.message.split('\n')[0]] : e.kind)),
    [
      [1, 'Error: boom'],
      [3, 'Error: boom'],
    ],
  );
  assert.equal(main.outbox.length, 0);
});

test('the packet loop routes a directly routed real server as it does a tunnelled one, not a masqueraded one', () => {
  const looked: string[] = [];
  const routes: RouteLookup = {
    lookup: (a: Addr) => {
      looked.push(formatAddr(a));
      return { source: addr('198.18.1.1'), mtu: 1500 };
    },
  };
  const { loop, clock } = makeLoop(routes);
  const key: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: addr('198.18.0.1'), port: 80, fwmark: 0 };
  loop.execute({
    op: 'add-service',
    key,
    settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
  });
  const settings = { weight: 1, uThreshold: 0, lThreshold: 0 };
  for (const [rs, method] of [
    ['198.18.1.11', 'route'],
    ['198.18.1.12', 'masq'],
  ] as const)
    loop.execute({ op: 'add-dest', key, addr: addr(rs), port: 80, settings: { ...settings, method } });
  assert.deepEqual(looked, ['198.18.1.11']);
  clock.advance(ROUTE_REFRESH_MS);
  loop.turn();
  assert.deepEqual(looked, ['198.18.1.11', '198.18.1.11']);
});

test('the packet loop routes a tunnelled real server when it is added, and looks again later', () => {
  const looked: string[] = [];
  let mtu = 1500;
  const routes: RouteLookup = {
    lookup: (a: Addr) => {
      looked.push(formatAddr(a));
      return { source: addr('198.18.1.1'), mtu };
    },
  };
  const { loop, driver, clock } = makeLoop(routes);
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

test('the snapshot names the TUN plane, and no interfaces of a layer-2 plane', () => {
  const { dataPath } = makeLoop().loop.snapshot(false);
  assert.equal(dataPath.plane, 'tun');
  assert.equal(dataPath.interfaces, undefined);
});
