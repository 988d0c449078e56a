/** Monotonic milliseconds. The core never reads a clock itself; adapters inject one. */
export interface Clock {
  now(): number;
}

/** A clock that moves only when told to: for tests and simulations. */
export class ManualClock implements Clock {
  private current: number;

  constructor(start = 0) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  advance(ms: number): void {
    this.current += ms;
  }
}
