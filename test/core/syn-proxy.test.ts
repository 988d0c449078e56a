// The SYN proxy through Director.process: a SYN answered with a cookie and nothing kept, the
// client's ACK opening the director's own handshake with the real server, the client's first data
// held until the real server answers, and the two sequence spaces joined by an offset.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import type { DefenseSettings } from '../../src/core/conn/defense.js';
import { Director } from '../../src/core/director.js';
import { formatAddr, IPPROTO_TCP, parseAddr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import { SynCookies } from '../../src/core/packet/syn-cookie.js';
import { CONN_F_OUT_SEQ } from '../../src/core/sync/conn.js';
import { decode, packSyncMessages } from '../../src/core/sync/message.js';
import { syncRecordOf } from '../../src/core/sync/source.js';
import {
  buildPacket,
  ipv4HeaderValid,
  l4ChecksumValid,
  withVnet,
  type PacketSpec,
} from '../helpers/packets.js';

const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;
const VIP = '198.18.0.1';
const RS = '198.18.1.11';
const CLIENT = '198.18.2.2';
const KEY: ServiceKey = { af: 4, protocol: IPPROTO_TCP, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
/** MSS 1460, NOP NOP SACK-permitted: what Linux's SYN has besides timestamps and window scaling. */
const SYN_OPTIONS = Uint8Array.from([2, 4, 0x05, 0xb4, 1, 1, 4, 2]);
const VNET = 10;

function director(defense: Partial<DefenseSettings> = { synProxy: 3 }, clock = new ManualClock(1000)) {
  const d = new Director({ clock, random: () => 0.37, defense });
  d.execute({
    op: 'add-service',
    key: KEY,
    settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
  });
  d.execute({
    op: 'add-dest',
    key: KEY,
    addr: parseAddr(RS)!,
    port: 8080,
    settings: { method: 'masq', weight: 1, uThreshold: 0, lThreshold: 0 },
  });
  return { d, clock };
}

interface Segment {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  payload: string;
  options: number[];
}

/** What the director sent: the frame it returned, then its pending ones, parsed. */
function send(d: Director, spec: PacketSpec): Segment[] {
  const frame = withVnet(buildPacket(spec));
  const buf = new Uint8Array(frame.length + 1500);
  buf.set(frame);
  const n = d.process(buf, 0, frame.length);
  if (n <= 0) return [];
  return [buf.slice(0, n), ...d.pending.splice(0)].map(parse);
}

function parse(frame: Uint8Array): Segment {
  const ip = frame.subarray(VNET);
  assert.ok(ipv4HeaderValid(ip), 'the IPv4 header checksum is right');
  assert.ok(l4ChecksumValid(ip), 'the TCP checksum is right');
  const view = new DataView(ip.buffer, ip.byteOffset, ip.byteLength);
  const l4 = (ip[0]! & 0x0f) * 4;
  const dataOffset = (ip[l4 + 12]! >> 4) * 4;
  const word = (at: number) => view.getUint32(at);
  const address = (at: number) => formatAddr({ af: 4, a: word(at), b: 0, c: 0, d: 0 });
  return {
    src: address(12),
    dst: address(16),
    sport: view.getUint16(l4),
    dport: view.getUint16(l4 + 2),
    seq: word(l4 + 4),
    ack: word(l4 + 8),
    flags: ip[l4 + 13]!,
    window: view.getUint16(l4 + 14),
    payload: Buffer.from(ip.subarray(l4 + dataOffset, view.getUint16(2))).toString(),
    options: [...ip.subarray(l4 + 20, l4 + dataOffset)],
  };
}

function tcp(spec: Partial<PacketSpec> & { src: string; dst: string }): PacketSpec {
  return { protocol: 'tcp', sport: 40000, dport: 80, ...spec };
}

/** The client's side of a handshake with the director: returns the cookie it was answered with. */
function handshake(d: Director, sport = 40000, isn = 1000): number {
  const [synAck] = send(
    d,
    tcp({ src: CLIENT, dst: VIP, sport, tcpFlags: SYN, seq: isn, tcpOptions: SYN_OPTIONS }),
  );
  assert.ok(synAck);
  return synAck.seq;
}

/** A client's connection the proxy has joined to the real server (its ISN 1000, the real server's 70000): returns the cookie. */
function joined(d: Director): number {
  const cookie = handshake(d);
  send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 }));
  send(
    d,
    tcp({ src: RS, sport: 8080, dst: CLIENT, dport: 40000, tcpFlags: SYN | ACK, seq: 70000, ack: 1001 }),
  );
  return cookie;
}

