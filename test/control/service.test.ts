// ControlService keeps what runs, what is listed and what is saved together: a change that
// cannot be saved (a full disk, a write error) or that the engine refuses is not made, leaves no
// temporary files, and the client gets a clear error; a configuration applied at start or on
// reload changes only what differs, all or nothing.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { configFromSnapshot, parseConfig, renderConfig } from '../../src/control/config.js';
import type { LvsdConfig } from '../../src/control/config.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { ProtocolErrorCodes } from '../../src/control/protocol.js';
import { ConfigApplyError, ControlService } from '../../src/control/service.js';
import { ConfigStore, nodeStateFs } from '../../src/control/state-file.js';
import type { StateFs } from '../../src/control/state-file.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { ErrorCodes, LvsError } from '../../src/core/errors.js';
import { addr4, IPPROTO_TCP } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import type { ControlOp } from '../../src/core/ops.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';
import { FaultyStateFs } from './faulty-state-fs.js';
import type { Fault } from './faulty-state-fs.js';

/** The director in this thread, recording every operation and refusing the kinds it is told to. */
class RecordingEngine extends InProcessEngine {
  readonly ops: ControlOp[] = [];
  refuse: ControlOp['op'] | null = null;

  constructor() {
    super(new Director({ clock: new ManualClock(), connCapacity: 64 }));
  }

  override async execute(op: ControlOp): Promise<void> {
    if (op.op === this.refuse)
      throw new LvsError(ErrorCodes.INVALID, 'Invalid operation: refused by the test');
    this.ops.push(op);
    await super.execute(op);
  }
}

const VIP = addr4(0xc6120001); // 198.18.0.1
const KEY: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: VIP, port: 80, fwmark: 0 };
const OTHER_KEY: ServiceKey = { ...KEY, port: 443 };
const SETTINGS = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };
const rs = (last: number) => addr4(0xc6130000 + last); // 198.19.0.last
const DEST = { method: 'masq' as const, weight: 1, uThreshold: 0, lThreshold: 0 };

const SYNC = {
  state: 'backup' as const,
  mcastInterface: 'eth0',
  syncId: 1,
  syncMaxLen: 1472,
  mcastGroup: addr4(0xe0000051),
  mcastPort: 8848,
  mcastTtl: 1,
};

