// Real servers and virtual services as keepalived's checker sees them (check_data.c, ipwrapper.c
// @9cbce3e): a real server is alive only while every one of its checkers is UP; a virtual service
// keeps a quorum of alive weight with hysteresis and swaps in its sorry server when it loses it
// (update_quorum_state). Every change comes out as events: what to tell operators (RS/VS UP and
// DOWN, with keepalived's notify lines) and what the engine must do (a real server's effective
// weight in scheduling, or its removal). Pure: the adapter feeds check results in.

import { formatAddr, type Addr } from '../inet.js';
import { checkerStep, initialCheckerState, type CheckerRules, type CheckerState } from './checker.js';

export interface HealthRealServerSpec {
  /** A key the caller chooses, unique within the service (e.g. "198.18.1.11:80"); stable across reloads. */
  id: string;
  /** keepalived's FMT_RS, e.g. "[198.18.1.11]:tcp:80" (see endpointName). */
  name: string;
  /** The configured weight. */
  weight: number;
  /** inhibit_on_failure: a failed server stays in the table at weight 0 instead of being removed. */
  inhibitOnFailure: boolean;
  /** One entry per checker; an empty list means always alive, as keepalived treats an RS without checkers. */
  checkers: KeyedRules[];
}

/**
 * A checker's rules and a key saying what it checks (the caller's choice, e.g. its configuration
 * as JSON): on reload a checker keeps its state only if its key is unchanged.
 */
export type KeyedRules = CheckerRules & { key: string };

export interface HealthSorrySpec {
  name: string;
  weight: number;
  /** sorry_server_inhibit: keep the sorry server at weight 0 while it is not needed, not removed. */
  inhibit: boolean;
}

export interface HealthServiceSpec {
  /** A key the caller chooses, unique among services; stable across reloads. */
  id: string;
  /** keepalived's FMT_VS, e.g. "[198.18.0.1]:tcp:80" or "FWM 1". */
  name: string;
  quorum: number;
  hysteresis: number;
  sorry: HealthSorrySpec | null;
  realServers: HealthRealServerSpec[];
}

/** Where a real server (or the sorry server) stands in scheduling: its weight, or null when removed. */
export type EffectiveWeight = number | null;

export type HealthEvent =
  /** A real server became alive or failed. `line` is keepalived's notify FIFO line. */
  | { type: 'rs'; service: string; server: string; up: boolean; reason: string; line: string }
  /** A virtual service gained or lost its quorum (quorum_up / quorum_down). */
  | { type: 'vs'; service: string; up: boolean; weightSum: number; line: string }
  /**
   * The engine must change a real server: null removes it from scheduling (keepalived's DELDEST),
   * a number adds it or sets its weight (ADDDEST / EDITDEST; 0 quiesces it under inhibit_on_failure).
   */
  | { type: 'weight'; service: string; server: string; weight: EffectiveWeight }
  /** The sorry server's place in scheduling, on the same terms. */
  | { type: 'sorry'; service: string; weight: EffectiveWeight };

/** The outcome of one attempt of one checker, as the pure layer needs it. */
export interface CheckOutcome {
  ok: boolean;
  /** Why, for the RS event ("L4CON connection refused"). */
  reason: string;
  /** misc_dynamic: the weight the script asked for (exit status - 2), or the configured one (exit 0). */
  weight?: number | 'configured';
}

/** keepalived's "[addr]:proto:port" for notify lines. */
export function endpointName(addr: Addr, protocol: 'tcp' | 'udp' | 'sctp', port: number): string {
  return `[${formatAddr(addr)}]:${protocol}:${port}`;
}

interface ServerState {
  spec: HealthRealServerSpec;
  checkers: CheckerState[];
  /** misc_dynamic's weight, or null for the configured one. */
  dynamicWeight: number | null;
  placed: EffectiveWeight;
}

interface ServiceState {
  spec: HealthServiceSpec;
  servers: Map<string, ServerState>;
  quorumUp: boolean;
  sorryPlaced: EffectiveWeight;
}

/** What the last attempt of a checker did, for the caller's scheduling. */
export interface CheckerVerdict {
  delayMs: number;
  events: HealthEvent[];
  /** The checker changed state with this attempt, and keepalived's words for it. */
  transition: 'UP' | 'DOWN' | null;
  note: string;
}

function alive(server: ServerState): boolean {
  return server.checkers.every((c) => c.up);
}

function currentWeight(server: ServerState): number {
  return server.dynamicWeight ?? server.spec.weight;
}

