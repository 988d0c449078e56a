// One suite every scheduler must pass, whatever its algorithm (the hono router model):
// no dests or only unusable ones give no destination; a pick is always a usable member of the
// service; and the scheduler keeps working through adds, removals and edits.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Dest } from '../../../src/core/model.js';
import { isAvailable } from '../../../src/core/sched/common.js';
import { findScheduler } from '../../../src/core/sched/index.js';
import type { FlowKey, Scheduler } from '../../../src/core/sched/types.js';
import {
  addDest,
  makeDest,
  makeEnv,
  makeFlow,
  makeService,
  removeDest,
  type MutableService,
} from './fixtures.js';

export interface ConformanceOptions {
  /** SVC_F_* scheduler flags for the service (sh-fallback, mh-port, ...). */
  flags?: number;
  /** A further condition on what may be picked (ovf: active connections within the weight). */
  eligible?: (dest: Dest) => boolean;
  /**
   * Whether a pick is guaranteed whenever some dest is usable. Hashing schedulers give no
   * destination when the client's bucket is unusable, so they are not.
   */
  complete: boolean;
}

type Op =
  | { kind: 'add'; weight: number; active: number; inact: number; overloaded: boolean }
  | { kind: 'remove'; at: number }
  | { kind: 'edit'; at: number; weight: number }
  | { kind: 'load'; at: number; active: number; inact: number; overloaded: boolean }
  | { kind: 'tick'; ms: number }
  | { kind: 'pick'; saddr: number; sport: number; daddr: number };

const weightArb = fc.oneof(
  { arbitrary: fc.constant(0), weight: 2 },
  { arbitrary: fc.integer({ min: 1, max: 5 }), weight: 5 },
  { arbitrary: fc.integer({ min: 1, max: 65535 }), weight: 1 },
);
const loadArb = {
  active: fc.integer({ min: 0, max: 20 }),
  inact: fc.integer({ min: 0, max: 20 }),
  overloaded: fc.boolean(),
};
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), weight: weightArb, ...loadArb }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('edit' as const), at: fc.nat(), weight: weightArb }),
  fc.record({ kind: fc.constant('load' as const), at: fc.nat(), ...loadArb }),
  fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 48 * 3600 * 1000 }) }),
  // A few client and destination addresses, so that caches and hashes see repeats.
  fc.record({
    kind: fc.constant('pick' as const),
    saddr: fc.integer({ min: 0x0b000000, max: 0x0b00000f }),
    sport: fc.integer({ min: 1024, max: 1031 }),
    daddr: fc.integer({ min: 0xc0a80001, max: 0xc0a80004 }),
  }),
);

export function runSchedulerConformance(name: string, options: ConformanceOptions): void {
  const flags = options.flags ?? 0;
  const usable = (dest: Dest): boolean => isAvailable(dest) && (options.eligible?.(dest) ?? true);
  const title = flags ? `${name} (flags 0x${flags.toString(16)})` : name;

  const scheduler = (): Scheduler => {
    const found = findScheduler(name);
    assert.ok(found, `scheduler ${name} is registered`);
    return found;
  };

  function checkPick(svc: MutableService, picked: Dest | null, context: string): void {
    if (picked !== null) {
      assert.ok(svc.dests.includes(picked), `${context}: picked a member of the service`);
      assert.ok(picked.weight > 0, `${context}: never a quiesced dest`);
      assert.ok(!picked.overloaded, `${context}: never an overloaded dest`);
      assert.ok(usable(picked), `${context}: an eligible dest`);
    } else if (options.complete) {
      assert.ok(!svc.dests.some(usable), `${context}: no destination although one is usable`);
    }
  }

  describe(`scheduler conformance: ${title}`, () => {
    it('is registered under its ipvsadm name', () => {
      assert.equal(scheduler().name, name);
    });

    it('gives no destination for a service without dests', () => {
      const s = scheduler();
      const svc = makeService([], flags);
      const state = s.initService(svc, makeEnv());
      for (let i = 0; i < 20; i++)
        assert.equal(s.schedule(state, svc, makeFlow(0x0b000000 + i, 1024 + i)), null);
    });

    it('gives no destination when every dest is quiesced or overloaded', () => {
      const s = scheduler();
      const svc = makeService([makeDest(1, 0), makeDest(2, 3, { overloaded: true }), makeDest(3, 0)], flags);
      const state = s.initService(svc, makeEnv());
      for (let i = 0; i < 50; i++)
        assert.equal(s.schedule(state, svc, makeFlow(0x0b000000 + i, 1024 + i)), null);
    });

    it('stops picking a removed dest and picks an added one once it is the only usable dest', () => {
      const s = scheduler();
      const env = makeEnv();
      const a = makeDest(1, 1);
      const b = makeDest(2, 1);
      const svc = makeService([b, a], flags);
      const state = s.initService(svc, env);
      const flows = Array.from({ length: 64 }, (_, i) =>
        makeFlow(0x0b000000 + i * 7919, 1024 + i, 0xc0a80001 + (i % 4)),
      );
      for (const flow of flows) checkPick(svc, s.schedule(state, svc, flow), 'before changes');

      removeDest(svc, a);
      s.updateService?.(state, svc);
      for (const flow of flows) {
        const picked = s.schedule(state, svc, flow);
        assert.notEqual(picked, a);
        checkPick(svc, picked, 'after removal');
      }

      const c = makeDest(3, 2);
      addDest(svc, c);
      b.weight = 0;
      s.updateService?.(state, svc);
      env.clock.advance(1000);
      for (const flow of flows) {
        const picked = s.schedule(state, svc, flow);
        checkPick(svc, picked, 'after add and edit');
        if (picked !== null) assert.equal(picked, c);
      }
    });

    it('only ever picks usable members, through any sequence of changes', () => {
      fc.assert(
        fc.property(fc.integer(), fc.array(opArb, { maxLength: 60 }), (seed, ops) => {
          const s = scheduler();
          const env = makeEnv(seed);
          const svc = makeService([], flags);
          const state = s.initService(svc, env);
          let host = 1;
          for (const op of ops) {
            const n = svc.dests.length;
            switch (op.kind) {
              case 'add':
                addDest(
                  svc,
                  makeDest(host++, op.weight, {
                    activeConns: op.active,
                    inactConns: op.inact,
                    overloaded: op.overloaded,
                  }),
                );
                s.updateService?.(state, svc);
                break;
              case 'remove':
                if (n === 0) break;
                removeDest(svc, svc.dests[op.at % n]!);
                s.updateService?.(state, svc);
                break;
              case 'edit':
                if (n === 0) break;
                svc.dests[op.at % n]!.weight = op.weight;
                s.updateService?.(state, svc);
                break;
              case 'load': {
                // Connection counts and the overload flag move without updateService, as in IPVS.
                if (n === 0) break;
                const dest = svc.dests[op.at % n]!;
                dest.activeConns = op.active;
                dest.inactConns = op.inact;
                dest.overloaded = op.overloaded;
                break;
              }
              case 'tick':
                env.clock.advance(op.ms);
                break;
              case 'pick': {
                const flow: FlowKey = makeFlow(op.saddr, op.sport, op.daddr);
                checkPick(svc, s.schedule(state, svc, flow), `pick after ${ops.indexOf(op)} ops`);
                break;
              }
            }
          }
        }),
        { numRuns: 300 },
      );
    });
  });
}
