// The doctor's diagnosis as a pure function of facts: each check on the facts that make it fire,
// the same facts with the fault taken away giving a clean verdict, and the firewall evaluation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  chainVerdict,
  diagnose,
  probeKey,
  probeTargets,
  ruleMatches,
  sysctlsWanted,
} from '../../src/core/doctor.js';
import type { DoctorFacts, FirewallChain, FirewallRule, FlowFact } from '../../src/core/doctor.js';
import { IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import { zeroDeviceCounters, type ConnSnapshot } from '../../src/core/ops.js';
import { addrKey, dataPath, dest, ip, markKey, service, snapshot, stats } from '../helpers/snapshots.js';

const VIP = '198.18.0.1';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';

function conn(caddr: string, daddr: string, state: string): ConnSnapshot {
  return {
    af: 4,
    protocol: IPPROTO_TCP,
    caddr: ip(caddr),
    cport: 40000,
    vaddr: ip(VIP),
    vport: 80,
    daddr: ip(daddr),
    dport: 80,
    state,
    expiresMs: 50_000,
    template: false,
  };
}

/** The healthy lab as the collector sees it; each test breaks one thing. */
function healthy(): DoctorFacts {
  return {
    snapshot: snapshot(
      [
        service(addrKey(IPPROTO_TCP, VIP, 80), [
          dest(RS1, 80, { stats: stats(2, 12, 10) }),
          dest(RS2, 80, { stats: stats(2, 12, 10) }),
        ]),
      ],
      {
        connections: [conn('198.18.0.2', RS1, 'TIME_WAIT'), conn('198.18.0.2', RS2, 'TIME_WAIT')],
        dataPath: dataPath({
          device: { ...zeroDeviceCounters(), rxPackets: 1, rxBytes: 1, txPackets: 1, txBytes: 1 },
        }),
      },
    ),
    dataplane: 'tun',
    tunDevice: 'lvs0',
    sysctls: {
      'net/ipv4/ip_forward': '1',
      'net/ipv4/conf/all/rp_filter': '0',
      'net/ipv4/conf/all/send_redirects': '0',
      'net/ipv4/conf/lvs0/rp_filter': '0',
      'net/ipv4/conf/br0/forwarding': '1',
      'net/ipv4/conf/br0/send_redirects': '0',
      'net/ipv4/conf/pub0/forwarding': '1',
    },
    routes: {
      [VIP]: { dev: 'lo', type: 'local' },
      [RS1]: { dev: 'br0', prefsrc: '198.18.1.1' },
      [RS2]: { dev: 'br0', prefsrc: '198.18.1.1' },
      '198.18.0.2': { dev: 'pub0', prefsrc: VIP },
    },
    neighbours: [
      { dst: RS1, dev: 'br0', state: ['REACHABLE'] },
      { dst: RS2, dev: 'br0', state: ['REACHABLE'] },
    ],
    probes: { [`TCP ${RS1}:80`]: { result: 'open', ms: 1 }, [`TCP ${RS2}:80`]: { result: 'open', ms: 1 } },
    firewall: [],
  };
}

const findings = (facts: DoctorFacts) => {
  const r = diagnose(facts);
  return {
    verdict: r.verdict,
    host: r.host.map((f) => f.check),
    service: r.services[0]!.findings.map((f) => f.check),
    rs1: r.services[0]!.dests[0]!.findings.map((f) => f.check),
    rs2: r.services[0]!.dests[1]!.findings.map((f) => f.check),
    report: r,
  };
};

test('the healthy lab: ok everywhere, with the evidence looked at', () => {
  const r = findings(healthy());
  assert.equal(r.verdict, 'ok');
  assert.deepEqual([r.host, r.service, r.rs1, r.rs2], [[], [], [], []]);
  assert.deepEqual(r.report.services[0]!.dests[0]!.evidence, [
    '2 connections, 12 packets forwarded to it, 10 packets back through the director',
    '1 in the connection table, 0 in SYN_RECV',
    "the director's probe of TCP 198.18.1.11:80 was answered (SYN-ACK) in 1 ms",
    'route: dev br0 src 198.18.1.1',
    'neighbour: REACHABLE on br0',
  ]);
});

test('replies around the director: SYNs out, nothing back, yet the server answers the director', () => {
  const facts = healthy();
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 0);
  facts.snapshot.connections = [conn('198.18.0.2', RS1, 'SYN_RECV'), conn('198.18.0.2', RS2, 'TIME_WAIT')];
  const r = findings(facts);
  assert.equal(r.verdict, 'problem');
  assert.deepEqual([r.rs1, r.rs2], [['replies-bypass'], []]);
  assert.match(
    r.report.services[0]!.dests[0]!.findings[0]!.message,
    /default gateway must be the director \(198.18.1.1\)/,
  );
  // Replies seen: the same SYN_RECV entry is a handshake in progress, not a fault.
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 2);
  assert.deepEqual(findings(facts).rs1, []);
});

