// TCP_CHECK (keepalived check_tcp.c): the real server is up when a TCP connection to it completes
// within connect_timeout. A refusal is L4CON, no answer at all (a blackholed link) is L4TOUT.

import type { CheckerConfig } from './config.js';
import { registerChecker, result, socketReason, timedChecker, type Checker } from './checker.js';
import { connectTcp } from './sockets.js';

type TcpConfig = Extract<CheckerConfig, { kind: 'TCP_CHECK' }>;

export function tcpChecker(config: TcpConfig): Checker {
  return timedChecker(config, 'L4TOUT', 'no connection', (finish, t0) => {
    const socket = connectTcp(config.target);
    socket.once('connect', () => finish(result(t0, true, 'L4OK', 'connected')));
    socket.once('error', (error) => finish(result(t0, false, 'L4CON', socketReason(error))));
    return () => socket.destroy();
  });
}

registerChecker({ kinds: ['TCP_CHECK'], create: tcpChecker });
