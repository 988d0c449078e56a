// What the data plane cannot deliver is refused at once, on every path into lvsd: direct routing
// on the TUN data plane (a real worker without a device, declaring TUN's methods) from lvsadm
// (-a with -g or with no method, -e, -R), from lvsd.json and a migrated ipvsadm.rules at start,
// and from a keepalived.conf's lb_kind DR; a configuration-only lvsd keeps it.

import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { DaemonClient } from '../../src/cli/client.js';
import { runLvsadm } from '../../src/cli/run.js';
import { startDaemon, type RunningDaemon } from '../../src/control/daemon.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { KeepalivedConfError, KeepalivedSource } from '../../src/control/keepalived-source.js';
import { StateFileError } from '../../src/control/state-file.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import type { Engine } from '../../src/core/engine.js';
import { TUN_FORWARDING } from '../../src/dataplane/forwarding.js';
import { WorkerEngine } from '../../src/dataplane/worker-engine.js';
import { readKeepalivedConf } from '../../src/keepalived/read.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';
import { fakeFiles } from '../keepalived/fake-files.js';

const REFUSAL =
  "lvsd's tun data plane cannot forward by direct routing (-g, ipvsadm's default when no method is given); " +
  'start lvsd with --dataplane packet (the layer-2 data plane) for it, or use masquerading (-m) or tunnelling (-i)';

/** The TUN data plane's worker, without its device: the director in the worker, as lvsd runs it. */
const tunEngine = (): Promise<Engine> =>
  WorkerEngine.start({ tun: null, host: null, forwarding: TUN_FORWARDING, idlePollMs: 5 });

const configOnlyEngine = async (): Promise<Engine> =>
  new InProcessEngine(new Director({ clock: new ManualClock(), connCapacity: 64 }));

function daemonOn(dir: string, createEngine: () => Promise<Engine>): Promise<RunningDaemon> {
  return startDaemon({
    socketPath: join(dir, 'lvsd.sock'),
    stateDir: join(dir, 'state'),
    createEngine,
    log: () => undefined,
  });
}

async function lvsadm(
  dir: string,
  args: string[],
  stdin: string[] = [],
): Promise<{ stdout: string; stderr: string; exit: number }> {
  const socketPath = join(dir, 'lvsd.sock');
  const client = new DaemonClient(socketPath);
  let stdout = '';
  let stderr = '';
  try {
    const exit = await runLvsadm(args, {
      api: client,
      program: 'lvsadm',
      socketPath,
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      stdinLines: () => createInterface({ input: Readable.from(stdin.map((l) => `${l}\n`)) }),
    });
    return { stdout, stderr, exit };
  } finally {
    client.close();
  }
}

async function inDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  try {
    await body(dir);
  } finally {
    await removeDir(dir);
  }
}

test('on TUN, lvsadm -a with -g or with no method, -e to -g, and -R lines with -g are refused', async () => {
  await inDir(async (dir) => {
    const daemon = await daemonOn(dir, tunEngine);
    try {
      assert.equal((await lvsadm(dir, ['-A', '-t', '198.18.0.1:80', '-s', 'rr'])).exit, 0);
      for (const method of [['-g'], []]) {
        const added = await lvsadm(dir, ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80', ...method]);
        assert.deepEqual(added, { stdout: '', stderr: `${REFUSAL}\n`, exit: 255 });
      }
      assert.equal((await lvsadm(dir, ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80', '-m'])).exit, 0);
      const edited = await lvsadm(dir, ['-e', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80', '-g']);
      assert.deepEqual(edited, { stdout: '', stderr: `${REFUSAL}\n`, exit: 255 });
      const restored = await lvsadm(
        dir,
        ['-R'],
        ['-a -t 198.18.0.1:80 -r 198.18.1.12:80 -g', '-a -t 198.18.0.1:80 -r 198.18.1.13:80 -i'],
      );
      assert.equal(restored.stderr, `${REFUSAL}\n`, 'the refused line is reported, the restore goes on');
      const saved = await lvsadm(dir, ['-S', '-n']);
      assert.equal(
        saved.stdout,
        '-A -t 198.18.0.1:80 -s rr\n' +
          '-a -t 198.18.0.1:80 -r 198.18.1.11:80 -m -w 1\n' +
          '-a -t 198.18.0.1:80 -r 198.18.1.13:80 -i -w 1 --tun-type ipip\n',
      );
    } finally {
      await daemon.close();
    }
  });
});

test('lvsd.json with a directly routed server, from a configuration-only lvsd, stops a TUN start', async () => {
  await inDir(async (dir) => {
    const configOnly = await daemonOn(dir, configOnlyEngine);
    try {
      assert.equal((await lvsadm(dir, ['-A', '-t', '198.18.0.1:80', '-s', 'rr'])).exit, 0);
      assert.equal((await lvsadm(dir, ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80'])).exit, 0);
      const listed = await lvsadm(dir, ['-Ln']);
      assert.match(listed.stdout, /-> 198\.18\.1\.11:80 {15}Route {3}1 /);
    } finally {
      await configOnly.close();
    }
    const file = join(dir, 'state', 'lvsd.json');
    const document = await readFile(file, 'utf8');
    await assert.rejects(
      daemonOn(dir, tunEngine),
      (err: unknown) =>
        err instanceof StateFileError && err.message.includes(file) && err.message.includes(REFUSAL),
    );
    assert.equal(await readFile(file, 'utf8'), document, 'the document is left as it was');
  });
});

test('an ipvsadm.rules whose real server takes the default method is not migrated on TUN', async () => {
  await inDir(async (dir) => {
    const stateDir = join(dir, 'state');
    await mkdir(stateDir);
    const rules = join(stateDir, 'ipvsadm.rules');
    await writeFile(rules, '-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.18.1.11:80\n');
    await assert.rejects(
      daemonOn(dir, tunEngine),
      (err: unknown) =>
        err instanceof StateFileError && err.message.includes(rules) && err.message.includes(REFUSAL),
    );
    assert.deepEqual(await readdir(stateDir), ['ipvsadm.rules', 'lvsd.lock'], 'nothing was migrated');
  });
});

test("a keepalived.conf's lb_kind DR is refused by check() on TUN, and read without a data plane", () => {
  const FILE = '/etc/keepalived/keepalived.conf';
  const text = `virtual_server 198.18.0.1 80 {
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 198.18.1.11 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
`;
  const source = (forwarding: typeof TUN_FORWARDING | null) =>
    new KeepalivedSource({
      file: FILE,
      read: () => readKeepalivedConf(fakeFiles({ [FILE]: text }), FILE, { configId: 'lvsd' }),
      log: () => undefined,
      forwarding,
    });
  assert.throws(
    () => source(TUN_FORWARDING).check(),
    (err: unknown) => err instanceof KeepalivedConfError && err.message === `${FILE}: ${REFUSAL}`,
  );
  source(null).check();
});
