// Exact pick sequences, checked against the kernel's algorithms by hand or by an independent
// reimplementation (noted where used).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addr6 } from '../../../src/core/inet.js';
import type { Dest } from '../../../src/core/model.js';
import {
  SVC_F_SCHED_MH_FALLBACK,
  SVC_F_SCHED_MH_PORT,
  SVC_F_SCHED_SH_FALLBACK,
  SVC_F_SCHED_SH_PORT,
} from '../../../src/core/model.js';
import { findScheduler } from '../../../src/core/sched/index.js';
import { mhScheduler } from '../../../src/core/sched/mh.js';
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

function sched(name: string): Scheduler {
  const s = findScheduler(name);
  assert.ok(s);
  return s;
}

/** Picks `count` times with one flow and names the dests picked. */
function sequence(
  s: Scheduler,
  state: unknown,
  svc: MutableService,
  names: Map<Dest, string>,
  count: number,
): string {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const d = s.schedule(state, svc, makeFlow(0x0b000001));
    out.push(d === null ? '-' : names.get(d)!);
  }
  return out.join('');
}

/** Builds a service the way ipvsadm does: create it empty, then add dests one by one. */
function buildIncrementally(s: Scheduler, weights: [string, number][], flags = 0) {
  const svc = makeService([], flags);
  const state = s.initService(svc, makeEnv());
  const names = new Map<Dest, string>();
  const byName: Record<string, Dest> = {};
  weights.forEach(([name, weight], i) => {
    const dest = makeDest(i + 1, weight);
    names.set(dest, name);
    byName[name] = dest;
    addDest(svc, dest);
    s.updateService?.(state, svc);
  });
  return { svc, state, names, byName };
}

describe('rr', () => {
  it('added A, B, C (list C, B, A) picks C, B, A round and round', () => {
    const s = sched('rr');
    const { svc, state, names } = buildIncrementally(s, [
      ['A', 1],
      ['B', 1],
      ['C', 1],
    ]);
    assert.equal(sequence(s, state, svc, names, 7), 'CBACBAC');
  });

  it('skips quiesced and overloaded dests', () => {
    const s = sched('rr');
    const { svc, state, names, byName } = buildIncrementally(s, [
      ['A', 1],
      ['B', 0],
      ['C', 1],
      ['D', 1],
    ]);
    byName.D!.overloaded = true;
    assert.equal(sequence(s, state, svc, names, 4), 'CACA');
  });

  it('keeps its place when a dest is added, and steps back when its dest is removed', () => {
    const s = sched('rr');
    const { svc, state, names, byName } = buildIncrementally(s, [
      ['A', 1],
      ['B', 1],
      ['C', 1],
    ]);
    assert.equal(sequence(s, state, svc, names, 2), 'CB');
    // The cursor stood on B; ip_vs_rr_del_dest moves it to C, so A comes next.
    removeDest(svc, byName.B!);
    s.updateService?.(state, svc);
    assert.equal(sequence(s, state, svc, names, 1), 'A');
    // D goes to the head; after A the walk wraps to the head: D, C, A.
    const d = makeDest(4, 1);
    names.set(d, 'D');
    addDest(svc, d);
    s.updateService?.(state, svc);
    assert.equal(sequence(s, state, svc, names, 4), 'DCAD');
  });
});