test('a refused probe is a refusal, a silent one silence (with the neighbour table when ARP failed)', () => {
  const facts = healthy();
  facts.probes = {
    ...facts.probes,
    [`TCP ${RS1}:80`]: { result: 'refused' },
    [`TCP ${RS2}:80`]: { result: 'timeout', ms: 1500 },
  };
  facts.neighbours = [{ dst: RS2, dev: 'br0', state: ['FAILED'] }];
  const r = findings(facts);
  assert.deepEqual([r.rs1, r.rs2], [['refused'], ['silent']]);
  assert.match(r.report.services[0]!.dests[1]!.findings[0]!.message, /no ARP\/ND reply from 198.18.1.12/);
  // Silence wins over the bypass signature: a server that answers nobody is not "answering elsewhere".
  facts.snapshot.services[0]!.dests[1]!.stats = stats(1, 3, 0);
  facts.snapshot.connections = [conn('198.18.0.2', RS2, 'SYN_RECV')];
  assert.deepEqual(findings(facts).rs2, ['silent']);
});

test("a client on the real servers' own subnet (directly connected on the same device)", () => {
  const facts = healthy();
  facts.snapshot.connections = [conn('198.18.1.50', RS1, 'SYN_RECV')];
  facts.routes = { ...facts.routes, '198.18.1.50': { dev: 'br0', prefsrc: '198.18.1.1' } };
  const r = findings(facts);
  assert.deepEqual([r.rs1, r.rs2], [['same-subnet'], ['same-subnet']]);
  // Behind a router on that device, it is not on the link.
  facts.routes = { ...facts.routes, '198.18.1.50': { dev: 'br0', gateway: '198.18.1.254' } };
  assert.deepEqual(findings(facts).rs1, []);
});

test('host settings: forwarding off (globally or on a device), strict rp_filter, redirects towards the real servers', () => {
  const with_ = (sysctls: Record<string, string>) =>
    findings({ ...healthy(), sysctls: { ...healthy().sysctls, ...sysctls } }).host;
  assert.deepEqual(with_({ 'net/ipv4/ip_forward': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv4/conf/br0/forwarding': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv4/conf/all/rp_filter': '1' }), ['rp-filter']);
  assert.deepEqual(with_({ 'net/ipv4/conf/lvs0/rp_filter': '1' }), ['rp-filter']);
  // Loose mode checks only that a route exists: fine.
  assert.deepEqual(with_({ 'net/ipv4/conf/all/rp_filter': '2' }), []);
  assert.deepEqual(with_({ 'net/ipv4/conf/all/send_redirects': '1' }), ['send-redirects']);
  assert.deepEqual(with_({ 'net/ipv4/conf/br0/send_redirects': '1' }), ['send-redirects']);
  // Without a data plane none of it is lvsd's path.
  assert.deepEqual(
    findings({ ...healthy(), dataplane: null, sysctls: { 'net/ipv4/ip_forward': '0' } }).host,
    [],
  );
});