test('a SYN is answered by the director with a cookie, and nothing is kept', () => {
  const { d } = director();
  const [synAck, ...rest] = send(
    d,
    tcp({ src: CLIENT, dst: VIP, tcpFlags: SYN, seq: 1000, tcpOptions: SYN_OPTIONS }),
  );
  assert.deepEqual(rest, []);
  assert.ok(synAck);
  assert.equal(d.replyToSender, true, 'back to the hop the SYN came from');
  assert.deepEqual(
    {
      src: synAck.src,
      dst: synAck.dst,
      sport: synAck.sport,
      dport: synAck.dport,
      flags: synAck.flags,
      ack: synAck.ack,
    },
    { src: VIP, dst: CLIENT, sport: 80, dport: 40000, flags: SYN | ACK, ack: 1001 },
  );
  // MSS 1460 and SACK permitted, as the client offered; no window scaling, no timestamps.
  assert.deepEqual(synAck.options, [2, 4, 0x05, 0xb4, 1, 1, 4, 2]);
  assert.equal(d.conns.size, 0);
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.cookiesSent, 1);
});

test("the client's ACK opens the director's handshake with the real server; its data waits, then the two halves join", () => {
  const { d } = director();
  const cookie = handshake(d);
  const [syn] = send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 }));
  assert.ok(syn);
  assert.equal(d.replyToSender, false);
  assert.deepEqual(
    { src: syn.src, dst: syn.dst, sport: syn.sport, dport: syn.dport, seq: syn.seq, flags: syn.flags },
    { src: CLIENT, dst: RS, sport: 40000, dport: 8080, seq: 1000, flags: SYN },
  );
  assert.deepEqual(syn.options, [2, 4, 0x05, 0xb4, 1, 1, 4, 2]);
  assert.equal(d.conns.size, 1);

  // The request, sent at once after the ACK, waits for the real server.
  const request = new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n');
  const data = tcp({
    src: CLIENT,
    dst: VIP,
    tcpFlags: ACK | PSH,
    seq: 1001,
    ack: cookie + 1,
    payload: request,
  });
  assert.deepEqual(send(d, data), []);

  const [ackToRs, held, ...more] = send(
    d,
    tcp({ src: RS, sport: 8080, dst: CLIENT, dport: 40000, tcpFlags: SYN | ACK, seq: 70000, ack: 1001 }),
  );
  assert.deepEqual(more, []);
  assert.ok(ackToRs && held);
  assert.deepEqual(
    {
      src: ackToRs.src,
      dst: ackToRs.dst,
      seq: ackToRs.seq,
      ack: ackToRs.ack,
      flags: ackToRs.flags,
      payload: ackToRs.payload,
    },
    { src: CLIENT, dst: RS, seq: 1001, ack: 70001, flags: ACK, payload: '' },
  );
  assert.deepEqual(
    { dst: held.dst, dport: held.dport, seq: held.seq, ack: held.ack, payload: held.payload },
    { dst: RS, dport: 8080, seq: 1001, ack: 70001, payload: 'GET / HTTP/1.0\r\n\r\n' },
  );

  // The real server's answer reaches the client in the cookie's sequence space, from the VIP.
  const reply = new TextEncoder().encode('HTTP/1.0 200 OK\r\n\r\n');
  const [toClient] = send(
    d,
    tcp({
      src: RS,
      sport: 8080,
      dst: CLIENT,
      dport: 40000,
      tcpFlags: ACK | PSH,
      seq: 70001,
      ack: 1019,
      payload: reply,
    }),
  );
  assert.ok(toClient);
  assert.deepEqual(
    {
      src: toClient.src,
      sport: toClient.sport,
      seq: toClient.seq,
      ack: toClient.ack,
      payload: toClient.payload,
    },
    { src: VIP, sport: 80, seq: (cookie + 1) >>> 0, ack: 1019, payload: 'HTTP/1.0 200 OK\r\n\r\n' },
  );
  // And the client's acknowledgment, SACK blocks too, in the real server's.
  const sack = Uint8Array.from([1, 1, 5, 10, ...be32(cookie + 30), ...be32(cookie + 40)]);
  const [toRs] = send(
    d,
    tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1019, ack: cookie + 20, tcpOptions: sack }),
  );
  assert.ok(toRs);
  assert.equal(toRs.ack, 70020);
  assert.deepEqual(toRs.options, [1, 1, 5, 10, ...be32(70030), ...be32(70040)]);
  assert.equal(d.conns.state(0), 'ESTABLISHED');
  const { defense } = d.snapshot({ connections: false }).connTable!;
  assert.equal(defense.cookiesAccepted, 1);
});