describe('wrr', () => {
  it('weights A3, B2, C1 (list C, B, A) pick A, B, A, C, B, A repeating', () => {
    const s = sched('wrr');
    const a = makeDest(1, 3);
    const b = makeDest(2, 2);
    const c = makeDest(3, 1);
    const svc = makeService([c, b, a]);
    const names = new Map([
      [a, 'A'],
      [b, 'B'],
      [c, 'C'],
    ]);
    const state = s.initService(svc, makeEnv());
    assert.equal(sequence(s, state, svc, names, 12), 'ABACBAABACBA');
  });

  it('with the list A, B, C picks A, A, B, A, B, C', () => {
    const s = sched('wrr');
    const a = makeDest(1, 3);
    const b = makeDest(2, 2);
    const c = makeDest(3, 1);
    const svc = makeService([a, b, c]);
    const state = s.initService(svc, makeEnv());
    assert.equal(
      sequence(
        s,
        state,
        svc,
        new Map([
          [a, 'A'],
          [b, 'B'],
          [c, 'C'],
        ]),
        6,
      ),
      'AABABC',
    );
  });

  it('built dest by dest keeps the bar ip_vs_wrr_dest_changed leaves (1), then settles into the cycle', () => {
    // Empty service: mw = 0, cw = 0. Adding A (3): di = 3, mw = 1, cw = 0 -> 1. Adding B and C:
    // di = 1, mw = 3, cw stays 1. So the first pass is the bar-1 pass: C, B, A.
    const s = sched('wrr');
    const { svc, state, names } = buildIncrementally(s, [
      ['A', 3],
      ['B', 2],
      ['C', 1],
    ]);
    assert.equal(sequence(s, state, svc, names, 15), 'CBAABACBAABACBA');
  });

  it('steps the bar by the gcd of the weights', () => {
    const s = sched('wrr');
    const a = makeDest(1, 4);
    const b = makeDest(2, 2);
    const svc = makeService([a, b]);
    const state = s.initService(svc, makeEnv());
    assert.equal(
      sequence(
        s,
        state,
        svc,
        new Map([
          [a, 'A'],
          [b, 'B'],
        ]),
        6,
      ),
      'AABAAB',
    );
  });

  it('restarts from the head after a change', () => {
    const s = sched('wrr');
    const { svc, state, names, byName } = buildIncrementally(s, [
      ['A', 1],
      ['B', 1],
      ['C', 1],
    ]);
    assert.equal(sequence(s, state, svc, names, 2), 'CB');
    byName.A!.weight = 2;
    s.updateService?.(state, svc);
    // di = 1, mw = 2, cw (1) kept: bar-1 pass from the head, then A alone at bar 2.
    assert.equal(sequence(s, state, svc, names, 5), 'CBAAC');
  });

  it('skips overloaded dests without losing the cycle', () => {
    const s = sched('wrr');
    const a = makeDest(1, 2);
    const b = makeDest(2, 1, { overloaded: true });
    const svc = makeService([b, a]);
    const state = s.initService(svc, makeEnv());
    assert.equal(
      sequence(
        s,
        state,
        svc,
        new Map([
          [a, 'A'],
          [b, 'B'],
        ]),
        4,
      ),
      'AAAA',
    );
  });
});

describe('least-connection family', () => {
  it('lc picks the least overhead (active * 256 + inactive), the earliest of equals', () => {
    const x = makeDest(1, 1, { activeConns: 1 }); // 256
    const y = makeDest(2, 5, { inactConns: 10 }); // 10
    const z = makeDest(3, 1, { inactConns: 10 }); // 10
    const q = makeDest(4, 0); // 0, but quiesced
    const svc = makeService([q, x, y, z]);
    assert.equal(sched('lc').schedule(null, svc, makeFlow(1)), y);
  });

  it('wlc picks the least overhead / weight', () => {
    const p = makeDest(1, 1, { activeConns: 1 }); // 256 / 1
    const q = makeDest(2, 3, { activeConns: 2 }); // 512 / 3 = 170.7
    const r = makeDest(3, 2, { activeConns: 1, inactConns: 100 }); // 356 / 2 = 178
    assert.equal(sched('wlc').schedule(null, makeService([p, q, r]), makeFlow(1)), q);
  });

  it('wlc gives equal ratios to the earliest dest', () => {
    const s = makeDest(1, 2, { activeConns: 2 }); // 512 / 2
    const t = makeDest(2, 1, { activeConns: 1 }); // 256 / 1
    assert.equal(sched('wlc').schedule(null, makeService([s, t]), makeFlow(1)), s);
    assert.equal(sched('wlc').schedule(null, makeService([t, s]), makeFlow(1)), t);
  });

  it('sed counts active connections plus one, ignoring inactive ones', () => {
    const a = makeDest(1, 1, { inactConns: 0 }); // (0 + 1) / 1
    const b = makeDest(2, 3, { activeConns: 1, inactConns: 500 }); // (1 + 1) / 3
    assert.equal(sched('sed').schedule(null, makeService([a, b]), makeFlow(1)), b);
  });

  it('nq takes the first idle dest, else the sed pick', () => {
    const a = makeDest(1, 1, { activeConns: 2 });
    const b = makeDest(2, 1, { inactConns: 9 });
    const c = makeDest(3, 5);
    assert.equal(sched('nq').schedule(null, makeService([a, b, c]), makeFlow(1)), b);
    b.activeConns = 3;
    c.activeConns = 5; // (5 + 1) / 5 beats (2 + 1) / 1
    assert.equal(sched('nq').schedule(null, makeService([a, b, c]), makeFlow(1)), c);
  });

  it('fo picks the highest weight, the earliest of equals, never an overloaded one', () => {
    const a = makeDest(1, 2);
    const b = makeDest(2, 5, { overloaded: true });
    const c = makeDest(3, 5);
    const d = makeDest(4, 5);
    assert.equal(sched('fo').schedule(null, makeService([a, b, c, d]), makeFlow(1)), c);
  });

  it('ovf overflows to the next weight when active connections exceed the weight', () => {
    const a = makeDest(1, 3, { activeConns: 4 });
    const b = makeDest(2, 2, { activeConns: 2 });
    const c = makeDest(3, 1);
    assert.equal(sched('ovf').schedule(null, makeService([a, b, c]), makeFlow(1)), b);
    b.activeConns = 3;
    assert.equal(sched('ovf').schedule(null, makeService([a, b, c]), makeFlow(1)), c);
  });

  it('twos keeps the first random pick unless the second is strictly less loaded per weight', () => {
    const a = makeDest(1, 1, { activeConns: 1 }); // overhead 256
    const b = makeDest(2, 1, { inactConns: 1 }); // overhead 1
    const svc = makeService([a, b]);
    // Total weight 2, draws from [0, 2]: 0.1 -> 0 (A), 0.9 -> 2 (B).
    const draws = [0.1, 0.9, 0.9, 0.1];
    const env = { clock: makeEnv().clock, random: () => draws.shift()! };
    const s = sched('twos');
    const state = s.initService(svc, env);
    assert.equal(s.schedule(state, svc, makeFlow(1)), b, 'second pick B is less loaded');
    assert.equal(s.schedule(state, svc, makeFlow(1)), b, 'first pick B stays');
  });
});

