import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../../src/core/clock.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../../src/core/inet.js';
import { CONN_F_ONE_PACKET, CONN_F_TEMPLATE, type SyncConn } from '../../../src/core/sync/conn.js';
import { decode } from '../../../src/core/sync/message.js';
import { SyncMaster, type SyncTuning } from '../../../src/core/sync/master.js';
import { addr } from '../../helpers/packets.js';
import { exampleConn } from './arbitrary.js';

const STATE = { SYN_RECV: 3, ESTABLISHED: 1, FIN_WAIT: 4, TIME_WAIT: 5, CLOSE: 6 } as const;

function conn(protocol: number, state: number, flags = 0, cport = 40000): SyncConn {
  const timeoutSec = protocol === IPPROTO_UDP ? 300 : 900;
  const addrs = { caddr: addr('198.18.0.2'), vaddr: addr('198.18.0.1'), daddr: addr('198.18.1.11') };
  return exampleConn({ protocol, state, flags, cport, vport: 80, dport: 80, timeoutSec, ...addrs });
}

function master(tuning: Partial<SyncTuning> = {}, maxLen = 1472) {
  const clock = new ManualClock(1_000_000);
  const m = new SyncMaster({ syncId: 4, maxLen, clock, tuning });
  /** Everything the master would have sent so far, decoded. */
  const sent = (): SyncConn[] =>
    m.takeAll().flatMap((bytes) => {
      const r = decode(bytes);
      assert.ok(r.ok && r.syncId === 4);
      return r.conns;
    });
  return { m, clock, sent };
}

/** Drives packets 1..n of a connection whose state after packet i is stateAt(i); returns the packets that synced it. */
function syncedPackets(
  m: SyncMaster,
  sent: () => SyncConn[],
  n: number,
  make: (i: number) => SyncConn,
  control?: SyncConn,
): number[] {
  const out: number[] = [];
  for (let i = 1; i <= n; i++) {
    m.handle({ kind: 'packet', conn: make(i), inPkts: i, control });
    if (sent().some((c) => !(c.flags & CONN_F_TEMPLATE))) out.push(i);
  }
  return out;
}

test('TCP: synced at the threshold once ESTABLISHED, every sync_period packets, at once on closing states', () => {
  const { m, sent } = master();
  const stateAt = (i: number) =>
    i === 1 ? STATE.SYN_RECV : i < 60 ? STATE.ESTABLISHED : i < 70 ? STATE.FIN_WAIT : STATE.TIME_WAIT;
  const synced = syncedPackets(m, sent, 120, (i) => conn(IPPROTO_TCP, stateAt(i)));
  // 3 and 53: 3 mod 50; 60: FIN_WAIT reached; 70: TIME_WAIT reached; 103 again by count.
  assert.deepEqual(synced, [3, 53, 60, 70, 103]);
});

test('TCP in SYN_RECV or other handshake states is never synced', () => {
  const { m, sent } = master();
  assert.deepEqual(
    syncedPackets(m, sent, 60, () => conn(IPPROTO_TCP, STATE.SYN_RECV)),
    [],
  );
});

test('UDP: the periodic resend keeps a long-lived flow on the backup', () => {
  const { m, sent } = master();
  assert.deepEqual(
    syncedPackets(m, sent, 160, () => conn(IPPROTO_UDP, 0)),
    [3, 53, 103, 153],
  );
});

test('sync_period 0: once, at sync_threshold packets', () => {
  const { m, sent } = master({ syncPeriod: 0 });
  assert.deepEqual(
    syncedPackets(m, sent, 200, () => conn(IPPROTO_UDP, 0)),
    [3],
  );
});

