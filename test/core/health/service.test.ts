// Real servers and virtual services under keepalived's rules: alive only while every checker is
// UP, weights as the engine must apply them (removed, quiesced with inhibit_on_failure, restored,
// misc_dynamic), quorum with hysteresis and the sorry server, and reloads that keep health.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  HealthModel,
  endpointName,
  type EffectiveWeight,
  type HealthEvent,
  type HealthServiceSpec,
  type KeyedRules,
} from '../../../src/core/health/service.js';
import { parseAddr } from '../../../src/core/inet.js';

const rules = (alpha = false, retry = 0): KeyedRules => ({
  key: `tcp-${alpha}-${retry}`,
  delayLoopMs: 1000,
  retry,
  delayBeforeRetryMs: 100,
  warmupMs: 0,
  alpha,
});

function service(
  servers: Array<{ weight?: number; checkers?: number; inhibit?: boolean; alpha?: boolean }>,
  extra: Partial<HealthServiceSpec> = {},
): HealthServiceSpec {
  return {
    id: 'vs',
    name: '[198.18.0.1]:tcp:80',
    quorum: 1,
    hysteresis: 0,
    sorry: null,
    realServers: servers.map((s, i) => ({
      id: `rs${i}`,
      name: `[198.18.1.${11 + i}]:tcp:80`,
      weight: s.weight ?? 1,
      inhibitOnFailure: s.inhibit ?? false,
      checkers: Array.from({ length: s.checkers ?? 1 }, () => rules(s.alpha ?? false)),
    })),
    ...extra,
  };
}

/** The engine as the events leave it. */
class EngineView {
  readonly weights = new Map<string, EffectiveWeight>();
  sorry: EffectiveWeight = null;
  readonly lines: string[] = [];

  apply(events: HealthEvent[]): void {
    for (const e of events) {
      if (e.type === 'weight') this.weights.set(e.server, e.weight);
      else if (e.type === 'sorry') this.sorry = e.weight;
      else this.lines.push(e.line);
    }
  }
}

