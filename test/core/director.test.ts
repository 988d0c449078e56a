import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { PASS_TO_HOST } from '../../src/core/ops.js';
import { ErrorCodes, LvsError } from '../../src/core/errors.js';
import { formatAddr, IPPROTO_TCP, IPPROTO_UDP, parseAddr, type Addr } from '../../src/core/inet.js';
import {
  type DestRuntimeChange,
  DEFAULT_PERSISTENT_TIMEOUT,
  SVC_F_ONEPACKET,
  SVC_F_PERSISTENT,
  type DestSettings,
  type ServiceKey,
  type ServiceSettings,
} from '../../src/core/model.js';
import { parsePacket, type ParsedPacket } from '../../src/core/packet/parse.js';
import { VNET_HDR_LEN } from '../../src/core/packet/vnet.js';
import {
  buildPacket,
  fragNeeded,
  fragmentedDatagram,
  ipv4HeaderValid,
  l4ChecksumValid,
  tcpSegment,
  withVnet,
  type PacketSpec,
} from '../helpers/packets.js';
import { setCounter } from '../helpers/counters.js';

const SYN = 0x02;
const ACK = 0x10;
const FIN = 0x01;

const ip = (text: string): Addr => parseAddr(text)!;
const VIP = '198.18.0.1';
const CLIENT = '198.18.0.100';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';

function tcpService(addr = VIP, port = 80): ServiceKey {
  return { af: 4, protocol: IPPROTO_TCP, addr: ip(addr), port, fwmark: 0 };
}

function settings(scheduler: string, extra: Partial<ServiceSettings> = {}): ServiceSettings {
  return { scheduler, flags: 0, timeout: 0, netmaskPrefix: 32, pe: null, ...extra };
}

const masq = (weight = 1): DestSettings => ({ method: 'masq', weight, uThreshold: 0, lThreshold: 0 });

function director(clock = new ManualClock(1000)): Director {
  return new Director({ clock, random: () => 0.5, connCapacity: 1024 });
}

function setup(
  d: Director,
  scheduler = 'rr',
  extra: Partial<ServiceSettings> = {},
  key = tcpService(),
): void {
  d.execute({ op: 'add-service', key, settings: settings(scheduler, extra) });
  d.execute({ op: 'add-dest', key, addr: ip(RS1), port: 8080, settings: masq() });
  d.execute({ op: 'add-dest', key, addr: ip(RS2), port: 8080, settings: masq() });
}

/**
 * Sends a packet through the director; returns the packet it put back on the wire, null when it
 * dropped it, 'passed' when it gave it back to the kernel unchanged.
 */
function send(d: Director, spec: PacketSpec): { packet: Uint8Array; parsed: ParsedPacket } | null;
function send(
  d: Director,
  spec: PacketSpec,
  fromWire?: boolean,
): { packet: Uint8Array; parsed: ParsedPacket } | null | 'passed';
function send(
  d: Director,
  spec: PacketSpec,
  fromWire = false,
): { packet: Uint8Array; parsed: ParsedPacket } | null | 'passed' {
  const input = withVnet(buildPacket(spec));
  // Room to spare, as the data plane's read buffer has: the director may answer with a longer packet.
  const buf = new Uint8Array(input.length + 1500);
  buf.set(input);
  const length = d.process(buf, 0, input.length, 0, fromWire);
  if (length === 0) return null;
  if (length === PASS_TO_HOST) {
    assert.deepEqual(buf.subarray(0, input.length), input, 'a passed packet is unchanged');
    return 'passed';
  }
  const packet = buf.slice(VNET_HDR_LEN, length);
  const parsed = parsePacket(packet, 0, packet.length);
  assert.ok(parsed.ok, 'the director emits parseable packets');
  return { packet, parsed };
}

const tcp = tcpSegment;

