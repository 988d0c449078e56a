// Restarts that keep connections (an upgrade, `systemctl restart`: SIGTERM, then a new lvsd).
// The stopping lvsd holds its services' traffic (dropped, so that the host answers nothing while
// no lvsd runs: clients retransmit instead of seeing a reset) and saves its connection table; the
// next one, once its services are in, takes the table over whole or not at all and ends the hold.

import type { Engine } from '../core/engine.js';
import { planRestore } from '../core/restart.js';
import type { Logger } from './log.js';
import { ConnTableError, ConnTableStore } from './conn-table.js';

export interface RestartOptions {
  /** How long the stopping lvsd's hold keeps the services' traffic dropped; 0 holds nothing. */
  holdMs: number;
  /** A table saved longer ago than this is refused as stale. */
  maxAgeMs: number;
  /** Wall clock, ms since the epoch: what times the gap between two runs. */
  wallClock: () => number;
}

/** Long enough for a restart (about a second) many times over; short enough that a stop heals. */
export const DEFAULT_RESTART_HOLD_MS = 30_000;
/** An established TCP connection's timeout: no entry of an older table could still be alive. */
export const DEFAULT_MAX_TABLE_AGE_MS = 15 * 60_000;

export const DEFAULT_RESTART_OPTIONS: RestartOptions = {
  holdMs: DEFAULT_RESTART_HOLD_MS,
  maxAgeMs: DEFAULT_MAX_TABLE_AGE_MS,
  wallClock: () => Date.now(),
};

/** The stopping side: hold the traffic, save every connection. Logs what it did; never throws. */
export async function handOverConnections(
  engine: Engine,
  store: ConnTableStore,
  options: RestartOptions,
  log: Logger,
): Promise<void> {
  try {
    const handOver = await engine.handOver(options.holdMs);
    if (handOver.holdError !== null) {
      log('error', `cannot hold the services' traffic for the restart: ${handOver.holdError}`);
    } else if (handOver.held) {
      log(
        'info',
        `holding the services' traffic for the next lvsd, ${Math.ceil(options.holdMs / 1000)} s at most`,
      );
    }
    await store.save({ savedAtMs: options.wallClock(), records: handOver.records });
    log('info', `saved ${handOver.records.length} connections to ${store.file}`);
  } catch (err) {
    log('error', `cannot save the connection table to ${store.file}: ${(err as Error).message}`);
  }
}

/**
 * The starting side, once the services are in: takes over the table the previous run saved, or
 * none of it, then ends the hold it left. Logs what it did; never throws.
 */
export async function takeOverConnections(
  engine: Engine,
  store: ConnTableStore,
  options: RestartOptions,
  log: Logger,
): Promise<void> {
  const refused = (reason: string) => log('error', `${reason}; starting with an empty connection table`);
  let records: Parameters<Engine['takeOver']>[0] = [];
  let taken: string | null = null;
  try {
    const saved = await store.read();
    if (saved) {
      const snapshot = await engine.snapshot({ connections: false });
      const table = snapshot.connTable;
      const decision = planRestore(saved, {
        nowMs: options.wallClock(),
        services: snapshot.services,
        room: table ? table.capacity - table.entries : Infinity,
        maxAgeMs: options.maxAgeMs,
      });
      if (decision.ok) {
        await store.taken();
        records = decision.plan.records;
        const { downMs, expired } = decision.plan;
        taken = `from ${store.file} (saved ${(downMs / 1000).toFixed(1)} s ago; ${expired} expired meanwhile)`;
      } else {
        await store.setAside();
        refused(new ConnTableError(store.file, decision.reason).message);
      }
    }
  } catch (err) {
    if (err instanceof ConnTableError) refused(err.message);
    else log('error', `cannot take over the connection table: ${(err as Error).message}`);
  }
  try {
    const result = await engine.takeOver(records);
    if (taken) log('info', `took over ${result.imported} connections ${taken}`);
  } catch (err) {
    log('error', `cannot take over the connections: ${(err as Error).message}`);
  }
}
