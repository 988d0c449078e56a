import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lblcScheduler } from '../../../src/core/sched/lblc.js';
import { lblcrScheduler } from '../../../src/core/sched/lblcr.js';
import { LOCALITY_EXPIRATION_MS } from '../../../src/core/sched/locality.js';
import { addDest, makeDest, makeEnv, makeFlow, makeService, removeDest } from './fixtures.js';

const HOUR = 3600 * 1000;
const toSite = (daddr: number) => makeFlow(0x0b000001, 40000, daddr);

describe('lblc', () => {
  it('keeps a destination address on its dest while that dest is not overloaded', () => {
    const env = makeEnv();
    const a = makeDest(1, 2);
    const b = makeDest(2, 2);
    const svc = makeService([a, b]);
    const state = lblcScheduler.initService(svc, env);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    // wlc would now pick B, but the cache holds A: active 2 does not exceed weight 2.
    a.activeConns = 2;
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(2)), b, 'a new address gets the wlc pick');
  });

  it('moves an address when its dest is overloaded and another is half idle, and remembers the move', () => {
    const env = makeEnv();
    const a = makeDest(1, 2);
    const b = makeDest(2, 4);
    const svc = makeService([a, b]);
    const state = lblcScheduler.initService(svc, env);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    a.activeConns = 3; // more than its weight
    b.activeConns = 2; // not below half of 4: A stays
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    b.activeConns = 1; // below half: A counts as overloaded
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), b);
    a.activeConns = 0;
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), b, 'the cache now holds B');
  });

  it('drops a cached dest that was quiesced or removed', () => {
    const env = makeEnv();
    const a = makeDest(1, 1);
    const b = makeDest(2, 1);
    const svc = makeService([a, b]);
    const state = lblcScheduler.initService(svc, env);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    a.weight = 0;
    lblcScheduler.updateService!(state, svc);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), b);
    const c = makeDest(3, 1, { inactConns: 5 });
    addDest(svc, c);
    removeDest(svc, b);
    lblcScheduler.updateService!(state, svc);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), c);
  });

  it('forgets an address unused for 24 hours, and keeps one in use', () => {
    const env = makeEnv();
    const a = makeDest(1, 1);
    const b = makeDest(2, 1);
    const svc = makeService([a, b]);
    const state = lblcScheduler.initService(svc, env);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(2)), a);
    a.activeConns = 1; // wlc now prefers B; the cache keeps A (1 does not exceed weight 1)
    env.clock.advance(23 * HOUR);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a, 'used again within the day');
    env.clock.advance(2 * HOUR);
    assert.equal(lblcScheduler.schedule(state, svc, toSite(1)), a, 'last use was 2 hours ago');
    assert.equal(lblcScheduler.schedule(state, svc, toSite(2)), b, 'unused for 25 hours: expired');
  });

  it('collects stale entries as it goes, without timers', () => {
    const env = makeEnv();
    const svc = makeService([makeDest(1, 1)]);
    const state = lblcScheduler.initService(svc, env);
    for (let i = 0; i < 100; i++) lblcScheduler.schedule(state, svc, toSite(1000 + i));
    assert.equal(state.cache.size, 100);
    env.clock.advance(LOCALITY_EXPIRATION_MS);
    for (let i = 0; i < 40; i++) lblcScheduler.schedule(state, svc, toSite(5000));
    assert.equal(state.cache.size, 1, 'only the address in use is left');
  });
});

describe('lblcr', () => {
  it('grows a set when its least loaded member is overloaded, and serves from the set', () => {
    const env = makeEnv();
    const a = makeDest(1, 2);
    const b = makeDest(2, 4);
    const svc = makeService([a, b]);
    const state = lblcrScheduler.initService(svc, env);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), a);
    a.activeConns = 3;
    b.activeConns = 1;
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b, 'wlc pick joins the set');
    a.activeConns = 0;
    b.activeConns = 1;
    // Set {B, A}: A (0 / 2) is the least loaded member.
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), a);
  });

  it('sheds the most loaded member of a set unchanged for the expiration time', () => {
    const env = makeEnv();
    const a = makeDest(1, 2);
    const b = makeDest(2, 4);
    const c = makeDest(3, 1);
    const svc = makeService([a, b, c]);
    const state = lblcrScheduler.initService(svc, env);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), a);
    a.activeConns = 3;
    b.activeConns = 1;
    c.activeConns = 1;
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b);
    // Set {B, A}, last changed at 0. Picks keep the entry in use without changing the set.
    const loads = (activeA: number, activeB: number) => {
      a.activeConns = activeA;
      b.activeConns = activeB;
    };
    env.clock.advance(23 * HOUR);
    loads(1, 0);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b);
    loads(0, 1);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), a, 'A is still a member after 23 hours');
    env.clock.advance(2 * HOUR);
    loads(1, 0);
    // 25 hours unchanged: the most loaded member (A, 256 / 2) leaves while B serves.
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b);
    loads(0, 1);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b, 'A has left the set');
  });

  it('does not pick a set member that left the service', () => {
    const env = makeEnv();
    const a = makeDest(1, 1);
    const b = makeDest(2, 1, { inactConns: 1 });
    const svc = makeService([a, b]);
    const state = lblcrScheduler.initService(svc, env);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), a);
    removeDest(svc, a);
    lblcrScheduler.updateService!(state, svc);
    assert.equal(lblcrScheduler.schedule(state, svc, toSite(1)), b);
  });
});
