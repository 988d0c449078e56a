// The neighbour table as the layer-2 loop reads it: the kernel's dump and changes, resolution
// asked for at most once a second per missing address, use reported every 5 s per entry in use.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { parseAddr } from '../../src/core/inet.js';
import { Neighbours } from '../../src/dataplane/neighbours.js';
import { FakeNeighbourSource } from './fake-link.js';

const a = (text: string) => parseAddr(text)!;
const MAC = Uint8Array.from([2, 1, 2, 3, 4, 5]);
const NEW_MAC = Uint8Array.from([2, 9, 9, 9, 9, 9]);

describe('the neighbour table', () => {
  it('knows the dump, follows changes per interface, and forgets an entry the kernel deleted', () => {
    const source = new FakeNeighbourSource();
    source.table.push({ ifindex: 2, addr: a('198.18.1.11'), mac: MAC });
    const table = new Neighbours(source, new ManualClock(0));
    assert.deepEqual(table.mac(2, a('198.18.1.11')), MAC);
    assert.equal(table.mac(3, a('198.18.1.11')), null, 'another interface');
    source.queued.push({ ifindex: 2, addr: a('198.18.1.11'), mac: NEW_MAC });
    table.update();
    assert.deepEqual(table.mac(2, a('198.18.1.11')), NEW_MAC, 'a MAC that changed');
    source.queued.push({ ifindex: 2, addr: a('198.18.1.11'), mac: null });
    table.update();
    assert.equal(table.mac(2, a('198.18.1.11')), null);
  });

  it('asks for a missing address once a second, and reports an entry in use every 5 s', () => {
    const source = new FakeNeighbourSource();
    source.table.push({ ifindex: 2, addr: a('2001:db8::11'), mac: MAC });
    const clock = new ManualClock(0);
    const table = new Neighbours(source, clock);
    for (let i = 0; i < 100; i++) table.mac(2, a('198.18.1.12'));
    clock.advance(999);
    table.mac(2, a('198.18.1.12'));
    clock.advance(1);
    table.mac(2, a('198.18.1.12'));
    assert.deepEqual(source.asked, ['2/198.18.1.12', '2/198.18.1.12']);
    source.asked.length = 0;
    for (let t = 0; t < 12_000; t += 100) {
      table.mac(2, a('2001:db8::11'));
      clock.advance(100);
    }
    assert.deepEqual(source.asked, ['2/2001:db8::11', '2/2001:db8::11', '2/2001:db8::11']);
  });
});
