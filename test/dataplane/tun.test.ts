import { test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardingCpuMask } from '../../src/dataplane/tun.js';

test('forwarding is steered to the CPUs the data plane may not run on, else to all', () => {
  assert.equal(forwardingCpuMask(1, '1'), null, 'one CPU: nowhere to move the work');
  assert.equal(forwardingCpuMask(2, '3'), '3', 'not pinned: all CPUs');
  assert.equal(forwardingCpuMask(2, undefined), '3');
  assert.equal(forwardingCpuMask(2, '1'), '2', 'pinned to CPU 0: CPU 1 forwards');
  assert.equal(forwardingCpuMask(2, '2'), '1');
  assert.equal(forwardingCpuMask(4, '3'), 'c');
  // Beyond 32 CPUs sysfs wants 32-bit words, the lower ones zero-padded.
  assert.equal(forwardingCpuMask(40, 'ff,fffffffe'), '1');
  assert.equal(forwardingCpuMask(40, '00,00000001'), 'ff,fffffffe');
});
