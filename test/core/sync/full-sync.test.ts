// The full-table sync's walk (FullSyncWalk over syncWalkPage): every connection goes out exactly
// once even while connections come and go underneath, each page is bounded, and the rate and the
// send backlog hold the walk back.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ManualClock } from '../../../src/core/clock.js';
import { ErrorCodes } from '../../../src/core/errors.js';
import { Director } from '../../../src/core/director.js';
import { DEFAULT_FULL_SYNC, FullSyncWalk, type FullSyncSettings } from '../../../src/core/sync/full-sync.js';
import { syncWalkPage } from '../../../src/core/sync/source.js';
import { connSpec, makeDest, makeTable } from '../conn/helpers.js';

const dest = makeDest(0, '198.18.1.10');
const everyService = (): number => 0;

/** A table of `capacity` slots and a way to add connections that each have a distinct client address. */
function world(capacity: number) {
  const { clock, table } = makeTable(capacity);
  let made = 0;
  const add = (): number | null => {
    const n = ++made;
    const id = table.create(connSpec(n, dest));
    return id < 0 ? null : n;
  };
  /** The client number of each live entry (its identity across slot reuse). */
  const live = (): Map<number, number> => {
    const out = new Map<number, number>();
    for (const id of table.liveIds()) out.set(id, table.caddr(id).a - 0x0a000000);
    return out;
  };
  return { clock, table, add, live };
}

/** Runs pages until the walk ends, calling `between` before each; returns what each page sent. */
function runWalk(
  w: ReturnType<typeof world>,
  walk: FullSyncWalk,
  between: (page: number) => void,
  settings: FullSyncSettings,
): number[][] {
  const pages: number[][] = [];
  let changedBefore = -1;
  for (let guard = 0; walk.walking; guard++) {
    assert.ok(guard < 100_000, 'the walk ends');
    if (changedBefore < pages.length) between((changedBefore = pages.length));
    w.clock.advance(10);
    const request = walk.next(0);
    if (!request) continue;
    assert.ok(
      request.limit >= 1 && request.limit <= settings.maxPerPage,
      'a page asks for at most maxPerPage',
    );
    const page = syncWalkPage(w.table, everyService, request);
    assert.ok(page.conns.length <= request.limit, 'a page holds at most its limit');
    const end = request.to >= 0 ? Math.min(request.to, w.table.usedSlots) : w.table.usedSlots;
    const scanned = (page.next < 0 ? end : page.next) - request.from;
    assert.ok(
      scanned <= request.maxSlots,
      `a page scans at most maxSlots (${scanned} > ${request.maxSlots})`,
    );
    pages.push(page.conns.map((c) => c.caddr.a - 0x0a000000));
    walk.advance({ count: page.conns.length, next: page.next });
  }
  return pages;
}

test('a walk over a table that changes underneath sends each connection alive throughout exactly once', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 300 }),
      fc.array(
        fc.record({
          adds: fc.integer({ min: 0, max: 8 }),
          removes: fc.integer({ min: 0, max: 8 }),
          request: fc.boolean(),
        }),
        { maxLength: 60 },
      ),
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 1, max: 4 }),
      fc.nat(),
      (initial, steps, maxPerPage, scanFactor, seed) => {
        const w = world(2048); // never full: no eviction behind the test's back
        for (let i = 0; i < initial; i++) w.add();
        const settings = { ...DEFAULT_FULL_SYNC, maxPerPage, scanFactor, entriesPerSecond: 5000 };
        const walk = new FullSyncWalk(w.clock, settings);
        let random = seed;
        const pick = (n: number) => (random = (random * 1103515245 + 12345) >>> 0) % n;
        // Each request: the clients alive then, and (filled in as they go) those removed since.
        const requests: { alive: Set<number>; removed: Set<number>; page: number }[] = [];
        const request = (page: number) => {
          walk.request();
          requests.push({ alive: new Set(w.live().values()), removed: new Set(), page });
        };
        request(0);
        const pages = runWalk(
          w,
          walk,
          (page) => {
            const step = steps[page];
            if (!step) return;
            for (let i = 0; i < step.removes; i++) {
              const ids = [...w.live().entries()];
              if (ids.length === 0) break;
              const [id, client] = ids[pick(ids.length)]!;
              w.table.expire(id);
              for (const r of requests) r.removed.add(client);
            }
            for (let i = 0; i < step.adds; i++) w.add();
            if (step.request) request(page);
          },
          settings,
        );
        requests.forEach((r, k) => {
          const sent = pages.slice(r.page).flat();
          const counts = new Map<number, number>();
          for (const client of sent) counts.set(client, (counts.get(client) ?? 0) + 1);
          for (const client of r.alive) {
            if (r.removed.has(client)) continue;
            const n = counts.get(client) ?? 0;
            assert.ok(n >= 1, `request ${k}: client ${client} alive throughout was sent`);
          }
          // After the last request nothing goes twice: the walk went round once from there.
          if (k === requests.length - 1)
            for (const [client, n] of counts) assert.equal(n, 1, `client ${client} sent ${n} times`);
        });
      },
    ),
    { numRuns: 200 },
  );
});