test('a service without real servers; SCTP is not probed', () => {
  const facts = healthy();
  facts.snapshot.services.push(service(addrKey(IPPROTO_TCP, VIP, 443), []));
  facts.snapshot.services.push(service(addrKey(IPPROTO_SCTP, VIP, 9), [dest(RS1, 9)]));
  const r = diagnose(facts);
  assert.deepEqual(
    r.services[1]!.findings.map((f) => f.check),
    ['no-real-server'],
  );
  assert.equal(r.services[2]!.verdict, 'ok');
  assert.ok(r.services[2]!.dests[0]!.evidence.includes('not probed: SCTP'));
  assert.deepEqual(probeTargets(facts.snapshot).map(probeKey), [`TCP ${RS1}:80`, `TCP ${RS2}:80`]);
});

function udpConn(daddr: string, dport: number, protocol: number = IPPROTO_UDP): ConnSnapshot {
  return {
    ...conn('198.18.0.2', daddr, 'UDP'),
    protocol: protocol as ConnSnapshot['protocol'],
    vport: dport,
    dport,
  };
}

test('UDP probes: a port unreachable is a refusal, silence no verdict (unless ARP failed), an answer from elsewhere named', () => {
  const facts = healthy();
  facts.snapshot.services = [service(addrKey(IPPROTO_UDP, VIP, 53), [dest(RS1, 53), dest(RS2, 53)])];
  assert.deepEqual(probeTargets(facts.snapshot).map(probeKey), [`UDP ${RS1}:53`, `UDP ${RS2}:53`]);
  facts.probes = {
    [`UDP ${RS1}:53`]: { result: 'refused' },
    [`UDP ${RS2}:53`]: { result: 'timeout', ms: 1500 },
  };
  let r = findings(facts);
  assert.deepEqual([r.rs1, r.rs2], [['refused'], []]);
  assert.match(
    r.report.services[0]!.dests[0]!.findings[0]!.message,
    /refuses datagrams on UDP port 53 \(ICMP port unreachable\)/,
  );
  assert.ok(
    r.report.services[0]!.dests[1]!.evidence.some((e) =>
      /got no answer and no ICMP error in 1500 ms/.test(e),
    ),
  );
  facts.neighbours = [{ dst: RS2, dev: 'br0', state: ['INCOMPLETE'] }];
  assert.deepEqual(findings(facts).rs2, ['silent']);
  facts.neighbours = [];
  facts.probes = {
    ...facts.probes,
    [`UDP ${RS2}:53`]: { result: 'other-address', from: '198.18.1.21:53', ms: 3 },
  };
  r = findings(facts);
  assert.deepEqual(r.rs2, ['other-address']);
  assert.match(
    r.report.services[0]!.dests[1]!.findings[0]!.message,
    /^answers from 198.18.1.21:53, not 198.18.1.12:53/,
  );
  assert.match(r.report.services[0]!.dests[1]!.findings[0]!.message, /bind it to 198.18.1.12/);
  facts.probes = { ...facts.probes, [`UDP ${RS2}:53`]: { result: 'open', ms: 3 } };
  assert.equal(findings(facts).verdict, 'problem', 'RS1 still refuses');
  facts.probes = { ...facts.probes, [`UDP ${RS1}:53`]: { result: 'open', ms: 3 } };
  assert.equal(findings(facts).verdict, 'ok');
});

test('a TCP real server that answers from another address is named as such, not as replies going around', () => {
  const facts = healthy();
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 0);
  facts.snapshot.connections = [conn('198.18.0.2', RS1, 'SYN_RECV')];
  facts.probes = {
    ...facts.probes,
    [`TCP ${RS1}:80`]: { result: 'other-address', from: '198.18.1.31:80', ms: 2 },
  };
  const r = findings(facts);
  assert.deepEqual(r.rs1, ['other-address']);
  assert.ok(r.report.services[0]!.dests[0]!.evidence.includes('1 in the connection table, 1 in SYN_RECV'));
  assert.ok(
    r.report.services[0]!.dests[0]!.evidence.includes(
      "the director's probe of TCP 198.18.1.11:80 was answered from 198.18.1.31:80 in 2 ms",
    ),
  );
});

