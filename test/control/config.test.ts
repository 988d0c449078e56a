// The configuration document: what it accepts and refuses (naming the field), its defaults, and
// the plan that turns one configuration into another, touching only what differs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  afterRemoval,
  ConfigError,
  configFromSnapshot,
  emptyConfig,
  parseConfig,
  planChanges,
  renderConfig,
  serviceName,
} from '../../src/control/config.js';
import type { LvsdConfig, RealServerConfig, ServiceConfig } from '../../src/control/config.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { ControlService } from '../../src/control/service.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';

const EXAMPLE = {
  version: 1,
  timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  services: [
    {
      protocol: 'tcp',
      address: '198.18.0.1',
      port: 80,
      scheduler: 'rr',
      persistence: { timeout: 300 },
      realServers: [
        { address: '198.19.0.11', port: 80, weight: 2 },
        { address: '198.19.0.12', port: 80, method: 'masq', upperThreshold: 10, lowerThreshold: 5 },
      ],
    },
    { fwmark: 7, family: 'inet6', scheduler: 'sh', schedulerFlags: ['flag-2'] },
  ],
  syncDaemons: [{ state: 'master', interface: 'eth0', syncId: 9 }],
};

function refusal(doc: unknown): string {
  try {
    parseConfig(typeof doc === 'string' ? doc : JSON.stringify(doc));
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('accepted');
}

test('a document is read with its defaults filled in, and renders canonically', () => {
  const config = parseConfig(JSON.stringify(EXAMPLE));
  const first = config.services[0]!;
  assert.deepEqual(first.persistence, { timeout: 300, netmask: 32, engine: null });
  assert.deepEqual(first.realServers[0], {
    address: '198.19.0.11',
    port: 80,
    method: 'masq',
    weight: 2,
    upperThreshold: 0,
    lowerThreshold: 0,
  });
  assert.equal(config.services[1]!.onePacket, false);
  assert.deepEqual(config.syncDaemons[0], {
    state: 'master',
    interface: 'eth0',
    syncId: 9,
    maxLength: 0, // settled from the interface when the daemon starts
    group: '224.0.0.81',
    port: 8848,
    ttl: 1,
  });
  assert.deepEqual(parseConfig(renderConfig(config)), config, 'the rendered text reads back the same');
  assert.deepEqual(parseConfig('{"version":1}'), emptyConfig());
});

test('every refusal names the field and says what is wrong', () => {
  const withService = (patch: object) => ({ version: 1, services: [{ ...EXAMPLE.services[0], ...patch }] });
  const cases: Array<[unknown, string]> = [
    ['{"version":1,', 'not valid JSON'],
    [[], 'the document must be an object'],
    [{ services: [] }, 'version: missing (this lvsd reads version 1)'],
    [{ version: 2 }, 'version: 2 is not a version this lvsd reads (it reads version 1)'],
    [{ version: 1, sevrices: [] }, 'the document.sevrices: unknown field'],
    [withService({ port: 70000 }), 'services[0].port must be an integer in 0..65535'],
    [
      withService({ protocol: 'icmp' }),
      'services[0].protocol must be tcp, udp or sctp (or give a fwmark instead)',
    ],
    [withService({ address: '198.18.0.300' }), 'services[0].address must be an IPv4 or IPv6 address'],
    [
      withService({ realServers: [{ address: '198.19.0.1', port: 80, weight: -1 }] }),
      'services[0].realServers[0].weight must be an integer in 0..65535',
    ],
    [
      withService({ realServers: [{ address: '198.19.0.1', port: 80, healthCheck: { kind: 'TCP_CHECK' } }] }),
      'services[0].realServers[0].healthCheck: health checks are not supported in lvsd.json yet',
    ],
    [
      withService({ realServers: [{ address: '198.19.0.1', port: 80, method: 'nat' }] }),
      'services[0].realServers[0].method must be one of masq, local, tunnel, route',
    ],
    [
      withService({
        realServers: [{ address: '198.19.0.1', port: 80, tunnel: { type: 'gre', port: 0, csum: 'csum' } }],
      }),
      'services[0].realServers[0].tunnel is only for method tunnel',
    ],
    [
      withService({
        realServers: [
          {
            address: '198.19.0.1',
            port: 80,
            method: 'tunnel',
            tunnel: { type: 'vxlan', port: 0, csum: 'csum' },
          },
        ],
      }),
      'services[0].realServers[0].tunnel.type must be one of ipip, gue, gre',
    ],
    [
      withService({
        realServers: [
          { address: '198.19.0.1', port: 80 },
          { address: '198.19.0.1', port: 80 },
        ],
      }),
      'services[0].realServers[1]: 198.19.0.1:80 is already realServers[0]',
    ],
    [
      { version: 1, services: [EXAMPLE.services[0], { ...EXAMPLE.services[0], scheduler: 'wlc' }] },
      'services[1]: TCP 198.18.0.1:80 is already services[0]',
    ],
    [
      withService({ persistence: { timeout: 0 } }),
      'services[0].persistence.timeout must be an integer in 1..2678400',
    ],
    [
      { version: 1, timeouts: { tcp: 0, tcpfin: 1, udp: 1 } },
      'timeouts.tcp must be an integer in 1..2678400',
    ],
    [{ version: 1, services: [{ fwmark: 0 }] }, 'services[0].fwmark must be an integer in 1..4294967295'],
    [
      {
        version: 1,
        syncDaemons: [
          { state: 'master', interface: 'eth0' },
          { state: 'master', interface: 'eth1' },
        ],
      },
      'syncDaemons: at most one master and one backup',
    ],
  ];
  for (const [doc, message] of cases) {
    const got = refusal(doc);
    assert.ok(got.startsWith(message), `${JSON.stringify(doc)}: got ${JSON.stringify(got)}`);
  }
});

function freshService(): ControlService {
  return new ControlService(
    new InProcessEngine(new Director({ clock: new ManualClock(), connCapacity: 64 })),
  );
}

async function running(api: ControlService): Promise<LvsdConfig> {
  return configFromSnapshot(await api.snapshot({ connections: false }), await api.syncDaemons());
}

test('the plan between two configurations touches only what differs', async () => {
  const before = parseConfig(JSON.stringify(EXAMPLE));
  assert.deepEqual(planChanges(before, before), []);
  const after = structuredClone(before);
  after.services[0]!.realServers[1]!.weight = 5;
  after.services[0]!.realServers.push({ ...after.services[0]!.realServers[0]!, address: '198.19.0.13' });
  after.services[0]!.realServers.shift();
  after.services.pop();
  const plan = planChanges(before, after);
  assert.deepEqual(
    plan.map((c) => (c.kind === 'execute' ? c.op.op : c.kind)),
    ['edit-dest', 'add-dest', 'delete-dest', 'delete-service'],
    'additions and edits first, removals last',
  );
  assert.equal(plan[0]!.entry, 'services[0].realServers[0] (TCP 198.18.0.1:80 -> 198.19.0.12:80)');
});

/** How a real server forwards: masquerading, or a tunnel of each type the document names. */
const FORWARDS: Pick<RealServerConfig, 'method' | 'tunnel'>[] = [
  { method: 'masq' },
  { method: 'tunnel' },
  { method: 'tunnel', tunnel: { type: 'gre', port: 0, csum: 'nocsum' } },
  { method: 'tunnel', tunnel: { type: 'gre', port: 0, csum: 'csum' } },
];

const serviceArb: fc.Arbitrary<ServiceConfig> = fc
  .record({
    port: fc.integer({ min: 1, max: 4 }),
    scheduler: fc.constantFrom('rr', 'wlc', 'sh'),
    persistence: fc.option(
      fc.record({ timeout: fc.integer({ min: 1, max: 900 }), netmask: fc.constant(32) }),
    ),
    dests: fc.uniqueArray(fc.integer({ min: 1, max: 6 }), { maxLength: 4 }),
    weight: fc.integer({ min: 0, max: 3 }),
    forward: fc.constantFrom(...FORWARDS),
  })
  .map((r) => ({
    protocol: 'tcp' as const,
    address: '198.18.0.1',
    port: r.port,
    scheduler: r.scheduler,
    schedulerFlags: [],
    onePacket: false,
    persistence: r.persistence ? { ...r.persistence, engine: null } : null,
    realServers: r.dests.map((d) => ({
      address: `198.19.0.${d}`,
      port: 80,
      method: r.forward.method,
      weight: r.weight + d,
      upperThreshold: 0,
      lowerThreshold: 0,
      ...(r.forward.tunnel ? { tunnel: r.forward.tunnel } : {}),
    })),
  }));

const configArb: fc.Arbitrary<LvsdConfig> = fc
  .record({
    services: fc.uniqueArray(serviceArb, { maxLength: 4, selector: serviceName }),
    udp: fc.integer({ min: 1, max: 400 }),
  })
  .map(({ services, udp }) => ({ ...emptyConfig(), services, timeouts: { tcp: 900, tcpfin: 120, udp } }));

test('applying any configuration over any other runs exactly the new one', async () => {
  await fc.assert(
    fc.asyncProperty(configArb, configArb, async (first, second) => {
      const api = freshService();
      await api.apply(first);
      await api.apply(second);
      const got = await running(api);
      // What is added comes after what is kept (the order of addition): compare as sets.
      const bySet = (c: LvsdConfig) =>
        renderConfig({
          ...c,
          services: [...c.services]
            .sort((a, b) => serviceName(a).localeCompare(serviceName(b)))
            .map((s) => ({
              ...s,
              realServers: [...s.realServers].sort((a, b) => a.address.localeCompare(b.address)),
            })),
        });
      assert.equal(bySet(got), bySet(second));
      assert.deepEqual(planChanges(got, second), [], 'nothing left to do');
    }),
    { numRuns: 150 },
  );
});

test('afterRemoval predicts what a removal leaves, and nothing for what is not there', () => {
  const config = parseConfig(JSON.stringify(EXAMPLE));
  const key = {
    af: 4 as const,
    protocol: 6 as const,
    addr: { af: 4 as const, a: 0xc6120001, b: 0, c: 0, d: 0 },
    port: 80,
    fwmark: 0,
  };
  const dest = { af: 4 as const, a: 0xc613000b, b: 0, c: 0, d: 0 };
  assert.equal(afterRemoval(config, { op: 'delete-service', key })!.services.length, 1);
  const without = afterRemoval(config, { op: 'delete-dest', key, addr: dest, port: 80 })!;
  assert.deepEqual(
    without.services[0]!.realServers.map((d) => d.address),
    ['198.19.0.12'],
  );
  assert.equal(afterRemoval(config, { op: 'delete-dest', key, addr: dest, port: 81 }), null);
  assert.equal(afterRemoval(config, { op: 'delete-service', key: { ...key, port: 81 } }), null);
  assert.deepEqual(afterRemoval(config, { op: 'clear' })!.services, []);
  assert.equal(afterRemoval(config, { op: 'set-timeouts', timeouts: { tcp: 1, tcpfin: 1, udp: 1 } }), null);
});
