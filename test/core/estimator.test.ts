import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Estimator } from '../../src/core/estimator.js';
import { Stats, zeroRates, type Counter, type Rates } from '../../src/core/model.js';
import { setCounter } from '../helpers/counters.js';

function setup() {
  const estimator = new Estimator();
  const stats = new Stats();
  const owner = { rates: zeroRates() };
  estimator.add(stats, owner);
  estimator.tick(0);
  return { estimator, stats, owner };
}

/** Grows the counters by per-second amounts over one 2 s interval. */
function grow(stats: Stats, perSecond: Partial<Record<Counter, number>>) {
  for (const [counter, value] of Object.entries(perSecond) as [Counter, number][])
    setCounter(stats, counter, stats.value(counter) + BigInt(value * 2));
}

test('a steady load converges to its per-second rates', () => {
  const { estimator, stats, owner } = setup();
  for (let t = 1; t <= 100; t++) {
    grow(stats, { conns: 50, inPkts: 1000, outPkts: 800, inBytes: 1_500_000, outBytes: 9_000_000 });
    estimator.tick(t * 2000);
  }
  assert.deepEqual(owner.rates, { cps: 50, inpps: 1000, outpps: 800, inbps: 1_500_000, outbps: 9_000_000 });
});

test('a step is smoothed with weight 1/4 per 2 s sample', () => {
  const { estimator, stats, owner } = setup();
  const seen: number[] = [];
  for (let t = 1; t <= 3; t++) {
    grow(stats, { conns: 100 });
    estimator.tick(t * 2000);
    seen.push(owner.rates.cps);
  }
  // 100 * (1/4), then (1 - (3/4)^2), then (1 - (3/4)^3)
  assert.deepEqual(seen, [25, 44, 58]);
});

test('ticks between samples change nothing; a late tick spreads the growth over the missed intervals', () => {
  const regular = setup();
  const late = setup();
  for (let t = 1; t <= 3; t++) {
    grow(regular.stats, { inPkts: 300 });
    regular.estimator.tick(t * 2000 - 1000);
    regular.estimator.tick(t * 2000);
    grow(late.stats, { inPkts: 300 });
  }
  late.estimator.tick(1999);
  assert.deepEqual(late.owner.rates, zeroRates());
  late.estimator.tick(6000);
  assert.deepEqual(late.owner.rates, regular.owner.rates);
  assert.ok(regular.owner.rates.inpps > 0);
});

test('zeroed counters produce no spike, with or without reset()', () => {
  for (const callReset of [false, true]) {
    const { estimator, stats, owner } = setup();
    for (let t = 1; t <= 20; t++) {
      grow(stats, { conns: 10, inBytes: 1_000_000 });
      estimator.tick(t * 2000);
    }
    assert.equal(owner.rates.cps, 10);
    stats.reset();
    if (callReset) {
      estimator.reset(stats);
      assert.deepEqual(owner.rates, zeroRates(), 'reset clears the rates at once');
    }
    estimator.tick(42_000);
    const after: Rates = { ...owner.rates };
    assert.deepEqual(after, zeroRates());
    grow(stats, { conns: 4 });
    estimator.tick(44_000);
    assert.equal(owner.rates.cps, 1, 'rates restart from the zeroed counters');
    assert.equal(owner.rates.inbps, 0);
  }
});

test('a removed Stats is no longer sampled', () => {
  const { estimator, stats, owner } = setup();
  estimator.remove(stats);
  grow(stats, { conns: 100 });
  estimator.tick(2000);
  assert.equal(owner.rates.cps, 0);
});

test('rates read right from counters past 2^53 and across their wrap at 2^64', () => {
  const estimator = new Estimator();
  const stats = new Stats();
  const owner = { rates: zeroRates() };
  setCounter(stats, 'conns', 2n ** 53n + 1n);
  setCounter(stats, 'inBytes', 2n ** 60n + 3n);
  // Wraps within the first few samples: growth, not a counter set back.
  setCounter(stats, 'outBytes', 2n ** 64n - 20_000n);
  estimator.add(stats, owner);
  estimator.tick(0);
  for (let t = 1; t <= 100; t++) {
    grow(stats, { conns: 3, inBytes: 1000, outBytes: 9000 });
    estimator.tick(t * 2000);
  }
  assert.ok(stats.value('outBytes') < 2n ** 32n, 'outBytes wrapped');
  assert.deepEqual(owner.rates, { cps: 3, inpps: 0, outpps: 0, inbps: 1000, outbps: 9000 });
});