/** keepalived clamps these when it reads the service (check_data.c): quorum to the total weight, hysteresis below quorum. */
function clampedQuorum(spec: HealthServiceSpec): { quorum: number; hysteresis: number } {
  const total = spec.realServers.reduce((sum, rs) => sum + rs.weight, 0);
  const quorum = Math.max(1, Math.min(spec.quorum, Math.max(total, 1)));
  const hysteresis = Math.max(0, Math.min(spec.hysteresis, quorum - 1));
  return { quorum, hysteresis };
}

/** Health of every real server of every service, and the scheduling each implies. */
export class HealthModel {
  private readonly services = new Map<string, ServiceState>();

  /** Builds the initial state; `initialEvents()` tells the engine where every server starts. */
  constructor(specs: readonly HealthServiceSpec[]) {
    for (const spec of specs) this.services.set(spec.id, this.freshService(spec));
  }

  /** The placement of every server and sorry server now, as weight events (to seed the engine). */
  placements(): HealthEvent[] {
    return [...this.services.values()].flatMap(placementsOf);
  }

  isAlive(service: string, server: string): boolean {
    const s = this.services.get(service)?.servers.get(server);
    return s !== undefined && alive(s);
  }

  checkerState(service: string, server: string, checker: number): CheckerState | undefined {
    return this.services.get(service)?.servers.get(server)?.checkers[checker];
  }

  quorumUp(service: string): boolean {
    return this.services.get(service)?.quorumUp ?? false;
  }

  /** Judges one attempt of one checker; unknown ids (a checker removed by a reload) give null. */
  record(service: string, server: string, checker: number, outcome: CheckOutcome): CheckerVerdict | null {
    const svc = this.services.get(service);
    const rs = svc?.servers.get(server);
    const rules = rs?.spec.checkers[checker];
    if (!svc || !rs || !rules) return null;
    const wasAlive = alive(rs);
    const step = checkerStep(rules, rs.checkers[checker]!, outcome.ok);
    rs.checkers[checker] = step.state;
    if (outcome.ok && outcome.weight !== undefined)
      rs.dynamicWeight = outcome.weight === 'configured' ? null : outcome.weight;
    const events: HealthEvent[] = [];
    const isAlive = alive(rs);
    if (wasAlive !== isAlive) {
      const state = isAlive ? 'UP' : 'DOWN';
      events.push({
        type: 'rs',
        service,
        server,
        up: isAlive,
        reason: step.note ? `${outcome.reason} (${step.note})` : outcome.reason,
        line: `RS ${rs.spec.name} ${svc.spec.name} ${state}`,
      });
    }
    this.settle(svc, events);
    return { delayMs: step.delayMs, events, transition: step.transition, note: step.note };
  }

  /**
   * Replaces the configuration as keepalived's reload does: a server whose id is kept keeps the
   * state of every checker whose key is unchanged (so a failed server is not re-added at once),
   * weight changes apply, new servers and checkers start as their alpha says, removed ones go.
   * The events are the differences only.
   */
  reconfigure(specs: readonly HealthServiceSpec[]): HealthEvent[] {
    const events: HealthEvent[] = [];
    const next = new Map<string, ServiceState>();
    for (const spec of specs) {
      const old = this.services.get(spec.id);
      if (!old) {
        const svc = this.freshService(spec);
        events.push(...placementsOf(svc));
        next.set(spec.id, svc);
        continue;
      }
      const svc = this.carriedService(spec, old);
      for (const [id, before] of old.servers)
        if (!svc.servers.has(id) && before.placed !== null)
          events.push({ type: 'weight', service: spec.id, server: id, weight: null });
      this.settle(svc, events);
      next.set(spec.id, svc);
    }
    for (const [id, old] of this.services) {
      if (next.has(id)) continue;
      for (const server of old.servers.values())
        if (server.placed !== null)
          events.push({ type: 'weight', service: id, server: server.spec.id, weight: null });
      if (old.sorryPlaced !== null) events.push({ type: 'sorry', service: id, weight: null });
    }
    this.services.clear();
    for (const [id, svc] of next) this.services.set(id, svc);
    return events;
  }

  private freshService(spec: HealthServiceSpec): ServiceState {
    const servers = carryServers(spec, new Map());
    const svc: ServiceState = { spec, servers, quorumUp: true, sorryPlaced: null };
    // At start the quorum is judged without hysteresis: up when the alive weight reaches it.
    svc.quorumUp = weightSum(svc) >= clampedQuorum(spec).quorum;
    for (const server of servers.values()) server.placed = this.target(svc, server);
    svc.sorryPlaced = this.sorryTarget(svc);
    return svc;
  }

  /** A reloaded service: checker states, quorum and placements carried over, to be settled. */
  private carriedService(spec: HealthServiceSpec, old: ServiceState): ServiceState {
    const servers = carryServers(spec, old.servers);
    return { spec, servers, quorumUp: old.quorumUp, sorryPlaced: old.sorryPlaced };
  }