test('LVS-NAT: only the destination is rewritten on the way in, only the source on the way out', () => {
  const d = director();
  setup(d);
  const fwd = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  assert.equal(fwd.parsed.saddr.a, ip(CLIENT).a, 'the real server sees the client address');
  assert.equal(fwd.parsed.sport, 40000);
  assert.equal(fwd.parsed.daddr.a, ip(RS2).a, 'rr picks the newest real server first');
  assert.equal(fwd.parsed.dport, 8080);
  assert.ok(ipv4HeaderValid(fwd.packet) && l4ChecksumValid(fwd.packet));

  const reply = send(d, tcp(RS2, 8080, CLIENT, 40000, SYN | ACK))!;
  assert.equal(reply.parsed.saddr.a, ip(VIP).a);
  assert.equal(reply.parsed.sport, 80);
  assert.equal(reply.parsed.daddr.a, ip(CLIENT).a);
  assert.ok(ipv4HeaderValid(reply.packet) && l4ChecksumValid(reply.packet));

  send(d, tcp(CLIENT, 40000, VIP, 80, ACK));
  const snap = d.snapshot({ connections: true });
  const rs2 = snap.services[0]!.dests[0]!;
  assert.equal(rs2.activeConns, 1);
  assert.equal(rs2.stats.conns, '1');
  assert.equal(rs2.stats.inPkts, '2');
  assert.equal(rs2.stats.outPkts, '1');
  assert.equal(snap.connections![0]!.state, 'ESTABLISHED');

  // The next client goes to the other real server.
  assert.equal(send(d, tcp(CLIENT, 40001, VIP, 80, SYN))!.parsed.daddr.a, ip(RS1).a);
});

test('connections close and expire, moving ActiveConn and InActConn', () => {
  const clock = new ManualClock(1000);
  const d = director(clock);
  setup(d);
  send(d, tcp(CLIENT, 40000, VIP, 80, SYN));
  send(d, tcp(RS2, 8080, CLIENT, 40000, SYN | ACK));
  send(d, tcp(CLIENT, 40000, VIP, 80, ACK));
  send(d, tcp(CLIENT, 40000, VIP, 80, FIN | ACK));
  let dest = d.snapshot({ connections: false }).services[0]!.dests[0]!;
  assert.deepEqual([dest.activeConns, dest.inactConns], [0, 1]);
  send(d, tcp(RS2, 8080, CLIENT, 40000, FIN | ACK));
  clock.advance(121_000);
  d.tick();
  dest = d.snapshot({ connections: false }).services[0]!.dests[0]!;
  assert.deepEqual([dest.activeConns, dest.inactConns], [0, 0]);
  assert.equal(d.snapshot({ connections: true }).connections!.length, 0);
});

test('only a SYN opens a TCP connection; traffic for no service is given back to the host', () => {
  const d = director();
  setup(d);
  assert.equal(send(d, tcp(CLIENT, 40000, VIP, 80, ACK)), null);
  assert.equal(send(d, tcp(CLIENT, 40000, VIP, 22, SYN)), 'passed');
  assert.equal(send(d, { ...tcp(CLIENT, 0, VIP, 0, 0), protocol: 'icmp', icmpType: 8 }), 'passed');
  assert.equal(d.counters.drops['no-conn'], 1);
  assert.equal(d.counters.passed['not-a-service'], 2);
});

test("a real server's packet of no connection is dropped, never passed with the real server's address", () => {
  const d = director();
  setup(d);
  assert.equal(send(d, tcp(RS1, 8080, CLIENT, 40000, SYN | ACK)), null);
  assert.equal(d.counters.drops['no-conn'], 1);
  // Another port of the same host is no real server: the host's own traffic.
  assert.equal(send(d, tcp(RS1, 22, CLIENT, 40000, SYN | ACK)), 'passed');
});

test("off the wire, a real server's packet or ICMP error of no connection is the kernel's to judge (a direct flow's?)", () => {
  const d = director();
  setup(d);
  assert.equal(send(d, tcp(RS1, 8080, CLIENT, 40000, SYN | ACK), true), 'passed');
  const quote = buildPacket({ src: CLIENT, dst: RS1, protocol: 'udp', sport: 40000, dport: 9 });
  const unreachable: PacketSpec = {
    src: RS1,
    dst: CLIENT,
    protocol: 'icmp',
    icmpType: 3,
    icmpCode: 3,
    payload: quote,
  };
  assert.equal(send(d, unreachable, true), 'passed');
  assert.equal(d.counters.passed['real-server-no-conn'], 2);
  assert.deepEqual(d.counters.drops, {});
  // lvsd's own connections are still lvsd's: the reply leaves from the VIP.
  const syn = send(d, tcp(CLIENT, 40001, VIP, 80, SYN), true);
  assert.ok(syn !== null && syn !== 'passed');
  const reply = send(d, tcp(formatAddr(syn.parsed.daddr), 8080, CLIENT, 40001, SYN | ACK), true);
  assert.ok(reply !== null && reply !== 'passed');
  assert.equal(reply.parsed.saddr.a, ip(VIP).a);
});

