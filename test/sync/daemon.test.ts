import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import type { SyncDaemonConfig } from '../../src/core/ops.js';
import { CONN_F_SYNC, type SyncConn } from '../../src/core/sync/conn.js';
import { encode } from '../../src/core/sync/message.js';
import { SyncDaemons } from '../../src/control/sync-daemons.js';
import { BackupSyncDaemon, MasterSyncDaemon, resolveSyncConfig } from '../../src/sync/daemon.js';
import { fakeInterfaces } from '../../src/sync/interfaces.js';
import { FakeSyncBus, udpTransport } from '../../src/sync/transport.js';
import { addr } from '../helpers/packets.js';
import { exampleConn } from '../core/sync/arbitrary.js';

const interfaces = fakeInterfaces([
  { name: 'sync0', mtu: 9000, ipv4: '198.18.5.1' },
  { name: 'bare0', mtu: 1500, ipv4: null },
]);

function config(state: 'master' | 'backup', extra: Partial<SyncDaemonConfig> = {}): SyncDaemonConfig {
  return {
    state,
    mcastInterface: 'sync0',
    syncId: 0,
    syncMaxLen: 0,
    mcastGroup: addr('224.0.0.81'),
    mcastPort: 8848,
    mcastTtl: 1,
    ...extra,
  };
}

const CONN = exampleConn({
  cport: 40000,
  vport: 80,
  dport: 80,
  timeoutSec: 900,
  caddr: addr('198.18.0.2'),
  vaddr: addr('198.18.0.1'),
  daddr: addr('198.18.1.11'),
});