function be32(value: number): number[] {
  const v = value >>> 0;
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

test('an ACK with a wrong or stale cookie opens nothing', () => {
  const { d, clock } = director();
  const cookie = handshake(d);
  assert.deepEqual(send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 2 })), []);
  assert.deepEqual(
    send(d, tcp({ src: CLIENT, dst: VIP, sport: 40001, tcpFlags: ACK, seq: 1001, ack: cookie + 1 })),
    [],
  );
  assert.deepEqual(send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1002, ack: cookie + 1 })), []);
  clock.advance(130_000);
  assert.deepEqual(send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 })), []);
  assert.equal(d.conns.size, 0);
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.cookiesRejected, 4);
});

test("a real server's reset reaches the client at the sequence number it expects, and ends the connection", () => {
  const { d } = director();
  const cookie = handshake(d);
  send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 }));
  const [reset] = send(
    d,
    tcp({ src: RS, sport: 8080, dst: CLIENT, dport: 40000, tcpFlags: RST | ACK, seq: 0, ack: 1001 }),
  );
  assert.ok(reset);
  assert.deepEqual(
    { src: reset.src, dst: reset.dst, sport: reset.sport, seq: reset.seq, flags: reset.flags },
    { src: VIP, dst: CLIENT, sport: 80, seq: (cookie + 1) >>> 0, flags: RST },
  );
  assert.equal(d.conns.size, 0);
});

test('a SYN lost on the way to the real server is sent again when the client retransmits', () => {
  const { d, clock } = director();
  const cookie = handshake(d);
  send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 }));
  const data = tcp({
    src: CLIENT,
    dst: VIP,
    tcpFlags: ACK | PSH,
    seq: 1001,
    ack: cookie + 1,
    payload: Uint8Array.of(1),
  });
  assert.deepEqual(send(d, data), [], 'within a second: held');
  clock.advance(1000);
  const [syn] = send(d, data);
  assert.ok(syn);
  assert.deepEqual({ dst: syn.dst, seq: syn.seq, flags: syn.flags }, { dst: RS, seq: 1000, flags: SYN });
});

test("mode 1 switches the proxy on as soon as a second's unanswered handshakes reach the threshold, and off after a quiet second", () => {
  const { d, clock } = director({ synProxy: 1, synProxyThreshold: 100 });
  const synFrom = (i: number) =>
    tcp({ src: `198.18.${128 + (i >> 8)}.${i & 0xff}`, sport: 1024 + i, dst: VIP, tcpFlags: SYN, seq: i });
  // Below the threshold: SYNs go to the real server as ever.
  for (let i = 0; i < 99; i++) assert.equal(send(d, synFrom(i))[0]?.dst, RS);
  clock.advance(1000);
  d.tick();
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.synProxy, 1);
  for (let i = 0; i < 99; i++) send(d, synFrom(1000 + i));
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.synProxy, 1);
  // The threshold's handshake switches it on at once, not at the next check.
  send(d, synFrom(1099));
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.synProxy, 2);
  clock.advance(1000);
  d.tick();
  const { defense } = d.snapshot({ connections: false }).connTable!;
  assert.equal(defense.synProxy, 2);
  assert.equal(defense.synProxyActivations, 1);
  const before = d.conns.size;
  assert.equal(send(d, synFrom(5000))[0]?.dst, '198.18.147.136', 'answered by the director');
  assert.equal(d.conns.size, before);
  // A quiet second: off again.
  clock.advance(1000);
  d.tick();
  assert.equal(d.snapshot({ connections: false }).connTable!.defense.synProxy, 1);
  assert.equal(send(d, synFrom(5001))[0]?.dst, RS);
});

test('mode 0 never answers a SYN itself, nor opens a connection on an ACK', () => {
  const { d } = director({ synProxy: 0 });
  assert.equal(send(d, tcp({ src: CLIENT, dst: VIP, tcpFlags: SYN, seq: 1 }))[0]?.dst, RS);
  const cookies = new SynCookies(1, 2);
  const forged = cookies.make(0, 0, 0, 0, 1, 0, 0, 0, 0, 80, 0, 0, false, 1000);
  assert.deepEqual(
    send(d, tcp({ src: CLIENT, dst: VIP, sport: 40001, tcpFlags: ACK, seq: 1, ack: forged + 1 })),
    [],
  );
});