test('fwmark services and port 0: probed on the protocols and ports their connections show, else not probed', () => {
  const facts = healthy();
  facts.snapshot.services = [
    service(markKey(7, 4), [dest(RS1, 0), dest(RS2, 8080)]),
    service(addrKey(IPPROTO_UDP, VIP, 0), [dest(RS1, 0)]),
  ];
  facts.snapshot.connections = [
    udpConn(RS1, 53),
    udpConn(RS1, 53),
    udpConn(RS1, 443, IPPROTO_TCP),
    udpConn(RS2, 9999, IPPROTO_TCP), // not the real server's port: another service's
  ];
  facts.probes = {};
  assert.deepEqual(probeTargets(facts.snapshot).map(probeKey), [`TCP ${RS1}:443`, `UDP ${RS1}:53`]);
  const r = diagnose(facts);
  assert.ok(
    r.services[0]!.dests[1]!.evidence.includes(
      'not probed: a fwmark service, and no connection in the table shows the protocol and port its clients use',
    ),
  );
  // The UDP port-0 service takes only its own protocol's connections.
  assert.deepEqual(
    r.services[1]!.dests[0]!.evidence.filter((e) => e.includes('probe')),
    [`no probe of UDP ${RS1}:53`],
  );
  facts.probes = { [`TCP ${RS1}:443`]: { result: 'refused' }, [`UDP ${RS1}:53`]: { result: 'open', ms: 1 } };
  assert.deepEqual(
    diagnose(facts).services[0]!.dests[0]!.findings.map((f) => f.check),
    ['refused'],
  );
});

test('IPv6 services: forwarding off (all or a device), IPv6 disabled on a device, accept_ra = 1 under a route to clients from RAs', () => {
  const base = healthy();
  base.snapshot.services.push(service(addrKey(IPPROTO_TCP, '2001:db8::1', 80), [dest('2001:db8:1::11', 80)]));
  base.snapshot.connections = [
    ...base.snapshot.connections!,
    {
      ...conn('198.18.0.2', RS1, 'ESTABLISHED'),
      af: 6,
      caddr: ip('2001:db8:2::2'),
      daddr: ip('2001:db8:1::11'),
    },
  ];
  base.routes = {
    ...base.routes,
    '2001:db8:1::11': { dev: 'br0' },
    '2001:db8:2::2': { dev: 'pub0', gateway: 'fe80::1', protocol: 'ra' },
    '2001:db8::1': { dev: 'lo', type: 'local' },
  };
  base.probes = { ...base.probes, [`TCP [2001:db8:1::11]:80`]: { result: 'open', ms: 1 } };
  base.sysctls = {
    ...base.sysctls,
    'net/ipv6/conf/all/forwarding': '1',
    'net/ipv6/conf/br0/forwarding': '1',
    'net/ipv6/conf/pub0/forwarding': '1',
    'net/ipv6/conf/pub0/accept_ra': '0',
  };
  const with_ = (sysctls: Record<string, string>) =>
    findings({ ...base, sysctls: { ...base.sysctls, ...sysctls } }).host;
  assert.deepEqual(with_({}), []);
  assert.deepEqual(with_({ 'net/ipv6/conf/all/forwarding': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv6/conf/br0/forwarding': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv6/conf/br0/disable_ipv6': '1' }), ['ipv6-disabled']);
  assert.deepEqual(with_({ 'net/ipv6/conf/pub0/accept_ra': '1' }), ['accept-ra']);
  // accept_ra = 2 takes advertisements while forwarding; towards the real servers it does not matter.
  assert.deepEqual(with_({ 'net/ipv6/conf/pub0/accept_ra': '2' }), []);
  assert.deepEqual(with_({ 'net/ipv6/conf/br0/accept_ra': '1' }), []);
  // A static route to the clients does not depend on advertisements.
  const fixed = { ...base, routes: { ...base.routes, '2001:db8:2::2': { dev: 'pub0', gateway: 'fe80::1' } } };
  assert.deepEqual(
    findings({ ...fixed, sysctls: { ...base.sysctls, 'net/ipv6/conf/pub0/accept_ra': '1' } }).host,
    [],
  );
  // Without an IPv6 service none of it is read.
  const v4 = healthy();
  v4.sysctls = { ...v4.sysctls, 'net/ipv6/conf/all/forwarding': '0' };
  assert.deepEqual(findings(v4).host, []);
  assert.ok(sysctlsWanted(['br0'], true).includes('net/ipv6/conf/br0/accept_ra'));
  assert.ok(!sysctlsWanted(['br0'], false).some((p) => p.startsWith('net/ipv6')));
});

