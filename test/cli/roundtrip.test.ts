// Round trip: any table lvsd can hold, saved with -S -n and restored with -R into an empty
// lvsd, saves identically. Pure (parser, formatter, InProcessEngine) for volume, plus one run
// over a real socket.

import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import fc from 'fast-check';
import { DaemonClient } from '../../src/cli/client.js';
import { formatRules, NUMERIC_NAMES } from '../../src/ipvsadm/format.js';
import { emptyListFormat } from '../../src/ipvsadm/parse.js';
import { runLvsadm } from '../../src/cli/run.js';
import type { ControlApi } from '../../src/control/api.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { ControlService } from '../../src/control/service.js';
import { configFromSnapshot, parseConfig, renderConfig } from '../../src/control/config.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { addr4, addr6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import type { Addr } from '../../src/core/inet.js';
import { SVC_F_ONEPACKET, SVC_F_PERSISTENT } from '../../src/core/model.js';
import type { ForwardMethod, ServiceKey } from '../../src/core/model.js';
import type { ControlOp } from '../../src/core/ops.js';
import { removeDir, spawnDaemon, tempDir } from './daemon-harness.js';

function freshService(): ControlService {
  return new ControlService(new InProcessEngine(new Director({ clock: new ManualClock() })));
}

const serviceArb = fc.record({
  af: fc.constantFrom<4 | 6>(4, 6),
  kind: fc.constantFrom('tcp', 'udp', 'sctp', 'fwmark'),
  fwmark: fc.integer({ min: 1, max: 0xffffffff }),
  port: fc.integer({ min: 0, max: 65535 }),
  scheduler: fc.constantFrom('rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'sh', 'mh'),
  persistent: fc.option(fc.integer({ min: 1, max: 86400 * 31 })),
  netmask: fc.integer({ min: 1, max: 128 }),
  ops: fc.boolean(),
  schedFlags: fc.integer({ min: 0, max: 7 }),
  addrSeed: fc.nat(),
  dests: fc.array(
    fc.record({
      seed: fc.nat(),
      port: fc.integer({ min: 0, max: 65535 }),
      method: fc.constantFrom<ForwardMethod>('masq', 'route', 'tunnel'),
      weight: fc.integer({ min: 0, max: 65535 }),
      uThreshold: fc.integer({ min: 0, max: 100000 }),
      lThreshold: fc.integer({ min: 0, max: 100000 }),
    }),
    { maxLength: 4 },
  ),
});

function addrFromSeed(af: 4 | 6, seed: number): Addr {
  return af === 4
    ? addr4(0xc6120000 + (seed % 0x1fffe) + 1)
    : addr6(0x20010db8, 0, seed >>> 0, 1 + (seed % 1000));
}

/** The ops ipvsadm could have sent for one generated service. */
type GeneratedService = typeof serviceArb extends fc.Arbitrary<infer T> ? T : never;

function opsFor(s: GeneratedService): ControlOp[] {
  const fwmark = s.kind === 'fwmark';
  const protocol = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, sctp: IPPROTO_SCTP, fwmark: 0 }[
    s.kind
  ] as ServiceKey['protocol'];
  const persistent = s.persistent !== null;
  const port = fwmark ? 0 : persistent ? s.port : Math.max(1, s.port);
  const key: ServiceKey = {
    af: s.af,
    protocol,
    addr: fwmark ? (s.af === 4 ? addr4(0) : addr6(0, 0, 0, 0)) : addrFromSeed(s.af, s.addrSeed),
    port,
    fwmark: fwmark ? s.fwmark : 0,
  };
  const flags =
    (persistent ? SVC_F_PERSISTENT : 0) |
    (s.ops && (fwmark || protocol === IPPROTO_UDP) ? SVC_F_ONEPACKET : 0) |
    (s.schedFlags << 3);
  const ops: ControlOp[] = [
    {
      op: 'add-service',
      key,
      settings: {
        scheduler: s.scheduler,
        flags,
        timeout: persistent ? s.persistent! : 0,
        netmaskPrefix: persistent ? Math.min(s.netmask, s.af === 4 ? 32 : 128) : s.af === 4 ? 32 : 128,
        pe: null,
      },
    },
  ];
  for (const d of s.dests) {
    const destPort = !fwmark && d.method !== 'masq' ? port : d.port;
    ops.push({
      op: 'add-dest',
      key,
      addr: addrFromSeed(s.af, d.seed),
      port: destPort,
      settings: { method: d.method, weight: d.weight, uThreshold: d.uThreshold, lThreshold: d.lThreshold },
    });
  }
  return ops;
}

async function build(services: GeneratedService[]): Promise<ControlService> {
  const service = freshService();
  for (const s of services) {
    for (const op of opsFor(s)) await service.execute(op).catch(() => undefined);
  }
  return service;
}

const numeric = { ...emptyListFormat(), numeric: true };

async function save(api: ControlApi): Promise<string> {
  return formatRules(await api.snapshot({ connections: false }), numeric, NUMERIC_NAMES);
}

async function restoreWithLvsadm(rules: string, api: ControlApi): Promise<{ exit: number; stderr: string }> {
  let stderr = '';
  const exit = await runLvsadm(['-R'], {
    api,
    program: 'lvsadm',
    stdout: () => undefined,
    stderr: (t) => (stderr += t),
    stdinLines: () => createInterface({ input: Readable.from([rules]) }),
  });
  return { exit, stderr };
}

test('random tables: -S -n, then -R into an empty director, saves the same', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(serviceArb, { maxLength: 6 }), async (services) => {
      const saved = await save(await build(services));
      const target = freshService();
      const { exit, stderr } = await restoreWithLvsadm(saved, target);
      assert.equal(stderr, '');
      assert.equal(exit, 0);
      assert.equal(await save(target), saved);
    }),
    { numRuns: 200 },
  );
});

test('random tables: the configuration document (with thresholds and timeouts) applies to the same table', async () => {
  const documentOf = async (api: ControlService) =>
    renderConfig(configFromSnapshot(await api.snapshot({ connections: false }), await api.syncDaemons()));
  await fc.assert(
    fc.asyncProperty(fc.array(serviceArb, { maxLength: 6 }), async (services) => {
      const source = await build(services);
      await source.execute({ op: 'set-timeouts', timeouts: { tcp: 1000, tcpfin: 0, udp: 77 } });
      const text = await documentOf(source);
      const target = freshService();
      await target.apply(parseConfig(text));
      assert.equal(await documentOf(target), text);
      assert.equal(await save(target), await save(source), 'the same -S -n listing, in the same order');
    }),
    { numRuns: 100 },
  );
});

test('over a real socket: -S -n from one lvsd restores into another with -R', async () => {
  const services = fc.sample(fc.array(serviceArb, { minLength: 3, maxLength: 6 }), {
    numRuns: 1,
    seed: 42,
  })[0]!;
  const saved = await save(await build(services));
  assert.ok(saved.includes('-A '), 'the sample table is not empty');
  const dir = await tempDir();
  const daemon = await spawnDaemon(dir);
  const client = new DaemonClient(daemon.socketPath);
  try {
    const { exit } = await restoreWithLvsadm(saved, client);
    assert.equal(exit, 0);
    assert.equal(await save(client), saved);
  } finally {
    client.close();
    await daemon.stop();
    await removeDir(dir);
  }
});