test('cookies: every one the director made is good for its connection alone, for two periods at least', () => {
  fc.assert(
    fc.property(
      fc.tuple(fc.integer(), fc.integer()),
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: 4, maxLength: 4 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 3 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 1e9 }),
      fc.integer({ min: 0, max: 127_999 }),
      ([k0, k1], [c, v, ports, isn], flip, mssIndex, sack, madeAt, later) => {
        const cookies = new SynCookies(k0, k1);
        const cport = ports! >>> 16;
        const vport = ports! & 0xffff;
        const cookie = cookies.make(c!, 0, 0, 0, cport, v!, 0, 0, 0, vport, isn!, mssIndex, sack, madeAt);
        // Good until the counter has moved twice: 64 s at least, 128 s at most.
        const checkAt = madeAt + (later % 64_000);
        assert.deepEqual(cookies.check(c!, 0, 0, 0, cport, v!, 0, 0, 0, vport, isn!, cookie, checkAt), {
          mss: [536, 1300, 1440, 1460][mssIndex],
          sack,
        });
        assert.equal(
          cookies.check(c!, 0, 0, 0, cport, v!, 0, 0, 0, vport, isn!, cookie, madeAt + 128_000),
          null,
        );
        if (flip !== 0) {
          assert.equal(
            cookies.check(c!, 0, 0, 0, cport, v!, 0, 0, 0, vport, (isn! ^ flip) >>> 0, cookie, madeAt),
            null,
          );
          assert.equal(
            cookies.check(c!, 0, 0, 0, cport, v!, 0, 0, 0, vport, isn!, (cookie ^ flip) >>> 0, madeAt),
            null,
          );
        }
      },
    ),
  );
});

test('while the receive queue overflows, a SYN is answered on its retransmission, a first one at a share growing back to all over a second', () => {
  const { d, clock } = director();
  const syn = (sport: number) => tcp({ src: CLIENT, dst: VIP, sport, tcpFlags: SYN, seq: 1000 + sport });
  d.receiveOverflowed();
  assert.deepEqual(send(d, syn(40000)), [], 'a first SYN is shed');
  clock.advance(1000);
  d.receiveOverflowed();
  assert.equal(send(d, syn(40000))[0]?.flags, SYN | ACK, 'its retransmission is answered');
  const { defense } = d.snapshot({ connections: false }).connTable!;
  assert.deepEqual([defense.synsShed, defense.cookiesSent], [1, 1]);
  assert.equal(d.counters.drops['syn-shed'], 1);
  clock.advance(1000);
  assert.equal(send(d, syn(40001))[0]?.flags, SYN | ACK, 'no overflow for a second: answered at once');
  // In between, a share of first SYNs that grows with the time since the overflow (random() is 0.37 here).
  d.receiveOverflowed();
  clock.advance(300);
  assert.deepEqual(send(d, syn(40002)), [], '0.3 s after: 30% are answered, not this one');
  clock.advance(100);
  assert.equal(send(d, syn(40003))[0]?.flags, SYN | ACK, '0.4 s after: 40%, this one among them');
});

test("a proxied connection's offset goes with its record to the next lvsd, which goes on translating", () => {
  const { d } = director();
  const cookie = joined(d);
  const records = d.exportConnections();
  assert.equal(records.length, 1);
  assert.equal(records[0]!.seqOffset, (cookie - 70000) >>> 0);
  const { d: next } = director();
  assert.equal(next.importConnections(records).imported, 1);
  const [toClient] = send(
    next,
    tcp({ src: RS, sport: 8080, dst: CLIENT, dport: 40000, tcpFlags: ACK, seq: 70001, ack: 1001 }),
  );
  assert.equal(toClient?.seq, (cookie + 1) >>> 0);
});

test("a proxied connection's offset reaches a backup director in the sync message (the kernel's OUT_SEQ), which goes on translating", () => {
  const { d } = director();
  const cookie = joined(d);
  const record = syncRecordOf(d.conns, 0, () => 0)!;
  assert.ok(record.flags & CONN_F_OUT_SEQ);
  const [datagram] = packSyncMessages([record], 1, 1500);
  const decoded = decode(datagram!);
  assert.ok(decoded.ok);
  const [conn] = decoded.conns;
  assert.equal(conn!.seq!.out.delta, (cookie - 70000) >>> 0);
  const { d: backup } = director();
  assert.equal(backup.importSynced([conn!]).imported, 1);
  const [ack] = send(backup, tcp({ src: CLIENT, dst: VIP, tcpFlags: ACK, seq: 1001, ack: cookie + 1 }));
  assert.equal(ack?.ack, 70001);
});
