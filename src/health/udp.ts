// UDP_CHECK (keepalived check_udp.c): send the payload (random when none is configured) on a
// connected socket. Without require_reply only an ICMP error (port or host unreachable) fails the
// check; with it, a reply must come in time, be min..max_reply_length long and start with the
// required bytes.

import { randomBytes } from 'node:crypto';
import { formatAddr } from '../core/inet.js';
import type { CheckerConfig, CheckTarget } from './config.js';
import {
  registerChecker,
  result,
  settleOnce,
  socketReason,
  type CheckAttempt,
  type Checker,
  type CheckResult,
} from './checker.js';
import { udpSocket } from './sockets.js';

type UdpConfig = Extract<CheckerConfig, { kind: 'UDP_CHECK' }>;

/** What a datagram exchange makes of each reply: a final result, or null to keep waiting (not ours). */
export type ReplyJudge = (reply: Buffer, startedAt: number) => CheckResult | null;

/**
 * Sends one datagram to the target on a connected socket and settles on the first reply the
 * judge accepts, an ICMP error (the kernel reports it on the connected socket), or the deadline.
 */
export function udpExchange(
  target: CheckTarget,
  payload: Uint8Array,
  attempt: CheckAttempt,
  judge: ReplyJudge,
  onTimeout: (startedAt: number) => CheckResult,
): Promise<CheckResult> {
  return settleOnce(attempt, onTimeout, (finish, t0) => {
    let closed = false;
    let socket: Awaited<ReturnType<typeof udpSocket>> | null = null;
    const fail = (error: unknown) => finish(result(t0, false, 'L4CON', socketReason(error)));
    udpSocket(target).then((s) => {
      if (closed) return s.close();
      socket = s;
      s.on('error', fail);
      s.on('message', (reply) => {
        const verdict = judge(reply, t0);
        if (verdict) finish(verdict);
      });
      s.connect(target.port, formatAddr(target.addr), () => {
        if (!closed) s.send(payload, (error) => error && fail(error));
      });
    }, fail);
    return () => {
      closed = true;
      socket?.close();
    };
  });
}

function startsWith(reply: Buffer, prefix: Uint8Array): boolean {
  return reply.length >= prefix.length && reply.subarray(0, prefix.length).equals(prefix);
}

export function udpChecker(config: UdpConfig): Checker {
  const required = config.requireReply;
  const judge: ReplyJudge = (reply, t0) => {
    if (required === null) return result(t0, true, 'L4OK', 'reply received');
    if (reply.length < config.minReplyLength || reply.length > config.maxReplyLength)
      return result(
        t0,
        false,
        'L7RSP',
        `reply of ${reply.length} bytes, outside ${config.minReplyLength}..${config.maxReplyLength}`,
      );
    if (!startsWith(reply, required)) return result(t0, false, 'L7RSP', 'reply does not match require_reply');
    return result(t0, true, 'L7OK', 'expected reply');
  };
  return {
    kind: config.kind,
    timeoutMs: config.connectTimeoutMs,
    check: (attempt) =>
      udpExchange(config.target, config.payload ?? randomBytes(16), attempt, judge, (t0) =>
        required === null
          ? result(t0, true, 'L4OK', 'no ICMP error')
          : result(t0, false, 'L7TOUT', `no reply within ${config.connectTimeoutMs} ms`),
      ),
  };
}

registerChecker({ kinds: ['UDP_CHECK'], create: udpChecker });
