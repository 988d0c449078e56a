// lvsd as a process: restart keeps the table, a corrupt state file stops it with a clear
// message, hostile clients neither crash it nor change its state, the socket is owner-only.

import assert from 'node:assert/strict';
import { stat, writeFile, mkdir } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { removeDir, runDaemonToExit, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';

async function withDaemon(body: (daemon: SpawnedDaemon, dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  let daemon: SpawnedDaemon | null = null;
  try {
    daemon = await spawnDaemon(dir);
    await body(daemon, dir);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
}

const SETUP = [
  ['-A', '-t', '198.18.0.1:80', '-s', 'rr', '-p', '120'],
  ['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.2:8080', '-m', '-w', '3', '-x', '40', '-y', '20'],
  ['-a', '-t', '198.18.0.1:80', '-r', '198.19.0.1:8080', '-m'],
  ['-A', '-f', '9', '-6', '-s', 'sh', '-b', 'sh-port'],
  ['--set', '1000', '50', '60'],
];

test('the lvsadm binary: restart keeps the table, the socket is owner-only', async () => {
  const dir = await tempDir();
  let daemon: SpawnedDaemon | null = null;
  try {
    daemon = await spawnDaemon(dir);
    const env = { LVSD_SOCKET: daemon.socketPath };
    for (const args of SETUP) assert.equal((await runLvsadmBinary(args, env)).code, 0, args.join(' '));
    assert.equal((await stat(daemon.socketPath)).mode & 0o777, 0o600);
    const listings = async () =>
      Promise.all(
        [['-Ln', '--thresholds'], ['-Sn'], ['-L', '--timeout']].map((args) => runLvsadmBinary(args, env)),
      );
    const before = await listings();
    assert.equal(await daemon.stop(), 0);
    daemon = await spawnDaemon(dir);
    const after = await listings();
    assert.deepEqual(after, before);
    assert.match(before[0]!.stdout, /198\.19\.0\.2:8080 +40 +20/);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
});

test('lvsadm without lvsd: one line saying so, exit 2', async () => {
  const dir = await tempDir();
  try {
    const socket = join(dir, 'nothing.sock');
    const result = await runLvsadmBinary(['-Ln'], { LVSD_SOCKET: socket });
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.equal(
      result.stderr,
      `lvsadm: cannot reach lvsd at ${socket}: ENOENT (is it running? start it with: lvsd --socket ${socket})\n`,
    );
    const viaOption = await runLvsadmBinary(['--socket', socket, '-C'], {});
    assert.equal(viaOption.code, 2);
    const help = await runLvsadmBinary(['-h'], { LVSD_SOCKET: socket });
    assert.equal(help.code, 0, '-h needs no daemon');
  } finally {
    await removeDir(dir);
  }
});

test('a corrupt state file stops lvsd with file, line and reason', async () => {
  const dir = await tempDir();
  try {
    const stateDir = join(dir, 'state');
    await mkdir(stateDir);
    const file = join(stateDir, 'ipvsadm.rules');
    await writeFile(
      file,
      '--set 900 120 300\n-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.1 -m -w lots\n',
    );
    const bad = await runDaemonToExit(dir, stateDir);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`error ${file.replace(/[.]/g, '\\.')}:3: illegal weight specified`));
    assert.match(bad.stderr, /move the file away/);

    await writeFile(file, '-A -t 198.18.0.1:80 -s rr\n-A -t 198.18.0.1:80 -s rr\n');
    const refused = await runDaemonToExit(dir, stateDir);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /ipvsadm\.rules:2: Service already exists/);

    await writeFile(file, '-Ln\n');
    assert.equal((await runDaemonToExit(dir, stateDir)).code, 1);
  } finally {
    await removeDir(dir);
  }
});

function rawExchange(socketPath: string, payload: Buffer | string): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection(socketPath);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (received += c));
    socket.on('error', () => resolve(received));
    socket.on('close', () => resolve(received));
    socket.on('connect', () => socket.end(payload));
    setTimeout(() => socket.destroy(), 2000).unref();
  });
}

test('hostile clients: random bytes, random JSON, oversized lines; lvsd stays up and unchanged', async () => {
  await withDaemon(async (daemon) => {
    const env = { LVSD_SOCKET: daemon.socketPath };
    for (const args of SETUP) assert.equal((await runLvsadmBinary(args, env)).code, 0);
    const before = await runLvsadmBinary(['-Sn'], env);

    const oversized = await rawExchange(daemon.socketPath, 'x'.repeat(200_000));
    assert.match(oversized, /LVSD_ERR_TOO_LARGE/);
    const reply = await rawExchange(
      daemon.socketPath,
      '{"v":1,"id":3,"op":"execute","command":{"op":"clear","x":1}}\n{"v":1,"id":4}\n',
    );
    const replies = reply
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: number; ok: boolean });
    assert.deepEqual(
      replies.map((r) => [r.id, r.ok]),
      [
        [3, true],
        [4, false],
      ],
      'a valid clear is obeyed; a bad request is refused',
    );
    for (const args of SETUP) await runLvsadmBinary(args, env);

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
          fc.json().map((j) => j + '\n'),
          fc.jsonValue().map((v) => JSON.stringify({ v: 1, id: 1, op: 'execute', command: v }) + '\n'),
        ),
        async (payload) => {
          await rawExchange(daemon.socketPath, payload);
        },
      ),
      { numRuns: 150 },
    );
    assert.equal(daemon.child.exitCode, null, 'lvsd is still running');
    const after = await runLvsadmBinary(['-Sn'], env);
    assert.equal(after.stdout, before.stdout);
  });
});

test('concurrent clients are serialized: every add lands exactly once', async () => {
  await withDaemon(async (daemon) => {
    const env = { LVSD_SOCKET: daemon.socketPath };
    await runLvsadmBinary(['-A', '-t', '198.18.0.1:80', '-s', 'rr'], env);
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        runLvsadmBinary(['-a', '-t', '198.18.0.1:80', '-r', `198.19.0.${(i % 6) + 1}`, '-m'], env),
      ),
    );
    assert.equal(results.filter((r) => r.code === 0).length, 6);
    assert.equal(
      results.filter((r) => r.code === 255 && r.stderr === 'Destination already exists\n').length,
      6,
    );
    const saved = await runLvsadmBinary(['-Sn'], env);
    assert.equal(saved.stdout.split('\n').filter((l) => l.startsWith('-a ')).length, 6);
  });
});
