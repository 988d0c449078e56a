import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import {
  CONN_F_INACTIVE,
  CONN_F_NOOUTPUT,
  CONN_F_ONE_PACKET,
  CONN_F_SYNC,
  CONN_F_TEMPLATE,
  type SyncConn,
} from '../../../src/core/sync/conn.js';
import { encode } from '../../../src/core/sync/message.js';
import { SYNC_DROP_REASONS, SyncBackup, type SyncBackupOptions } from '../../../src/core/sync/backup.js';
import { exampleUdp, syncConnArb } from './arbitrary.js';

const UDP = exampleUdp();

function backup(options: Partial<SyncBackupOptions> = {}) {
  const clock = new ManualClock(5000);
  const delivered: SyncConn[][] = [];
  const b = new SyncBackup({ syncId: 0, maxLen: 1472, clock, deliver: (c) => delivered.push(c), ...options });
  return { b, clock, delivered };
}

test('a good message is handed on with the flags a backup keeps, plus IP_VS_CONN_F_SYNC', () => {
  const { b, delivered } = backup();
  const flags = CONN_F_INACTIVE | CONN_F_NOOUTPUT | CONN_F_ONE_PACKET | 0x00010000;
  b.receive(encode({ syncId: 9, conns: [{ ...UDP, flags }, UDP] }));
  assert.deepEqual(delivered, [
    [
      { ...UDP, flags: CONN_F_INACTIVE | CONN_F_NOOUTPUT | CONN_F_SYNC },
      { ...UDP, flags: CONN_F_SYNC },
    ],
  ]);
  const stats = b.stats();
  assert.equal(stats.accepted, 1);
  assert.equal(stats.conns, 2);
  assert.equal(stats.lastMessageAt, 5000);
});

test('only the configured syncid is taken; 0 takes every one, as the kernel', () => {
  const message = encode({ syncId: 7, conns: [UDP] });
  const strict = backup({ syncId: 5 });
  strict.b.receive(message);
  assert.deepEqual(strict.delivered, []);
  assert.equal(strict.b.stats().dropped['wrong-syncid'], 1);
  assert.equal(strict.b.stats().lastMessageAt, null);
  const matching = backup({ syncId: 7 });
  matching.b.receive(message);
  assert.equal(matching.delivered.length, 1);
  const any = backup({ syncId: 0 });
  any.b.receive(message);
  assert.equal(any.delivered.length, 1);
});

test('datagrams longer than the backup sync_maxlen, malformed or truncated are dropped by reason', () => {
  const { b, delivered } = backup({ maxLen: 1024 });
  const good = encode({ syncId: 1, conns: [UDP] });
  b.receive(new Uint8Array(1025));
  b.receive(good.subarray(0, 20));
  b.receive(Uint8Array.of(0, 1));
  const badVersion = good.slice();
  badVersion[5] = 3;
  b.receive(badVersion);
  assert.deepEqual(delivered, []);
  const s = b.stats();
  assert.deepEqual(
    [s.received, s.dropped.oversized, s.dropped['bad-size'], s.dropped.short, s.dropped['bad-version']],
    [4, 1, 1, 1, 1],
  );
});

test('records of a persistence engine this director lacks are skipped and counted', () => {
  const sip = {
    ...UDP,
    flags: CONN_F_TEMPLATE,
    stateName: 'NONE',
    pe: { name: 'sip', data: Uint8Array.of(1, 2) },
  };
  const other = { ...sip, pe: { name: 'xyz', data: Uint8Array.of(3) } };
  const { b, delivered } = backup({ knownPe: (name) => name === 'sip' });
  b.receive(encode({ syncId: 0, conns: [sip, other] }));
  assert.deepEqual(delivered, [[{ ...sip, flags: CONN_F_TEMPLATE | CONN_F_SYNC }]]);
  assert.equal(b.stats().skipped['unknown-pe'], 1);
});

test('fuzz: any datagram is counted once, never throws, delivers only synced records', () => {
  const { b, delivered } = backup();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 1600 }),
        fc.array(syncConnArb, { maxLength: 30 }).map((conns) => encode({ syncId: 3, conns })),
      ),
      (datagram) => {
        b.receive(datagram);
      },
    ),
    { numRuns: 1500 },
  );
  const s = b.stats();
  const dropped = SYNC_DROP_REASONS.reduce((sum, r) => sum + s.dropped[r], 0);
  assert.equal(s.received, 1500);
  assert.equal(s.accepted + dropped, s.received);
  assert.equal(
    delivered.reduce((n, cs) => n + cs.length, 0),
    s.conns,
  );
  for (const conns of delivered) for (const c of conns) assert.ok(c.flags & CONN_F_SYNC);
});