describe('dh and sh', () => {
  // hash_32(x, 8) values computed independently: 10.0.0.1 -> 39, 11.0.0.1 -> 110,
  // 11.0.0.2 -> 208, 11.0.0.1 + port 1024 -> 144, 192.168.0.1/2/3 -> 192/34/131.
  it('dh deals buckets one per dest and hashes the destination address', () => {
    const s = sched('dh');
    const [a, b, c] = [makeDest(1, 1), makeDest(2, 7), makeDest(3, 1)];
    const svc = makeService([a!, b!, c!]);
    const state = s.initService(svc, makeEnv());
    const pick = (daddr: number) => s.schedule(state, svc, makeFlow(0x0b000001, 1, daddr));
    assert.equal(pick(0xc0a80001), a); // bucket 192, 192 % 3 = 0
    assert.equal(pick(0xc0a80002), b); // bucket 34
    assert.equal(pick(0xc0a80003), c); // bucket 131
    b!.weight = 0;
    assert.equal(pick(0xc0a80002), null);
  });

  it('sh gives each dest weight buckets per round and hashes the client address', () => {
    const s = sched('sh');
    const a = makeDest(1, 2);
    const b = makeDest(2, 1);
    const svc = makeService([a, b]);
    const state = s.initService(svc, makeEnv());
    // Buckets A, A, B, A, A, B, ...: bucket % 3 === 2 is B.
    assert.equal(s.schedule(state, svc, makeFlow(0x0a000001)), a); // 39
    assert.equal(s.schedule(state, svc, makeFlow(0x0b000001)), b); // 110
    assert.equal(s.schedule(state, svc, makeFlow(0x0b000002)), a); // 208
    // sh-port mixes in the source port: 11.0.0.1:1024 -> 144 -> A.
    svc.flags = SVC_F_SCHED_SH_PORT;
    assert.equal(s.schedule(state, svc, makeFlow(0x0b000001, 1024)), a);
  });

  it('sh folds IPv6 client addresses by XOR', () => {
    const s = sched('sh');
    const [a, b, c] = [makeDest(1, 1), makeDest(2, 1), makeDest(3, 1)];
    const svc = makeService([a!, b!, c!]);
    const state = s.initService(svc, makeEnv());
    const flow: FlowKey = { ...makeFlow(1), af: 6, saddr: addr6(0x20010db8, 0, 0, 1) };
    assert.equal(s.schedule(state, svc, flow), a); // fold 0x20010db9 -> 63, 63 % 3 = 0
  });

  it('sh without fallback gives no destination for an unusable bucket; with it probes on', () => {
    const s = sched('sh');
    const [a, b, c] = [makeDest(1, 1), makeDest(2, 1), makeDest(3, 1)];
    const svc = makeService([a!, b!, c!]);
    const state = s.initService(svc, makeEnv());
    const flow = makeFlow(0x0b000001); // bucket 110 -> C; probes 220 (B), 221 (C), 222 (A)
    assert.equal(s.schedule(state, svc, flow), c);
    c!.weight = 0;
    assert.equal(s.schedule(state, svc, flow), null);
    svc.flags = SVC_F_SCHED_SH_FALLBACK;
    assert.equal(s.schedule(state, svc, flow), b);
    b!.overloaded = true;
    assert.equal(s.schedule(state, svc, flow), a);
  });
});