describe('HealthModel', () => {
  it('names endpoints as keepalived notify lines do', () => {
    assert.equal(endpointName(parseAddr('198.18.1.11')!, 'tcp', 80), '[198.18.1.11]:tcp:80');
    assert.equal(endpointName(parseAddr('2001:db8::1')!, 'udp', 53), '[2001:db8::1]:udp:53');
  });

  it('a real server is alive only while all its checkers are UP, and the engine follows', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ rs: fc.nat(3), checker: fc.nat(2), ok: fc.boolean() }), { maxLength: 80 }),
        fc.boolean(),
        (steps, inhibit) => {
          const spec = service(
            Array.from({ length: 4 }, () => ({ checkers: 3, inhibit, weight: 5 })),
            {},
          );
          const model = new HealthModel([spec]);
          const engine = new EngineView();
          engine.apply(model.placements());
          for (const { rs, checker, ok } of steps) {
            engine.apply(model.record('vs', `rs${rs}`, checker, { ok, reason: 'test' })!.events);
            for (let i = 0; i < 4; i++) {
              const every = [0, 1, 2].every((c) => model.checkerState('vs', `rs${i}`, c)!.up);
              assert.equal(model.isAlive('vs', `rs${i}`), every);
              assert.equal(engine.weights.get(`rs${i}`), every ? 5 : inhibit ? 0 : null);
            }
          }
        },
      ),
    );
  });

  it('announces RS DOWN and UP with keepalived lines and the reason', () => {
    const model = new HealthModel([service([{ checkers: 2 }])]);
    const down = model.record('vs', 'rs0', 1, { ok: false, reason: 'TCP_CHECK L4CON refused' })!;
    assert.deepEqual(
      down.events.find((e) => e.type === 'rs'),
      {
        type: 'rs',
        service: 'vs',
        server: 'rs0',
        up: false,
        reason: 'TCP_CHECK L4CON refused (failed)',
        line: 'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 DOWN',
      },
    );
    // The other checker failing too changes nothing more; the RS comes back only when both are UP.
    assert.deepEqual(
      model.record('vs', 'rs0', 0, { ok: false, reason: 'x' })!.events.filter((e) => e.type === 'rs'),
      [],
    );
    assert.deepEqual(
      model.record('vs', 'rs0', 0, { ok: true, reason: 'x' })!.events.filter((e) => e.type === 'rs'),
      [],
    );
    const up = model.record('vs', 'rs0', 1, { ok: true, reason: 'TCP_CHECK L4OK' })!;
    assert.equal(
      up.events.find((e) => e.type === 'rs')?.line,
      'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 UP',
    );
  });

  it('alpha servers start out of scheduling (inhibited ones at weight 0)', () => {
    const model = new HealthModel([service([{ alpha: true }, { alpha: true, inhibit: true }, {}])]);
    const engine = new EngineView();
    engine.apply(model.placements());
    assert.deepEqual(
      [...engine.weights],
      [
        ['rs0', null],
        ['rs1', 0],
        ['rs2', 1],
      ],
    );
  });

  it('misc_dynamic sets the weight while alive; exit 0 restores the configured one', () => {
    const model = new HealthModel([service([{ weight: 10 }])]);
    const engine = new EngineView();
    engine.apply(model.placements());
    engine.apply(model.record('vs', 'rs0', 0, { ok: true, reason: 'PROCOK', weight: 3 })!.events);
    assert.equal(engine.weights.get('rs0'), 3);
    engine.apply(model.record('vs', 'rs0', 0, { ok: true, reason: 'PROCOK', weight: 0 })!.events);
    assert.equal(engine.weights.get('rs0'), 0);
    engine.apply(model.record('vs', 'rs0', 0, { ok: true, reason: 'PROCOK', weight: 'configured' })!.events);
    assert.equal(engine.weights.get('rs0'), 10);
  });

  it('sample 11: quorum 7, hysteresis 2 over 10 servers: up at 9 alive, down below 5, sorry server swapped', () => {
    const sorry = { name: '[198.18.1.99]:tcp:80', weight: 1, inhibit: false };
    const model = new HealthModel([
      service(
        Array.from({ length: 10 }, () => ({})),
        { quorum: 7, hysteresis: 2, sorry },
      ),
    ]);
    const engine = new EngineView();
    engine.apply(model.placements());
    assert.equal(engine.sorry, null);
    for (let i = 0; i < 5; i++)
      engine.apply(model.record('vs', `rs${i}`, 0, { ok: false, reason: 'x' })!.events);
    assert.equal(model.quorumUp('vs'), true, '5 alive is inside the band');
    engine.apply(model.record('vs', 'rs5', 0, { ok: false, reason: 'x' })!.events);
    assert.equal(model.quorumUp('vs'), false);
    assert.deepEqual(engine.lines.at(-1), 'VS [198.18.0.1]:tcp:80 DOWN');
    assert.equal(engine.sorry, 1);
    assert.ok(
      [...engine.weights.values()].every((w) => w === null),
      'the alive servers leave for the sorry server',
    );
    for (let i = 0; i < 4; i++)
      engine.apply(model.record('vs', `rs${i}`, 0, { ok: true, reason: 'x' })!.events);
    assert.equal(model.quorumUp('vs'), false, '8 alive is still below quorum + hysteresis');
    engine.apply(model.record('vs', 'rs4', 0, { ok: true, reason: 'x' })!.events);
    assert.equal(model.quorumUp('vs'), true);
    assert.equal(engine.lines.at(-1), 'VS [198.18.0.1]:tcp:80 UP');
    assert.equal(engine.sorry, null);
    assert.equal([...engine.weights.values()].filter((w) => w === 1).length, 9);
  });

  it('the quorum never flaps inside the hysteresis band', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 6 }),
        fc.array(fc.record({ rs: fc.nat(7), ok: fc.boolean() }), { maxLength: 100 }),
        (quorum, hysteresis, steps) => {
          const spec = service(
            Array.from({ length: 8 }, (_, i) => ({ weight: 1 + (i % 3) })),
            { quorum, hysteresis },
          );
          const total = spec.realServers.reduce((s, r) => s + r.weight, 0);
          const q = Math.min(quorum, total);
          const h = Math.min(hysteresis, q - 1);
          const model = new HealthModel([spec]);
          for (const { rs, ok } of steps) {
            const events = model.record('vs', `rs${rs}`, 0, { ok, reason: 'x' })!.events;
            for (const e of events) {
              if (e.type !== 'vs') continue;
              if (e.up) assert.ok(e.weightSum >= q + h, `up at ${e.weightSum} (q ${q} h ${h})`);
              else
                assert.ok(e.weightSum < q - h || e.weightSum === 0, `down at ${e.weightSum} (q ${q} h ${h})`);
            }
          }
        },
      ),
    );
  });

  it('reload keeps health of unchanged servers, applies weights, adds and removes', () => {
    const model = new HealthModel([service([{}, {}, {}])]);
    const engine = new EngineView();
    engine.apply(model.placements());
    engine.apply(model.record('vs', 'rs1', 0, { ok: false, reason: 'x' })!.events);
    const next = service([{ weight: 4 }, {}, {}, { alpha: true }]);
    next.realServers.splice(2, 1);
    const events = model.reconfigure([next]);
    engine.apply(events);
    assert.equal(model.isAlive('vs', 'rs1'), false, 'a failed server is not re-added at once');
    assert.deepEqual(
      events.filter((e) => e.type === 'weight'),
      [
        { type: 'weight', service: 'vs', server: 'rs2', weight: null },
        { type: 'weight', service: 'vs', server: 'rs0', weight: 4 },
      ],
    );
    assert.equal(engine.weights.get('rs3'), undefined, 'a new alpha server is not placed');
    // A changed checker starts afresh.
    const changed = service([{ weight: 4 }, {}]);
    changed.realServers[1]!.checkers = [{ ...rules(), key: 'http' }];
    model.reconfigure([changed]);
    assert.equal(model.isAlive('vs', 'rs1'), true);
    // Removing the service removes what it had placed.
    assert.deepEqual(model.reconfigure([]), [
      { type: 'weight', service: 'vs', server: 'rs0', weight: null },
      { type: 'weight', service: 'vs', server: 'rs1', weight: null },
    ]);
  });

  it('ignores results for checkers it does not know', () => {
    const model = new HealthModel([service([{}])]);
    assert.equal(model.record('vs', 'rs0', 5, { ok: false, reason: 'x' }), null);
    assert.equal(model.record('nope', 'rs0', 0, { ok: false, reason: 'x' }), null);
  });
});
