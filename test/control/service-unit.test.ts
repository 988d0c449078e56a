// packaging/lvsd.service: a Type=notify unit systemd accepts (systemd-analyze verify, where
// installed), running as its own user with the data plane's two capabilities, and none of the
// hardening that would break Node or the data plane.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LVSD, removeDir, tempDir } from '../cli/daemon-harness.js';

const UNIT_PATH = fileURLToPath(new URL('../../../packaging/lvsd.service', import.meta.url));
const unit = readFileSync(UNIT_PATH, 'utf8');
const settings = new Map<string, string[]>();
for (const line of unit.split('\n')) {
  const m = /^(\w+)=(.*)$/.exec(line);
  if (m) settings.set(m[1]!, [...(settings.get(m[1]!) ?? []), m[2]!]);
}
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

test('the unit: Type=notify, reload by SIGHUP, a user of its own with CAP_NET_ADMIN and CAP_NET_RAW', () => {
  assert.deepEqual(settings.get('Type'), ['notify']);
  assert.deepEqual(settings.get('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  assert.deepEqual(settings.get('User'), ['lvsd']);
  assert.deepEqual(settings.get('AmbientCapabilities'), ['CAP_NET_ADMIN CAP_NET_RAW']);
  assert.deepEqual(settings.get('CapabilityBoundingSet'), ['CAP_NET_ADMIN CAP_NET_RAW']);
  assert.deepEqual(settings.get('DeviceAllow'), ['/dev/net/tun rw']);
  // V8 writes and runs machine code; /dev/net/tun, /proc/sys/net and the host's network are the job.
  for (const breaking of [
    'MemoryDenyWriteExecute',
    'PrivateDevices',
    'PrivateNetwork',
    'ProtectKernelTunables',
  ]) {
    assert.equal(settings.has(breaking), false, `${breaking} would break lvsd`);
  }
});

test(
  'systemd-analyze verify accepts the unit',
  { skip: hasAnalyze ? false : 'no systemd-analyze' },
  async () => {
    const dir = await tempDir('lvq12-unit-');
    try {
      // verify checks that ExecStart's program exists: point it at this build.
      const local = join(dir, 'lvsd.service');
      writeFileSync(local, unit.replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} ${LVSD}`));
      const result = spawnSync('systemd-analyze', ['verify', local], { encoding: 'utf8' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, '');
    } finally {
      await removeDir(dir);
    }
  },
);
