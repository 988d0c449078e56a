import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  compareServices,
  formatConnectionRows,
  formatConnectionsHeader,
  formatJson,
  formatRules,
  formatServiceList,
  largeNum,
  NUMERIC_NAMES,
} from '../../src/ipvsadm/format.js';
import { emptyListFormat } from '../../src/ipvsadm/parse.js';
import type { ListFormat } from '../../src/ipvsadm/parse.js';
import { IPPROTO_TCP, parseAddr } from '../../src/core/inet.js';
import type { Addr } from '../../src/core/inet.js';
import type { ConnSnapshot, DestSnapshot, ServiceSnapshot, Snapshot } from '../../src/core/ops.js';
import type { TunnelSettings } from '../../src/core/model.js';
import { addrKey, dest, service, snapshot, stats } from '../helpers/snapshots.js';

const a = (text: string): Addr => parseAddr(text)!;
function tcpService(
  addr: string,
  port: number,
  dests: DestSnapshot[],
  extra: Partial<ServiceSnapshot> = {},
): ServiceSnapshot {
  return service(addrKey(IPPROTO_TCP, addr, port), dests, extra);
}

const numeric = (extra: Partial<ListFormat> = {}): ListFormat => ({
  ...emptyListFormat(),
  numeric: true,
  ...extra,
});

test('ipvs.md capture: a Masq real server with one inactive connection', () => {
  const snap = snapshot([tcpService('10.0.0.185', 80, [dest('172.17.0.3', 80, { inactConns: 1 })])]);
  assert.equal(
    formatServiceList(snap, numeric(), NUMERIC_NAMES),
    'IP Virtual Server version 1.2.1 (size=4096)\n' +
      'Prot LocalAddress:Port Scheduler Flags\n' +
      '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n' +
      'TCP  10.0.0.185:80 wlc\n' +
      '  -> 172.17.0.3:80                Masq    1      0          1         \n',
  );
});

test('ipvs.md capture: --stats with K and M suffixes', () => {
  const stats = {
    conns: '401',
    inPkts: '8939187',
    outPkts: '8953980',
    inBytes: '830843000',
    outBytes: '1135000000',
  };
  const snap = snapshot([tcpService('20.20.20.1', 2020, [], { stats })]);
  const lines = formatServiceList(snap, numeric({ stats: true }), NUMERIC_NAMES).split('\n');
  assert.equal(lines[1], 'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes');
  assert.equal(lines[2], '  -> RemoteAddress:Port');
  assert.equal(lines[3], 'TCP  20.20.20.1:2020                   401  8939187  8953980  830843K    1135M');
});

test('ipvs.md capture: --rate title', () => {
  const lines = formatServiceList(snapshot([]), numeric({ rate: true }), NUMERIC_NAMES).split('\n');
  assert.equal(lines[1], 'Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS');
});

test('ipvs.md capture: -c rows, expire as mm:ss', () => {
  const conn = (
    proto: 6,
    c: string,
    cp: number,
    v: string,
    vp: number,
    d: string,
    dp: number,
    state: string,
    ms: number,
  ): ConnSnapshot => ({
    af: 4,
    protocol: proto,
    caddr: a(c),
    cport: cp,
    vaddr: a(v),
    vport: vp,
    daddr: a(d),
    dport: dp,
    state,
    expiresMs: ms,
    template: state === 'NONE',
  });
  const text =
    formatConnectionsHeader(numeric()) +
    formatConnectionRows(
      [
        conn(
          6,
          '169.60.24.86',
          52470,
          '169.46.7.238',
          27234,
          '169.48.180.244',
          27234,
          'ESTABLISHED',
          899_400,
        ),
        conn(6, '169.46.57.9', 0, '169.46.7.238', 0, '169.48.180.190', 0, 'NONE', 58_999),
      ],
      numeric(),
      NUMERIC_NAMES,
    );
  assert.equal(
    text,
    'IPVS connection entries\n' +
      'pro expire state       source             virtual            destination\n' +
      'TCP 14:59  ESTABLISHED 169.60.24.86:52470 169.46.7.238:27234 169.48.180.244:27234\n' +
      'TCP 00:58  NONE        169.46.57.9:0      169.46.7.238:0     169.48.180.190:0\n',
  );
});

test('print_largenum scales and --exact widens', () => {
  assert.equal(largeNum(0n, false), '        0');
  assert.equal(largeNum(99_999_999n, false), ' 99999999');
  assert.equal(largeNum(100_000_000n, false), '  100000K');
  assert.equal(largeNum(999_999_999n, false), '  999999K');
  assert.equal(largeNum(1_000_000_000n, false), '    1000M');
  assert.equal(largeNum(99_999_999_999n, false), '   99999M');
  assert.equal(largeNum(100_000_000_000n, false), '     100G');
  assert.equal(largeNum(100_000_000_000_000n, false), '     100T');
  assert.equal(largeNum(12345n, true), '    12345');
  assert.equal(largeNum(123456789n, true), ' 123456789');
  assert.equal(largeNum(1234567890123n, true), ' 1234567890123');
});