describe('mh', () => {
  // Checked against an independent Python reimplementation of ip_vs_mh.c with SipHash-1-3:
  // for 10.0.0.3, .2, .1 (port 80, list order) the offsets are 1631, 1231, 3167 and the
  // skips 3453, 3544, 700.
  const threeDests = () => [makeDest(3, 1), makeDest(2, 1), makeDest(1, 1)];

  it('builds the kernel table for three equal dests', () => {
    const dests = threeDests();
    const state = mhScheduler.initService(makeService(dests), makeEnv());
    assert.deepEqual([...state.slots.subarray(0, 16)], [2, 1, 1, 0, 0, 2, 1, 0, 0, 2, 2, 1, 1, 2, 2, 0]);
    assert.equal(state.slots[1631], 0);
    assert.equal(state.slots[1231], 1);
    assert.equal(state.slots[3167], 2);
  });

  it('gives weights 3, 2, 1 slots in that proportion', () => {
    const dests = [makeDest(3, 3), makeDest(2, 2), makeDest(1, 1)];
    const state = mhScheduler.initService(makeService(dests), makeEnv());
    const counts = [0, 0, 0];
    for (const i of state.slots) counts[i]!++;
    assert.deepEqual(counts, [2047, 1364, 682]);
    assert.deepEqual([...state.slots.subarray(0, 16)], [0, 1, 1, 0, 0, 0, 1, 0, 0, 2, 2, 1, 1, 1, 2, 0]);
  });

  it('hashes the client address, and the port with mh-port', () => {
    const dests = threeDests();
    const svc = makeService(dests);
    const state = mhScheduler.initService(svc, makeEnv());
    // 11.0.0.1 -> slot 2228 (dest 1), 11.0.0.2 -> 1877 (2), 11.0.0.3 -> 3995 (0).
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000001)), dests[1]);
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000002)), dests[2]);
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000003)), dests[0]);
    svc.flags = SVC_F_SCHED_MH_PORT;
    // With port 1024: 11.0.0.1 -> 618 (0), 11.0.0.3 -> 1683 (1).
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000001, 1024)), dests[0]);
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000003, 1024)), dests[1]);
  });

  it('keeps a quiesced dest in the table: no destination, or the fallback', () => {
    const dests = threeDests();
    const svc = makeService(dests);
    const state = mhScheduler.initService(svc, makeEnv());
    const before = [...state.slots];
    dests[1]!.weight = 0;
    mhScheduler.updateService!(state, svc);
    assert.deepEqual([...state.slots], before, 'last_weight keeps the slots');
    assert.equal(mhScheduler.schedule(state, svc, makeFlow(0x0b000001)), null);
    svc.flags = SVC_F_SCHED_MH_FALLBACK;
    const picked = mhScheduler.schedule(state, svc, makeFlow(0x0b000001));
    assert.ok(picked === dests[0] || picked === dests[2]);
  });

  it('builds the same table in two fresh instances from the same dests', () => {
    const make = () => {
      const dests = Array.from({ length: 20 }, (_, i) => makeDest(i + 1, (i % 4) + 1));
      const svc = makeService(dests);
      return { svc, state: mhScheduler.initService(svc, makeEnv()) };
    };
    const x = make();
    const y = make();
    assert.deepEqual([...x.state.slots], [...y.state.slots]);
    for (let c = 0; c < 500; c++) {
      const flow = makeFlow(0x0b000000 + c * 104729);
      assert.equal(
        mhScheduler.schedule(x.state, x.svc, flow)!.addr.a,
        mhScheduler.schedule(y.state, y.svc, flow)!.addr.a,
      );
    }
  });
});

describe('sh and dh determinism', () => {
  for (const name of ['sh', 'dh']) {
    it(`${name} picks the same dest in two fresh instances`, () => {
      const make = () => {
        const dests = Array.from({ length: 7 }, (_, i) => makeDest(i + 1, (i % 3) + 1));
        const svc = makeService(dests);
        return { svc, state: sched(name).initService(svc, makeEnv()) };
      };
      const x = make();
      const y = make();
      for (let c = 0; c < 500; c++) {
        const flow = makeFlow(0x0b000000 + c * 7919, 1024, 0xc0a80000 + c);
        assert.equal(
          sched(name).schedule(x.state, x.svc, flow)!.addr.a,
          sched(name).schedule(y.state, y.svc, flow)!.addr.a,
        );
      }
    });
  }
});
