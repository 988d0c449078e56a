// lvsd as a process: restart keeps the table, a corrupt state file stops it with a clear
// message, hostile clients neither crash it nor change its state, the socket is owner-only; the
// rules file of older versions is migrated, one lvsd per state directory, SIGHUP reloads, and a
// client that does not read its replies holds neither lvsd's memory nor other clients.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { removeDir, runDaemonToExit, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';
import { parseConfig, renderConfig } from '../../src/control/config.js';

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

    // What the data plane cannot deliver (direct routing on TUN) is refused at start too:
    // test/control/dataplane-methods.test.ts.
    await writeFile(
      file,
      '-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.19.0.1:80 -i --tun-type gue --tun-port 6080 --tun-remcsum\n',
    );
    const tunnelled = await runDaemonToExit(dir, stateDir);
    assert.equal(tunnelled.code, 1);
    assert.match(tunnelled.stderr, /ipvsadm\.rules:2: lvsd cannot tunnel with --tun-remcsum/);

    await writeFile(file, '-Ln\n');
    assert.equal((await runDaemonToExit(dir, stateDir)).code, 1);
    assert.deepEqual(await readdir(stateDir), ['ipvsadm.rules', 'lvsd.lock'], 'nothing was migrated');
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

const RULES =
  '# lvsd state: ipvsadm -S -n rules\n' +
  '--set 1000 50 60\n' +
  '-A -t 198.18.0.1:80 -s rr -p 120\n' +
  '-a -t 198.18.0.1:80 -r 198.19.0.1:8080 -m -w 1\n' +
  '-a -t 198.18.0.1:80 -r 198.19.0.2:8080 -m -w 3 -x 40 -y 20\n' +
  '-A -f 9 -6 -s sh -b sh-port\n' +
  '--start-daemon master --mcast-interface eth0 --syncid 9 --sync-maxlen 1472 --mcast-group 224.0.0.81 ' +
  '--mcast-port 8848 --mcast-ttl 1\n';

