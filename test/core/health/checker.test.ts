// keepalived's checker state machine: the first-failure rule, retry+1 consecutive failures to go
// DOWN, one success to come back, and the delays between attempts, checked on a virtual clock.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  checkerStep,
  firstDelayMs,
  initialCheckerState,
  type CheckerRules,
} from '../../../src/core/health/checker.js';

const rulesArb: fc.Arbitrary<CheckerRules> = fc.record({
  delayLoopMs: fc.integer({ min: 1, max: 60_000 }),
  retry: fc.integer({ min: 0, max: 5 }),
  delayBeforeRetryMs: fc.integer({ min: 1, max: 10_000 }),
  warmupMs: fc.integer({ min: 0, max: 60_000 }),
  alpha: fc.boolean(),
});

interface Run {
  /** Virtual time of every attempt. */
  at: number[];
  transitions: Array<{ index: number; to: 'UP' | 'DOWN'; at: number }>;
}

function run(rules: CheckerRules, results: boolean[]): Run {
  let state = initialCheckerState(rules);
  let now = 0;
  const out: Run = { at: [], transitions: [] };
  results.forEach((ok, index) => {
    out.at.push(now);
    const step = checkerStep(rules, state, ok);
    if (step.transition) out.transitions.push({ index, to: step.transition, at: now });
    state = step.state;
    now += step.delayMs;
  });
  return out;
}

describe('checker state machine (keepalived)', () => {
  it('a non-alpha checker starts UP and its very first failure marks it DOWN', () => {
    fc.assert(
      fc.property(rulesArb, (r) => {
        const rules = { ...r, alpha: false };
        assert.equal(initialCheckerState(rules).up, true);
        assert.deepEqual(run(rules, [false]).transitions, [{ index: 0, to: 'DOWN', at: 0 }]);
      }),
    );
  });

  it('an alpha checker starts DOWN and one success brings it UP', () => {
    fc.assert(
      fc.property(rulesArb, fc.integer({ min: 0, max: 10 }), (r, failures) => {
        const rules = { ...r, alpha: true };
        assert.equal(initialCheckerState(rules).up, false);
        const results = [...new Array<boolean>(failures).fill(false), true];
        assert.deepEqual(
          run(rules, results).transitions.map((t) => [t.index, t.to]),
          [[failures, 'UP']],
        );
      }),
    );
  });

  it('an UP checker goes DOWN at its retry+1-th consecutive failure, never earlier, retries delay_before_retry apart', () => {
    fc.assert(
      fc.property(rulesArb, fc.array(fc.boolean(), { maxLength: 60 }), (rules, results) => {
        // Warm up: one success, so that the checker is UP and has run.
        const all = [true, ...results];
        const { at, transitions } = run(rules, all);
        let up = !rules.alpha;
        let streak = 0;
        let streakStart = 0;
        const expected: Array<{ index: number; to: 'UP' | 'DOWN' }> = [];
        all.forEach((ok, index) => {
          if (ok) {
            if (!up) expected.push({ index, to: 'UP' });
            up = true;
            streak = 0;
            return;
          }
          if (!up) return;
          if (streak === 0) streakStart = index;
          streak += 1;
          if (streak === rules.retry + 1) {
            expected.push({ index, to: 'DOWN' });
            up = false;
            streak = 0;
            // Detection: the failing attempts were delay_before_retry apart.
            assert.equal(at[index]! - at[streakStart]!, rules.retry * rules.delayBeforeRetryMs);
          }
        });
        assert.deepEqual(
          transitions.map(({ index, to }) => ({ index, to })),
          expected,
        );
      }),
    );
  });

  it('a DOWN checker is tried every delay_loop', () => {
    fc.assert(
      fc.property(rulesArb, fc.integer({ min: 1, max: 10 }), (r, failures) => {
        const rules = { ...r, alpha: false };
        const { at } = run(rules, new Array<boolean>(failures + 1).fill(false));
        for (let i = 1; i < at.length; i++) assert.equal(at[i]! - at[i - 1]!, rules.delayLoopMs);
      }),
    );
  });

  it('warmup delays the first check by a random time within [0, warmup], none without warmup', () => {
    fc.assert(
      fc.property(rulesArb, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (rules, r) => {
        const delay = firstDelayMs(rules, r);
        assert.ok(delay >= 0 && delay <= rules.warmupMs);
        assert.equal(firstDelayMs({ ...rules, warmupMs: 0 }, r), 0);
      }),
    );
  });

  it('says "failed after N retries" as keepalived logs it', () => {
    const rules = { delayLoopMs: 1000, retry: 2, delayBeforeRetryMs: 100, warmupMs: 0, alpha: false };
    let state = checkerStep(rules, initialCheckerState(rules), true).state;
    state = checkerStep(rules, state, false).state;
    state = checkerStep(rules, state, false).state;
    const step = checkerStep(rules, state, false);
    assert.equal(step.transition, 'DOWN');
    assert.equal(step.note, 'failed after 2 retries');
  });
});