test('persistence keeps a client on one real server, across ports of a port-0 service and netmasks', () => {
  const d = director();
  setup(d, 'rr', { flags: SVC_F_PERSISTENT, timeout: 300, netmaskPrefix: 24 });
  const first = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!.parsed.daddr.a;
  for (let port = 40001; port < 40010; port++) {
    assert.equal(send(d, tcp(CLIENT, port, VIP, 80, SYN))!.parsed.daddr.a, first);
  }
  // Same /24: same real server.
  assert.equal(send(d, tcp('198.18.0.200', 40000, VIP, 80, SYN))!.parsed.daddr.a, first);
  const snap = d.snapshot({ connections: true });
  assert.equal(snap.connections!.filter((c) => c.template).length, 1);
  const persist = snap.services[0]!.dests.reduce((n, dest) => n + dest.persistConns, 0);
  assert.equal(persist, 1);
  assert.equal(DEFAULT_PERSISTENT_TIMEOUT, 360);
});

test('weight 0 takes no new connections; existing ones continue; deleting a real server ends them', () => {
  const d = director();
  const key = tcpService();
  setup(d);
  const open = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  assert.equal(open.parsed.daddr.a, ip(RS2).a);
  d.execute({ op: 'edit-dest', key, addr: ip(RS2), port: 8080, settings: masq(0) });
  for (let port = 40001; port < 40005; port++) {
    assert.equal(send(d, tcp(CLIENT, port, VIP, 80, SYN))!.parsed.daddr.a, ip(RS1).a);
  }
  assert.equal(
    send(d, tcp(CLIENT, 40000, VIP, 80, ACK))!.parsed.daddr.a,
    ip(RS2).a,
    'the open one continues',
  );
  d.execute({ op: 'delete-dest', key, addr: ip(RS2), port: 8080 });
  assert.equal(send(d, tcp(CLIENT, 40000, VIP, 80, ACK)), null, 'its connection is gone');
});

test('no real server available: ICMP port unreachable from the VIP, counted', () => {
  const d = director();
  const key = tcpService();
  d.execute({ op: 'add-service', key, settings: settings('wlc') });
  const out = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  assert.equal(out.parsed.protocol, 1);
  assert.equal(out.parsed.icmpType, 3);
  assert.equal(out.parsed.icmpCode, 3);
  assert.equal(out.parsed.saddr.a, ip(VIP).a);
  assert.equal(out.parsed.daddr.a, ip(CLIENT).a);
  assert.equal(d.counters.drops['no-dest'], 1);
  assert.equal(d.counters.icmpSent, 1);
});

test('ICMP errors about a tracked connection are translated both ways', () => {
  const d = director();
  setup(d);
  const syn = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  const quotedFlow = (packet: Uint8Array) => {
    const view = new DataView(packet.buffer, packet.byteOffset);
    return {
      saddr: view.getUint32(28 + 12),
      daddr: view.getUint32(28 + 16),
      sport: view.getUint16(48),
      dport: view.getUint16(50),
    };
  };

  // A router on the client side says the VIP's reply was too big: it goes to the real server.
  const toServer = send(d, fragNeeded('198.18.0.254', VIP, buildPacket(tcp(VIP, 80, CLIENT, 40000, ACK))))!;
  assert.equal(toServer.parsed.daddr.a, ip(RS2).a);
  assert.deepEqual(quotedFlow(toServer.packet), {
    saddr: ip(RS2).a,
    daddr: ip(CLIENT).a,
    sport: 8080,
    dport: 40000,
  });
  assert.ok(ipv4HeaderValid(toServer.packet) && l4ChecksumValid(toServer.packet));

  // A router on the server side rejects the forwarded SYN: the client hears it from the VIP.
  const toClient = send(d, fragNeeded('198.18.1.254', CLIENT, syn.packet))!;
  assert.equal(toClient.parsed.saddr.a, ip(VIP).a);
  assert.equal(toClient.parsed.daddr.a, ip(CLIENT).a);
  assert.deepEqual(quotedFlow(toClient.packet), {
    saddr: ip(CLIENT).a,
    daddr: ip(VIP).a,
    sport: 40000,
    dport: 80,
  });
  assert.ok(ipv4HeaderValid(toClient.packet) && l4ChecksumValid(toClient.packet));

  // About nothing we track, on its way to a client: dropped.
  assert.equal(send(d, fragNeeded('198.18.1.254', CLIENT, buildPacket(tcp(CLIENT, 1, RS1, 2, SYN)))), null);
  assert.equal(d.counters.drops['icmp-unmatched'], 1);
  // To the VIP about the host's own socket on it (ssh's path MTU, say): the host's, given back.
  assert.equal(
    send(d, fragNeeded('198.18.0.254', VIP, buildPacket(tcp(VIP, 22, CLIENT, 40000, ACK)))),
    'passed',
  );
  assert.equal(d.counters.passed['icmp-for-host'], 1);
});