async function withStore(
  fs: StateFs,
  body: (service: ControlService, store: ConfigStore, engine: RecordingEngine, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const engine = new RecordingEngine();
  const store = new ConfigStore(dir, fs);
  const service = new ControlService(engine, { store });
  try {
    await service.execute({ op: 'add-service', key: KEY, settings: SETTINGS });
    await service.execute({ op: 'add-dest', key: KEY, addr: rs(1), port: 80, settings: DEST });
    await service.execute({ op: 'add-dest', key: KEY, addr: rs(2), port: 80, settings: DEST });
    await service.startSyncDaemon({ ...SYNC, state: 'master' });
    await body(service, store, engine, dir);
  } finally {
    await removeDir(dir);
  }
}

async function running(service: ControlService): Promise<string> {
  return renderConfig(
    configFromSnapshot(await service.snapshot({ connections: false }), await service.syncDaemons()),
  );
}

const CHANGES: Array<[string, (s: ControlService) => Promise<void>]> = [
  ['add-service', (s) => s.execute({ op: 'add-service', key: OTHER_KEY, settings: SETTINGS })],
  [
    'edit-service',
    (s) => s.execute({ op: 'edit-service', key: KEY, settings: { ...SETTINGS, scheduler: 'wlc' } }),
  ],
  ['add-dest', (s) => s.execute({ op: 'add-dest', key: KEY, addr: rs(3), port: 80, settings: DEST })],
  [
    'edit-dest',
    (s) => s.execute({ op: 'edit-dest', key: KEY, addr: rs(1), port: 80, settings: { ...DEST, weight: 9 } }),
  ],
  ['delete-dest', (s) => s.execute({ op: 'delete-dest', key: KEY, addr: rs(2), port: 80 })],
  ['delete-service', (s) => s.execute({ op: 'delete-service', key: KEY })],
  ['clear', (s) => s.execute({ op: 'clear' })],
  ['set-timeouts', (s) => s.execute({ op: 'set-timeouts', timeouts: { tcp: 1000, tcpfin: 0, udp: 0 } })],
  ['start-sync', (s) => s.startSyncDaemon(SYNC)],
  ['stop-sync', (s) => s.stopSyncDaemon('master')],
];

for (const fault of ['write', 'rename'] as Fault[]) {
  test(`a ${fault} that fails refuses every kind of change, changes nothing, leaves no temporary file`, async () => {
    const fs = new FaultyStateFs();
    await withStore(fs, async (service, store, engine, dir) => {
      const saved = await readFile(store.file, 'utf8');
      assert.equal(await running(service), saved, 'what runs is what is saved');
      fs.failing = fault;
      for (const [name, change] of CHANGES) {
        const opsBefore = engine.ops.length;
        await assert.rejects(change(service), (err: Error & { code?: string }) => {
          assert.equal(err.code, ProtocolErrorCodes.STATE_WRITE, name);
          assert.match(
            err.message,
            new RegExp(`cannot save the configuration to ${store.file}: .*nothing was changed`),
          );
          assert.match(err.message, fault === 'write' ? /ENOSPC/ : /EIO/);
          return true;
        });
        assert.equal(await running(service), saved, `${name}: the engine runs what is saved`);
        assert.equal(await readFile(store.file, 'utf8'), saved, `${name}: the file is as it was`);
        assert.deepEqual(await readdir(dir), ['lvsd.json'], `${name}: no temporary file is left`);
        if (['delete-dest', 'delete-service', 'clear'].includes(name))
          assert.equal(engine.ops.length, opsBefore, `${name}: saved first, so the engine was never asked`);
      }
      // Zeroing counters saves nothing, so it still works.
      await service.execute({ op: 'zero' });
      fs.failing = null;
      await CHANGES[0]![1](service);
      assert.match(
        await readFile(store.file, 'utf8'),
        /"port": 443/,
        'the disk back, changes are saved again',
      );
    });
  });
}

test('a removal the engine refuses after it was saved puts the saved document back', async () => {
  await withStore(nodeStateFs, async (service, store, engine) => {
    const saved = await readFile(store.file, 'utf8');
    engine.refuse = 'delete-service';
    await assert.rejects(service.execute({ op: 'delete-service', key: KEY }), { code: ErrorCodes.INVALID });
    assert.equal(await readFile(store.file, 'utf8'), saved);
    assert.equal(await running(service), saved);
  });
});

function documentWith(mutate: (config: LvsdConfig) => void, from: string): LvsdConfig {
  const config = parseConfig(from);
  mutate(config);
  return config;
}

test('apply changes only what differs: an edited weight is one edit-dest, the rest untouched', async () => {
  await withStore(nodeStateFs, async (service, store, engine) => {
    const saved = await readFile(store.file, 'utf8');
    const desired = documentWith((c) => {
      c.services[0]!.realServers[0]!.weight = 7;
    }, saved);
    const opsBefore = engine.ops.length;
    const plan = await service.apply(desired);
    assert.deepEqual(
      engine.ops.slice(opsBefore).map((op) => op.op),
      ['edit-dest'],
    );
    assert.equal(plan.length, 1);
    assert.equal(await readFile(store.file, 'utf8'), renderConfig(desired));
  });
});

test('apply is all or nothing: a refused entry (or a failed save) undoes the steps before it', async () => {
  const fs = new FaultyStateFs();
  await withStore(fs, async (service, store, engine) => {
    const saved = await readFile(store.file, 'utf8');
    const desired = documentWith((c) => {
      c.timeouts.udp = 42;
      c.services[0]!.realServers[0]!.weight = 7;
      c.services[0]!.realServers.pop();
      c.services.push({ ...structuredClone(c.services[0]!), port: 443, scheduler: 'nope' } as never);
    }, saved);
    await assert.rejects(service.apply(desired), (err: unknown) => {
      assert.ok(err instanceof ConfigApplyError);
      assert.equal(err.entry, 'services[1] (TCP 198.18.0.1:443)');
      assert.equal((err.cause as LvsError).code, ErrorCodes.NO_SCHEDULER);
      return true;
    });
    assert.equal(await running(service), saved);
    assert.equal(await readFile(store.file, 'utf8'), saved);

    engine.refuse = null;
    fs.failing = 'write';
    const good = documentWith((c) => {
      c.services[0]!.realServers[0]!.weight = 7;
      c.services[0]!.realServers.pop();
    }, saved);
    await assert.rejects(service.apply(good), { code: ProtocolErrorCodes.STATE_WRITE });
    assert.equal(await running(service), saved);
  });
});

test('on a real full disk (a small tmpfs), a change is refused and no temporary file is left', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a tmpfs');
  const dir = await tempDir();
  const mount = join(dir, 'full');
  await mkdir(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mount]);
  try {
    const store = new ConfigStore(mount);
    const service = new ControlService(new RecordingEngine(), { store });
    await service.execute({ op: 'add-service', key: KEY, settings: SETTINGS });
    const saved = await readFile(store.file, 'utf8');
    // Fill the disk to the last block.
    await writeFile(join(mount, 'filler'), Buffer.alloc(64 * 1024)).catch(() => undefined);
    const many = Array.from({ length: 200 }, (_, i) => i + 1);
    await assert.rejects(
      (async () => {
        for (const i of many)
          await service.execute({ op: 'add-dest', key: KEY, addr: rs(i), port: 80, settings: DEST });
      })(),
      (err: Error & { code?: string }) =>
        err.code === ProtocolErrorCodes.STATE_WRITE && /ENOSPC/.test(err.message),
    );
    const left = await readdir(mount);
    assert.deepEqual(left.sort(), ['filler', 'lvsd.json']);
    const onDisk = await readFile(store.file, 'utf8');
    assert.equal(await running(service), onDisk, 'what runs is what the disk holds');
    assert.ok(onDisk === saved || onDisk.includes('198.19.0.1'));
  } finally {
    execFileSync('umount', [mount]);
    await removeDir(dir);
  }
});