test('first start migrates ipvsadm.rules to lvsd.json and keeps the old file as ipvsadm.rules.migrated', async () => {
  const dir = await tempDir();
  let daemon: SpawnedDaemon | null = null;
  try {
    const stateDir = join(dir, 'state');
    await mkdir(stateDir);
    await writeFile(join(stateDir, 'ipvsadm.rules'), RULES);
    daemon = await spawnDaemon(dir);
    const env = { LVSD_SOCKET: daemon.socketPath };
    const listings = async () =>
      Promise.all(
        [['-Ln', '--thresholds'], ['-Sn'], ['-L', '--timeout'], ['-L', '--daemon']].map((a) =>
          runLvsadmBinary(a, env),
        ),
      );
    const before = await listings();
    assert.match(before[0]!.stdout, /198\.19\.0\.2:8080 +40 +20/);
    assert.equal(before[2]!.stdout, 'Timeout (tcp tcpfin udp): 1000 50 60\n');
    assert.match(before[3]!.stdout, /master sync daemon \(mcast=eth0, syncid=9/);
    assert.match(
      daemon.stderr(),
      /migrated .*ipvsadm\.rules to .*lvsd\.json; the old file is kept as .*\.migrated/,
    );
    assert.deepEqual((await readdir(stateDir)).sort(), ['ipvsadm.rules.migrated', 'lvsd.json', 'lvsd.lock']);
    assert.equal(await readFile(join(stateDir, 'ipvsadm.rules.migrated'), 'utf8'), RULES);
    const doc = parseConfig(await readFile(join(stateDir, 'lvsd.json'), 'utf8'));
    assert.equal(doc.services.length, 2);
    assert.deepEqual(doc.timeouts, { tcp: 1000, tcpfin: 50, udp: 60 });

    assert.equal(await daemon.stop(), 0);
    daemon = await spawnDaemon(dir);
    assert.match(daemon.stderr(), /restored configuration from .*lvsd\.json/);
    assert.deepEqual(await listings(), before);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
});

test('a corrupt, unknown-version or refused lvsd.json stops lvsd naming the file and the problem; nothing changes', async () => {
  const dir = await tempDir();
  try {
    const stateDir = join(dir, 'state');
    await mkdir(stateDir);
    const file = join(stateDir, 'lvsd.json');
    const service = '{"protocol":"tcp","address":"198.18.0.1","port":80';
    const cases: Array<[string, string]> = [
      ['{"version":1,"services":[', 'not valid JSON'],
      ['{"version":7}', 'version: 7 is not a version this lvsd reads \\(it reads version 1\\)'],
      [
        `{"version":1,"services":[${service},"realServers":[{"address":"198.19.0.1","port":80,"weight":-2}]}]}`,
        'services\\[0\\]\\.realServers\\[0\\]\\.weight must be an integer in 0\\.\\.65535',
      ],
      [
        `{"version":1,"services":[${service},"scheduler":"rr"},${service.replace('80', '443')},"scheduler":"nope"}]}`,
        'services\\[1\\] \\(TCP 198\\.18\\.0\\.1:443\\): Scheduler or persistence engine not found',
      ],
    ];
    for (const [text, problem] of cases) {
      await writeFile(file, text);
      const result = await runDaemonToExit(dir, stateDir);
      assert.equal(result.code, 1, text);
      assert.match(
        result.stderr,
        new RegExp(`error ${file.replace(/[.]/g, '\\.')}: ${problem}`),
        result.stderr,
      );
      assert.match(result.stderr, /lvsd will not start with a configuration it cannot apply/);
      assert.equal(await readFile(file, 'utf8'), text, 'the file is left as it was');
      assert.equal(existsSync(join(dir, 'run', 'lvsd.sock')), false, 'no socket was created');
    }
  } finally {
    await removeDir(dir);
  }
});

test('a second lvsd with the same state directory refuses at once and touches nothing', async () => {
  const dir = await tempDir();
  const other = await tempDir();
  let daemon: SpawnedDaemon | null = null;
  try {
    daemon = await spawnDaemon(dir);
    const env = { LVSD_SOCKET: daemon.socketPath };
    for (const args of SETUP) assert.equal((await runLvsadmBinary(args, env)).code, 0);
    const before = await runLvsadmBinary(['-Sn'], env);
    const saved = await readFile(join(daemon.stateDir, 'lvsd.json'), 'utf8');
    // On its own socket, and on the running one's.
    for (const socketDir of [other, dir]) {
      const second = await runDaemonToExit(socketDir, daemon.stateDir);
      assert.equal(second.code, 1);
      assert.match(
        second.stderr,
        new RegExp(`error another lvsd \\(pid ${daemon.child.pid}\\) is running with the state directory`),
      );
      assert.doesNotMatch(second.stderr, /listening|restored/);
      assert.equal(existsSync(join(other, 'run', 'lvsd.sock')), false);
      assert.equal(existsSync(daemon.socketPath), true, "the running lvsd's socket is still there");
      assert.deepEqual(await runLvsadmBinary(['-Sn'], env), before, 'and it still answers');
    }
    assert.equal(await readFile(join(daemon.stateDir, 'lvsd.json'), 'utf8'), saved);

    // The kernel drops the lock with its holder, however it dies: no stale lock after SIGKILL.
    daemon.child.kill('SIGKILL');
    await daemon.stop();
    daemon = await spawnDaemon(dir);
    assert.deepEqual(await runLvsadmBinary(['-Sn'], { LVSD_SOCKET: daemon.socketPath }), before);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
    await removeDir(other);
  }
});

test('SIGHUP reloads lvsd.json: the difference is applied; a bad document changes nothing', async () => {
  await withDaemon(async (daemon) => {
    const env = { LVSD_SOCKET: daemon.socketPath };
    for (const args of SETUP) assert.equal((await runLvsadmBinary(args, env)).code, 0);
    const file = join(daemon.stateDir, 'lvsd.json');
    const config = parseConfig(await readFile(file, 'utf8'));
    const web = config.services[0]!;
    web.realServers.find((d) => d.address === '198.19.0.1')!.weight = 7;
    web.realServers.push({ ...web.realServers[0]!, address: '198.19.0.3', weight: 2 });
    config.services.splice(1, 1); // the fwmark service goes
    config.services.push({
      protocol: 'udp',
      address: '198.18.0.1',
      port: 53,
      scheduler: 'wrr',
      schedulerFlags: [],
      onePacket: true,
      persistence: null,
      realServers: [],
    });
    await writeFile(file, renderConfig(config));
    let mark = daemon.stderr().length;
    daemon.child.kill('SIGHUP');
    await daemon.waitForLog(/reloaded .*lvsd\.json: 4 changes/, mark);
    const reloaded = await runLvsadmBinary(['-Sn'], env);
    assert.equal(
      reloaded.stdout,
      '-A -t 198.18.0.1:80 -s rr -p 120\n' +
        '-a -t 198.18.0.1:80 -r 198.19.0.1:8080 -m -w 7\n' +
        '-a -t 198.18.0.1:80 -r 198.19.0.2:8080 -m -w 3\n' +
        '-a -t 198.18.0.1:80 -r 198.19.0.3:8080 -m -w 2\n' +
        '-A -u 198.18.0.1:53 -s wrr -o\n',
    );
    assert.equal(daemon.child.exitCode, null, 'SIGHUP does not stop lvsd');

    for (const bad of [
      '{"version":1,"services":[',
      renderConfig({ ...config, services: [{ ...config.services[0]!, scheduler: 'nope' }] }),
    ]) {
      await writeFile(file, bad);
      mark = daemon.stderr().length;
      daemon.child.kill('SIGHUP');
      await daemon.waitForLog(/reload refused: nothing was changed/, mark);
      assert.match(daemon.stderr().slice(mark), /error .*lvsd\.json: /);
      assert.deepEqual(await runLvsadmBinary(['-Sn'], env), reloaded);
    }
    // The next change made with lvsadm saves what runs over the refused document, even when
    // what runs is the same as before.
    assert.equal(
      (await runLvsadmBinary(['-E', '-t', '198.18.0.1:80', '-s', 'rr', '-p', '120'], env)).code,
      0,
    );
    assert.equal(renderConfig(parseConfig(await readFile(file, 'utf8'))).includes('"port": 53'), true);
  });
});

function vmRssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

test('a client that pipelines thousands of requests and never reads: lvsd stays bounded, lvsadm still answers', async () => {
  await withDaemon(async (daemon) => {
    const env = { LVSD_SOCKET: daemon.socketPath };
    // A table whose listing is large (about 60 KB of JSON per snapshot reply).
    let rules = '';
    for (let s = 1; s <= 60; s++) {
      rules += `-A -t 198.18.0.${s}:80 -s wlc\n`;
      for (let d = 1; d <= 3; d++) rules += `-a -t 198.18.0.${s}:80 -r 198.19.${s}.${d}:80 -m -w ${d}\n`;
    }
    assert.equal((await runLvsadmBinary(['-R'], env, rules)).code, 0);
    const pid = daemon.child.pid!;
    const baseline = vmRssKiB(pid);

    const flood = createConnection(daemon.socketPath);
    flood.pause(); // never reads a reply
    await new Promise((r) => flood.once('connect', r));
    const requests = Array.from(
      { length: 5000 },
      (_, i) => JSON.stringify({ v: 1, id: i, op: 'snapshot', connections: false }) + '\n',
    ).join('');
    flood.write(requests);
    try {
      for (let round = 0; round < 3; round++) {
        const listing = await runLvsadmBinary(['-Ln'], env);
        assert.equal(listing.code, 0);
        assert.match(listing.stdout, /TCP {2}198\.18\.0\.60:80 wlc/);
      }
      const grown = vmRssKiB(pid) - baseline;
      assert.ok(grown < 64 * 1024, `lvsd grew by ${grown} KiB with a client that does not read`);
      assert.equal(daemon.child.exitCode, null);
    } finally {
      flood.destroy();
    }
  });
});

test('lvsadm on a full disk: the change is refused with a clear error and not made', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs');
  const dir = await tempDir();
  const stateDir = join(dir, 'state');
  await mkdir(stateDir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', stateDir]);
  let daemon: SpawnedDaemon | null = null;
  try {
    daemon = await spawnDaemon(dir, stateDir);
    const env = { LVSD_SOCKET: daemon.socketPath };
    assert.equal((await runLvsadmBinary(['-A', '-t', '198.18.0.1:80', '-s', 'rr'], env)).code, 0);
    const before = await runLvsadmBinary(['-Sn'], env);
    await writeFile(join(stateDir, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
    let refused: { code: number | null; stderr: string } | null = null;
    for (let i = 1; i <= 100 && !refused; i++) {
      const result = await runLvsadmBinary(['-a', '-t', '198.18.0.1:80', '-r', `198.19.0.${i}`, '-m'], env);
      if (result.code !== 0) refused = result;
    }
    assert.ok(refused, 'the disk filled up');
    assert.equal(refused.code, 255);
    assert.match(
      refused.stderr,
      /^cannot save the configuration to .*lvsd\.json: ENOSPC: no space left on device.*; nothing was changed\n$/,
    );
    const listed = await runLvsadmBinary(['-Sn'], env);
    const saved = parseConfig(await readFile(join(stateDir, 'lvsd.json'), 'utf8'));
    const listedDests = listed.stdout.split('\n').filter((l) => l.startsWith('-a ')).length;
    assert.equal(saved.services[0]!.realServers.length, listedDests, 'what is listed is what is saved');
    assert.ok(listed.stdout.startsWith(before.stdout));
    assert.deepEqual((await readdir(stateDir)).sort(), ['filler', 'lvsd.json', 'lvsd.lock']);
  } finally {
    await daemon?.stop();
    execFileSync('umount', [stateDir]);
    await removeDir(dir);
  }
});
