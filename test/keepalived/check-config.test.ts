// The real `lvsd check-config` binary on fixtures: its stdout against a golden file (the services
// as `lvsadm -S -n` and the checkers), its warnings on stderr, and its exit status.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DIST, LVSD } from '../cli/daemon-harness.js';
import { FIXTURES } from './helpers.js';

const GOLDEN = join(DIST, '../test/keepalived/golden');

function checkConfig(...args: string[]): { stdout: string; stderr: string; status: number | null } {
  const run = spawnSync(process.execPath, [LVSD, 'check-config', ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const local = (text: string) => text.split(FIXTURES).join('@FIXTURES@');
  return { stdout: local(run.stdout), stderr: local(run.stderr), status: run.status };
}

function golden(name: string): { stdout: string; stderr: string } {
  return {
    stdout: readFileSync(join(GOLDEN, `${name}.stdout`), 'utf8'),
    stderr: readFileSync(join(GOLDEN, `${name}.stderr`), 'utf8'),
  };
}

describe('lvsd check-config', () => {
  for (const [name, file] of [
    ['included', 'included/keepalived.conf'],
    ['keepalived-sample-fwmark', 'keepalived-sample-fwmark.conf'],
  ] as const) {
    test(`${file}: services, checkers and warnings as the golden file says; exit 0`, () => {
      const run = checkConfig(join(FIXTURES, file));
      assert.deepEqual(run, { ...golden(name), status: 0 });
    });
  }

  test('an error: FILE:LINE: reason on stderr, nothing on stdout, exit 1', () => {
    const run = checkConfig(join(FIXTURES, 'xusxlinux-master02.conf'));
    assert.deepEqual(run, {
      stdout: '',
      stderr: "@FIXTURES@/xusxlinux-master02.conf:23: Invalid lvs_scheduler 'loadbalance'\n",
      status: 1,
    });
  });

  test('a missing file is an error naming it', () => {
    const run = checkConfig(join(FIXTURES, 'no-such.conf'));
    assert.equal(run.status, 1);
    assert.equal(run.stderr, `@FIXTURES@/no-such.conf: cannot read @FIXTURES@/no-such.conf: ENOENT\n`);
  });

  test('--config-id selects @ID lines', () => {
    const run = checkConfig('--config-id', 'high', join(FIXTURES, 'keepalived-sample-conditional_conf.conf'));
    assert.equal(run.status, 1);
    assert.match(run.stderr, /conditional_conf\.conf:\d+: net_namespace: /);
  });

  test('no file or two files is a usage error, exit 2', () => {
    assert.equal(checkConfig().status, 2);
    assert.equal(checkConfig('a.conf', 'b.conf').status, 2);
    assert.match(checkConfig('--bogus', 'a.conf').stderr, /unknown option --bogus/);
  });
});
