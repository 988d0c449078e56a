// Per-state connection timeouts, as ip_vs_proto_tcp.c's tcp_timeouts[] and UDP's single
// timeout, with ipvsadm --set's three knobs (tcp, tcpfin, udp) mapped onto them.

import { ErrorCodes, LvsError } from '../errors.js';
import type { IpvsTimeouts } from '../ops.js';
import { S_ESTABLISHED, S_FIN_WAIT, S_UDP, STATE_COUNT } from './tcp-state.js';

/** Seconds, in state-code order: the TCP states, then UDP. */
// prettier-ignore
const DEFAULT_SECONDS = [
  2, // NONE
  900, // ESTABLISHED
  120, // SYN_SENT
  60, // SYN_RECV
  120, // FIN_WAIT
  120, // TIME_WAIT
  10, // CLOSE
  60, // CLOSE_WAIT
  30, // LAST_ACK
  120, // LISTEN
  120, // SYNACK
  300, // UDP
];

export class Timeouts {
  private readonly ms = new Float64Array(STATE_COUNT);

  constructor() {
    DEFAULT_SECONDS.forEach((seconds, state) => (this.ms[state] = seconds * 1000));
  }

  /** Milliseconds a connection may idle in `state` (a state code). */
  stateMs(state: number): number {
    return this.ms[state]!;
  }

  /** ipvsadm --timeout: seconds for ESTABLISHED, FIN_WAIT and UDP. */
  get(): IpvsTimeouts {
    return {
      tcp: this.ms[S_ESTABLISHED]! / 1000,
      tcpfin: this.ms[S_FIN_WAIT]! / 1000,
      udp: this.ms[S_UDP]! / 1000,
    };
  }

  /** ipvsadm --set tcp tcpfin udp, in seconds; 0 leaves a value unchanged. */
  set(timeouts: IpvsTimeouts): void {
    for (const value of [timeouts.tcp, timeouts.tcpfin, timeouts.udp]) {
      if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
        throw new LvsError(ErrorCodes.INVALID, `invalid timeout value ${value}`);
      }
    }
    if (timeouts.tcp) this.ms[S_ESTABLISHED] = timeouts.tcp * 1000;
    if (timeouts.tcpfin) this.ms[S_FIN_WAIT] = timeouts.tcpfin * 1000;
    if (timeouts.udp) this.ms[S_UDP] = timeouts.udp * 1000;
  }
}
