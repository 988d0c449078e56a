// Schedulers plug in by name, as ip_vs_sched.c's register_ip_vs_scheduler and
// ip_vs_scheduler_get. The built-in ones register themselves from ./index.ts.

import { ErrorCodes, LvsError } from '../errors.js';
import type { Scheduler } from './types.js';

const schedulers = new Map<string, Scheduler>();

export function registerScheduler<S>(scheduler: Scheduler<S>): void {
  if (schedulers.has(scheduler.name)) {
    throw new LvsError(ErrorCodes.SCHEDULER_EXISTS, `scheduler ${scheduler.name} already exists`);
  }
  schedulers.set(scheduler.name, scheduler as Scheduler);
}

export function findScheduler(name: string): Scheduler | undefined {
  return schedulers.get(name);
}

export function schedulerNames(): string[] {
  return [...schedulers.keys()];
}
