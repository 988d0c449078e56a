import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, LvsError } from '../../src/core/errors.js';
import { addr4, IPPROTO_TCP } from '../../src/core/inet.js';
import type { ConnRecord, EngineEvent, ServiceSnapshot } from '../../src/core/ops.js';
import type { HostSteering } from '../../src/dataplane/host.js';
import { WorkerEngine } from '../../src/dataplane/worker-engine.js';

const stub = new URL('./stub-director.js', import.meta.url).href;
const key = (port: number) => ({
  af: 4 as const,
  protocol: IPPROTO_TCP as 6,
  addr: addr4(0xc6120001),
  port,
  fwmark: 0,
});
const settings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };

class RecordingHost implements HostSteering {
  readonly syncs: number[][] = [];
  stopped = 0;
  /** What each stop kept, and the holds asked for and released, in order. */
  readonly events: string[] = [];
  sync(services: readonly ServiceSnapshot[]): void {
    this.syncs.push(services.map((s) => s.key.port));
  }
  stop(options: { keepHold?: boolean } = {}): void {
    this.stopped++;
    this.events.push(options.keepHold ? 'stop keeping the hold' : 'stop');
  }
  hold(holdMs: number): void {
    this.events.push(`hold ${holdMs}`);
  }
  releaseHold(): void {
    this.events.push('release');
  }
}

/** A host that refuses, as nft or ip do when they fail, every service list `refuses` matches. */
class FaultyHost extends RecordingHost {
  constructor(private readonly refuses: (ports: number[]) => boolean) {
    super();
  }
  override sync(services: readonly ServiceSnapshot[]): void {
    const ports = services.map((s) => s.key.port);
    if (this.refuses(ports)) throw new Error('nft: Operation not permitted');
    super.sync(services);
  }
}

