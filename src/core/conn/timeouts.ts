// Per-state connection timeouts, as ip_vs_proto_tcp.c's tcp_timeouts[] and UDP's single
// timeout, with ipvsadm --set's three knobs (tcp, tcpfin, udp) mapped onto them.

import { ErrorCodes, LvsError } from '../errors.js';
import type { IpvsTimeouts } from '../ops.js';
import { S_ESTABLISHED, S_FIN_WAIT, S_SYN_RECV, S_SYNACK, S_UDP, STATE_COUNT } from './tcp-state.js';
import { MAX_TIMEOUT } from '../model.js';

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

/**
 * Under secure_tcp, SYN_RECV and SYNACK time out after 10 s (2.4's vs_timeout_table_dos gave
 * SYN_RECV 10 s): a real handshake takes milliseconds, a flood's entries should not hold a slot
 * for a minute or two.
 */
export const SECURE_HALF_OPEN_MS = 10_000;

export class Timeouts {
  private readonly ms = new Float64Array(STATE_COUNT);

  constructor() {
    DEFAULT_SECONDS.forEach((seconds, state) => (this.ms[state] = seconds * 1000));
  }

  /** Milliseconds a connection may idle in `state` (a state code); `secure` under secure_tcp. */
  stateMs(state: number, secure = false): number {
    const ms = this.ms[state]!;
    return secure && (state === S_SYN_RECV || state === S_SYNACK) ? Math.min(ms, SECURE_HALF_OPEN_MS) : ms;
  }

  /** ipvsadm --timeout: seconds for ESTABLISHED, FIN_WAIT and UDP. */
  ipvs(): IpvsTimeouts {
    return {
      tcp: this.ms[S_ESTABLISHED]! / 1000,
      tcpfin: this.ms[S_FIN_WAIT]! / 1000,
      udp: this.ms[S_UDP]! / 1000,
    };
  }

  /** ipvsadm --set tcp tcpfin udp, in seconds; 0 leaves a value unchanged. */
  setIpvs(tcp: number, tcpfin: number, udp: number): void {
    for (const seconds of [tcp, tcpfin, udp]) {
      // ipvsadm's bound; the table keeps milliseconds in unsigned 32 bits, which holds it.
      if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_TIMEOUT) {
        throw new LvsError(ErrorCodes.INVALID, `invalid timeout value ${seconds}`);
      }
    }
    if (tcp) this.ms[S_ESTABLISHED] = tcp * 1000;
    if (tcpfin) this.ms[S_FIN_WAIT] = tcpfin * 1000;
    if (udp) this.ms[S_UDP] = udp * 1000;
  }
}
