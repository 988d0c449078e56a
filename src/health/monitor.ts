// The monitor: runs every real server's checkers on keepalived's schedule and feeds the results
// to the pure HealthModel, whose events it emits. Checks are spread by warmup and started through
// a bounded queue (no check storm, however many servers); each attempt is async and bounded in
// time by its checker and, as a safety net, by the monitor. Nothing here blocks the event loop.

import { EventEmitter } from 'node:events';
import type { Clock } from '../core/clock.js';
import { firstDelayMs } from '../core/health/checker.js';
import {
  HealthModel,
  matchCheckers,
  type HealthEvent,
  type HealthServiceSpec,
  type HealthSorrySpec,
} from '../core/health/service.js';
import type { CheckerConfig } from './config.js';
import { createChecker, type Checker, type CheckResult } from './checker.js';
import './index.js';

export interface MonitoredRealServer {
  /** Unique within its service and stable across reloads (e.g. "198.18.1.11:80"). */
  id: string;
  /** keepalived's name for notify lines: endpointName(addr, 'tcp', port). */
  name: string;
  weight: number;
  inhibitOnFailure: boolean;
  checkers: CheckerConfig[];
}

export interface MonitoredService {
  /** Unique and stable across reloads (e.g. "TCP 198.18.0.1:80"). */
  id: string;
  /** keepalived's name for notify lines: endpointName(vip, 'tcp', port) or "FWM n". */
  name: string;
  quorum: number;
  hysteresis: number;
  sorry: HealthSorrySpec | null;
  realServers: MonitoredRealServer[];
}

