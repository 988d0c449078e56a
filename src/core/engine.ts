// The control plane talks to the director through an Engine: in the same thread (tests, a
// director without a data plane) or in the data-plane worker that owns the connection table.

import type { ControlOp, EngineEvent, Snapshot } from './ops.js';

export interface Engine {
  /** Applies one operation; rejects with an LvsError (its code intact) and changes nothing when refused. */
  execute(op: ControlOp): Promise<void>;
  snapshot(options: { connections: boolean }): Promise<Snapshot>;
  /** Calls `listener` with each event from now on; returns the unsubscribe function. */
  onEvent(listener: (event: EngineEvent) => void): () => void;
  close(): Promise<void>;
}
