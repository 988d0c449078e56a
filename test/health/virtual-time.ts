// Timers and a clock that move only when told, for the monitor and what drives it.

import type { Timers } from '../../src/health/monitor.js';

/** Timers and clock that move only when told. */
export class VirtualTime implements Timers {
  private current = 0;
  private seq = 0;
  private readonly pending = new Map<number, { at: number; fn: () => void }>();
  readonly clock = { now: () => this.current };

  set(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.current + ms, fn });
    return id;
  }

  clear(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  /** Runs every timer due up to now + ms, in order, letting attempts settle between them. */
  async advance(ms: number): Promise<void> {
    const end = this.current + ms;
    for (;;) {
      await settle();
      let next: [number, { at: number; fn: () => void }] | null = null;
      for (const entry of this.pending)
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) next = entry;
      if (!next) break;
      this.pending.delete(next[0]);
      this.current = next[1].at;
      next[1].fn();
    }
    this.current = end;
  }
}

export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}