test('--rate real-server row: three plain columns then two scaled', () => {
  const rates = { cps: 12, inpps: 3400, outpps: 3300, inbps: 250_000_000, outbps: 9 };
  const snap = snapshot([tcpService('198.18.0.1', 80, [dest('198.19.0.1', 80, { rates })])]);
  const lines = formatServiceList(snap, numeric({ rate: true }), NUMERIC_NAMES).split('\n');
  assert.equal(lines[4], '  -> 198.19.0.1:80                      12     3400     3300  250000K        9');
});

test('IPv4 names are cut at 33 (service) and 28 (real server) columns; IPv6 are not', () => {
  const names = { host: () => 'a-very-long-host-name.example.org', service: () => null };
  const snap = snapshot([tcpService('198.18.0.1', 80, [dest('198.19.0.1', 80)])]);
  const lines = formatServiceList(snap, emptyListFormat(), names).split('\n');
  assert.equal(lines[3], 'TCP  a-very-long-host-name.exampl wlc');
  assert.equal(lines[4], '  -> a-very-long-host-name.exampl Masq    1      0          0         ');
  const v6 = snapshot([tcpService('2001:db8::1', 80, [])]);
  assert.equal(
    formatServiceList(v6, emptyListFormat(), names).split('\n')[3],
    'TCP  [a-very-long-host-name.example.org]:80 wlc',
  );
});

test('services sort as libipvs: fwmark, family, protocol, then address words compared by int subtraction', () => {
  const key = (addr: string, port = 80) => ({
    af: a(addr).af,
    protocol: 6 as const,
    addr: a(addr),
    port,
    fwmark: 0,
  });
  assert.ok(compareServices(key('10.0.0.1'), key('10.0.0.2')) < 0);
  assert.ok(compareServices(key('10.0.0.1', 80), key('10.0.0.1', 443)) < 0);
  assert.ok(compareServices(key('198.18.0.1'), key('2001:db8::1')) < 0, 'IPv4 (AF_INET 2) before IPv6 (10)');
  // 10.0.0.1 - 200.0.0.1 overflows a C int to a positive number: libipvs puts 200.x first.
  assert.ok(compareServices(key('10.0.0.1'), key('200.0.0.1')) > 0);
  const udp = { ...key('1.1.1.1'), protocol: 17 as const };
  assert.ok(compareServices(key('9.9.9.9'), udp) < 0, 'TCP before UDP whatever the address');
});

test('-S prints persistence, netmask, pe, one-packet and scheduler flags in ipvsadm order', () => {
  const svc = tcpService('198.18.0.1', 80, [dest('198.19.0.1', 80, { method: 'local', weight: 5 })], {
    settings: { scheduler: 'sh', flags: 0x1 | 0x4 | 0x10, timeout: 600, netmaskPrefix: 24, pe: 'sip' },
  });
  assert.equal(
    formatRules(snapshot([svc]), numeric(), NUMERIC_NAMES),
    '-A -t 198.18.0.1:80 -s sh -p 600 -M 255.255.255.0 --pe sip -o -b sh-port\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.1:80 -g -w 5\n',
  );
});

// Issue 14, item 1 and 10: tunnel settings in -S and --tun-info, as ipvsadm 1.31 prints them.
function tunnelDest(addr: string, tunnel: TunnelSettings, extra: Partial<DestSnapshot> = {}): DestSnapshot {
  return Object.assign(dest(addr, 80, { method: 'tunnel', ...extra }), { tunnel });
}

function tunnelSnapshot(): Snapshot {
  return snapshot([
    tcpService('198.18.0.1', 80, [
      dest('198.19.0.11', 80, { method: 'tunnel' }),
      tunnelDest('198.19.0.12', { type: 'ipip', port: 0, csum: 'nocsum' }, { weight: 2 }),
      tunnelDest('198.19.0.13', { type: 'gue', port: 6080, csum: 'nocsum' }),
      tunnelDest('198.19.0.14', { type: 'gue', port: 6081, csum: 'remcsum' }),
      tunnelDest('198.19.0.15', { type: 'gre', port: 0, csum: 'csum' }),
      tunnelDest('198.19.0.16', { type: 'gre', port: 0, csum: 'nocsum' }),
      dest('198.19.0.17', 8080),
    ]),
  ]);
}

test('-S saves the tunnel type, gue port and checksum flag (--tun-nocsum when none was given)', () => {
  assert.equal(
    formatRules(tunnelSnapshot(), numeric(), NUMERIC_NAMES),
    '-A -t 198.18.0.1:80 -s wlc\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.11:80 -i -w 1 --tun-type ipip\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.12:80 -i -w 2 --tun-type ipip\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.13:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.14:80 -i -w 1 --tun-type gue --tun-port 6081 --tun-remcsum\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.15:80 -i -w 1 --tun-type gre --tun-csum\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.16:80 -i -w 1 --tun-type gre --tun-nocsum\n' +
      '-a -t 198.18.0.1:80 -r 198.19.0.17:8080 -m -w 1\n',
  );
});