test('a persistence template goes with each packet of its connections; sync_persist_mode leaves the connections out', () => {
  const template = { ...conn(IPPROTO_TCP, 0, CONN_F_TEMPLATE, 0), timeoutSec: 360 };
  for (const persistMode of [false, true]) {
    const { m } = master({ syncPersistMode: persistMode });
    const sentNow: SyncConn[][] = [];
    for (let i = 1; i <= 5; i++) {
      m.handle({ kind: 'packet', conn: conn(IPPROTO_TCP, STATE.ESTABLISHED), inPkts: i, control: template });
      sentNow.push(m.takeAll().flatMap((b) => (decode(b) as { conns: SyncConn[] }).conns));
    }
    const kinds = sentNow.map((cs) => cs.map((c) => (c.flags & CONN_F_TEMPLATE ? 'T' : 'C')).join(''));
    assert.deepEqual(kinds, persistMode ? ['T', 'T', 'T', 'T', 'T'] : ['T', 'T', 'CT', 'T', 'T']);
  }
});

test('one-packet connections are not synced, their template is', () => {
  const { m, sent } = master();
  const template = conn(IPPROTO_UDP, 0, CONN_F_TEMPLATE, 0);
  m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0, CONN_F_ONE_PACKET), inPkts: 3, control: template });
  assert.deepEqual(
    sent().map((c) => c.flags),
    [CONN_F_TEMPLATE],
  );
});

test('sync_refresh_period: resent only when the backup timer would drift, with sync_retries retries', () => {
  const { m, clock, sent } = master({ syncPeriod: 0, syncRefreshPeriodMs: 60_000, syncRetries: 1 });
  const times: number[] = [];
  for (let s = 0; s <= 130; s++) {
    m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0), inPkts: s + 1 });
    if (sent().length > 0) times.push(s);
    clock.advance(1000);
  }
  // First packet; one retry at refresh/8 = 7.5 s later; 60 s after that send, again, and its retry.
  assert.deepEqual(times, [0, 8, 68, 76]);
});

test('messages wait for 2 s or until full; a full one asks to be sent', () => {
  const { m, clock } = master({}, 8 + 36 * 3);
  let wakeups = 0;
  m.onReady = () => wakeups++;
  const ready = () => m.takeReady().map((b) => (decode(b) as { conns: SyncConn[] }).conns.length);
  for (let p = 0; p < 2; p++)
    m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0, 0, 1000 + p), inPkts: 3 });
  assert.deepEqual(ready(), []);
  clock.advance(1999);
  assert.deepEqual(ready(), []);
  clock.advance(1);
  assert.deepEqual(ready(), [2]);
  for (let p = 0; p < 4; p++)
    m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0, 0, 2000 + p), inPkts: 3 });
  assert.equal(wakeups, 1);
  assert.deepEqual(ready(), [3]);
  assert.deepEqual(
    m.takeAll().map((b) => (decode(b) as { conns: SyncConn[] }).conns.map((c) => c.cport)),
    [[2003]],
  );
  assert.equal(m.stats().entries, 6);
  assert.equal(m.stats().messages, 3);
});

test('the send queue is bounded: messages beyond queueMax are dropped and counted', () => {
  const { m } = master({ queueMax: 2 }, 8 + 36);
  for (let p = 0; p < 5; p++) m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0, 0, p), inPkts: 3 });
  // Four closed messages (two dropped), the fifth entry still open.
  assert.equal(m.stats().queueDropped, 2);
  assert.equal(m.takeAll().length, 3);
});

test('bookkeeping is bounded and forgotten on expiry', () => {
  const clock = new ManualClock();
  const m = new SyncMaster({ syncId: 0, maxLen: 1472, clock, maxTracked: 10 });
  for (let p = 0; p < 25; p++) m.handle({ kind: 'packet', conn: conn(IPPROTO_UDP, 0, 0, p), inPkts: 1 });
  assert.equal(m.stats().tracked, 10);
  m.handle({ kind: 'expired', conn: conn(IPPROTO_UDP, 0, 0, 24) });
  assert.equal(m.stats().tracked, 9);
});

test('records that cannot be sent are counted, not sent', () => {
  const { m, sent } = master();
  const bad = { ...conn(IPPROTO_UDP, 0), pe: { name: '', data: Uint8Array.of(1) } };
  m.syncAll([bad, conn(IPPROTO_UDP, 0)]);
  assert.equal(sent().length, 1);
  assert.equal(m.stats().invalid, 1);
});