  /** Where a server belongs now (keepalived changes IPVS only while the quorum is up or there is no sorry server). */
  private target(svc: ServiceState, server: ServerState): EffectiveWeight {
    if (alive(server)) return svc.quorumUp || !svc.spec.sorry ? currentWeight(server) : null;
    return server.spec.inhibitOnFailure ? 0 : null;
  }

  private sorryTarget(svc: ServiceState): EffectiveWeight {
    const sorry = svc.spec.sorry;
    if (!sorry) return null;
    if (!svc.quorumUp) return sorry.weight;
    return sorry.inhibit ? 0 : null;
  }

  /**
   * update_quorum_state, then every placement that follows from it: on a gain the sorry server
   * goes before the real servers return, on a loss after they leave; quorum_up/down come last.
   */
  private settle(svc: ServiceState, events: HealthEvent[]): void {
    const { quorum, hysteresis } = clampedQuorum(svc.spec);
    const sum = weightSum(svc);
    const wasUp = svc.quorumUp;
    if (!wasUp && sum >= quorum + hysteresis) svc.quorumUp = true;
    else if (wasUp && (sum < quorum - hysteresis || sum === 0)) svc.quorumUp = false;
    if (svc.quorumUp) this.placeSorry(svc, this.sorryTarget(svc), events);
    for (const server of svc.servers.values()) this.place(svc, server, this.target(svc, server), events);
    this.placeSorry(svc, this.sorryTarget(svc), events);
    if (wasUp !== svc.quorumUp) events.push(this.quorumEvent(svc));
  }

  private quorumEvent(svc: ServiceState): HealthEvent {
    const state = svc.quorumUp ? 'UP' : 'DOWN';
    return {
      type: 'vs',
      service: svc.spec.id,
      up: svc.quorumUp,
      weightSum: weightSum(svc),
      line: `VS ${svc.spec.name} ${state}`,
    };
  }

  private place(
    svc: ServiceState,
    server: ServerState,
    weight: EffectiveWeight,
    events: HealthEvent[],
  ): void {
    if (server.placed === weight) return;
    server.placed = weight;
    events.push({ type: 'weight', service: svc.spec.id, server: server.spec.id, weight });
  }

  private placeSorry(svc: ServiceState, weight: EffectiveWeight, events: HealthEvent[]): void {
    if (svc.sorryPlaced === weight) return;
    svc.sorryPlaced = weight;
    events.push({ type: 'sorry', service: svc.spec.id, weight });
  }
}

/** keepalived's weight_sum: the weights of the alive real servers. */
function weightSum(svc: ServiceState): number {
  let sum = 0;
  for (const server of svc.servers.values()) if (alive(server)) sum += currentWeight(server);
  return sum;
}

function placementsOf(svc: ServiceState): HealthEvent[] {
  const events: HealthEvent[] = [];
  for (const server of svc.servers.values())
    events.push({ type: 'weight', service: svc.spec.id, server: server.spec.id, weight: server.placed });
  if (svc.spec.sorry) events.push({ type: 'sorry', service: svc.spec.id, weight: svc.sorryPlaced });
  return events;
}

/** Servers of a new spec, each keeping the state of its unchanged checkers from `previous`. */
function carryServers(spec: HealthServiceSpec, previous: Map<string, ServerState>): Map<string, ServerState> {
  const servers = new Map<string, ServerState>();
  for (const rsSpec of spec.realServers) {
    const before = previous.get(rsSpec.id);
    const kept = matchCheckers(
      before ? before.spec.checkers.map((c) => c.key) : [],
      rsSpec.checkers.map((c) => c.key),
    );
    const checkers = rsSpec.checkers.map((rules, i) =>
      kept[i] === null ? initialCheckerState(rules) : before!.checkers[kept[i]!]!,
    );
    servers.set(rsSpec.id, {
      spec: rsSpec,
      checkers,
      dynamicWeight: before?.dynamicWeight ?? null,
      placed: before?.placed ?? null,
    });
  }
  return servers;
}

/**
 * Which old checker each new one continues across a reload: the first not yet taken with the same
 * key, or null for a new checker. The adapter uses it too, so that its timers follow the states.
 */
export function matchCheckers(oldKeys: readonly string[], newKeys: readonly string[]): Array<number | null> {
  const taken = new Set<number>();
  return newKeys.map((key) => {
    const index = oldKeys.findIndex((k, i) => k === key && !taken.has(i));
    if (index < 0) return null;
    taken.add(index);
    return index;
  });
}
