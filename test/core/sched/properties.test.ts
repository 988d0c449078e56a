import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Dest } from '../../../src/core/model.js';
import { gcdOfPositive } from '../../../src/core/sched/common.js';
import { mhScheduler } from '../../../src/core/sched/mh.js';
import { shScheduler } from '../../../src/core/sched/sh.js';
import { wrrScheduler } from '../../../src/core/sched/wrr.js';
import { makeDest, makeEnv, makeFlow, makeService, removeDest } from './fixtures.js';

describe('wrr shares', () => {
  it('picks each dest weight/gcd times in one full cycle of sum(weight)/gcd picks', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 8 }), (weights) => {
        const dests = weights.map((w, i) => makeDest(i + 1, w));
        const svc = makeService(dests);
        const state = wrrScheduler.initService(svc, makeEnv());
        const step = gcdOfPositive(weights);
        const cycle = weights.reduce((a, b) => a + b, 0) / step;
        const counts = new Map<Dest, number>();
        for (let i = 0; i < cycle; i++) {
          const d = wrrScheduler.schedule(state, svc, makeFlow(1))!;
          counts.set(d, (counts.get(d) ?? 0) + 1);
        }
        for (const d of dests) assert.equal(counts.get(d) ?? 0, d.weight / step);
      }),
    );
  });
});

describe('sh buckets', () => {
  it('gives each dest buckets in proportion to its weight', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 10 }), (weights) => {
        const dests = weights.map((w, i) => makeDest(i + 1, w));
        const state = shScheduler.initService(makeService(dests), makeEnv());
        const total = weights.reduce((a, b) => a + b, 0);
        for (const d of dests) {
          const count = state.buckets.filter((b) => b === d).length;
          // Whole rounds give exactly weight each; the last partial round at most weight more.
          const rounds = Math.floor(256 / total);
          assert.ok(count >= rounds * d.weight && count <= (rounds + 1) * d.weight);
        }
      }),
    );
  });
});

describe('mh consistency and balance', () => {
  const clients = Array.from({ length: 20000 }, (_, i) =>
    makeFlow((0x0b000000 + Math.imul(i, 2654435761)) >>> 0),
  );

  it('gives equal-weight dests slot counts within one of each other', () => {
    for (const n of [2, 3, 7, 10, 100]) {
      const dests = Array.from({ length: n }, (_, i) => makeDest(i + 1, 1));
      const state = mhScheduler.initService(makeService(dests), makeEnv());
      const counts = new Array<number>(n).fill(0);
      for (const i of state.slots) counts[i]!++;
      assert.ok(
        Math.max(...counts) - Math.min(...counts) <= 1,
        `n=${n}: ${Math.min(...counts)}..${Math.max(...counts)}`,
      );
    }
  });

  it('moves only the clients of a removed dest, give or take 3 percent', () => {
    for (const removeAt of [0, 4, 9]) {
      const dests = Array.from({ length: 10 }, (_, i) => makeDest(i + 1, 1));
      const svc = makeService(dests);
      const state = mhScheduler.initService(svc, makeEnv());
      const before = clients.map((f) => mhScheduler.schedule(state, svc, f));
      const gone = dests[removeAt]!;
      removeDest(svc, gone);
      mhScheduler.updateService!(state, svc);
      let stayed = 0;
      let moved = 0;
      clients.forEach((f, i) => {
        if (before[i] === gone) return;
        if (mhScheduler.schedule(state, svc, f) === before[i]) stayed++;
        else moved++;
      });
      assert.ok(moved / (stayed + moved) < 0.03, `removing #${removeAt} moved ${moved} of ${stayed + moved}`);
    }
  });
});
