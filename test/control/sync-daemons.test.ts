// The sync daemons as lvsd runs them (ControlService with runSyncDaemons): a master's engine
// reports connections, the master multicasts them, the backup's engine holds them; -L --daemon's
// counters say so. Over the in-memory multicast bus, with directors in this thread.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { addr4, parseAddr } from '../../src/core/inet.js';
import type { Engine } from '../../src/core/engine.js';
import type { ServiceKey } from '../../src/core/model.js';
import type { SyncConn } from '../../src/core/sync/conn.js';
import type { FullSyncPageRequest } from '../../src/core/sync/full-sync.js';
import type { SyncTuning } from '../../src/core/sync/master.js';
import type { ConnRecord, ControlOp, EngineEvent, SyncDaemonConfig } from '../../src/core/ops.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { ControlService } from '../../src/control/service.js';
import { fakeInterfaces } from '../../src/sync/interfaces.js';
import { FakeSyncBus } from '../../src/sync/transport.js';
import { addr, buildPacket, withVnet } from '../helpers/packets.js';

const interfaces = fakeInterfaces([{ name: 'sync0', mtu: 1500, ipv4: '198.18.5.1' }]);
const key: ServiceKey = { af: 4, protocol: 6, addr: parseAddr('198.18.0.1')!, port: 80, fwmark: 0 };
const setup: ControlOp[] = [
  {
    op: 'add-service',
    key,
    settings: { scheduler: 'rr', flags: 0, timeout: 300, netmaskPrefix: 32, pe: null },
  },
  {
    op: 'add-dest',
    key,
    addr: parseAddr('198.18.1.11')!,
    port: 80,
    settings: { method: 'masq', weight: 1, uThreshold: 0, lThreshold: 0 },
  },
];

function daemonConfig(state: 'master' | 'backup'): SyncDaemonConfig {
  const group = addr('224.0.0.81');
  return {
    state,
    mcastInterface: 'sync0',
    syncId: 5,
    syncMaxLen: 0,
    mcastGroup: group,
    mcastPort: 8848,
    mcastTtl: 1,
  };
}

/** An in-thread engine whose 'sync' events the test sends, as the packet loop does each turn. */
class ReportingEngine implements Engine {
  private readonly listeners = new Set<(event: EngineEvent) => void>();
  private readonly inner: InProcessEngine;

  constructor(readonly director: Director) {
    this.inner = new InProcessEngine(director);
  }

  execute = (op: ControlOp) => this.inner.execute(op);
  snapshot = (options: { connections: boolean }) => this.inner.snapshot(options);
  connections = (from: number, limit: number) => this.inner.connections(from, limit);
  setSyncSource = (tuning: Partial<SyncTuning> | null) => this.inner.setSyncSource(tuning);
  importSynced = (conns: SyncConn[]) => this.inner.importSynced(conns);
  syncPage = (request: FullSyncPageRequest) => this.inner.syncPage(request);
  handOver = (holdMs: number) => this.inner.handOver(holdMs);
  takeOver = (records: ConnRecord[]) => this.inner.takeOver(records);
  close = () => this.inner.close();

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** What the packet loop does after a turn. */
  turn(): void {
    const conns = this.director.takeSyncConns();
    if (conns.length > 0) for (const l of this.listeners) l({ kind: 'sync', conns });
  }
}

function side(bus: FakeSyncBus, clock: Clock, options: { address?: string; capacity?: number } = {}) {
  const director = new Director({ clock, connCapacity: options.capacity ?? 64 });
  const engine = new ReportingEngine(director);
  const own = options.address
    ? fakeInterfaces([{ name: 'sync0', mtu: 1500, ipv4: options.address }])
    : interfaces;
  const logged: string[] = [];
  const service = new ControlService(engine, {
    runSyncDaemons: true,
    sync: { interfaces: own, transport: bus, clock },
    log: (level, text) => logged.push(`${level}: ${text}`),
  });
  return { director, engine, service, logged };
}

/** Waits (bounded) until `done` holds; the daemons run on real timers. */
async function until(done: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `count` established connections from distinct clients, as a restart or a sync would bring them. */
function established(count: number): ConnRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    af: 4 as const,
    protocol: 6 as const,
    caddr: addr4(0xc6120000 + 256 + i),
    cport: 40000 + (i % 20000),
    vaddr: key.addr,
    vport: 80,
    daddr: parseAddr('198.18.1.11')!,
    dport: 80,
    state: 'ESTABLISHED',
    expiresMs: 800_000,
    template: false,
    service: key,
  }));
}

const realClock: Clock = { now: () => performance.now() };

function clientPacket(d: Director, tcpFlags: number): void {
  const frame = withVnet(
    buildPacket({ src: '198.18.0.2', dst: '198.18.0.1', protocol: 'tcp', sport: 41000, dport: 80, tcpFlags }),
  );
  const buf = new Uint8Array(frame.length + 100);
  buf.set(frame);
  d.process(buf, 0, frame.length);
}