test('a UDP datagram in fragments reaches the real server its first fragment went to', () => {
  const d = director();
  const key: ServiceKey = { af: 4, protocol: IPPROTO_UDP, addr: ip(VIP), port: 53, fwmark: 0 };
  d.execute({ op: 'add-service', key, settings: settings('rr') });
  d.execute({ op: 'add-dest', key, addr: ip(RS1), port: 53, settings: masq() });
  d.execute({ op: 'add-dest', key, addr: ip(RS2), port: 53, settings: masq() });
  const [first, ...rest] = fragmentedDatagram(CLIENT, VIP, 3000, 4242);
  // The last fragment overtakes the first: held, then released with it.
  const last = withVnet(rest.pop()!);
  assert.equal(d.process(last, 0, last.length), 0);
  const firstBuf = withVnet(first!);
  assert.ok(d.process(firstBuf, 0, firstBuf.length) > 0);
  const firstParsed = parsePacket(firstBuf, VNET_HDR_LEN, firstBuf.length - VNET_HDR_LEN);
  assert.ok(firstParsed.ok);
  const target = firstParsed.daddr.a;
  assert.equal(d.pending.length, 1);
  for (const middle of rest) {
    const buf = withVnet(middle);
    assert.ok(d.process(buf, 0, buf.length) > 0);
    const parsed = parsePacket(buf, VNET_HDR_LEN, buf.length - VNET_HDR_LEN);
    assert.ok(parsed.ok && parsed.daddr.a === target);
  }
  const released = parsePacket(d.pending[0]!, VNET_HDR_LEN, d.pending[0]!.length - VNET_HDR_LEN);
  assert.ok(released.ok && released.daddr.a === target && ipv4HeaderValid(d.pending[0]!, VNET_HDR_LEN));
});

test('one-packet scheduling schedules every datagram afresh', () => {
  const d = director();
  const key: ServiceKey = { af: 4, protocol: IPPROTO_UDP, addr: ip(VIP), port: 53, fwmark: 0 };
  setup(d, 'rr', { flags: SVC_F_ONEPACKET }, key);
  const udp = (): PacketSpec => ({ src: CLIENT, dst: VIP, protocol: 'udp', sport: 5000, dport: 53 });
  const picks = [send(d, udp())!, send(d, udp())!, send(d, udp())!].map((x) => x.parsed.daddr.a);
  assert.deepEqual(picks, [ip(RS2).a, ip(RS1).a, ip(RS2).a]);
});