describe('WorkerEngine (no device)', () => {
  it('runs control operations in the worker, errors keep their LvsError code', async () => {
    const host = new RecordingHost();
    const engine = await WorkerEngine.start({
      tun: null,
      host,
      directorModule: stub,
      idlePollMs: 5,
      tickMs: 10,
    });
    try {
      await engine.execute({ op: 'add-service', key: key(80), settings });
      await assert.rejects(
        engine.execute({ op: 'add-service', key: key(80), settings }),
        (error: unknown) => {
          assert.ok(error instanceof LvsError);
          assert.equal(error.code, ErrorCodes.SERVICE_EXISTS);
          return true;
        },
      );
      await assert.rejects(engine.execute({ op: 'zero' }), (error: unknown) => {
        assert.ok(!(error instanceof LvsError));
        assert.match((error as Error).message, /unsupported/);
        return true;
      });
      await engine.execute({ op: 'add-service', key: key(443), settings });
      await engine.execute({ op: 'delete-service', key: key(80) });
      const snapshot = await engine.snapshot({ connections: false });
      assert.deepEqual(
        snapshot.services.map((s) => s.key.port),
        [443],
      );
      assert.deepEqual(
        [snapshot.services[0]!.stats.conns, snapshot.services[0]!.stats.inPkts],
        ['18446744073709551615', '9007199254740993'],
        'u64 counters cross from the worker exactly',
      );
      // The host follows each accepted change that alters steering, and only those.
      assert.deepEqual(host.syncs, [[80], [80, 443], [443]]);
      const stats = await engine.stats();
      assert.equal(stats.rxPackets, 0);
      // Housekeeping runs while idle.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok((await engine.snapshot({ connections: false })).connTableBuckets >= 3);
    } finally {
      await engine.close();
    }
    assert.equal(host.stopped, 1);
    await engine.close();
    assert.equal(host.stopped, 1, 'close is idempotent');
    await assert.rejects(engine.snapshot({ connections: false }), /exited/);
  });

  it('a change the host refuses is not made: the director and the steering stay as they were', async () => {
    let refuseRemoval = false;
    const host = new FaultyHost((ports) => ports.includes(666) || (refuseRemoval && !ports.includes(80)));
    const engine = await WorkerEngine.start({ tun: null, host, directorModule: stub, idlePollMs: 5 });
    const ports = async () => (await engine.snapshot({ connections: false })).services.map((s) => s.key.port);
    try {
      await engine.execute({ op: 'add-service', key: key(80), settings });
      const refused = (error: unknown) => {
        assert.ok(error instanceof LvsError);
        assert.equal(error.code, ErrorCodes.HOST_REFUSED);
        assert.match(error.message, /nothing was changed: nft: Operation not permitted/);
        return true;
      };
      await assert.rejects(engine.execute({ op: 'add-service', key: key(666), settings }), refused);
      assert.deepEqual(await ports(), [80]);
      refuseRemoval = true;
      await assert.rejects(engine.execute({ op: 'delete-service', key: key(80) }), refused);
      assert.deepEqual(await ports(), [80]);
      assert.deepEqual(host.syncs.at(-1), [80], 'the steering is back where it was');
    } finally {
      await engine.close();
    }
  });

  it('a worker that dies takes the steering away and reports the failure', async () => {
    const host = new RecordingHost();
    const engine = await WorkerEngine.start({ tun: null, host, directorModule: stub, idlePollMs: 5 });
    const failed = new Promise<EngineEvent>((resolve) => engine.onEvent(resolve));
    await assert.rejects(
      engine.execute({ op: 'set-timeouts', timeouts: { tcp: 1, tcpfin: 1, udp: 1 } }),
      /exited/,
    );
    const event = await failed;
    assert.equal(event.kind, 'failed');
    assert.match(event.kind === 'failed' ? event.reason : '', /worker died: exit code 3/);
    assert.equal(host.stopped, 1);
    await assert.rejects(engine.snapshot({ connections: false }), /exited/);
    await engine.close();
    assert.equal(host.stopped, 2, 'close after a failure undoes the steering again, harmlessly');
  });

  it('a restart hands the connection table over through the worker: held, exported, imported, released', async () => {
    const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };
    const configure = async (engine: WorkerEngine) => {
      await engine.execute({ op: 'add-service', key: key(80), settings });
      await engine.execute({
        op: 'add-dest',
        key: key(80),
        addr: addr4(0xc612010b),
        port: 80,
        settings: masq,
      });
    };
    const record = (cport: number): ConnRecord => ({
      service: key(80),
      af: 4,
      protocol: IPPROTO_TCP,
      caddr: addr4(0xc6120002),
      cport,
      vaddr: addr4(0xc6120001),
      vport: 80,
      daddr: addr4(0xc612010b),
      dport: 80,
      state: 'ESTABLISHED',
      expiresMs: 600_000,
      template: false,
    });
    const oldHost = new RecordingHost();
    const old = await WorkerEngine.start({ tun: null, host: oldHost, idlePollMs: 5 });
    let handedOver: ConnRecord[];
    try {
      await configure(old);
      const first = await old.takeOver([record(40000), record(40001)]);
      assert.equal(first.imported, 2);
      const handOver = await old.handOver(5_000);
      assert.equal(handOver.held, true);
      assert.equal(handOver.holdError, null);
      handedOver = handOver.records;
    } finally {
      await old.close();
    }
    assert.deepEqual(oldHost.events, ['release', 'hold 5000', 'stop keeping the hold']);
    assert.deepEqual(
      handedOver.map((r) => [r.cport, r.state, r.daddr]),
      [40000, 40001].map((cport) => [cport, 'ESTABLISHED', addr4(0xc612010b)]),
    );
    assert.ok(handedOver.every((r) => r.expiresMs > 590_000 && r.expiresMs <= 600_000));

    const newHost = new RecordingHost();
    const next = await WorkerEngine.start({ tun: null, host: newHost, idlePollMs: 5 });
    try {
      await configure(next);
      const result = await next.takeOver(handedOver);
      assert.equal(result.imported, 2);
      const listed = (await next.snapshot({ connections: true })).connections!;
      assert.deepEqual(listed.map((c) => c.cport).sort(), [40000, 40001]);
      assert.deepEqual(newHost.events, ['release']);
    } finally {
      await next.close();
    }
    assert.deepEqual(newHost.events, ['release', 'stop'], 'a close without a hand-over holds nothing');
  });

  it('reports a director module that cannot load as a startup failure', async () => {
    await assert.rejects(
      WorkerEngine.start({
        tun: null,
        host: null,
        directorModule: new URL('./missing.js', import.meta.url).href,
      }),
      /missing\.js|Cannot find module/,
    );
  });
});
