// startDaemon in this process: the lock is taken before the engine is built, idle and
// non-reading clients are closed while others are served, reload hooks run after the document.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { DaemonClient } from '../../src/cli/client.js';
import { startDaemon } from '../../src/control/daemon.js';
import type { DaemonOptions, RunningDaemon } from '../../src/control/daemon.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { StateLockError } from '../../src/control/lock.js';
import type { LogLevel } from '../../src/control/log.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';

async function withDaemon(
  extra: Partial<DaemonOptions>,
  body: (daemon: RunningDaemon, options: DaemonOptions, logs: string[]) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const logs: string[] = [];
  const options: DaemonOptions = {
    socketPath: join(dir, 'lvsd.sock'),
    stateDir: join(dir, 'state'),
    createEngine: async () =>
      new InProcessEngine(new Director({ clock: new ManualClock(), connCapacity: 64 })),
    log: (level: LogLevel, message: string) => logs.push(`${level} ${message}`),
    ...extra,
  };
  const daemon = await startDaemon(options);
  try {
    await body(daemon, options, logs);
  } finally {
    await daemon.close();
    await removeDir(dir);
  }
}

test('a second startDaemon on the same state directory refuses before it builds an engine', async () => {
  await withDaemon({}, async (_daemon, options) => {
    let built = false;
    await assert.rejects(
      startDaemon({
        ...options,
        socketPath: `${options.socketPath}.2`,
        createEngine: async () => {
          built = true;
          throw new Error('must not be reached');
        },
      }),
      (err: unknown) => err instanceof StateLockError && err.message.includes(`pid ${process.pid}`),
    );
    assert.equal(built, false);
    assert.equal(existsSync(`${options.socketPath}.2`), false);
    assert.equal(existsSync(options.socketPath), true);
  });
});

function closed(
  socketPath: string,
  setup: (socket: ReturnType<typeof createConnection>) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    const guard = setTimeout(() => reject(new Error('lvsd did not close the client')), 10_000);
    socket.on('connect', () => setup(socket));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(guard);
      resolve();
    });
  });
}

test('an idle client, and one that never reads its replies, are closed; others are served meanwhile', async () => {
  const limits = { idleTimeoutMs: 300, maxPendingReplies: 4 };
  await withDaemon({ clientLimits: limits }, async (_daemon, options, logs) => {
    const idle = closed(options.socketPath, () => undefined);
    const reader = closed(options.socketPath, (socket) => {
      socket.pause();
      const request = JSON.stringify({ v: 1, id: 1, op: 'snapshot', connections: false }) + '\n';
      socket.write(request.repeat(20_000));
    });
    // One-shot clients, as lvsadm is (a client idle for longer than the limit is closed too).
    const oneShot = async <T>(call: (client: DaemonClient) => Promise<T>): Promise<T> => {
      const client = new DaemonClient(options.socketPath);
      try {
        return await call(client);
      } finally {
        client.close();
      }
    };
    assert.equal((await oneShot((c) => c.snapshot({ connections: false }))).services.length, 0);
    await Promise.all([idle, reader]);
    assert.equal(logs.filter((l) => /^warn control client idle for 300 ms/.test(l)).length, 2);
    await oneShot((c) => c.execute({ op: 'set-timeouts', timeouts: { tcp: 100, tcpfin: 0, udp: 0 } }));
    assert.equal((await oneShot((c) => c.snapshot({ connections: false }))).timeouts.tcp, 100);
  });
});

test('reload applies the document, then runs the reload hooks in order, each failure logged', async () => {
  const ran: string[] = [];
  const hooks = [
    {
      name: 'keepalived.conf',
      reload: async () => {
        ran.push('first');
        throw new Error('cannot read it');
      },
    },
    { name: 'second', reload: async () => void ran.push('second') },
  ];
  await withDaemon({ reloadHooks: hooks }, async (daemon, _options, logs) => {
    assert.deepEqual(await daemon.reload(), { ok: true, changes: 0 });
    assert.deepEqual(ran, ['first', 'second']);
    assert.ok(logs.includes('error reload of keepalived.conf: cannot read it'));
  });
});
