// `lvsadm -L --daemon` while the master hears another master on its syncid: stdout stays
// ipvsadm's listing, a warning goes to stderr; nothing on stderr otherwise.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runLvsadm, type CliContext } from '../../src/cli/run.js';
import type { ControlApi } from '../../src/control/api.js';
import { parseAddr } from '../../src/core/inet.js';
import type { SyncDaemonStatus } from '../../src/core/ops.js';

function master(active: boolean): SyncDaemonStatus {
  return {
    state: 'master',
    mcastInterface: 'eth1',
    syncId: 51,
    syncMaxLen: 1472,
    mcastGroup: parseAddr('224.0.0.81')!,
    mcastPort: 8848,
    mcastTtl: 1,
    stats: {
      sent: 1,
      received: 0,
      dropped: 0,
      droppedBy: {},
      conns: 1,
      lastMessageAgeMs: 0,
      peerMasters: { messages: 3, splitBrains: 1, active, last: '198.18.1.4', lastAgeMs: 500 },
    },
  };
}

async function listDaemons(daemons: SyncDaemonStatus[]): Promise<{ out: string; err: string; exit: number }> {
  let out = '';
  let err = '';
  const ctx: CliContext = {
    api: { syncDaemons: async () => daemons } as unknown as ControlApi,
    program: 'lvsadm',
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
    stdinLines: async function* () {},
  };
  const exit = await runLvsadm(['-L', '--daemon'], ctx);
  return { out, err, exit };
}

test('-L --daemon says a split brain on stderr and keeps the listing as ipvsadm prints it', async () => {
  const listing =
    'master sync daemon (mcast=eth1, syncid=51, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n';
  assert.deepEqual(await listDaemons([master(true)]), {
    out: listing,
    err: 'warning: split brain: another master sync daemon at 198.18.1.4 sends on syncid 51\n',
    exit: 0,
  });
  assert.deepEqual(await listDaemons([master(false)]), { out: listing, err: '', exit: 0 });
});
