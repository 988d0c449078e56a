// The checker plug-in: one attempt of one check against one real server, with a deadline and an
// AbortSignal, giving a result with HAProxy's short codes (L4OK, L7STS, ...) and a human reason.
// Checkers register by keepalived's name, one file each (the schedulers' model).

import { ErrorCodes, LvsError } from '../core/errors.js';
import type { CheckerConfig, CheckerKind } from './config.js';

/** HAProxy's check status codes (its "check_status"), as lvsadm shows them. */
export type CheckCode =
  | 'L4OK'
  | 'L4TOUT'
  | 'L4CON'
  | 'L6OK'
  | 'L6TOUT'
  | 'L6RSP'
  | 'L7OK'
  | 'L7TOUT'
  | 'L7RSP'
  | 'L7STS'
  | 'PROCOK'
  | 'PROCERR'
  | 'PROCTOUT'
  | 'SOCKERR';

export interface CheckResult {
  ok: boolean;
  code: CheckCode;
  /** Short and human: "connection refused", "HTTP status 500", "exit status 1". */
  reason: string;
  durationMs: number;
  /** misc_dynamic: the weight the script asked for (exit status - 2), or the configured one (exit 0). */
  weight?: number | 'configured';
}

export interface CheckAttempt {
  /** The attempt must settle within this (connect_timeout, misc_timeout). */
  timeoutMs: number;
  /** Aborted when the monitor stops or the checker is removed: give up at once. */
  signal: AbortSignal;
  /** The checker is DOWN (or alpha and not yet UP): HTTP_GET then checks one url per attempt. */
  recovering?: boolean;
}

/** One configured check. `check` never rejects: every failure is a result. */
export interface Checker {
  readonly kind: CheckerKind;
  /** How long one attempt may take, from the configuration (the monitor enforces it too). */
  readonly timeoutMs: number;
  check(attempt: CheckAttempt): Promise<CheckResult>;
}

export interface CheckerFactory<K extends CheckerKind = CheckerKind> {
  readonly kinds: readonly K[];
  /** Refuses (LvsError INVALID) a configuration it cannot carry out, at once. */
  create(config: Extract<CheckerConfig, { kind: K }>): Checker;
}

const registry = new Map<CheckerKind, CheckerFactory>();

/** Registers a checker under each of its keepalived names; a name registered twice is refused. */
export function registerChecker<K extends CheckerKind>(factory: CheckerFactory<K>): void {
  for (const kind of factory.kinds) {
    if (registry.has(kind)) throw new LvsError(ErrorCodes.INVALID, `checker ${kind} is already registered`);
    registry.set(kind, factory as unknown as CheckerFactory);
  }
}

export function registeredCheckers(): CheckerKind[] {
  return [...registry.keys()];
}

/** Builds the checker for a configuration; refuses an unknown kind or what the checker cannot do. */
export function createChecker(config: CheckerConfig): Checker {
  const factory = registry.get(config.kind);
  if (!factory) throw new LvsError(ErrorCodes.INVALID, `checker ${config.kind} is not supported`);
  return factory.create(config as never);
}

/** A result, timed from `startedAt` (performance.now()). */
export function result(
  startedAt: number,
  ok: boolean,
  code: CheckCode,
  reason: string,
  weight?: number | 'configured',
): CheckResult {
  const out: CheckResult = { ok, code, reason, durationMs: Math.round(performance.now() - startedAt) };
  if (weight !== undefined) out.weight = weight;
  return out;
}

/** The reason node gives a socket error, in words (ECONNREFUSED -> "connection refused"). */
export function socketReason(error: unknown): string {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
      return 'host unreachable';
    case 'ENETUNREACH':
      return 'network unreachable';
    case 'EPIPE':
      return 'broken pipe';
    case 'EADDRINUSE':
      return 'local address in use';
    case 'EADDRNOTAVAIL':
      return 'local address not available';
    default:
      return code ? code : (error as Error).message;
  }
}

/**
 * Runs one attempt to a single settlement: `start` begins the work and returns its cleanup; the
 * attempt ends with the first of `finish(result)`, the deadline (`onTimeout`) or the abort signal.
 * The cleanup always runs, so sockets and children never outlive their attempt.
 */
export function settleOnce(
  attempt: CheckAttempt,
  onTimeout: (startedAt: number) => CheckResult,
  start: (finish: (r: CheckResult) => void, startedAt: number) => () => void,
): Promise<CheckResult> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let cleanup: () => void = () => {};
    const finish = (r: CheckResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      attempt.signal.removeEventListener('abort', onAbort);
      cleanup();
      resolve(r);
    };
    const onAbort = () => finish(result(startedAt, false, 'SOCKERR', 'check aborted'));
    const timer = setTimeout(() => finish(onTimeout(startedAt)), attempt.timeoutMs);
    if (attempt.signal.aborted) return onAbort();
    attempt.signal.addEventListener('abort', onAbort, { once: true });
    try {
      cleanup = start(finish, startedAt);
    } catch (error) {
      finish(result(startedAt, false, 'SOCKERR', socketReason(error)));
    }
    if (done) cleanup();
  });
}

/**
 * A checker whose attempt is one settleOnce: `start` begins it; silence until the deadline is
 * `timeoutCode` with "<what> within N ms".
 */
export function timedChecker(
  config: CheckerConfig & { connectTimeoutMs: number },
  timeoutCode: CheckCode,
  what: string,
  start: (finish: (r: CheckResult) => void, startedAt: number) => () => void,
): Checker {
  return {
    kind: config.kind,
    timeoutMs: config.connectTimeoutMs,
    check: (attempt) =>
      settleOnce(
        attempt,
        (t0) => result(t0, false, timeoutCode, `${what} within ${config.connectTimeoutMs} ms`),
        start,
      ),
  };
}
