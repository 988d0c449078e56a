// Two runs of lvsd's control side on one state directory: the first hands its connections over
// on close({ handOver }), the second takes them over with the time between the runs off their
// timers; a table it cannot take whole is refused with one clear line and it starts empty.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CONN_TABLE_FILE_NAME } from '../../src/control/conn-table.js';
import { startDaemon } from '../../src/control/daemon.js';
import type { DaemonOptions, RunningDaemon } from '../../src/control/daemon.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import type { LogLevel } from '../../src/control/log.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { formatAddr, parseAddr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import type { ConnSnapshot } from '../../src/core/ops.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';
import { processPacket as send } from '../helpers/packets.js';
import { FaultyStateFs } from './faulty-state-fs.js';

const VIP = '198.18.0.1';
const tcp: ServiceKey = { af: 4, protocol: 6, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
const udp: ServiceKey = { ...tcp, protocol: 17, port: 53 };
const masq = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };
const settings = { scheduler: 'rr', flags: 0, timeout: 300, netmaskPrefix: 32, pe: null };

interface Run {
  daemon: RunningDaemon;
  director: Director;
  logs: string[];
}

/** A wall clock the test moves: the time between two runs. */
const wall = { now: 1_800_000_000_000 };

async function run(dir: string, extra: Partial<DaemonOptions> = {}): Promise<Run> {
  const logs: string[] = [];
  // Each run's monotonic clock starts afresh, as a new process's does.
  const director = new Director({ clock: new ManualClock(50), connCapacity: 64 });
  const daemon = await startDaemon({
    socketPath: join(dir, 'lvsd.sock'),
    stateDir: join(dir, 'state'),
    createEngine: async () => new InProcessEngine(director),
    log: (level: LogLevel, message: string) => logs.push(`${level} ${message}`),
    restart: { wallClock: () => wall.now, holdMs: 30_000 },
    ...extra,
  });
  return { daemon, director, logs };
}

async function configure(daemon: RunningDaemon): Promise<void> {
  for (const key of [tcp, udp]) {
    await daemon.service.execute({ op: 'add-service', key, settings });
    for (const rs of ['198.18.1.11', '198.18.1.12'])
      await daemon.service.execute({
        op: 'add-dest',
        key,
        addr: parseAddr(rs)!,
        port: key.port,
        settings: masq,
      });
  }
}

/** An established TCP connection and a UDP flow, each on its real server. */
function traffic(d: Director): void {
  send(d, { src: '198.18.0.2', dst: VIP, protocol: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x02 });
  send(d, { src: '198.18.0.2', dst: VIP, protocol: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x10 });
  send(d, { src: '198.18.0.2', dst: VIP, protocol: 'udp', sport: 5353, dport: 53 });
}

const listing = (conns: readonly ConnSnapshot[]) =>
  conns
    .map((c) => ({ state: c.state, cport: c.cport, daddr: c.daddr, expiresMs: c.expiresMs }))
    .sort((a, b) => a.cport - b.cport);

async function connections(daemon: RunningDaemon): Promise<ConnSnapshot[]> {
  return (await daemon.service.snapshot({ connections: true })).connections!;
}

/** A first run with traffic, stopped for a restart: what it listed just before. */
async function handedOver(dir: string): Promise<{ first: Run; before: ConnSnapshot[] }> {
  const first = await run(dir);
  await configure(first.daemon);
  traffic(first.director);
  const before = await connections(first.daemon);
  await first.daemon.close({ handOver: true });
  return { first, before };
}

test('a restart keeps every connection on its real server, the time between the runs off its timer', async () => {
  const dir = await tempDir();
  try {
    const { first, before } = await handedOver(dir);
    assert.equal(before.length, 2);
    assert.ok(first.logs.includes(`info saved 2 connections to ${join(dir, 'state', CONN_TABLE_FILE_NAME)}`));

    wall.now += 4_000;
    const second = await run(dir);
    await second.daemon.takeOver();
    try {
      assert.deepEqual(
        listing(await connections(second.daemon)),
        listing(before).map((c) => ({ ...c, expiresMs: c.expiresMs - 4_000 })),
      );
      assert.ok(
        second.logs.some((l) =>
          /^info took over 2 connections from .*connections\.json \(saved 4\.0 s ago; 0 expired meanwhile\)$/.test(
            l,
          ),
        ),
        second.logs.join('\n'),
      );
      assert.equal(existsSync(join(dir, 'state', CONN_TABLE_FILE_NAME)), false, 'taken once');
      // The real server the TCP connection is on answers through the new run as before.
      const tcpConn = before.find((c) => c.cport === 40000)!;
      const reply = {
        src: formatAddr(tcpConn.daddr),
        dst: '198.18.0.2',
        protocol: 'tcp' as const,
        sport: 80,
        dport: 40000,
        tcpFlags: 0x10,
      };
      assert.ok(send(second.director, reply) > 0, 'the reply is NATed back');
    } finally {
      await second.daemon.close();
    }
  } finally {
    await removeDir(dir);
  }
});

test('a corrupt table, or one that names a real server no longer configured, is refused whole: the run starts empty', async () => {
  const dir = await tempDir();
  try {
    await handedOver(dir);
    const file = join(dir, 'state', CONN_TABLE_FILE_NAME);
    const saved = await readFile(file, 'utf8');

    await writeFile(file, saved.slice(0, saved.length - 20));
    const truncated = await run(dir);
    await truncated.daemon.takeOver();
    assert.deepEqual(await connections(truncated.daemon), []);
    assert.ok(
      truncated.logs.includes(
        `error refusing the connection table ${file}: it is ${Buffer.byteLength(saved.slice(saved.indexOf('\n') + 1)) - 20} bytes long where its header says ${Buffer.byteLength(saved.slice(saved.indexOf('\n') + 1))}; starting with an empty connection table`,
      ),
      truncated.logs.join('\n'),
    );
    assert.equal(await readFile(`${file}.refused`, 'utf8'), saved.slice(0, saved.length - 20));
    // The configuration lost the connections' real servers while lvsd was down.
    for (const key of [tcp, udp])
      for (const rs of ['198.18.1.11', '198.18.1.12'])
        await truncated.daemon.service.execute({
          op: 'delete-dest',
          key,
          addr: parseAddr(rs)!,
          port: key.port,
        });
    await truncated.daemon.service.execute({
      op: 'add-dest',
      key: tcp,
      addr: parseAddr('198.18.1.13')!,
      port: 80,
      settings: masq,
    });
    await truncated.daemon.close();

    await writeFile(file, saved);
    const changed = await run(dir);
    await changed.daemon.takeOver();
    try {
      assert.deepEqual(await connections(changed.daemon), []);
      assert.ok(
        changed.logs.some((l) =>
          /^error refusing the connection table .*: entry \d: (service TCP 198\.18\.0\.1:80 has no real server 198\.18\.1\.1[12]:80|no service UDP 198\.18\.0\.1:53) any more; starting with an empty connection table$/.test(
            l,
          ),
        ),
        changed.logs.join('\n'),
      );
      assert.equal(existsSync(file), false);
    } finally {
      await changed.daemon.close();
    }
  } finally {
    await removeDir(dir);
  }
});

test('a table saved too long ago is stale; one that cannot be written is reported and the stop goes on', async () => {
  const dir = await tempDir();
  try {
    await handedOver(dir);

    wall.now += 16 * 60_000;
    const fs = new FaultyStateFs();
    const late = await run(dir, { fs });
    await late.daemon.takeOver();
    assert.deepEqual(await connections(late.daemon), []);
    assert.ok(
      late.logs.some((l) =>
        /refusing the connection table .*: it is stale: saved 960 s ago, more than 900 s;/.test(l),
      ),
      late.logs.join('\n'),
    );
    traffic(late.director);
    fs.failing = 'write';
    await late.daemon.close({ handOver: true });
    assert.ok(
      late.logs.some((l) => /^error cannot save the connection table to .*: ENOSPC/.test(l)),
      late.logs.join('\n'),
    );
    assert.equal(late.logs.at(-1), 'info stopped');
    assert.equal(existsSync(join(dir, 'state', CONN_TABLE_FILE_NAME)), false, 'no half-written table');

    const next = await run(dir);
    await next.daemon.takeOver();
    assert.deepEqual(await connections(next.daemon), []);
    assert.ok(!next.logs.some((l) => l.startsWith('error')), next.logs.join('\n'));
    await next.daemon.close();
  } finally {
    await removeDir(dir);
  }
});
