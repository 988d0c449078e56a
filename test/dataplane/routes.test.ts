// The route lookup for tunnelled real servers, against canned `ip -j route get` answers (the packet
// loop's use of it is in packet-loop.test).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IpRouteLookup } from '../../src/dataplane/routes.js';
import { addr } from '../helpers/packets.js';

function lookupWith(answer: unknown, mtu = '1500\n'): IpRouteLookup {
  return new IpRouteLookup({
    run: () => JSON.stringify(answer),
    readFile: (path) => (path === '/sys/class/net/eth1/mtu' ? mtu : null),
  });
}

test('the route gives the source the host would pick and the MTU of the route, else of its interface', () => {
  const rip = addr('198.18.1.11');
  const route = { dst: '198.18.1.11', dev: 'eth1', prefsrc: '198.18.1.1' };
  assert.deepEqual(lookupWith(route && [route]).lookup(rip), { source: addr('198.18.1.1'), mtu: 1500 });
  assert.deepEqual(lookupWith([{ ...route, metrics: [{ mtu: 1400 }] }]).lookup(rip)?.mtu, 1400);
  // One of the host's own addresses, no route at all, or nonsense: no route.
  assert.equal(lookupWith([{ ...route, type: 'local', dev: 'lo' }]).lookup(rip), null);
  assert.equal(lookupWith([]).lookup(rip), null);
  assert.equal(lookupWith([{ ...route, prefsrc: 'bogus' }]).lookup(rip), null);
  assert.equal(lookupWith([route], 'x').lookup(rip), null);
  const failing = new IpRouteLookup({
    run: () => {
      throw new Error('RTNETLINK answers: Network is unreachable');
    },
    readFile: () => null,
  });
  assert.equal(failing.lookup(rip), null);
});