test('refused control operations change nothing and carry codes', () => {
  const d = director();
  setup(d);
  const before = JSON.stringify(d.snapshot({ connections: true }));
  const attempts: [() => void, string][] = [
    [
      () => d.execute({ op: 'add-service', key: tcpService(), settings: settings('rr') }),
      'LVS_ERR_SERVICE_EXISTS',
    ],
    [
      () => d.execute({ op: 'add-service', key: tcpService(VIP, 81), settings: settings('nope') }),
      'LVS_ERR_NO_SCHEDULER',
    ],
    [
      () => d.execute({ op: 'edit-service', key: tcpService(VIP, 81), settings: settings('rr') }),
      'LVS_ERR_NO_SERVICE',
    ],
    [() => d.execute({ op: 'delete-service', key: tcpService(VIP, 81) }), 'LVS_ERR_NO_SERVICE'],
    [
      () =>
        d.execute({ op: 'add-dest', key: tcpService(VIP, 81), addr: ip(RS1), port: 80, settings: masq() }),
      'LVS_ERR_SERVICE_NOT_DEFINED',
    ],
    [
      () => d.execute({ op: 'add-dest', key: tcpService(), addr: ip(RS1), port: 8080, settings: masq() }),
      'LVS_ERR_DEST_EXISTS',
    ],
    [
      () => d.execute({ op: 'edit-dest', key: tcpService(), addr: ip(RS1), port: 9, settings: masq() }),
      'LVS_ERR_NO_DEST',
    ],
    [() => d.execute({ op: 'delete-dest', key: tcpService(), addr: ip(RS1), port: 9 }), 'LVS_ERR_NO_DEST'],
    [
      () =>
        d.execute({
          op: 'add-dest',
          key: tcpService(),
          addr: ip('198.18.1.13'),
          port: 80,
          settings: masq(70000),
        }),
      'LVS_ERR_INVALID',
    ],
    [() => d.execute({ op: 'zero', key: tcpService(VIP, 81) }), 'LVS_ERR_NO_SERVICE'],
    [
      () =>
        d.execute({
          op: 'add-service',
          key: tcpService(VIP, 82),
          settings: settings('rr', { flags: SVC_F_ONEPACKET }),
        }),
      'LVS_ERR_INVALID',
    ],
    ...(['local'] as const).flatMap((method): [() => void, string][] => [
      [
        () =>
          d.execute({
            op: 'add-dest',
            key: tcpService(),
            addr: ip('198.18.1.14'),
            port: 80,
            settings: { ...masq(), method },
          }),
        'LVS_ERR_METHOD_UNSUPPORTED',
      ],
      [
        () =>
          d.execute({
            op: 'edit-dest',
            key: tcpService(),
            addr: ip(RS1),
            port: 80,
            settings: { ...masq(), method },
          }),
        'LVS_ERR_METHOD_UNSUPPORTED',
      ],
    ]),
  ];
  for (const [attempt, code] of attempts) {
    assert.throws(attempt, (e: unknown) => e instanceof LvsError && e.code === code, code);
  }
  assert.equal(JSON.stringify(d.snapshot({ connections: true })), before);
});

test('the packet path never throws and never emits an unparseable packet on garbage (fuzz)', () => {
  const d = director();
  setup(d);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => {
      const buf = new Uint8Array(bytes.length + 1500);
      buf.set(bytes);
      const length = d.process(buf, 0, bytes.length);
      assert.ok(length >= 0 && length <= buf.length);
    }),
    { numRuns: 3000 },
  );
});

test('a SYN on a port whose connection is in TIME_WAIT opens a new connection, scheduled afresh', () => {
  const d = director();
  setup(d);
  send(d, tcp(CLIENT, 40000, VIP, 80, SYN));
  send(d, tcp(RS2, 8080, CLIENT, 40000, SYN | ACK));
  send(d, tcp(CLIENT, 40000, VIP, 80, ACK));
  send(d, tcp(RS2, 8080, CLIENT, 40000, FIN | ACK));
  send(d, tcp(CLIENT, 40000, VIP, 80, FIN | ACK));
  assert.equal(d.snapshot({ connections: true }).connections![0]!.state, 'TIME_WAIT');
  const again = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  assert.equal(again.parsed.daddr.a, ip(RS1).a, 'rr moves on to the next real server');
  const snap = d.snapshot({ connections: true });
  assert.equal(snap.services[0]!.stats.conns, '2');
  assert.deepEqual(
    snap.connections!.map((c) => c.state),
    ['SYN_RECV'],
  );
});

test('IPv6 services: NAT both ways, the client address kept', () => {
  const d = director();
  const key: ServiceKey = { af: 6, protocol: IPPROTO_TCP, addr: ip('2001:db8::1'), port: 80, fwmark: 0 };
  d.execute({ op: 'add-service', key, settings: settings('rr', { netmaskPrefix: 128 }) });
  d.execute({ op: 'add-dest', key, addr: ip('2001:db8:1::11'), port: 80, settings: masq() });
  const client = '2001:db8:2::100';
  const fwd = send(d, tcp(client, 40000, '2001:db8::1', 80, SYN))!;
  assert.deepEqual(fwd.parsed.daddr, ip('2001:db8:1::11'));
  assert.deepEqual(fwd.parsed.saddr, ip(client));
  assert.ok(l4ChecksumValid(fwd.packet));
  const reply = send(d, tcp('2001:db8:1::11', 80, client, 40000, SYN | ACK))!;
  assert.deepEqual(reply.parsed.saddr, ip('2001:db8::1'));
  assert.ok(l4ChecksumValid(reply.packet));
  assert.equal(d.snapshot({ connections: true }).connections![0]!.state, 'SYN_RECV');
});

