// The monitor on a virtual clock with fake checkers: keepalived's detection and recovery times,
// warmup spreading the first checks, the concurrency bound, reloads that keep health, stop.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, LvsError } from '../../src/core/errors.js';
import type { HealthEvent } from '../../src/core/health/service.js';
import type { Checker, CheckResult } from '../../src/health/checker.js';
import type { CheckerConfig } from '../../src/health/config.js';
import { HealthMonitor, type MonitoredService } from '../../src/health/monitor.js';
import { LOOPBACK, target } from './targets.js';
import { VirtualTime } from './virtual-time.js';

const TIMING = {
  delayLoopMs: 1000,
  connectTimeoutMs: 500,
  retry: 2,
  delayBeforeRetryMs: 300,
  warmupMs: 0,
  alpha: false,
  logAllFailures: false,
};

function tcp(port: number, extra: Partial<typeof TIMING> = {}): CheckerConfig {
  return { ...TIMING, ...extra, kind: 'TCP_CHECK', target: target(LOOPBACK, port) };
}

function services(
  servers: Array<{ id: string; checkers: CheckerConfig[]; weight?: number }>,
): MonitoredService[] {
  return [
    {
      id: 'vs',
      name: '[198.18.0.1]:tcp:80',
      quorum: 1,
      hysteresis: 0,
      sorry: null,
      realServers: servers.map((s) => ({
        id: s.id,
        name: `[${s.id}]:tcp:80`,
        weight: s.weight ?? 1,
        inhibitOnFailure: false,
        checkers: s.checkers,
      })),
    },
  ];
}

/** Fake checkers whose answer is decided by a function of (port, virtual time), counting attempts. */
function fakes(time: VirtualTime, healthy: (port: number, now: number) => boolean) {
  const calls: Array<{ port: number; at: number }> = [];
  const create = (config: CheckerConfig): Checker => {
    const port = 'target' in config ? config.target.port : 0;
    return {
      kind: config.kind,
      timeoutMs: config.connectTimeoutMs,
      check: async (): Promise<CheckResult> => {
        calls.push({ port, at: time.clock.now() });
        const ok = healthy(port, time.clock.now());
        return {
          ok,
          code: ok ? 'L4OK' : 'L4CON',
          reason: ok ? 'connected' : 'connection refused',
          durationMs: 0,
        };
      },
    };
  };
  return { calls, create };
}

function record(monitor: HealthMonitor, time: VirtualTime) {
  const seen: Array<HealthEvent & { at: number }> = [];
  monitor.on('event', (e) => seen.push({ ...e, at: time.clock.now() }));
  return seen;
}

