// systemd's notify protocol as lvsd speaks it: the message text and addresses, datagrams to a
// fake $NOTIFY_SOCKET (path and abstract), and lvsd's own READY / RELOADING / STOPPING sequence.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { NO_NOTIFIER, notifyMessage, notifySockaddr, systemdNotifier } from '../../src/control/sd-notify.js';
import { LVSD, removeDir, tempDir } from '../cli/daemon-harness.js';
import { FakeNotifySocket } from '../helpers/notify-socket.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

test('the message is KEY=VALUE lines; a newline in a value cannot start another key', () => {
  assert.equal(notifyMessage({ READY: '1', STATUS: 'running' }), 'READY=1\nSTATUS=running\n');
  assert.equal(notifyMessage({ STATUS: 'bad\nREADY=1' }), 'STATUS=bad READY=1\n');
});

test('NOTIFY_SOCKET: a path ends with a NUL, an @name is abstract (a leading NUL), others are refused', () => {
  const path = notifySockaddr('/run/systemd/notify')!;
  assert.equal(path.readUInt16LE(0), 1);
  assert.equal(path.subarray(2).toString('latin1'), '/run/systemd/notify\0');
  const abstract = notifySockaddr('@lvsd/notify')!;
  assert.equal(abstract.subarray(2).toString('latin1'), '\0lvsd/notify');
  assert.equal(notifySockaddr('relative/path'), null);
  assert.equal(notifySockaddr('@'), null);
  assert.equal(notifySockaddr(`/${'x'.repeat(200)}`), null);
  const errors: string[] = [];
  assert.equal(
    systemdNotifier({ NOTIFY_SOCKET: 'relative' }, (m) => errors.push(m)),
    NO_NOTIFIER,
  );
  assert.match(errors[0]!, /not a socket path or abstract name/);
  assert.equal(systemdNotifier({}), NO_NOTIFIER);
});

test('each notification is one datagram, to a path socket and to an abstract one', async () => {
  const dir = await tempDir('lvq12-notify-');
  const sockets = [new FakeNotifySocket(join(dir, 'notify')), new FakeNotifySocket(`@lvq12-${process.pid}`)];
  try {
    for (const socket of sockets) {
      const errors: string[] = [];
      const notifier = systemdNotifier({ NOTIFY_SOCKET: socket.name }, (m) => errors.push(m));
      notifier.notify({ READY: '1', STATUS: 'up' });
      notifier.notify({ STOPPING: '1' });
      notifier.close();
      await socket.waitFor(/STOPPING/);
      assert.deepEqual(socket.messages, ['READY=1\nSTATUS=up\n', 'STOPPING=1\n']);
      assert.deepEqual(errors, []);
    }
  } finally {
    for (const socket of sockets) socket.close();
    await removeDir(dir);
  }
});

test('a socket nobody listens on is reported, not thrown', async () => {
  const dir = await tempDir('lvq12-notify-');
  try {
    const errors: string[] = [];
    const notifier = systemdNotifier({ NOTIFY_SOCKET: join(dir, 'absent') }, (m) => errors.push(m));
    notifier.notify({ READY: '1' });
    notifier.close();
    assert.match(errors[0]!, /cannot notify .*absent/);
  } finally {
    await removeDir(dir);
  }
});

test('lvsd under Type=notify: READY=1 once serving, RELOADING=1 with MONOTONIC_USEC then READY=1 on SIGHUP, STOPPING=1 on SIGTERM', async () => {
  const dir = await tempDir('lvq12-notify-');
  const socket = new FakeNotifySocket(join(dir, 'notify'));
  const control = join(dir, 'lvsd.sock');
  const child = spawn(
    process.execPath,
    [LVSD, '--no-dataplane', '--socket', control, '--state-dir', join(dir, 'state')],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: socket.name },
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  try {
    const ready = await socket.waitFor(/^READY=1\n/);
    assert.match(ready, /STATUS=running: no data plane\n/);
    // READY comes once the control socket is there for lvsadm.
    assert.ok(existsSync(control), 'READY=1 before the control socket existed');
    const before = process.hrtime.bigint() / 1000n;
    child.kill('SIGHUP');
    await socket.waitFor(/STATUS=running; reloaded/);
    const after = process.hrtime.bigint() / 1000n;
    const [, reloading, readyAgain] = socket.messages;
    const usec = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading\n$/.exec(reloading!);
    assert.ok(usec, `RELOADING message: ${JSON.stringify(reloading)}`);
    // Both processes read CLOCK_MONOTONIC: the reload began between the signal and its end.
    assert.ok(
      BigInt(usec[1]!) >= before && BigInt(usec[1]!) <= after,
      `${usec[1]} not in ${before}..${after}`,
    );
    assert.match(readyAgain!, /^READY=1\nSTATUS=running; reloaded \(0 changes\)\n$/);
    child.kill('SIGTERM');
    await exited;
    await socket.waitFor(/STOPPING=1/);
    assert.equal(socket.messages.at(-1), 'STOPPING=1\nSTATUS=SIGTERM received, shutting down\n');
    assert.equal(child.exitCode, 0, stderr);
  } finally {
    child.kill('SIGKILL');
    socket.close();
    await sleep(0);
    await removeDir(dir);
  }
});
