// PING_CHECK (keepalived check_ping.c): one ICMP echo request; an echo reply in time is up, an
// ICMP error about our request or silence is down. Node has no raw sockets, so the socket is made
// with koffi: SOCK_RAW (lvsd runs as root; SOCK_DGRAM ICMP sockets need net.ipv4.ping_group_range,
// which is "1 0" on a stock system). A raw socket cannot be handed to node's event loop, so it is
// non-blocking and drained by a short timer only while requests are outstanding: no thread and
// no wait ever blocks the loop. One socket serves every check with the same source settings;
// replies are told apart by identifier, sequence and a random token in the payload.

import { randomBytes } from 'node:crypto';
import { finish as checksumFinish, onesSum } from '../core/packet/checksum.js';
import type { CheckerConfig, CheckTarget } from './config.js';
import { registerChecker, result, timedChecker, type Checker, type CheckResult } from './checker.js';
import { SOCK_RAW, closeFd, openSocket, rawReceive, rawSend } from './sockets.js';

type PingConfig = Extract<CheckerConfig, { kind: 'PING_CHECK' }>;

const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
const DRAIN_INTERVAL_MS = 5;
const TOKEN_BYTES = 8;

interface Pending {
  token: Buffer;
  settle: (r: CheckResult) => void;
  startedAt: number;
}

/** A raw ICMP socket shared by the checks with the same family and source settings. */
class IcmpSocket {
  readonly id = randomBytes(2).readUInt16BE(0);
  private nextSeq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly buf = Buffer.alloc(2048);
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly fd: number,
    private readonly v6: boolean,
    private readonly release: () => void,
  ) {}

  /** Sends a request; the reply (or an error about it) settles through `settle`. Returns a cancel. */
  send(target: CheckTarget, settle: Pending['settle'], startedAt: number): () => void {
    let seq = this.nextSeq;
    for (let i = 0; this.pending.has(seq) && i < 0x10000; i++) seq = (seq + 1) & 0xffff;
    this.nextSeq = (seq + 1) & 0xffff;
    const token = randomBytes(TOKEN_BYTES);
    const packet = Buffer.alloc(8 + TOKEN_BYTES);
    packet[0] = this.v6 ? 128 : 8;
    packet.writeUInt16BE(this.id, 4);
    packet.writeUInt16BE(seq, 6);
    token.copy(packet, 8);
    // The kernel fills the ICMPv6 checksum itself (RFC 3542 section 3.1); ICMPv4's is ours.
    if (!this.v6) packet.writeUInt16BE(checksumFinish(onesSum(packet, 0, packet.length)), 2);
    const error = rawSend(this.fd, packet, target.addr);
    if (error) {
      settle(result(startedAt, false, 'L4CON', error.message));
      if (this.pending.size === 0) this.close();
      return () => {};
    }
    this.pending.set(seq, { token, settle, startedAt });
    this.timer ??= setInterval(() => this.drain(), DRAIN_INTERVAL_MS);
    return () => this.forget(seq);
  }

  private forget(seq: number): void {
    this.pending.delete(seq);
    if (this.pending.size === 0) this.close();
  }

  /** Idle sockets are closed: a raw socket sees every ICMP packet of the host. */
  private close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    closeFd(this.fd);
    this.release();
  }

  private drain(): void {
    for (;;) {
      let n: number | null;
      try {
        n = rawReceive(this.fd, this.buf);
      } catch {
        return;
      }
      if (n === null) return;
      this.judge(this.buf.subarray(0, n));
    }
  }

  /** An echo reply to one of ours, or an ICMP error quoting one of our requests. */
  private judge(packet: Buffer): void {
    const icmpAt = this.v6 ? 0 : (packet[0]! & 0x0f) * 4;
    if (packet.length < icmpAt + 8) return;
    const type = packet[icmpAt]!;
    const reply = this.v6 ? 129 : 0;
    if (type === reply) return this.match(packet, icmpAt, true, '');
    const error = this.v6 ? type >= 1 && type <= 4 : type === 3 || type === 11 || type === 12;
    if (!error) return;
    // The error quotes our request: its IP header, then its first 8 ICMP bytes (and more).
    const quoted = icmpAt + 8;
    const innerAt = this.v6 ? quoted + 40 : quoted + (packet[quoted]! & 0x0f) * 4;
    if (packet.length < innerAt + 8) return;
    this.match(packet, innerAt, false, icmpErrorReason(this.v6, type, packet[icmpAt + 1]!));
  }

  private match(packet: Buffer, at: number, ok: boolean, reason: string): void {
    if (packet.readUInt16BE(at + 4) !== this.id) return;
    const seq = packet.readUInt16BE(at + 6);
    const pending = this.pending.get(seq);
    if (!pending) return;
    // A quoted request may be cut short; a reply must carry our token.
    if (ok && !packet.subarray(at + 8, at + 8 + TOKEN_BYTES).equals(pending.token)) return;
    pending.settle(
      ok
        ? result(pending.startedAt, true, 'L4OK', 'echo reply')
        : result(pending.startedAt, false, 'L4CON', reason),
    );
  }
}

function icmpErrorReason(v6: boolean, type: number, code: number): string {
  if (v6) return type === 1 ? `destination unreachable (code ${code})` : `ICMPv6 error type ${type}`;
  if (type === 3) return code === 1 ? 'host unreachable' : `destination unreachable (code ${code})`;
  return type === 11 ? 'time exceeded' : 'parameter problem';
}

const sockets = new Map<string, IcmpSocket>();

function socketFor(target: CheckTarget): IcmpSocket {
  const key = JSON.stringify([target.addr.af, target.bindAddr, target.bindInterface, target.fwmark]);
  let socket = sockets.get(key);
  if (!socket) {
    const v6 = target.addr.af === 6;
    const fd = openSocket({ ...target, bindPort: 0 }, SOCK_RAW, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, true);
    socket = new IcmpSocket(fd, v6, () => sockets.delete(key));
    sockets.set(key, socket);
  }
  return socket;
}

export function pingChecker(config: PingConfig): Checker {
  return timedChecker(config, 'L4TOUT', 'no echo reply', (finish, t0) =>
    socketFor(config.target).send(config.target, finish, t0),
  );
}

registerChecker({ kinds: ['PING_CHECK'], create: pingChecker });