const rule = (
  matches: FirewallRule['matches'],
  verdict: FirewallRule['verdict'],
  opaque = false,
  target?: string,
): FirewallRule => ({
  text: target ? `${verdict} ${target}` : 'r',
  matches,
  opaque,
  verdict,
  ...(target ? { target } : {}),
});
const chain = (
  policy: 'accept' | 'drop',
  rules: FirewallRule[],
  name = 'ip filter forward',
  hook: string | null = 'forward',
  family: FirewallChain['family'] = 4,
): FirewallChain => ({ name, family, hook, policy, rules });
const toRs: FlowFact = { protocol: IPPROTO_TCP, ctstate: 'untracked', daddr: RS1, dport: 80 };

test('firewall: first sure match decides, conntrack states lvsd never has do not accept, unreadable rules make a warning', () => {
  const established = rule([{ field: 'ctstate', values: ['established', 'related'] }], 'accept');
  assert.equal(ruleMatches(established, toRs), 'no');
  assert.equal(chainVerdict(chain('drop', [established]), toRs).verdict, 'drop');
  const subnet = rule([{ field: 'daddr', values: [{ prefix: '198.18.1.0', len: 24 }] }], 'accept');
  assert.equal(chainVerdict(chain('drop', [established, subnet]), toRs).verdict, 'accept');
  const dropPort = rule(
    [
      { field: 'dport', values: [80, 443] },
      { field: 'protocol', values: [6] },
    ],
    'drop',
  );
  assert.equal(chainVerdict(chain('accept', [dropPort]), toRs).rule, dropPort);
  // A match on the client's address: the client is any, so maybe.
  assert.equal(ruleMatches(rule([{ field: 'saddr', values: ['10.0.0.1'] }], 'accept'), toRs), 'maybe');

  const facts = healthy();
  facts.firewall = [chain('drop', [established])];
  const sure = findings(facts);
  assert.deepEqual(sure.service, ['firewall']);
  assert.equal(sure.report.services[0]!.findings[0]!.severity, 'problem');
  facts.firewall = [chain('drop', [rule([], 'accept', true)])];
  const unsure = findings(facts);
  assert.equal(unsure.report.services[0]!.findings[0]!.severity, 'warning');
  assert.equal(unsure.verdict, 'warning');
  facts.firewall = [chain('accept', [established])];
  assert.deepEqual(findings(facts).service, []);
});

/** The healthy lab on the packet plane: its interfaces hooked by lvsd's netdev table, and up. */
function healthyPacket(): DoctorFacts {
  const facts = healthy();
  facts.dataplane = 'packet';
  facts.snapshot.dataPath.plane = 'packet';
  facts.snapshot.dataPath.interfaces = ['br0', 'pub0'];
  const up = { up: true, carrier: true, state: 'UP' };
  facts.packetPlane = { netdevIngress: ['br0', 'pub0'], links: { br0: up, pub0: { ...up } } };
  return facts;
}