/** Timers, injectable so that tests can run the schedule on a virtual clock. */
export interface Timers {
  set(callback: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface MonitorOptions {
  /** Attempts running at once, at most (default 32). */
  concurrency?: number;
  /** Monotonic ms (default performance.now). */
  clock?: Clock;
  timers?: Timers;
  /** Wall-clock ms since the epoch, for the times shown to operators (default Date.now). */
  wallClock?: () => number;
  /** [0, 1), for warmup (default Math.random). */
  random?: () => number;
  /** Builds a checker (default the registry's; tests pass fakes). */
  createChecker?: (config: CheckerConfig) => Checker;
}

/** The last attempt of a checker, as lvsadm shows it. */
export interface CheckerStatus {
  kind: CheckerConfig['kind'];
  up: boolean;
  last: LastCheck | null;
}

/** A check's result with its monotonic time (`at`) and wall-clock time (`time`, epoch ms). */
export type LastCheck = CheckResult & { at: number; time: number };

export interface ServerStatus {
  service: string;
  server: string;
  alive: boolean;
  checkers: CheckerStatus[];
  /** The last RS UP/DOWN, with its reason, monotonic and wall-clock times. */
  lastChange: { up: boolean; reason: string; at: number; time: number } | null;
}

/** Slack the monitor gives a checker beyond its own deadline before aborting it. */
const SAFETY_MS = 5000;

interface Entry {
  service: string;
  server: string;
  index: number;
  key: string;
  config: CheckerConfig;
  checker: Checker;
  timer: unknown;
  controller: AbortController | null;
  queued: boolean;
  last: LastCheck | null;
  removed: boolean;
}

function checkerKey(config: CheckerConfig): string {
  return JSON.stringify(config, (_k, v: unknown) =>
    v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v,
  );
}

function toSpecs(services: readonly MonitoredService[]): HealthServiceSpec[] {
  return services.map((svc) => ({
    id: svc.id,
    name: svc.name,
    quorum: svc.quorum,
    hysteresis: svc.hysteresis,
    sorry: svc.sorry,
    realServers: svc.realServers.map((rs) => ({
      id: rs.id,
      name: rs.name,
      weight: rs.weight,
      inhibitOnFailure: rs.inhibitOnFailure,
      checkers: rs.checkers.map((c) => ({ ...c, key: checkerKey(c) })),
    })),
  }));
}

const systemClock: Clock = { now: () => performance.now() };
const systemTimers: Timers = {
  set: (callback, ms) => setTimeout(callback, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Health of real servers, checked as keepalived does. Emits 'event' (HealthEvent) for every
 * change; `placements()` gives the starting point, `update()` reloads, `stop()` ends all checks.
 */
export class HealthMonitor extends EventEmitter<{ event: [HealthEvent] }> {
  private model: HealthModel;
  private entries = new Map<string, Entry[]>();
  private readonly queue: Entry[] = [];
  private running = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;
  private started = false;
  private readonly lastChange = new Map<string, ServerStatus['lastChange']>();
  private readonly concurrency: number;
  private readonly clock: Clock;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly wallClock: () => number;
  private readonly makeChecker: (config: CheckerConfig) => Checker;

  /** Validates every checker first: a configuration a checker refuses throws (LvsError) and nothing starts. */
  constructor(services: readonly MonitoredService[], options: MonitorOptions = {}) {
    super();
    this.concurrency = Math.max(1, options.concurrency ?? 32);
    this.clock = options.clock ?? systemClock;
    this.timers = options.timers ?? systemTimers;
    this.random = options.random ?? Math.random;
    this.wallClock = options.wallClock ?? Date.now;
    this.makeChecker = options.createChecker ?? createChecker;
    const built = this.buildEntries(services, new Map());
    this.model = new HealthModel(toSpecs(services));
    this.entries = built;
  }

  /** Where every real server and sorry server starts (alpha ones out, or at weight 0 when inhibited). */
  placements(): HealthEvent[] {
    return this.model.placements();
  }

  /** Starts checking (each checker after its warmup). */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    for (const list of this.entries.values()) for (const entry of list) this.scheduleFirst(entry);
  }

  /**
   * Reloads: unchanged checkers of kept real servers keep their state and schedule; new ones
   * start as their alpha says; removed ones stop. Returns the events the change caused (also
   * emitted). Throws, changing nothing, if a new checker's configuration is refused.
   */
  update(services: readonly MonitoredService[]): HealthEvent[] {
    const built = this.buildEntries(services, this.entries);
    const events = this.model.reconfigure(toSpecs(services));
    const keep = new Set([...built.values()].flat());
    for (const list of this.entries.values())
      for (const entry of list) if (!keep.has(entry)) this.retire(entry);
    this.entries = built;
    for (const list of built.values())
      for (const entry of list)
        if (this.started && entry.timer === null && !entry.controller && !entry.queued)
          this.scheduleFirst(entry);
    for (const key of [...this.lastChange.keys()]) if (!built.has(key)) this.lastChange.delete(key);
    for (const event of events) this.emit('event', event);
    return events;
  }

  /** Stops every timer and aborts every attempt in flight; resolves when they have settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const list of this.entries.values()) for (const entry of list) this.retire(entry);
    this.queue.length = 0;
    await Promise.all([...this.inFlight]);
  }

  /** Whether every checker of the real server is up (unknown servers are not). */
  isAlive(service: string, server: string): boolean {
    return this.model.isAlive(service, server);
  }

  /** Whether the virtual service holds its quorum. */
  quorumUp(service: string): boolean {
    return this.model.quorumUp(service);
  }

  status(): ServerStatus[] {
    const out: ServerStatus[] = [];
    for (const [key, list] of this.entries) {
      const [service, server] = JSON.parse(key) as [string, string];
      out.push({
        service,
        server,
        alive: this.model.isAlive(service, server),
        checkers: list.map((e) => ({
          kind: e.config.kind,
          up: this.model.checkerState(service, server, e.index)?.up ?? false,
          last: e.last,
        })),
        lastChange: this.lastChange.get(key) ?? null,
      });
    }
    return out;
  }

  /**
   * Entries for a configuration, reusing those of `previous` whose checker is unchanged. Every
   * new checker is built before any entry is touched, so a refusal changes nothing.
   */
  private buildEntries(
    services: readonly MonitoredService[],
    previous: Map<string, Entry[]>,
  ): Map<string, Entry[]> {
    const plan: Array<{ key: string; items: Array<{ old: Entry | null; entry: Entry | null }> }> = [];
    for (const svc of services)
      for (const rs of svc.realServers) {
        const key = JSON.stringify([svc.id, rs.id]);
        const before = previous.get(key) ?? [];
        const keys = rs.checkers.map(checkerKey);
        const kept = matchCheckers(
          before.map((e) => e.key),
          keys,
        );
        const items = rs.checkers.map((config, index) => {
          const old = kept[index] === null ? null : before[kept[index]!]!;
          if (old) return { old, entry: null };
          const entry: Entry = {
            service: svc.id,
            server: rs.id,
            index,
            key: keys[index]!,
            config,
            checker: this.makeChecker(config),
            timer: null,
            controller: null,
            queued: false,
            last: null,
            removed: false,
          };
          return { old: null, entry };
        });
        plan.push({ key, items });
      }
    const built = new Map<string, Entry[]>();
    for (const { key, items } of plan)
      built.set(
        key,
        items.map(({ old, entry }, index) => (old ? Object.assign(old, { index }) : entry!)),
      );
    return built;
  }

  private retire(entry: Entry): void {
    entry.removed = true;
    if (entry.timer !== null) this.timers.clear(entry.timer);
    entry.timer = null;
    entry.controller?.abort();
    const at = this.queue.indexOf(entry);
    if (at >= 0) this.queue.splice(at, 1);
    entry.queued = false;
  }

  private scheduleFirst(entry: Entry): void {
    this.schedule(entry, firstDelayMs(entry.config, this.random()));
  }

  private schedule(entry: Entry, ms: number): void {
    if (this.stopped || entry.removed) return;
    entry.timer = this.timers.set(
      () => {
        entry.timer = null;
        this.enqueue(entry);
      },
      Math.max(0, ms),
    );
  }

  private enqueue(entry: Entry): void {
    if (this.stopped || entry.removed) return;
    entry.queued = true;
    this.queue.push(entry);
    this.pump();
  }

  private pump(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const entry = this.queue.shift()!;
      entry.queued = false;
      const attempt = this.run(entry);
      this.inFlight.add(attempt);
      void attempt.then(() => this.inFlight.delete(attempt));
    }
  }

  private async run(entry: Entry): Promise<void> {
    this.running++;
    const controller = new AbortController();
    entry.controller = controller;
    const startedAt = this.clock.now();
    const safety = this.timers.set(() => controller.abort(), entry.checker.timeoutMs + SAFETY_MS);
    let outcome: CheckResult;
    try {
      outcome = await entry.checker.check({
        timeoutMs: entry.checker.timeoutMs,
        signal: controller.signal,
        recovering: !(this.model.checkerState(entry.service, entry.server, entry.index)?.up ?? true),
      });
    } catch (error) {
      outcome = { ok: false, code: 'SOCKERR', reason: (error as Error).message, durationMs: 0 };
    } finally {
      this.timers.clear(safety);
      entry.controller = null;
      this.running--;
    }
    if (!entry.removed && !this.stopped) this.judge(entry, outcome, startedAt);
    this.pump();
  }

  private judge(entry: Entry, outcome: CheckResult, startedAt: number): void {
    const now = this.clock.now();
    const time = this.wallClock();
    entry.last = { ...outcome, at: now, time };
    const verdict = this.model.record(entry.service, entry.server, entry.index, {
      ok: outcome.ok,
      reason: `${entry.config.kind} ${outcome.code} ${outcome.reason}`,
      ...(outcome.weight !== undefined ? { weight: outcome.weight } : {}),
    });
    if (!verdict) return;
    // keepalived times MISC_CHECK's next run from the script's start, the others from the result.
    const delay = entry.config.kind === 'MISC_CHECK' ? verdict.delayMs - (now - startedAt) : verdict.delayMs;
    this.schedule(entry, delay);
    for (const event of verdict.events) {
      if (event.type === 'rs')
        this.lastChange.set(JSON.stringify([event.service, event.server]), {
          up: event.up,
          reason: event.reason,
          at: now,
          time,
        });
      this.emit('event', event);
    }
  }
}