test('an IPv6 reply too long to be forwarded whole leaves as fragments of at most 1280 bytes', () => {
  // A datagram the host reassembled reaches the director whole; IPv6 routers never fragment, so
  // the kernel would answer the rewritten packet with "packet too big" to the VIP itself.
  const d = director();
  const key: ServiceKey = { af: 6, protocol: IPPROTO_UDP, addr: ip('2001:db8::1'), port: 7, fwmark: 0 };
  d.execute({ op: 'add-service', key, settings: settings('rr', { netmaskPrefix: 128 }) });
  d.execute({ op: 'add-dest', key, addr: ip('2001:db8:1::11'), port: 7, settings: masq() });
  const client = '2001:db8::2';
  const payload = Uint8Array.from({ length: 4000 }, (_, i) => i & 0xff);
  const datagram = (src: string, sport: number, dst: string, dport: number): PacketSpec => ({
    src,
    dst,
    protocol: 'udp',
    sport,
    dport,
    payload,
  });
  assert.ok(send(d, datagram(client, 40000, '2001:db8::1', 7)));
  d.pending.length = 0;
  const first = send(d, datagram('2001:db8:1::11', 7, client, 40000))!;
  const frames = [first.packet, ...d.pending.map((f) => f.subarray(VNET_HDR_LEN))];
  assert.equal(frames.length, 4);
  const parts = frames.map((f) => parsePacket(f, 0, f.length)).filter((p) => p.ok);
  assert.equal(parts.length, 4);
  assert.ok(frames.every((f) => f.length <= 1280));
  assert.ok(parts.every((p) => p.isFragment && p.fragmentId === parts[0]!.fragmentId));
  assert.deepEqual(first.parsed.saddr, ip('2001:db8::1'));
  assert.equal(first.parsed.sport, 7);
  // The fragments' data is the rewritten datagram's: its checksum verifies over the VIP's address.
  const udp = new Uint8Array(8 + payload.length);
  let at = 0;
  for (const f of frames) {
    udp.set(f.subarray(48), at);
    at += f.length - 48;
  }
  const whole = buildPacket({ ...datagram('2001:db8::1', 7, client, 40000) });
  assert.deepEqual(udp, whole.subarray(40));
  // Counted once, as the datagram it was.
  assert.equal(d.snapshot({ connections: false }).services[0]!.stats.outPkts, '1');
});

test('the snapshot carries the data path counters, so lvsadm -L --json shows every drop', () => {
  const d = director();
  setup(d);
  send(d, tcp(CLIENT, 40000, VIP, 22, SYN));
  send(d, tcp(CLIENT, 40000, VIP, 80, SYN));
  const { dataPath } = d.snapshot({ connections: false });
  assert.deepEqual(dataPath, {
    forwardedIn: 1,
    forwardedOut: 0,
    icmpSent: 0,
    drops: {},
    passed: { 'not-a-service': 1 },
  });
});

test('runtime state: failed, drained and maintained real servers take no new connections; weights kept apart', () => {
  const d = director();
  setup(d, 'rr', { flags: SVC_F_PERSISTENT, timeout: 300 });
  const runtime = (addr: string, change: DestRuntimeChange, endConnections = false) =>
    d.execute({
      op: 'set-dest-runtime',
      key: tcpService(),
      addr: ip(addr),
      port: 8080,
      change,
      endConnections,
    });
  const dests = () =>
    Object.fromEntries(
      d
        .snapshot({ connections: false })
        .services[0]!.dests.map((x) => [
          formatAddr(x.addr),
          `${x.scheduled ? 'in' : 'out'} w${x.weight}/${x.configuredWeight} ${x.admin} conns ${x.activeConns + x.inactConns}`,
        ]),
    );
  const first = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  const pinned = formatAddr(first.parsed.daddr);
  const other = pinned === RS1 ? RS2 : RS1;
  // The health checks fail it: out of the scheduling, but its connection goes on (it drains).
  runtime(pinned, { health: 'down' });
  assert.ok(send(d, tcp(CLIENT, 40000, VIP, 80, ACK)), 'the open connection still flows');
  assert.equal(
    formatAddr(send(d, tcp(CLIENT, 40001, VIP, 80, SYN))!.parsed.daddr),
    other,
    'persistence let go',
  );
  assert.equal(dests()[pinned], 'out w0/1 ready conns 1');
  // Back up, then drained by the operator: listed at weight 0, scheduled never.
  runtime(pinned, { health: 'up', admin: 'drain' });
  assert.equal(dests()[pinned], 'in w0/1 drain conns 1');
  assert.equal(formatAddr(send(d, tcp('198.18.0.101', 40000, VIP, 80, SYN))!.parsed.daddr), other);
  // The operator's weight stands apart from the configured one, and outlives a configuration edit.
  runtime(pinned, { admin: 'ready', operatorWeight: 5 });
  d.execute({ op: 'edit-dest', key: tcpService(), addr: ip(pinned), port: 8080, settings: masq(3) });
  assert.equal(dests()[pinned], 'in w5/3 ready conns 1');
  runtime(pinned, { operatorWeight: null });
  assert.equal(dests()[pinned], 'in w3/3 ready conns 1');
  // Maintenance with its connections ended at once (expire_nodest_conn).
  runtime(pinned, { admin: 'maint' }, true);
  assert.equal(dests()[pinned], 'out w0/3 maint conns 0');
  assert.equal(send(d, tcp(CLIENT, 40000, VIP, 80, ACK)), null);
  // Bad runtime values change nothing.
  const before = JSON.stringify(dests());
  assert.throws(
    () => runtime(other, { admin: 'sleep' as 'drain' }),
    (e: unknown) => (e as LvsError).code === 'LVS_ERR_INVALID',
  );
  assert.throws(
    () => runtime(other, { operatorWeight: 70000 }),
    (e: unknown) => (e as LvsError).code === 'LVS_ERR_INVALID',
  );
  assert.equal(JSON.stringify(dests()), before);
});

