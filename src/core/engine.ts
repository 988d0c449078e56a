// The control plane talks to the director through an Engine: in the same thread (tests, a
// director without a data plane) or in the data-plane worker that owns the connection table.

import type { ControlOp, Snapshot } from '../core/ops.js';

export interface Engine {
  /** Applies one operation; rejects with an LvsError (its code intact) and changes nothing when refused. */
  execute(op: ControlOp): Promise<void>;
  snapshot(options: { connections: boolean }): Promise<Snapshot>;
  close(): Promise<void>;
}
