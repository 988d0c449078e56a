// The data plane's capability check: CapEff from /proc/self/status, CAP_NET_ADMIN (12) and
// CAP_NET_RAW (13), and the message that names what is missing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkDataplaneCapabilities,
  effectiveCapabilities,
  missingCapabilities,
} from '../../src/dataplane/capabilities.js';

const status = (capEff: string): string =>
  `Name:\tnode\nUid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000003000\nCapPrm:\t0000000000003000\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;

test('CapEff is read as hex; the bits name the capabilities', () => {
  assert.equal(effectiveCapabilities(status('0000000000003000')), 0x3000n);
  assert.equal(effectiveCapabilities(status('000001ffffffffff')), 0x1ffffffffffn);
  assert.equal(effectiveCapabilities('Name:\tnode\n'), null);
  assert.deepEqual(missingCapabilities(0x3000n), []);
  assert.deepEqual(missingCapabilities(0x1000n), ['CAP_NET_RAW']);
  assert.deepEqual(missingCapabilities(0x2000n), ['CAP_NET_ADMIN']);
  assert.deepEqual(missingCapabilities(0n), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
});

test('root without the capabilities is refused, a user with them is not: uid plays no part', () => {
  assert.doesNotThrow(() => checkDataplaneCapabilities(() => status('0000000000003000')));
  assert.throws(
    () => checkDataplaneCapabilities(() => status('0000000000002000').replace(/65534/g, '0')),
    /the data plane needs CAP_NET_ADMIN \(.*AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW/,
  );
  assert.throws(() => checkDataplaneCapabilities(() => 'Name:\tnode\n'), /no CapEff/);
});