test('connections(from, limit) pages the table and refuses a page out of range', () => {
  const d = new Director({ clock: new ManualClock(0), connCapacity: 16 });
  const page = d.connections(0, 4096);
  assert.deepEqual(page, { entries: [], next: -1 });
  for (const [from, limit] of [
    [-1, 10],
    [0, 0],
    [0, 4097],
    [0.5, 10],
  ] as const) {
    assert.throws(
      () => d.connections(from, limit),
      (err: LvsError) => err.code === ErrorCodes.INVALID,
    );
  }
});

test('counters past 2^53 stay exact through traffic and the snapshot, and wrap at 2^64', () => {
  const d = director();
  setup(d);
  const service = d.services.find(tcpService())!;
  const rs2 = service.dests.find((dest) => dest.addr.a === ip(RS2).a)!;
  setCounter(service.stats, 'conns', 2n ** 64n - 1n);
  setCounter(service.stats, 'inPkts', 2n ** 53n);
  setCounter(rs2.stats, 'inBytes', 2n ** 53n);
  const packet = tcp(CLIENT, 40000, VIP, 80, SYN);
  assert.equal(send(d, packet)!.parsed.daddr.a, ip(RS2).a);
  const snap = d.snapshot({ connections: false }).services[0]!;
  assert.equal(snap.stats.conns, '0', 'the service counted its 2^64th connection: wrapped');
  assert.equal(snap.stats.inPkts, '9007199254740993');
  const dest = snap.dests.find((x) => x.addr.a === ip(RS2).a)!;
  assert.equal(dest.stats.conns, '1');
  assert.equal(dest.stats.inBytes, String(2n ** 53n + BigInt(buildPacket(packet).length)));
});

/** A persistent rr service (300 s templates) on a virtual clock, with IPVS's expiry sysctls as given. */
function expiryLab(expiry: { expireNodestConn?: boolean; expireQuiescentTemplate?: boolean }) {
  const clock = new ManualClock(1000);
  const d = new Director({ clock, random: () => 0.5, connCapacity: 1024, expiry });
  setup(d, 'rr', { flags: SVC_F_PERSISTENT, timeout: 300 });
  const runtime = (addr: string, change: DestRuntimeChange) =>
    d.execute({ op: 'set-dest-runtime', key: tcpService(), addr: ip(addr), port: 8080, change });
  /** Where a new connection from `client` goes. */
  const connect = (client: string, port: number) =>
    formatAddr(send(d, tcp(client, port, VIP, 80, SYN))!.parsed.daddr);
  const conns = () =>
    d
      .snapshot({ connections: true })
      .connections!.map((c) => `${c.template ? 'template' : c.state} ${formatAddr(c.daddr)}`)
      .sort();
  return { clock, d, runtime, connect, conns };
}