describe('HealthMonitor', () => {
  it('detects a failure after retry+1 failures, delay_before_retry apart, and recovers on one success', async () => {
    const time = new VirtualTime();
    // The server dies at t=5000 and comes back at t=8000.
    const { create } = fakes(time, (_p, now) => now < 5000 || now >= 8000);
    const monitor = new HealthMonitor(services([{ id: 'rs1', checkers: [tcp(80)] }]), {
      clock: time.clock,
      timers: time,
      createChecker: create,
    });
    const seen = record(monitor, time);
    monitor.start();
    await time.advance(20_000);
    const rs = seen.filter((e) => e.type === 'rs');
    // Checks at 0, 1000, ..., 5000 (fails), 5300, 5600 (third failure: DOWN), then every delay_loop.
    assert.deepEqual(
      rs.map((e) => [e.type === 'rs' && e.up, e.at]),
      [
        [false, 5000 + 2 * 300],
        [true, 5600 + 3 * 1000],
      ],
    );
    assert.equal(rs[0]!.type === 'rs' && rs[0]!.line, 'RS [rs1]:tcp:80 [198.18.0.1]:tcp:80 DOWN');
    assert.match(
      rs[0]!.type === 'rs' ? rs[0]!.reason : '',
      /^TCP_CHECK L4CON connection refused \(failed after 2 retries\)$/,
    );
    assert.deepEqual(
      seen.filter((e) => e.type === 'weight').map((e) => [e.type === 'weight' && e.weight, e.at]),
      [
        [null, 5600],
        [1, 8600],
      ],
    );
    const status = monitor.status()[0]!;
    assert.equal(status.alive, true);
    assert.equal(status.checkers[0]!.last!.code, 'L4OK');
    assert.deepEqual(status.lastChange && [status.lastChange.up, status.lastChange.at], [true, 8600]);
    await monitor.stop();
  });

  it('a non-alpha server that fails its first check goes DOWN at once; an alpha one waits for a success', async () => {
    const time = new VirtualTime();
    const { create } = fakes(time, (port) => port === 2);
    const monitor = new HealthMonitor(
      services([
        { id: 'plain', checkers: [tcp(1)] },
        { id: 'alpha', checkers: [tcp(2, { alpha: true })] },
      ]),
      { clock: time.clock, timers: time, createChecker: create },
    );
    assert.deepEqual(
      monitor.placements().map((e) => e.type === 'weight' && [e.server, e.weight]),
      [
        ['plain', 1],
        ['alpha', null],
      ],
    );
    const seen = record(monitor, time);
    monitor.start();
    await time.advance(10);
    assert.deepEqual(
      seen.filter((e) => e.type === 'rs').map((e) => e.type === 'rs' && [e.server, e.up, e.at]),
      [
        ['plain', false, 0],
        ['alpha', true, 0],
      ],
    );
    await monitor.stop();
  });

  it('warmup spreads the first checks over [0, warmup]', async () => {
    const time = new VirtualTime();
    const { calls, create } = fakes(time, () => true);
    const servers = Array.from({ length: 200 }, (_, i) => ({
      id: `rs${i}`,
      checkers: [tcp(i, { warmupMs: 10_000 })],
    }));
    const monitor = new HealthMonitor(services(servers), {
      clock: time.clock,
      timers: time,
      createChecker: create,
    });
    monitor.start();
    await time.advance(10_000);
    const first = new Map<number, number>();
    for (const c of calls) if (!first.has(c.port)) first.set(c.port, c.at);
    assert.equal(first.size, 200);
    const times = [...first.values()];
    assert.ok(times.every((t) => t >= 0 && t <= 10_000));
    // No storm: no 100 ms window holds more than a tenth of them.
    for (let w = 0; w < 10_000; w += 100)
      assert.ok(times.filter((t) => t >= w && t < w + 100).length < 20, `window ${w}`);
    await monitor.stop();
  });

  it('runs at most `concurrency` attempts at once, however many are due', async () => {
    const time = new VirtualTime();
    let running = 0;
    let peak = 0;
    const release: Array<() => void> = [];
    const create = (config: CheckerConfig): Checker => ({
      kind: config.kind,
      timeoutMs: 500,
      check: () =>
        new Promise((resolve) => {
          running++;
          peak = Math.max(peak, running);
          release.push(() => {
            running--;
            resolve({ ok: true, code: 'L4OK', reason: 'connected', durationMs: 0 });
          });
        }),
    });
    const servers = Array.from({ length: 100 }, (_, i) => ({ id: `rs${i}`, checkers: [tcp(i)] }));
    const monitor = new HealthMonitor(services(servers), {
      clock: time.clock,
      timers: time,
      createChecker: create,
      concurrency: 8,
    });
    monitor.start();
    let done = 0;
    while (done < 100) {
      await time.advance(0);
      assert.ok(running <= 8);
      const batch = release.splice(0);
      assert.ok(batch.length > 0);
      batch.forEach((r) => r());
      done += batch.length;
    }
    assert.equal(peak, 8);
    await monitor.stop();
  });

  it('reload keeps the health of unchanged servers, stops removed checkers, starts new ones', async () => {
    const time = new VirtualTime();
    const { calls, create } = fakes(time, (port) => port !== 2);
    const initial = services([
      { id: 'a', checkers: [tcp(1)] },
      { id: 'b', checkers: [tcp(2)] },
      { id: 'c', checkers: [tcp(3)] },
    ]);
    const monitor = new HealthMonitor(initial, { clock: time.clock, timers: time, createChecker: create });
    monitor.start();
    await time.advance(100);
    assert.equal(monitor.status().find((s) => s.server === 'b')!.alive, false);
    const events = monitor.update(
      services([
        { id: 'a', checkers: [tcp(1)], weight: 5 },
        { id: 'b', checkers: [tcp(2)] },
        { id: 'd', checkers: [tcp(4)] },
      ]),
    );
    assert.deepEqual(
      events.map((e) => e.type === 'weight' && [e.server, e.weight]),
      [
        ['c', null],
        ['a', 5],
        ['d', 1],
      ],
    );
    assert.equal(monitor.status().find((s) => s.server === 'b')!.alive, false, 'b is not re-added at once');
    const before = calls.length;
    await time.advance(5000);
    const later = calls.slice(before).map((c) => c.port);
    assert.ok(!later.includes(3), 'the removed server is no longer checked');
    assert.ok(later.includes(4), 'the new server is checked');
    // Kept checkers kept their schedule: one check per delay_loop, not restarted.
    assert.equal(later.filter((p) => p === 1).length, 5);
    await monitor.stop();
  });

  it('refuses a configuration a checker cannot carry out, and changes nothing', async () => {
    const time = new VirtualTime();
    const { create } = fakes(time, () => true);
    const refusing = (config: CheckerConfig) => {
      if (config.kind === 'PING_CHECK') throw new LvsError(ErrorCodes.INVALID, 'no');
      return create(config);
    };
    const ping: CheckerConfig = { ...TIMING, kind: 'PING_CHECK', target: target(LOOPBACK, 0) };
    assert.throws(
      () => new HealthMonitor(services([{ id: 'a', checkers: [ping] }]), { createChecker: refusing }),
      { code: 'LVS_ERR_INVALID' },
    );
    const monitor = new HealthMonitor(services([{ id: 'a', checkers: [tcp(1)] }]), {
      clock: time.clock,
      timers: time,
      createChecker: refusing,
    });
    assert.throws(() => monitor.update(services([{ id: 'a', checkers: [tcp(1), ping] }])), {
      code: 'LVS_ERR_INVALID',
    });
    assert.equal(monitor.status()[0]!.checkers.length, 1);
    await monitor.stop();
  });

  it('stop ends every schedule and aborts attempts in flight', async () => {
    const time = new VirtualTime();
    let aborted = 0;
    let started = 0;
    const create = (config: CheckerConfig): Checker => ({
      kind: config.kind,
      timeoutMs: 500,
      check: ({ signal }) =>
        new Promise((resolve) => {
          started++;
          signal.addEventListener('abort', () => {
            aborted++;
            resolve({ ok: false, code: 'SOCKERR', reason: 'check aborted', durationMs: 0 });
          });
        }),
    });
    const monitor = new HealthMonitor(
      services([
        { id: 'a', checkers: [tcp(1)] },
        { id: 'b', checkers: [tcp(2)] },
      ]),
      {
        clock: time.clock,
        timers: time,
        createChecker: create,
      },
    );
    const seen = record(monitor, time);
    monitor.start();
    await time.advance(0);
    assert.equal(started, 2);
    await monitor.stop();
    assert.equal(aborted, 2);
    await time.advance(10_000);
    assert.equal(started, 2);
    assert.deepEqual(seen, [], 'an aborted attempt is not judged');
  });
});
