// A forwarding method as IPVS's ip_vs_bind_xmit binds one to each connection: how a client's
// packet reaches the real server, and how (if at all) the real server's reply comes back.

import type { Direction } from '../conn/tcp-state.js';
import type { Addr } from '../inet.js';
import type { ForwardMethod } from '../model.js';
import type { ParsedPacket } from '../packet/parse.js';

export interface ForwardingMethod {
  readonly name: ForwardMethod;
  /**
   * The TCP state table a client's packets move through: 'in' when replies cross the director
   * too (so they drive the 'out' table), 'in-only' when they bypass it (IPVS's tcp_states_dos
   * INPUT_ONLY rows, for direct routing and tunnels).
   */
  readonly clientDirection: Extract<Direction, 'in' | 'in-only'>;
  /** Rewrites a client's packet in place towards the real server at addr:port; false when it cannot. */
  toRealServer(buf: Uint8Array, p: ParsedPacket, addr: Addr, port: number, vnetFlags: number): boolean;
  /**
   * Rewrites a real server's reply in place so that it comes from the virtual address vaddr:vport;
   * null for a method whose replies never reach the director.
   */
  readonly toClient:
    ((buf: Uint8Array, p: ParsedPacket, vaddr: Addr, vport: number, vnetFlags: number) => boolean) | null;
}
