import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMulticastAddr, resolveSyncMaxLen } from '../../../src/core/sync/config.js';
import { addr } from '../../helpers/packets.js';

test('sync_maxlen defaults as start_sync_thread sets them', () => {
  // Master: 1500 minus IP and UDP headers whatever the MTU; backup: the MTU clamped to 1500..65535.
  assert.equal(resolveSyncMaxLen('master', 0, 9000, 4), 1472);
  assert.equal(resolveSyncMaxLen('master', 0, 1280, 6), 1452);
  assert.equal(resolveSyncMaxLen('backup', 0, 9000, 4), 8972);
  assert.equal(resolveSyncMaxLen('backup', 0, 1280, 4), 1472);
  assert.equal(resolveSyncMaxLen('backup', 0, 65536, 6), 65487);
});

test('a given sync_maxlen is clamped; a backup takes at least 1024', () => {
  assert.equal(resolveSyncMaxLen('master', 100, 1500, 4), 100);
  assert.equal(resolveSyncMaxLen('backup', 100, 1500, 4), 1024);
  assert.equal(resolveSyncMaxLen('master', 65507, 1500, 6), 65487);
  assert.equal(resolveSyncMaxLen('backup', 2000, 1500, 4), 2000);
});

test('sync groups must be multicast', () => {
  for (const a of ['224.0.0.81', '239.255.255.255', 'ff02::81', 'ff05::1'])
    assert.ok(isMulticastAddr(addr(a)), a);
  for (const a of ['10.0.0.1', '223.255.255.255', '240.0.0.1', '2001:db8::1', 'fe80::1'])
    assert.ok(!isMulticastAddr(addr(a)), a);
});