test('expire_nodest_conn: a real server taken out ends its connections and templates at once when set, drains them when not', () => {
  for (const expireNodestConn of [false, true]) {
    const lab = expiryLab({ expireNodestConn });
    const pinned = lab.connect(CLIENT, 40000);
    assert.deepEqual(lab.conns(), [`SYN_RECV ${pinned}`, `template ${pinned}`]);
    lab.runtime(pinned, { health: 'down' });
    if (expireNodestConn) {
      assert.deepEqual(lab.conns(), [], 'connection and template ended with the failure');
      // Its next packet belongs to nothing: dropped, as IPVS drops it, never sent to the failed server.
      assert.equal(send(lab.d, tcp(CLIENT, 40000, VIP, 80, ACK)), null);
    } else {
      assert.ok(send(lab.d, tcp(CLIENT, 40000, VIP, 80, ACK)), 'the open connection drains');
      lab.clock.advance(10_000);
      lab.d.tick();
      assert.deepEqual(lab.conns(), [`ESTABLISHED ${pinned}`, `template ${pinned}`]);
    }
  }
  // Quiesced (inhibit_on_failure, drain) is not taken out: its connections carry on either way.
  const lab = expiryLab({ expireNodestConn: true });
  const pinned = lab.connect(CLIENT, 40000);
  lab.runtime(pinned, { health: 'down-inhibited' });
  assert.deepEqual(lab.conns(), [`SYN_RECV ${pinned}`, `template ${pinned}`]);
  assert.ok(send(lab.d, tcp(CLIENT, 40000, VIP, 80, ACK)));
});

test('expire_quiescent_template: a returning client leaves a quiesced real server only when set, and never stays on a failed one', () => {
  for (const expireQuiescentTemplate of [false, true]) {
    for (const quiesce of [{ health: 'down-inhibited' }, { admin: 'drain' }] as DestRuntimeChange[]) {
      const lab = expiryLab({ expireQuiescentTemplate });
      const pinned = lab.connect(CLIENT, 40000);
      const other = pinned === RS1 ? RS2 : RS1;
      // The connection closes and expires; the template (300 s) outlives it.
      send(lab.d, tcp(CLIENT, 40000, VIP, 80, ACK));
      send(lab.d, tcp(CLIENT, 40000, VIP, 80, FIN | ACK));
      lab.runtime(pinned, quiesce);
      lab.clock.advance(150_000);
      lab.d.tick();
      assert.deepEqual(lab.conns(), [`template ${pinned}`], JSON.stringify(quiesce));
      const returning = lab.connect(CLIENT, 40001);
      assert.equal(
        returning,
        expireQuiescentTemplate ? other : pinned,
        `${JSON.stringify(quiesce)} with expire_quiescent_template ${Number(expireQuiescentTemplate)}`,
      );
      // A new client is never scheduled to the quiesced server.
      assert.equal(lab.connect('198.18.0.101', 40000), other);
    }
    // Failed (out of the scheduling): the template lets go whatever the setting, as ip_vs_check_template.
    const lab = expiryLab({ expireQuiescentTemplate });
    const pinned = lab.connect(CLIENT, 40000);
    lab.runtime(pinned, { health: 'down' });
    assert.notEqual(lab.connect(CLIENT, 40001), pinned);
  }
});

test('a real server added with a runtime state starts in it: out of scheduling until told; a bad one adds nothing', () => {
  const d = director();
  d.execute({ op: 'add-service', key: tcpService(), settings: settings('rr') });
  d.execute({
    op: 'add-dest',
    key: tcpService(),
    addr: ip(RS1),
    port: 8080,
    settings: masq(),
    runtime: { health: 'down' },
  });
  // No real server to schedule: ICMP port unreachable back to the client.
  const refused = send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!;
  assert.equal(formatAddr(refused.parsed.daddr), CLIENT);
  assert.equal(refused.parsed.protocol, 1);
  assert.throws(
    () =>
      d.execute({
        op: 'add-dest',
        key: tcpService(),
        addr: ip(RS2),
        port: 8080,
        settings: masq(),
        runtime: { health: 'sick' as 'down' },
      }),
    (e: unknown) => (e as LvsError).code === 'LVS_ERR_INVALID',
  );
  assert.deepEqual(
    d.snapshot({ connections: false }).services[0]!.dests.map((x) => [formatAddr(x.addr), x.scheduled]),
    [[RS1, false]],
  );
  d.execute({
    op: 'set-dest-runtime',
    key: tcpService(),
    addr: ip(RS1),
    port: 8080,
    change: { health: 'up' },
  });
  assert.equal(formatAddr(send(d, tcp(CLIENT, 40000, VIP, 80, SYN))!.parsed.daddr), RS1);
});
