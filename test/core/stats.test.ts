// A Stats counter is a kernel u64: exact over the whole range (past 2^53, where a JS number
// loses digits) and wrapping at 2^64, whatever the two words it is kept in.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { COUNTERS, Stats, type Counter } from '../../src/core/model.js';
import { setCounter } from '../helpers/counters.js';

const U64 = 1n << 64n;
const U32_MAX = 0xffff_ffff;

function values(stats: Stats): Record<Counter, bigint> {
  return Object.fromEntries(COUNTERS.map((c) => [c, stats.value(c)])) as Record<Counter, bigint>;
}

test('a counter is exact past 2^53, carries into its high word and wraps at 2^64', () => {
  const stats = new Stats();
  setCounter(stats, 'inBytes', 2n ** 53n);
  stats.countIn(0, 1);
  assert.equal(stats.value('inBytes'), 9007199254740993n, '2^53 + 1: a JS number would say 2^53');
  setCounter(stats, 'inPkts', 2n ** 32n - 1n);
  stats.countIn(1, 0);
  assert.equal(stats.value('inPkts'), 2n ** 32n, 'the carry reaches the high word');
  setCounter(stats, 'outBytes', U64 - 2n);
  stats.countOut(0, 1);
  assert.equal(stats.value('outBytes'), 18446744073709551615n);
  stats.countOut(0, 2);
  assert.equal(stats.value('outBytes'), 1n, 'wraps at 2^64 as the kernel u64');
  setCounter(stats, 'conns', U64 - 1n);
  stats.countConn();
  assert.equal(stats.value('conns'), 0n);
  stats.reset();
  assert.deepEqual(values(stats), { conns: 0n, inPkts: 0n, outPkts: 0n, inBytes: 0n, outBytes: 0n });
});

/** Start values that sit next to the word and precision boundaries, or anywhere in the range. */
const start = fc.oneof(
  fc.bigInt({ min: 0n, max: U64 - 1n }),
  fc
    .tuple(fc.constantFrom(0n, 2n ** 32n, 2n ** 53n, U64), fc.bigInt({ min: -3n, max: 3n }))
    .map(([edge, offset]) => BigInt.asUintN(64, edge + offset)),
);
const amount = fc.oneof(fc.integer({ min: 0, max: U32_MAX }), fc.constantFrom(0, 1, U32_MAX));
const step = fc.oneof(
  fc.constant({ kind: 'conn' as const, packets: 1, bytes: 0 }),
  fc.record({ kind: fc.constantFrom('in' as const, 'out' as const), packets: amount, bytes: amount }),
);

test('property: the two-word add equals BigInt arithmetic modulo 2^64', () => {
  fc.assert(
    fc.property(
      fc.tuple(start, start, start, start, start),
      fc.array(step, { maxLength: 40 }),
      (starts, steps) => {
        const stats = new Stats();
        const model = {} as Record<Counter, bigint>;
        COUNTERS.forEach((c, i) => {
          setCounter(stats, c, starts[i]!);
          model[c] = starts[i]!;
        });
        const add = (c: Counter, n: number) => (model[c] = (model[c] + BigInt(n)) % U64);
        for (const s of steps) {
          if (s.kind === 'conn') {
            stats.countConn();
            add('conns', 1);
          } else if (s.kind === 'in') {
            stats.countIn(s.packets, s.bytes);
            add('inPkts', s.packets);
            add('inBytes', s.bytes);
          } else {
            stats.countOut(s.packets, s.bytes);
            add('outPkts', s.packets);
            add('outBytes', s.bytes);
          }
          assert.deepEqual(values(stats), model);
        }
      },
    ),
    { numRuns: 300 },
  );
});