test('a request during a walk goes on from where the walk is, round to there, not from the start', () => {
  const w = world(64);
  for (let i = 0; i < 40; i++) w.add();
  const settings = { ...DEFAULT_FULL_SYNC, maxPerPage: 10 };
  const walk = new FullSyncWalk(w.clock, settings);
  walk.request();
  const first = syncWalkPage(w.table, everyService, walk.next(0)!);
  walk.advance({ count: first.conns.length, next: first.next });
  assert.deepEqual(
    first.conns.map((c) => c.caddr.a - 0x0a000000),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  walk.request(); // a second backup joins after clients 1..10 went out
  const rest = runWalk(w, walk, () => undefined, settings).flat();
  const expected = [
    ...Array.from({ length: 30 }, (_, i) => i + 11),
    ...Array.from({ length: 10 }, (_, i) => i + 1),
  ];
  assert.deepEqual(rest, expected, 'clients 11..40, then round again to 1..10');
  assert.equal(walk.stats().completed, 1);
  assert.equal(walk.stats().entries, 50);
});

test('the walk sends at most entriesPerSecond, one page of maxPerPage at a time, and waits for the socket', () => {
  const clock = new ManualClock(0);
  const walk = new FullSyncWalk(clock, { entriesPerSecond: 1000, maxPerPage: 100, maxBacklog: 8 });
  walk.request();
  let sent = 0;
  let cursor = 0;
  // A table of 10,000 entries that never ends within the test; a page gives all it is asked for.
  for (let t = 0; t < 5000; t += 10) {
    clock.advance(10);
    const request = walk.next(0);
    if (!request) continue;
    assert.ok(request.limit <= 100);
    assert.equal(walk.next(0), null, 'one page at a time');
    sent += request.limit;
    cursor += request.limit;
    walk.advance({ count: request.limit, next: cursor });
    // The bucket starts full (one page) and refills at the rate.
    assert.ok(sent <= 100 + clock.now(), `${sent} entries by ${clock.now()} ms`);
  }
  assert.ok(sent >= 4900, `the rate is used: ${sent} in 5 s`);
  clock.advance(1000);
  assert.equal(walk.next(9), null, 'more than maxBacklog messages waiting: no page');
  assert.notEqual(walk.next(8), null, 'the socket caught up: the walk goes on');
});

test('a page the engine refused is asked for again; a cancelled walk asks for nothing', () => {
  const clock = new ManualClock(0);
  const walk = new FullSyncWalk(clock);
  walk.request();
  const request = walk.next(0)!;
  walk.failed();
  assert.deepEqual(walk.next(0), request);
  walk.cancel();
  assert.equal(walk.next(0), null);
  assert.equal(walk.walking, false);
});

test('bad pacing settings are refused', () => {
  const clock = new ManualClock(0);
  assert.throws(() => new FullSyncWalk(clock, { entriesPerSecond: 0 }), RangeError);
  assert.throws(() => new FullSyncWalk(clock, { maxPerPage: 0 }), RangeError);
  assert.throws(() => new FullSyncWalk(clock, { maxPerPage: 5000 }), RangeError);
  assert.throws(() => new FullSyncWalk(clock, { scanFactor: 0.5 }), RangeError);
});

test('Director.syncPage refuses a page out of range and changes nothing', () => {
  const d = new Director({ clock: new ManualClock(0), connCapacity: 16 });
  const ok = { from: 0, to: -1, limit: 10, maxSlots: 100 };
  assert.deepEqual(d.syncPage(ok), { conns: [], next: -1 });
  for (const bad of [
    { ...ok, from: -1 },
    { ...ok, from: 1.5 },
    { ...ok, to: -2 },
    { ...ok, from: 5, to: 4 },
    { ...ok, limit: 0 },
    { ...ok, limit: 4097 },
    { ...ok, maxSlots: 0 },
    { ...ok, maxSlots: 1 << 20 },
  ]) {
    assert.throws(() => d.syncPage(bad), { code: ErrorCodes.INVALID }, JSON.stringify(bad));
  }
});
