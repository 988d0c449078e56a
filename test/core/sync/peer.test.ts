// lvsd's peer notices (JOIN, MASTER): messages a kernel backup takes as ordinary sync messages with
// no entries, that no sync message is mistaken for; what a backup and a master make of them.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { addr4 } from '../../../src/core/inet.js';
import { SyncBackup } from '../../../src/core/sync/backup.js';
import { decode, encode } from '../../../src/core/sync/message.js';
import {
  decodePeerNotice,
  encodePeerNotice,
  MasterPeers,
  PEER_MASTER_WINDOW_MS,
  PEER_NOTICE_LENGTH,
  type PeerNotice,
} from '../../../src/core/sync/peer.js';
import { exampleConn, syncConnArb } from './arbitrary.js';

const noticeArb: fc.Arbitrary<PeerNotice> = fc.record({
  kind: fc.constantFrom<PeerNotice['kind']>('join', 'master'),
  syncId: fc.integer({ min: 0, max: 255 }),
  instance: fc.integer({ min: 0, max: 0xffffffff }),
});

test('a notice round-trips, and is a v1 sync message of no entries to the kernel codec', () => {
  fc.assert(
    fc.property(noticeArb, (notice) => {
      const bytes = encodePeerNotice(notice);
      assert.equal(bytes.length, PEER_NOTICE_LENGTH);
      assert.deepEqual(decodePeerNotice(bytes), { ...notice });
      // What ip_vs_process_message does with it: size matches, v1 header, zero entries read.
      const asKernel = decode(bytes);
      assert.ok(asKernel.ok);
      assert.equal(asKernel.version, 1);
      assert.equal(asKernel.syncId, notice.syncId);
      assert.deepEqual(asKernel.conns, []);
      assert.deepEqual(asKernel.skipped, []);
    }),
  );
});

test('the bytes of a JOIN, as a kernel backup reads them', () => {
  const bytes = encodePeerNotice({ kind: 'join', syncId: 51, instance: 0x01020304 });
  assert.deepEqual(
    [...bytes],
    // reserved, syncid, size (20), nr_conns 0, version 1, spare 0 | "lvsd", kind 1, version 1, spare, instance
    [0, 51, 0, 20, 0, 1, 0, 0, 0x6c, 0x76, 0x73, 0x64, 1, 1, 0, 0, 1, 2, 3, 4],
  );
});

test('no sync message and no other bytes are taken for a notice', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.array(syncConnArb, { maxLength: 5 }).map((conns) => encode({ syncId: 7, conns })),
        fc.uint8Array({ minLength: PEER_NOTICE_LENGTH, maxLength: PEER_NOTICE_LENGTH }),
      ),
      (datagram) => assert.equal(decodePeerNotice(datagram), null),
    ),
  );
  // One byte off anywhere in the fixed part: not a notice.
  const good = encodePeerNotice({ kind: 'master', syncId: 1, instance: 9 });
  for (const at of [0, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14]) {
    const bad = good.slice();
    bad[at]! ^= 0x80;
    assert.equal(decodePeerNotice(bad), null, `byte ${at}`);
  }
});

test('a backup counts notices apart from sync messages and asks each new lvsd master once', () => {
  const asked: number[] = [];
  const delivered: unknown[] = [];
  const b = new SyncBackup({
    syncId: 5,
    maxLen: 1472,
    clock: new ManualClock(0),
    deliver: (c) => delivered.push(c),
    onNewMaster: (n) => asked.push(n.instance),
  });
  b.receive(encodePeerNotice({ kind: 'master', syncId: 5, instance: 1 }));
  b.receive(encodePeerNotice({ kind: 'master', syncId: 5, instance: 1 }));
  b.receive(encodePeerNotice({ kind: 'master', syncId: 6, instance: 2 })); // another syncid: not ours
  b.receive(encodePeerNotice({ kind: 'join', syncId: 5, instance: 3 })); // another backup
  b.receive(encodePeerNotice({ kind: 'master', syncId: 5, instance: 4 })); // a master restarted
  assert.deepEqual(asked, [1, 4]);
  const s = b.stats();
  assert.equal(s.notices, 5);
  assert.equal(s.received, 0);
  assert.equal(s.lastMessageAt, null, 'a notice is no message from a master');
  assert.deepEqual(delivered, []);
});

const conn = exampleConn({ caddr: addr4(0xc6120002), vaddr: addr4(0xc6120001), daddr: addr4(0xc612010b) });

test('a master serves each backup instance once, on its syncid or a backup that takes every one', () => {
  const clock = new ManualClock(0);
  const peers = new MasterPeers(5, 99, clock);
  const join = (syncId: number, instance: number) =>
    peers.heard(encodePeerNotice({ kind: 'join', syncId, instance }), '198.18.5.2').kind;
  assert.equal(join(5, 1), 'join');
  assert.equal(join(5, 1), 'none', 'the same backup asking again');
  assert.equal(join(0, 2), 'join', 'a backup with syncid 0 takes this master');
  assert.equal(join(6, 3), 'none', 'a backup of another syncid');
  assert.equal(join(5, 4), 'join', 'a backup restarted');
  const s = peers.stats();
  assert.equal(s.joins, 5);
  assert.equal(s.joinsServed, 3);
  assert.equal(s.peerMasterMessages, 0);
});

test('a master hears another master on its syncid: one split brain while it keeps sending, another after a silence', () => {
  const clock = new ManualClock(0);
  const peers = new MasterPeers(5, 99, clock);
  const other = '198.18.5.2';
  // Its own notice looped back, another syncid's master, and a JOIN: no split brain.
  assert.equal(
    peers.heard(encodePeerNotice({ kind: 'master', syncId: 5, instance: 99 }), other).kind,
    'none',
  );
  assert.equal(peers.heard(encode({ syncId: 6, conns: [conn] }), other).kind, 'none');
  assert.equal(peers.stats().splitBrains, 0);

  assert.deepEqual(peers.heard(encode({ syncId: 5, conns: [conn] }), other), {
    kind: 'peer-master',
    source: other,
    started: true,
  });
  clock.advance(2000);
  const again = peers.heard(encodePeerNotice({ kind: 'master', syncId: 5, instance: 7 }), other);
  assert.deepEqual(again, { kind: 'peer-master', source: other, started: false });
  assert.equal(peers.stats().peerMasterActive, true);
  clock.advance(PEER_MASTER_WINDOW_MS);
  assert.equal(peers.stats().peerMasterActive, false, 'not heard within the window');
  assert.equal(peers.heard(encode({ syncId: 5, conns: [conn] }), other).kind, 'peer-master');
  const s = peers.stats();
  assert.equal(s.splitBrains, 2);
  assert.equal(s.peerMasterMessages, 3);
  assert.equal(s.lastPeerMaster, other);
  assert.equal(s.lastPeerMasterAt, clock.now());
});
