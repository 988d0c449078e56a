// packaging/keepalived/lvsd-vrrp-notify as keepalived runs it (its arguments, then TYPE NAME STATE
// PRIORITY), against a stand-in lvsadm that records its calls and, like lvsd, refuses to stop a
// sync daemon that is not running and to start one that is.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const NOTIFY = fileURLToPath(new URL('../../../packaging/keepalived/lvsd-vrrp-notify', import.meta.url));

describe('lvsd-vrrp-notify', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lvsd-notify-'));
  const calls = join(dir, 'calls');
  const lvsadm = join(dir, 'lvsadm');
  // Running roles are files in dir; each call is one line in `calls`.
  writeFileSync(
    lvsadm,
    `#!/bin/sh
echo "$*" >> ${calls}
case $1 in
  --start-daemon) [ ! -e ${dir}/$2 ] && touch ${dir}/$2 ;;
  --stop-daemon) [ -e ${dir}/$2 ] && rm ${dir}/$2 ;;
esac
`,
  );
  chmodSync(lvsadm, 0o755);
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** keepalived's call for a state; returns the exit status and the lvsadm calls it made. */
  const notify = (state: string): { status: number | null; calls: string[] } => {
    writeFileSync(calls, '');
    const args = ['--lvsadm', lvsadm, 'int0', '51', 'INSTANCE', 'VI_LVSD', state, '150'];
    const result = spawnSync(NOTIFY, args, { encoding: 'utf8' });
    return { status: result.status, calls: readFileSync(calls, 'utf8').split('\n').filter(Boolean) };
  };
  const running = () =>
    ['master', 'backup'].filter((role) => spawnSync('test', ['-e', join(dir, role)]).status === 0);

  it('BACKUP starts the backup role, MASTER swaps it for the master role', () => {
    assert.deepEqual(notify('BACKUP'), {
      status: 0,
      calls: ['--stop-daemon master', '--start-daemon backup --mcast-interface int0 --syncid 51'],
    });
    assert.deepEqual(running(), ['backup']);
    assert.deepEqual(notify('MASTER'), {
      status: 0,
      calls: ['--stop-daemon backup', '--start-daemon master --mcast-interface int0 --syncid 51'],
    });
    assert.deepEqual(running(), ['master']);
  });

  it('FAULT stops the master role; STOP stops both', () => {
    assert.deepEqual(notify('FAULT').calls, ['--stop-daemon master']);
    assert.deepEqual(running(), []);
    notify('BACKUP');
    assert.deepEqual(notify('STOP'), { status: 0, calls: ['--stop-daemon master', '--stop-daemon backup'] });
    assert.deepEqual(running(), []);
  });

  it('a role that cannot start fails the script; missing arguments are a usage error', () => {
    notify('BACKUP');
    // The backup role is running already: a second start is refused, as lvsd refuses it.
    const twice = notify('BACKUP');
    assert.equal(twice.status, 1);
    const short = spawnSync(NOTIFY, ['int0', '51', 'INSTANCE'], { encoding: 'utf8' });
    assert.equal(short.status, 2);
    assert.match(short.stderr, /usage: lvsd-vrrp-notify/);
  });
});
