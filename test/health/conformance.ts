// One suite every checker must pass, whatever it checks (the hono router / scheduler model): for
// each kind of target (up, refused, silent, stalled, reset, slow, garbage, gigantic) the checker
// settles with the expected verdict and code, within its deadline, never rejects, gives up at
// once when aborted, and leaves no socket or process behind.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CheckResult, CheckCode, Checker } from '../../src/health/checker.js';
import { createChecker } from '../../src/health/index.js';
import type { CheckerConfig, CheckTiming } from '../../src/health/config.js';
import { Targets } from './targets.js';

export type Scenario = 'up' | 'refused' | 'silent' | 'stalled' | 'reset' | 'slow' | 'garbage' | 'gigantic';
export const SCENARIOS: Scenario[] = [
  'up',
  'refused',
  'silent',
  'stalled',
  'reset',
  'slow',
  'garbage',
  'gigantic',
];

export interface Expectation {
  ok: boolean;
  /** The code, or the codes either of which is right (an endless body is cut by size or by time, whichever comes first). */
  code: CheckCode | CheckCode[];
}

export interface CheckerCase {
  name: string;
  /** The checker's configuration against the target of a scenario; null when the scenario has no target here. */
  setup(scenario: Scenario, targets: Targets, timing: CheckTiming): Promise<CheckerConfig | null>;
  /** What each scenario must give; a scenario left out is skipped with the reason in `skip`. */
  expect: Partial<Record<Scenario, Expectation>>;
  skip?: Partial<Record<Scenario, string>>;
}

/** Short times, so that timeouts happen quickly; the slow target answers after twice the timeout. */
export const TIMING: CheckTiming = {
  delayLoopMs: 1000,
  connectTimeoutMs: 400,
  retry: 1,
  delayBeforeRetryMs: 100,
  warmupMs: 0,
  alpha: false,
  logAllFailures: false,
};
export const SLOW_MS = 2 * TIMING.connectTimeoutMs;

function handles(): number {
  return process.getActiveResourcesInfo().filter((r) => /TCP|UDP|Pipe|Process|Socket/.test(r)).length;
}

async function attempt(checker: Checker, signal = new AbortController().signal): Promise<CheckResult> {
  return checker.check({ timeoutMs: checker.timeoutMs, signal });
}

export function runCheckerConformance(c: CheckerCase): void {
  describe(`${c.name} conformance`, () => {
    let targets: Targets;
    before(async () => {
      targets = await Targets.open();
    });
    after(() => targets.close());

    for (const scenario of SCENARIOS) {
      const expected = c.expect[scenario];
      const reason = c.skip?.[scenario] ?? (expected ? undefined : 'not applicable');
      it(`${scenario}: ${expected ? `${expected.ok ? 'up' : 'down'} with ${[expected.code].flat().join(' or ')}` : reason}`, async (t) => {
        if (!expected) return t.skip(reason);
        const config = await c.setup(scenario, targets, TIMING);
        if (!config) return t.skip('needs root (namespace or raw socket)');
        const checker = createChecker(config);
        const baseline = handles();
        const rssBefore = process.memoryUsage().rss;
        const r = await attempt(checker);
        assert.equal(typeof r.reason, 'string');
        assert.ok(r.reason.length > 0, 'a reason is given');
        const codes = Array.isArray(expected.code) ? expected.code : [expected.code];
        assert.equal(r.ok, expected.ok, `got ${r.code} ${r.reason}`);
        assert.ok(codes.includes(r.code), `got ${r.code} ${r.reason}`);
        assert.ok(r.durationMs >= 0);
        if (scenario === 'gigantic')
          assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024, 'memory stays bounded');
        // Sockets and children close with the attempt (give the loop a turn to release them).
        await new Promise((res) => setTimeout(res, 50));
        assert.ok(handles() <= baseline, `handles ${handles()} > ${baseline}`);
      });
    }

    it('gives up at once when aborted, and never rejects', async (t) => {
      const config = await c.setup(c.expect.silent ? 'silent' : 'stalled', targets, TIMING);
      if (!config) return t.skip('needs root');
      const checker = createChecker(config);
      const controller = new AbortController();
      const pending = attempt(checker, controller.signal);
      controller.abort();
      const r = await pending;
      assert.equal(r.ok, false);
      assert.equal(r.code, 'SOCKERR');
      const already = await attempt(checker, AbortSignal.abort());
      assert.equal(already.ok, false);
    });
  });
}
