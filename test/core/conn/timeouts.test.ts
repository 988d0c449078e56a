import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  S_CLOSE,
  S_ESTABLISHED,
  S_FIN_WAIT,
  S_NONE,
  S_SYN_RECV,
  S_UDP,
} from '../../../src/core/conn/tcp-state.js';
import { Timeouts } from '../../../src/core/conn/timeouts.js';
import { ErrorCodes } from '../../../src/core/errors.js';

test('defaults are the kernel tcp_timeouts and UDP 300 s', () => {
  const t = new Timeouts();
  assert.deepEqual(t.ipvs(), { tcp: 900, tcpfin: 120, udp: 300 });
  assert.equal(t.stateMs(S_NONE), 2000);
  assert.equal(t.stateMs(S_SYN_RECV), 60_000);
  assert.equal(t.stateMs(S_CLOSE), 10_000);
});

test('--set maps tcp, tcpfin, udp to ESTABLISHED, FIN_WAIT, UDP; 0 leaves a value as it was', () => {
  const t = new Timeouts();
  t.setIpvs(3600, 0, 45);
  assert.deepEqual(t.ipvs(), { tcp: 3600, tcpfin: 120, udp: 45 });
  assert.equal(t.stateMs(S_ESTABLISHED), 3_600_000);
  assert.equal(t.stateMs(S_FIN_WAIT), 120_000);
  assert.equal(t.stateMs(S_UDP), 45_000);
  assert.equal(t.stateMs(S_CLOSE), 10_000);
});

test('negative, fractional or huge values are refused and change nothing', () => {
  const t = new Timeouts();
  for (const bad of [-1, 1.5, 3_000_000]) {
    assert.throws(() => t.setIpvs(bad, 5, 5), { code: ErrorCodes.INVALID });
  }
  assert.deepEqual(t.ipvs(), { tcp: 900, tcpfin: 120, udp: 300 });
});
