// The doctor's probes of the real servers, sent from the director: a TCP connect, or a UDP
// datagram from an unconnected socket (which hears an answer from any address). Node cannot see
// what the kernel answers for it, so raw sockets (health/sockets.ts, opened only while probes run,
// drained by a short timer like PING_CHECK's) watch the host's incoming TCP and ICMP: a SYN-ACK to
// a probe's port from another address (a real server that NATs its replies, or answers from a
// second address) and the ICMP port unreachable that refuses a UDP probe. IPv6 TCP replies are not
// watched: a raw IPv6 socket does not give their source, so those probes can only time out.

import dgram from 'node:dgram';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ProbeFact, ProbeTarget } from '../core/doctor.js';
import {
  addrEquals,
  formatAddr,
  formatAddrPort,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  parseAddr,
} from '../core/inet.js';
import type { Addr } from '../core/inet.js';
import { closeFd, openSocket, rawReceive, SOCK_RAW } from '../health/sockets.js';

const DRAIN_INTERVAL_MS = 5;
const TCP_SYN = 0x02;
const TCP_ACK = 0x10;

/** A packet the raw sockets saw that may answer a probe. */
interface Seen {
  /** A SYN-ACK: who sent it, to which local port. */
  synAck?: { from: Addr; sport: number; dport: number };
  /** An ICMP destination unreachable quoting a UDP datagram we sent. */
  unreachable?: { to: Addr; sport: number; dport: number; code: number; v6: boolean };
}

function ipv4(packet: Buffer, at: number): Addr {
  return { af: 4, a: packet.readUInt32BE(at), b: 0, c: 0, d: 0 };
}

function ipv6(packet: Buffer, at: number): Addr {
  return {
    af: 6,
    a: packet.readUInt32BE(at),
    b: packet.readUInt32BE(at + 4),
    c: packet.readUInt32BE(at + 8),
    d: packet.readUInt32BE(at + 12),
  };
}

/** An IPv4 TCP segment (with its IP header, as a raw socket gives it): a SYN-ACK, or nothing. */
export function parseTcp4(packet: Buffer): Seen {
  if (packet.length < 20 || packet[0]! >> 4 !== 4 || packet[9] !== IPPROTO_TCP) return {};
  const at = (packet[0]! & 0x0f) * 4;
  if (packet.length < at + 14) return {};
  const flags = packet[at + 13]!;
  if ((flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK)) return {};
  return {
    synAck: { from: ipv4(packet, 12), sport: packet.readUInt16BE(at), dport: packet.readUInt16BE(at + 2) },
  };
}

/** An ICMP (IPv4, with its IP header) or ICMPv6 (without) destination unreachable quoting a UDP datagram. */
export function parseIcmp(packet: Buffer, v6: boolean): Seen {
  const at = v6 ? 0 : (packet[0]! & 0x0f) * 4;
  if (packet.length < at + 8 || packet[at] !== (v6 ? 1 : 3)) return {};
  // The quoted datagram: its IP header (IPv6's is 40 bytes, next header at 6; IPv4's protocol at 9).
  const quoted = at + 8;
  if (packet.length < quoted + (v6 ? 40 : 20) || packet[quoted + (v6 ? 6 : 9)] !== 17) return {};
  const udp = quoted + (v6 ? 40 : (packet[quoted]! & 0x0f) * 4);
  if (packet.length < udp + 4) return {};
  const to = v6 ? ipv6(packet, quoted + 24) : ipv4(packet, quoted + 16);
  const code = packet[at + 1]!;
  return {
    unreachable: { to, sport: packet.readUInt16BE(udp), dport: packet.readUInt16BE(udp + 2), code, v6 },
  };
}

/** Raw sockets that hand what they see to the probes in flight, while any are. */
class Watcher {
  private readonly sockets: Array<{ fd: number; parse: (packet: Buffer) => Seen }> = [];
  private readonly listeners = new Set<(seen: Seen) => void>();
  private readonly buf = Buffer.alloc(2048);
  private timer: NodeJS.Timeout | null = null;

  constructor(targets: readonly ProbeTarget[]) {
    const want = (protocol: ProbeTarget['protocol'], af: 4 | 6) =>
      targets.some((t) => t.protocol === protocol && t.addr.af === af);
    const open = (af: 4 | 6, protocol: number, parse: (packet: Buffer) => Seen) => {
      const addr: Addr = { af, a: 0, b: 0, c: 0, d: 0 };
      try {
        const fd = openSocket(
          { addr, port: 0, bindAddr: null, bindPort: 0, bindInterface: null, fwmark: 0 },
          SOCK_RAW,
          protocol,
          false,
        );
        this.sockets.push({ fd, parse });
      } catch {
        // Without CAP_NET_RAW those answers go unseen: the probes still run (docs/doctor.md).
      }
    };
    if (want('TCP', 4)) open(4, IPPROTO_TCP, parseTcp4);
    if (want('UDP', 4)) open(4, IPPROTO_ICMP, (p) => parseIcmp(p, false));
    if (want('UDP', 6)) open(6, IPPROTO_ICMPV6, (p) => parseIcmp(p, true));
    if (this.sockets.length > 0) this.timer = setInterval(() => this.drain(), DRAIN_INTERVAL_MS);
  }

