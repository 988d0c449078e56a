// One checker's state machine, exactly as keepalived's epilog functions (check_tcp.c, check_udp.c,
// check_ping.c, check_misc.c @9cbce3e) drive it: pure data in, the next state and the delay
// before the next attempt out. The adapter owns the timers; this file owns the rules.

/** The timing keywords a checker's state machine reads (a subset of CheckTiming). */
export interface CheckerRules {
  delayLoopMs: number;
  retry: number;
  delayBeforeRetryMs: number;
  warmupMs: number;
  alpha: boolean;
}

export interface CheckerState {
  readonly up: boolean;
  /** keepalived's has_run: false until the first attempt has been judged. */
  readonly hasRun: boolean;
  /** keepalived's retry_it: consecutive failures of an UP checker counted so far. */
  readonly retries: number;
}

export interface CheckerStep {
  readonly state: CheckerState;
  /** The checker went UP or DOWN with this attempt (null: no change). */
  readonly transition: 'UP' | 'DOWN' | null;
  /** Time from this attempt to the next one. */
  readonly delayMs: number;
  /** "failed after N retries" as keepalived logs it, or the success; empty when nothing changed. */
  readonly note: string;
}

/**
 * The state before the first attempt. Without alpha the checker is UP and its retry counter is
 * preset to `retry`, so that one failure is enough initially (keepalived: "For non alpha mode,
 * one failure is enough initially"); with alpha it starts DOWN.
 */
export function initialCheckerState(rules: CheckerRules): CheckerState {
  return { up: !rules.alpha, hasRun: false, retries: rules.alpha ? 0 : rules.retry };
}

/** keepalived's warmup: the first attempt waits a random time in [0, warmup]; `random01` is in [0, 1). */
export function firstDelayMs(rules: CheckerRules, random01: number): number {
  return rules.warmupMs > 0 ? Math.floor(random01 * (rules.warmupMs + 1)) : 0;
}

/**
 * Judges one attempt. A success always resets the retries and brings a DOWN checker UP (no rise
 * count). A failure of an UP checker (or of one that has not run) is retried `retry` times,
 * delay_before_retry apart, and the next one marks it DOWN; a DOWN checker is tried every delay_loop.
 */
export function checkerStep(rules: CheckerRules, state: CheckerState, ok: boolean): CheckerStep {
  const counting = state.up || !state.hasRun;
  if (ok || (counting && state.retries >= rules.retry)) {
    const next: CheckerState = { up: ok, hasRun: true, retries: 0 };
    let transition: CheckerStep['transition'] = null;
    let note = '';
    if (ok && !state.up) {
      transition = 'UP';
      note = 'check succeeded';
    } else if (!ok && state.up) {
      transition = 'DOWN';
      note = rules.retry > 0 && state.hasRun ? `failed after ${rules.retry} retries` : 'failed';
    }
    return { state: next, transition, delayMs: rules.delayLoopMs, note };
  }
  if (counting) {
    return {
      state: { up: state.up, hasRun: true, retries: state.retries + 1 },
      transition: null,
      delayMs: rules.delayBeforeRetryMs,
      note: '',
    };
  }
  return { state: { ...state, hasRun: true }, transition: null, delayMs: rules.delayLoopMs, note: '' };
}