test('a master lvsd sends its connections and a backup lvsd holds them, with counters', async () => {
  const bus = new FakeSyncBus();
  const clock = new ManualClock(1000);
  const master = side(bus, clock);
  const backup = side(bus, clock);
  for (const s of [master, backup]) for (const op of setup) await s.service.execute(op);
  await backup.service.startSyncDaemon(daemonConfig('backup'));
  await master.service.startSyncDaemon(daemonConfig('master'));

  for (const flags of [0x02, 0x10, 0x10]) clientPacket(master.director, flags);
  master.engine.turn();
  clock.advance(250);
  // Stopping the master sends what it holds; the backup's import is one engine call away.
  await master.service.stopSyncDaemon('master');
  await backup.service.drain();
  await new Promise((resolve) => setImmediate(resolve));

  const held = backup.director.snapshot({ connections: true }).connections!;
  assert.equal(held.length, 1);
  assert.equal(held[0]!.state, 'ESTABLISHED');
  assert.equal(held[0]!.cport, 41000);
  const [status] = await backup.service.syncDaemons();
  assert.equal(status!.state, 'backup');
  assert.equal(status!.stats!.received, 1);
  assert.equal(status!.stats!.conns, 1);
  assert.equal(status!.stats!.dropped, 0);
  assert.equal(status!.stats!.lastMessageAgeMs, 0);
  clock.advance(1500);
  assert.equal((await backup.service.syncDaemons())[0]!.stats!.lastMessageAgeMs, 1500);
  await backup.service.close();
});

test('a master whose engine refuses the sync source is not left running', async () => {
  const bus = new FakeSyncBus();
  const clock = new ManualClock(0);
  const master = side(bus, clock);
  master.engine.setSyncSource = () => Promise.reject(new Error('worker gone'));
  await assert.rejects(master.service.startSyncDaemon(daemonConfig('master')), /worker gone/);
  assert.deepEqual(await master.service.syncDaemons(), []);
});

test('a backup that joins late is sent the whole table, paced, and counts it; the master counts the JOIN', async () => {
  const bus = new FakeSyncBus();
  const master = side(bus, realClock, { address: '198.18.5.1', capacity: 4096 });
  const backup = side(bus, realClock, { address: '198.18.5.2', capacity: 4096 });
  for (const s of [master, backup]) for (const op of setup) await s.service.execute(op);
  // Connections the master had before any backup listened: the kernel would never send them.
  assert.equal(master.director.importConnections(established(3000)).imported, 3000);
  await master.service.startSyncDaemon(daemonConfig('master'));
  // The start's own walk goes to nobody; let it end.
  await until(
    async () => (await master.service.syncDaemons())[0]!.stats!.fullSync!.completed === 1,
    'first walk',
  );

  await backup.service.startSyncDaemon(daemonConfig('backup'));
  await until(
    () => backup.director.snapshot({ connections: false }).connTable!.entries === 3000,
    'backup holds all',
  );
  const held = backup.director.snapshot({ connections: true }).connections!;
  assert.equal(new Set(held.map((c) => c.caddr.a)).size, 3000);
  assert.ok(held.every((c) => c.state === 'ESTABLISHED'));

  const [m] = await master.service.syncDaemons();
  assert.deepEqual(m!.stats!.joins, { heard: 1, served: 1 });
  assert.equal(m!.stats!.fullSync!.requested, 2, 'its start, and the JOIN');
  assert.equal(m!.stats!.fullSync!.entries, 6000);
  assert.equal(m!.stats!.peerMasters!.splitBrains, 0);
  const [b] = await backup.service.syncDaemons();
  assert.deepEqual(b!.stats!.joins, { sent: 1 });
  assert.equal(b!.stats!.dropped, 0);
  assert.ok(
    master.logged.some((l) => l.includes('a backup joined from 198.18.5.2')),
    master.logged.join('\n'),
  );
  await master.service.close();
  await backup.service.close();
});

test('two masters on one syncid see each other: counted, logged as a split brain, shown in the status', async () => {
  const bus = new FakeSyncBus();
  const a = side(bus, realClock, { address: '198.18.5.1' });
  const b = side(bus, realClock, { address: '198.18.5.2' });
  await a.service.startSyncDaemon(daemonConfig('master'));
  await b.service.startSyncDaemon(daemonConfig('master'));
  // b's start announcement reaches a; a's next one (within 2 s) reaches b.
  await until(async () => {
    const [sa] = await a.service.syncDaemons();
    const [sb] = await b.service.syncDaemons();
    return sa!.stats!.peerMasters!.active && sb!.stats!.peerMasters!.active;
  }, 'both see the other');
  const [sa] = await a.service.syncDaemons();
  assert.equal(sa!.stats!.peerMasters!.splitBrains, 1);
  assert.equal(sa!.stats!.peerMasters!.last, '198.18.5.2');
  assert.ok(
    a.logged.some((l) => l.startsWith('error: sync master: SPLIT BRAIN: another master at 198.18.5.2')),
  );
  await b.service.close();
  await a.service.close();
});