  listen(listener: (seen: Seen) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Everything waiting, to every probe listening; probes settle on what concerns them. */
  drain(): void {
    for (const { fd, parse } of this.sockets) {
      for (;;) {
        let n: number | null;
        try {
          n = rawReceive(fd, this.buf);
        } catch {
          break;
        }
        if (n === null) break;
        const seen = parse(this.buf.subarray(0, n));
        if (seen.synAck || seen.unreachable) for (const listener of [...this.listeners]) listener(seen);
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    for (const { fd } of this.sockets) closeFd(fd);
    this.sockets.length = 0;
  }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}

/**
 * `targets`: every target probed at once, this one among them. The kernel may give two probes the
 * same local port (their destinations differ), so a SYN-ACK from another probed target is that
 * probe's answer, not this one's from another address.
 */
function probeTcp(
  target: ProbeTarget,
  targets: readonly ProbeTarget[],
  timeoutMs: number,
  watcher: Watcher,
): Promise<ProbeFact> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect({ host: formatAddr(target.addr), port: target.port });
    const done = (fact: ProbeFact) => {
      socket.destroy();
      clearTimeout(timer);
      unlisten();
      resolve(fact);
    };
    const unlisten = watcher.listen(({ synAck }) => {
      if (!synAck || synAck.dport !== socket.localPort) return;
      const probed = (t: ProbeTarget): boolean => addrEquals(synAck.from, t.addr) && synAck.sport === t.port;
      if (targets.some((t) => t.protocol === 'TCP' && probed(t))) return;
      done({
        result: 'other-address',
        from: formatAddrPort(synAck.from, synAck.sport),
        ms: elapsed(started),
      });
    });
    const timer = setTimeout(() => {
      // A SYN-ACK from elsewhere may be waiting in the raw socket still.
      watcher.drain();
      done({ result: 'timeout', ms: timeoutMs });
    }, timeoutMs);
    socket.once('connect', () => done({ result: 'open', ms: elapsed(started) }));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? { result: 'refused' } : { result: 'error', message: err.message }),
    );
  });
}

/** A DNS query for the root's NS records, so a DNS server answers; other ports get a line of text. */
export function udpPayload(port: number): Buffer {
  if (port !== 53) return Buffer.from('lvsd doctor probe\n');
  const query = Buffer.alloc(17);
  query.writeUInt16BE(0x6c76, 0); // id
  query.writeUInt16BE(0x0100, 2); // recursion desired
  query.writeUInt16BE(1, 4); // one question: ". IN NS"
  query.writeUInt16BE(2, 13);
  query.writeUInt16BE(1, 15);
  return query;
}

function probeUdp(target: ProbeTarget, timeoutMs: number, watcher: Watcher): Promise<ProbeFact> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = dgram.createSocket(target.addr.af === 4 ? 'udp4' : 'udp6');
    let localPort = -1;
    let settled = false;
    const done = (fact: ProbeFact) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      unlisten();
      socket.close();
      resolve(fact);
    };
    const unlisten = watcher.listen(({ unreachable }) => {
      if (!unreachable || unreachable.sport !== localPort || unreachable.dport !== target.port) return;
      if (!addrEquals(unreachable.to, target.addr)) return;
      const portUnreachable = unreachable.code === (unreachable.v6 ? 4 : 3);
      done(
        portUnreachable
          ? { result: 'refused' }
          : { result: 'error', message: `ICMP destination unreachable (code ${unreachable.code})` },
      );
    });
    const timer = setTimeout(() => {
      watcher.drain();
      done({ result: 'timeout', ms: timeoutMs });
    }, timeoutMs);
    socket.on('message', (_msg, rinfo) => {
      const from = parseAddr(rinfo.address);
      if (from && addrEquals(from, target.addr) && rinfo.port === target.port) {
        return done({ result: 'open', ms: elapsed(started) });
      }
      done({
        result: 'other-address',
        from: from ? formatAddrPort(from, rinfo.port) : `${rinfo.address}:${rinfo.port}`,
        ms: elapsed(started),
      });
    });
    socket.on('error', (err) => done({ result: 'error', message: err.message }));
    socket.bind(0, () => {
      localPort = socket.address().port;
      socket.send(udpPayload(target.port), target.port, formatAddr(target.addr), (err) => {
        if (err) done({ result: 'error', message: err.message });
      });
    });
  });
}

/** Every probe at once; each ends within timeoutMs. */
export async function probeAll(targets: readonly ProbeTarget[], timeoutMs: number): Promise<ProbeFact[]> {
  const watcher = new Watcher(targets);
  try {
    return await Promise.all(
      targets.map((t) =>
        t.protocol === 'TCP' ? probeTcp(t, targets, timeoutMs, watcher) : probeUdp(t, timeoutMs, watcher),
      ),
    );
  } finally {
    watcher.close();
  }
}