test("packet plane: its own plumbing is checked (netdev ingress, links), the TUN path's settings and firewall are not", () => {
  const clean = diagnose(healthyPacket());
  assert.equal(clean.verdict, 'ok');
  assert.equal(clean.dataplane, 'packet');
  assert.equal(clean.hostChecked, "the packet plane's netdev ingress drop and link on br0, pub0");
  // What breaks the TUN path (forwarding, rp_filter, redirects, a forward chain's drop) is not on this one.
  const tunFaults = healthyPacket();
  tunFaults.sysctls = {
    ...tunFaults.sysctls,
    'net/ipv4/ip_forward': '0',
    'net/ipv4/conf/all/rp_filter': '1',
    'net/ipv4/conf/all/send_redirects': '1',
  };
  tunFaults.firewall = [chain('drop', [])];
  const r = findings(tunFaults);
  assert.deepEqual([r.verdict, r.host, r.service], ['ok', [], []]);
  // On the TUN plane the same facts are four problems.
  assert.deepEqual(findings({ ...tunFaults, dataplane: 'tun' }).host, [
    'ip-forward',
    'rp-filter',
    'send-redirects',
  ]);
  assert.deepEqual(findings({ ...tunFaults, dataplane: 'tun' }).service, ['firewall']);

  const unhooked = healthyPacket();
  unhooked.packetPlane!.netdevIngress = ['pub0'];
  const missing = diagnose(unhooked).host;
  assert.deepEqual(
    missing.map((f) => [f.check, f.severity]),
    [['netdev-ingress', 'problem']],
  );
  assert.match(missing[0]!.message, /^lvsd's ingress drop is missing on br0: the kernel handles/);
  assert.deepEqual(missing[0]!.evidence, ['nft list table netdev lvsd: ingress chains on pub0']);
  const gone = healthyPacket();
  gone.packetPlane!.netdevIngress = null;
  const table = diagnose(gone).host;
  assert.match(table[0]!.message, /missing on br0, pub0/);
  assert.deepEqual(table[0]!.evidence, ['nft list table netdev lvsd: no such table']);

  const down = healthyPacket();
  down.packetPlane!.links = {
    br0: { up: true, carrier: false, state: 'LOWERLAYERDOWN' },
    pub0: null,
  };
  const links = diagnose(down).host;
  assert.deepEqual(
    links.map((f) => f.message),
    [
      "br0 is down (no carrier): lvsd takes the services' frames off it, and sends on it",
      "pub0 is gone: lvsd took the services' frames off it",
    ],
  );
  assert.deepEqual(links[0]!.evidence, ['ip link show br0: state LOWERLAYERDOWN']);
});

test("packet plane: a fwmark service stays on the TUN path, and gets the TUN path's checks", () => {
  const facts = healthyPacket();
  facts.snapshot.services.push(service(markKey(7, 4), [dest(RS2, 80)]));
  facts.sysctls = { ...facts.sysctls, 'net/ipv4/conf/all/rp_filter': '1' };
  facts.firewall = [chain('drop', [])];
  const r = diagnose(facts);
  assert.deepEqual(
    r.host.map((f) => f.check),
    ['rp-filter'],
  );
  assert.match(r.hostChecked, /; for the fwmark services: forwarding, rp_filter, send_redirects$/);
  // The TCP service's frames still cross no firewall hook.
  assert.deepEqual(r.services[0]!.findings, []);
});

test('direct routing and tunnels: replies around the director and clients on the same subnet are their design, not a fault', () => {
  const facts = healthyPacket();
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 0);
  facts.snapshot.connections = [conn('198.18.1.50', RS1, 'SYN_RECV'), conn('198.18.0.2', RS2, 'TIME_WAIT')];
  facts.routes = { ...facts.routes, '198.18.1.50': { dev: 'br0', prefsrc: '198.18.1.1' } };
  // Masquerading, the same facts are both faults.
  assert.deepEqual(findings(facts).rs1, ['replies-bypass', 'same-subnet']);
  for (const [method, words] of [
    ['route', 'direct routing'],
    ['tunnel', 'IP-in-IP tunnelling'],
  ] as const) {
    facts.snapshot.services[0]!.dests[0]!.method = method;
    const r = findings(facts);
    assert.deepEqual([r.report.services[0]!.dests[0]!.verdict, r.rs1], ['ok', []]);
    // The masquerading one beside it still gets that client's replies around the director.
    assert.deepEqual(r.rs2, ['same-subnet']);
    assert.ok(
      r.report.services[0]!.dests[0]!.evidence.includes(
        `${words}: its replies go to the clients directly, around the director, as they should`,
      ),
    );
  }
});

