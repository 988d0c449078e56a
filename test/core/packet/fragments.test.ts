import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { FragmentTracker } from '../../../src/core/packet/fragments.js';
import { parsePacket } from '../../../src/core/packet/parse.js';
import type { ParsedPacket } from '../../../src/core/packet/parse.js';
import { buildPacket, fragmentPacket } from '../../helpers/packets.js';

function parseOk(buf: Uint8Array): ParsedPacket {
  const p = parsePacket(buf, 0, buf.length);
  assert.ok(p.ok);
  return p;
}

/** The fragments of one UDP datagram, parsed, with their bytes. */
function datagram(id: number, src = '10.0.0.1', dst = '10.0.0.2'): { packet: Uint8Array; p: ParsedPacket }[] {
  const whole = buildPacket({ src, dst, protocol: 'udp', payload: new Uint8Array(100) });
  return fragmentPacket(whole, 40, id).map((packet) => ({ packet, p: parseOk(packet) }));
}

test('later fragments follow the decision taken for the first', () => {
  const tracker = new FragmentTracker<string>(new ManualClock());
  const [first, second, third] = datagram(7);
  assert.equal(tracker.decisionFor(second!.p), undefined);
  assert.deepEqual(tracker.decide(first!.p, 'rs-a'), []);
  assert.equal(tracker.decisionFor(second!.p), 'rs-a');
  assert.equal(tracker.decisionFor(third!.p), 'rs-a');
});

test('datagrams are told apart by id, addresses and family', () => {
  const tracker = new FragmentTracker<string>(new ManualClock());
  tracker.decide(datagram(1)[0]!.p, 'one');
  tracker.decide(datagram(2)[0]!.p, 'two');
  tracker.decide(datagram(1, '10.0.0.9')[0]!.p, 'other-source');
  tracker.decide(datagram(1, 'fd00::1', 'fd00::2')[0]!.p, 'v6');
  assert.equal(tracker.decisionFor(datagram(1)[1]!.p), 'one');
  assert.equal(tracker.decisionFor(datagram(2)[1]!.p), 'two');
  assert.equal(tracker.decisionFor(datagram(1, '10.0.0.9')[1]!.p), 'other-source');
  assert.equal(tracker.decisionFor(datagram(1, 'fd00::1', 'fd00::2')[1]!.p), 'v6');
  assert.equal(tracker.decisionFor(datagram(3)[1]!.p), undefined);
});

test('fragments ahead of the first are held and released to it, in arrival order', () => {
  const tracker = new FragmentTracker<string>(new ManualClock());
  const [first, second, third] = datagram(9);
  assert.equal(tracker.hold(third!.p, third!.packet), true);
  assert.equal(tracker.hold(second!.p, second!.packet), true);
  assert.deepEqual(
    [tracker.heldPackets, tracker.heldBytes],
    [2, third!.packet.length + second!.packet.length],
  );
  const released = tracker.decide(first!.p, 'rs-b');
  assert.deepEqual(released, [third!.packet, second!.packet]);
  assert.deepEqual([tracker.heldPackets, tracker.heldBytes], [0, 0]);
  assert.equal(tracker.decisionFor(second!.p), 'rs-b');
  // Once decided, there is nothing to wait for: holding is refused.
  assert.equal(tracker.hold(second!.p, second!.packet), false);
});

test('holding is bounded in packets and bytes', () => {
  const tracker = new FragmentTracker<string>(new ManualClock(), { maxHeldPackets: 2, maxHeldBytes: 120 });
  const a = datagram(1);
  const b = datagram(2);
  assert.equal(tracker.hold(a[1]!.p, a[1]!.packet), true);
  assert.equal(tracker.hold(b[1]!.p, new Uint8Array(61)), false, 'bytes bound');
  assert.equal(tracker.hold(b[1]!.p, b[1]!.packet), true);
  assert.equal(tracker.hold(a[2]!.p, a[2]!.packet), false, 'packet bound');
});

test('datagrams expire after the timeout, dropping what they held', () => {
  const clock = new ManualClock(1000);
  const tracker = new FragmentTracker<string>(clock, { timeoutMs: 30_000 });
  const a = datagram(1);
  const b = datagram(2);
  tracker.decide(a[0]!.p, 'rs-a');
  clock.advance(10_000);
  tracker.hold(b[1]!.p, b[1]!.packet);
  tracker.hold(b[2]!.p, b[2]!.packet);
  clock.advance(20_000);
  assert.equal(tracker.decisionFor(a[1]!.p), undefined, 'a expired at 30 s');
  assert.equal(tracker.expire(), 0);
  assert.equal(tracker.size, 1);
  clock.advance(10_000);
  assert.equal(tracker.expire(), 2);
  assert.deepEqual([tracker.size, tracker.heldPackets, tracker.heldBytes, tracker.droppedHeld], [0, 0, 0, 2]);
  // A first fragment arriving after its held fragments expired finds nothing to release.
  assert.deepEqual(tracker.decide(b[0]!.p, 'late'), []);
});

test('the oldest datagram is forgotten when the table is full', () => {
  const tracker = new FragmentTracker<number>(new ManualClock(), { maxDatagrams: 2 });
  const held = datagram(1);
  tracker.hold(held[1]!.p, held[1]!.packet);
  tracker.decide(datagram(2)[0]!.p, 2);
  tracker.decide(datagram(3)[0]!.p, 3);
  assert.equal(tracker.size, 2);
  assert.deepEqual([tracker.heldPackets, tracker.droppedHeld], [0, 1]);
  assert.equal(tracker.decisionFor(datagram(2)[1]!.p), 2);
  assert.equal(tracker.decisionFor(datagram(3)[1]!.p), 3);
});