test('--tun-info: a TunnelInfo column, n/a for servers that are not tunnels', () => {
  assert.equal(
    formatServiceList(tunnelSnapshot(), numeric({ tunInfo: true }), NUMERIC_NAMES),
    'IP Virtual Server version 1.2.1 (size=4096)\n' +
      'Prot LocalAddress:Port Scheduler Flags\n' +
      '  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n' +
      'TCP  198.18.0.1:80 wlc\n' +
      '  -> 198.19.0.11:80               Tunnel  ipip          1      0          0         \n' +
      '  -> 198.19.0.12:80               Tunnel  ipip          2      0          0         \n' +
      '  -> 198.19.0.13:80               Tunnel  gue:6080:-c   1      0          0         \n' +
      '  -> 198.19.0.14:80               Tunnel  gue:6081:r+c  1      0          0         \n' +
      '  -> 198.19.0.15:80               Tunnel  gre:+c        1      0          0         \n' +
      '  -> 198.19.0.16:80               Tunnel  gre:-c        1      0          0         \n' +
      '  -> 198.19.0.17:8080             Masq    n/a           1      0          0         \n',
  );
});

test('-S keeps --pe of a non-persistent service; -L shows it only with persistence', () => {
  const settings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: 'sip' };
  const snap = snapshot([tcpService('198.18.0.1', 5060, [], { settings })]);
  assert.equal(formatRules(snap, numeric(), NUMERIC_NAMES), '-A -t 198.18.0.1:5060 -s rr --pe sip\n');
  assert.match(formatServiceList(snap, numeric(), NUMERIC_NAMES), /\nTCP {2}198\.18\.0\.1:5060 rr\n$/);
});

test('-L -c --persistent-conn: the persistence engine columns in the title', () => {
  assert.equal(
    formatConnectionsHeader(numeric({ persistentConn: true })),
    'IPVS connection entries\n' +
      'pro expire state       source             virtual            destination        pe name          pe_data\n',
  );
});

test('an IPv4-compatible IPv6 real server prints dotted, as inet_ntop', () => {
  const svc = tcpService('2001:db8::1', 80, [dest('::198.19.0.1', 80)]);
  const lines = formatServiceList(snapshot([svc]), numeric(), NUMERIC_NAMES).split('\n');
  assert.equal(lines[4], '  -> [::198.19.0.1]:80            Masq    1      0          0         ');
});

/** Counters a JS number cannot hold: 2^64 - 1 and 2^53 + 1 (a double reads them 2^64 and 2^53). */
function hugeCounters(): Snapshot {
  const serviceStats = stats(18446744073709551615n, 9007199254740993n, 4294967296n, 12345, 0);
  const destStats = stats(9007199254740993n, 18446744073709551615n, 1, 2, 3);
  return snapshot([
    tcpService('198.18.0.1', 80, [dest('198.19.0.1', 80, { stats: destStats })], { stats: serviceStats }),
  ]);
}

test('--stats --exact prints u64 counters past 2^53 with every digit', () => {
  const lines = formatServiceList(hugeCounters(), numeric({ stats: true, exact: true }), NUMERIC_NAMES).split(
    '\n',
  );
  assert.deepEqual(lines.slice(3), [
    'TCP  198.18.0.1:80                18446744073709551615 9007199254740993 4294967296    12345        0',
    '  -> 198.19.0.1:80                9007199254740993 18446744073709551615        1        2        3',
    '',
  ]);
});

test('--stats scales u64 counters by exact integer division (print_largenum)', () => {
  const lines = formatServiceList(hugeCounters(), numeric({ stats: true }), NUMERIC_NAMES).split('\n');
  assert.deepEqual(lines.slice(3), [
    'TCP  198.18.0.1:80               18446744T    9007T    4294M    12345        0',
    '  -> 198.19.0.1:80                   9007T18446744T        1        2        3',
    '',
  ]);
  assert.equal(largeNum(99_999_999_999_999n, false), '   99999G');
  assert.equal(largeNum(18446744073709551615n, true), ' 18446744073709551615');
});

test('-L --json carries u64 counters as decimal strings, exact', () => {
  const body = JSON.parse(formatJson(hugeCounters(), { counters: true })) as {
    services: { stats: Record<string, string>; realServers: { stats: Record<string, string> }[] }[];
  };
  const [svc] = body.services;
  assert.deepEqual(svc!.stats, {
    conns: '18446744073709551615',
    inPkts: '9007199254740993',
    outPkts: '4294967296',
    inBytes: '12345',
    outBytes: '0',
  });
  assert.equal(svc!.realServers[0]!.stats.inPkts, '18446744073709551615');
});