/** Waits until `done` holds, polling the event loop (no timing assertion: only a bound). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(done(), 'condition not reached');
}

test('the settings are settled as the kernel does, a missing interface is No such device', () => {
  assert.equal(resolveSyncConfig(config('backup'), interfaces).config.syncMaxLen, 8972);
  assert.equal(resolveSyncConfig(config('master'), interfaces).config.syncMaxLen, 1472);
  assert.throws(() => resolveSyncConfig(config('master', { mcastInterface: 'eth9' }), interfaces), {
    code: 'LVS_ERR_NO_DEVICE',
  });
  assert.throws(() => resolveSyncConfig(config('master', { mcastGroup: addr('10.0.0.1') }), interfaces), {
    code: 'LVS_ERR_INVALID',
  });
});

test('SyncDaemons records the settled settings and checks the device before a running daemon', async () => {
  const daemons = new SyncDaemons({ interfaces });
  await daemons.start(config('backup', { syncMaxLen: 100 }));
  assert.equal(daemons.list()[0]!.syncMaxLen, 1024);
  await assert.rejects(daemons.start(config('backup', { mcastInterface: 'eth9' })), {
    code: 'LVS_ERR_NO_DEVICE',
  });
  await assert.rejects(daemons.start(config('backup')), { code: 'LVS_ERR_DAEMON_RUNNING' });
  assert.equal(daemons.list().length, 1);
});

test('a master reaches a backup through the transport; stop sends what is pending', async () => {
  const bus = new FakeSyncBus();
  const clock = new ManualClock();
  const received: SyncConn[][] = [];
  const backup = await BackupSyncDaemon.start(config('backup', { syncId: 5 }), (c) => received.push(c), {
    interfaces,
    transport: bus,
    clock,
  });
  const master = await MasterSyncDaemon.start(config('master', { syncId: 5 }), {
    interfaces,
    transport: bus,
    clock,
  });
  for (let i = 1; i <= 3; i++) master.handle({ kind: 'packet', conn: CONN, inPkts: i });
  await master.stop();
  assert.deepEqual(received, [[{ ...CONN, flags: CONN_F_SYNC }]]);
  assert.equal(master.stats().sent, 1);
  assert.equal(backup.stats().conns, 1);
  // A stopped master takes nothing more.
  master.handle({ kind: 'packet', conn: CONN, inPkts: 53 });
  assert.equal(master.stats().entries, 1);
  await backup.stop();
});

test('a full message goes out soon after it fills, without waiting for the 2 s flush', async () => {
  const bus = new FakeSyncBus();
  const clock = new ManualClock();
  const received: SyncConn[][] = [];
  const backup = await BackupSyncDaemon.start(config('backup'), (c) => received.push(c), {
    interfaces,
    transport: bus,
    clock,
  });
  const master = await MasterSyncDaemon.start(config('master', { syncMaxLen: 8 + 36 * 2 }), {
    interfaces,
    transport: bus,
    clock,
  });
  master.syncAll([CONN, { ...CONN, cport: 1 }]);
  for (let p = 2; p <= 4; p++) master.handle({ kind: 'packet', conn: { ...CONN, cport: p }, inPkts: 3 });
  await until(() => received.length === 2);
  assert.deepEqual(
    received.map((cs) => cs.map((c) => c.cport)),
    [
      [40000, 1],
      [2, 3],
    ],
  );
  await master.stop();
  assert.deepEqual(
    received.at(-1)!.map((c) => c.cport),
    [4],
  );
  await backup.stop();
});

test('failed sends, garbage on the wire and a throwing consumer are counted, never fatal', async () => {
  const bus = new FakeSyncBus();
  const clock = new ManualClock(100);
  const backup = await BackupSyncDaemon.start(
    config('backup', { syncId: 2 }),
    () => {
      throw new Error('table refused');
    },
    { interfaces, transport: bus, clock },
  );
  const endpoint = { iface: interfaces('sync0')!, group: addr('224.0.0.81'), port: 8848, ttl: 1 };
  bus.inject(endpoint, Uint8Array.of(1, 2, 3));
  bus.inject(endpoint, encode({ syncId: 9, conns: [CONN] }));
  bus.inject(endpoint, encode({ syncId: 2, conns: [CONN] }));
  const s = backup.stats();
  assert.deepEqual([s.received, s.dropped.short, s.dropped['wrong-syncid'], s.accepted], [3, 1, 1, 1]);
  assert.equal(s.deliverErrors, 1);
  assert.equal(s.lastMessageAt, 100);
  await backup.stop();

  const master = await MasterSyncDaemon.start(config('master'), { interfaces, transport: bus, clock });
  bus.failSends = true;
  master.syncAll([CONN]);
  await master.stop();
  assert.deepEqual([master.stats().sent, master.stats().sendFailures], [0, 1]);
});

test("datagrams from a source off the sync interface's networks are dropped and counted", async () => {
  const networks = ['198.18.5.1/24'];
  const lookup = fakeInterfaces([{ name: 'sync0', mtu: 1500, ipv4: '198.18.5.1', ipv4Networks: networks }]);
  const bus = new FakeSyncBus();
  const clock = new ManualClock(0);
  const received: SyncConn[][] = [];
  const backup = await BackupSyncDaemon.start(config('backup'), (conns) => received.push(conns), {
    interfaces: lookup,
    transport: bus,
    clock,
  });
  const endpoint = { iface: lookup('sync0')!, group: addr('224.0.0.81'), port: 8848, ttl: 1 };
  const message = encode({ syncId: 0, conns: [CONN] });
  bus.inject(endpoint, message, '198.18.5.7');
  bus.inject(endpoint, message, '198.18.6.7');
  assert.equal(received.length, 1);
  assert.deepEqual([backup.stats().received, backup.stats().wrongInterface], [1, 1]);
  // The interface gains a network (an address added): a second later, its senders are heard.
  networks.push('198.18.6.1/24');
  bus.inject(endpoint, message, '198.18.6.7');
  assert.equal(backup.stats().wrongInterface, 2, 'looked up at most once a second');
  clock.advance(1000);
  bus.inject(endpoint, message, '198.18.6.7');
  assert.deepEqual([received.length, backup.stats().wrongInterface], [2, 2]);
  await backup.stop();
});

test('roles are checked, and an IPv4 group needs an address on the interface', async () => {
  await assert.rejects(
    MasterSyncDaemon.start(config('backup'), { interfaces, transport: new FakeSyncBus() }),
    {
      code: 'LVS_ERR_INVALID',
    },
  );
  await assert.rejects(
    MasterSyncDaemon.start(config('master', { mcastInterface: 'bare0' }), {
      interfaces,
      transport: udpTransport,
    }),
    /is down or has no IPv4 address/,
  );
});

test('where the extra socket of lvsd peer notices cannot open, the daemons run as the kernel does, with a warning', async () => {
  const bus = new FakeSyncBus();
  const logged: string[] = [];
  const log = (level: string, text: string) => logged.push(`${level}: ${text}`);
  const noSend = {
    ...bus,
    openSender: () => Promise.reject(new Error('ENETUNREACH')),
    openReceiver: bus.openReceiver.bind(bus),
  };
  const delivered: SyncConn[] = [];
  const backup = await BackupSyncDaemon.start(config('backup'), (c) => delivered.push(...c), {
    interfaces,
    transport: noSend,
    log,
  });
  assert.match(logged.join('\n'), /warn: sync backup: cannot send on the group \(ENETUNREACH\)/);
  const noHear = {
    openSender: bus.openSender.bind(bus),
    openReceiver: () => Promise.reject(new Error('EADDRINUSE')),
  };
  const master = await MasterSyncDaemon.start(config('master'), { interfaces, transport: noHear, log });
  assert.match(logged.join('\n'), /warn: sync master: cannot hear the group \(EADDRINUSE\)/);
  master.syncAll([CONN]);
  await until(() => delivered.length === 1);
  assert.equal(backup.stats().joinsSent, 0);
  await master.stop();
  await backup.stop();
});