test('prefix matches agree with address arithmetic', () => {
  fc.assert(
    fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (a, b, len) => {
      const n = (s: string) => s.split('.').reduce((x, p) => x * 256 + Number(p), 0);
      const expected = len === 0 || Math.floor(n(a) / 2 ** (32 - len)) === Math.floor(n(b) / 2 ** (32 - len));
      const r = rule([{ field: 'daddr', values: [{ prefix: b, len }] }], 'drop');
      return (ruleMatches(r, { ...toRs, daddr: a }) === 'yes') === expected;
    }),
  );
});

test("firewall: jumps and gotos are followed; a chain that ends or returns goes back, a goto to the caller's caller", () => {
  const dropWeb = rule([{ field: 'dport', values: [80] }], 'drop');
  const web = chain('accept', [dropWeb], 'ip filter web', null);
  const returns = chain('accept', [rule([], 'return'), dropWeb], 'ip filter early', null);
  const acceptAll = rule([], 'accept');
  const jumpTo = (name: string, verdict: 'jump' | 'goto' = 'jump') => rule([], verdict, false, name);
  const all = [web, returns];
  // Jumped to, its drop decides, and the evidence names the way.
  const verdict = chainVerdict(chain('accept', [jumpTo('ip filter web'), acceptAll]), toRs, all);
  assert.deepEqual([verdict.verdict, verdict.rule, verdict.via], ['drop', dropWeb, ['ip filter web']]);
  // A return (or the end) goes back to the rule after the jump.
  assert.equal(
    chainVerdict(chain('drop', [jumpTo('ip filter early'), acceptAll]), toRs, all).verdict,
    'accept',
  );
  const ends = chain('accept', [], 'ip filter empty', null);
  assert.equal(
    chainVerdict(chain('drop', [jumpTo('ip filter empty'), acceptAll]), toRs, [ends]).verdict,
    'accept',
  );
  // A goto that ends does not come back: the base chain's policy.
  assert.equal(
    chainVerdict(chain('drop', [jumpTo('ip filter empty', 'goto'), acceptAll]), toRs, [ends]).verdict,
    'drop',
  );
  // A jump to a chain not read (or a loop past the kernel's depth) is not evaluated: counted as such.
  const lost = chainVerdict(chain('drop', [jumpTo('ip filter nowhere')]), toRs, all);
  assert.deepEqual([lost.verdict, lost.unknownBefore], ['drop', 1]);
  const loop = chain('accept', [jumpTo('ip filter loop')], 'ip filter loop', null);
  assert.equal(chainVerdict(chain('drop', [jumpTo('ip filter loop')]), toRs, [loop]).unknownBefore, 1);
  // A jump on a match that does not hold is not taken.
  const jumpOther = rule([{ field: 'dport', values: [443] }], 'jump', false, 'ip filter web');
  assert.equal(chainVerdict(chain('accept', [jumpOther]), toRs, all).verdict, 'accept');

  // In the diagnosis: only base chains are walked from, each family's for its services.
  const facts = healthy();
  facts.firewall = [chain('accept', [jumpTo('ip filter web')]), web];
  const r = findings(facts);
  assert.deepEqual(r.service, ['firewall']);
  assert.match(
    r.report.services[0]!.findings[0]!.evidence.join('\n'),
    /client -> 198.18.1.11:80: rule "r" \(in ip filter web\)/,
  );
  facts.firewall = [
    chain('accept', [jumpTo('ip6 filter web')], 'ip6 filter forward', 'forward', 6),
    { ...web, name: 'ip6 filter web', family: 6 },
  ];
  assert.deepEqual(findings(facts).service, []);
});

test('IPv6 prefix matches', () => {
  const r = rule([{ field: 'daddr', values: [{ prefix: '2001:db8:1::', len: 48 }] }], 'drop');
  const flow = (daddr: string): FlowFact => ({ ...toRs, daddr });
  assert.equal(ruleMatches(r, flow('2001:db8:1:ff::11')), 'yes');
  assert.equal(ruleMatches(r, flow('2001:db8:2::11')), 'no');
  assert.equal(ruleMatches(r, flow('198.18.1.11')), 'no');
});
